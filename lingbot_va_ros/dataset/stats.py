"""Dataset statistics: LeRobot's per-episode feature stats and the model's 30-d action quantiles (q01/q99).

LeRobot v2.1 (``meta/episodes_stats.jsonl``): per episode and feature ``min, max, mean, std`` over the rows
(vectors: one value per column; images: per channel over sampled frames, divided by 255, shape [3, 1, 1]) and
``count``. LeRobot aggregates them itself when it loads the dataset.

LingBot-VA normalises each action channel with the 1st/99th percentiles of the *training set* (spec §5.6):
``a_n = (a - q01) / (q99 - q01 + eps) * 2 - 1`` on the unified 30-d vector. :func:`action_quantiles` computes
them over every row of every episode (numpy's default linear interpolation) and scatters them to the 30 unified
channels through ``used_action_channel_ids``, exactly where an embodiment YAML expects them; unused channels get
0 / 0 (as the released configs write them).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from lingbot_va_ros.model.embodiment import ACTION_DIM

# LeRobot samples at most this many frames per episode for image stats (compute_stats.estimate_num_samples).
_MIN_IMAGE_SAMPLES = 100


def vector_stats(values: np.ndarray) -> dict[str, list]:
    """min/max/mean/std/count over rows of a [T, C] (or [T]) array, as JSON lists (LeRobot's layout)."""
    a = np.asarray(values, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    return {"min": a.min(axis=0).tolist(), "max": a.max(axis=0).tolist(), "mean": a.mean(axis=0).tolist(),
            "std": a.std(axis=0).tolist(), "count": [int(a.shape[0])]}


def _sample_indices(n: int) -> np.ndarray:
    num = max(min(n, _MIN_IMAGE_SAMPLES), min(int(n ** 0.75), 10_000))
    return np.round(np.linspace(0, n - 1, num)).astype(int)


def image_stats(frames: np.ndarray) -> dict[str, list]:
    """Per-channel stats of uint8 RGB frames [T, h, w, 3] scaled to 0..1, each of shape [3, 1, 1].

    Exact, from a 256-bin histogram per channel (no float copy of the frames: ~20x faster than reducing a float
    array of the sampled frames)."""
    sample = np.asarray(frames)[_sample_indices(len(frames))]
    pixels = sample.reshape(-1, 3)
    levels = np.arange(256, dtype=np.float64) / 255.0
    stats: dict[str, list] = {"min": [], "max": [], "mean": [], "std": []}
    for c in range(3):
        hist = np.bincount(pixels[:, c], minlength=256).astype(np.float64)
        used = np.flatnonzero(hist)
        mean = float(hist @ levels / hist.sum())
        var = float(hist @ (levels - mean) ** 2 / hist.sum())
        for key, value in (("min", levels[used[0]]), ("max", levels[used[-1]]), ("mean", mean),
                           ("std", np.sqrt(var))):
            stats[key].append([[float(value)]])
    return {**stats, "count": [int(sample.shape[0])]}


def action_quantiles(actions: Sequence[np.ndarray], used_action_channel_ids: Sequence[int],
                     low: float = 0.01, high: float = 0.99) -> tuple[list[float], list[float]]:
    """(q01, q99) as 30-d unified vectors from the rows of every episode's [T, C_used] actions."""
    ids = list(used_action_channel_ids)
    rows = [np.asarray(a, dtype=np.float64) for a in actions]
    if not rows:
        raise ValueError("no episodes to compute action statistics from")
    bad = [a.shape for a in rows if a.ndim != 2 or a.shape[1] != len(ids)]
    if bad:
        raise ValueError(f"actions must be [T, {len(ids)}] (one column per used channel), got shapes {bad}")
    stacked = np.concatenate(rows, axis=0)
    q_lo = np.quantile(stacked, low, axis=0)
    q_hi = np.quantile(stacked, high, axis=0)
    q01, q99 = [0.0] * ACTION_DIM, [0.0] * ACTION_DIM
    for position, channel in enumerate(ids):
        q01[channel], q99[channel] = float(q_lo[position]), float(q_hi[position])
    return q01, q99
