"""The scripted demonstrator is a real controller of the real simulation: run in-process against BimanualSim
(the same physics the sim node steps), it grasps the block, lifts it and puts it back; seeds change the demo."""
from __future__ import annotations

import numpy as np
import pytest

from lingbot_va_ros.kinematics.bimanual import BimanualKinematics
from lingbot_va_ros.sim.arm_sim import BimanualSim
from lingbot_va_ros.teleop.scripted import ScriptedPick, grasp_yaw, objects_from_sim


@pytest.fixture(scope="module")
def kin():
    return BimanualKinematics(gripper_units="joint")


def run_pick(kin, seed: int, object_index: int, rate_hz: float = 30.0):
    sim = BimanualSim()
    target = objects_from_sim(sim)[object_index]
    ctl = ScriptedPick(kin, target, sim.joint_positions(), seed=seed)
    steps = int(round(1.0 / rate_hz / sim.timestep))
    t, heights, targets = 0.0, [], []
    while not ctl.done and t < 20.0:
        q = ctl.step(t, sim.joint_positions())
        targets.append(q)
        sim.set_target_vector(q)
        sim.step(steps)
        t += 1.0 / rate_hz
        heights.append(sim.object_positions()[target.name][2])
    return ctl, target, np.array(heights), np.array(targets), sim


@pytest.mark.parametrize("seed, object_index", [(0, 0), (1, 1)])
def test_scripted_pick_lifts_the_block_and_puts_it_back(kin, seed, object_index):
    ctl, target, heights, targets, sim = run_pick(kin, seed, object_index)
    assert ctl.done, f"stuck in phase {ctl.phase}"
    assert [name for _, name in ctl.log] == ["reach", "descend", "close", "lift", "hold", "lower", "open", "retreat"]
    assert heights.max() > target.position[2] + 0.05          # lifted at least 5 cm
    final = sim.object_positions()[target.name]
    assert np.linalg.norm(final[:2] - target.position[:2]) < 0.02 and final[2] < target.position[2] + 0.01
    assert ctl.arm == ("left" if target.position[1] >= 0 else "right")   # the arm on the block's side
    idle = slice(7, 14) if ctl.arm == "left" else slice(0, 7)
    assert np.ptp(targets[:, idle], axis=0).max() == 0.0                 # the other arm holds still


def test_seeds_change_the_demo_and_the_same_seed_repeats_it(kin):
    _, _, _, a, _ = run_pick(kin, 3, 2)
    _, _, _, b, _ = run_pick(kin, 3, 2)
    _, _, _, c, _ = run_pick(kin, 4, 2)
    np.testing.assert_array_equal(a, b)
    assert a.shape != c.shape or np.abs(a - c).max() > 0.01


def test_grasp_yaw_is_a_face_normal_near_the_home_direction():
    for block_yaw in np.linspace(-np.pi, np.pi, 17):
        yaw = grasp_yaw(block_yaw)
        assert abs((yaw - block_yaw) / (np.pi / 2) - round((yaw - block_yaw) / (np.pi / 2))) < 1e-9
        assert abs(yaw - np.pi / 2) <= np.pi / 4 + 1e-9
