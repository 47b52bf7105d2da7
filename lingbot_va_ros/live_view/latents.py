"""PredictedLatents messages <-> arrays (duck-typed messages, no rclpy): float16 on the wire, validated when read."""
from __future__ import annotations

import array
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from lingbot_va_ros.common.conversions import MessageError

WIRE_DTYPE = "float16"
MAX_VALUES = 1 << 24        # 32 MB of fp16: far beyond any real canvas (5B RoboTwin chunk: 46 K values)


@dataclass(frozen=True)
class ChunkLatents:
    """One chunk's predicted latents as the live view works with them."""

    episode_id: str
    chunk_index: int
    start_index: int
    camera_names: tuple[str, ...]
    latents: np.ndarray                     # float32 [z, frames, H, W], normalised
    frame_action_indices: tuple[int, ...]   # per frame (-1: conditioning frame)
    stamp_ns: int                           # the chunk's stamp

    def predicted_frames(self) -> list[int]:
        """Frame positions that are predictions (not the conditioning frame), oldest first."""
        return [j for j, k in enumerate(self.frame_action_indices) if k >= 0]


def pack_latents(latents: np.ndarray) -> tuple[list[int], str, array.array]:
    """[z, frames, H, W] -> (shape, dtype name, little-endian fp16 bytes) for the message fields."""
    arr = np.ascontiguousarray(latents, dtype="<f2")
    if arr.ndim != 4:
        raise MessageError(f"latents must be [z, frames, H, W], got shape {arr.shape}")
    return [int(s) for s in arr.shape], WIRE_DTYPE, array.array("B", arr.tobytes())


def unpack_latents(shape: Sequence[int], dtype: str, data, frame_action_indices: Sequence[int]) -> np.ndarray:
    """Inverse of :func:`pack_latents` with validation; returns float32 [z, frames, H, W]."""
    shape = [int(s) for s in shape]
    if dtype != WIRE_DTYPE:
        raise MessageError(f"latents dtype '{dtype}' is not supported (expected '{WIRE_DTYPE}')")
    if len(shape) != 4 or min(shape) <= 0:
        raise MessageError(f"latents shape must be 4 positive sizes [z, frames, H, W], got {shape}")
    count = int(np.prod(shape))
    if count > MAX_VALUES:
        raise MessageError(f"latents of shape {shape} ({count} values) exceed the limit {MAX_VALUES}")
    buf = np.frombuffer(data if isinstance(data, (bytes, bytearray, memoryview, array.array)) else bytes(data),
                        dtype=np.uint8)
    if buf.size != count * 2:
        raise MessageError(f"latents shape {shape} needs {count * 2} bytes of {WIRE_DTYPE}, got {buf.size}")
    if len(frame_action_indices) != shape[1]:
        raise MessageError(f"{len(frame_action_indices)} frame_action_indices for {shape[1]} latent frames")
    values = buf.view("<f2").reshape(shape).astype(np.float32)
    if not np.isfinite(values).all():
        raise MessageError("latents contain non-finite values")
    return values


def chunk_latents_from_msg(msg) -> ChunkLatents:
    """A PredictedLatents message -> :class:`ChunkLatents` (MessageError naming the problem)."""
    latents = unpack_latents(msg.shape, msg.dtype, msg.data, msg.frame_action_indices)
    if len(msg.camera_names) == 0:
        raise MessageError("latents message names no cameras")
    stamp = int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)
    return ChunkLatents(str(msg.episode_id), int(msg.chunk_index), int(msg.start_index),
                        tuple(msg.camera_names), latents, tuple(int(k) for k in msg.frame_action_indices), stamp)
