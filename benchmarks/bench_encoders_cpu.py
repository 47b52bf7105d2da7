"""CPU cost of the LingBot-VA encoders and of whole chunks through the backend, on a tiny checkpoint.

Per component (medians of --runs timed repetitions after one warm-up each):
- image preprocessing (bilinear resize + scale) of one T-shape key frame from the 320x224 reference images;
- tiny Wan2.2-structured VAE streaming encode: head camera 256x320 (first frame alone; groups of 4), the
  wrist pair 2x128x160 batched, whole T-shape key-frame groups (4 and 8 key frames = one RoboTwin chunk),
  and the same head group with PyTorch's default CPU conv3d path (why the VAE reroutes conv3d to oneDNN);
- display decode of a 2-latent-frame canvas (all three cameras, last frame kept);
- text encode of one uncached prompt (tiny UMT5, 512 rows);
- backend chunks: predict_chunk (video / action split) and ground (VAE + commit forwards), at RoboTwin
  settings (25 + 50 steps, window 72) and demo_sim settings, over a closed-loop episode;
- optionally (--real-vae) the full-size Wan2.2 VAE encoder architecture (random weights) for one frame and
  one 4-frame group: what CPU offload of the real VAE would cost.

    python benchmarks/bench_encoders_cpu.py [--runs 7] [--threads N] [--chunks 8] [--real-vae]
        [--checkpoint DIR] [--out docs/benchmarks/encoders_cpu.md]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lingbot_va_ros.model.image_layout import CameraLayout, preprocess_images  # noqa: E402
from lingbot_va_ros.model.vae import ObservationEncoder, StreamingVAEEncoder  # noqa: E402

REFERENCE_IMAGES = Path("/work/shared/fixtures/reference_images/robotwin")
TSHAPE = {"cam_high": (256, 320), "cam_left_wrist": (128, 160), "cam_right_wrist": (128, 160)}


def machine() -> str:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{platform.system()} {platform.release()}, {os.cpu_count()} cores ({cpu}), Python "
            f"{platform.python_version()}, torch {torch.__version__}")


def load_average() -> str:
    try:
        return " / ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def timed(fn, runs: int, setup=None) -> list[float]:
    """Seconds per call: one untimed warm-up, then ``runs`` timed calls (``setup`` runs untimed before each)."""
    out = []
    for i in range(runs + 1):
        if setup is not None:
            setup()
        t = time.perf_counter()
        fn()
        if i:
            out.append(time.perf_counter() - t)
    return out


def ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1e3:.1f}"


def reference_keyframe() -> dict[str, np.ndarray]:
    from PIL import Image

    frame = {}
    for cam in TSHAPE:
        path = REFERENCE_IMAGES / f"{cam}.png"
        if path.is_file():
            frame[cam] = np.array(Image.open(path).convert("RGB"))
        else:  # no fixtures on this machine: image-sized noise costs the same
            frame[cam] = np.random.default_rng(0).integers(0, 256, (224, 320, 3), dtype=np.uint8)
    return frame


def bench_vae(vae, runs: int, rows: list) -> None:
    from lingbot_va_ros.model.image_layout import resize_rgb_uint8

    raw = reference_keyframe()
    rows.append(("preprocess one T-shape key frame (3 cams, resize + scale)",
                 ms(timed(lambda: [preprocess_images([raw[c]], TSHAPE[c]) for c in TSHAPE], runs)), "ms"))
    keyframe = {c: resize_rgb_uint8(raw[c], TSHAPE[c]) for c in TSHAPE}

    head1 = preprocess_images([keyframe["cam_high"]], TSHAPE["cam_high"])[None]
    head4 = preprocess_images([keyframe["cam_high"]] * 4, TSHAPE["cam_high"])[None]
    wrists1 = torch.stack([preprocess_images([keyframe[c]], TSHAPE[c]) for c in ("cam_left_wrist", "cam_right_wrist")])
    wrists4 = torch.stack([preprocess_images([keyframe[c]] * 4, TSHAPE[c]) for c in ("cam_left_wrist", "cam_right_wrist")])
    enc = StreamingVAEEncoder(vae)

    def primed():            # an encoder that has seen its first frame, ready for groups of 4
        enc.reset()
        enc.encode(head1)

    def primed_wrists():
        enc.reset()
        enc.encode(wrists1)

    with torch.no_grad():
        rows.append(("VAE encode head 256x320, first frame (1 frame)",
                     ms(timed(lambda: enc.encode(head1), runs, setup=enc.reset)), "ms"))
        group = timed(lambda: enc.encode(head4), runs, setup=primed)
        rows.append(("VAE encode head 256x320, group of 4 frames", ms(group), "ms"))
        rows.append(("  = per 256x320 frame", f"{statistics.median(group) / 4 * 1e3:.1f}", "ms"))
        rows.append(("VAE encode wrists 2x128x160 batched, group of 4 frames",
                     ms(timed(lambda: enc.encode(wrists4), runs, setup=primed_wrists)), "ms"))

        layout = CameraLayout("robotwin_tshape", tuple(TSHAPE), TSHAPE)
        obs = ObservationEncoder(vae, layout)

        def primed_obs():
            obs.reset()
            obs.encode([keyframe])

        rows.append(("T-shape initial key frame (1 key frame -> 1 latent)",
                     ms(timed(lambda: obs.encode([keyframe]), runs, setup=obs.reset)), "ms"))
        rows.append(("T-shape 4 key frames -> 1 latent frame (first RoboTwin chunk)",
                     ms(timed(lambda: obs.encode([keyframe] * 4), runs, setup=primed_obs)), "ms"))
        rows.append(("T-shape 8 key frames -> 2 latent frames (regular RoboTwin chunk)",
                     ms(timed(lambda: obs.encode([keyframe] * 8), runs, setup=primed_obs)), "ms"))
        canvas = torch.randn(48, 2, 24, 20)
        rows.append(("display decode, 2 latent frames, 3 cams (last frame kept)",
                     ms(timed(lambda: obs.decode(canvas, last_frame_only=True), max(3, runs // 2))), "ms"))

        # Intra-op threads: on a shared, oversubscribed CPU, OpenMP spin-waiting can make more threads slower
        current = torch.get_num_threads()
        for n in sorted({1, os.cpu_count() or 1}):
            torch.set_num_threads(n)
            try:
                rows.append((f"  same head group with {n} torch thread(s)",
                             ms(timed(lambda: enc.encode(head4), runs, setup=primed)), "ms"))
            finally:
                torch.set_num_threads(current)

        # PyTorch's default CPU conv3d path, for comparison (same weights, override removed)
        from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d

        saved = {}
        for m in vae.modules():
            if isinstance(m, WanCausalConv3d) and "_conv_forward" in m.__dict__:
                saved[m] = m.__dict__.pop("_conv_forward")
        try:
            slow = timed(lambda: enc.encode(head4), max(2, runs // 3), setup=primed)
            rows.append(("  same head group, PyTorch default conv3d (no oneDNN reroute)", ms(slow), "ms"))
        finally:
            for m, fwd in saved.items():
                m._conv_forward = fwd


def bench_text(prompt_encoder, runs: int, rows: list) -> None:
    prompt = "pick up the red block and place it on the blue plate"
    rows.append(("text encode one prompt (tiny UMT5, 512 rows, uncached)",
                 ms(timed(lambda: prompt_encoder.encode(prompt), runs, setup=prompt_encoder._cache.clear)), "ms"))


def bench_backend(components, embodiment: str, chunks: int, rows: list, overrides=None) -> None:
    from lingbot_va_ros.model.backend import LingBotVABackend
    from lingbot_va_ros.model.image_layout import resize_rgb_uint8

    backend = LingBotVABackend(embodiment=embodiment, components=components, seed=0,
                               embodiment_overrides=overrides)
    spec, emb = backend.spec, backend.embodiment
    raw = reference_keyframe()
    keyframe = {c: resize_rgb_uint8(raw[c], spec.image_sizes[c]) for c in spec.camera_names}
    backend.reset("pick up the red block", keyframe)            # warm-up episode (first-call allocations)
    p = backend.predict_chunk()
    backend.ground([keyframe] * emb.first_chunk_keyframes, p.actions, p.start_index)
    t = time.perf_counter()
    backend.reset("pick up the red block", keyframe)
    reset_s = time.perf_counter() - t
    predict, video, action, ground, vae = [], [], [], [], []
    for n in range(chunks):
        t = time.perf_counter()
        p = backend.predict_chunk()
        predict.append(time.perf_counter() - t)
        video.append(p.timings["video"])
        action.append(p.timings["action"])
        frames = emb.first_chunk_keyframes if n == 0 else emb.keyframes_per_chunk
        t = time.perf_counter()
        backend.ground([keyframe] * frames, p.actions, p.start_index)
        ground.append(time.perf_counter() - t)
        vae.append(backend.last_timings["vae_encode"])
    label = (f"{embodiment}: {emb.num_inference_steps}+{emb.action_num_inference_steps} steps, "
             f"window {emb.attn_window}, {emb.actions_per_chunk} actions = {emb.chunk_seconds:.2f} s/chunk")
    rows.append((f"**{label}**", "", ""))
    rows.append(("  reset (cached prompt + initial key frame)", f"{reset_s * 1e3:.1f}", "ms"))
    rows.append(("  predict_chunk (transformer, whole chunk)", ms(predict[1:] or predict), "ms"))
    rows.append(("    video loop", ms(video[1:] or video), "ms"))
    rows.append(("    action loop", ms(action[1:] or action), "ms"))
    rows.append(("  ground (VAE of the chunk's key frames + commits)", ms(ground[1:] or ground), "ms"))
    rows.append(("    of which VAE encode", ms(vae[1:] or vae), "ms"))
    rows.append(("  cache fill after the episode", f"{backend.cache_fill():.2f}", ""))


def bench_real_vae(rows: list, runs: int) -> None:
    from diffusers import AutoencoderKLWan

    from lingbot_va_ros.model.vae import use_fast_cpu_conv3d

    vae = AutoencoderKLWan(base_dim=160, decoder_base_dim=256, z_dim=48, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
                           temperal_downsample=[False, True, True], is_residual=True, in_channels=12,
                           out_channels=12, patch_size=2, scale_factor_spatial=16,
                           latents_mean=[0.0] * 48, latents_std=[1.0] * 48).eval()
    use_fast_cpu_conv3d(vae)
    enc = StreamingVAEEncoder(vae)
    head1 = torch.rand(1, 3, 1, 256, 320) * 2 - 1
    head4 = torch.rand(1, 3, 4, 256, 320) * 2 - 1
    params = sum(p.numel() for p in vae.encoder.parameters()) / 1e6
    with torch.no_grad():
        first, group = [], []
        for _ in range(runs):
            enc.reset()
            t = time.perf_counter()
            enc.encode(head1)
            first.append(time.perf_counter() - t)
            t = time.perf_counter()
            enc.encode(head4)
            group.append(time.perf_counter() - t)
    rows.append((f"**full-size Wan2.2 VAE encoder ({params:.0f} M params, random weights)**", "", ""))
    rows.append(("  head 256x320 first frame", ms(first), "ms"))
    rows.append(("  head 256x320 group of 4 frames", ms(group), "ms"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    ap.add_argument("--chunks", type=int, default=8, help="closed-loop chunks per backend episode")
    ap.add_argument("--checkpoint", default=None, help="tiny checkpoint folder (default: build one, seed 0)")
    ap.add_argument("--real-vae", action="store_true", help="also time the full-size Wan2.2 VAE encoder (slow)")
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks" / "encoders_cpu.md"))
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = load_average()

    from lingbot_va_ros.model.loading import load_lingbot_va
    from lingbot_va_ros.model.tiny_checkpoint import TINY_TRANSFORMER, TINY_VAE, shared_tiny_checkpoint

    checkpoint = Path(args.checkpoint) if args.checkpoint else shared_tiny_checkpoint()
    components = load_lingbot_va(checkpoint, "cpu", torch.float32)
    rows: list[tuple[str, str, str]] = []
    bench_vae(components.vae, args.runs, rows)
    bench_text(components.prompt_encoder, args.runs, rows)
    bench_backend(components, "robotwin", args.chunks, rows)
    bench_backend(components, "demo_sim", args.chunks, rows)
    if args.real_vae:
        bench_real_vae(rows, max(1, min(args.runs, 2)))

    command = "python benchmarks/bench_encoders_cpu.py " + " ".join(sys.argv[1:])
    t_cfg = TINY_TRANSFORMER
    lines = [
        "## Encoders and backend chunks on CPU (tiny checkpoint)",
        "",
        f"- Machine: {machine()}; torch threads {torch.get_num_threads()}; load average before / after: "
        f"{load_before} -> {load_average()} (the machine is shared: other jobs inflate every figure).",
        f"- Command: `{command.strip()}`",
        f"- Medians of {args.runs} runs after a warm-up (backend rows: medians over a {args.chunks}-chunk "
        f"closed-loop episode, first chunk excluded), float32.",
        f"- Tiny checkpoint: transformer {t_cfg['num_layers']} layer(s) x {t_cfg['num_attention_heads']} heads x "
        f"{t_cfg['attention_head_dim']}, text_dim {t_cfg['text_dim']}; VAE Wan2.2 structure with base_dim "
        f"{TINY_VAE['base_dim']}, {TINY_VAE['num_res_blocks']} block/level (16x spatial, 4x temporal, z 48).",
        "",
        "| what | median | unit |",
        "|---|---:|---|",
    ]
    lines += [f"| {name} | {value} | {unit} |" for name, value, unit in rows]
    lines += [
        "",
        "Reading: a 256x320 frame costs tens of milliseconds in the tiny VAE once PyTorch's slow CPU conv3d "
        "path is bypassed (the rerouted and default rows are the same weights). A CPU closed loop keeps up "
        "when predict_chunk + ground of one chunk stays under the chunk's execution time (demo_sim: 0.64 s); "
        "in the synchronous protocol the arm waits for both. On a shared, oversubscribed CPU more torch "
        "threads can be slower (OpenMP workers spin on cores that other jobs hold), hence the thread rows; "
        "the model tests pin one thread. The full-size Wan2.2 VAE (--real-vae) costs seconds per frame on a "
        "CPU, consistent with lingbot-va issue #99 (VAE offload makes chunks unusably slow): keep the real VAE "
        "on the GPU.",
        "",
    ]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
