"""URDF limits, arm YAMLs and the safety limiter at the final write (no ROS)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from lingbot_va_ros.common.paths import share_dir
from lingbot_va_ros.common.registry import ARM_DRIVERS
from lingbot_va_ros.executor.arm_config import ArmConfigError, load_arm_config
from lingbot_va_ros.executor.drivers.base import DriverError
from lingbot_va_ros.executor.limits import ACCELERATION, NONFINITE, POSITION, STEP, SafetyLimiter
from lingbot_va_ros.executor.testing import make_arm_config, make_limits, make_urdf
from lingbot_va_ros.executor.urdf import UrdfError, parse_urdf_limits

DT = 0.02
ARM_YAMLS = sorted(p.stem for p in (share_dir() / "config" / "arms").glob("*.yaml"))


# ------------------------------------------------------------------------------------------- URDF
def test_urdf_limits_from_string_with_soft_limits_continuous_and_mimic():
    urdf = """<robot name="r"><link name="a"/><link name="b"/><link name="c"/><link name="d"/>
      <joint name="j1" type="revolute"><parent link="a"/><child link="b"/>
        <limit lower="-1.5" upper="1.5" velocity="2.0" effort="1"/>
        <safety_controller soft_lower_limit="-1.2" soft_upper_limit="1.4" k_position="10" k_velocity="1"/></joint>
      <joint name="wheel" type="continuous"><parent link="b"/><child link="c"/><limit velocity="5" effort="1"/></joint>
      <joint name="follower" type="prismatic"><parent link="c"/><child link="d"/><mimic joint="j1"/>
        <limit lower="0" upper="0.1" velocity="1" effort="1"/></joint>
      <joint name="fixed" type="fixed"><parent link="a"/><child link="d"/></joint></robot>"""
    lim = parse_urdf_limits(urdf)
    assert set(lim) == {"j1", "wheel"}
    assert (lim["j1"].lower, lim["j1"].upper, lim["j1"].velocity) == (-1.2, 1.4, 2.0)
    assert lim["wheel"].lower == -math.inf and lim["wheel"].upper == math.inf


def test_urdf_errors_are_explicit(tmp_path):
    with pytest.raises(UrdfError, match="not found"):
        parse_urdf_limits(tmp_path / "missing.urdf")
    with pytest.raises(UrdfError, match="no <limit"):
        parse_urdf_limits('<robot name="r"><joint name="j" type="revolute"><parent link="a"/>'
                          '<child link="b"/></joint></robot>')
    with pytest.raises(UrdfError, match="invalid URDF XML"):
        parse_urdf_limits("<robot")


def test_project_urdf_has_every_executor_joint():
    path = share_dir() / "urdf" / "bimanual_arm.urdf"
    assert path.is_file(), path
    lim = parse_urdf_limits(path)
    assert set(make_arm_config().joints) <= set(lim)


# ------------------------------------------------------------------------------------------- arm YAML
def test_yaml_patterns_apply_in_order_and_can_only_tighten_urdf_limits():
    arm = make_arm_config(limits={
        "velocity_scale": 0.5,
        "default": {"position_margin": 0.02, "max_acceleration": 4.0, "max_step": 0.03, "max_first_jump": 0.2,
                    "tracking_tolerance": 0.5},
        "joints": {"left_*": {"max_step": 0.01}, "left_joint1": {"lower": -5.0, "upper": 1.0, "velocity": 10.0},
                   "*gripper*": {"max_step": 0.001, "max_acceleration": 0.5, "max_first_jump": 0.01}}})
    lim = arm.build_limits(make_urdf())
    j1, g = arm.joints.index("left_joint1"), arm.joints.index("left_gripper")
    assert lim.lower[j1] == -2.0 and lim.upper[j1] == 1.0          # -5 cannot widen, 1.0 tightens
    assert lim.velocity[j1] == pytest.approx(3.0 * 0.5)            # 10 cannot widen the URDF's 3.0
    assert lim.max_step[j1] == 0.01 and lim.max_step[arm.joints.index("right_joint1")] == 0.03
    assert lim.max_step[g] == 0.001 and lim.is_gripper[g] and not lim.is_gripper[j1]
    assert lim.stop_deceleration[g] == 0.5                          # defaults to max_acceleration


def test_joint_missing_from_urdf_needs_yaml_limits():
    arm = make_arm_config(joints=["left_joint1", "extra_joint"])
    with pytest.raises(ArmConfigError, match="extra_joint: not in the URDF"):
        arm.build_limits(make_urdf(["left_joint1"]))


def test_unknown_keys_in_arm_yaml_are_errors():
    with pytest.raises(ArmConfigError, match="rate_hzz"):
        make_arm_config(rate_hzz=30)


@pytest.mark.parametrize("name", ARM_YAMLS)
def test_every_shipped_arm_yaml_validates_with_its_driver(name):
    arm = load_arm_config(name)
    urdf = make_urdf(arm.joints) if not (share_dir() / "urdf" / "bimanual_arm.urdf").is_file() else None
    lim = arm.build_limits(urdf)
    assert lim.names == tuple(arm.joints)
    cls = ARM_DRIVERS.load(arm.driver)
    params = arm.driver_params
    if params.get("interface") == "follow_joint_trajectory":
        pytest.skip("needs control_msgs")
    driver = cls(None, arm.joints, params, period=1 / arm.rate_hz, grippers=arm.is_gripper())  # no ROS until start()
    assert driver.joint_names == tuple(arm.joints)


def test_arm_yaml_by_path(tmp_path: Path):
    p = tmp_path / "my_arm.yaml"
    p.write_text("driver: mock\nurdf: null\njoints: [a]\n"
                 "limits:\n  joints:\n    a: {lower: -1, upper: 1, velocity: 1}\n")
    arm = load_arm_config(str(p))
    lim = arm.build_limits()
    assert lim.names == ("a",) and lim.upper[0] == 1.0


# ------------------------------------------------------------------------------------------- limiter
@pytest.fixture
def lim():
    return make_limits()


def test_position_limit_with_margin(lim):
    sl = SafetyLimiter(lim, DT)
    q = np.zeros(14)
    q[0] = 1.97                        # inside the margin band edge (2.0 - 0.02 = 1.98)
    target = q.copy()
    target[0] = 2.5
    res = sl.limit(target, q, np.zeros(14))
    assert res.position[0] <= 1.98 + 1e-12 and res.flags[0] & POSITION


def test_hold_inside_the_margin_band_does_not_creep(lim):
    sl = SafetyLimiter(lim, DT)
    q = np.zeros(14)
    q[0] = 1.995                       # between the margin band (1.98) and the hard limit (2.0)
    res = sl.limit(q.copy(), q, np.zeros(14))
    assert res.position[0] == 1.995
    res = sl.limit(q + 0.01, q, np.zeros(14))      # may not go further out
    assert res.position[0] <= 1.995


def test_step_velocity_and_acceleration_are_limited_relative_to_the_last_command(lim):
    sl = SafetyLimiter(lim, DT)
    q, v = np.zeros(14), np.zeros(14)
    target = np.full(14, 0.5)
    target[[6, 13]] = 0.0
    res = sl.limit(target, q, v)
    # from rest: acceleration bound a*dt*dt = 4 * 0.02 * 0.02
    assert res.position[0] == pytest.approx(4.0 * DT * DT) and res.flags[0] & ACCELERATION
    # at speed: the step bound (0.03 rad = 1.5 rad/s) wins
    v_fast = np.full(14, 1.5)
    res = sl.limit(target, q, v_fast)
    assert res.position[0] == pytest.approx(0.03) and res.flags[0] & STEP


def test_nonfinite_target_holds_and_decelerates(lim):
    sl = SafetyLimiter(lim, DT)
    q, v = np.zeros(14), np.full(14, 0.5)
    target = np.full(14, np.nan)
    target[1] = np.inf
    res = sl.limit(target, q, v)
    assert np.isfinite(res.position).all() and res.flags[0] & NONFINITE
    assert abs(res.velocity[0]) <= 0.5 and abs(res.velocity[0]) >= 0.5 - 4.0 * DT - 1e-9


def test_braking_before_the_position_limit(lim):
    sl = SafetyLimiter(lim, DT)
    q, v = np.zeros(14), np.zeros(14)
    q[0], v[0] = 1.9, 1.5              # 8 cm before the margin band at full speed
    target = q.copy()
    target[0] = 2.5
    positions = []
    for _ in range(50):
        res = sl.limit(target, q, v)
        q, v = res.position, res.velocity
        positions.append(q[0])
    assert max(positions) <= 1.98 + 1e-12
    assert positions[-1] == pytest.approx(1.98, abs=1e-6)


def test_controlled_stop_decelerates_then_holds(lim):
    sl = SafetyLimiter(lim, DT)
    q, v = np.zeros(14), np.zeros(14)
    v[[0, 7]] = [1.2, -0.7]
    speeds = []
    for _ in range(40):
        res = sl.stop_step(q, v)
        q, v = res.position, res.velocity
        speeds.append(np.abs(v).max())
    assert speeds[-1] == 0.0 and np.all(np.diff(speeds) <= 1e-12)
    assert np.all(np.abs(np.diff([1.2] + speeds)) <= lim.stop_deceleration[0] * DT + 1e-9)
    assert speeds.index(0.0) <= math.ceil(1.2 / (lim.stop_deceleration[0] * DT))


def test_invalid_limits_are_refused():
    with pytest.raises(ArmConfigError, match="stop_deceleration"):
        make_arm_config(limits={"default": {"position_margin": 0.0, "max_acceleration": 1.0, "max_step": 0.1,
                                            "max_first_jump": 0.1, "tracking_tolerance": 0.0,
                                            "stop_deceleration": 2.0}}).build_limits(make_urdf())


def test_ros2_control_action_interface_without_control_msgs_fails_clearly():
    try:
        import control_msgs  # noqa: F401
        pytest.skip("control_msgs is installed here")
    except ImportError:
        pass
    cls = ARM_DRIVERS.load("ros2_control")
    with pytest.raises(DriverError, match="control_msgs.*not on PyPI"):
        cls(None, ["a"], {"interface": "follow_joint_trajectory",
                          "controllers": [{"name": "/arm", "joints": ["a"]}]})


def test_shipped_executor_params_file_validates():
    from lingbot_va_ros.executor.params import ExecutorParams

    p = ExecutorParams.from_yaml(share_dir() / "config" / "executor.yaml", "lingbot_va_executor")
    assert p == ExecutorParams()    # the file documents the defaults


def test_arm_yaml_extends_a_base_file(tmp_path):
    from lingbot_va_ros.executor.arm_config import ArmConfigError, load_arm_config

    strict, demo = load_arm_config("sim"), load_arm_config("sim_random_policy")
    assert demo.driver == strict.driver and demo.joints == strict.joints and demo.rate_hz == strict.rate_hz
    assert demo.limits.default.max_first_jump == 6.0 and strict.limits.default.max_first_jump == 0.2
    # untouched nested keys come from the base
    assert demo.limits.default.max_step == strict.limits.default.max_step
    loop_a, loop_b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    loop_a.write_text(f"extends: {loop_b}\n")
    loop_b.write_text(f"extends: {loop_a}\n")
    with pytest.raises(ArmConfigError, match="cycle"):
        load_arm_config(str(loop_a))
