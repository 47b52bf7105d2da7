"""Roofline floor of one LingBot-VA chunk: the FLOPs and bytes each transformer forward must move, at a device's
peak compute and memory bandwidth.

The forward schedule of a chunk depends only on the geometry (tokens per frame, frames per chunk, actions per
frame, denoising steps, CFG batch, KV-cache capacity), not on the model's width, so one formula covers the tiny
test checkpoint (validated against ``torch.utils.flop_counter`` on the real code, see
``test/model/test_model_roofline.py``) and the 5B release.  Per forward, the floor is
``max(flops / peak_flops, bytes / bandwidth)``: the 50 action steps (64 query tokens against a ~10k-token cache)
are bandwidth-bound on a GPU, the video steps compute-bound; summing per-forward maxima is a tighter floor than
one max over the chunk.  Bytes count what must be read at least once per forward (weights, the attended K/V of
the cache and of the text); activations are ignored, so this is a lower bound.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

# the release's transformer (docs: lingbot_va_model_spec.md §1): Wan2.2-TI2V-5B
FULL_SIZE = {"dim": 3072, "ffn_dim": 14336, "num_layers": 30, "in_channels": 48, "patch": 4, "action_dim": 30,
             "text_rows": 512}
# published dense peaks (bf16 tensor cores without sparsity; HBM bandwidth): NVIDIA H100 SXM / H200 datasheets
DEVICES = {"H100 SXM (bf16)": (989e12, 3.35e12), "H200 (bf16)": (989e12, 4.8e12)}


@dataclass(frozen=True)
class Forward:
    batch: int          # CFG streams in this forward
    tokens: int         # query tokens per stream
    keys: int           # self-attention keys per stream (the cache's live range + the tokens themselves)
    video: bool         # video tokens (patch embedding in, projection out) or action tokens
    output: bool = True  # a commit forward computes no output projection


@dataclass(frozen=True)
class Dims:
    dim: int
    ffn_dim: int
    num_layers: int
    in_channels: int = 48
    patch: int = 4              # 1 x 2 x 2
    action_dim: int = 30
    text_rows: int = 512
    bytes_per_value: int = 2    # bf16

    @classmethod
    def of(cls, model, bytes_per_value: int | None = None) -> "Dims":
        c = model.config
        inner = c.num_attention_heads * c.attention_head_dim
        value = bytes_per_value or next(model.parameters()).element_size()
        return cls(inner, c.ffn_dim, c.num_layers, c.in_channels, c.patch_size[0] * c.patch_size[1] * c.patch_size[2],
                   c.action_dim, bytes_per_value=value)


def chunk_forwards(cfg, capacity: int, tokens_per_frame: int, batch: int) -> list[Forward]:
    """The forwards of one steady-state chunk (cache full): video steps + commit, action steps + commit, and the
    ground's video and action commits. ``cfg``: a ``WorldModelConfig``."""
    video_tokens = cfg.frame_chunk_size * tokens_per_frame
    action_tokens = cfg.frame_chunk_size * cfg.action_per_frame
    out = [Forward(batch, video_tokens, capacity, True) for _ in range(cfg.num_inference_steps)]
    out.append(Forward(batch, video_tokens, capacity, True, output=False))
    out += [Forward(batch, action_tokens, capacity, False) for _ in range(cfg.action_num_inference_steps)]
    out.append(Forward(batch, action_tokens, capacity, False, output=False))
    out += [Forward(batch, video_tokens, capacity, True, output=False),
            Forward(batch, action_tokens, capacity, False, output=False)]
    return out


def forward_flops(f: Forward, d: Dims) -> float:
    n = f.batch * f.tokens
    per_layer = 2 * n * (6 * d.dim * d.dim + 2 * d.dim * d.ffn_dim)          # q k v o, cross q o, FFN
    per_layer += 4 * n * f.keys * d.dim + 4 * n * d.text_rows * d.dim          # self- and cross-attention
    width = d.in_channels * d.patch if f.video else d.action_dim
    io = 2 * n * width * d.dim * (2 if f.output else 1)                         # embed in (+ project out)
    return d.num_layers * per_layer + io


def forward_bytes(f: Forward, d: Dims) -> float:
    weights = d.num_layers * (6 * d.dim * d.dim + 2 * d.dim * d.ffn_dim)
    kv = d.num_layers * f.batch * 2 * (f.keys + d.text_rows) * d.dim
    return (weights + kv) * d.bytes_per_value


@dataclass(frozen=True)
class Floor:
    flops: float
    bytes: float
    seconds: float            # sum over forwards of max(compute, memory)
    compute_bound_share: float

    def describe(self) -> str:
        return (f"{self.flops / 1e12:.2f} TFLOP, {self.bytes / 1e9:.1f} GB -> floor {self.seconds * 1e3:.1f} ms "
                f"({self.compute_bound_share:.0%} of it compute-bound)")


def chunk_floor(forwards: list[Forward], dims: Dims, peak_flops: float, bandwidth: float) -> Floor:
    flops = bytes_ = secs = compute = 0.0
    for f in forwards:
        fl, by = forward_flops(f, dims), forward_bytes(f, dims)
        t_c, t_m = fl / peak_flops, by / bandwidth
        flops, bytes_, secs = flops + fl, bytes_ + by, secs + max(t_c, t_m)
        compute += t_c if t_c >= t_m else 0.0
    return Floor(flops, bytes_, secs, compute / secs if secs else 0.0)


def count_flops(fn, *args, **kwargs) -> tuple[float, dict[str, float]]:
    """FLOPs torch actually dispatches in ``fn`` (matmuls and attention), by op. The CPU's fused attention
    kernel has no formula in torch's counter; it gets the same one as the GPU kernels."""
    def cpu_sdpa(query_shape, key_shape, value_shape, *_a, out_shape=None, **_k):
        return sdpa_flop_count(query_shape, key_shape, value_shape)

    counter = FlopCounterMode(display=False, custom_mapping={
        torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: cpu_sdpa})
    with counter:
        fn(*args, **kwargs)
    by_op = {str(k): float(v) for k, v in counter.get_flop_counts().get("Global", {}).items()}
    return float(counter.get_total_flops()), by_op


def measure_cpu_peak(threads: int = 1, size: int = 1024, reps: int = 20) -> tuple[float, float]:
    """(fp32 matmul FLOP/s, copy bandwidth bytes/s) of this CPU, measured: the best of ``reps``, as a roofline's
    ceilings are the best the machine does, not its average under other jobs."""
    import time

    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    best_mm = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        torch.mm(a, b)
        best_mm = min(best_mm, time.perf_counter() - t)
    src = torch.empty(64 * 2**20 // 4)   # 64 MB: far beyond the caches
    dst = torch.empty_like(src)
    best_cp = float("inf")
    for _ in range(max(5, reps // 4)):
        t = time.perf_counter()
        dst.copy_(src)
        best_cp = min(best_cp, time.perf_counter() - t)
    return 2 * size ** 3 / best_mm, 2 * src.numel() * 4 / best_cp
