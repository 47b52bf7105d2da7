"""Fault benchmark: time-to-hold and stop distance of the arm command under each fault, median of repeated trials.

Two rigs, every party a separate process over real DDS, a monitor in this process recording every command:

- ``executor``: the executor node (mock arm, 50 Hz, the test arm's limits: 4 rad/s^2 stop deceleration) driven
  by the scripted inference stand-in (``python -m lingbot_va_ros.testing.faults streamer``: heartbeats at 20 Hz,
  tiled chunks tracing a sinusoid with a 0.47 rad/s peak), through a relay process on the chunk link. Faults are
  injected at steady motion (>= 80 % of the peak speed): SIGKILL / SIGSTOP of the streamer process, e-stop,
  chunk loss (the relay stops forwarding chunks). Cheap, so many trials.
- ``graph``: the whole closed loop (sim arm, camera ingest, executor, inference on a tiny random checkpoint, sync
  mode, 30 Hz) with a relay on the chunk / observation / camera links. Faults are injected just after a chunk
  started executing: SIGKILL / SIGSTOP of the real inference node, e-stop, the next chunk lost.

Definitions (lingbot_va_ros.testing.faults.CommandMonitor.stop_metrics): the hold is the first command after which
every command is identical; the deceleration is the run of commands right before it in which every joint's time
to stop falls each tick; times are from the instant the fault was injected, stop distance is the largest joint
motion between the fault and the hold. Writes docs/benchmarks/faults.md (machine, command, numbers).

    python benchmarks/bench_faults.py [--trials 7] [--graph-trials 3] [--no-graph] [--no-doc]
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DOC = ROOT / "docs" / "benchmarks" / "faults.md"

from lingbot_va_ros.testing import faults as F  # noqa: E402

import host  # noqa: E402  (benchmarks/host.py, next to this script)
import plots  # noqa: E402  (benchmarks/plots.py, next to this script)


class Launcher:
    """The tests' ``launch`` fixture for a script: start module processes, stop them all at the end."""

    def __init__(self, env: dict, log_dir: Path):
        self.env, self.log_dir, self.procs = env, log_dir, []

    def __call__(self, module: str, **kwargs):
        from lingbot_va_ros.testing.ros_harness import NodeProcess

        p = NodeProcess.module(module, self.env, self.log_dir, **kwargs).start()
        self.procs.append(p)
        return p

    def stop(self) -> list[str]:
        for p in reversed(self.procs):
            p.stop()
        return [p.name for p in self.procs if p.alive()]


def _summary(trials: list[dict], period: float) -> dict:
    trials = [t for t in trials if t.get("max_stamp_gap_s", 0) <= 3 * period]

    def med(key):
        vals = [t[key] for t in trials if t.get(key) is not None]
        return (statistics.median(vals), min(vals), max(vals), len(vals)) if vals else None
    return {k: med(k) for k in ("time_to_decel_s", "time_to_hold_s", "braking_s", "stop_distance", "decel_distance",
                                "speed_at_fault")} | {"monotone": sum(bool(t.get("monotone")) for t in trials),
                                                       "n": len(trials)}


def _stream_check(monitor, timing, fault_ns: int, start_mark) -> dict:
    """Continuity of the recorded stream around one trial (a gap there makes its stop metrics unreliable)."""
    w = monitor.window(fault_ns - int(0.5e9))
    c = monitor.continuity(w)
    try:
        t = timing.delta((start_mark[0] - int(0.5e9), start_mark[1] - 0.5), timing.mark())
    except TimeoutError:
        t = {}
    return {"max_stamp_gap_s": c["max_stamp_gap_s"], "missing_ticks": c["missing_ticks"],
            "executor_late_ticks": t.get("late_ticks"), "executor_missed_deadlines": t.get("missed_deadlines")}


