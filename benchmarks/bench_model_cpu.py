"""CPU latency of the LingBot-VA world-model core: a tiny random transformer at RoboTwin geometry.

RoboTwin operating point: latent 24x20 T-shape canvas (120 tokens/frame), F = 2 latent frames and A = 16
actions per frame per chunk, 25 video steps (CFG 5, shift 5) + 50 action steps (no CFG), attn_window 72
(KV capacity 36 chunks = 9792 tokens), 512 text rows. The cache is first filled to capacity with grounded
chunks, so the numbers are the steady state (every forward attends 9792 keys, every write evicts).

Reported: median per-chunk latency split into transformer-video (25 steps + commit), transformer-action
(50 steps + commit) and ground (2 commits), for the slab KV cache and for a gather-based cache with the
official semantics (per-layer allocate/evict + ``pool[:, valid]`` gathers), plus the attention op alone.

    python benchmarks/bench_model_cpu.py [--runs 5] [--threads 1] [--out docs/benchmarks/model_cpu.md]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from lingbot_va_ros.model import roofline
from lingbot_va_ros.model.kv_cache import SlabKVCache
from lingbot_va_ros.model.transformer import WanTransformer3DModel
from lingbot_va_ros.model.world_model import LingBotVAWorldModel, WorldModelConfig

ROBOTWIN_IDS = [0, 1, 2, 3, 4, 5, 6, 28, 7, 8, 9, 10, 11, 12, 13, 29]


class GatherKVCache:
    """The official cache layout: per layer k/v pools + valid mask + ids; every forward allocates (argsort
    eviction) and gathers ``pool[:, valid]`` in every layer. Same protocol as SlabKVCache."""

    def __init__(self, num_layers, capacity, batch_size, num_heads, head_dim, *, device="cpu", dtype=torch.float32, slack=None):
        self.capacity = capacity
        self.k = [torch.zeros(batch_size, capacity, num_heads, head_dim, dtype=dtype, device=device) for _ in range(num_layers)]
        self.v = [torch.zeros_like(t) for t in self.k]
        self.meta = [dict(id=torch.full((capacity,), -1, dtype=torch.long), mask=torch.zeros(capacity, dtype=torch.bool),
                          pred=torch.zeros(capacity, dtype=torch.bool), frame=torch.zeros(capacity)) for _ in range(num_layers)]
        self._p = None

    def begin(self, n, update, frames, batch=None):
        self._p = (n, update, frames, batch)

    def attend(self, layer, q, k, v):
        n, update, frames, b = self._p
        m = self.meta[layer]
        free = (~m["mask"]).nonzero().squeeze(-1)
        if free.numel() < n:
            used = m["mask"].nonzero().squeeze(-1)
            drop = used[torch.argsort(m["id"][used], stable=True)[: n - free.numel()]]
            m["mask"][drop] = False
            m["id"][drop] = -1
            free = (~m["mask"]).nonzero().squeeze(-1)
        slots = free[:n]
        new_id = m["id"][m["mask"]].max() + 1 if m["mask"].any() else 0
        m["mask"][slots], m["id"][slots], m["pred"][slots], m["frame"][slots] = True, new_id, update == 1, frames
        b = b or self.k[layer].shape[0]
        self.k[layer][:b, slots] = k
        self.v[layer][:b, slots] = v
        valid = m["mask"].nonzero().squeeze(-1)
        key, val = self.k[layer][:b, valid], self.v[layer][:b, valid]
        out = F.scaled_dot_product_attention(q.transpose(1, 2), key.transpose(1, 2), val.transpose(1, 2)).transpose(1, 2)
        if update == 0:
            m["mask"][slots] = False
        return out

    def end_forward(self):
        self._p = None

    def abort(self):
        self._p = None

    def reserve(self, n, frames):
        raise NotImplementedError

    def clear(self):
        for m in self.meta:
            m["mask"][:] = False

    def clear_pred(self):
        for m in self.meta:
            m["mask"][m["pred"]] = False

    def clear_frames(self, lo, hi=float("inf"), pred_only=True):
        for m in self.meta:
            sel = (m["frame"] >= lo) & (m["frame"] < hi)
            m["mask"][sel & m["pred"] if pred_only else sel] = False

    def fill(self):
        return float(self.meta[0]["mask"].sum()) / self.capacity

    def live_frames(self):
        return self.meta[0]["frame"][self.meta[0]["mask"]]

    def live_is_pred(self):
        return self.meta[0]["pred"][self.meta[0]["mask"]]


def robotwin_config(video_steps=25, action_steps=50) -> WorldModelConfig:
    return WorldModelConfig(
        attn_window=72, frame_chunk_size=2, action_per_frame=16, latent_height=24, latent_width=20,
        num_inference_steps=video_steps, action_num_inference_steps=action_steps, video_exec_step=-1,
        snr_shift=5.0, action_snr_shift=1.0, guidance_scale=5.0, action_guidance_scale=1.0,
        used_action_channel_ids=ROBOTWIN_IDS, q01=[-0.5] * 30, q99=[0.5] * 30)


def tiny_model(layers, heads, head_dim, text_dim):
    torch.manual_seed(0)
    return WanTransformer3DModel(patch_size=[1, 2, 2], num_attention_heads=heads, attention_head_dim=head_dim,
                                 in_channels=48, out_channels=48, action_dim=30, text_dim=text_dim, freq_dim=64,
                                 ffn_dim=4 * heads * head_dim, num_layers=layers).eval().requires_grad_(False)


class Episode:
    """One world model whose cache is filled to capacity with grounded chunks; ``chunk()`` times one
    steady-state chunk (infer + ground)."""

    def __init__(self, model, cfg, text_rows, cache_factory=None, **wm_kwargs):
        self.wm = wm = LingBotVAWorldModel(model, cfg, cache_factory=cache_factory, **wm_kwargs)
        # Stage timings in process CPU time: with one intra-op thread this is the work done, and it is far
        # less sensitive than wall-clock to other jobs sharing the machine. (CPU device: no sync needed.)
        wm._now = time.process_time
        self.g = g = torch.Generator().manual_seed(0)
        self.shape = (48, cfg.latent_height, cfg.latent_width, cfg.frame_chunk_size)
        c, h, w, f = self.shape
        text_dim = model.config.text_dim
        wm.reset(torch.randn(text_rows, text_dim, generator=g), torch.randn(text_rows, text_dim, generator=g))
        r = wm.infer(torch.randn(c, 1, h, w, generator=g), generator=g)
        self.actions = r.actions
        wm.ground(torch.randn(c, f - 1, h, w, generator=g), r.actions)
        while wm.cache_fill() < 1.0:  # prefill: grounded history up to capacity
            wm.ground(torch.randn(c, f, h, w, generator=g), r.actions)
        self.rows = []

    def chunk(self):
        c, h, w, f = self.shape
        w0, t0 = time.perf_counter(), time.process_time()
        r = self.wm.infer(generator=self.g)
        t1 = time.process_time()
        self.wm.ground(torch.randn(c, f, h, w, generator=self.g), r.actions)
        t2, w2 = time.process_time(), time.perf_counter()
        self.rows.append(dict(video=r.timings["video"], action=r.timings["action"], ground=t2 - t1, total=t2 - t0,
                              wall=w2 - w0))

    def medians(self):
        return {k: statistics.median(x[k] for x in self.rows) for k in self.rows[0]}


def attention_op(capacity, heads, head_dim, q_len, reps):
    """One layer's cached attention at a full cache: slab view vs gather (median seconds per call)."""
    b = 2
    out = {}
    for name, factory in (("slab", SlabKVCache), ("gather", GatherKVCache)):
        cache = factory(1, capacity, b, heads, head_dim)
        cache.begin(capacity, 2, torch.zeros(capacity))
        cache.attend(0, *(torch.randn(b, capacity, heads, head_dim) for _ in range(3)))
        cache.end_forward()
        q, k, v = (torch.randn(b, q_len, heads, head_dim) for _ in range(3))
        times = []
        for _ in range(reps):
            t0 = time.process_time()
            cache.begin(q_len, 0, torch.ones(q_len))
            cache.attend(0, q, k, v)
            cache.end_forward()
            times.append(time.process_time() - t0)
        out[name] = statistics.median(times)
    return out


