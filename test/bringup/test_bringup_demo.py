"""The README's main job, shortened: the standalone runner brings up the simulated arm with cameras, the tiny
model, the executor, camera ingest and the recorder as separate processes, runs a RunEpisode, records it, prints
a summary and leaves nothing running. The bag must read back with rosbags (types from the bag only)."""
from __future__ import annotations

import subprocess
import sys

import psutil
import pytest

from lingbot_va_ros.recording.bag_reader import open_bag, read_metadata, topic_counts

pytestmark = [pytest.mark.ros, pytest.mark.slow, pytest.mark.timeout(300)]

EXPECTED_TOPICS = {
    "/lingbot_va/observation", "/lingbot_va/action_chunk", "/lingbot_va/action_tick",
    "/lingbot_va/executed_actions", "/lingbot_va/command", "/joint_states",
    "/sim_arm/cam_high/image_raw", "/sim_arm/cam_left_wrist/image_raw", "/sim_arm/cam_right_wrist/image_raw",
}


def _children_of(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def test_demo_runs_an_async_episode_records_it_and_cleans_up(tmp_path, ros_domain, node_env):
    out = tmp_path / "demo"
    proc = subprocess.Popen(
        [sys.executable, "-m", "lingbot_va_ros.bringup.runner", "--chunks", "4", "--mode", "async",
         "--out", str(out), "--domain-id", str(ros_domain), "--quiet", "--startup-timeout", "150"],
        env=node_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        stdout, _ = proc.communicate(timeout=280)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stdout[-3000:]
    assert "outcome          completed (reached max_chunks=4)" in stdout, stdout[-3000:]
    assert "chunks           4" in stdout
    # every node process the runner started is gone (their logs name their pids via the process group)
    assert not _children_of(proc.pid)

    (bag,) = [p for p in (out / "recordings").iterdir() if p.is_dir()]
    assert str(bag) in stdout
    meta = read_metadata(bag)["custom_data"]
    assert meta["lingbot_va.prompt"] and meta["lingbot_va.pipeline_mode"] == "async"
    assert meta["lingbot_va.outcome"] == "completed" and meta["lingbot_va.checkpoint_hash"]
    with open_bag(bag) as reader:
        counts = topic_counts(reader)
    missing = EXPECTED_TOPICS - {t for t, n in counts.items() if n > 0}
    assert not missing, f"topics missing from the bag: {missing} (have {counts})"
    assert counts["/lingbot_va/action_chunk"] == 4
    # the live view ran in its own process and was recorded, raw and JPEG, with its per-image facts (how many per
    # chunk is test/live_view/test_live_view_node.py's job: here the host's load decides what a newest-wins
    # decoder skips)
    assert "live view        " in stdout and "predicted-frame messages for 4 chunks" in stdout, stdout[-3000:]
    for topic in ("/lingbot_va/predicted_latents", "/lingbot_va/predicted_frames",
                  "/lingbot_va/predicted_frames/compressed", "/lingbot_va/predicted_frames_info"):
        assert counts.get(topic, 0) >= 1, f"{topic} not recorded (have {counts})"
    assert counts["/lingbot_va/predicted_latents"] == 4
    # 16 + 3 * 32 executable actions, a key frame every 4 (the last chunk may still be running at the stop)
    assert counts["/lingbot_va/action_tick"] >= 16 // 4 + 2 * 32 // 4


def test_ctrl_c_cancels_and_leaves_no_process_behind(tmp_path, ros_domain, node_env):
    import signal

    from lingbot_va_ros.testing.ros_harness import wait_until

    log = tmp_path / "runner.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lingbot_va_ros.bringup.runner", "--chunks", "0", "--mode", "sync",
             "--out", str(tmp_path / "demo"), "--domain-id", str(ros_domain), "--quiet", "--no-record"],
            env=node_env, stdout=out, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until(lambda: "running '" in log.read_text(), 200, "the episode to start", poll=0.2)
        children = _children_of(proc.pid)
        assert len(children) >= 4
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 130, log.read_text()[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "interrupted" in log.read_text()
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
