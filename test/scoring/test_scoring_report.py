"""lingbot-va-score: annotate (never touches the bag; interactive on a TTY) and report (scores per task, plots
from the bags, index.html, scores.json) on synthetic recorded episodes."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import yaml

from lingbot_va_ros.inference.backend import BackendSpec
from lingbot_va_ros.replay.digest_backend import DigestBackend
from lingbot_va_ros.replay.synthetic import write_synthetic_episode
from lingbot_va_ros.scoring.annotation import prompt_scores, read_annotation
from lingbot_va_ros.scoring.cli import main as score

pytestmark = pytest.mark.timeout(120)

# small images keep the synthetic bags tiny; 50 Hz, a key frame every 2 actions, 8-action chunks
SPEC = BackendSpec(camera_names=("cam",), image_sizes={"cam": (16, 16)}, action_space="joint", channel_names=("a", "b"),
                   actions_per_chunk=8, actions_per_keyframe=2, keyframes_per_chunk=4, control_hz=50.0)


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    bag = tmp_path_factory.mktemp("template") / "ep"
    write_synthetic_episode(bag, DigestBackend(spec=SPEC, first_chunk_actions=4), n_chunks=4, latencies_s=(0.1, 0.3),
                            metadata={"pipeline_mode": "sync", "checkpoint_hash": "fp-sha256:1"})
    return bag


@pytest.fixture
def trials_dir(tmp_path, template) -> Path:
    root = tmp_path / "recordings"
    for name in ("ep-a", "ep-b", "ep-c", "ep-d"):
        shutil.copytree(template, root / name)
    return root


def _bag_digest(bag: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(bag.iterdir()) if p.is_file()}


def test_annotate_writes_next_to_the_bag_and_never_modifies_it(trials_dir, capsys):
    bag = trials_dir / "ep-a"
    before = _bag_digest(bag)
    assert score(["annotate", str(bag), "--task", "fold_pants", "--scores", "1,0.5,1", "--annotator", "kim",
                  "--notes", "slow grasp"]) == 0
    after = _bag_digest(bag)
    assert after.pop("annotation.yaml") and after == before
    ann = read_annotation(bag)
    assert ann.steps == ("fold at waist", "fold legs", "place") and ann.scores == (1.0, 0.5, 1.0)
    assert ann.episode_id == "ep-synthetic" and ann.annotator == "kim"
    data = yaml.safe_load((bag / "annotation.yaml").read_text())
    assert data["total"] == 2.5 and data["max_score"] == 3 and data["full_score"] is False
    assert "2.5 / 3" in capsys.readouterr().out
    # refuses to overwrite silently; --force replaces; steps come from the preset or the previous annotation
    assert score(["annotate", str(bag), "--task", "fold_pants", "--scores", "1,1,1"]) == 2
    assert score(["annotate", str(bag / "ep.mcap"), "--task", "fold_pants", "--scores", "1,1,1", "--force"]) == 0
    assert read_annotation(bag).scores == (1.0, 1.0, 1.0)
    assert score(["annotate", str(trials_dir / "ep-b"), "--task", "open drawer", "--scores", "1,1"]) == 2
    assert score(["annotate", str(trials_dir / "ep-b"), "--task", "fold_pants", "--scores", "1,0.7,1"]) == 2
    assert score(["annotate", str(trials_dir / "ep-b"), "--task", "fold_pants"]) == 2, "no TTY, no --scores"


def test_interactive_annotation_asks_per_step_until_valid():
    answers = iter(["y", "0.7", "r", "0"])
    said = []
    scores = prompt_scores(("grasp", "insert", "place"), ask=lambda _: next(answers), say=said.append)
    assert scores == (1.0, 0.5, 0.0) and any("1, 0.5 or 0" in s for s in said)


def test_interactive_mode_on_a_tty(trials_dir, monkeypatch):
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    answers = iter(["1", "n"])
    monkeypatch.setattr("builtins.input", lambda _prompt: next(answers))
    assert score(["annotate", str(trials_dir / "ep-c"), "--task", "open drawer", "--steps", "grasp handle,pull"]) == 0
    assert read_annotation(trials_dir / "ep-c").scores == (1.0, 0.0)


def test_report_scores_per_task_with_plots_html_and_json(trials_dir, tmp_path, capsys):
    for name, task, scores, steps in [("ep-a", "fold_pants", "1,1,1", None), ("ep-b", "fold_pants", "1,0.5,0", None),
                                      ("ep-c", "open drawer", "1,1", "grasp handle,pull")]:
        args = ["annotate", str(trials_dir / name), "--task", task, "--scores", scores]
        assert score(args + (["--steps", steps] if steps else [])) == 0
    out = tmp_path / "report"
    assert score(["report", str(trials_dir), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "fold_pants" in printed and "1 bag(s) not annotated" in printed

    data = json.loads((out / "scores.json").read_text())
    tasks = {t["task"]: t for t in data["tasks"]}
    # fold_pants: totals 3 and 1.5 -> mean 2.25 / 3 = 75 %; 1 of 2 full -> 50 %
    assert tasks["fold_pants"]["progress_score"] == 75.0 and tasks["fold_pants"]["success_rate"] == 50.0
    assert tasks["open drawer"]["progress_score"] == 100.0 and tasks["open drawer"]["success_rate"] == 100.0
    assert data["mean"]["progress_score"] == 87.5 and data["mean"]["success_rate"] == 75.0
    assert [p["mean_score"] for p in tasks["fold_pants"]["per_step"]] == [1.0, 0.75, 0.5]
    assert data["unannotated"] == [str((trials_dir / "ep-d").resolve())] and not data["problems"]

    trial = tasks["fold_pants"]["trials"][0]
    assert trial["prompt"] == "stack the blocks" and trial["outcome"] == "completed" and trial["chunks"] == 4
    assert trial["pipeline_mode"] == "sync" and trial["checkpoint_hash"] == "fp-sha256:1"
    assert trial["latency"]["median_s"] == pytest.approx(0.2) and trial["latency"]["max_s"] == pytest.approx(0.3)
    # sync: the arm waits for chunks 1..3 while they are inferred (0.3 + 0.1 + 0.3 s)
    assert trial["idle_source"] == "action_tick" and trial["idle_total_s"] == pytest.approx(0.7, abs=1e-6)
    for rel in trial["plots"].values():
        assert (out / rel).stat().st_size > 1000
    assert {"latency", "idle"} <= set(trial["plots"]) and sum(k.startswith("frames_") for k in trial["plots"]) == 4
    html = (out / "index.html").read_text()
    assert "<td class=num>75.0</td>" in html and "summary.png" in html and "ep-d" in html
    assert trial["plots"]["latency"] in html


def test_report_lists_problems_and_rejects_inconsistent_step_lists(trials_dir, tmp_path):
    assert score(["annotate", str(trials_dir / "ep-a"), "--task", "wipe", "--steps", "a,b", "--scores", "1,1"]) == 0
    (trials_dir / "ep-b" / "metadata.yaml").unlink()           # a killed, unrepaired recording
    assert score(["annotate", str(trials_dir / "ep-b"), "--task", "wipe", "--steps", "a,b", "--scores", "0,1"]) == 0
    out = tmp_path / "r1"
    assert score(["report", str(trials_dir), "--out", str(out), "--no-plots"]) == 0
    data = json.loads((out / "scores.json").read_text())
    assert data["tasks"][0]["progress_score"] == 75.0
    assert any("lingbot-va-bag-repair" in p for p in data["problems"])
    assert score(["annotate", str(trials_dir / "ep-c"), "--task", "wipe", "--steps", "a,c", "--scores", "1,1"]) == 0
    assert score(["report", str(trials_dir), "--out", str(tmp_path / "r2")]) == 2


def test_report_shows_each_chunks_prediction_beside_the_real_key_frame(trials_dir, tmp_path):
    import numpy as np
    from PIL import Image as PILImage

    from lingbot_va_ros.recording.bag_reader import iter_messages, open_bag
    from lingbot_va_ros.scoring.bag_analysis import analyse_bag

    bag = trials_dir / "ep-a"
    assert score(["annotate", str(bag), "--task", "fold_pants", "--scores", "1,1,1"]) == 0
    # what the bag holds: per chunk one prediction_vs_real image and its info (same header), errors per grounded chunk
    with open_bag(bag) as reader:
        infos = [m for _t, _n, m in iter_messages(reader, ["/lingbot_va/prediction_vs_real_info"])]
        images = [m for _t, _n, m in iter_messages(reader, ["/lingbot_va/prediction_vs_real"])]
    a = analyse_bag(bag)
    assert [p.chunk_index for p in a.predictions] == [0, 1, 2, 3] == [i.chunk_index for i in infos]
    assert [p.action_index for p in a.predictions] == [i.action_index for i in infos] == [3, 11, 19, 27]
    first = np.frombuffer(bytes(images[0].data), np.uint8).reshape(images[0].height, images[0].width, 3)
    np.testing.assert_array_equal(a.predictions[0].rgb, first)
    assert a.predicted_frames_per_chunk == {0: 1, 1: 1, 2: 1, 3: 1}
    assert a.latent_mse == {0: 1.25, 1: 1.5, 2: 1.75}        # the last chunk is never grounded
    assert analyse_bag(bag, max_strip=2).predictions[-1].chunk_index == 1

    out = tmp_path / "report"
    assert score(["report", str(bag), "--out", str(out)]) == 0
    trial = json.loads((out / "scores.json").read_text())["tasks"][0]["trials"][0]
    strip = out / trial["plots"]["prediction_strip"]
    assert PILImage.open(strip).size[0] > 4 * images[0].width          # the four chunks side by side
    assert trial["live_view"]["latent_mse"] == {"0": 1.25, "1": 1.5, "2": 1.75}
    assert [p["action_index"] for p in trial["live_view"]["prediction_vs_real"]] == [3, 11, 19, 27]
    html = (out / "index.html").read_text()
    assert trial["plots"]["prediction_strip"] in html and "prediction vs real per chunk" in html
    assert "<td class=num>1.750</td>" in html
