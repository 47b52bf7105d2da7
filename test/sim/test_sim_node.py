"""sim_arm node in its own process over real DDS: stamp timeline, images, command following and rejection."""
from __future__ import annotations

import math
import time

import numpy as np
import pytest
import yaml
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, JointState

from lingbot_va_ros.common import qos
from lingbot_va_ros.common.conversions import image_msg_to_rgb, stamp_to_ns
from lingbot_va_ros.common.paths import config_path
from lingbot_va_ros.kinematics import JOINT_NAMES
from lingbot_va_ros.testing.ros_harness import wait_until

pytestmark = [pytest.mark.ros, pytest.mark.timeout(120)]

NODE = "lingbot_va_ros.nodes.sim_arm"
CAMERAS = ("cam_high", "cam_left_wrist", "cam_right_wrist")
JOINT_HZ, CAMERA_HZ = 100.0, 15.0


def _ros_args(**params) -> list[str]:
    args = []
    for key, value in params.items():
        args += ["-p", f"{key}:={value}"]
    return args


def test_publishes_joint_states_and_cameras_on_the_configured_timeline(probe, launch, tmp_path):
    """Stamps are the simulated instant: joint states are one configured period of sim time apart whatever the
    host's speed (a loaded host delays their delivery, not their spacing). How many per wall-clock second
    arrive is a benchmark (benchmarks/bench_sim_rates.py -> docs/benchmarks/sim_rates.md)."""
    # the shipped params file, through rcl's parser, with the rates of this test
    doc = yaml.safe_load(config_path("sim_arm.yaml").read_text())
    doc["/**/sim_arm"]["ros__parameters"].update(joint_state_rate_hz=JOINT_HZ, camera_rate_hz=CAMERA_HZ,
                                             stats_period_s=2.0)
    params = tmp_path / "sim_arm.yaml"
    params.write_text(yaml.safe_dump(doc))
    launch(NODE, params_file=params)
    # deep best-effort readers: DDS keeps delivering while this process is descheduled
    deep = QoSProfile(depth=1000, reliability=ReliabilityPolicy.BEST_EFFORT, history=HistoryPolicy.KEEP_LAST)
    joints = probe.subscribe(JointState, "/joint_states", deep)
    images = {c: probe.subscribe(Image, f"/sim_arm/{c}/image_raw", deep) for c in CAMERAS}
    info = probe.subscribe(CameraInfo, "/sim_arm/cam_high/camera_info", qos.SENSOR_DATA)
    for cam in CAMERAS:
        images[cam].wait_for(count=6, timeout=60, what=f"{cam} images")
    joints.wait_for(count=200, timeout=60, what="joint states")

    js = joints.messages[-1]
    assert list(js.name) == list(JOINT_NAMES)
    assert len(js.position) == len(js.velocity) == len(js.effort) == 14
    stamps = np.array([stamp_to_ns(m.header.stamp) for m in joints.messages[:200]], dtype=np.int64)
    gaps_ms = np.round(np.diff(stamps) / 1e6, 1)
    assert np.all(gaps_ms > 0), "joint state stamps must increase"
    values, counts = np.unique(gaps_ms, return_counts=True)
    # the spacing is the configured period; other gaps are whole periods a loaded host's DDS dropped, or a
    # re-anchor after a stall longer than max_lag_s (both rare)
    assert values[np.argmax(counts)] == 1e3 / JOINT_HZ and counts.max() >= 0.5 * len(gaps_ms), dict(zip(values, counts))
    sizes = {"cam_high": (240, 320), "cam_left_wrist": (120, 160), "cam_right_wrist": (120, 160)}
    for cam in CAMERAS:
        msg = images[cam].messages[-1]
        rgb = image_msg_to_rgb(msg)
        assert rgb.shape == (*sizes[cam], 3) and rgb.std() > 15 and msg.encoding == "rgb8"
        assert msg.header.frame_id == f"{cam}_optical_frame"
        # stamped with the simulated instant on the ROS clock: never ahead of now, and on today's clock (a stamp
        # in sim time from 0 would be 56 years old)
        age = (time.time_ns() - stamp_to_ns(msg.header.stamp)) / 1e9
        assert -0.01 < age < 60.0, age
        cam_stamps = [stamp_to_ns(m.header.stamp) for m in images[cam].messages]
        assert all(b > a for a, b in zip(cam_stamps, cam_stamps[1:])), f"{cam} stamps must increase"
    ci = info.wait_for(timeout=5, what="camera_info")[-1]
    assert (ci.width, ci.height) == (320, 240) and ci.k[0] > 0 and ci.header.frame_id == "cam_high_optical_frame"


def test_follows_commands_and_rejects_bad_ones(probe, launch):
    node = launch(NODE, ros_args=_ros_args(camera_rate_hz=0.0))
    joints = probe.subscribe(JointState, "/joint_states", qos.SENSOR_DATA)
    cmd = probe.publisher(JointState, "/sim_arm/joint_command", qos.COMMAND)
    probe.wait_for_subscribers(cmd, timeout=60)
    first = joints.wait_for(timeout=30, what="joint states")[0]
    start = dict(zip(first.name, first.position))

    def position(name: str) -> float:
        last = joints.messages[-1]
        return last.position[list(last.name).index(name)]

    target = start["left_joint1"] + 0.4
    cmd.publish(JointState(name=["left_joint1", "left_gripper"], position=[target, 0.04]))
    wait_until(lambda: abs(position("left_joint1") - target) < 0.01 and abs(position("left_gripper") - 0.04) < 2e-3,
               10, "left_joint1 and the gripper to reach their targets", on_timeout=node.output)

    # A NaN and an unknown name are rejected as whole messages; the valid command after them is applied,
    # which (commands are handled in order) proves the bad ones were handled and changed nothing.
    cmd.publish(JointState(name=["left_joint1", "right_joint1"], position=[math.nan, 0.3]))
    cmd.publish(JointState(name=["left_joint9"], position=[0.1]))
    cmd.publish(JointState(name=["right_joint2"], position=[start["right_joint2"] + 0.3]))
    wait_until(lambda: abs(position("right_joint2") - start["right_joint2"] - 0.3) < 0.01, 10,
               "right_joint2 to follow the valid command", on_timeout=node.output)
    assert abs(position("right_joint1") - start["right_joint1"]) < 1e-3
    assert abs(position("left_joint1") - target) < 0.01
    assert all(np.isfinite(m.position).all() for m in joints.messages)
    wait_until(lambda: "non-finite position for ['left_joint1']" in node.output()
               and "unknown joint(s) ['left_joint9']" in node.output(), 5, "rejection reasons in the log",
               on_timeout=node.output)
    assert node.alive()