def _trial_dict(m: F.StopMetrics) -> dict:
    d = m.as_dict()
    d["braking_s"] = (m.time_to_hold_s - m.time_to_decel_s) if m.time_to_hold_s is not None else None
    return d


# ---------------------------------------------------------------------------------------------- executor rig
def _workdir(out: str, name: str):
    """A kept folder under ``out`` (logs stay for inspection), or a temporary one."""
    import contextlib

    if out:
        d = Path(out) / name
        d.mkdir(parents=True, exist_ok=True)
        return contextlib.nullcontext(str(d))
    return tempfile.TemporaryDirectory(prefix=f"bench_{name}_")


def bench_executor(trials: int, log, out_dir: str = "") -> dict[str, list[dict]]:
    from lingbot_va_ros.testing.ros_harness import RosProbe, apply_ros_env_to_this_process, ros_env

    out: dict[str, list[dict]] = {"SIGKILL": [], "SIGSTOP": [], "e-stop": [], "chunk loss": []}
    with F.free_ros_domain() as domain, _workdir(out_dir, "faults_executor") as tmp:
        tmp = Path(tmp)
        apply_ros_env_to_this_process(domain, str(tmp / "ros"))
        launch = Launcher(ros_env(domain, tmp / "ros"), tmp / "logs")
        probe = RosProbe(domain, "bench_faults")
        try:
            rig = F.ExecutorRig(probe, launch, tmp / "rig", relay=True).ready()
            v = rig.peak_speed()
            episode = 0

            def streamer():
                nonlocal episode
                episode += 1
                return rig.start_streamer(episode=f"stream{episode}")

            s = streamer()
            for k in range(trials):
                for fault in out:
                    rig.monitor.wait_steady(0.8 * v, timeout=60)
                    t = time.time_ns()
                    if fault == "SIGKILL":
                        s.signal(signal.SIGKILL)
                    elif fault == "SIGSTOP":
                        s.signal(signal.SIGSTOP)
                    elif fault == "e-stop":
                        rig.e_stop()
                    else:
                        rig.relay.set(chunks={"mode": "stall"})
                    mark = rig.timing.mark()
                    m = rig.wait_hold(t, hold_s=0.4, timeout=15)
                    d = _trial_dict(m)
                    d.update(_stream_check(rig.monitor, rig.timing, t, mark))
                    out[fault].append(d)
                    log(f"[executor] trial {k + 1} {fault:10s} decel {m.time_to_decel_s:.3f} s hold "
                        f"{m.time_to_hold_s:.3f} s stop {m.stop_distance:.4f} rad (v {m.speed_at_fault:.3f})")
                    # recover
                    if fault == "SIGKILL":
                        s.stop()
                        s = streamer()
                    elif fault == "SIGSTOP":
                        s.signal(signal.SIGCONT)
                    elif fault == "e-stop":
                        ok, msg = rig.rearm()
                        assert ok, msg
                    else:
                        rig.relay.reset()
                    rig.state.wait(lambda st: st["state"] == "executing", 30, "motion resumed")
            bad = rig.monitor.violations()
            out["_violations"] = bad  # type: ignore[assignment]
            out["_limits"] = {"stop_deceleration": float(np.min(rig.limits.stop_deceleration[~rig.limits.is_gripper])),
                              "period": rig.period, "heartbeat_timeout": rig.heartbeat_timeout, "peak_speed": v}
        finally:
            probe.close()
            left = launch.stop()
            if left:
                log(f"processes survived: {left}")
    return out


