"""Attention kernels for inference: PyTorch SDPA, or flash-attn's ``flash_attn_func`` when usable.

All tensors use the (B, L, H, D) layout of the model (and of the KV-cache slab). SDPA wants (B, H, L, D):
``transpose(1, 2)`` is a free view and both the flash and memory-efficient SDPA back-ends accept it
without a copy as long as the last dim is contiguous, which slab slices always are.
No attention mask is used anywhere at inference (spec §1.1 item 6), so the fast kernels apply.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

try:  # optional; FA3 first, then FA2 (same call signature for what we use)
    from flash_attn_interface import flash_attn_func as _flash_attn_func  # type: ignore
except Exception:  # pragma: no cover - depends on the host
    try:
        from flash_attn import flash_attn_func as _flash_attn_func  # type: ignore
    except Exception:
        _flash_attn_func = None

# "auto": flash-attn when importable and the inputs are CUDA fp16/bf16, else SDPA. "sdpa": always SDPA.
_BACKEND = "auto"


def set_attention_backend(name: str) -> None:
    global _BACKEND
    if name not in ("auto", "sdpa"):
        raise ValueError(f"unknown attention backend {name!r} (expected 'auto' or 'sdpa')")
    _BACKEND = name


def flash_attn_available() -> bool:
    return _flash_attn_func is not None


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(q k^T / sqrt(D)) v over (B, L, H, D) tensors; ``mask`` (bool, True = attend) broadcastable
    to (B, H, Lq, Lk) is only used by tests and the training-style sequence forward."""
    if (
        mask is None
        and _BACKEND == "auto"
        and _flash_attn_func is not None
        and q.is_cuda
        and q.dtype in (torch.float16, torch.bfloat16)
        and k.dtype == q.dtype
    ):
        out = _flash_attn_func(q, k, v)
        return out[0] if isinstance(out, tuple) else out  # FA3 returns (out, lse)
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask)
    return out.transpose(1, 2)
