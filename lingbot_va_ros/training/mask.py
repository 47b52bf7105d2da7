"""The causal video-action attention mask of the training sequence (spec §2.4) and its FDM extension.

Every token carries three ids (the reference ``FlexAttnFunc._get_mask_mod``):
- ``seq``: which sample (several can be packed into one sequence);
- ``frame``: 2c for video tokens of chunk c, 2c+1 for action tokens of chunk c (chunk = latent frame //
  chunk_size), so within a chunk the video comes before its actions (inverse dynamics ordering);
- ``role``: NOISY (a denoising target copy), CLEAN (the conditioning copy) or KNOWN (FDM only: the clean
  actions of chunk c given to chunk c's video, as ``world_model.imagine`` writes them into the KV cache).

Allowed query -> key pairs, AND-ed with "same seq" and the window |frame_q - frame_k| <= window:
- clean -> clean   if frame_k <= frame_q  (block causal: clean video c sees clean video <= c and clean actions
  < c; clean actions c see clean video <= c and clean actions <= c);
- noisy -> clean   if frame_k <  frame_q  (noisy video c sees chunks < c; noisy actions c also see the clean
  video of chunk c: inverse dynamics);
- noisy -> noisy   if frame_k == frame_q  (bidirectional within a chunk and modality; a noisy video chunk and
  its noisy actions never see each other);
- FDM: known -> clean if chunk_k < chunk_q; known -> known within the chunk; noisy *video* of chunk c -> known
  actions of chunk c. Nothing else sees KNOWN tokens. The noisy video of chunk c thus sees exactly what
  ``imagine`` gives it: the grounded history (chunks < c, written video-then-actions), the executing chunk's
  actions (which saw only that history and themselves) and itself.

One predicate (:func:`allowed`) serves both the dense boolean mask (CPU, SDPA) and the flex-attention
``mask_mod`` (CUDA), so the two can never disagree.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

NOISY, CLEAN, KNOWN = 0, 1, 2
VIDEO, ACTION = 0, 1


def allowed(seq_q, frame_q, role_q, seq_k, frame_k, role_k, window: int):
    """Elementwise: may a query token with these ids attend to a key token with those (broadcasting)."""
    c2c = (role_q == CLEAN) & (role_k == CLEAN) & (frame_k <= frame_q)
    n2c = (role_q == NOISY) & (role_k == CLEAN) & (frame_k < frame_q)
    n2n = (role_q == NOISY) & (role_k == NOISY) & (frame_k == frame_q)
    known2c = (role_q == KNOWN) & (role_k == CLEAN) & (frame_k // 2 < frame_q // 2)
    known2known = (role_q == KNOWN) & (role_k == KNOWN) & (frame_k == frame_q)
    video2known = (role_q == NOISY) & (role_k == KNOWN) & (frame_q % 2 == VIDEO) & (frame_k == frame_q + 1)
    rules = c2c | n2c | n2n | known2c | known2known | video2known
    return rules & (seq_q == seq_k) & ((frame_q - frame_k).abs() <= window)


@dataclass
class SequenceLayout:
    """Per-token ids of a training sequence, built segment by segment in sequence order."""

    seq: list[torch.Tensor] = field(default_factory=list)
    frame: list[torch.Tensor] = field(default_factory=list)
    role: list[torch.Tensor] = field(default_factory=list)
    spans: list[tuple[int, int]] = field(default_factory=list)

    def add(self, modality: int, role: int, frame_start: int, num_frames: int, tokens_per_frame: int,
            chunk_size: int, seq_id: int = 0) -> tuple[int, int]:
        """Append the tokens of latent frames frame_start .. frame_start+num_frames-1; returns their span."""
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        frames = torch.arange(frame_start, frame_start + num_frames).repeat_interleave(tokens_per_frame)
        fid = 2 * (frames // chunk_size) + modality
        n = fid.numel()
        start = self.num_tokens
        self.seq.append(torch.full((n,), seq_id, dtype=torch.long))
        self.frame.append(fid.long())
        self.role.append(torch.full((n,), role, dtype=torch.long))
        self.spans.append((start, start + n))
        return start, start + n

    @property
    def num_tokens(self) -> int:
        return sum(t.numel() for t in self.frame)

    def ids(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return torch.cat(self.seq), torch.cat(self.frame), torch.cat(self.role)

    def dense(self, window: int, device=None) -> torch.Tensor:
        """Bool [L, L] (True = attend) for SDPA."""
        s, f, r = (t.to(device) for t in self.ids())
        return allowed(s[:, None], f[:, None], r[:, None], s[None, :], f[None, :], r[None, :], window)

    def flex_attention(self, window: int, device, compile_kernel: bool = True):
        """A ``(q, k, v) -> out`` callable over (B, L, H, D) using flex attention with this mask's BlockMask."""
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention

        s, f, r = (t.to(device) for t in self.ids())

        def mask_mod(b, h, q_idx, kv_idx):
            return allowed(s[q_idx], f[q_idx], r[q_idx], s[kv_idx], f[kv_idx], r[kv_idx], window)

        n = s.numel()
        block_mask = create_block_mask(mask_mod, None, None, n, n, device=device)
        kernel = _compiled_flex() if compile_kernel else flex_attention

        def attend(q, k, v):
            out = kernel(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), block_mask=block_mask)
            return out.transpose(1, 2)

        return attend


_FLEX = None


def _compiled_flex():
    global _FLEX
    if _FLEX is None:
        from torch.nn.attention.flex_attention import flex_attention

        _FLEX = torch.compile(flex_attention, dynamic=True)
    return _FLEX
