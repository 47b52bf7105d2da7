"""MuJoCo model built from the URDF: structure, servo tracking, command validation, determinism."""
from __future__ import annotations

import numpy as np
import pytest

from lingbot_va_ros.sim.gl import ensure_gl_backend

ensure_gl_backend()  # before the first `import mujoco` of this process
import mujoco  # noqa: E402

from lingbot_va_ros.kinematics import JOINT_NAMES, BimanualKinematics, load_joint_limits  # noqa: E402
from lingbot_va_ros.sim.arm_sim import BimanualSim, CommandError  # noqa: E402
from lingbot_va_ros.sim.params import CAMERAS, SimArmParams  # noqa: E402


@pytest.fixture(scope="module")
def sim():
    return BimanualSim()


def test_model_comes_from_the_urdf(sim):
    m = sim.model
    limits = load_joint_limits(sim.layout.urdf_path)
    for name in JOINT_NAMES:
        jid = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, name)
        np.testing.assert_allclose(m.jnt_range[jid], limits[name][:2])
        aid = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_ACTUATOR, name)
        assert m.actuator_trnid[aid, 0] == jid
    assert m.nu == 14 and m.neq == 2                    # 14 servos, 2 mimic fingers
    for cam in CAMERAS:
        cid = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_CAMERA, cam)
        assert mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_BODY, m.cam_bodyid[cid]) == f"{cam}_optical_frame"
    assert set(sim.object_positions()) == {"block0", "block1", "block2", "bowl"}


def test_tool_frames_match_the_kinematics(sim):
    kin = BimanualKinematics(sim.layout.urdf_path)
    sim.reset(q0=[0.3, 0.5, 0.2, -0.4, 0.6, 1.0, 0.01, -0.2, 0.1, 0.9, 0.5, -0.3, -1.0, 0.03])
    q = sim.joint_positions()
    for arm, s in (("left", slice(0, 6)), ("right", slice(7, 13))):
        np.testing.assert_allclose(sim.body_pose(f"{arm}_ee"), kin.arm_pose(arm, q[s]), atol=1e-9)


def test_position_targets_are_tracked(sim):
    sim.reset()
    target = sim.joint_positions()
    target[:6] += [0.4, 0.3, -0.3, 0.5, 0.3, 0.8]
    target[6] = 0.04
    target[7:13] -= [0.4, 0.2, 0.2, 0.5, 0.3, 0.8]
    assert sim.set_target_vector(target) == []
    sim.step(int(1.5 / sim.timestep))
    np.testing.assert_allclose(sim.joint_positions(), target, atol=2e-3)
    assert np.all(np.abs(sim.joint_velocities()) < 0.05)
    mimic = sim.data.qpos[sim.model.jnt_qposadr[mujoco.mj_name2id(sim.model, mujoco.mjtObj.mjOBJ_JOINT,
                                                                   "left_gripper_mimic")]]
    assert mimic == pytest.approx(0.04, abs=2e-3)       # the second finger follows


def test_setpoint_moves_no_faster_than_the_velocity_limit(sim):
    sim.reset()
    start = sim.joint_positions()[0]
    sim.set_targets(["left_joint1"], [start + 2.0])
    sim.step(int(0.2 / sim.timestep))
    moved = sim.joint_positions()[0] - start
    assert 0.1 < moved <= 0.2 * sim.velocity_limits[0] + 1e-6


def test_commands_are_validated(sim):
    with pytest.raises(CommandError, match="unknown joint"):
        sim.set_targets(["left_joint7"], [0.0])
    with pytest.raises(CommandError, match=r"non-finite position for \['right_joint2'\]"):
        sim.set_targets(["right_joint1", "right_joint2"], [0.1, float("nan")])
    with pytest.raises(CommandError, match="2 names but 1 positions"):
        sim.set_targets(["right_joint1", "right_joint2"], [0.1])
    with pytest.raises(CommandError, match="duplicate"):
        sim.set_targets(["right_joint1", "right_joint1"], [0.1, 0.2])
    before = sim.targets
    assert np.array_equal(sim.targets, before), "a rejected command changes nothing"
    assert sim.set_targets(["left_joint2"], [9.0]) == ["left_joint2"]
    assert sim.targets[1] == 2.0                         # clipped to the URDF limit


def _run(seed: int) -> tuple[np.ndarray, dict]:
    s = BimanualSim(SimArmParams(seed=seed))
    placed = s.object_positions()
    s.set_targets(["left_joint1", "right_joint2", "left_gripper"], [0.3, 0.4, 0.0])
    s.step(300)
    return s.data.qpos.copy(), placed


def test_deterministic_given_a_seed():
    q1, placed1 = _run(3)
    q2, placed2 = _run(3)
    assert np.array_equal(q1, q2)                        # bit-identical
    _, placed3 = _run(4)
    assert any(np.linalg.norm(placed1[k][:2] - placed3[k][:2]) > 0.01 for k in placed1)
    for name, pos in placed1.items():                    # inside the region, apart from each other
        assert 0.2 <= pos[0] <= 0.45 and -0.25 <= pos[1] <= 0.25
        others = [np.linalg.norm(pos[:2] - p[:2]) for k, p in placed1.items() if k != name]
        assert min(others) > 0.05


def test_objects_rest_on_the_table(sim):
    sim.reset(seed=1)
    sim.step(500)
    for name, pos in sim.object_positions().items():
        assert 0.0 < pos[2] < 0.05, (name, pos)
