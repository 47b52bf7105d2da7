"""Standalone runner (``lingbot-va-demo``): the bringup without launch_ros.

Starts the same node set as launch/bringup.launch.py from the same YAML (as separate processes over real DDS),
runs one RunEpisode with a prompt, records it, and prints a summary (chunks, latencies, arm idle time, where the
bag is). With no checkpoint it writes a tiny random one in the official layout first, so a fresh machine needs
no download. Ctrl-C cancels the episode and stops every process; nothing is left running.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lingbot_va_ros.bringup.graph import BringupOptions, NodeSpec, build_graph

DEFAULT_PROMPT = "pick up the red block and place it in the bowl"


@dataclass
class EpisodeReport:
    outcome: str = ""
    reason: str = ""
    episode_id: str = ""
    chunks: int = 0
    duration_s: float = 0.0
    latencies: list[float] = field(default_factory=list)
    deadline_misses: int = 0
    tick_times: list[float] = field(default_factory=list)
    recording_path: str = ""
    mode: str = ""
    chunk_stamps: dict[int, float] = field(default_factory=dict)     # chunk index -> stamp (s)
    predicted_frames: list[tuple[int, float]] = field(default_factory=list)   # (chunk, delay after its stamp, s)
    prediction_vs_real: int = 0
    latent_mse: list[float] = field(default_factory=list)              # per grounded chunk

    def idle_seconds(self, tick_period: float) -> tuple[float, int]:
        """Arm idle time between key frames beyond the nominal spacing (holds while waiting for chunks)."""
        gaps = [b - a for a, b in zip(self.tick_times, self.tick_times[1:])]
        idle = [g - tick_period for g in gaps if g > 1.5 * tick_period]
        return sum(idle), len(idle)

    def frames_per_chunk(self) -> dict[int, int]:
        """Predicted-frame messages per published chunk (0 for a chunk the live view never showed)."""
        counts = {c: 0 for c in self.chunk_stamps}
        for chunk, _delay in self.predicted_frames:
            counts[chunk] = counts.get(chunk, 0) + 1
        return counts


def write_params_file(spec: NodeSpec, directory: Path) -> Path:
    """The launch-time overrides of one node as a ROS params file (types preserved, no shell quoting)."""
    path = directory / f"{spec.name}.overrides.yaml"
    # "/**/name" matches the node in any namespace (a bare name only matches it in the root namespace)
    path.write_text(yaml.safe_dump({f"/**/{spec.name}": {"ros__parameters": spec.overrides}}, sort_keys=False))
    return path


def ensure_checkpoint(path: Path, embodiment: str) -> Path:
    if (path / "transformer" / "config.json").is_file():
        return path
    from lingbot_va_ros.model.tiny_checkpoint import write_tiny_checkpoint

    print(f"[demo] writing a tiny random checkpoint (official layout) to {path}", flush=True)
    write_tiny_checkpoint(path, embodiment=embodiment)
    return path


class Bringup:
    """The node processes of one bringup; always stopped on exit."""

    def __init__(self, opts: BringupOptions, domain_id: int, run_dir: Path):
        from lingbot_va_ros.testing.ros_harness import NodeProcess, ros_env

        self.opts, self.run_dir = opts, run_dir
        (run_dir / "logs").mkdir(parents=True, exist_ok=True)
        self.env = ros_env(domain_id, run_dir / "logs" / "ros")
        self.processes: list[NodeProcess] = []
        for spec in build_graph(opts):
            files = [*spec.params_files, str(write_params_file(spec, run_dir / "logs"))]
            ros_args = ["-r", f"__node:={spec.name}", "--log-level", opts.log_level]
            for src, dst in spec.remappings:
                ros_args += ["-r", f"{src}:={dst}"]
            if opts.namespace:
                ros_args += ["-r", f"__ns:=/{opts.namespace.strip('/')}"]
            for f in files:
                ros_args += ["--params-file", f]
            self.processes.append(NodeProcess.module(spec.module, self.env, run_dir / "logs", ros_args=ros_args,
                                                     name=spec.name))

    def start(self) -> None:
        for p in self.processes:
            p.start()

    def check_alive(self) -> None:
        dead = [p for p in self.processes if not p.alive()]
        if dead:
            p = dead[0]
            tail = "\n".join(p.output().splitlines()[-15:])
            raise RuntimeError(f"node {p.name} exited with code {p.proc.returncode}; last log lines:\n{tail}")

    def stop(self) -> list[str]:
        for p in reversed(self.processes):
            p.stop()
        return [p.name for p in self.processes if p.alive()]


def run_episode(bringup: Bringup, domain_id: int, prompt: str, max_chunks: int, max_duration: float,
                startup_timeout: float, quiet: bool = False, metadata: dict | None = None,
                chunk_period_s: float = 1.0) -> EpisodeReport:
    from rclpy.action import ActionClient

    from lingbot_va_ros.action import RunEpisode
    from lingbot_va_ros.common import qos, topics
    from lingbot_va_ros.msg import ActionChunk, ActionTick, ExecutedActions, PredictedFrameInfo, PredictionError
    from lingbot_va_ros.common.conversions import stamp_to_ns
    from lingbot_va_ros.testing.ros_harness import RosProbe, apply_ros_env_to_this_process, wait_until

    apply_ros_env_to_this_process(domain_id, bringup.env.get("ROS_LOG_DIR"))
    report = EpisodeReport(mode=bringup.opts.mode)
    with RosProbe(domain_id, "lingbot_va_demo") as probe:
        from lingbot_va_ros.bringup.graph import namespace_remappings

        name = dict(namespace_remappings(bringup.opts.namespace)).get  # this robot's name for a default name
        ticks = probe.subscribe(ActionTick, name(topics.ACTION_TICK, topics.ACTION_TICK), qos.RELIABLE_DEEP)
        executed = probe.subscribe(ExecutedActions, name(topics.EXECUTED_ACTIONS, topics.EXECUTED_ACTIONS),
                                   qos.RELIABLE_DEEP, keep=lambda m: m.episode_id)
        # what the live view showed, per chunk (chunk stamps to check each came within a chunk period)
        chunks = probe.subscribe(ActionChunk, name(topics.ACTION_CHUNK, topics.ACTION_CHUNK), qos.RELIABLE_DEEP,
                                 keep=lambda m: (m.episode_id, m.chunk_index, stamp_to_ns(m.header.stamp) / 1e9))
        frames = probe.subscribe(PredictedFrameInfo, name(topics.PREDICTED_FRAMES_INFO, topics.PREDICTED_FRAMES_INFO),
                                 qos.RELIABLE_DEEP)
        pairs = probe.subscribe(PredictedFrameInfo, name(topics.PREDICTION_VS_REAL_INFO, topics.PREDICTION_VS_REAL_INFO),
                                qos.RELIABLE_DEEP)
        errors = probe.subscribe(PredictionError, name(topics.PREDICTION_ERROR, topics.PREDICTION_ERROR),
                                 qos.RELIABLE_DEEP)
        client = ActionClient(probe.node, RunEpisode, name(topics.RUN_EPISODE, topics.RUN_EPISODE))
        t0 = time.monotonic()
        while not client.wait_for_server(timeout_sec=0.5):
            bringup.check_alive()
            if time.monotonic() - t0 > startup_timeout:
                raise TimeoutError(f"the inference node did not offer {topics.RUN_EPISODE} within {startup_timeout:.0f}s")
        # the executor and camera ingest must be listening before the episode asks for the first key frame
        wait_until(lambda: probe.node.count_subscribers(name(topics.ACTION_CHUNK, topics.ACTION_CHUNK)) >= 1
                   and probe.node.count_subscribers(name(topics.ACTION_TICK, topics.ACTION_TICK)) >= 2, startup_timeout,
                   "executor and camera ingest", on_timeout=lambda: str(bringup.check_alive()))
        print(f"[demo] graph up in {time.monotonic() - t0:.1f}s; running '{prompt}' "
              f"(mode {bringup.opts.mode}, {max_chunks or 'unlimited'} chunks)", flush=True)

        def on_feedback(fb):
            f = fb.feedback
            report.latencies.append(f.latency_s)
            report.deadline_misses = f.deadline_misses
            if not quiet:
                print(f"[demo] chunk {f.chunk_index:3d}  latency {1e3 * f.latency_s:6.0f} ms  cache {100 * f.cache_fill:5.1f}%"
                      f"  mode {f.mode}  misses {f.deadline_misses}", flush=True)

        episode_id = f"ep-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid() % 10000:04d}"
        recorder = None
        if bringup.opts.record:
            from lingbot_va_ros.recording.control import RecorderClient

            from lingbot_va_ros.recording.control import CONTROL_TOPIC, STATUS_TOPIC

            recorder = RecorderClient(probe.node, name(CONTROL_TOPIC, CONTROL_TOPIC), name(STATUS_TOPIC, STATUS_TOPIC))
            # The recorder subscribes to a topic once its discovery (1 Hz) sees a publisher: the inference node's
            # publishers appear when its model is loaded, just before the goal is sent, and a first chunk published
            # before the recorder's subscription exists is lost to the bag (volatile topics). So the episode starts
            # once the recorder listens to every topic of the episode that has a publisher now.
            episode_topics = [name(t, t) for t in (
                topics.ACTION_CHUNK, topics.ACTION_TICK, topics.EXECUTED_ACTIONS, topics.OBSERVATION, topics.COMMAND,
                topics.PREDICTED_LATENTS, topics.PREDICTED_TRAJECTORY, topics.PREDICTED_FRAMES,
                topics.PREDICTED_FRAMES_COMPRESSED, topics.PREDICTED_FRAMES_INFO, topics.PREDICTION_VS_REAL,
                topics.PREDICTION_VS_REAL_COMPRESSED, topics.PREDICTION_VS_REAL_INFO, topics.PREDICTION_ERROR)]
            publishing = [t for t in episode_topics if probe.node.count_publishers(t) > 0]
            recorder.wait_ready(timeout=startup_timeout)
            unheard = recorder.wait_subscribed(publishing, timeout=20.0)
            if unheard:
                print(f"[demo] warning: the recorder does not record {unheard}", file=sys.stderr, flush=True)
            # its subscriptions matched in the graph as this process sees it (DDS discovery of the new readers)
            wait_until(lambda: all(any(i.node_name == "lingbot_va_recorder"
                                       for i in probe.node.get_subscriptions_info_by_topic(t))
                                   for t in publishing if t not in unheard), 20, "the recorder's subscriptions")
            report.recording_path = recorder.start(episode_id, prompt, metadata or {}, timeout=startup_timeout)
        goal = RunEpisode.Goal(prompt=prompt, max_chunks=max_chunks, max_duration_s=max_duration,
                               episode_id=episode_id)
        goal_future = client.send_goal_async(goal, feedback_callback=on_feedback)
        handle = wait_until(lambda: goal_future.done() and goal_future.result(), 30, "goal acceptance")
        result_future = handle.get_result_async()
        try:
            while not result_future.done():
                bringup.check_alive()
                time.sleep(0.1)
        except (KeyboardInterrupt, RuntimeError):
            cancel = handle.cancel_goal_async()
            wait_until(cancel.done, 10, "cancel response")
            raise
        result = result_future.result().result
        report.outcome, report.reason, report.episode_id = result.outcome, result.reason, result.episode_id
        report.chunks, report.duration_s = result.chunks, result.duration_s
        report.chunk_stamps = {c: t for e, c, t in list(chunks.messages) if e == result.episode_id}
        if bringup.opts.live_view and report.chunk_stamps:
            try:   # the last chunk's frames may still be decoding (and should reach the bag): one more chunk period
                wait_until(lambda: {m.chunk_index for m in list(frames.messages)
                                    if m.episode_id == result.episode_id} >= set(report.chunk_stamps),
                           chunk_period_s + 5.0, "the live view")
            except TimeoutError:
                pass         # reported as missing chunks in the summary
        if recorder is not None:
            # let the arm finish the last chunk and its key frames reach the bag before closing it
            wait_until(lambda: ticks.stamps and time.monotonic() - ticks.stamps[-1] > 0.5, 10, "the arm to settle")
            # every executed-actions report this process saw is in the bag before it closes (the recorder
            # receives it on its own subscription, maybe later than this process)
            seen = sum(e == episode_id for e in list(executed.messages))
            if not recorder.wait_recorded({name(topics.EXECUTED_ACTIONS, topics.EXECUTED_ACTIONS): seen}, 10.0):
                print(f"[demo] warning: the recorder had fewer than the {seen} executed-action reports seen here "
                      "when its bag closed", file=sys.stderr, flush=True)
            report.recording_path = recorder.stop(episode_id, result.outcome, result.reason,
                                                  {"chunks": int(result.chunks), "duration_s": float(result.duration_s)})
        # the executor's stamps (the instant each key frame's action was commanded), not this process's receive
        # times, which carry its own scheduling jitter
        report.tick_times = [stamp_to_ns(m.header.stamp) / 1e9 for m in list(ticks.messages)
                             if m.episode_id == result.episode_id and m.action_index >= 0]
        report.predicted_frames = [(m.chunk_index, m.publish_delay) for m in list(frames.messages)
                                   if m.episode_id == result.episode_id]
        report.prediction_vs_real = sum(m.episode_id == result.episode_id for m in list(pairs.messages))
        report.latent_mse = [float(m.latent_mse) for m in list(errors.messages) if m.episode_id == result.episode_id]
        client.destroy()
    return report


def live_view_lines(report: EpisodeReport, chunk_period_s: float) -> list[str]:
    """The live view's part of the summary: predicted-frame messages per chunk and how soon after the chunk."""
    counts = report.frames_per_chunk()
    missing = sorted(c for c, n in counts.items() if n == 0)
    delays = sorted(d for _c, d in report.predicted_frames)
    late = sum(d > chunk_period_s for d in delays)
    lines = [f"live view        {len(report.predicted_frames)} predicted-frame messages for {len(counts)} chunks "
             f"({'every chunk' if not missing else f'none for chunks {missing}'}), "
             f"{report.prediction_vs_real} prediction-vs-real"]
    if delays:
        lines.append(f"                 after their chunk: median {statistics.median(delays):.2f} s, "
                     f"max {delays[-1]:.2f} s ({late} later than the chunk period {chunk_period_s:.2f} s)")
    if report.latent_mse:
        lines.append(f"prediction error latent MSE median {statistics.median(report.latent_mse):.3f} over "
                     f"{len(report.latent_mse)} grounded chunks")
    return lines


