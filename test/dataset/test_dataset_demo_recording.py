"""Demo recording end to end over real DDS: the sim node, the recorder and lingbot-va-record-demo (scripted
source) run as separate processes; two short demos are recorded, exported, and the dataset is checked against
what a probe saw on the arm's command topic."""
from __future__ import annotations

import argparse
import time

import numpy as np
import pytest

from lingbot_va_ros.dataset.lerobot_format import read_lerobot_dataset, read_metadata
from lingbot_va_ros.dataset.testing import record_sim_demos
from lingbot_va_ros.teleop.record_demo import _load_params, build_parser
from lingbot_va_ros.teleop.sources import TeleopError, TopicSource

SECONDS = 3.5


def test_two_scripted_demos_recorded_over_dds_become_a_dataset(tmp_path, ros_domain, probe):
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import JointState

    inbox = probe.subscribe(JointState, "/sim_arm/joint_command",
                            QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE),
                            keep=lambda msg: np.asarray(msg.position, dtype=np.float32))
    sent = inbox.messages
    # the sim's renderer stalls on a loaded host: frame freshness is test_dataset_export's subject, not this one's
    result = record_sim_demos(tmp_path, n=2, seconds=SECONDS, seed=5, domain_id=ros_domain, timeout_s=240,
                              max_frame_age_s=3.0)
    assert len(result.bags) == 2
    meta = read_metadata(result.dataset)
    episodes = read_lerobot_dataset(result.dataset)
    assert meta.total_episodes == 2 and meta.fps == 30 and meta.camera_roles == sorted(
        ["cam_high", "cam_left_wrist", "cam_right_wrist"])
    deadline = time.monotonic() + 30   # the probe may still be draining its queue
    while time.monotonic() < deadline and len(sent) < sum(e.num_rows for e in episodes):
        time.sleep(0.1)
    commanded = np.stack(sent)
    for ep in episodes:
        assert ep.metadata["source"] == "demo" and ep.metadata["outcome"] == "completed"
        assert "block" in ep.task and ep.metadata["teleop_source"] == "ScriptedSource"
        # about duration x fps rows (ticks a loaded CPU missed are simply not there)
        assert 0.5 * SECONDS * 30 <= ep.num_rows <= 1.1 * SECONDS * 30, ep.num_rows
        # the actions are exactly the targets the arm received, in order
        first = np.flatnonzero(np.all(commanded == ep.actions[0], axis=1))
        assert first.size, "the first action was never sent to the arm"
        k = int(first[0])
        np.testing.assert_array_equal(commanded[k:k + ep.num_rows], ep.actions)
        # the arm moved and the cameras show a rendered scene that changes
        assert np.ptp(ep.actions, axis=0).max() > 0.01
        for role, frames in ep.camera_frames.items():
            assert frames.std() > 5.0, role
        wrist = ep.camera_frames[f"cam_{ep.metadata['teleop_arm']}_wrist"].astype(int)
        assert np.abs(wrist[-1] - wrist[0]).mean() > 1.0
    assert episodes[0].metadata["seed"] == 5 and episodes[1].metadata["seed"] == 6


def test_stop_command_and_ctrl_c_close_the_open_episode(tmp_path, ros_domain, probe, launch, node_env, ros_log_dir):
    """A stop message closes the episode with its outcome and the next one starts; Ctrl-C closes that one
    properly (metadata.yaml, outcome completed) and ends the session."""
    import json
    import signal
    import sys

    from std_msgs.msg import String

    from lingbot_va_ros.common.paths import share_dir
    from lingbot_va_ros.recording.bag_reader import find_bags, read_episode_info
    from lingbot_va_ros.recording.control import STATUS_TOPIC
    from lingbot_va_ros.testing.ros_harness import NodeProcess

    config = share_dir() / "config"
    launch("lingbot_va_ros.nodes.sim_arm", ros_args=["--params-file", str(config / "sim_arm.yaml"),
                                                     "-p", "camera_rate_hz:=10.0"])
    launch("lingbot_va_ros.nodes.recorder", ros_args=["--params-file", str(config / "recorder.yaml"), "-p",
                                                      f"recording_dir:={tmp_path / 'bags'}", "-p",
                                                      "status_period_s:=0.2"])
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    status = probe.subscribe(String, STATUS_TOPIC, latched, keep=lambda m: json.loads(m.data))
    stop = probe.publisher(String, "/lingbot_va/demo/stop", 10)
    demo = NodeProcess([sys.executable, "-m", "lingbot_va_ros.teleop.record_demo", "--source", "scripted",
                        "--episodes", "3", "--seed", "2", "--wait-timeout", "120"], node_env,
                       ros_log_dir / "record_demo.log", name="record_demo").start()
    try:
        first = status.wait_for(lambda s: s["state"] == "recording", timeout=120, what="the first demo episode")[-1]
        probe.wait_for_subscribers(stop, 1, timeout=60)
        stop.publish(String(data="failed"))
        status.wait_for(lambda s: s["state"] == "recording" and s["episode_id"] != first["episode_id"],
                        timeout=120, what="the second demo episode")
        demo.signal(signal.SIGINT)
        assert demo.proc.wait(timeout=120) == 0, demo.output()[-2000:]
    finally:
        demo.stop()
    bags = find_bags([tmp_path / "bags"])
    infos = [read_episode_info(b) for b in bags]          # metadata.yaml exists: both bags were closed
    assert [(i["outcome"], i["reason"]) for i in infos] == [("failed", "stop command"),
                                                           ("completed", "ended by Ctrl-C")]
    assert all(i["source"] == "demo" and "block" in i["prompt"] for i in infos)


def test_topic_source_follows_named_targets_and_holds_when_stale():
    from sensor_msgs.msg import JointState

    names = ["a", "b", "c"]
    src = TopicSource(names, {"joint_name_map": {"leader_b": "b"}, "stale_after_s": 0.2})
    q = np.array([1.0, 2.0, 3.0])
    assert src.target(0.0, q) is None                       # nothing received: hold
    src._on_targets(JointState(name=["leader_b", "zzz"], position=[5.0, 9.0]))
    np.testing.assert_array_equal(src.target(0.0, q), [1.0, 5.0, 3.0])   # unnamed joints keep the measured value
    src._on_targets(JointState(name=["a"], position=[float("nan")]))
    np.testing.assert_array_equal(src.target(0.0, q), [1.0, 5.0, 3.0])   # non-finite values are ignored
    src._received_at -= 1.0
    assert src.target(0.0, q) is None                       # the leader stopped publishing: hold
    with pytest.raises(TeleopError, match="settings"):
        TopicSource(names, {"nope": 1})


def test_demo_recorder_flags_override_the_params_file(tmp_path):
    path = tmp_path / "demo.yaml"
    path.write_text("/**/lingbot_va_demo_recorder:\n  ros__parameters:\n    prompt: wipe\n    episodes: 3\n"
                    "    source_settings: {object: block1}\n")
    args = build_parser().parse_args(["--params-file", str(path), "--episodes", "2", "--set", "sim_node=/sim2"])
    params = _load_params(args)
    assert params.prompt == "wipe" and params.episodes == 2
    assert params.source_settings == {"object": "block1", "sim_node": "/sim2"}
    bad = build_parser().parse_args(["--episodes", "0"])
    with pytest.raises(ValueError, match="episodes"):
        _load_params(bad)
    assert isinstance(bad, argparse.Namespace)
