"""3-axis rotary position embedding of LingBot-VA (spec §1.2).

Head dim D is split into a frame axis of D - 2*(D//3) dims and row/column axes of D//3 dims each
(128 -> 44/42/42). Adjacent pairs (2i, 2i+1) of a head vector are rotated as complex numbers; the angle
table is [f | h | w] frequencies, shared by every head and by the CFG batch.

Positions follow the official ``get_mesh_id``: video tokens sit on integer (frame, row, col) of the tiled
canvas; action token j of latent frame f sits at frame f + (j+1)/(A+1) (computed in float32, as the
reference does) with row = col = -1. Positions are absolute: ``frame_start`` grows for the whole episode.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

ROPE_THETA = 10000.0


def rope_axis_dims(head_dim: int) -> tuple[int, int, int]:
    """(frame, height, width) sub-dimensions of one head: 128 -> (44, 42, 42), 24 -> (8, 8, 8)."""
    hw = head_dim // 3
    return head_dim - 2 * hw, hw, hw


def rope_frequencies(head_dim: int, theta: float = ROPE_THETA) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-axis float64 frequency bases theta^(-2k/d_axis) (22/21/21 values for D=128)."""
    out = []
    for d in rope_axis_dims(head_dim):
        k = torch.arange(0, d, 2, dtype=torch.float64)[: d // 2]
        out.append(1.0 / (theta ** (k / d)))
    return out[0], out[1], out[2]


def video_grid_ids(num_frames: int, h_tokens: int, w_tokens: int, frame_start: int = 0) -> torch.Tensor:
    """[3, F*h*w] int64 (frame, row, col) positions in token order (f, i, j)."""
    f = torch.arange(frame_start, frame_start + num_frames)
    ff, hh, ww = torch.meshgrid(f, torch.arange(h_tokens), torch.arange(w_tokens), indexing="ij")
    return torch.stack([ff, hh, ww]).flatten(1)


def action_grid_ids(num_frames: int, actions_per_frame: int, frame_start: int = 0) -> torch.Tensor:
    """[3, F*A] float32 positions: frame f + (j+1)/(A+1) (fractional, strictly inside (f, f+1)), row = col = -1.

    The offset is built exactly like the reference (float32 cumsum / (A+1), added to the int frame index) so
    the float32 rounding of large absolute frame ids matches bit for bit.
    """
    a = actions_per_frame
    f = torch.arange(frame_start, frame_start + num_frames).view(-1, 1)
    offset = (torch.ones(a).cumsum(0) / (a + 1)).view(1, -1)
    ff = (f + offset).flatten()
    minus_one = torch.full_like(ff, -1.0)
    return torch.stack([ff, minus_one, minus_one])


class RopeTable(NamedTuple):
    """cos/sin of the rotation angles, [L, D/2] float32 each (one row per token)."""

    cos: torch.Tensor
    sin: torch.Tensor

    def to(self, device) -> "RopeTable":
        return RopeTable(self.cos.to(device), self.sin.to(device))


def rope_table(grid_ids: torch.Tensor, head_dim: int, device=None, theta: float = ROPE_THETA) -> RopeTable:
    """Angles = position x base in float64 per axis (as the reference), then cast to float32 before cos/sin
    (the reference builds a complex64 ``polar`` from the float32 angles)."""
    bf, bh, bw = rope_frequencies(head_dim, theta)
    g = grid_ids.to(torch.float64) if grid_ids.dtype != torch.float64 else grid_ids
    # Integer video positions are exact in float64; float32 action positions are widened exactly.
    angles = torch.cat(
        [g[0].unsqueeze(-1) * bf, g[1].unsqueeze(-1) * bh, g[2].unsqueeze(-1) * bw], dim=-1
    ).float()
    table = RopeTable(torch.cos(angles), torch.sin(angles))
    return table.to(device) if device is not None else table


def video_rope(num_frames: int, h_tokens: int, w_tokens: int, frame_start: int, head_dim: int, device=None) -> RopeTable:
    return rope_table(video_grid_ids(num_frames, h_tokens, w_tokens, frame_start), head_dim, device)


def action_rope(num_frames: int, actions_per_frame: int, frame_start: int, head_dim: int, device=None) -> RopeTable:
    return rope_table(action_grid_ids(num_frames, actions_per_frame, frame_start), head_dim, device)


def apply_rope(x: torch.Tensor, table: RopeTable) -> torch.Tensor:
    """Rotate x [B, L, H, D] by the per-token table [L, D/2]; math in float32, result in x.dtype.

    The reference rotates in float64; float32 differs by ~1e-7 relative and keeps GPUs off the slow f64 path.
    """
    b, l, h, d = x.shape
    xf = x.float().reshape(b, l, h, d // 2, 2)
    x0, x1 = xf[..., 0], xf[..., 1]
    c = table.cos.view(1, l, 1, d // 2)
    s = table.sin.view(1, l, 1, d // 2)
    out = torch.stack([x0 * c - x1 * s, x0 * s + x1 * c], dim=-1)
    return out.flatten(3).to(x.dtype)
