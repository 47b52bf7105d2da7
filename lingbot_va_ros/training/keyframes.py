"""Which dataset rows become the model's key frames and action frames (spec §5.5), pure numpy.

Rows follow the DemoEpisode (LeRobot) convention: row ``t`` holds the images seen *before* action ``t``, so
the key frame "after action i" is row ``i + 1``. With ``A`` actions per latent frame and ``s = A / 4``
actions per key frame:

- latent frame 0 is row 0's image alone (the VAE's 1-frame first call) and carries A placeholder actions;
- latent frame k >= 1 is the images of rows (k-1)A + s, + 2s, + 3s, + 4s (taken after actions
  (k-1)A + s - 1, ..., kA - 1), and its actions are rows (k-1)A .. kA - 1 (the ones executed while its 4
  key frames were produced).

An episode of T rows therefore gives 1 + (T - 1) // A latent frames; trailing rows that do not complete a
latent frame are dropped. This is exactly the inference timeline: chunk 0 executes latent frames 1..F-1
and every key frame is captured after each s-th action.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lingbot_va_ros.model.image_layout import VAE_TEMPORAL_STRIDE


@dataclass(frozen=True)
class KeyframeLayout:
    action_per_frame: int                      # A (a multiple of 4)

    def __post_init__(self) -> None:
        if self.action_per_frame <= 0 or self.action_per_frame % VAE_TEMPORAL_STRIDE:
            raise ValueError(f"action_per_frame must be a positive multiple of {VAE_TEMPORAL_STRIDE}, "
                             f"got {self.action_per_frame}")

    @property
    def actions_per_keyframe(self) -> int:
        return self.action_per_frame // VAE_TEMPORAL_STRIDE

    def num_latent_frames(self, num_rows: int, max_latent_frames: int = 0) -> int:
        """Latent frames an episode of ``num_rows`` rows yields (optionally capped; 0 = no cap)."""
        n = 1 + max(0, (int(num_rows) - 1) // self.action_per_frame)
        return min(n, max_latent_frames) if max_latent_frames > 0 else n

    def keyframe_rows(self, num_latent_frames: int) -> np.ndarray:
        """Row index of every key frame in encoding order: [0, then 4 per latent frame k >= 1]."""
        a, s = self.action_per_frame, self.actions_per_keyframe
        rows = [0]
        for k in range(1, num_latent_frames):
            rows += [(k - 1) * a + j * s for j in range(1, VAE_TEMPORAL_STRIDE + 1)]
        return np.asarray(rows, dtype=np.int64)

    def action_rows(self, num_latent_frames: int) -> np.ndarray:
        """[F-1, A] row indices of the actions of latent frames 1..F-1 (frame 0 has placeholders)."""
        a = self.action_per_frame
        return np.arange((num_latent_frames - 1) * a, dtype=np.int64).reshape(num_latent_frames - 1, a)

    def rows_used(self, num_latent_frames: int) -> int:
        """Rows of the episode the latent frames cover (images up to row (F-1) * A)."""
        return (num_latent_frames - 1) * self.action_per_frame + 1

    def encode_calls(self, num_latent_frames: int, frame_chunk_size: int) -> list[int]:
        """Key frames per streaming-VAE call, as the inference loop makes them: the first frame alone, then
        the rest of chunk 0 ((F-1) x 4 frames), then F x 4 per chunk (the last call may be shorter)."""
        calls = [1]
        remaining = (num_latent_frames - 1) * VAE_TEMPORAL_STRIDE
        first = (frame_chunk_size - 1) * VAE_TEMPORAL_STRIDE
        size = first if first > 0 else frame_chunk_size * VAE_TEMPORAL_STRIDE
        while remaining > 0:
            n = min(size, remaining)
            calls.append(n)
            remaining -= n
            size = frame_chunk_size * VAE_TEMPORAL_STRIDE
        return calls
