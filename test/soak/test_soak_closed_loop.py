"""Soak: the closed loop on the simulator (sim arm, camera ingest, executor, inference on a tiny random
checkpoint, recorder; async mode, the shipped configuration) running episodes back to back for a few minutes.

Checks: no node dies; no unsafe command ever reaches the sim; the command stream has no gap the executor did
not account for; no memory growth beyond noise and no leaked threads, file descriptors or processes in any
node (sampled with psutil and /proc/<pid>/{task,fd}); every recorded bag opens with rosbags' AnyReader (types from the bag
itself) and every message deserialises. ``LINGBOT_SOAK_S`` sets the duration (default 60 s in the suite);
benchmarks/bench_soak.py runs the same for an hour and writes docs/benchmarks/soak.md, including the drift of
the executor's late ticks and of the inference latency (rates: a benchmark's business, not a test's).
"""
from __future__ import annotations

import os

import pytest

from lingbot_va_ros.testing.faults import ClosedLoop, free_ros_domain, run_soak

pytestmark = [pytest.mark.ros, pytest.mark.slow]

SOAK_S = float(os.environ.get("LINGBOT_SOAK_S", "60"))
WARMUP_S = min(30.0, SOAK_S / 4)
# Beyond noise: a Python node's RSS moves by a few MB as allocator arenas and DDS buffers settle; a leak of one
# image per key frame (~0.4 MB at 7.5 Hz) would add > 150 MB over two minutes.
RSS_TOLERANCE = (40 * 2**20, 0.08)     # absolute bytes, or this share of the node's RSS, whichever is larger
THREAD_SLACK, FD_SLACK = 2, 8          # a bag being rotated, a goal's transient thread


@pytest.mark.timeout(int(SOAK_S) + 360)
def test_closed_loop_soak_has_no_leaks_and_readable_bags(tmp_path):
    with free_ros_domain() as domain:
        loop = ClosedLoop(tmp_path / "soak", domain, mode="async", record=True, relays=False, display_rate_hz=0.5)
        try:
            loop.start()
        except Exception:
            loop.stop()
            raise
        res = run_soak(loop, SOAK_S, warmup_s=WARMUP_S, episode_s=min(40.0, SOAK_S / 3), log=print)

    report = [f"{e['outcome']}: {e['reason']} ({e['chunks']} chunks)" for e in res.episodes]
    print("\n".join(["", *res.resource_table(), f"executor timing per third: {res.timing_rates()}",
                      f"inference latency median per third: {res.latency_thirds()}", f"re-arms: {res.rearms}",
                      f"stream: {res.stream}", *[f"bag {b['path']}: {b['messages']} messages, ok={b['ok']}"
                                                 for b in res.bags], *report]))
    assert not res.died, res.died
    assert not res.leftovers, f"processes survived the stop: {res.leftovers}"
    assert len(res.episodes) >= 2 and all(e["outcome"] in ("completed", "aborted") and e["reason"]
                                          for e in res.episodes), report
    assert sum(e["chunks"] for e in res.episodes) >= 10, report
    assert not res.violations, "unsafe commands:\n" + "\n".join(res.violations[:20])
    assert not res.stream_problems, res.stream_problems

    for name in res.names():
        rss, thr, fds, kids = (res.growth(name, k) for k in ("rss", "threads", "fds", "children"))
        allowed = max(RSS_TOLERANCE[0], RSS_TOLERANCE[1] * rss["first"])
        assert rss["delta"] <= allowed, f"{name}: RSS grew {rss['delta'] / 2**20:.1f} MB ({rss})"
        assert thr["max"] <= thr["first"] + THREAD_SLACK, f"{name}: threads {thr}"
        assert fds["last"] <= fds["first"] + FD_SLACK, f"{name}: fds {fds}"
        assert kids["max"] <= kids["first"], f"{name}: child processes {kids}"

    # Drift of late ticks and inference latency is a rate on a shared host (another job starting in the last third
    # looks like drift): it is printed here and judged by the hour-long benchmark (benchmarks/bench_soak.py), where
    # it is measured with the host's load beside it. What must hold at any speed is checked above and below.
    assert len(res.timing_rates()) == 3, res.timing[-3:]     # the executor reported timing all along

    assert res.bags, "no bag was recorded"
    bad = [b for b in res.bags if not b["ok"]]
    assert not bad, bad
    for b in res.bags:
        assert b["topics"].get("/lingbot_va/command", 0) > 0 and b["topics"].get("/lingbot_va/action_chunk", 0) > 0, b