# ---------------------------------------------------------------------------------------------- graph rig
def bench_graph(trials: int, log, out_dir: str = "") -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {"SIGKILL": [], "SIGSTOP": [], "e-stop": [], "chunk loss": [], "cancel": []}
    prompt = "pick up the red block and place it in the bowl"
    skipped: list[str] = []
    with F.free_ros_domain() as domain, _workdir(out_dir, "faults_graph") as tmp:
        loop = F.ClosedLoop(Path(tmp), domain, mode="sync",
                            inference={"initial_observation_timeout_s": 10.0, "feedback_timeout_s": 2.5},
                            executor={"watchdog": {"state_timeout": 1.0}}, camera_max_age=0.5)
        try:
            loop.start()
            for k in range(trials):
                for fault in list(out):
                    try:
                        _graph_trial(loop, fault, k, prompt, out, log)
                    except TimeoutError as exc:
                        # a trial that could not be set up (e.g. the episode aborted before a chunk started):
                        # counted and reported, the next one starts from a fresh episode
                        skipped.append(f"{fault} trial {k + 1}: {str(exc).splitlines()[0]}")
                        log(f"[graph] trial {k + 1} {fault}: skipped ({str(exc).splitlines()[0]})")
                        loop.graph.check_alive()
            out["_violations"] = loop.commands.violations() + loop.driver_commands.violations()  # type: ignore
            out["_skipped"] = skipped  # type: ignore[assignment]
            lim = loop.limits
            out["_limits"] = {"stop_deceleration": float(np.min(lim.stop_deceleration[~lim.is_gripper])),  # type: ignore
                              "period": loop.period, "heartbeat_timeout": loop.heartbeat_timeout}
        finally:
            left = loop.stop()
            if left:
                log(f"processes survived: {left}")
    return out


def _graph_trial(loop, fault: str, k: int, prompt: str, out: dict, log) -> None:
    """One graph trial: start an episode, inject ``fault`` just after a chunk started, measure, recover."""
    loop.links.reset()
    loop.rearm()
    h = loop.episodes.send(prompt, max_duration_s=120)
    inf = loop.graph.proc(F.INFERENCE)
    injected = False
    try:
        t_goal = time.monotonic()
        while not h.feedback and time.monotonic() - t_goal < 90:
            time.sleep(0.05)
        _t, before = loop.wait_mid_chunk(20, 90)
        t = time.time_ns()
        injected = True
        if fault == "chunk loss":
            # the next chunk is lost: the executor plays the current one to its end, then holds
            loop.links.set(chunks={"drop_next": 1})
        elif fault == "SIGKILL":
            inf.signal(signal.SIGKILL)
        elif fault == "SIGSTOP":
            inf.signal(signal.SIGSTOP)
        elif fault == "e-stop":
            loop.e_stop()
        elif fault == "cancel":
            h.cancel()      # RunEpisode cancel: the inference node beats idle, the executor ends the episode
        hold_after = t + int(((0.3 + 2.0) if fault != "chunk loss" else 4.0) * 1e9)
        loop.commands.wait_for(lambda s: s.stamp_ns > hold_after, 30, "commands after the fault")
        m = loop.commands.stop_metrics(t)
        d = _trial_dict(m)
        d.update(_stream_check(loop.commands, loop.timing, t, (t, time.monotonic() - (time.time_ns() - t) / 1e9)))
        out[fault].append(d)
        log(f"[graph] trial {k + 1} {fault:10s} decel {m.time_to_decel_s} hold {m.time_to_hold_s} "
            f"stop {m.stop_distance} (v {m.speed_at_fault:.3f}, rows left {before['plan'][-1][1] - before['next_index']})")
    finally:
        if injected and fault == "SIGKILL":
            new = loop.graph.restart(F.INFERENCE)
            deadline = time.monotonic() + 180
            while "ready in" not in new.output() and time.monotonic() < deadline:
                loop.graph.check_alive([F.INFERENCE])
                time.sleep(0.5)
            loop.episodes.wait_server(60, alive=loop.graph.check_alive)
        elif fault == "SIGSTOP":
            inf.signal(signal.SIGCONT)
        if not (injected and fault == "SIGKILL"):
            try:
                h.cancel()
                h.result(60)
            except (TimeoutError, RuntimeError):
                pass


