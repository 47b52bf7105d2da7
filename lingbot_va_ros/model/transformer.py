"""LingBot-VA shared-backbone DiT (``WanTransformer3DModel``, spec §1.1), inference path.

Parameter names and config keys are the official ones, so ``WanTransformer3DModel.from_pretrained(folder)``
loads the released ``transformer/`` folder (single file or sharded with an index, bf16 or fp32).

Inference-oriented differences from the reference code (all numerically equivalent):
- Timestep embeddings and adaLN modulation are computed once per *frame* and broadcast over the frame's
  tokens (the reference repeats the timestep per token and runs ``time_proj`` (C -> 6C) on every token).
- Cross-attention K/V of the (constant per episode) text are computed once per episode (``prepare_text``).
- RoPE tables are built once per call shape and reused across denoising steps and layers.
- Self-attention goes through a pluggable cache object (``SlabKVCache``) instead of per-layer gathers.
- ``attn_mode`` is kept in the config for round-tripping only: inference always uses SDPA / flash-attn.
  Training (``forward_train``, used by ``lingbot_va_ros.training``) takes its mask as an argument: a dense
  bool mask (SDPA) or a flex-attention callable, whatever ``attn_mode`` says.
"""
from __future__ import annotations

import json
import math
import os
from typing import Callable, NamedTuple, Sequence

import logging

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention import FeedForward
from diffusers.models.embeddings import PixArtAlphaTextProjection, TimestepEmbedding, Timesteps
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.normalization import FP32LayerNorm

from lingbot_va_ros.model.attention import attention
from lingbot_va_ros.model.rope import (
    RopeTable,
    action_grid_ids,
    apply_rope,
    rope_table,
    video_grid_ids,
)

logger = logging.getLogger(__name__)

__all__ = [
    "WanTransformer3DModel",
    "TextContext",
    "load_transformer",
    "TransformerLoadError",
    "check_checkpoint",
    "patchify_video",
    "unpatchify_video",
    "actions_to_tokens",
    "tokens_to_actions",
]

ATTN_MODES = ("torch", "flashattn", "flex")


