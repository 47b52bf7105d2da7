"""``lingbot-va-record-demo``: record tele-operated demonstration episodes with the recorder node.

    lingbot-va-record-demo --prompt "pick up the {object} and put it back" --source scripted --episodes 5
    lingbot-va-record-demo --prompt "fold the towel" --source topic --set topic=/leader/joint_targets

For every episode it opens a recorder episode through ``/lingbot_va/recorder/control`` (prompt, ``source: demo``,
the teleop source and its per-episode details, the arm config and seed in custom_data), drives the arm at the
control rate with the source's targets, and closes the episode when the source finishes, after ``--duration``,
on a message on ``/lingbot_va/demo/stop`` (its data = the outcome) or on Ctrl-C (which also ends the session).

Every target passes the executor's safety limiter (the arm YAML's limits, relative to the last command) and goes
out through the arm YAML's driver (``sim`` = JointState on /sim_arm/joint_command, as the executor does); the
final command of each tick is published on ``/lingbot_va/command`` (like the executor), which the recorder keeps
and ``lingbot-va-export`` turns into the demo's actions. Do not run the executor on the same arm meanwhile.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import sys
import threading
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import yaml

from lingbot_va_ros.common.params import ParameterError
from lingbot_va_ros.teleop.params import DemoRecorderParams


class DemoSession:
    """The demo recorder's ROS side and control loop (the node is spun by an executor on another thread)."""

    def __init__(self, node, params: DemoRecorderParams, log=print):
        from sensor_msgs.msg import JointState
        from std_msgs.msg import String

        from lingbot_va_ros.common import qos, topics
        from lingbot_va_ros.common.registry import ARM_DRIVERS
        from lingbot_va_ros.executor.arm_config import load_arm_config
        from lingbot_va_ros.executor.drivers.base import ArmDriver
        from lingbot_va_ros.executor.limits import SafetyLimiter
        from lingbot_va_ros.model.embodiment import load_embodiment
        from lingbot_va_ros.recording.control import RecorderClient
        from lingbot_va_ros.teleop.sources import TELEOP_SOURCES, TeleopSource

        self.node, self.params, self.log = node, params, log
        self.embodiment = load_embodiment(params.embodiment)
        self.rate_hz = params.rate_hz or self.embodiment.control_hz
        self.arm = load_arm_config(params.arm)
        urdf = self.arm.resolve_urdf()
        self.limiter = SafetyLimiter(self.arm.build_limits(str(urdf)) if urdf else self.arm.build_limits(),
                                     1.0 / self.rate_hz)
        driver_cls = ARM_DRIVERS.load(self.arm.driver)
        if not (isinstance(driver_cls, type) and issubclass(driver_cls, ArmDriver)):
            raise TypeError(f"arm driver '{self.arm.driver}' is not an ArmDriver")
        self.joint_names = list(self.arm.joints)
        self.driver = driver_cls(node, self.joint_names, self.arm.driver_params, period=1.0 / self.rate_hz,
                                 grippers=self.arm.is_gripper())
        source_cls = TELEOP_SOURCES.load(params.source)
        if not (isinstance(source_cls, type) and issubclass(source_cls, TeleopSource)):
            raise TypeError(f"teleop source '{params.source}' is not a TeleopSource")
        self.source = source_cls(self.joint_names, params.source_settings)
        self._JointState = JointState
        self.command_pub = node.create_publisher(JointState, topics.COMMAND, qos.COMMAND)
        self.recorder = RecorderClient(node)
        self._stop_request: str | None = None
        self._lock = threading.Lock()
        node.create_subscription(String, params.stop_topic, self._on_stop, qos.RELIABLE)
        self.driver.start()
        self.bags: list[str] = []
        self.commands_published = 0

    def _on_stop(self, msg) -> None:
        with self._lock:
            self._stop_request = msg.data.strip() or "completed"

    def _take_stop(self) -> str | None:
        with self._lock:
            request, self._stop_request = self._stop_request, None
        return request

    def _measured(self, timeout_s: float) -> np.ndarray:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            sample = self.driver.state()
            if sample is not None and np.isfinite(sample.positions).all():
                return np.asarray(sample.positions, dtype=np.float64)
            time.sleep(0.02)
        raise TimeoutError(f"no joint state from the arm ({self.arm.driver} driver, {self.arm.source}) within "
                           f"{timeout_s:g} s")

    def _send(self, q: np.ndarray, v: np.ndarray) -> None:
        from lingbot_va_ros.common.conversions import ns_to_stamp

        stamp_ns = self.node.get_clock().now().nanoseconds
        self.driver.send(q, stamp_ns, v)
        msg = self._JointState(name=self.joint_names, position=q.tolist(), velocity=v.tolist())
        msg.header.stamp = ns_to_stamp(stamp_ns)
        self.command_pub.publish(msg)
        self.commands_published += 1

    def _wait_recorder_caught_up(self) -> None:
        """Until the recorder has received every command published so far (a loaded recorder lags; closing the
        episode earlier would put its last commands into the next bag or outside any)."""
        from lingbot_va_ros.common import topics

        deadline = time.monotonic() + self.params.wait_timeout_s
        while (self.recorder.status.get("received") or {}).get(topics.COMMAND, 0) < self.commands_published:
            if time.monotonic() > deadline:
                self.log(f"warning: the recorder received only "
                         f"{(self.recorder.status.get('received') or {}).get(topics.COMMAND, 0)} of "
                         f"{self.commands_published} commands within {self.params.wait_timeout_s:g} s")
                return
            time.sleep(0.05)

    def run(self) -> list[str]:
        """Record the configured episodes; returns the closed bags. Ctrl-C closes the open episode and returns."""
        from lingbot_va_ros.recording.metadata import episode_metadata

        p = self.params
        if not self.recorder.wait_ready(p.wait_timeout_s):
            raise TimeoutError(f"no recorder node answering on its control topic within {p.wait_timeout_s:g} s "
                               "(start lingbot-va-recorder)")
        self._wait_recorder_topics()
        self.source.start(self.node)
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
        for k in range(p.episodes):
            q0 = self._measured(p.wait_timeout_s)
            seed = p.seed + k
            details = self.source.begin_episode(q0, seed)
            prompt = self.source.episode_prompt(p.prompt)
            episode_id = f"{p.episode_prefix}-{stamp}-{k}"
            meta = episode_metadata(embodiment=self.embodiment.name, config_files=[self.arm.source], seed=seed,
                                    extra={"source": "demo", **self.source.describe(), **details,
                                           "control_hz": self.rate_hz, "arm": self.arm.source, **p.metadata})
            outcome, reason, interrupted = "completed", "", False
            self._take_stop()   # a stop sent before this episode was opened does not end it
            try:   # Ctrl-C may land anywhere from here on: the episode is closed below in every case
                self.recorder.start(episode_id, prompt, meta, timeout=p.wait_timeout_s)
                self.log(f"episode {k + 1}/{p.episodes} '{episode_id}': {prompt}")
                outcome, reason = self._drive(q0)
            except KeyboardInterrupt:
                reason, interrupted = "ended by Ctrl-C", True
            except Exception as exc:
                self._close(episode_id, "failed", f"{type(exc).__name__}: {exc}")
                raise
            self._close(episode_id, outcome, reason)
            if interrupted:
                break
        return self.bags

    def _close(self, episode_id: str, outcome: str, reason: str) -> None:
        from lingbot_va_ros.recording.control import ControlError

        self._wait_recorder_caught_up()
        try:
            bag = self.recorder.stop(episode_id, outcome=outcome, reason=reason, timeout=self.params.wait_timeout_s)
        except ControlError as exc:   # interrupted before the recorder opened it: nothing to close
            self.log(f"  episode '{episode_id}' was not open: {exc}")
            return
        self.bags.append(bag)
        self.log(f"  closed {bag} ({outcome}: {reason})")

    def _wait_recorder_topics(self) -> None:
        """Until every recorded topic matching ``wait_for_topics`` (each camera of a glob, not just one) is
        streaming into the recorder now: its count grew twice after it first showed up. A camera whose first frames
        are still being rendered would otherwise leave the episode's first rows without a fresh image."""
        import fnmatch

        wanted = [t for t in self.params.wait_for_topics if t]
        deadline = time.monotonic() + self.params.wait_timeout_s
        first: dict[str, int] = {}
        while True:
            counts = dict(self.recorder.status.get("received") or {})
            matched = {t: n for t, n in counts.items() if any(fnmatch.fnmatchcase(t, w) for w in wanted)}
            missing = [w for w in wanted if not any(fnmatch.fnmatchcase(t, w) and n for t, n in matched.items())]
            for t, n in matched.items():
                if n:
                    first.setdefault(t, n)
            if not missing and all(n >= first.get(t, n + 3) + 2 for t, n in matched.items()):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"the recorder is not receiving {missing or sorted(matched)} within "
                                   f"{self.params.wait_timeout_s:g} s (is the sim / camera driver running, are the "
                                   f"topics in the recorder's 'topics'?)")
            time.sleep(0.1)

    def _drive(self, q0: np.ndarray) -> tuple[str, str]:
        p = self.params
        period = 1.0 / self.rate_hz
        q_cmd, v = q0.copy(), np.zeros_like(q0)
        start = time.monotonic()
        finished_at = None
        tick = 0
        while True:
            tick += 1
            wake = start + tick * period
            delay = wake - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            t = time.monotonic() - start
            request = self._take_stop()
            if request is not None:
                return request, "stop command"
            if p.duration_s and t >= p.duration_s:
                return "completed", f"duration {p.duration_s:g} s"
            if finished_at is not None and t - finished_at >= p.settle_s:
                return "completed", "source finished"
            sample = self.driver.state()
            q_meas = np.asarray(sample.positions, dtype=np.float64) if sample is not None else q_cmd
            target = None
            if t >= p.settle_s and finished_at is None:
                target = self.source.target(t - p.settle_s, q_meas)
                if self.source.finished:
                    finished_at = t
            res = self.limiter.limit(q_cmd if target is None else np.asarray(target, dtype=np.float64), q_cmd, v)
            q_cmd, v = res.position, res.velocity
            self._send(q_cmd, v)


