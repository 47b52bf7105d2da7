"""Action conversions between the robot, the executable timeline and the model (spec §5.3-5.6).

Shapes used here:
- unified 30-d vector: axis 0 of a [30, ...] array (spec §5.6 layout);
- model chunk: [C_used, F, A] (channels, latent frames, actions per latent frame), what infer returns and
  what ground expects back;
- executable rows: [N, C_used], one row per action in execution order (frame-major, then action).

The first chunk of an episode has a conditioning latent frame 0 with no executable actions: it is dropped
when a chunk becomes rows and re-inserted as the placeholder "de-normalised zeros" when rows go back to the
model (that placeholder re-normalises to exactly what the model pinned it to: 0).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.spatial.transform import Rotation

# Reference quantile normalisation: a_n = (a - q01) / (q99 - q01 + eps) * 2 - 1 (no clipping at inference).
QUANTILE_EPS = 1e-6


def inverse_channel_ids(used_ids: Sequence[int], action_dim: int = 30) -> list[int]:
    """For each unified channel: its position in ``used_ids``, or ``len(used_ids)`` (a zero column) if unused."""
    inverse = [len(used_ids)] * action_dim
    for position, channel in enumerate(used_ids):
        inverse[channel] = position
    return inverse


def _stats(q01: Sequence[float], q99: Sequence[float], ndim: int) -> tuple[np.ndarray, np.ndarray]:
    lo = np.asarray(q01, dtype=np.float64).reshape((-1,) + (1,) * (ndim - 1))
    hi = np.asarray(q99, dtype=np.float64).reshape((-1,) + (1,) * (ndim - 1))
    return lo, hi


def quantile_normalize(actions30: np.ndarray, q01: Sequence[float], q99: Sequence[float]) -> np.ndarray:
    """[30, ...] raw -> normalised, per channel (axis 0). Unused channels are not masked here."""
    a = np.asarray(actions30, dtype=np.float64)
    lo, hi = _stats(q01, q99, a.ndim)
    return ((a - lo) / (hi - lo + QUANTILE_EPS) * 2.0 - 1.0).astype(np.float32)


def quantile_denormalize(normalized30: np.ndarray, q01: Sequence[float], q99: Sequence[float]) -> np.ndarray:
    """[30, ...] normalised -> raw: a = (a_n + 1) / 2 * (q99 - q01 + eps) + q01."""
    a = np.asarray(normalized30, dtype=np.float64)
    lo, hi = _stats(q01, q99, a.ndim)
    return ((a + 1.0) / 2.0 * (hi - lo + QUANTILE_EPS) + lo).astype(np.float32)


def gather_used(actions30: np.ndarray, used_ids: Sequence[int]) -> np.ndarray:
    """[30, ...] -> [C_used, ...] in the output order of ``used_ids``."""
    return np.asarray(actions30)[list(used_ids)]


def scatter_to_unified(actions_used: np.ndarray, used_ids: Sequence[int], action_dim: int = 30) -> np.ndarray:
    """[C_used, ...] -> [30, ...] via the inverse ids: unused channels read an appended zero column."""
    a = np.asarray(actions_used)
    if a.shape[0] != len(used_ids):
        raise ValueError(f"expected {len(used_ids)} used channels on axis 0, got shape {a.shape}")
    padded = np.concatenate([a, np.zeros((1,) + a.shape[1:], dtype=a.dtype)], axis=0)
    return padded[inverse_channel_ids(used_ids, action_dim)]


def normalize_used(actions_used: np.ndarray, used_ids: Sequence[int], q01: Sequence[float],
                   q99: Sequence[float]) -> np.ndarray:
    """What ground feeds the model: [C_used, ...] raw -> [30, ...] normalised with unused channels zeroed."""
    normalized = quantile_normalize(scatter_to_unified(actions_used, used_ids, len(q01)), q01, q99)
    mask = np.zeros(len(q01), dtype=bool)
    mask[list(used_ids)] = True
    normalized[~mask] = 0.0
    return normalized


def denormalize_used(normalized30: np.ndarray, used_ids: Sequence[int], q01: Sequence[float],
                     q99: Sequence[float]) -> np.ndarray:
    """What infer returns: [30, ...] normalised -> [C_used, ...] raw."""
    return gather_used(quantile_denormalize(normalized30, q01, q99), used_ids)


def placeholder_action(used_ids: Sequence[int], q01: Sequence[float], q99: Sequence[float]) -> np.ndarray:
    """[C_used] raw values of a normalised-zero action: the first chunk's frame-0 rows (never executed)."""
    return denormalize_used(np.zeros(len(q01), dtype=np.float32), used_ids, q01, q99)


# ---- chunk <-> executable rows ------------------------------------------------------------------------

def chunk_to_rows(chunk: np.ndarray, first_chunk: bool) -> np.ndarray:
    """Model chunk [C, F, A] -> executable rows [N, C] (the first chunk drops latent frame 0)."""
    c = np.asarray(chunk)
    if c.ndim != 3:
        raise ValueError(f"expected a model chunk [C, F, A], got shape {c.shape}")
    if first_chunk:
        c = c[:, 1:]
    channels, frames, per_frame = c.shape
    return np.ascontiguousarray(c.transpose(1, 2, 0).reshape(frames * per_frame, channels))