def summarize(report: EpisodeReport, tick_period: float, bag_dir: Path | None, chunk_period_s: float | None = None,
              live_view: bool = False) -> str:
    idle, holds = report.idle_seconds(tick_period)
    lat = sorted(report.latencies)
    lines = [
        f"outcome          {report.outcome} ({report.reason})",
        f"episode          {report.episode_id}",
        f"mode             {report.mode}",
        f"chunks           {report.chunks} in {report.duration_s:.1f} s",
        f"latency          median {1e3 * statistics.median(lat):.0f} ms, max {1e3 * lat[-1]:.0f} ms" if lat else "latency          -",
        f"arm idle         {idle:.2f} s over {holds} waits ({len(report.tick_times)} key frames executed)",
        f"deadline misses  {report.deadline_misses}",
        *(live_view_lines(report, chunk_period_s or 0.0) if live_view else ["live view        off"]),
        f"recording        {bag_dir if bag_dir else '(not recorded)'}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="lingbot-va-demo", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompt", default=DEFAULT_PROMPT)
    ap.add_argument("--mode", default="async", choices=["sync", "async", "async_naive"])
    ap.add_argument("--chunks", type=int, default=12, help="chunks to run (0 = until --duration)")
    ap.add_argument("--duration", type=float, default=0.0, help="max episode seconds (0 = no limit)")
    ap.add_argument("--arm", default="sim")
    ap.add_argument("--embodiment", default="demo_sim")
    ap.add_argument("--checkpoint", default="", help="checkpoint folder (default: a tiny random one)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default="artifacts/demo", help="run folder (logs, recordings, tiny checkpoint)")
    ap.add_argument("--no-record", action="store_true")
    ap.add_argument("--domain-id", type=int, default=int(os.environ.get("ROS_DOMAIN_ID", "42")))
    ap.add_argument("--startup-timeout", type=float, default=120.0)
    ap.add_argument("--torch-threads", type=int, default=1, help="inference CPU threads (1 is fastest on small CPUs)")
    ap.add_argument("--live-view-hz", type=float, default=5.0, help="live view: at most this many predicted-frame "
                    "decodes per second (a chunk arriving sooner replaces the waiting one); 0 = no live view")
    ap.add_argument("--namespace", default="", help="run the robot's graph under /<namespace>/...")
    ap.add_argument("--json", action="store_true", help="also print the report as JSON")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)

    from lingbot_va_ros.executor.arm_config import load_arm_config
    from lingbot_va_ros.model.embodiment import load_embodiment

    run_dir = Path(args.out).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    arm = args.arm
    if args.checkpoint:
        checkpoint = Path(args.checkpoint)
    else:
        checkpoint = ensure_checkpoint(run_dir / "tiny_checkpoint", args.embodiment)
        if arm == "sim":  # an untrained model predicts white noise: see config/arms/sim_random_policy.yaml
            arm = "sim_random_policy"
            print("[demo] tiny random checkpoint: using arm profile 'sim_random_policy' (jump checks opened, "
                  "limits enforced)", flush=True)
    recording_dir = run_dir / "recordings"
    opts = BringupOptions(arm=arm, embodiment=args.embodiment, checkpoint=str(checkpoint.resolve()),
                          device=args.device, mode=args.mode, record=not args.no_record,
                          recording_dir=str(recording_dir), use_sim=load_arm_config(arm).driver == "sim",
                          torch_threads=args.torch_threads, live_view=args.live_view_hz > 0,
                          display_rate_hz=args.live_view_hz,
                          namespace=args.namespace)
    emb = load_embodiment(args.embodiment)
    bringup = Bringup(opts, args.domain_id, run_dir)
    code = 1
    try:
        bringup.start()
        from lingbot_va_ros.common.paths import resolve_config
        from lingbot_va_ros.recording.metadata import episode_metadata

        configs = [resolve_config(arm, "arms"), resolve_config(args.embodiment, "embodiments"),
                   *(f for spec in build_graph(opts) for f in spec.params_files)]
        meta = episode_metadata(pipeline_mode=args.mode, checkpoint=str(checkpoint), embodiment=args.embodiment,
                                config_files=configs, extra={"arm": arm, "runner": "lingbot-va-demo"})
        report = run_episode(bringup, args.domain_id, args.prompt, args.chunks, args.duration, args.startup_timeout,
                             args.quiet, meta, chunk_period_s=emb.chunk_seconds)
        bag = Path(report.recording_path) if report.recording_path else None
        print("\n" + summarize(report, emb.actions_per_keyframe / emb.control_hz, bag, emb.chunk_seconds,
                               opts.live_view), flush=True)
        if args.json:
            print(json.dumps({**report.__dict__, "tick_times": len(report.tick_times),
                              "frames_per_chunk": report.frames_per_chunk()}, default=str))
        code = 0 if report.outcome == "completed" else 1
    except KeyboardInterrupt:
        print("\n[demo] interrupted: cancelling the episode and stopping the graph", flush=True)
        code = 130
    except (RuntimeError, TimeoutError) as exc:
        print(f"[demo] FAILED: {exc}", file=sys.stderr, flush=True)
        code = 1
    finally:
        leftovers = bringup.stop()
        if leftovers:
            print(f"[demo] processes did not stop: {leftovers}", file=sys.stderr)
            code = code or 1
        print(f"[demo] logs in {run_dir / 'logs'}", flush=True)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
