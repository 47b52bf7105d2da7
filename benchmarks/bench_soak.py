"""Soak benchmark: the closed loop on the simulator for a long time (default 60 min), the same run as
test/soak/test_soak_closed_loop.py. Writes docs/benchmarks/soak.md (machine, command, numbers).

The graph is the demo's (sim arm, camera ingest, executor, inference on a tiny random checkpoint, recorder; async
mode, the shipped configuration), running RunEpisode goals back to back. Sampled every ``--sample-period``: RSS,
threads (/proc/<pid>/task), fds (/proc/<pid>/fd) and child processes of every node; the executor's own deadline
accounting (/diagnostics). At the end: every command checked (finite, in the URDF limits, within max_step),
stream continuity, every recorded bag opened with rosbags' AnyReader and deserialised (bags are deleted once
checked, except the last two: an hour records ~20 GB).

    python benchmarks/bench_soak.py [--minutes 60] [--episode-s 60] [--no-doc]
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DOC = ROOT / "docs" / "benchmarks" / "soak.md"

from lingbot_va_ros.testing import faults as F  # noqa: E402

import host  # noqa: E402  (benchmarks/host.py, next to this script)
import plots  # noqa: E402  (benchmarks/plots.py, next to this script)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--episode-s", type=float, default=60.0, help="max_duration_s of each episode")
    ap.add_argument("--warmup-s", type=float, default=60.0)
    ap.add_argument("--sample-period", type=float, default=10.0)
    ap.add_argument("--out", default="", help="run folder (default: a temporary one)")
    ap.add_argument("--json", default="", help="write the run's summary (episodes, growth, events) here")
    ap.add_argument("--no-doc", action="store_true")
    args = ap.parse_args()
    seconds = args.minutes * 60.0
    log = lambda s: print(s, flush=True)  # noqa: E731
    load0, t0 = os.getloadavg(), time.time()
    loads = []
    with F.free_ros_domain() as domain, tempfile.TemporaryDirectory(prefix="bench_soak_") as tmp:
        run_dir = Path(args.out) if args.out else Path(tmp)
        keep_dir = Path(args.out) if args.out else None
        loop = F.ClosedLoop(run_dir, domain, mode="async", record=True, relays=False, display_rate_hz=0.5)
        t_up = time.monotonic()
        loop.start()
        startup = time.monotonic() - t_up
        log(f"[soak] graph up in {startup:.0f} s; soaking {args.minutes:g} min")
        res = F.run_soak(loop, seconds, warmup_s=args.warmup_s, episode_s=args.episode_s,
                         sample_period=args.sample_period, log=lambda s: (log(s), loads.append(os.getloadavg()[0])),
                         image_every=5)
    load1 = os.getloadavg()
    outcomes = collections.Counter(e["outcome"] for e in res.episodes)
    reasons = res.reasons()
    rearm_kinds = collections.Counter(json.loads(r.split(" -> ")[0]) and next(iter(json.loads(r.split(" -> ")[0])))
                                      for r in res.rearms)
    if args.json or keep_dir:
        summary = {"episodes": res.episodes, "rearms": res.rearms, "events": res.events,
                   "growth": {n: {k: res.growth(n, k) for k in ("rss", "threads", "fds", "children")}
                              for n in res.names()},
                   "timing_rates": res.timing_rates(), "latency_thirds": res.latency_thirds(), "stream": res.stream,
                   "violations": len(res.violations), "bags": res.bags}
        Path(args.json or keep_dir / "soak.json").write_text(json.dumps(summary, indent=1, default=str))
    chunks = sum(e["chunks"] for e in res.episodes)
    rates = res.timing_rates()
    lat = res.latency_thirds()
    cmd = "python benchmarks/bench_soak.py" + (f" --minutes {args.minutes:g}" if args.minutes != 60 else "") + (
        f" --episode-s {args.episode_s:g}" if args.episode_s != 60 else "")
    bags_ok = sum(b["ok"] for b in res.bags)
    lines = [
        "## Soak: the closed loop for a long run (`benchmarks/bench_soak.py`)", "",
        f"Machine: {host.describe()}; measured {time.strftime('%Y-%m-%d %H:%M', time.localtime(t0))}. The host was "
        f"shared with other jobs: load average {load0[0]:.1f} at the start, {load1[0]:.1f} at the end"
        + (f", {min(loads):.1f}–{max(loads):.1f} between episodes" if loads else "") + ".", "",
        f"Command: `{cmd}` ({args.minutes:g} min of episodes after a {startup:.0f} s start-up; warm-up excluded from "
        f"the growth figures: {args.warmup_s:g} s; samples every {args.sample_period:g} s). The default is 60 min; "
        f"`test/soak/test_soak_closed_loop.py` runs the same for 2 min in the suite.", "",
        "Graph: sim arm, camera ingest, executor (30 Hz, SCHED_FIFO), inference (tiny random checkpoint, async, "
        "live view at 0.5 Hz), recorder (one MCAP bag per episode); shipped configuration; RunEpisode goals back "
        f"to back, each `max_duration_s={args.episode_s:g}`.", "",
        f"Episodes: {len(res.episodes)} ({', '.join(f'{n} {k}' for k, n in outcomes.items())}), {chunks} chunks.", "",
        "| how episodes ended | count |", "|---|---|", *[f"| {k} | {n} |" for k, n in reasons.items()], "",
        f"Latched executor states found between episodes and cleared by re-arm: {len(res.rearms)}"
        + (f" ({', '.join(f'{n}× {k}' for k, n in rearm_kinds.items())})" if res.rearms else "") + ".", "",
        "Events counted in the node logs over the run:", "",
        "| event | count |", "|---|---|", *[f"| {k} | {n} |" for k, n in res.events.items()], "",
        "### Resources of every node (after warm-up)", "",
        *res.resource_table(), "",
        f"The benchmark process itself (command monitors, observation audit; it shares the 2 cores) peaked at "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB RSS.", "",
        plots.soak_resources(res.samples, res.t_start, args.warmup_s), "",
        "### Timing drift", "",
        "| window (thirds after warm-up) | executor late ticks / min | missed deadlines / min | control ticks / min |",
        "|---|---|---|---|",
        *[f"| {i + 1} | {r['late_per_min']:.1f} | {r['missed_per_min']:.1f} | {r['ticks_per_min']:.0f} |"
          for i, r in enumerate(rates)], "",
        "Inference latency (median per third of all chunks): "
        + (" / ".join(f"{x * 1e3:.0f} ms" for x in lat) if lat else "-") + ".", "",
        "### Safety and recording", "",
        f"- Commands checked (executor echo and what reached the sim): {len(res.violations)} non-finite / "
        f"out-of-limit / over-step.",
        f"- Command stream: {res.stream.get('count', 0)} commands over {res.stream.get('span_s', 0):.0f} s, longest "
        f"stamp gap {res.stream.get('max_stamp_gap_s', 0) * 1e3:.0f} ms, {res.stream.get('missing_ticks', 0)} missing "
        f"ticks; the executor reported {res.stream.get('executor_late_ticks', 0)} late ticks and "
        f"{res.stream.get('executor_missed_deadlines', 0)} missed deadlines in the same window"
        + (f" (problems: {res.stream_problems})" if res.stream_problems else " (every gap accounted for)") + ".",
        f"- Bags: {len(res.bags)} recorded, {bags_ok} opened with rosbags AnyReader (EMPTY typestore) and "
        f"deserialised ({sum(b['messages'] for b in res.bags)} messages; images: every 5th).",
        f"- Node deaths: {len(res.died)}; processes left after the stop: {len(res.leftovers)}.", "",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_doc:
        DOC.parent.mkdir(parents=True, exist_ok=True)
        DOC.write_text(text)
        print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
