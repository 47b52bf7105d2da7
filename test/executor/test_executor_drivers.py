"""Arm drivers: pure mapping/state helpers, the mock's lag, and the topic drivers over real DDS (in-process)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from lingbot_va_ros.common.registry import ARM_DRIVERS
from lingbot_va_ros.executor.arm_config import BIMANUAL_JOINTS
from lingbot_va_ros.executor.drivers.base import (ArmDriver, DriverError, StateAssembler, joint_scales,
                                                  resolve_joint_map)
from lingbot_va_ros.executor.drivers.joint_state_topic import JointStateTopicDriver
from lingbot_va_ros.executor.drivers.mock import MockDriver
from lingbot_va_ros.executor.drivers.sim import SIM_COMMAND_TOPIC, SimDriver
from lingbot_va_ros.testing.ros_harness import wait_until

GRIPPERS = np.array(["gripper" in n for n in BIMANUAL_JOINTS])


@pytest.mark.parametrize("name", ["mock", "sim", "joint_state_topic", "ros2_control"])
def test_registry_resolves_every_builtin_driver(name):
    cls = ARM_DRIVERS.load(name)
    assert issubclass(cls, ArmDriver)


def test_joint_map_and_scales():
    names = ("a", "b", "g")
    assert resolve_joint_map(names, None) == [(0, "a"), (1, "b"), (2, "g")]
    assert resolve_joint_map(names, {"g": "gripper", "a": "joint1"}) == [(2, "gripper"), (0, "joint1")]
    with pytest.raises(DriverError, match="not an executor joint"):
        resolve_joint_map(names, ["zz"])
    s = joint_scales(np.array([False, False, True]), "deg", 2.0)
    np.testing.assert_allclose(s, [180 / math.pi, 180 / math.pi, 2.0])


def test_state_assembler_maps_names_units_and_reports_the_oldest_joint():
    asm = StateAssembler(3)
    scale = np.array([180 / math.pi, 180 / math.pi, 2.0])
    left = [(0, "joint1"), (2, "gripper")]
    right = [(1, "joint1")]
    assert asm.sample() is None                      # nothing heard yet
    asm.update("L", left, ["gripper", "joint1", "other"], [0.08, 90.0, 5.0], scale, received=10.0)
    assert asm.sample() is None                      # joint 1 still missing
    asm.update("R", right, ["joint1"], [-45.0], scale, received=11.0)
    s = asm.sample()
    np.testing.assert_allclose(s.positions, [math.pi / 2, -math.pi / 4, 0.04])
    assert s.received == 10.0                        # as old as the oldest joint
    asm.update("R", right, [], [30.0], scale, received=12.0)   # no names: positional
    assert asm.sample().positions[1] == pytest.approx(math.radians(30.0))


def test_mock_driver_lag_converges_and_mirrors_without_lag(monkeypatch):
    d = MockDriver(None, ["a", "b"], {"initial_positions": {"a": 0.1}, "state_topic": ""})
    np.testing.assert_allclose(d.state().positions, [0.1, 0.0])
    d.send(np.array([0.2, 0.3]), 0)
    np.testing.assert_allclose(d.state().positions, [0.2, 0.3])
    # the lag is first order in the driver's clock: a controlled clock makes it exact at any host speed
    from lingbot_va_ros.executor.drivers import mock as mock_module

    clock = {"t": 100.0}
    monkeypatch.setattr(mock_module, "monotonic", lambda: clock["t"])
    lagged = MockDriver(None, ["a"], {"lag_tau": 0.05, "state_topic": ""})
    lagged.send(np.array([1.0]), 0)
    assert lagged.state().positions[0] == 0.0                     # no time has passed
    clock["t"] += 0.06
    lagged.send(np.array([1.0]), 0)
    assert lagged.state().positions[0] == pytest.approx(1.0 - math.exp(-0.06 / 0.05), abs=1e-12)
    clock["t"] += 1.0
    assert lagged.state().positions[0] == pytest.approx(1.0, abs=1e-8)


def test_driver_params_are_strict():
    with pytest.raises(DriverError, match="lag_taux"):
        MockDriver(None, ["a"], {"lag_taux": 1})
    with pytest.raises(DriverError, match="exactly one group"):
        JointStateTopicDriver(None, ["a", "b"], {"groups": [{"command_topic": "/x", "joints": ["a"]}]})


@pytest.mark.ros
@pytest.mark.timeout(60)
def test_piper_style_driver_over_dds(probe):
    """Two per-arm JointState command topics in degrees + gripper scale; state assembled from two topics."""
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import JointState

    joints = ["left_joint1", "left_gripper", "right_joint1", "right_gripper"]
    params = {"groups": [
        {"command_topic": "/left_arm/joint_ctrl_single", "state_topic": "/left_arm/joint_states_single",
         "joints": {"left_joint1": "joint1", "left_gripper": "gripper"}},
        {"command_topic": "/right_arm/joint_ctrl_single", "state_topic": "/right_arm/joint_states_single",
         "joints": {"right_joint1": "joint1", "right_gripper": "gripper"}}],
        "position_unit": "deg", "gripper_scale": 2.0, "velocity": [0.0, 50.0]}
    driver = JointStateTopicDriver(probe.node, joints, params, grippers=[False, True, False, True])
    driver.start()
    cmds = {side: probe.subscribe(JointState, f"/{side}_arm/joint_ctrl_single") for side in ("left", "right")}
    pubs = {side: probe.publisher(JointState, f"/{side}_arm/joint_states_single", qos_profile_sensor_data)
            for side in ("left", "right")}
    for side in ("left", "right"):
        probe.wait_for_subscribers(pubs[side])
        probe.wait_for_publishers(f"/{side}_arm/joint_ctrl_single")
    driver.send(np.array([math.pi / 2, 0.01, -math.pi / 4, 0.02]), 123_000_000_456)
    left = cmds["left"].wait_for(timeout=10)[0]
    right = cmds["right"].wait_for(timeout=10)[0]
    assert list(left.name) == ["joint1", "gripper"] and list(left.position) == pytest.approx([90.0, 0.02])
    assert list(right.position) == pytest.approx([-45.0, 0.04]) and list(right.velocity) == [0.0, 50.0]
    assert (left.header.stamp.sec, left.header.stamp.nanosec) == (123, 456)

    assert driver.state() is None
    pubs["left"].publish(JointState(name=["gripper", "joint1"], position=[0.06, 10.0]))
    pubs["right"].publish(JointState(name=["joint1", "gripper"], position=[-10.0, 0.0]))
    state = wait_until(driver.state, 10, "assembled state from both arms")
    np.testing.assert_allclose(state.positions, [math.radians(10), 0.03, math.radians(-10), 0.0])
    driver.stop()


@pytest.mark.ros
@pytest.mark.timeout(60)
def test_sim_driver_defaults_and_ros2_control_interfaces_over_dds(probe):
    from std_msgs.msg import Float64MultiArray
    from trajectory_msgs.msg import JointTrajectory
    from sensor_msgs.msg import JointState

    sim = SimDriver(probe.node, ["a", "b"])
    sim.start()
    inbox = probe.subscribe(JointState, SIM_COMMAND_TOPIC)
    probe.wait_for_publishers(SIM_COMMAND_TOPIC)
    sim.send(np.array([0.1, 0.2]), 0)
    msg = inbox.wait_for(timeout=10)[0]
    assert list(msg.name) == ["a", "b"] and list(msg.position) == pytest.approx([0.1, 0.2])

    rc = ARM_DRIVERS.load("ros2_control")
    jtc = rc(probe.node, ["a", "b"], {"controllers": [{"name": "/arm_controller", "joints": {"b": "j2", "a": "j1"}}]},
             period=0.02)
    fwd = rc(probe.node, ["a", "b"], {"interface": "forward_command",
                                      "controllers": [{"name": "/fwd", "joints": ["b", "a"]}]})
    jtc.start()
    fwd.start()
    traj = probe.subscribe(JointTrajectory, "/arm_controller/joint_trajectory")
    arr = probe.subscribe(Float64MultiArray, "/fwd/commands")
    probe.wait_for_publishers("/arm_controller/joint_trajectory")
    probe.wait_for_publishers("/fwd/commands")
    jtc.send(np.array([0.3, 0.4]), 0)
    fwd.send(np.array([0.3, 0.4]), 0)
    t = traj.wait_for(timeout=10)[0]
    assert list(t.joint_names) == ["j2", "j1"] and list(t.points[0].positions) == pytest.approx([0.4, 0.3])
    assert t.points[0].time_from_start.nanosec == 20_000_000
    assert list(arr.wait_for(timeout=10)[0].data) == pytest.approx([0.4, 0.3])
    for d in (sim, jtc, fwd):
        d.stop()