def roofline_section(model, cfg, episode, measured, text_rows: int, threads: int) -> list[str]:
    """The chunk's FLOPs (counted by torch on the real code, and by the formula), this CPU's measured ceilings,
    the floor they imply against the measured CPU time, and the 5B model's floor on the GPUs it targets."""
    counted, by_op = roofline.count_flops(episode.chunk)
    episode.rows.pop()                                   # the counted chunk ran under the counter: not timed
    forwards = roofline.chunk_forwards(cfg, episode.wm.cache.capacity, 120, batch=2)
    dims = roofline.Dims.of(model)
    dims = roofline.Dims(**{**dims.__dict__, "text_rows": text_rows})
    formula = sum(roofline.forward_flops(f, dims) for f in forwards)
    peak, bw = roofline.measure_cpu_peak(threads)
    floor = roofline.chunk_floor(forwards, dims, peak, bw)
    full = roofline.Dims(**roofline.FULL_SIZE)
    cond_only = [roofline.Forward(1, f.tokens, f.keys, f.video, f.output) if (not f.video and f.output) else f
                 for f in forwards]
    ops_text = ", ".join(f"{k.split('.')[-1]} {v / 1e9:.1f}" for k, v in by_op.items())
    lines = [
        "### Roofline floor",
        "",
        f"One steady-state chunk = {len(forwards)} transformer forwards (25 video steps + commit, 50 action steps + "
        "commit, ground's video and action commits), every one attending the full cache. "
        "`lingbot_va_ros/model/roofline.py` gives each forward's FLOPs and minimum bytes (weights + attended K/V); "
        "the floor sums max(FLOPs / peak, bytes / bandwidth) over the forwards.",
        "",
        f"- Tiny model, counted by `torch.utils.flop_counter` on the real code: {counted / 1e9:.1f} GFLOP per chunk "
        f"({ops_text}); the formula: "
        f"{formula / 1e9:.1f} GFLOP ({formula / counted:.3f}x).",
        f"- This CPU, {threads} thread(s), measured in this run (best of repeats): {peak / 1e9:.1f} GFLOP/s fp32 "
        f"matmul, {bw / 1e9:.1f} GB/s copy. Floor: {floor.describe()}; measured {measured['total']:.3f} CPU s per "
        f"chunk = {measured['total'] / floor.seconds:.1f}x the floor (attention at 9792 keys with 32-wide heads "
        "runs far below matmul peak on a CPU).",
        "",
        "| full-size 5B transformer, RoboTwin geometry | TFLOP / chunk | GB / chunk | floor per chunk | compute-bound share |",
        "|---|---|---|---|---|",
    ]
    for name, (pk, b) in roofline.DEVICES.items():
        for label, fw in (("reference-exact", forwards), ("cond-only action steps", cond_only)):
            fl = roofline.chunk_floor(fw, full, pk, b)
            lines.append(f"| {name}, {label} | {fl.flops / 1e12:.1f} | {fl.bytes / 1e9:.0f} | {fl.seconds * 1e3:.0f} ms "
                         f"| {fl.compute_bound_share:.0%} |")
    lines += [
        "",
        "The 50 action steps (64 query tokens) are bandwidth-bound on these GPUs: each re-reads the 10 GB of "
        "weights and 7 GB of cache K/V, so dropping the unused unconditional stream (g = 1) cuts the floor "
        "more than the FLOPs suggest. GPU wall-clock of the full-size model: not measured (no GPU was lent to "
        "this task).",
        "",
    ]
    return lines