# ---------------------------------------------------------------------------------------------- report
def _fmt(stat, unit="", scale=1.0, digits=3) -> str:
    if stat is None:
        return "-"
    med, lo, hi, _n = stat
    return f"{med * scale:.{digits}f} ({lo * scale:.{digits}f}–{hi * scale:.{digits}f}){unit}"


def table(results: dict[str, list[dict]], period: float, bound: str) -> list[str]:
    rows = ["| fault | trials | speed at fault (rad/s) | time to decelerate (s) | braking (s) | time to hold (s) | "
            "stop distance (rad) | braking distance (rad) | monotone stops |", "|---|---|---|---|---|---|---|---|---|"]
    for fault, trials in results.items():
        if fault.startswith("_") or not trials:
            continue
        s = _summary(trials, period)
        rows.append(f"| {fault} | {s['n']} | {_fmt(s['speed_at_fault'])} | {_fmt(s['time_to_decel_s'])} | "
                    f"{_fmt(s['braking_s'])} | {_fmt(s['time_to_hold_s'])} | {_fmt(s['stop_distance'], digits=4)} | "
                    f"{_fmt(s['decel_distance'], digits=4)} | {s['monotone']}/{s['n']} |")
    rows.append("")
    gaps = [(f, t) for f, ts in results.items() if not f.startswith("_") for t in ts
            if t.get("max_stamp_gap_s", 0) > 3 * period]
    if gaps:
        rows.append(f"Excluded from the medians: {len(gaps)} trial(s) whose recorded command stream had a gap longer "
                    "than 3 control periods around the fault (the stop metrics need every command): " + "; ".join(
                        f"{f}: gap {t['max_stamp_gap_s']:.3f} s, executor late ticks {t.get('executor_late_ticks')}, "
                        f"missed deadlines {t.get('executor_missed_deadlines')}" for f, t in gaps) + ".")
        rows.append("")
    rows.append(bound)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=7, help="trials per fault on the executor rig")
    ap.add_argument("--graph-trials", type=int, default=3, help="trials per fault on the whole closed loop")
    ap.add_argument("--no-graph", action="store_true")
    ap.add_argument("--no-doc", action="store_true")
    ap.add_argument("--json", default="", help="also write the raw trials to this file")
    ap.add_argument("--out", default="", help="keep the node logs under this folder (default: temporary)")
    args = ap.parse_args()
    log = lambda s: print(s, flush=True)  # noqa: E731
    load0 = os.getloadavg()
    t0 = time.time()
    ex = bench_executor(args.trials, log, args.out)
    graph = {} if args.no_graph or args.graph_trials <= 0 else bench_graph(args.graph_trials, log, args.out)
    load1 = os.getloadavg()
    if args.json:
        Path(args.json).write_text(json.dumps({"executor": ex, "graph": graph}, indent=1, default=str))
    cmd = "python benchmarks/bench_faults.py" + (f" --trials {args.trials}" if args.trials != 7 else "") + (
        " --no-graph" if args.no_graph else (f" --graph-trials {args.graph_trials}" if args.graph_trials != 3 else ""))
    lim = ex["_limits"]
    a, hb, per = lim["stop_deceleration"], lim["heartbeat_timeout"], lim["period"]
    vpk = lim["peak_speed"]
    lines = [
        "## Faults: time to hold and stop distance (`benchmarks/bench_faults.py`)", "",
        f"Machine: {host.describe()}; measured {time.strftime('%Y-%m-%d %H:%M', time.localtime(t0))}, "
        f"{(time.time() - t0) / 60:.1f} min. The host was shared with other jobs: load average "
        f"{load0[0]:.1f} at the start, {load1[0]:.1f} at the end.", "",
        f"Command: `{cmd}`", "",
        "Every party is a separate process over real DDS; a monitor in the benchmark process records every "
        "command the executor emits (`/lingbot_va/command`, and `/sim_arm/joint_command` in the closed loop) with "
        "its stamp. Times are from the instant the fault was injected; *time to decelerate* is the last "
        "command before the controlled stop (from the next one on, each joint's time-to-stop falls every tick), "
        "*braking* is from then to the hold, *stop distance* is the largest joint motion between the fault and the hold. Cells: median "
        "(min–max).", "",
        f"### Executor rig: mock arm at {1 / per:.0f} Hz, scripted inference process, {args.trials} trials per fault", "",
        *table({k: v for k, v in ex.items()}, per, (
            f"Expected: SIGKILL / SIGSTOP are seen by the heartbeat watchdog (timeout {hb:g} s, heartbeats every "
            f"0.05 s), so deceleration starts {hb - 0.05:.2f}–{hb:.2f} s after the fault plus one control period; "
            f"braking from v at {a:g} rad/s² takes v/a ({vpk / a:.3f} s from the {vpk:.2f} rad/s peak) and covers "
            f"v²/2a ({vpk * vpk / (2 * a):.4f} rad); the stop distance adds v × the detection time. The e-stop "
            f"acts on the next control tick. Chunk loss: the arm plays what it already has (the streamer keeps up "
            f"to 2 × 25 rows = 1 s ahead), then stops at the end of the plan without overshooting it by more than "
            f"v²/2a.")),
        "",
        f"Commands checked over the whole run: {len(ex.get('_violations', []))} non-finite / out-of-limit / "
        "over-step commands.", "",
    ]
    if graph:
        gl = graph["_limits"]
        lines += [
            f"### Closed loop: sim arm, camera ingest, executor at {1 / gl['period']:.0f} Hz, inference (tiny random "
            f"checkpoint, sync), {args.graph_trials} trials per fault", "",
            *table(graph, gl["period"], (
                "The random checkpoint commands white noise that the limiter turns into bounded motion: most "
                "joints sit at the acceleration limit, |v| <= a*dt (0.133 rad/s at 30 Hz), so the speed at the "
                "fault is low and braking takes about one tick. The fault is injected within 0.1 s of a 32-action "
                "chunk starting (>= 20 actions left). SIGKILL / SIGSTOP of the real inference process: deceleration "
                f"within the {gl['heartbeat_timeout']:g} s heartbeat timeout (the shipped sim configuration: "
                "config/executor.yaml with the config/executor_sim.yaml overlay); chunk loss: the executor plays the "
                "chunk it has to its end and holds (time to hold and stop distance are the rest of that chunk, "
                "executed as planned; the braking distance is the overshoot past the plan's end), and "
                "the episode then ends with a reason naming the missing feedback; cancel (RunEpisode cancel from "
                "the client): the inference node's next heartbeat is idle and the executor ends the episode on "
                "it, so deceleration starts after the cancel round trip plus at most one 50 ms beat.")),
            "",
            f"Commands checked over the whole run (executor echo and what reached the sim): "
            f"{len(graph.get('_violations', []))} non-finite / out-of-limit / over-step commands."
            + (f" Trials that could not be set up (skipped): {'; '.join(graph['_skipped'])}." if graph.get("_skipped")
               else ""), "",
        ]
    def usable(results: dict, period: float) -> dict:   # the trials the tables' medians use
        return {f: [t for t in v if t.get("max_stamp_gap_s", 0) <= 3 * period] for f, v in results.items()
                if not f.startswith("_")}

    panels = {f"executor rig (mock arm, {1 / per:.0f} Hz, heartbeat_timeout {hb:g} s)": usable(ex, per)}
    if graph:
        panels[f"closed loop (sim, {1 / graph['_limits']['period']:.0f} Hz, heartbeat_timeout "
               f"{graph['_limits']['heartbeat_timeout']:g} s)"] = usable(graph, graph["_limits"]["period"])
    lines += [plots.fault_stops(panels), ""]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_doc:
        DOC.parent.mkdir(parents=True, exist_ok=True)
        DOC.write_text(text)
        print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
