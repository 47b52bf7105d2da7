"""Key-frame / action-row alignment (spec §5.5) and the normalised action frames."""
from __future__ import annotations

import numpy as np
import pytest

from lingbot_va_ros.model.actions import chunk_to_rows, rows_to_chunk
from lingbot_va_ros.model.embodiment import load_embodiment
from lingbot_va_ros.training.action_frames import action_frames, compute_action_stats
from lingbot_va_ros.training.keyframes import KeyframeLayout


def test_keyframe_and_action_rows_match_the_inference_timeline():
    layout = KeyframeLayout(16)                       # s = 4
    assert layout.num_latent_frames(49) == 4 and layout.num_latent_frames(48) == 3
    assert layout.num_latent_frames(1) == 1 and layout.num_latent_frames(64, max_latent_frames=2) == 2
    rows = layout.keyframe_rows(3)
    assert rows.tolist() == [0, 4, 8, 12, 16, 20, 24, 28, 32]
    acts = layout.action_rows(3)
    assert acts.tolist() == [list(range(0, 16)), list(range(16, 32))]
    assert layout.rows_used(3) == 33
    # key frame of latent frame k, j-th: taken after action (k-1)A + j*s - 1 -> row (k-1)A + j*s
    for k in (1, 2):
        for j in range(1, 5):
            after_action = acts[k - 1][j * 4 - 1]
            assert rows[1 + (k - 1) * 4 + (j - 1)] == after_action + 1
    with pytest.raises(ValueError):
        KeyframeLayout(6)


def test_encode_calls_are_the_inference_call_sizes():
    layout = KeyframeLayout(16)
    assert layout.encode_calls(5, frame_chunk_size=2) == [1, 4, 8, 4]     # first, rest of chunk 0, chunk 1, part
    assert layout.encode_calls(7, frame_chunk_size=3) == [1, 8, 12, 4]
    assert sum(layout.encode_calls(9, 2)) == 1 + 8 * 4


def test_action_frames_align_rows_normalise_and_mask_like_ground():
    emb = load_embodiment("demo_sim")
    a, ids = emb.action_per_frame, emb.used_action_channel_ids
    layout = KeyframeLayout(a)
    rng = np.random.default_rng(0)
    lo = np.array([emb.q01[i] for i in ids])
    hi = np.array([emb.q99[i] for i in ids])
    rows = (lo + (hi - lo) * rng.uniform(0, 1, (50, len(ids)))).astype(np.float32)
    out, mask = action_frames(rows, layout, 4, ids, emb.q01, emb.q99, clip=1.5)
    assert out.shape == (30, 4, a, 1) and mask.shape == out.shape
    assert np.all(out[:, 0] == 0)                                          # frame 0: normalised zeros
    unused = [c for c in range(30) if c not in ids]
    assert np.all(out[unused] == 0) and not mask[unused].any() and mask[ids].all()
    # frame k, action j is row (k-1)A + j, normalised exactly as the inference ground() does
    from lingbot_va_ros.model.actions import normalize_used

    chunk = rows_to_chunk(rows[:3 * a], 3, a, first_chunk=False)           # [C, 3, A]
    expected = normalize_used(chunk, ids, emb.q01, emb.q99)
    np.testing.assert_allclose(out[:, 1:, :, 0], np.clip(expected, -1.5, 1.5), atol=1e-6)
    np.testing.assert_array_equal(chunk_to_rows(chunk, first_chunk=False), rows[:3 * a])
    # clipping
    wild = rows.copy()
    wild[:, 0] = hi[0] + 10 * (hi[0] - lo[0])
    out2, _ = action_frames(wild, layout, 2, ids, emb.q01, emb.q99, clip=1.5)
    assert np.isclose(out2[ids[0], 1].max(), 1.5)
    with pytest.raises(ValueError, match="need"):
        action_frames(rows[:20], layout, 3, ids, emb.q01, emb.q99, clip=None)


def test_action_stats_from_the_dataset_and_widening_of_flat_channels():
    ids = [14, 15, 28]
    rng = np.random.default_rng(1)
    eps = [np.column_stack([rng.normal(0, 1, 500), rng.uniform(-2, 3, 500), np.full(500, 0.02)]) for _ in range(2)]
    q01, q99, widened = compute_action_stats(eps, ids, min_range=1e-3)
    allrows = np.concatenate(eps)
    assert np.isclose(q01[14], np.quantile(allrows[:, 0], 0.01)) and np.isclose(q99[15], np.quantile(allrows[:, 1], 0.99))
    assert widened == [28] and np.isclose(q99[28] - q01[28], 1e-3) and np.isclose(q01[28] + 5e-4, 0.02)
    assert all(q01[c] == 0 and q99[c] == 0 for c in range(30) if c not in ids)