def machine() -> str:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{cpu}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, {torch.get_num_threads()} intra-op "
            f"threads, Python {platform.python_version()}, load average at start {load:.2f}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--head-dim", type=int, default=32)
    p.add_argument("--text-dim", type=int, default=64)
    p.add_argument("--text-rows", type=int, default=512)
    p.add_argument("--threads", type=int, default=1,
                   help="intra-op threads (default 1: CPU time then equals work; 0 keeps the torch default)")
    p.add_argument("--out", default="docs/benchmarks/model_cpu.md")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    command = "python benchmarks/bench_model_cpu.py " + " ".join(argv if argv is not None else sys.argv[1:])
    mach = machine()
    model = tiny_model(args.layers, args.heads, args.head_dim, args.text_dim)
    cfg = robotwin_config()
    with torch.no_grad():
        episodes = {
            "slab (reference-exact)": Episode(model, cfg, args.text_rows),
            "gather (official layout)": Episode(model, cfg, args.text_rows, cache_factory=GatherKVCache),
            "slab + skip action commit + cond-only action steps": Episode(
                model, cfg, args.text_rows, skip_action_commit=True, skip_unused_uncond_steps=True),
        }
        cap = episodes["slab (reference-exact)"].wm.cache.capacity
        for _ in range(args.runs):  # interleaved, so load drift on a shared machine hits every row alike
            for name, ep in episodes.items():
                ep.chunk()
                print(name, ep.rows[-1], flush=True)
        results = {name: ep.medians() for name, ep in episodes.items()}
        roof = roofline_section(model, cfg, episodes["slab (reference-exact)"], results["slab (reference-exact)"],
                                args.text_rows, max(args.threads, 1))
        ops = {q: attention_op(cap, args.heads, args.head_dim, q, reps=max(20, 4 * args.runs)) for q in (240, 32)}
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        rev = "?"
    inner = args.heads * args.head_dim
    lines = [
        "# World-model core: CPU chunk latency (tiny random weights, RoboTwin geometry)",
        "",
        f"- Machine: {mach}",
        f"- Command: `{command.strip()}` (git {rev})",
        f"- Model: {args.layers} layers, {args.heads} heads x {args.head_dim} (width {inner}), ffn {4 * inner}, "
        f"text {args.text_rows} rows x {args.text_dim}; float32",
        "- Chunk: latent 24x20 canvas (120 tokens/frame), F = 2, A = 16 -> 240 video + 32 action tokens; "
        "25 video steps (CFG 5, batch 2) + commit, 50 action steps (g = 1) + commit, ground = 2 commits",
        f"- KV cache: attn_window 72 -> capacity {cap} tokens, filled to capacity before timing (steady state: "
        "every forward attends the full cache and every write evicts)",
        f"- Median of {args.runs} chunks per row, rows interleaved chunk by chunk. Wall-clock on a machine shared "
        "with other jobs: absolute numbers are noisy, compare rows of the same run.",
        "",
        "- Stage columns are process CPU seconds (one intra-op thread, so CPU time = work); the last column is "
        "wall-clock, which also includes time the OS gave to other jobs.",
        "",
        "| cache / options | transformer-video (CPU s) | transformer-action (CPU s) | ground (CPU s) | chunk total (CPU s) | chunk wall (s) |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(f"| {name} | {r['video']:.3f} | {r['action']:.3f} | {r['ground']:.3f} | {r['total']:.3f} | {r['wall']:.3f} |")
    lines += [
        "",
        f"Attention op alone, one layer at a full cache ({cap} keys, batch 2, {args.heads}x{args.head_dim}), "
        "median CPU time per call including allocation / eviction bookkeeping:",
        "",
        "| queries | slab view (CPU ms) | gather (CPU ms) | gather / slab |",
        "|---|---|---|---|",
    ]
    for q, r in ops.items():
        lines.append(f"| {q} ({'video' if q == 240 else 'action'}) | {r['slab'] * 1e3:.2f} | {r['gather'] * 1e3:.2f} | "
                     f"{r['gather'] / r['slab']:.2f}x |")
    lines += [
        "",
        "Notes",
        "- The slab cache attends a contiguous view of the live range (no per-forward copy); the gather layout "
        "copies every live K/V of every layer in every forward (the official `key_pool[:, valid]`), and runs "
        "its allocate/evict bookkeeping once per layer instead of once per forward.",
        "- With the 5B model at a full RoboTwin cache the gather copies K and V of 2 x 9792 x 3072 bf16 values "
        "(120 MB each) per layer per forward, i.e. ~570 GB of copies per chunk (30 layers, 79 forwards); the "
        "slab copies none (it only moves the live range to the front about once every 4 chunks).",
        "- `skip action commit` elides the action loop's final forward (its entries are always cleared by the "
        "next ground; slots are still reserved so eviction stays bit-exact) and `cond-only action steps` drops "
        "the unconditional stream in the 50 action steps where g = 1 (commits still write both streams).",
        "",
    ]
    lines += roof
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
