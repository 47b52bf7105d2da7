"""The ee_relative action space: RoboTwin 16-d relative EEF -> joints through IK, and back through FK."""
from __future__ import annotations

import time

import numpy as np
import pytest

from lingbot_va_ros.executor.action_space import EE16_CHANNELS, ActionSpaceError, EeRelativeSpace
from lingbot_va_ros.executor.arm_config import BIMANUAL_JOINTS
from lingbot_va_ros.executor.chunks import ChunkPreparer, PreparedChunk, Rejection, ValidationSettings
from lingbot_va_ros.executor.testing import chunk_data, make_limits

LIM = make_limits()


class LinearKinematics:
    """A stand-in with an exact inverse: ee = [q_arm[:3], unit quat, gripper] per arm (quat from q_arm[3])."""

    joint_names = BIMANUAL_JOINTS

    def fk(self, q):
        q = np.asarray(q, float)
        out = []
        for a in (slice(0, 7), slice(7, 14)):
            arm = q[a]
            half = arm[3] / 2
            out += [*arm[:3], 0.0, 0.0, np.sin(half), np.cos(half), arm[6] / 0.04]
        return np.array(out)

    def ik(self, ee, seed):
        ee = np.asarray(ee, float)
        q = np.zeros(14)
        for k, a in ((0, slice(0, 8)), (7, slice(8, 16))):
            e = ee[a]
            if abs(e[0]) > 1.5:
                raise ValueError(f"x={e[0]:.2f} out of reach")
            q[k:k + 3] = e[:3]
            q[k + 3] = 2 * np.arctan2(e[5], e[6])
            q[k + 6] = e[7] * 0.04
        return q


def _preparer(space, reference):
    return ChunkPreparer({"ee_relative": space}, LIM, 0.02, ValidationSettings(), reference_q=lambda: reference)


def test_ee_relative_chunk_becomes_joint_targets_relative_to_the_episode_start():
    q0 = np.zeros(14)
    q0[[0, 7]] = 0.1
    q0[[6, 13]] = 0.02
    space = EeRelativeSpace(None, BIMANUAL_JOINTS, kinematics=LinearKinematics())
    prep = _preparer(space, q0)
    rel = np.zeros((3, 16))
    rel[:, [6, 14]] = 1.0                       # identity rotation delta (xyzw)
    rel[:, [7, 15]] = 0.5                       # gripper half open (absolute)
    rel[:, 0] = [0.001, 0.002, 0.003]           # left x moves 1 mm per action
    item = prep.prepare(chunk_data(rel, names=EE16_CHANNELS, space="ee_relative"))
    assert isinstance(item, PreparedChunk), item
    np.testing.assert_allclose(item.joints[:, 0], 0.1 + np.array([0.001, 0.002, 0.003]), atol=1e-6)
    np.testing.assert_allclose(item.joints[:, 6], 0.02, atol=1e-9)
    # executed rows go back through FK and the same relative convention
    commanded = item.joints.copy()
    commanded[1, 0] += 0.01
    out = item.report_rows(commanded, np.array([False, True, False]), np.arange(3))
    assert out[0].tobytes() == rel[0].astype(np.float32).tobytes()
    assert out[1, 0] == pytest.approx(0.012, abs=1e-6)


def test_ee_relative_unreachable_rejects_the_whole_chunk():
    space = EeRelativeSpace(None, BIMANUAL_JOINTS, kinematics=LinearKinematics())
    prep = _preparer(space, np.zeros(14))
    rel = np.zeros((2, 16))
    rel[:, [6, 14]] = 1.0
    rel[1, 0] = 5.0
    item = prep.prepare(chunk_data(rel, names=EE16_CHANNELS, space="ee_relative"))
    assert isinstance(item, Rejection) and item.category == "conversion" and "IK failed for row 1" in item.reason


def test_missing_kinematics_is_a_clear_rejection_not_a_crash(tmp_path):
    space = EeRelativeSpace(str(tmp_path / "no_such.urdf"), BIMANUAL_JOINTS)
    ok, why = space.available()
    assert not ok and "ee_relative action space unavailable" in why
    with pytest.raises(ActionSpaceError):
        space.begin_episode(np.zeros(14))


def test_real_kinematics_round_trip():
    from lingbot_va_ros import kinematics as kin_mod
    from lingbot_va_ros.common.paths import share_dir
    from lingbot_va_ros.executor.arm_config import load_arm_config
    from lingbot_va_ros.model.actions import absolute_to_relative_eef

    urdf = share_dir() / "urdf" / "bimanual_arm.urdf"
    assert urdf.is_file(), urdf
    kin = kin_mod.BimanualKinematics(urdf)
    limits = load_arm_config("sim").build_limits(str(urdf))
    q0 = np.array([0.1, 0.5, -0.5, 0.1, 0.2, 0.1, 0.02] * 2)
    qs = q0 + np.outer(np.arange(1, 9), [0.002] * 6 + [0.0] + [-0.002] * 6 + [0.0])
    rel = absolute_to_relative_eef(np.stack([kin.fk(q) for q in qs]), kin.fk(q0))
    space = EeRelativeSpace(str(urdf), BIMANUAL_JOINTS, kinematics=kin)
    prep = ChunkPreparer({"ee_relative": space}, limits, 0.02, ValidationSettings(), reference_q=lambda: q0)
    t = time.perf_counter()
    item = prep.prepare(chunk_data(rel, names=EE16_CHANNELS, space="ee_relative"))
    per_row_ms = (time.perf_counter() - t) / len(qs) * 1e3
    assert isinstance(item, PreparedChunk), item
    np.testing.assert_allclose(item.joints, qs, atol=5e-3)
    back = item.report_rows(item.joints, np.ones(len(qs), bool), np.arange(len(qs)))
    np.testing.assert_allclose(back[:, :3], rel[:, :3], atol=2e-3)        # xyz within IK tolerance (1 mm)
    print(f"ee_relative IK: {per_row_ms:.1f} ms per row")
