"""FK in the RoboTwin 16-d layout and IK round trips / failures of BimanualKinematics."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from lingbot_va_ros.kinematics import BimanualKinematics, UnreachableError

HOME = np.array([0.0, 0.0, 0.6, 0.0, 0.97, 0.0, 0.02] * 2)


@pytest.fixture(scope="module")
def kin():
    return BimanualKinematics()


def _errors(kin, ee_a, ee_b):
    out = []
    for s in (slice(0, 8), slice(8, 16)):
        a, b = ee_a[s], ee_b[s]
        ang = (Rotation.from_quat(a[3:7]).inv() * Rotation.from_quat(b[3:7])).magnitude()
        out.append((np.linalg.norm(a[:3] - b[:3]), ang))
    return out


def test_fk_layout_at_zero_and_home(kin):
    ee = kin.fk(np.zeros(14))
    assert ee.shape == (16,)
    # q = 0: arm in an "L", tool frame aligned with the base frame, 0.395 m forward of each mount
    np.testing.assert_allclose(ee[0:3], [0.395, 0.3, 0.41], atol=1e-9)
    np.testing.assert_allclose(ee[3:7], [0, 0, 0, 1], atol=1e-9)
    np.testing.assert_allclose(ee[8:11], [0.395, -0.3, 0.41], atol=1e-9)
    assert ee[7] == 0.0 and ee[15] == 0.0                      # gripper closed -> 0
    home = kin.fk(HOME)
    assert home[7] == pytest.approx(0.5)                       # 0.02 of 0.04 m -> half open
    approach = Rotation.from_quat(home[3:7]).apply([1, 0, 0])
    np.testing.assert_allclose(approach, [0, 0, -1], atol=1e-3)  # home: grippers point down at the table
    assert 0.05 < home[2] < 0.2
    assert home[3 + 3] >= 0 and home[8 + 6] >= 0               # canonical sign w >= 0
    batch = kin.fk(np.stack([np.zeros(14), HOME]))
    np.testing.assert_allclose(batch[1], home)


def test_fk_mirrors_between_arms(kin):
    q = HOME.copy()
    q[0], q[7] = 0.3, -0.3
    ee = kin.fk(q)
    assert ee[1] == pytest.approx(-ee[9]) and ee[0] == pytest.approx(ee[8])


def test_ik_round_trip_from_nearby_seed(kin):
    rng = np.random.default_rng(7)
    lo, hi = kin.limits.lower, kin.limits.upper
    for _ in range(12):
        q = rng.uniform(lo + 0.1 * (hi - lo), hi - 0.1 * (hi - lo))
        ee = kin.fk(q)
        seed = np.clip(q + rng.normal(0, 0.1, 14), lo, hi)
        q_ik = kin.ik(ee, seed)
        assert not kin.limits.violations(q_ik)
        for pos_err, ang_err in _errors(kin, ee, kin.fk(q_ik)):
            assert pos_err < kin.position_tolerance and ang_err < kin.orientation_tolerance
        np.testing.assert_allclose(q_ik[[6, 13]], q[[6, 13]], atol=1e-12)  # grippers map back exactly


def test_ik_tracks_a_workspace_path_from_home(kin):
    """What the executor does: consecutive 16-d targets, each seeded with the previous joints."""
    q = HOME.copy()
    start = kin.fk(q)
    for t in np.linspace(0, 1, 11):
        target = start.copy()
        target[0:3] += [0.15 * t, -0.1 * t, 0.1 * t]                        # left: forward, in, up
        rot = Rotation.from_rotvec([0, 0, 0.5 * t]) * Rotation.from_quat(start[11:15])
        target[11:15] = rot.as_quat()                                        # right: turn the wrist
        q_next = kin.ik(target, q)
        assert np.max(np.abs(q_next - q)) < 0.4, "jumped to another IK branch"
        q = q_next
        for pos_err, ang_err in _errors(kin, target, kin.fk(q)):
            assert pos_err < 1e-3 and ang_err < 1e-2


def test_ik_holding_still_returns_the_seed(kin):
    np.testing.assert_array_equal(kin.ik(kin.fk(HOME), HOME)[:6], HOME[:6])


def test_unreachable_target_names_arm_and_errors(kin):
    target = kin.fk(HOME)
    target[8:11] = [1.2, -0.3, 0.1]                  # right arm: 1.2 m forward, beyond reach
    with pytest.raises(UnreachableError) as info:
        kin.ik(target, HOME)
    err = info.value
    assert err.arm == "right" and err.position_error > 0.3
    assert "right arm cannot reach" in str(err) and "tolerance 1.0 mm" in str(err)


def test_ik_rejects_malformed_input(kin):
    ee = kin.fk(HOME)
    with pytest.raises(ValueError, match="16-d"):
        kin.ik(ee[:14], HOME)
    bad = ee.copy()
    bad[2] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        kin.ik(bad, HOME)
    zero_quat = ee.copy()
    zero_quat[3:7] = 0
    with pytest.raises(ValueError, match="quaternion"):
        kin.ik(zero_quat, HOME)


def test_gripper_units(kin):
    joint_units = BimanualKinematics(gripper_units="joint")
    assert joint_units.fk(HOME)[7] == pytest.approx(0.02)
    ee = kin.fk(HOME)
    ee[7], ee[15] = 1.0, 1.7                          # beyond fully open: clipped to the joint limit
    q = kin.ik(ee, HOME)
    assert q[6] == pytest.approx(0.04) and q[13] == pytest.approx(0.04)


def test_ik_without_a_seed_starts_from_zero(kin):
    target = kin.fk(HOME)
    for pos_err, ang_err in _errors(kin, target, kin.fk(kin.ik(target))):
        assert pos_err < 1e-3 and ang_err < 1e-2
