"""Action conversions: quantile (de)normalisation, 30-d gather/scatter, chunk <-> rows, RoboTwin relative EEF."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from lingbot_va_ros.model import actions as A
from lingbot_va_ros.model.embodiment import load_embodiment

FIXTURE = Path(__file__).resolve().parents[1].joinpath("fixtures", "reference_episode_small", "episode.json")


@pytest.fixture(scope="module")
def robotwin():
    return load_embodiment("robotwin")


def test_inverse_ids_match_the_reference_server_config():
    assert FIXTURE.is_file(), f"{FIXTURE} missing (the tests carry it in test/fixtures)"
    cfg = json.loads(FIXTURE.read_text())["config"]
    assert A.inverse_channel_ids(cfg["used_action_channel_ids"]) == cfg["inverse_used_action_channel_ids"]


def test_quantile_formulas_exactly(robotwin):
    rng = np.random.default_rng(0)
    raw = rng.normal(size=(30, 2, 16))
    q01, q99 = np.array(robotwin.q01)[:, None, None], np.array(robotwin.q99)[:, None, None]
    expected = (raw - q01) / (q99 - q01 + 1e-6) * 2 - 1
    np.testing.assert_allclose(A.quantile_normalize(raw, robotwin.q01, robotwin.q99), expected, rtol=1e-6, atol=1e-5)
    back = A.quantile_denormalize(expected, robotwin.q01, robotwin.q99)
    np.testing.assert_allclose(back, raw, rtol=1e-5, atol=1e-5)


def test_gather_scatter_round_trip(robotwin):
    ids = robotwin.used_action_channel_ids
    used = np.arange(16 * 3, dtype=np.float32).reshape(16, 3) + 1
    full = A.scatter_to_unified(used, ids)
    assert full.shape == (30, 3)
    assert np.all(full[[i for i in range(30) if i not in ids]] == 0)
    np.testing.assert_array_equal(full[28], used[7])          # left gripper sits in unified channel 28
    np.testing.assert_array_equal(A.gather_used(full, ids), used)
    with pytest.raises(ValueError, match="16 used channels"):
        A.scatter_to_unified(used[:15], ids)


def test_normalize_used_masks_unused_channels_and_round_trips(robotwin):
    ids, q01, q99 = robotwin.used_action_channel_ids, robotwin.q01, robotwin.q99
    rng = np.random.default_rng(1)
    used = rng.uniform(-0.1, 0.3, size=(16, 2, 16)).astype(np.float32)
    normalized = A.normalize_used(used, ids, q01, q99)
    assert normalized.shape == (30, 2, 16)
    assert np.all(normalized[14:28] == 0)                     # unused: zero, not (0 - 0)/1e-6*2-1 = -1
    np.testing.assert_allclose(A.denormalize_used(normalized, ids, q01, q99), used, atol=1e-6)


def test_placeholder_renormalises_to_zero(robotwin):
    ids, q01, q99 = robotwin.used_action_channel_ids, robotwin.q01, robotwin.q99
    placeholder = A.placeholder_action(ids, q01, q99)
    assert placeholder.shape == (16,)
    assert placeholder[7] == pytest.approx(0.5, abs=1e-6) and placeholder[3] == pytest.approx(0.0, abs=1e-6)
    np.testing.assert_allclose(A.normalize_used(placeholder[:, None], ids, q01, q99), 0.0, atol=1e-6)


def test_matches_the_world_model_normalisation(robotwin):
    from lingbot_va_ros.model import world_model as wm
    import torch

    from lingbot_va_ros.model.tiny_checkpoint import build_transformer

    model = wm.LingBotVAWorldModel(build_transformer(0), wm.WorldModelConfig(**robotwin.world_model_kwargs()))
    rng = np.random.default_rng(2)
    executed = rng.uniform(-0.1, 0.3, size=(16, 2, 16)).astype(np.float32)
    theirs = model.normalize_actions(executed)[..., 0].numpy()
    ours = A.quantile_normalize(A.scatter_to_unified(executed, robotwin.used_action_channel_ids),
                                robotwin.q01, robotwin.q99)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)
    normalized = torch.from_numpy(rng.normal(size=(30, 2, 16, 1)).astype(np.float32))
    np.testing.assert_allclose(A.denormalize_used(normalized[..., 0].numpy(), robotwin.used_action_channel_ids,
                                                  robotwin.q01, robotwin.q99),
                               model.denormalize_actions(normalized).numpy(), rtol=1e-5, atol=1e-6)


# ---- chunk <-> rows --------------------------------------------------------------------------------

def test_chunk_to_rows_order_and_first_chunk_skip():
    chunk = np.arange(3 * 2 * 4).reshape(3, 2, 4)             # C=3, F=2, A=4
    rows = A.chunk_to_rows(chunk, first_chunk=False)
    assert rows.shape == (8, 3)
    np.testing.assert_array_equal(rows[5], chunk[:, 1, 1])    # frame-major, then action
    first = A.chunk_to_rows(chunk, first_chunk=True)
    np.testing.assert_array_equal(first, rows[4:])


def test_rows_to_chunk_round_trip_with_placeholder():
    rng = np.random.default_rng(3)
    chunk = rng.normal(size=(5, 3, 8)).astype(np.float32)
    placeholder = np.arange(5, dtype=np.float32)
    regular = A.rows_to_chunk(A.chunk_to_rows(chunk, False), 3, 8, False)
    np.testing.assert_array_equal(regular, chunk)
    first = A.rows_to_chunk(A.chunk_to_rows(chunk, True), 3, 8, True, placeholder)
    np.testing.assert_array_equal(first[:, 1:], chunk[:, 1:])
    np.testing.assert_array_equal(first[:, 0], np.repeat(placeholder[:, None], 8, axis=1))
    with pytest.raises(ValueError, match="expected 16 executed rows"):
        A.rows_to_chunk(np.zeros((24, 5)), 3, 8, True, placeholder)
    with pytest.raises(ValueError, match="placeholder"):
        A.rows_to_chunk(np.zeros((16, 5)), 3, 8, True)


# ---- RoboTwin relative EEF --------------------------------------------------------------------------

def _random_poses(rng, n):
    poses = np.zeros((n, 16))
    for arm in (0, 8):
        poses[:, arm:arm + 3] = rng.uniform(-0.5, 0.5, size=(n, 3))
        poses[:, arm + 3:arm + 7] = Rotation.random(n, random_state=rng.integers(1 << 31)).as_quat()
        poses[:, arm + 7] = rng.uniform(0, 1, size=n)
    return poses


def test_relative_absolute_round_trip():
    rng = np.random.default_rng(4)
    init = _random_poses(rng, 1)[0]
    absolute = _random_poses(rng, 20)
    relative = A.absolute_to_relative_eef(absolute, init)
    back = A.relative_to_absolute_eef(relative, init)
    for arm in (0, 8):
        np.testing.assert_allclose(back[:, arm:arm + 3], absolute[:, arm:arm + 3], atol=1e-12)
        assert A.quaternions_equivalent(back[:, arm + 3:arm + 7], absolute[:, arm + 3:arm + 7], atol=1e-9)
        np.testing.assert_array_equal(back[:, arm + 7], absolute[:, arm + 7])
    again = A.absolute_to_relative_eef(back, init)
    for arm in (0, 8):
        assert A.quaternions_equivalent(again[:, arm + 3:arm + 7], relative[:, arm + 3:arm + 7], atol=1e-9)


def test_relative_convention_is_world_translation_and_body_rotation():
    """p = p0 + dp (no rotation of dp), R = R0 * dR with scipy xyzw on the stored tuple."""
    init = np.zeros(16)
    init[0:3] = [0.1, 0.2, 0.3]
    init[3:7] = Rotation.from_euler("z", 90, degrees=True).as_quat()
    init[8:16] = [0, 0, 0, 0, 0, 0, 1, 0]
    rel = np.zeros(16)
    rel[0:3] = [0.05, 0, 0]
    rel[3:7] = Rotation.from_euler("x", 90, degrees=True).as_quat()
    rel[7] = 0.7
    rel[8:16] = [0, 0, 0, 0, 0, 0, 2.0, 0.3]                    # non-unit identity: renormalised
    out = A.relative_to_absolute_eef(rel, init)
    np.testing.assert_allclose(out[0:3], [0.15, 0.2, 0.3])
    expected = Rotation.from_euler("z", 90, degrees=True) * Rotation.from_euler("x", 90, degrees=True)
    assert A.quaternions_equivalent(out[3:7], expected.as_quat())
    assert out[7] == pytest.approx(0.7)
    np.testing.assert_allclose(out[11:15], [0, 0, 0, 1])
    assert np.linalg.norm(out[3:7]) == pytest.approx(1.0)


def test_relative_conversion_rejects_bad_input():
    init = np.zeros(16)
    init[6] = init[14] = 1
    with pytest.raises(ValueError, match="16-d"):
        A.relative_to_absolute_eef(np.zeros((3, 14)), init)
    bad = np.tile(init, (2, 1))
    bad[1, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        A.relative_to_absolute_eef(bad, init)
    with pytest.raises(ValueError, match="zero-length quaternion"):
        A.relative_to_absolute_eef(np.zeros(16), init)
