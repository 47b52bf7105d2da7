"""lingbot-va-export on bags written by the recorder's own writer: row rules (never a frame from the future),
actions of trials and demos (joint and ee_relative), filters, and every bad-input error."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from bag_factory import SIM_CAMERAS, BagBuilder, frame_value, write_demo_bag, write_trial_bag

from lingbot_va_ros.dataset.bag_episode import ExportError, bag_to_episode, camera_topics_from_ingest
from lingbot_va_ros.dataset.export import ExportParams, export, main
from lingbot_va_ros.dataset.lerobot_format import read_lerobot_dataset
from lingbot_va_ros.model.embodiment import load_embodiment

EMB = load_embodiment("demo_sim")
CAMS = camera_topics_from_ingest("camera_ingest_sim.yaml", EMB)


def _frame_number(rgb: np.ndarray) -> int:
    value = int(np.median(rgb))
    assert (rgb == value).all()          # uniform frames stay uniform through the bilinear resize
    return [frame_value(k) for k in range(200)].index(value)


def _check_no_future_frames(ep, row_stamps, frame_stamps):
    for k, t in enumerate(row_stamps):
        for role in SIM_CAMERAS:
            j = _frame_number(ep.camera_frames[role][k])
            assert frame_stamps[j] <= t, f"row {k}: frame {j} is from the future"
            assert j + 1 == len(frame_stamps) or frame_stamps[j + 1] > t, f"row {k}: a newer frame was available"


def test_trial_rows_are_action_indices_with_command_times(tmp_path):
    bag, rows, stamp_of, frames = write_trial_bag(tmp_path / "trial", n=64)
    ep = bag_to_episode(bag, EMB, CAMS)
    assert ep.metadata["source"] == "model" and ep.metadata["dropped_leading_rows"] == 0
    np.testing.assert_array_equal(ep.actions, rows)               # executed rows, exact
    times = [stamp_of[i] for i in range(64)]                      # holds between chunks are not rows
    np.testing.assert_allclose(ep.recorded_time_s, (np.array(times) - times[0]) / 1e9)
    _check_no_future_frames(ep, times, frames)
    assert ep.camera_frames["cam_high"].shape == (64, 256, 320, 3)   # resized to the embodiment's size
    assert ep.task == "stack the blocks" and ep.metadata["pipeline_mode"] == "sync"


def test_demo_rows_are_commands_and_states_are_the_latest_measured(tmp_path):
    bag, q, stamps, frames = write_demo_bag(tmp_path / "demo", n=50)
    ep = bag_to_episode(bag, EMB, CAMS)
    assert ep.metadata["source"] == "demo" and ep.metadata["dropped_leading_rows"] == 0
    np.testing.assert_array_equal(ep.actions, q.astype(np.float32))
    _check_no_future_frames(ep, stamps, frames)
    assert ep.num_rows == 50 and ep.states.shape == (50, 14)


def test_ee_relative_demo_uses_the_inference_path_conversion(tmp_path):
    from lingbot_va_ros.kinematics import BimanualKinematics
    from lingbot_va_ros.model.actions import absolute_to_relative_eef

    robotwin = load_embodiment("robotwin")
    bag, q, stamps, _ = write_demo_bag(tmp_path / "demo", n=12)
    cams = camera_topics_from_ingest("camera_ingest_sim.yaml", robotwin)
    ep = bag_to_episode(bag, robotwin, cams, fps=30.0)
    kin = BimanualKinematics()
    expected = absolute_to_relative_eef(kin.fk(q), kin.fk(ep.states[0].astype(np.float64)))
    np.testing.assert_allclose(ep.actions, expected, atol=1e-6)
    assert ep.action_space == "ee_relative" and ep.actions.shape == (12, 16)
    assert len(ep.metadata["initial_eef_pose"]) == 16


def test_export_cli_writes_a_dataset_with_filters(tmp_path, capsys):
    from lingbot_va_ros.scoring.annotation import Annotation, write_annotation

    bags = tmp_path / "bags"
    write_demo_bag(bags / "a", n=30, outcome="completed")
    write_demo_bag(bags / "b", n=20, outcome="failed")
    write_trial_bag(bags / "c", n=32, outcome="completed")
    write_annotation(bags / "a", Annotation("pick", ("grasp", "lift"), (1, 0.5)))
    write_annotation(bags / "c", Annotation("pick", ("grasp", "lift"), (1, 1)))
    out = tmp_path / "ds"
    assert main([str(bags), "--out", str(out), "--outcome", "completed"]) == 0
    eps = read_lerobot_dataset(out)
    assert [e.num_rows for e in eps] == [30, 32] and [e.metadata["source"] for e in eps] == ["demo", "model"]
    assert "q99" in capsys.readouterr().out
    assert main([str(bags), "--out", str(out), "--min-score", "80", "--force"]) == 0
    eps = read_lerobot_dataset(out)
    assert len(eps) == 1 and eps[0].metadata["progress_score"] == 100.0


def test_export_refuses_existing_output_without_force(tmp_path, capsys):
    write_demo_bag(tmp_path / "bags" / "a", n=10)
    out = tmp_path / "ds"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main([str(tmp_path / "bags"), "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err and (out / "keep.txt").read_text() == "mine"


def test_selection_with_no_episodes_is_an_error(tmp_path):
    write_demo_bag(tmp_path / "bags" / "a", n=10, outcome="failed")
    with pytest.raises(ExportError, match="no episodes left after the filters"):
        export(ExportParams(bags=[str(tmp_path / "bags")], out=str(tmp_path / "ds"), outcomes=["completed"]),
               log=lambda *_: None)
    (tmp_path / "nothing").mkdir()
    with pytest.raises(ExportError, match="no bags found"):
        export(ExportParams(bags=[str(tmp_path / "nothing")], out=str(tmp_path / "ds2")), log=lambda *_: None)


def test_truncated_bag_names_the_repair_command(tmp_path):
    bag, *_ = write_demo_bag(tmp_path / "killed", n=10, closed=False)
    with pytest.raises(ExportError, match="lingbot-va-bag-repair"):
        bag_to_episode(bag, EMB, CAMS)


def test_empty_bag_is_an_error(tmp_path):
    b = BagBuilder(tmp_path / "empty", {"episode_id": "e", "prompt": "p"})
    bag = b.close({"outcome": "completed"})
    with pytest.raises(ExportError, match="empty"):
        bag_to_episode(bag, EMB, CAMS)


def test_missing_camera_is_an_error(tmp_path):
    cams = {k: v for k, v in SIM_CAMERAS.items() if k != "cam_left_wrist"}
    bag, *_ = write_demo_bag(tmp_path / "demo", n=10, cameras=cams)
    with pytest.raises(ExportError, match=r"cam_left_wrist \(/sim_arm/cam_left_wrist/image_raw\)"):
        bag_to_episode(bag, EMB, CAMS)


def test_mismatched_action_dimensions_are_an_error(tmp_path):
    bag, *_ = write_trial_bag(tmp_path / "trial", n=16, channels=[f"c{i}" for i in range(10)])
    with pytest.raises(ExportError, match="mismatched action dimensions"):
        bag_to_episode(bag, EMB, CAMS)


def test_nan_in_actions_is_an_error(tmp_path):
    bag, *_ = write_trial_bag(tmp_path / "trial", n=16, nan_row=7)
    with pytest.raises(ExportError, match="action row 7.*NaNs in actions"):
        bag_to_episode(bag, EMB, CAMS)


def test_skip_bad_keeps_the_good_bags(tmp_path):
    write_demo_bag(tmp_path / "bags" / "a", n=10)
    write_trial_bag(tmp_path / "bags" / "b", n=16, nan_row=3)
    params = ExportParams(bags=[str(tmp_path / "bags")], out=str(tmp_path / "ds"))
    with pytest.raises(ExportError, match="NaNs"):
        export(params, log=lambda *_: None)
    meta, eps, _ = export(params.model_copy(update={"skip_bad": True}), log=lambda *_: None)
    assert len(eps) == 1 and "NaNs" in meta.lingbot_va["skipped"][0]
    shutil.rmtree(tmp_path / "ds")


@pytest.mark.slow
@pytest.mark.ros
def test_export_of_a_real_closed_loop_trial(tmp_path, node_env):
    """Slow (~60-120 s on 2 cores: the whole graph with a tiny random model runs 3 chunks): a model trial recorded
    by lingbot-va-demo (sim, camera ingest, executor, inference, recorder as separate processes) exports with one
    row per executed action index and the executed rows as actions."""
    import subprocess
    import sys

    from lingbot_va_ros.recording.bag_reader import find_bags, iter_messages, open_bag

    proc = subprocess.run([sys.executable, "-m", "lingbot_va_ros.bringup.runner", "--out", str(tmp_path / "run"),
                           "--chunks", "3", "--mode", "sync"], env=node_env, capture_output=True, text=True,
                          timeout=280)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (bag,) = find_bags([tmp_path / "run" / "recordings"])
    executed = {}
    with open_bag(bag) as reader:
        for _, _, msg in iter_messages(reader, ["/lingbot_va/executed_actions"]):
            rows = np.asarray(msg.actions, dtype=np.float32).reshape(msg.shape[0], msg.shape[1])
            for k, row in enumerate(rows):
                executed[int(msg.start_index) + k] = row
        cuts = [json.loads(m.data)["counters"]["watchdog_cuts"]
                for _, _, m in iter_messages(reader, ["/lingbot_va/executor_state"])]
    meta, (ep,), _ = export(ExportParams(bags=[str(bag)], out=str(tmp_path / "ds")), log=lambda *_: None)
    # every executed action index once, from 0, in the bag and in the dataset
    assert sorted(executed) == list(range(len(executed))), sorted(executed)
    assert ep.metadata["source"] == "model" and ep.num_rows == len(executed)
    # all 3 chunks ran unless the executor's watchdog cut the plan (a starved inference heartbeat on a loaded
    # host: the safety stop working, recorded in the bag's executor state)
    if not any(cuts):
        assert len(executed) == 16 + 2 * 32, proc.stdout[-3000:]
    np.testing.assert_array_equal(ep.actions, np.stack([executed[i] for i in range(ep.num_rows)]))
    assert np.all(np.diff(ep.recorded_time_s) > 0) and ep.metadata["row_times_from"] == "command"
    assert all(frames.std() > 5.0 for frames in ep.camera_frames.values())
