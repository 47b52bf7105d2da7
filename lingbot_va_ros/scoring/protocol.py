"""The LingBot-VA real-world scoring protocol (paper App. A, Tables S2-S7), as pure functions.

- Each step of a task scores 1 when it succeeds on the first try, 0.5 when it succeeds after a retry, 0 when
  it fails.
- A trial's total is the sum of its step scores; the maximum is the number of steps.
- Progress Score PS = (average total over the N trials / maximum score) x 100.
- Success Rate SR = (trials with the full score / N) x 100.
- The paper's "mean" row averages PS and SR over tasks (each task weighs the same).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

FIRST_TRY, AFTER_RETRY, FAILED = 1.0, 0.5, 0.0
STEP_SCORES = {FIRST_TRY: "succeeded on the first try", AFTER_RETRY: "succeeded after a retry", FAILED: "failed"}


class ScoringError(ValueError):
    """Scores that do not follow the protocol; the text says which."""


def validate_step_scores(scores: Sequence[float], steps: Sequence[str] | None = None) -> tuple[float, ...]:
    values = tuple(float(s) for s in scores)
    if not values:
        raise ScoringError("a trial needs at least one step score")
    bad = [(i + 1, s) for i, s in enumerate(values) if s not in STEP_SCORES]
    if bad:
        raise ScoringError(f"step scores must be 1 (first try), 0.5 (after retry) or 0 (failed); got {bad} "
                           "(step number, score)")
    if steps is not None and len(steps) != len(values):
        raise ScoringError(f"{len(values)} scores for {len(steps)} steps ({', '.join(steps)})")
    return values


def parse_scores(text: str) -> tuple[float, ...]:
    """'1,0.5,0' (commas or spaces) -> (1.0, 0.5, 0.0)."""
    parts = [p for p in text.replace(",", " ").split() if p]
    try:
        return validate_step_scores([float(p) for p in parts])
    except ValueError as exc:
        if isinstance(exc, ScoringError):
            raise
        raise ScoringError(f"cannot read scores {text!r}: use numbers like 1,0.5,0") from None


@dataclass(frozen=True)
class TrialScore:
    trial_id: str
    task: str
    steps: tuple[str, ...]
    scores: tuple[float, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "scores", validate_step_scores(self.scores, self.steps))
        object.__setattr__(self, "steps", tuple(self.steps))

    @property
    def total(self) -> float:
        return float(sum(self.scores))

    @property
    def max_score(self) -> float:
        return float(len(self.scores))

    @property
    def full_score(self) -> bool:
        return self.total == self.max_score


@dataclass(frozen=True)
class TaskSummary:
    task: str
    steps: tuple[str, ...]
    n_trials: int
    max_score: float
    mean_total: float
    progress_score: float          # percent
    success_rate: float            # percent
    full_score_trials: int
    step_mean: tuple[float, ...]   # mean score per step
    step_first_try: tuple[float, ...]   # fraction of trials with a first-try success per step
    trials: tuple[TrialScore, ...] = field(repr=False, default=())


def summarize_task(trials: Iterable[TrialScore]) -> TaskSummary:
    trials = tuple(trials)
    if not trials:
        raise ScoringError("no trials to summarise")
    task, steps = trials[0].task, trials[0].steps
    for t in trials:
        if t.task != task:
            raise ScoringError(f"trial {t.trial_id} is task '{t.task}', not '{task}'")
        if t.steps != steps:
            raise ScoringError(f"task '{task}': trial {t.trial_id} has steps {list(t.steps)}, trial "
                               f"{trials[0].trial_id} has {list(steps)} (annotate every trial with the same steps)")
    n = len(trials)
    max_score = float(len(steps))
    mean_total = sum(t.total for t in trials) / n
    full = sum(1 for t in trials if t.full_score)
    step_mean = tuple(sum(t.scores[k] for t in trials) / n for k in range(len(steps)))
    first_try = tuple(sum(1 for t in trials if t.scores[k] == FIRST_TRY) / n for k in range(len(steps)))
    return TaskSummary(task=task, steps=steps, n_trials=n, max_score=max_score, mean_total=mean_total,
                       progress_score=100.0 * mean_total / max_score, success_rate=100.0 * full / n,
                       full_score_trials=full, step_mean=step_mean, step_first_try=first_try, trials=trials)


def summarize(trials: Iterable[TrialScore]) -> list[TaskSummary]:
    """One summary per task, in first-seen order."""
    by_task: dict[str, list[TrialScore]] = {}
    for t in trials:
        by_task.setdefault(t.task, []).append(t)
    return [summarize_task(ts) for ts in by_task.values()]


def mean_over_tasks(summaries: Sequence[TaskSummary]) -> tuple[float, float]:
    """The paper's 'mean' row: (mean PS, mean SR) with every task weighted equally."""
    if not summaries:
        return 0.0, 0.0
    return (sum(s.progress_score for s in summaries) / len(summaries),
            sum(s.success_rate for s in summaries) / len(summaries))