def _load_params(args: argparse.Namespace) -> DemoRecorderParams:
    data: dict[str, Any] = {}
    if args.params_file:
        path = Path(args.params_file)
        doc = yaml.safe_load(path.read_text()) or {}
        for key in sorted(doc, key=lambda k: k not in ("/**", "**")):   # wildcard first, then node sections
            if key in ("/**", "**") or str(key).endswith("lingbot_va_demo_recorder"):
                data.update(((doc.get(key) or {}).get("ros__parameters")) or {})
    flags = {"prompt": args.prompt, "source": args.source, "arm": args.arm, "embodiment": args.embodiment,
             "rate_hz": args.rate, "episodes": args.episodes, "duration_s": args.duration, "seed": args.seed,
             "episode_prefix": args.prefix, "wait_timeout_s": args.wait_timeout}
    data.update({k: v for k, v in flags.items() if v is not None})
    settings = dict(data.get("source_settings") or {})
    for item in args.set or []:
        key, _, value = item.partition("=")
        if not key or not _:
            raise ParameterError(f"--set expects KEY=VALUE, got {item!r}")
        settings[key] = yaml.safe_load(value)
    data["source_settings"] = settings
    return DemoRecorderParams.from_dict(data, source="lingbot-va-record-demo")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lingbot-va-record-demo", description=(
        "Record tele-operated demonstration episodes through the recorder node (docs/dataset.md)."))
    p.add_argument("--params-file", help="YAML with lingbot_va_demo_recorder: ros__parameters (e.g. "
                   "config/demo_recorder.yaml); flags override it")
    p.add_argument("--prompt")
    p.add_argument("--source", help="topic | scripted | package.module:Class")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="a source setting (repeatable)")
    p.add_argument("--arm", help="arm YAML name or path (driver + safety limits)")
    p.add_argument("--embodiment")
    p.add_argument("--rate", type=float, help="control rate in Hz (default: the embodiment's control_hz)")
    p.add_argument("--episodes", type=int)
    p.add_argument("--duration", type=float, help="seconds per episode (default: until the source finishes)")
    p.add_argument("--seed", type=int)
    p.add_argument("--prefix", help="episode id prefix")
    p.add_argument("--wait-timeout", type=float)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.signals import SignalHandlerOptions

    args, ros_args = build_parser().parse_known_args(argv)
    try:
        params = _load_params(args)
    except (ParameterError, OSError, yaml.YAMLError) as exc:
        print(f"lingbot-va-record-demo: {exc}", file=sys.stderr)
        return 2
    # No rclpy signal handler: Ctrl-C must reach run() as KeyboardInterrupt with the context still alive, so the
    # open episode is closed through the recorder before shutting down.
    rclpy.init(args=[sys.argv[0], *ros_args], signal_handler_options=SignalHandlerOptions.NO)
    node = Node("lingbot_va_demo_recorder")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, name="ros_spin")
    spinner.start()
    status = 0
    try:
        session = DemoSession(node, params)
        bags = session.run()
        print(f"recorded {len(bags)} episode(s):" + "".join(f"\n  {b}" for b in bags), flush=True)
    except KeyboardInterrupt:
        status = 130
    except Exception as exc:  # noqa: BLE001 - one clear line for every failure
        print(f"lingbot-va-record-demo: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        status = 2
    finally:
        executor.shutdown()
        spinner.join(timeout=5.0)
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return status


if __name__ == "__main__":
    raise SystemExit(main())

