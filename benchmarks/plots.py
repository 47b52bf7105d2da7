"""Figures for docs/benchmarks.md, drawn by the benchmarks from the numbers they just measured.

Each function writes one PNG under docs/benchmarks/img/ and returns the Markdown line that shows it (paths are
relative to docs/, where the assembled benchmarks page lives).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

IMG = Path(__file__).resolve().parents[1] / "docs" / "benchmarks" / "img"


def _save(fig, name: str, alt: str) -> str:
    IMG.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(IMG / name, dpi=110)
    plt.close(fig)
    return f"![{alt}](benchmarks/img/{name})"


def jitter_survival(series: Mapping[str, np.ndarray], name: str = "command_jitter.png") -> str:
    """Share of control ticks whose period error exceeds x, per configuration (log scale: the tail is the point)."""
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for label, err_ms in series.items():
        x = np.sort(np.asarray(err_ms, dtype=float))
        if x.size == 0:
            continue
        surv = 1.0 - np.arange(x.size) / x.size
        ax.step(x, surv, where="post", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(left=1e-4)   # below 0.1 us is timer resolution, not jitter
    ax.axvline(1.0, color="grey", linestyle="--", linewidth=1)
    ax.text(1.05, 0.5, "1 ms target (p99)", color="grey", fontsize=8, transform=ax.get_xaxis_transform())
    ax.set_xlabel("|tick period - nominal| (ms)")
    ax.set_ylabel("share of ticks above")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, name, "command jitter survival curves")


def fault_stops(tables: Mapping[str, Mapping[str, Sequence[dict]]], name: str = "fault_stops.png") -> str:
    """Time to decelerate and time to hold per fault (median, min-max whiskers), one panel per rig."""
    fig, axes = plt.subplots(1, len(tables), figsize=(6 * len(tables), 3.6), squeeze=False)
    for ax, (rig, results) in zip(axes[0], tables.items()):
        faults = [f for f, trials in results.items() if not f.startswith("_") and trials]
        xs = np.arange(len(faults))
        for k, (key, label) in enumerate((("time_to_decel_s", "decelerating"), ("time_to_hold_s", "holding"))):
            vals = [[t[key] for t in results[f] if t.get(key) is not None] for f in faults]
            med = [float(np.median(v)) if v else np.nan for v in vals]
            lo = [m - min(v) if v else 0 for m, v in zip(med, vals)]
            hi = [max(v) - m if v else 0 for m, v in zip(med, vals)]
            ax.bar(xs + (k - 0.5) * 0.38, med, 0.38, yerr=[lo, hi], capsize=3, label=label)
        ax.set_xticks(xs, faults, fontsize=8)
        ax.set_ylabel("s after the fault")
        ax.set_title(rig, fontsize=9)
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, name, "time to decelerate and to hold per fault")


def soak_resources(samples: Iterable, t0: float, warmup_s: float, name: str = "soak_resources.png") -> str:
    """RSS and threads of every node over the soak (``samples``: ResourceSample with t, name, rss, threads)."""
    by_node: dict[str, list] = {}
    for s in samples:
        by_node.setdefault(s.name, []).append(s)
    fig, (ax_rss, ax_thr) = plt.subplots(1, 2, figsize=(11, 3.6))
    for node, rows in sorted(by_node.items()):
        t = np.array([(r.t - t0) / 60.0 for r in rows])
        ax_rss.plot(t, [r.rss / 2**20 for r in rows], label=node)
        ax_thr.plot(t, [r.threads for r in rows], label=node)
    for ax in (ax_rss, ax_thr):
        ax.axvline(warmup_s / 60.0, color="grey", linestyle="--", linewidth=1)
        ax.set_xlabel("minutes")
        ax.grid(True, alpha=0.3)
    ax_rss.set_ylabel("RSS (MB)")
    ax_rss.set_yscale("log")
    ax_thr.set_ylabel("threads")
    ax_rss.legend(fontsize=7)
    return _save(fig, name, "RSS and threads of every node over the soak")


def closed_loop_modes(points: Mapping[str, Mapping[str, Sequence[dict]]], name: str = "closed_loop_modes.png") -> str:
    """Per operating point and mode: idle time of the arm per episode and the steady chunk period (medians,
    min-max whiskers over the repetitions)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    point_names = list(points)
    modes = sorted({m for runs in points.values() for m in runs}, key=["sync", "async_naive", "async"].index)
    xs = np.arange(len(point_names))
    width = 0.8 / max(len(modes), 1)
    for ax, (key, label) in zip(axes, (("idle_s", "arm idle per episode (s)"),
                                        ("chunk_period_s", "steady chunk period (s)"))):
        for k, mode in enumerate(modes):
            vals = [[r[key] for r in points[p].get(mode, []) if np.isfinite(r.get(key, np.nan))] for p in point_names]
            med = [float(np.median(v)) if v else np.nan for v in vals]
            lo = [m - min(v) if v else 0 for m, v in zip(med, vals)]
            hi = [max(v) - m if v else 0 for m, v in zip(med, vals)]
            ax.bar(xs + (k - (len(modes) - 1) / 2) * width, med, width, yerr=[lo, hi], capsize=3, label=mode)
        ax.set_xticks(xs, point_names, fontsize=8)
        ax.set_ylabel(label)
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, name, "closed loop: idle time and chunk period per mode")
