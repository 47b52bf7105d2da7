"""Dataset actions -> the model's normalised [30, F, A, 1] action frames, and q01/q99 statistics.

The normalisation is the one ``ground`` applies at inference (``model.actions.normalize_used``: scatter the
used channels into the unified 30-d vector, quantile-normalise, zero the unused channels), plus the
training-side clip to +-``clip`` of the reference loader. Latent frame 0 has no executed actions: it holds
normalised zeros, the value inference pins there and the value the frame-0 placeholder re-normalises to.
(The reference loader pads *raw* zeros before normalising instead, which for asymmetric channels differs from
what its own server pins; we follow the inference side.)
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from lingbot_va_ros.model.actions import normalize_used
from lingbot_va_ros.training.keyframes import KeyframeLayout

QUANTILES = (0.01, 0.99)


def compute_action_stats(action_rows: Sequence[np.ndarray], used_ids: Sequence[int],
                         min_range: float = 1e-3) -> tuple[list[float], list[float], list[int]]:
    """q01/q99 (30-d, unused channels 0) over all rows of all episodes (``dataset.stats.action_quantiles``).

    A used channel whose 1%..99% band is narrower than ``min_range`` (e.g. a gripper that never moved in the
    demos) would make every prediction de-normalise to one value and is rejected by the embodiment schema;
    its band is widened symmetrically to ``min_range``. Returns (q01, q99, widened channel ids).
    """
    from lingbot_va_ros.dataset.stats import action_quantiles

    q01, q99 = action_quantiles(action_rows, used_ids, QUANTILES[0], QUANTILES[1])
    widened = []
    for ch in used_ids:
        if q99[ch] - q01[ch] < min_range:
            mid = 0.5 * (q01[ch] + q99[ch])
            q01[ch], q99[ch] = mid - 0.5 * min_range, mid + 0.5 * min_range
            widened.append(int(ch))
    return q01, q99, widened


def action_frames(actions: np.ndarray, layout: KeyframeLayout, num_latent_frames: int, used_ids: Sequence[int],
                  q01: Sequence[float], q99: Sequence[float], clip: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Episode rows [T, C_used] -> (normalised actions [30, F, A, 1] float32, used-channel mask same shape).

    Frame 0 holds normalised zeros; frames k >= 1 hold rows (k-1)A .. kA-1 (``KeyframeLayout.action_rows``).
    """
    a = layout.action_per_frame
    rows = np.asarray(actions, dtype=np.float32)
    need = (num_latent_frames - 1) * a
    if rows.ndim != 2 or rows.shape[1] != len(used_ids):
        raise ValueError(f"actions have shape {rows.shape}, expected [T, {len(used_ids)}]")
    if rows.shape[0] < need:
        raise ValueError(f"{num_latent_frames} latent frames need {need} action rows, the episode has {rows.shape[0]}")
    executed = rows[layout.action_rows(num_latent_frames).reshape(-1)] if need else rows[:0]
    used = executed.T.reshape(len(used_ids), num_latent_frames - 1, a)      # [C_used, F-1, A]
    normalized = normalize_used(used, used_ids, q01, q99)                     # [30, F-1, A], unused = 0
    if clip is not None:
        normalized = np.clip(normalized, -clip, clip)
    action_dim = len(q01)
    out = np.zeros((action_dim, num_latent_frames, a, 1), dtype=np.float32)
    out[:, 1:, :, 0] = normalized
    mask = np.zeros_like(out, dtype=bool)
    mask[list(used_ids)] = True
    return out, mask