# ---------------------------------------------------------------------------------------- token layouts
def patchify_video(x: torch.Tensor, patch_size: Sequence[int]) -> torch.Tensor:
    """(B, C, F, H, W) -> (B, L, C*pt*ph*pw); tokens in (f, h, w) order, features channel-major
    (feature[c*ph*pw + i*pw + j] for pt = 1), spec §2.3 input order."""
    pt, ph, pw = patch_size
    b, c, f, h, w = x.shape
    x = x.reshape(b, c, f // pt, pt, h // ph, ph, w // pw, pw)
    x = x.permute(0, 2, 4, 6, 1, 3, 5, 7)
    return x.reshape(b, (f // pt) * (h // ph) * (w // pw), c * pt * ph * pw)


def unpatchify_video(tokens: torch.Tensor, patch_size: Sequence[int], num_frames: int, height: int, width: int) -> torch.Tensor:
    """(B, L, n*C) -> (B, C, F, H, W); features read patch-position-major ((pt, ph, pw) outer, C inner),
    the reference's ``'b l (n c) -> b (l n) c'`` + ``data_seq_to_patch`` (spec §2.3 output order)."""
    pt, ph, pw = patch_size
    b = tokens.shape[0]
    t = tokens.reshape(b, num_frames // pt, height // ph, width // pw, pt, ph, pw, -1)
    t = t.permute(0, 7, 1, 4, 2, 5, 3, 6)
    return t.reshape(b, t.shape[1], num_frames, height, width)


def actions_to_tokens(a: torch.Tensor) -> torch.Tensor:
    """(B, 30, F, A, 1) -> (B, F*A, 30), tokens in (f, j) order."""
    b, c = a.shape[:2]
    return a.permute(0, 2, 3, 4, 1).reshape(b, -1, c)


def tokens_to_actions(t: torch.Tensor, num_frames: int) -> torch.Tensor:
    """(B, F*A, 30) -> (B, 30, F, A, 1)."""
    b, l, c = t.shape
    return t.reshape(b, num_frames, l // num_frames, 1, c).permute(0, 4, 1, 2, 3)


# ---------------------------------------------------------------------------------------- modules
class WanTimeTextImageEmbedding(nn.Module):
    """Sinusoidal timestep features -> ``time_embedder`` (temb) -> SiLU -> ``time_proj`` (6 adaLN vectors),
    plus the PixArt-style ``text_embedder`` (only the video copy's is ever used)."""

    def __init__(self, dim: int, time_freq_dim: int, time_proj_dim: int, text_embed_dim: int):
        super().__init__()
        self.timesteps_proj = Timesteps(num_channels=time_freq_dim, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedder = TimestepEmbedding(in_channels=time_freq_dim, time_embed_dim=dim)
        self.act_fn = nn.SiLU()
        self.time_proj = nn.Linear(dim, time_proj_dim)
        self.text_embedder = PixArtAlphaTextProjection(text_embed_dim, dim, act_fn="gelu_tanh")

    def forward(self, timesteps: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """timesteps (B, G) float -> temb (B, G, C) in ``dtype``, timestep_proj (B, G, 6C)."""
        b, g = timesteps.shape
        feats = self.timesteps_proj(timesteps.reshape(-1).float())
        feats = feats.to(self.time_embedder.linear_1.weight.dtype)
        temb = self.time_embedder(feats).to(dtype)
        proj = self.time_proj(self.act_fn(temb).to(self.time_proj.weight.dtype))
        return temb.reshape(b, g, -1), proj.reshape(b, g, -1)


class WanAttention(nn.Module):
    """q/k/v/out projections with biases; RMSNorm over the full inner width of q and k before the head
    split; RoPE (self-attention only) after the norm."""

    def __init__(self, dim: int, heads: int, dim_head: int, eps: float):
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.to_q = nn.Linear(dim, inner, bias=True)
        self.to_k = nn.Linear(dim, inner, bias=True)
        self.to_v = nn.Linear(dim, inner, bias=True)
        self.to_out = nn.ModuleList([nn.Linear(inner, dim, bias=True), nn.Dropout(0.0)])
        self.norm_q = nn.RMSNorm(inner, eps=eps, elementwise_affine=True)
        self.norm_k = nn.RMSNorm(inner, eps=eps, elementwise_affine=True)

    def qkv(self, x: torch.Tensor, rope: RopeTable | None):
        q = self.norm_q(self.to_q(x)).unflatten(2, (self.heads, -1))
        k = self.norm_k(self.to_k(x)).unflatten(2, (self.heads, -1))
        v = self.to_v(x).unflatten(2, (self.heads, -1))
        if rope is not None:
            q, k = apply_rope(q, rope), apply_rope(k, rope)
        return q, k, v

    def kv(self, ctx: torch.Tensor):
        k = self.norm_k(self.to_k(ctx)).unflatten(2, (self.heads, -1))
        v = self.to_v(ctx).unflatten(2, (self.heads, -1))
        return k, v

    def out(self, o: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return self.to_out[0](o.flatten(2).type_as(like))


def _ln(x: torch.Tensor, eps: float) -> torch.Tensor:
    """Non-affine LayerNorm in fp32 (norm1 / norm3 / norm_out)."""
    return F.layer_norm(x.float(), (x.shape[-1],), eps=eps)


class WanTransformerBlock(nn.Module):
    def __init__(self, dim: int, ffn_dim: int, num_heads: int, cross_attn_norm: bool, eps: float):
        super().__init__()
        self.eps = eps
        self.attn1 = WanAttention(dim, num_heads, dim // num_heads, eps)
        self.attn2 = WanAttention(dim, num_heads, dim // num_heads, eps)
        self.norm2 = FP32LayerNorm(dim, eps, elementwise_affine=True) if cross_attn_norm else nn.Identity()
        self.ffn = FeedForward(dim, inner_dim=ffn_dim, activation_fn="gelu-approximate")
        self.scale_shift_table = nn.Parameter(torch.randn(1, 6, dim) / dim**0.5)

    def forward(
        self,
        x: torch.Tensor,                 # (B, G*g, C) tokens, g consecutive tokens share one modulation
        proj: torch.Tensor,              # (B, G, 6C) timestep_proj per group
        rope: RopeTable | None,
        self_attn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
        text_kv: tuple[torch.Tensor, torch.Tensor] | torch.Tensor,
    ) -> torch.Tensor:
        if isinstance(text_kv, torch.Tensor):
            # Training: the projected text (B, Lt, C) goes in and its K/V are computed here, inside this
            # block's forward, so gradients reach attn2.to_k/to_v and a per-block FSDP unit owns the weights.
            text_kv = self.attn2.kv(text_kv)
        b, l, c = x.shape
        groups = proj.shape[1]
        # adaLN sums in fp32 (spec §1.1 item 4-5); (B, G, 6, 1, C) broadcasts over the g tokens of a group.
        mod = (self.scale_shift_table.float().unsqueeze(0) + proj.float().view(b, groups, 6, c)).unsqueeze(3)
        shift, scale, gate, c_shift, c_scale, c_gate = mod.unbind(2)
        dt = x.dtype

        def modulate(y32, sc, sh):  # y32 (B, L, C) fp32 -> grouped affine -> model dtype
            return (y32.view(b, groups, -1, c) * (1.0 + sc) + sh).view(b, l, c).to(dt)

        def gated_add(base, y, g):  # fp32 residual sum (reference: x.float() + y * gate)
            return (base.float().view(b, groups, -1, c) + y.float().view(b, groups, -1, c) * g).view(b, l, c).to(dt)

        # 1. self-attention (through the KV cache at inference)
        h = modulate(_ln(x, self.eps), scale, shift)
        q, k, v = self.attn1.qkv(h, rope)
        x = gated_add(x, self.attn1.out(self_attn(q, k, v), h), gate)
        # 2. cross-attention on the text, no gate / no modulation, zero-padded rows live (no mask)
        h = self.norm2(x.float()).to(dt)
        q = self.attn2.norm_q(self.attn2.to_q(h)).unflatten(2, (self.attn2.heads, -1))
        x = x + self.attn2.out(attention(q, text_kv[0], text_kv[1]), h)
        # 3. feed-forward
        h = modulate(_ln(x, self.eps), c_scale, c_shift)
        return gated_add(x, self.ffn(h), c_gate)


class TextContext(NamedTuple):
    """Per-layer cross-attention K/V of the projected text, computed once per episode (B = CFG streams)."""

    kv: list[tuple[torch.Tensor, torch.Tensor]]

    @property
    def batch_size(self) -> int:
        return self.kv[0][0].shape[0]

    def select(self, b: int) -> "TextContext":
        """The first ``b`` streams (b=1: conditional only)."""
        if b == self.batch_size:
            return self
        if b > self.batch_size:
            raise ValueError(f"{b} streams requested but the text context holds {self.batch_size}")
        return TextContext([(k[:b], v[:b]) for k, v in self.kv])


class TransformerLoadError(RuntimeError):
    """A checkpoint does not match the model (missing / unexpected / mis-shaped tensors)."""


class WanTransformer3DModel(ModelMixin, ConfigMixin):
    """Shared video/action DiT of LingBot-VA (inference). See module docstring."""

    _supports_gradient_checkpointing = True   # forward_train(activation_checkpointing=True)
    _no_split_modules = ["WanTransformerBlock"]
    # As declared by the newer reference: these stay fp32 when loaded with torch_dtype=bf16.
    _keep_in_fp32_modules = ["time_embedder", "scale_shift_table", "norm1", "norm2", "norm3"]
    # Vestigial Wan conv patch embedding: present in real checkpoints, never used.
    _keys_to_ignore_on_load_unexpected = [r"^patch_embedding\.", r"norm_added_q"]

    @register_to_config
    def __init__(
        self,
        patch_size=(1, 2, 2),
        num_attention_heads: int = 24,
        attention_head_dim: int = 128,
        in_channels: int = 48,
        out_channels: int = 48,
        action_dim: int = 30,
        text_dim: int = 4096,
        freq_dim: int = 256,
        ffn_dim: int = 14336,
        num_layers: int = 30,
        cross_attn_norm: bool = True,
        eps: float = 1e-6,
        rope_max_seq_len: int = 1024,
        pos_embed_seq_len=None,
        attn_mode: str = "torch",
    ):
        super().__init__()
        if attn_mode not in ATTN_MODES:
            raise ValueError(f"unsupported attn_mode {attn_mode!r}; expected one of {ATTN_MODES}")
        self.patch_size = tuple(int(p) for p in patch_size)
        self.num_attention_heads = num_attention_heads
        self.attention_head_dim = attention_head_dim
        self.eps = eps
        inner = num_attention_heads * attention_head_dim
        self.inner_dim = inner
        self.patch_embedding_mlp = nn.Linear(in_channels * math.prod(self.patch_size), inner)
        self.action_embedder = nn.Linear(action_dim, inner)
        self.condition_embedder = WanTimeTextImageEmbedding(inner, freq_dim, inner * 6, text_dim)
        # Separately trained copy for action tokens; its text_embedder exists in checkpoints but is unused.
        self.condition_embedder_action = WanTimeTextImageEmbedding(inner, freq_dim, inner * 6, text_dim)
        self.blocks = nn.ModuleList(
            [WanTransformerBlock(inner, ffn_dim, num_attention_heads, cross_attn_norm, eps) for _ in range(num_layers)]
        )
        self.proj_out = nn.Linear(inner, out_channels * math.prod(self.patch_size))
        self.action_proj_out = nn.Linear(inner, action_dim)
        self.scale_shift_table = nn.Parameter(torch.randn(1, 2, inner) / inner**0.5)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, torch_dtype=None, subfolder=None, **kwargs):
        """Local folder (single ``diffusion_pytorch_model.safetensors`` or shards + index, bf16 or fp32):
        loaded here with explicit checks; anything else goes to diffusers' implementation."""
        folder = os.fspath(pretrained_model_name_or_path)
        if subfolder:
            folder = os.path.join(folder, subfolder)
        if os.path.isdir(folder) and not args and not kwargs:
            return _from_local_folder(cls, folder, torch_dtype)
        return super().from_pretrained(pretrained_model_name_or_path, *args, torch_dtype=torch_dtype, subfolder=subfolder, **kwargs)

    # ------------------------------------------------------------------ helpers
    @property
    def weight_device(self) -> torch.device:
        """Device of the weights (``ModelMixin.device`` walks hooks and costs ~ms per call)."""
        return self.patch_embedding_mlp.weight.device

    @property
    def compute_dtype(self) -> torch.dtype:
        """dtype of the token stream (= the bulk weights', e.g. bf16 while norms/tables stay fp32)."""
        return self.patch_embedding_mlp.weight.dtype

    def tokens_per_frame(self, latent_height: int, latent_width: int) -> int:
        return (latent_height // self.patch_size[1]) * (latent_width // self.patch_size[2])

    @torch.no_grad()
    def prepare_text(self, text_emb: torch.Tensor) -> TextContext:
        """text_emb (B, L, text_dim) -> per-layer cross-attention K/V (text projection applied once)."""
        te = self.condition_embedder.text_embedder
        ctx = te(text_emb.to(te.linear_1.weight.device, te.linear_1.weight.dtype)).to(self.compute_dtype)
        return TextContext([blk.attn2.kv(ctx) for blk in self.blocks])

    def video_rope(self, num_frames: int, height: int, width: int, frame_start: int) -> RopeTable:
        pt, ph, pw = self.patch_size
        grid = video_grid_ids(num_frames // pt, height // ph, width // pw, frame_start)
        return rope_table(grid, self.attention_head_dim, self.weight_device)

    def action_rope(self, num_frames: int, actions_per_frame: int, frame_start: int) -> RopeTable:
        grid = action_grid_ids(num_frames, actions_per_frame, frame_start)
        return rope_table(grid, self.attention_head_dim, self.weight_device)

    @staticmethod
    def token_frames(action_mode: bool, num_frames: int, per_frame: int, frame_start: int) -> torch.Tensor:
        """RoPE frame position of every token (the KV cache's frame tag), CPU float32."""
        if action_mode:
            return action_grid_ids(num_frames, per_frame, frame_start)[0]
        return torch.arange(frame_start, frame_start + num_frames, dtype=torch.float32).repeat_interleave(per_frame)

    def _embed(self, x: torch.Tensor, action_mode: bool) -> torch.Tensor:
        if action_mode:
            return self.action_embedder(actions_to_tokens(x).to(self.action_embedder.weight.dtype))
        return self.patch_embedding_mlp(patchify_video(x, self.patch_size).to(self.patch_embedding_mlp.weight.dtype))

    def _time(self, timesteps: torch.Tensor, action_mode: bool, dtype: torch.dtype):
        emb = self.condition_embedder_action if action_mode else self.condition_embedder
        return emb(timesteps, dtype)

    def _head(self, h: torch.Tensor, temb: torch.Tensor, action_mode: bool) -> torch.Tensor:
        """Final adaLN (shift, scale from table + temb, fp32) and the modality head; h (B, G*g, C)."""
        b, l, c = h.shape
        groups = temb.shape[1]
        mod = (self.scale_shift_table.float().unsqueeze(0) + temb.float().unsqueeze(2)).unsqueeze(3)  # B G 2 1 C
        shift, scale = mod.unbind(2)
        y = (_ln(h, self.eps).view(b, groups, -1, c) * (1.0 + scale) + shift).view(b, l, c).to(h.dtype)
        return self.action_proj_out(y) if action_mode else self.proj_out(y)

    # ------------------------------------------------------------------ inference forward
    def forward(
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor,
        text: TextContext | torch.Tensor,
        *,
        action_mode: bool = False,
        frame_start: int = 0,
        rope: RopeTable | None = None,
        kv_cache=None,
        update_cache: int = 0,
        compute_output: bool = True,
    ) -> torch.Tensor | None:
        """One video-mode or action-mode forward (spec §1.1, §3).

        x: video latents (B, C_in, F, H, W) or actions (B, action_dim, F, A, 1).
        timesteps: per-frame timesteps (F,) or (B, F), float in [0, 1000].
        text: ``TextContext`` from ``prepare_text`` (B or more streams) or raw embeddings (B, L, text_dim).
        rope: precomputed table for these tokens (else built from ``frame_start``).
        kv_cache: object with begin/attend/end_forward/abort (``SlabKVCache``) or None (plain attention
            among the given tokens). ``update_cache``: 0 transient, 1 predicted, 2 ground truth.
        Returns the velocity in the input layout (float of the model dtype), or None if not compute_output.
        """
        b, f = x.shape[0], x.shape[2]
        h = self._embed(x, action_mode)
        per_frame = h.shape[1] // f
        t = timesteps.to(device=h.device, dtype=torch.float32)
        if t.dim() == 1:
            t = t.unsqueeze(0)
        if t.shape[0] != b:
            t = t.expand(b, -1)
        temb, proj = self._time(t, action_mode, h.dtype)
        if rope is None:
            rope = (
                self.action_rope(f, per_frame, frame_start)
                if action_mode
                else self.video_rope(f, x.shape[3], x.shape[4], frame_start)
            )
        if not isinstance(text, TextContext):
            text = self.prepare_text(text)
        text = text.select(b)
        if kv_cache is not None:
            kv_cache.begin(h.shape[1], update_cache, self.token_frames(action_mode, f, per_frame, frame_start), b)
        try:
            for i, blk in enumerate(self.blocks):
                op = (lambda q, k, v, _i=i: kv_cache.attend(_i, q, k, v)) if kv_cache is not None else attention
                h = blk(h, proj, rope, op, text.kv[i])
        except BaseException:
            if kv_cache is not None:
                kv_cache.abort()
            raise
        if kv_cache is not None:
            kv_cache.end_forward()
        if not compute_output:
            return None
        out = self._head(h, temb, action_mode)
        if action_mode:
            return tokens_to_actions(out, f)
        return unpatchify_video(out, self.patch_size, f, x.shape[3], x.shape[4])

    # ------------------------------------------------------------------ training (teacher-forcing) forward
    def forward_train(
        self,
        segments: Sequence[tuple[torch.Tensor, torch.Tensor, bool, int]],
        text: TextContext | torch.Tensor,
        attention_mask: torch.Tensor | Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
        *,
        outputs: Sequence[bool] | None = None,
        activation_checkpointing: bool = False,
    ) -> list[torch.Tensor | None]:
        """Several token segments in ONE sequence under an attention mask: the reference ``forward_train``
        ([noisy video | clean video | noisy actions | clean actions] under the block-causal mask, spec §2.4).

        Same modules and the same per-token arithmetic as :meth:`forward`: embedders, per-frame timestep
        embeddings (the adaLN modulation is expanded to every token of its frame), RoPE positions from each
        segment's ``frame_start``, the same blocks and heads. Only self-attention differs: every token attends
        to the keys the mask allows instead of to a KV cache.

        segments: (x, per-frame timesteps (F,) or (B, F), action_mode, frame_start), x in :meth:`forward`'s
            layout (video (B, C, F, H, W) or actions (B, action_dim, F, A, 1)).
        text: raw prompt embeddings (B, L_text, text_dim) - projected here with gradients - or a
            ``TextContext`` (inference-style precomputed K/V, no gradients).
        attention_mask: bool [L, L] (True = attend; dense SDPA) or a callable ``(q, k, v) -> out`` over
            (B, L, H, D) tensors (e.g. flex attention with a BlockMask).
        outputs: per segment, whether to run its head (clean/conditioning copies need none); default all.
        activation_checkpointing: recompute each block in the backward pass instead of storing activations.
        Returns one velocity per segment (None where ``outputs`` is False), float in the compute dtype.
        """
        if outputs is None:
            outputs = [True] * len(segments)
        b = segments[0][0].shape[0]
        hs, projs, tembs, ropes = [], [], [], []
        for x, t, action_mode, fs in segments:
            f = x.shape[2]
            h = self._embed(x, action_mode)
            g = h.shape[1] // f
            temb, proj = self._time(t.float().reshape(-1, f).expand(b, -1), action_mode, h.dtype)
            hs.append(h)
            projs.append(proj.repeat_interleave(g, 1))  # per-token modulation: a group of 1 token
            tembs.append(temb)
            ropes.append(self.action_rope(f, g, fs) if action_mode else self.video_rope(f, x.shape[3], x.shape[4], fs))
        if isinstance(text, TextContext):
            text_inputs = text.select(b).kv
        else:
            te = self.condition_embedder.text_embedder
            ctx = te(text.to(te.linear_1.weight.dtype)).to(hs[0].dtype)
            text_inputs = [ctx] * len(self.blocks)
        rope = RopeTable(torch.cat([r.cos for r in ropes]), torch.cat([r.sin for r in ropes]))
        h = torch.cat(hs, 1)
        proj = torch.cat(projs, 1)
        if callable(attention_mask):
            attn = attention_mask
        else:
            mask = attention_mask.to(h.device)
            attn = lambda q, k, v: attention(q, k, v, mask)  # noqa: E731
        for i, blk in enumerate(self.blocks):
            if activation_checkpointing and torch.is_grad_enabled():
                from torch.utils.checkpoint import checkpoint

                h = checkpoint(blk, h, proj, rope, attn, text_inputs[i], use_reentrant=False)
            else:
                h = blk(h, proj, rope, attn, text_inputs[i])
        outs, o = [], 0
        for (x, _, action_mode, _), hseg, temb, want in zip(segments, hs, tembs, outputs):
            n = hseg.shape[1]
            if want:
                y = self._head(h[:, o:o + n], temb, action_mode)
                f = x.shape[2]
                outs.append(tokens_to_actions(y, f) if action_mode
                            else unpatchify_video(y, self.patch_size, f, x.shape[3], x.shape[4]))
            else:
                outs.append(None)
            o += n
        return outs

    def forward_segments(
        self,
        segments: Sequence[tuple[torch.Tensor, torch.Tensor, bool, int]],
        text: TextContext | torch.Tensor,
        attn_mask: torch.Tensor | None = None,
    ) -> list[torch.Tensor]:
        """:meth:`forward_train` with a dense bool mask (None: full attention), every head computed."""
        if attn_mask is None:
            n = sum(self._segment_tokens(x, a) for x, _, a, _ in segments)
            attn_mask = torch.ones(n, n, dtype=torch.bool)
        return self.forward_train(segments, text, attn_mask)

    def _segment_tokens(self, x: torch.Tensor, action_mode: bool) -> int:
        if action_mode:
            return x.shape[2] * x.shape[3]
        pt, ph, pw = self.patch_size
        return (x.shape[2] // pt) * (x.shape[3] // ph) * (x.shape[4] // pw)


# ---------------------------------------------------------------------------------------- loading
_INDEX_NAME = "diffusion_pytorch_model.safetensors.index.json"
_WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
_VESTIGIAL_PREFIXES = ("patch_embedding.",)                         # Wan conv embedder, never used
_OPTIONAL_PREFIXES = ("condition_embedder_action.text_embedder.",)  # never called: tolerate absence


def _checkpoint_files(folder: str) -> list[str]:
    index = os.path.join(folder, _INDEX_NAME)
    if os.path.isfile(index):
        with open(index) as fh:
            names = sorted(set(json.load(fh)["weight_map"].values()))
    elif os.path.isfile(os.path.join(folder, _WEIGHTS_NAME)):
        names = [_WEIGHTS_NAME]
    else:
        raise TransformerLoadError(f"{folder}: neither {_WEIGHTS_NAME} nor {_INDEX_NAME} found")
    files = [os.path.join(folder, n) for n in names]
    for f in files:
        if not os.path.isfile(f):
            raise TransformerLoadError(f"{folder}: shard {os.path.basename(f)} listed in {_INDEX_NAME} is missing")
    return files


def _checkpoint_shapes(folder: str) -> dict[str, tuple[tuple[int, ...], str]]:
    """name -> (shape, shard file name), from the safetensors headers only (no tensor data read)."""
    from safetensors import safe_open

    shapes = {}
    for path in _checkpoint_files(folder):
        with safe_open(path, framework="pt") as fh:
            for key in fh.keys():
                shapes[key] = (tuple(fh.get_slice(key).get_shape()), os.path.basename(path))
    return shapes


def check_checkpoint(folder: str, model: nn.Module) -> list[str]:
    """Raise ``TransformerLoadError`` naming every missing tensor and every shape mismatch (tensor name,
    checkpoint shape and shard, model shape). Returns the unexpected (ignored) tensor names."""
    shapes = _checkpoint_shapes(folder)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = [k for k in expected if k not in shapes and not k.startswith(_OPTIONAL_PREFIXES)]
    mismatched = [
        f"  {k}: checkpoint {list(shapes[k][0])} (in {shapes[k][1]}) vs model {list(expected[k])}"
        for k in expected
        if k in shapes and shapes[k][0] != expected[k]
    ]
    problems = []
    if missing:
        more = " ..." if len(missing) > 20 else ""
        problems.append(f"missing tensors ({len(missing)}): " + ", ".join(missing[:20]) + more)
    if mismatched:
        problems.append("shape mismatches (tensor: checkpoint vs model config):\n" + "\n".join(mismatched))
    if problems:
        raise TransformerLoadError(f"cannot load WanTransformer3DModel from {folder}:\n" + "\n".join(problems))
    return [k for k in shapes if k not in expected and not k.startswith(_VESTIGIAL_PREFIXES)]


def _keep_fp32(name: str) -> bool:
    parts = name.split(".")
    return any(m in parts for m in WanTransformer3DModel._keep_in_fp32_modules)


def _from_local_folder(cls, folder: str, torch_dtype: torch.dtype | None) -> "WanTransformer3DModel":
    """Build on the meta device (no 5B random init), check the checkpoint, then assign the tensors.

    Bulk weights take ``torch_dtype`` (default float32); ``_keep_in_fp32_modules`` (time embedder, adaLN
    tables, affine norm) stay float32. Done here rather than through diffusers because its fp32-keeping
    path needs ``accelerate``, which is not a dependency of this package.
    """
    from safetensors.torch import load_file

    dtype = torch_dtype or torch.float32
    config = cls.load_config(folder)
    with torch.device("meta"):
        model = cls.from_config(config)
    unexpected = check_checkpoint(folder, model)
    if unexpected:
        logger.warning("ignoring %d unexpected tensors in %s: %s", len(unexpected), folder, ", ".join(unexpected[:10]))
    expected = model.state_dict()
    state = {}
    for path in _checkpoint_files(folder):
        for k, t in load_file(path).items():
            if k in expected:
                state[k] = t.to(torch.float32 if _keep_fp32(k) else dtype)
    model.load_state_dict(state, strict=False, assign=True)
    for name, p in list(model.named_parameters()):
        if p.is_meta:  # optional unused tensors absent from the checkpoint
            mod_name, _, attr = name.rpartition(".")
            mod = model.get_submodule(mod_name)
            setattr(mod, attr, nn.Parameter(torch.zeros(p.shape, dtype=torch.float32 if _keep_fp32(name) else dtype)))
    return model


def load_transformer(folder: str, device="cpu", dtype: torch.dtype = torch.bfloat16) -> WanTransformer3DModel:
    """Load a ``transformer/`` folder for inference on ``device`` with bulk weights in ``dtype``.

    Any ``attn_mode`` in config.json is accepted, including the training-only ``flex``: this model always
    runs inference attention (SDPA, or flash-attn on CUDA half precision)."""
    model = WanTransformer3DModel.from_pretrained(folder, torch_dtype=dtype)
    return model.to(device).eval().requires_grad_(False)
