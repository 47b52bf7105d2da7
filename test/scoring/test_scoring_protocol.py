"""The paper's real-world scoring protocol (App. A, Tables S2-S7): step scores -> Progress Score / Success Rate.

The table examples rebuild 20-trial score sheets that give exactly the published LingBot-VA numbers; each
comment shows the arithmetic done by hand."""
from __future__ import annotations

import pytest

from lingbot_va_ros.scoring.protocol import (ScoringError, TrialScore, mean_over_tasks, parse_scores, summarize,
                                             summarize_task, validate_step_scores)
from lingbot_va_ros.scoring.tasks import PAPER_TASKS, parse_steps, preset_steps, task_key


def _sheet(task: str, full: int, partial_totals: list[float]) -> list[TrialScore]:
    """``full`` full-score trials plus one trial per partial total (steps: 1s, then one 0.5 if needed, 0s)."""
    steps = PAPER_TASKS[task]
    trials = []
    for k, total in enumerate([float(len(steps))] * full + partial_totals):
        ones, half = int(total), total % 1 == 0.5
        scores = [1.0] * ones + [0.5] * half + [0.0] * (len(steps) - ones - half)
        trials.append(TrialScore(f"{task}-{k}", task, steps, tuple(scores)))
    assert len(trials) == 20
    return trials


# (task, full-score trials, totals of the other trials, published PS, published SR)
PAPER_TABLE = [
    # 10 steps: 15 x 10 + (9+9+9+8.5+8.5) = 194; 194/20 = 9.7; 9.7/10 = 97.0 %; 15/20 = 75 %
    ("make_breakfast", 15, [9, 9, 9, 8.5, 8.5], 97.0, 75.0),
    # 5 steps: 14 x 5 + (2.5 + 5 x 2) = 82.5; 82.5/20 = 4.125; /5 = 82.5 %; 14/20 = 70 %
    ("pick_screws", 14, [2.5, 2, 2, 2, 2, 2], 82.5, 70.0),
    # 6 steps: 8 x 6 + (11 x 4.5 + 5.5) = 103; 103/20 = 5.15; /6 = 85.83 % -> 85.8; 8/20 = 40 %
    ("insert_tubes", 8, [4.5] * 11 + [5.5], 85.8, 40.0),
    # 5 steps: 13 x 5 + (6 x 3 + 1.5) = 84.5; /20 = 4.225; /5 = 84.5 %; 13/20 = 65 %
    ("unpack_delivery", 13, [3] * 6 + [1.5], 84.5, 65.0),
    # 6 steps: 7 x 6 + (11 x 1 + 2.5 + 3) = 58.5; /20 = 2.925; /6 = 48.75 % -> 48.8; 7/20 = 35 %
    ("fold_clothes", 7, [1] * 11 + [2.5, 3], 48.8, 35.0),
    # 3 steps: 14 x 3 + (4 x 0.5 + 2 x 1) = 46; /20 = 2.3; /3 = 76.67 % -> 76.7; 14/20 = 70 %
    ("fold_pants", 14, [0.5] * 4 + [1, 1], 76.7, 70.0),
]


@pytest.mark.parametrize("task, full, partial, ps, sr", PAPER_TABLE, ids=[row[0] for row in PAPER_TABLE])
def test_paper_table_values_are_reproduced(task, full, partial, ps, sr):
    summary = summarize_task(_sheet(task, full, partial))
    assert summary.n_trials == 20 and summary.max_score == len(PAPER_TASKS[task])
    assert round(summary.progress_score, 1) == ps
    assert summary.success_rate == sr and summary.full_score_trials == full


def test_paper_mean_row():
    summaries = summarize(t for row in PAPER_TABLE for t in _sheet(*row[:3]))
    ps, sr = mean_over_tasks(summaries)
    # (97 + 82.5 + 85.833 + 84.5 + 48.75 + 76.667) / 6 = 79.208; (75 + 70 + 40 + 65 + 35 + 70) / 6 = 59.17
    assert (round(ps, 1), round(sr, 1)) == (79.2, 59.2)
    assert [s.task for s in summaries] == list(PAPER_TASKS)


def test_small_sheet_by_hand_with_retries_and_per_step_rates():
    steps = ("grasp", "insert", "release")
    trials = [TrialScore("a", "t", steps, (1, 1, 1)),       # 3   full
              TrialScore("b", "t", steps, (0.5, 1, 1)),     # 2.5 retry on grasp: not full
              TrialScore("c", "t", steps, (1, 0, 0)),       # 1
              TrialScore("d", "t", steps, (1, 0.5, 0))]     # 1.5
    s = summarize_task(trials)
    # mean total = 8 / 4 = 2; PS = 2 / 3 = 66.67 %; SR = 1 / 4 = 25 %
    assert s.mean_total == 2.0 and s.progress_score == pytest.approx(200 / 3) and s.success_rate == 25.0
    assert s.step_mean == (0.875, 0.625, 0.5)
    assert s.step_first_try == (0.75, 0.5, 0.5)
    assert not trials[1].full_score and trials[0].full_score


def test_invalid_scores_and_inconsistent_trials_are_rejected():
    with pytest.raises(ScoringError, match=r"\(2, 0.7\)"):
        validate_step_scores([1, 0.7])
    with pytest.raises(ScoringError, match="2 scores for 3 steps"):
        TrialScore("x", "t", ("a", "b", "c"), (1, 1))
    with pytest.raises(ScoringError, match="at least one"):
        validate_step_scores([])
    with pytest.raises(ScoringError, match="same steps"):
        summarize_task([TrialScore("x", "t", ("a", "b"), (1, 1)), TrialScore("y", "t", ("a", "c"), (1, 1))])
    assert parse_scores("1, 0.5 0") == (1.0, 0.5, 0.0)
    with pytest.raises(ScoringError, match="cannot read"):
        parse_scores("1,half")


def test_task_presets_and_step_parsing():
    assert len(PAPER_TASKS["make_breakfast"]) == 10 and len(PAPER_TASKS["insert_tubes"]) == 6
    assert preset_steps("Make Breakfast") == PAPER_TASKS["make_breakfast"] and task_key(" Fold-Pants ") == "fold_pants"
    assert preset_steps("open drawer") is None
    assert parse_steps("grasp plate, insert bread,,serve") == ("grasp plate", "insert bread", "serve")