def rows_to_chunk(rows: np.ndarray, frame_chunk_size: int, action_per_frame: int, first_chunk: bool,
                  placeholder: np.ndarray | None = None) -> np.ndarray:
    """Executed rows [N, C] -> model chunk [C, F, A]; the first chunk gets ``placeholder`` rows as frame 0."""
    r = np.asarray(rows)
    frames = frame_chunk_size - 1 if first_chunk else frame_chunk_size
    expected = frames * action_per_frame
    if r.ndim != 2 or r.shape[0] != expected:
        raise ValueError(f"expected {expected} executed rows [N, C] for a {'first' if first_chunk else 'regular'} "
                         f"chunk ({frames} latent frames x {action_per_frame} actions), got shape {r.shape}")
    chunk = r.reshape(frames, action_per_frame, r.shape[1]).transpose(2, 0, 1)
    if first_chunk:
        if placeholder is None:
            raise ValueError("the first chunk needs the frame-0 placeholder action")
        ph = np.asarray(placeholder, dtype=r.dtype).reshape(-1)
        if ph.shape[0] != r.shape[1]:
            raise ValueError(f"placeholder has {ph.shape[0]} channels, rows have {r.shape[1]}")
        frame0 = np.broadcast_to(ph[:, None, None], (r.shape[1], 1, action_per_frame))
        chunk = np.concatenate([frame0, chunk], axis=1)
    return np.ascontiguousarray(chunk)


# ---- RoboTwin relative EEF convention (16-d) ----------------------------------------------------------
# Per arm [xyz(3), quat(4), gripper]; the quaternion 4-tuple is read with scipy's (x, y, z, w) convention,
# whatever the robot's own convention is, exactly as the reference training and client do: the round trip
# returns the robot's own tuple (up to sign), the intermediate deltas are only meaningful to the model.
EEF_ARM_SLICES = (slice(0, 8), slice(8, 16))


def _check_eef(poses: np.ndarray, what: str) -> np.ndarray:
    p = np.asarray(poses, dtype=np.float64)
    if p.shape[-1] != 16:
        raise ValueError(f"{what}: expected 16-d EEF vectors [L_xyz, L_quat, L_grip, R_xyz, R_quat, R_grip], "
                         f"got shape {p.shape}")
    if not np.all(np.isfinite(p)):
        raise ValueError(f"{what}: non-finite values")
    for arm in EEF_ARM_SLICES:
        norms = np.linalg.norm(p[..., arm][..., 3:7], axis=-1)
        if np.any(norms < 1e-8):
            raise ValueError(f"{what}: zero-length quaternion")
    return p


def _float_dtype(x) -> np.dtype:
    dt = np.asarray(x).dtype
    return dt if dt.kind == "f" else np.dtype(np.float64)


def relative_to_absolute_eef(relative: np.ndarray, initial_pose: np.ndarray) -> np.ndarray:
    """Model output [N, 16] (or [16]) relative to ``initial_pose`` [16] -> absolute targets, same shape.

    p = p0 + dp (world frame), R = R0 * dR, gripper as predicted; quaternions renormalised to unit length.
    Computed in float64, returned in the input's float dtype.
    """
    rel = _check_eef(np.atleast_2d(relative), "relative EEF actions")
    init = _check_eef(np.asarray(initial_pose).reshape(16), "initial EEF pose")
    out = np.empty_like(rel)
    for arm in EEF_ARM_SLICES:
        r, i, k = rel[:, arm], init[arm], arm.start
        quat = (Rotation.from_quat(i[3:7]) * Rotation.from_quat(r[:, 3:7])).as_quat()
        out[:, k:k + 3] = i[:3] + r[:, :3]
        out[:, k + 3:k + 7] = quat / np.linalg.norm(quat, axis=-1, keepdims=True)
        out[:, k + 7] = r[:, 7]
    return out.reshape(np.shape(relative)).astype(_float_dtype(relative))


def absolute_to_relative_eef(absolute: np.ndarray, initial_pose: np.ndarray) -> np.ndarray:
    """Absolute poses [N, 16] (or [16]) -> the model's relative convention: dp = p - p0, dR = R0^-1 * R."""
    ab = _check_eef(np.atleast_2d(absolute), "absolute EEF poses")
    init = _check_eef(np.asarray(initial_pose).reshape(16), "initial EEF pose")
    out = np.empty_like(ab)
    for arm in EEF_ARM_SLICES:
        a, i, k = ab[:, arm], init[arm], arm.start
        out[:, k:k + 3] = a[:, :3] - i[:3]
        out[:, k + 3:k + 7] = (Rotation.from_quat(i[3:7]).inv() * Rotation.from_quat(a[:, 3:7])).as_quat()
        out[:, k + 7] = a[:, 7]
    return out.reshape(np.shape(absolute)).astype(_float_dtype(absolute))


def quaternions_equivalent(q1: np.ndarray, q2: np.ndarray, atol: float = 1e-6) -> bool:
    """True if two (batches of) unit quaternions are the same rotation (q and -q are equal)."""
    a, b = np.asarray(q1, dtype=np.float64), np.asarray(q2, dtype=np.float64)
    dots = np.abs(np.sum(a * b, axis=-1)) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    return bool(np.all(np.abs(dots - 1.0) <= atol))
