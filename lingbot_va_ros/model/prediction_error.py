"""Prediction error of a grounded chunk: its predicted video latents against the real key frames' latents.

Both live in the backend when a chunk is grounded (the prediction is kept until then; ground encodes the real
key frames), so the comparison costs one subtraction on a few thousand latent cells. The error is measured in
normalised latent space (z = (mu - mean) / std per channel), where every channel has unit scale, so one number
is comparable across chunks, episodes and checkpoints with the same VAE.
"""
from __future__ import annotations

import torch

from lingbot_va_ros.model.image_layout import CameraLayout


def latent_mse(predicted: torch.Tensor, real: torch.Tensor, layout: CameraLayout) -> tuple[float, dict[str, float]]:
    """Mean squared error over the whole canvas and per camera region; both inputs [z, frames, H, W]."""
    if predicted.shape != real.shape:
        raise ValueError(f"predicted latents {tuple(predicted.shape)} and real latents {tuple(real.shape)} differ "
                         "in shape (same frames of the same chunk expected)")
    if predicted.dim() != 4:
        raise ValueError(f"expected latents [z, frames, H, W], got {tuple(predicted.shape)}")
    diff = predicted.detach().float().cpu() - real.detach().float().cpu()
    per_camera = {cam: float(region.pow(2).mean()) for cam, region in layout.split(diff).items()}
    # the canvas has no unused cells in either layout, so the canvas mean is the cell-weighted camera mean
    return float(diff.pow(2).mean()), per_camera


def frame_action_indices(chunk_index: int, start_index: int, num_frames: int,
                         actions_per_frame: int) -> tuple[int, ...]:
    """Per latent frame of a predicted chunk, the action index of the last key frame it predicts.

    A latent frame after the first stands for ``actions_per_frame`` actions and their 4 key frames; its last key
    frame follows the frame's last action. Chunk 0's frame 0 is the conditioning frame (the initial observation,
    pinned, not predicted): -1, the initial observation's action index.
    """
    first = 1 if chunk_index == 0 else 0
    return tuple(-1 if j < first else start_index + (j - first + 1) * actions_per_frame - 1
                 for j in range(num_frames))
