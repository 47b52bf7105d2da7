"""Dataset benchmark: video codecs on rendered sim frames (round-trip pixel error, size, encode/decode time) and
lingbot-va-export speed on demos recorded through the real graph. Writes docs/benchmarks/dataset.md.

    python benchmarks/bench_dataset.py [--episodes 2] [--repeats 3] [--out docs/benchmarks/dataset.md]

Frames: the scripted demonstrator picks a block in the in-process simulation (lingbot_va_ros.sim) and the three
cameras are rendered at the demo_sim embodiment's model sizes (256x320 head, 128x160 wrists), 30 fps, 150 frames.
Times are medians over ``--repeats`` runs on this machine.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from host import describe as host_description  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def rendered_frames(n: int = 150) -> dict[str, np.ndarray]:
    from lingbot_va_ros.camera.image_ops import to_model_rgb
    from lingbot_va_ros.kinematics.bimanual import BimanualKinematics
    from lingbot_va_ros.model.embodiment import load_embodiment
    from lingbot_va_ros.sim.arm_sim import BimanualSim
    from lingbot_va_ros.sim.render import CameraRenderer
    from lingbot_va_ros.teleop.scripted import ScriptedPick, objects_from_sim

    emb = load_embodiment("demo_sim")
    sim = BimanualSim()
    native = {c: (sim.params.camera(c).height, sim.params.camera(c).width) for c in emb.camera_names}
    renderer = CameraRenderer(sim.model, native, shadows=False)
    ctl = ScriptedPick(BimanualKinematics(gripper_units="joint"), objects_from_sim(sim)[0], sim.joint_positions(), 0)
    steps = int(round(1 / 30 / sim.timestep))
    frames = {c: [] for c in emb.camera_names}
    try:
        for k in range(n):
            sim.set_target_vector(ctl.step(k / 30, sim.joint_positions()))
            sim.step(steps)
            for cam, rgb in renderer.render(sim.snapshot().qpos, list(emb.camera_names)).items():
                frames[cam].append(to_model_rgb(rgb, emb.image_sizes[cam]))   # exactly as camera ingest resizes
    finally:
        renderer.close()
    return {c: np.stack(v) for c, v in frames.items()}


def bench_codecs(frames: dict[str, np.ndarray], repeats: int) -> list[dict]:
    from lingbot_va_ros.dataset.video import VIDEO_CODECS, decode_video, encode_video

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in VIDEO_CODECS:
            enc_t, dec_t, size, errs = [], [], 0, []
            for _ in range(repeats):
                size, errs = 0, []
                t_enc = t_dec = 0.0
                for cam, video in frames.items():
                    path = Path(tmp) / f"{name}_{cam}.mp4"
                    t0 = time.perf_counter()
                    encode_video(path, video, 30.0, name)
                    t1 = time.perf_counter()
                    back, _ = decode_video(path)
                    t2 = time.perf_counter()
                    t_enc += t1 - t0
                    t_dec += t2 - t1
                    size += path.stat().st_size
                    errs.append(np.abs(back.astype(np.int16) - video.astype(np.int16)))
                enc_t.append(t_enc)
                dec_t.append(t_dec)
            err = np.concatenate([e.reshape(-1) for e in errs])
            n = len(next(iter(frames.values())))
            rows.append({"codec": name, "encoder": VIDEO_CODECS[name].encoder, "pix_fmt": VIDEO_CODECS[name].pix_fmt,
                         "max_err": int(err.max()), "mean_err": float(err.mean()),
                         "p99_err": float(np.percentile(err, 99)),
                         "kb_per_s": size / 1024 / (n / 30.0), "enc_ms_per_row": 1000 * statistics.median(enc_t) / n,
                         "dec_ms_per_row": 1000 * statistics.median(dec_t) / n})
    return rows


def bench_export(episodes: int, repeats: int) -> dict:
    from lingbot_va_ros.dataset.export import ExportParams, export
    from lingbot_va_ros.dataset.testing import record_sim_demos

    with tempfile.TemporaryDirectory() as tmp:
        result = record_sim_demos(tmp, n=episodes, seconds=0, seed=0, export=False)
        times, read_times = [], []
        for k in range(repeats):
            out = Path(tmp) / f"ds{k}"
            _, eps, timing = export(ExportParams(bags=[str(b) for b in result.bags], out=str(out),
                                                 embodiment="demo_sim"), log=lambda *_: None)
            times.append(timing["total_s"])
            read_times.append(timing["read_s"])
        rows = timing["rows"]
        bag_mb = sum(f.stat().st_size for b in result.bags for f in Path(b).rglob("*") if f.is_file()) / 2**20
        ds_mb = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 2**20
        seconds = rows / 30.0
    return {"episodes": episodes, "rows": rows, "seconds": seconds, "total_s": statistics.median(times),
            "read_s": statistics.median(read_times), "bag_mb": bag_mb, "dataset_mb": ds_mb}


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--episodes", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=str(ROOT / "docs/benchmarks/dataset.md"))
    args = p.parse_args(argv)
    exp = bench_export(args.episodes, args.repeats)   # first: the graph's processes get the CPU to themselves
    frames = rendered_frames()
    codecs = bench_codecs(frames, args.repeats)
    lines = ["# Dataset benchmark (`benchmarks/bench_dataset.py`)", "", f"Host: {host_description()}.", "",
             "## Video round trip (150 rendered sim frames per camera, demo_sim model sizes, 30 fps)", "",
             "Pixel error = |decoded - original| over every pixel and channel of the three cameras; size = all "
             "three cameras; times = medians of "
             f"{args.repeats} runs, per row (one frame of each camera).", "",
             "| codec | encoder / pix_fmt | max err | mean err | p99 err | KiB per s of data | encode ms/row | "
             "decode ms/row |", "|---|---|---|---|---|---|---|---|"]
    for r in codecs:
        lines.append(f"| `{r['codec']}` | {r['encoder']} / {r['pix_fmt']} | {r['max_err']} | {r['mean_err']:.3f} | "
                     f"{r['p99_err']:.0f} | {r['kb_per_s']:.0f} | {r['enc_ms_per_row']:.2f} | "
                     f"{r['dec_ms_per_row']:.2f} |")
    lines += ["", f"## Export (`lingbot-va-export`, {exp['episodes']} scripted sim demos recorded through the graph)",
              "", "| rows | data | export total (median) | of which reading bags | rows per s | bags | dataset |",
              "|---|---|---|---|---|---|---|",
              f"| {exp['rows']} | {exp['seconds']:.1f} s | {exp['total_s']:.2f} s | {exp['read_s']:.2f} s | "
              f"{exp['rows'] / exp['total_s']:.0f} | {exp['bag_mb']:.1f} MiB | {exp['dataset_mb']:.1f} MiB |", ""]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
