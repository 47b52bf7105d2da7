"""Fault injection for the reliability suite (test/faults, test/fuzz, test/soak) and its benchmarks.

Processes (each runs on its own, over real DDS, like a node: ``python -m lingbot_va_ros.testing.faults <tool>``):

- ``relay``: sits between two nodes on remapped topics and forwards messages with injected faults: drop a
  share or the next N, delay with jitter (which also reorders), duplicate, shift header stamps (backwards
  stamps), or stall completely. Faults are changed at run time on ``/faults/<relay>/control`` (JSON) and
  acknowledged on the latched ``/faults/<relay>/status``, so a test waits for the ack, never sleeps.
- ``streamer``: a scripted stand-in for the inference process (no model): heartbeats at 20 Hz and a tiled
  stream of joint chunks tracing a smooth sinusoid from the arm's current command, paced by the executor's
  progress; re-plans from the executor's next index when it holds on a gap (a lost chunk) or after a stop.
  Cheap to start, kill and restart, so the fault benchmark can repeat trials.

Plugins:

- :class:`FaultInjectingMockDriver` (arm YAML ``driver: lingbot_va_ros.testing.faults:FaultInjectingMockDriver``):
  the ``mock`` arm plus a fault input on ``/faults/driver_fault`` (std_msgs/String JSON ``{"fault": "...",
  "persist": true}``; ``{"fault": ""}`` removes the cause). The shipped mock driver has no fault injection.

In-test helpers: :class:`CommandMonitor` (every command with its receipt time; safety invariants, stream
continuity, time-to-hold and stop distance), :class:`EpisodeClient` (RunEpisode goals), :class:`RelayControl`,
:class:`FaultGraph` (the bringup's node set with remaps/overrides per node, restartable nodes) and
:class:`ResourceSampler` (RSS, threads, fds and children of every node process, for soak tests).
"""
from __future__ import annotations

import argparse
import heapq
import itertools
import json
import math
import os
import random
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from lingbot_va_ros.common import topics
from lingbot_va_ros.executor.drivers.mock import MockDriver, MockParams
from lingbot_va_ros.testing.ros_harness import deadline_s

FAULTS_NS = "/faults"
DRIVER_FAULT_TOPIC = f"{FAULTS_NS}/driver_fault"
MAX_TOOL_SECONDS = 1800.0        # every fault process ends by itself after at most this long


def control_topic(relay: str) -> str:
    return f"{FAULTS_NS}/{relay}/control"


def status_topic(relay: str) -> str:
    return f"{FAULTS_NS}/{relay}/status"


# ================================================================================================ driver plugin
class FaultInjectingMockParams(MockParams):
    fault_topic: str = DRIVER_FAULT_TOPIC


class FaultInjectingMockDriver(MockDriver):
    """The mock arm with an injectable driver fault (what a real driver reports as e.g. a rejected goal).

    ``{"fault": "text", "persist": true}`` raises the fault; while ``persist`` holds, re-arm is refused
    (``clear_fault`` returns False, as a driver whose cause persists must). ``{"fault": ""}`` removes the cause.
    """

    params_model = FaultInjectingMockParams

    def __init__(self, node, joint_names, params=None, *, period=0.02, grippers=None):
        super().__init__(node, joint_names, params, period=period, grippers=grippers)
        self._cause: str | None = None
        self._sub = None
        self.injected = 0

    def start(self) -> None:
        super().start()
        if self.node is not None and self.params.fault_topic:
            from std_msgs.msg import String

            from lingbot_va_ros.common.qos import RELIABLE

            self._sub = self.node.create_subscription(String, self.params.fault_topic, self._on_fault, RELIABLE)

    def _on_fault(self, msg) -> None:
        try:
            data = json.loads(msg.data)
            text = str(data.get("fault", ""))
            persist = bool(data.get("persist", True))
        except (ValueError, AttributeError):
            text, persist = str(msg.data), True
        with self._fault_lock:
            self._cause = text if (text and persist) else None
        if text:
            self.injected += 1
            self.set_fault(text)

    def clear_fault(self) -> bool:
        with self._fault_lock:
            if self._cause is not None:
                return False
            self._fault = None
        return True

    def stop(self) -> None:
        if self._sub is not None:
            self.node.destroy_subscription(self._sub)
            self._sub = None
        super().stop()

    def describe(self) -> dict[str, str]:
        return {**super().describe(), "driver": "FaultInjectingMockDriver", "faults_injected": str(self.injected)}


# ================================================================================================ command monitor
@dataclass(frozen=True)
class CommandSample:
    recv_mono: float          # time.monotonic() at receipt in the monitor
    recv_ns: int              # time.time_ns() at receipt (same clock as the stamps on one host)
    stamp_ns: int             # header stamp: the instant the executor commanded it
    q: np.ndarray
    v: np.ndarray | None
    names: tuple[str, ...]


@dataclass
class StopMetrics:
    """How the command stream came to rest after a fault at ``fault_ns`` (times in s, distances in rad or m)."""

    fault_ns: int
    speed_at_fault: float           # max |v| over joints of the last command before the fault
    time_to_decel_s: float | None   # fault -> the last command before the deceleration that ends in the hold
    time_to_hold_s: float | None    # fault -> first command of the hold (constant from then on)
    stop_distance: float | None     # max over joints |q_hold - q(fault)|
    decel_distance: float | None    # max over joints |q_hold - q(deceleration start)|
    monotone: bool                  # speed (time-to-stop) never grew from the deceleration start to the hold
    held_ticks: int
    braking_ticks: int | None = None   # commands from the deceleration start to the hold (counted, not timed)
    stop_time_at_decel: float | None = None   # max over joints |v| / stop_deceleration when the deceleration began

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class CommandMonitor:
    """Records every command on ``topic`` (sensor_msgs/JointState) with its receipt time and checks the
    safety invariants the executor promises: finite, inside the position limits, within ``max_step`` of the
    previous command (``k * max_step`` across ``k`` periods when the monitor missed commands)."""

    def __init__(self, probe: Any, limits: Any, period: float, topic: str = topics.COMMAND, qos_profile: Any = None,
                 joint_names: Sequence[str] | None = None, reorder: bool = False):
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import JointState

        self.limits = limits
        self.period = float(period)
        self.topic = topic
        self.joint_names = tuple(joint_names or limits.names)
        self.reorder = reorder
        self._lock = threading.RLock()       # predicates of wait_for may read the samples too
        self._cond = threading.Condition(self._lock)
        self.samples: list[CommandSample] = []
        # A deep reader history: DDS keeps delivering into it while this (test) process is descheduled, so a
        # stall of the monitor never looks like a gap in the executor's stream.
        deep = QoSProfile(depth=2000, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
        probe.node.create_subscription(JointState, topic, self._on, qos_profile or deep)

    def _on(self, msg: Any) -> None:
        names = tuple(msg.name)
        q = np.array(msg.position, dtype=np.float64)
        v = np.array(msg.velocity, dtype=np.float64) if len(msg.velocity) else None
        if self.reorder and names != self.joint_names and set(self.joint_names) <= set(names) and len(names) == q.size:
            order = [names.index(n) for n in self.joint_names]       # e.g. /joint_states in the sim's order
            q = q[order]
            v = v[order] if v is not None and v.size == len(names) else None
            names = self.joint_names
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        s = CommandSample(time.monotonic(), time.time_ns(), stamp, q, v, names)
        with self._cond:
            self.samples.append(s)
            self._cond.notify_all()

    # -- access -------------------------------------------------------------------------------------------
    def window(self, since_ns: int | None = None, until_ns: int | None = None) -> list[CommandSample]:
        with self._lock:
            out = list(self.samples)
        if since_ns is not None:
            out = [s for s in out if s.stamp_ns >= since_ns]
        if until_ns is not None:
            out = [s for s in out if s.stamp_ns <= until_ns]
        return sorted(out, key=lambda s: s.stamp_ns)

    def latest(self) -> CommandSample | None:
        with self._lock:
            return self.samples[-1] if self.samples else None

    def wait_for(self, predicate: Callable[[CommandSample], bool], timeout: float, what: str) -> CommandSample:
        """Block until a command received from now on satisfies ``predicate``."""
        timeout = deadline_s(timeout)
        deadline = time.monotonic() + timeout
        with self._cond:
            start = len(self.samples)
            while True:
                for s in self.samples[start:]:
                    if predicate(s):
                        return s
                start = len(self.samples)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"timed out after {timeout:.1f}s waiting for a command: {what}")
                self._cond.wait(left)

    def current(self, timeout: float = 20.0) -> CommandSample:
        """The command the executor sends now: the first one commanded after this call. ``latest()`` can be seconds
        old when this process lags behind the stream on a loaded host."""
        now_ns = time.time_ns()
        return self.wait_for(lambda s: s.stamp_ns >= now_ns, timeout, "a command stamped after the call")

    def wait_count(self, n: int, timeout: float) -> None:
        timeout = deadline_s(timeout)
        deadline = time.monotonic() + timeout
        with self._cond:
            target = len(self.samples) + n
            while len(self.samples) < target:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"timed out after {timeout:.1f}s: {len(self.samples)}/{target} commands "
                                       f"on {self.topic}")
                self._cond.wait(left)

    def speed(self, s: CommandSample) -> float:
        return float(np.max(np.abs(s.v))) if s.v is not None and s.v.size else 0.0

    # -- invariants ---------------------------------------------------------------------------------------
    def violations(self, samples: Sequence[CommandSample] | None = None, tol: float = 1e-9, check_step: bool = True
                   ) -> list[str]:
        """Every broken invariant (empty = safe): non-finite, outside [lower, upper], over-step, names, repeats.
        ``check_step=False`` for measured states (only finiteness and limits apply)."""
        samples = self.window() if samples is None else sorted(samples, key=lambda s: s.stamp_ns)
        lim = self.limits
        out: list[str] = []
        prev: CommandSample | None = None
        for s in samples:
            where = f"command stamped {s.stamp_ns}"
            if s.names and s.names != self.joint_names:
                out.append(f"{where}: joint names {list(s.names)} != {list(self.joint_names)}")
            if s.q.shape != (len(self.joint_names),):
                out.append(f"{where}: {s.q.size} positions for {len(self.joint_names)} joints")
                prev = None
                continue
            if not np.isfinite(s.q).all():
                out.append(f"{where}: non-finite positions {s.q.tolist()}")
                prev = None
                continue
            if s.v is not None and s.v.size and not np.isfinite(s.v).all():
                out.append(f"{where}: non-finite velocities {s.v.tolist()}")
            low = s.q < lim.lower - tol
            high = s.q > lim.upper + tol
            for j in np.flatnonzero(low | high):
                out.append(f"{where}: {self.joint_names[j]} = {s.q[j]:.6f} outside "
                           f"[{lim.lower[j]:.6f}, {lim.upper[j]:.6f}]")
            if prev is not None and check_step:
                dt = (s.stamp_ns - prev.stamp_ns) / 1e9
                if dt <= 0:
                    out.append(f"{where}: stamp not increasing (previous {prev.stamp_ns})")
                else:
                    k = max(1, int(round(dt / self.period)))
                    step = np.abs(s.q - prev.q)
                    over = step > k * lim.max_step + tol
                    for j in np.flatnonzero(over):
                        out.append(f"{where}: {self.joint_names[j]} stepped {step[j]:.6f} over {k} tick(s), "
                                   f"max_step {lim.max_step[j]:.6f}")
            prev = s
        return out

    def continuity(self, samples: Sequence[CommandSample] | None = None) -> dict[str, float]:
        """Gaps in the stream: by the executor's stamps (what it commanded) and by receipt (what arrived)."""
        samples = self.window() if samples is None else sorted(samples, key=lambda s: s.stamp_ns)
        if len(samples) < 2:
            return {"count": len(samples), "max_stamp_gap_s": 0.0, "max_recv_gap_s": 0.0, "missing_ticks": 0,
                    "span_s": 0.0}
        stamps = np.array([s.stamp_ns for s in samples], dtype=np.int64)
        recv = np.sort(np.array([s.recv_mono for s in samples]))
        gaps = np.diff(stamps) / 1e9
        missing = int(np.sum(np.maximum(np.round(gaps / self.period) - 1, 0)))
        big = np.flatnonzero(gaps > 1.5 * self.period)[:10]
        return {"count": len(samples), "max_stamp_gap_s": float(gaps.max()),
                "max_recv_gap_s": float(np.diff(recv).max()),
                "missing_ticks": missing, "span_s": float((stamps[-1] - stamps[0]) / 1e9),
                "p99_stamp_gap_s": float(np.percentile(gaps, 99)),
                "long_gaps": [(int(stamps[i]), round(float(gaps[i]), 4)) for i in big]}

    # -- stop metrics -------------------------------------------------------------------------------------
    def stop_metrics(self, fault_ns: int, min_hold_ticks: int = 5, samples: Sequence[CommandSample] | None = None
                     ) -> StopMetrics:
        """Time-to-decelerate, time-to-hold and stop distance of the stream after a fault at ``fault_ns``.

        The hold is the first command from which every later command is identical. The deceleration is the
        run of commands right before the hold in which the per-joint time-to-stop (|v| / stop_deceleration)
        strictly falls every tick (by at least half a period: what a controlled stop does)."""
        samples = self.window() if samples is None else sorted(samples, key=lambda s: s.stamp_ns)
        before = [s for s in samples if s.stamp_ns <= fault_ns]
        after = [s for s in samples if s.stamp_ns > fault_ns]
        ref = before[-1] if before else (after[0] if after else None)
        speed0 = self.speed(ref) if ref is not None else 0.0
        none = StopMetrics(fault_ns, speed0, None, None, None, None, False, 0)
        if ref is None or len(after) < min_hold_ticks:
            return none
        qs = np.stack([s.q for s in after])
        h = len(after) - 1
        while h > 0 and np.max(np.abs(qs[h - 1] - qs[-1])) <= 1e-12:
            h -= 1
        held = len(after) - h
        if held < min_hold_ticks:
            return replace(none, held_ticks=held)
        decel = np.asarray(self.limits.stop_deceleration, dtype=np.float64)
        chain = [ref, *after]

        def tts(s: CommandSample) -> float:   # time to stop
            if s.v is None or not s.v.size:
                return 0.0
            return float(np.max(np.abs(s.v) / decel))

        k = h + 1                          # index of the hold in ``chain``
        while k - 1 >= 1 and tts(chain[k - 1]) > tts(chain[k]) + 0.5 * self.period:
            k -= 1
        d = k
        monotone = all(tts(chain[i + 1]) <= tts(chain[i]) + 1e-9 for i in range(d, h + 1))
        hold = chain[h + 1]
        start = chain[d]
        return StopMetrics(
            fault_ns=fault_ns, speed_at_fault=speed0,
            time_to_decel_s=(start.stamp_ns - fault_ns) / 1e9, time_to_hold_s=(hold.stamp_ns - fault_ns) / 1e9,
            stop_distance=float(np.max(np.abs(hold.q - ref.q))), decel_distance=float(np.max(np.abs(hold.q - start.q))),
            monotone=monotone, held_ticks=held, braking_ticks=(h + 1) - d,
            stop_time_at_decel=max(tts(start), tts(ref)))

    def wait_steady(self, min_speed: float, timeout: float, ticks: int = 10, max_change: float = 0.03) -> CommandSample:
        """Wait until the last ``ticks`` commands move at >= ``min_speed`` with per-tick speed changes below
        ``max_change`` (steady tracking, not a seam transient): the moment to inject a fault."""
        def steady(_s: CommandSample) -> bool:
            with self._lock:
                tail = self.samples[-ticks:]
            if len(tail) < ticks:
                return False
            sp = [self.speed(s) for s in tail]
            return min(sp) >= min_speed and max(abs(b - a) for a, b in zip(sp, sp[1:])) <= max_change
        return self.wait_for(steady, timeout, f"steady motion at >= {min_speed:.3f} rad/s")

    def decelerating_after(self, since_ns: int, until_ns: int | None = None) -> bool:
        """Whether the per-joint speed never grows between ``since_ns`` and ``until_ns`` (a controlled stop)."""
        w = [s for s in self.window(since_ns, until_ns) if s.v is not None and s.v.size]
        return all(np.all(np.abs(b.v) <= np.abs(a.v) + 1e-9) for a, b in zip(w, w[1:]))


def braking_problem(m: StopMetrics, limits: Any, period: float) -> str:
    """Why the stop in ``m`` is not a controlled one ("" when it is): it must start, decelerate monotonically to a
    hold, and brake in no more control ticks than the stop deceleration needs from the speed at the fault. Ticks of
    the executor's own stamps, so the check holds at any host speed (how soon the stop begins is a benchmark)."""
    if m.time_to_hold_s is None or m.time_to_decel_s is None:
        return f"no deceleration to a hold after the fault: {m}"
    if not m.monotone:
        return f"the speed grew again during the stop: {m}"
    # counted commands, not elapsed time: a control thread the host made late spreads the same ticks over more time
    ticks = m.braking_ticks if m.braking_ticks is not None else round((m.time_to_hold_s - m.time_to_decel_s) / period)
    if m.stop_time_at_decel is not None:     # per joint |v| / stop_deceleration (the arm may speed up until then)
        stop_time = m.stop_time_at_decel
    else:
        arm = ~limits.is_gripper if limits.is_gripper.any() else np.ones_like(limits.is_gripper)
        stop_time = m.speed_at_fault / float(np.min(limits.stop_deceleration[arm]))
    bound = math.ceil(stop_time / period) + 3
    return "" if ticks <= bound else f"braking took {ticks} ticks, the stop deceleration needs <= {bound}: {m}"


def executor_limits(arm: str, urdf: str | None = None):
    """The executor's JointLimits for an arm YAML (the same code path as the node), and its period."""
    from lingbot_va_ros.executor.arm_config import load_arm_config

    cfg = load_arm_config(arm)
    path = cfg.resolve_urdf(urdf)
    return (cfg.build_limits(str(path)) if path else cfg.build_limits()), 1.0 / cfg.rate_hz


FAULT_DRIVER = "lingbot_va_ros.testing.faults:FaultInjectingMockDriver"


def write_mock_executor_params(directory: str | os.PathLike, *, driver: str = FAULT_DRIVER, rate_hz: float = 50.0,
                               heartbeat_timeout: float = 0.3, driver_params: dict | None = None,
                               executor: dict | None = None) -> tuple[Path, Path]:
    """An arm YAML (the executor tests' bimanual test URDF and limits) and an executor params file.

    Returns (executor params file, arm YAML). ``driver`` is the fault-injecting mock by default; use
    ``sim``/``joint_state_topic`` to take the state from /joint_states instead."""
    import yaml

    from lingbot_va_ros.executor.arm_config import BIMANUAL_JOINTS
    from lingbot_va_ros.executor.testing import make_urdf

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    urdf = d / "arm.urdf"
    urdf.write_text(make_urdf())
    mock = "Mock" in driver or driver == "mock"
    params = dict(driver_params if driver_params is not None else ({"lag_tau": 0.0} if mock else {}))
    arm = {"driver": driver, "driver_params": params, "rate_hz": rate_hz, "joints": list(BIMANUAL_JOINTS),
           "urdf": str(urdf),
           "limits": {"velocity_scale": 0.5,
                      "default": {"position_margin": 0.02, "max_acceleration": 4.0, "max_step": 0.03,
                                  "max_first_jump": 0.2, "tracking_tolerance": 0.5},
                      "joints": {"*gripper*": {"position_margin": 0.0005, "max_acceleration": 0.5,
                                               "max_step": 0.002, "max_first_jump": 0.02}}}}
    arm_path = d / "arm.yaml"
    arm_path.write_text(yaml.safe_dump(arm))
    ros = _deep_merge({"arm": str(arm_path), "actions_per_keyframe": 4, "diagnostics_period": 0.5,
                       "watchdog": {"heartbeat_timeout": heartbeat_timeout, "gap_timeout": 0.1}}, executor or {})
    path = d / "executor.yaml"
    path.write_text(yaml.safe_dump({"lingbot_va_executor": {"ros__parameters": ros}}))
    return path, arm_path


# ================================================================================================ executor state
class ExecutorStateWatch:
    """The executor's latched JSON state (``/lingbot_va/executor_state``) with receipt times."""

    def __init__(self, probe: Any):
        from std_msgs.msg import String

        from lingbot_va_ros.common import qos

        self.inbox = probe.subscribe(String, topics.EXECUTOR_STATE, qos.LATCHED)

    def latest(self) -> dict:
        msgs = self.inbox.messages
        return json.loads(msgs[-1].data) if msgs else {}

    def history(self) -> list[tuple[float, dict]]:
        return [(t, json.loads(m.data)) for m, t in zip(list(self.inbox.messages), list(self.inbox.stamps))]

    def wait(self, predicate: Callable[[dict], bool], timeout: float, what: str) -> dict:
        from lingbot_va_ros.testing.ros_harness import wait_until

        return wait_until(lambda: (s := self.latest()) and predicate(s) and s, timeout, what,
                          on_timeout=lambda: f"last executor state: {json.dumps(self.latest())[:1500]}")

    def first_since(self, t_mono: float, predicate: Callable[[dict], bool]) -> tuple[float, dict] | None:
        for t, s in self.history():
            if t >= t_mono and predicate(s):
                return t, s
        return None

    def counter(self, key: str) -> int:
        return int(self.latest().get("counters", {}).get(key, 0))


# ================================================================================================ executor timing
class ExecutorTiming:
    """The executor's own deadline accounting (``timing_*`` on /diagnostics) with receipt times, so a gap in
    the command stream can be told apart: the executor silently stopped commanding (a bug), or its control
    thread was starved by the host and it knows (late ticks / missed deadlines, reported)."""

    def __init__(self, probe: Any, node_name: str = "lingbot_va_executor"):
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

        self.prefix = f"{node_name}:"
        deep = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
        self._lock = threading.Lock()
        self.samples: list[tuple[float, dict[str, str]]] = []
        probe.node.create_subscription(DiagnosticArray, topics.DIAGNOSTICS, self._on, deep)

    def _on(self, arr: Any) -> None:
        for s in arr.status:
            if s.name.startswith(self.prefix):
                with self._lock:
                    self.samples.append((time.monotonic(), {kv.key: kv.value for kv in s.values}))

    def mark(self) -> tuple[int, float]:
        """(wall ns, monotonic s) now: one end of a window."""
        return time.time_ns(), time.monotonic()

    def _at(self, t_mono: float, after: bool) -> dict[str, str] | None:
        with self._lock:
            samples = list(self.samples)
        if after:
            return next((v for t, v in samples if t >= t_mono), None)
        before = [v for t, v in samples if t <= t_mono]
        return before[-1] if before else None

    def delta(self, start: tuple[int, float], end: tuple[int, float], timeout: float = 10.0) -> dict[str, int]:
        """Late ticks and missed deadlines the executor counted between two marks (waits for the report
        that follows ``end``). Counters restart with the process: a restart inside the window counts all."""
        from lingbot_va_ros.testing.ros_harness import wait_until

        b = self._at(start[1], after=False) or {}
        e = wait_until(lambda: self._at(end[1], after=True), timeout, "an executor diagnostics report")
        out = {}
        for key in ("timing_late_ticks", "timing_missed_deadlines", "timing_ticks"):
            vb, ve = int(b.get(key, 0)), int(e.get(key, 0))
            out[key[7:]] = ve - vb if ve >= vb else ve
        out["lateness_max_ms"] = float(e.get("timing_lateness_max_ms", "nan"))
        return out


def stream_problems(monitor: CommandMonitor, timing: ExecutorTiming, start: tuple[int, float],
                    end: tuple[int, float] | None = None, jitter: float = 0.015) -> tuple[list[str], dict]:
    """Safety invariants plus continuity of the command stream between two marks.

    Continuity: no gap beyond ``period + jitter``, unless the executor itself reported its control thread
    late in the window (host overload; every missing tick must then be accounted for by its late ticks and
    missed deadlines): the executor never silently stops commanding."""
    end = end or timing.mark()
    window = monitor.window(start[0], end[0])
    problems = monitor.violations(window)
    cont = monitor.continuity(window)
    t = timing.delta(start, end)
    report = {**cont, "executor_late_ticks": t["late_ticks"], "executor_missed_deadlines": t["missed_deadlines"],
              "executor_lateness_max_ms": t["lateness_max_ms"]}
    if cont["count"] < 2:
        problems.append(f"no command stream on {monitor.topic} in the window: {report}")
    elif cont["max_stamp_gap_s"] > monitor.period + jitter:
        if t["late_ticks"] == 0 and t["missed_deadlines"] == 0:
            problems.append(f"gap in the command stream the executor did not report: {report}")
        elif cont["missing_ticks"] > t["late_ticks"] + t["missed_deadlines"]:
            problems.append(f"more missing commands than late/missed control ticks: {report}")
    return problems, report


# ================================================================================================ executor rig
class ExecutorRig:
    """The executor node (mock arm with injectable driver faults) in its own process, a command monitor, the
    operator's inputs (e-stop, re-arm, driver fault) and, on demand, a chunk relay and a streamer process.

    ``launch(module, **kwargs)`` starts a process and owns its teardown (the tests' ``launch`` fixture)."""

    STREAMER = "lingbot_va_ros.testing.faults"

    def __init__(self, probe: Any, launch: Callable[..., Any], directory: str | os.PathLike, *,
                 heartbeat_timeout: float = 0.3, relay: bool = False, executor: dict | None = None,
                 driver: str = FAULT_DRIVER, driver_params: dict | None = None):
        from std_msgs.msg import Bool, String
        from std_srvs.srv import Trigger

        from lingbot_va_ros.common import qos

        self.probe, self.launch, self.dir = probe, launch, Path(directory)
        self.heartbeat_timeout = heartbeat_timeout
        self.driver = driver
        params, self.arm_yaml = write_mock_executor_params(self.dir, heartbeat_timeout=heartbeat_timeout,
                                                           executor=executor, driver=driver,
                                                           driver_params=driver_params)
        self.limits, self.period = executor_limits(str(self.arm_yaml))
        self.monitor = CommandMonitor(probe, self.limits, self.period)
        self.state = ExecutorStateWatch(probe)
        self.timing = ExecutorTiming(probe)
        self.t0 = self.timing.mark()
        self.Trigger = Trigger
        self.rearm_client = probe.node.create_client(Trigger, topics.REARM)
        self.estop_pub = probe.publisher(Bool, topics.E_STOP, qos.RELIABLE)
        self.fault_pub = probe.publisher(String, DRIVER_FAULT_TOPIC, qos.RELIABLE)
        self.Bool, self.String = Bool, String
        self.relay = None
        self.relay_proc = None
        self.chunk_topic = topics.ACTION_CHUNK
        if relay:
            self.chunk_topic = f"{FAULTS_NS}/chunk_in"
            self.relay_proc = launch(self.STREAMER, args=relay_args("chunks", {"chunks": ("chunk", self.chunk_topic,
                                                                                          topics.ACTION_CHUNK)}),
                                     name="relay_chunks")
            self.relay = RelayControl(probe, "chunks")
        self.node = launch("lingbot_va_ros.nodes.executor", params_file=params)
        self.streamer = None
        self._streamers = 0

    def ready(self, timeout: float = 60.0) -> "ExecutorRig":
        self.monitor.wait_count(1, timeout)
        self.probe.wait_for_service(self.rearm_client, timeout=timeout)
        self.probe.wait_for_subscribers(self.estop_pub, timeout=timeout)
        if self.driver == FAULT_DRIVER:
            self.probe.wait_for_subscribers(self.fault_pub, timeout=timeout)
        self.state.wait(lambda s: s.get("state") == "holding", timeout, "executor initialised and holding")
        if self.relay is not None:
            self.relay.ready(timeout)
        return self

    def start_streamer(self, episode: str = "stream", **kwargs: Any) -> Any:
        self._streamers += 1
        self.streamer = self.launch(self.STREAMER, args=streamer_args(episode=episode, chunk_topic=self.chunk_topic,
                                                                      period=self.period, **kwargs),
                                    name=f"streamer{self._streamers}")
        return self.streamer

    def peak_speed(self, amplitude: float = 0.3, cycle_s: float = 4.0) -> float:
        return streamer_peak_speed(amplitude, cycle_s)

    def e_stop(self) -> int:
        t = time.time_ns()
        self.estop_pub.publish(self.Bool(data=True))
        return t

    def driver_fault(self, text: str, persist: bool = True) -> int:
        t = time.time_ns()
        self.fault_pub.publish(self.String(data=json.dumps({"fault": text, "persist": persist})))
        return t

    def wait_ingest(self, timeout: float = 60.0) -> None:
        """Camera ingest (and the recorder, if any) listening to ticks, the current ingest process ready."""
        from lingbot_va_ros.testing.ros_harness import wait_until

        n = 2 if self.opts.record else 1
        wait_until(lambda: self.probe.node.count_subscribers(topics.ACTION_TICK) >= n
                   and "camera ingest ready" in self.graph.proc(INGEST).output(), timeout,
                   "camera ingest listening to ticks", on_timeout=self.graph.logs)

    def rearm(self, timeout: float = 10.0) -> tuple[bool, str]:
        resp = self.probe.call(self.rearm_client, self.Trigger.Request(), timeout=timeout)
        return bool(resp.success), str(resp.message)

    def wait_hold(self, fault_ns: int, hold_s: float = 0.4, timeout: float = 10.0) -> StopMetrics:
        """Wait until the stream has been constant for ``hold_s`` after ``fault_ns``; the stop metrics."""
        n = max(3, int(round(hold_s / self.period)))

        def held(_s: CommandSample) -> bool:
            w = self.monitor.window(fault_ns)
            return len(w) > n and all(np.max(np.abs(s.q - w[-1].q)) <= 1e-12 for s in w[-n:])
        self.monitor.wait_for(held, timeout, f"the command stream holding for {hold_s:.1f}s")
        return self.monitor.stop_metrics(fault_ns)

    def stop_bound(self, speed: float, detect_s: float) -> float:
        """Largest acceptable stop distance: ``detect_s`` at ``speed`` plus the braking distance."""
        a = float(np.min(self.limits.stop_deceleration[~self.limits.is_gripper])) if self.limits.is_gripper.any() \
            else float(np.min(self.limits.stop_deceleration))
        return speed * detect_s + speed * speed / (2.0 * a) + 2.0 * float(np.max(self.limits.max_step))


# ================================================================================================ RunEpisode client
class EpisodeHandle:
    def __init__(self, client: "EpisodeClient", goal_handle: Any, feedback: list):
        self.client = client
        self.goal_handle = goal_handle
        self.feedback = feedback
        self._result = goal_handle.get_result_async() if goal_handle is not None and goal_handle.accepted else None

    @property
    def accepted(self) -> bool:
        return self.goal_handle is not None and self.goal_handle.accepted

    def done(self) -> bool:
        return self._result is not None and self._result.done()

    def result(self, timeout: float) -> Any:
        from lingbot_va_ros.testing.ros_harness import wait_until

        if self._result is None:
            raise RuntimeError("goal was not accepted")
        wait_until(self._result.done, timeout, "RunEpisode result")
        return self._result.result().result

    def cancel(self, timeout: float = 10.0) -> None:
        from lingbot_va_ros.testing.ros_harness import wait_until

        if self.goal_handle is not None and not self.done():
            fut = self.goal_handle.cancel_goal_async()
            wait_until(fut.done, timeout, "cancel response")


class EpisodeClient:
    """RunEpisode goals from the test probe (feedback collected, results with deadlines)."""

    def __init__(self, probe: Any, name: str = topics.RUN_EPISODE):
        from rclpy.action import ActionClient

        from lingbot_va_ros.action import RunEpisode

        self.RunEpisode = RunEpisode
        self.probe = probe
        self.client = ActionClient(probe.node, RunEpisode, name)

    def wait_server(self, timeout: float, alive: Callable[[], None] | None = None) -> None:
        timeout = deadline_s(timeout)
        deadline = time.monotonic() + timeout
        while not self.client.wait_for_server(timeout_sec=0.5):
            if alive is not None:
                alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"RunEpisode server not available within {timeout:.0f}s")

    def send(self, prompt: str, max_chunks: int = 0, max_duration_s: float = 0.0, episode_id: str = "",
             timeout: float = 30.0) -> EpisodeHandle:
        from lingbot_va_ros.testing.ros_harness import wait_until

        feedback: list = []
        goal = self.RunEpisode.Goal(prompt=prompt, max_chunks=max_chunks, max_duration_s=max_duration_s,
                                    episode_id=episode_id)
        fut = self.client.send_goal_async(goal, feedback_callback=lambda fb: feedback.append(fb.feedback))
        wait_until(fut.done, timeout, "goal response")
        return EpisodeHandle(self, fut.result(), feedback)

    def close(self) -> None:
        self.client.destroy()


# ================================================================================================ relay control
class RelayControl:
    """Test-side handle of a relay process: change its faults and wait for the acknowledgement."""

    def __init__(self, probe: Any, relay: str):
        from std_msgs.msg import String

        from lingbot_va_ros.common import qos

        self.relay = relay
        self.String = String
        self.pub = probe.publisher(String, control_topic(relay), qos.RELIABLE)
        self.status_inbox = probe.subscribe(String, status_topic(relay), qos.LATCHED)
        self.probe = probe
        self._ids = itertools.count(1)

    def status(self) -> dict:
        msgs = self.status_inbox.messages
        return json.loads(msgs[-1].data) if msgs else {}

    def ready(self, timeout: float = 30.0) -> None:
        from lingbot_va_ros.testing.ros_harness import wait_until

        self.probe.wait_for_subscribers(self.pub, timeout=timeout)
        wait_until(lambda: self.status(), timeout, f"status of relay {self.relay}")

    def set(self, timeout: float = 10.0, **pairs: dict) -> dict:
        """``set(chunks={"drop": 0.3}, cam_high={"mode": "stall"})``; unspecified keys reset to defaults."""
        from lingbot_va_ros.testing.ros_harness import wait_until

        req = next(self._ids)
        self.pub.publish(self.String(data=json.dumps({"id": req, "pairs": pairs})))
        return wait_until(lambda: (s := self.status()).get("ack", 0) >= req and s, timeout,
                          f"relay {self.relay} acknowledging request {req}",
                          on_timeout=lambda: json.dumps(self.status()))

    def reset(self, timeout: float = 10.0) -> dict:
        """Every pair back to plain forwarding."""
        return self.set(timeout, **{p: {} for p in self.status().get("pairs", {})})

    def wait_count(self, pair: str, key: str, at_least: int, timeout: float = 10.0) -> dict:
        """Wait for a counter of the relay (its status is refreshed every second and on control)."""
        from lingbot_va_ros.testing.ros_harness import wait_until

        return wait_until(lambda: (c := self.counts(pair)).get(key, 0) >= at_least and c, timeout,
                          f"relay {self.relay}: {pair}.{key} >= {at_least}", on_timeout=lambda: str(self.counts(pair)))

    def counts(self, pair: str) -> dict:
        return self.status().get("pairs", {}).get(pair, {})


# ================================================================================================ relay process
@dataclass
class RelayFault:
    mode: str = "pass"            # pass | stall (drop everything)
    drop: float = 0.0             # share of messages dropped at random
    drop_next: int = 0            # drop exactly the next N messages
    delay_s: float = 0.0          # fixed delay
    jitter_s: float = 0.0         # + uniform [0, jitter) (delays with jitter reorder messages)
    duplicate: float = 0.0        # share of messages sent twice
    stamp_offset_s: float = 0.0   # added to header.stamp (negative: stamps go backwards)

    @classmethod
    def from_dict(cls, data: dict) -> "RelayFault":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"unknown relay fault keys {unknown}")
        f = cls(**known)
        if f.mode not in ("pass", "stall"):
            raise ValueError(f"relay mode '{f.mode}' (pass | stall)")
        return f


@dataclass
class _Pair:
    name: str
    type_name: str
    msg_type: Any
    src: str
    dst: str
    fault: RelayFault = field(default_factory=RelayFault)
    pub: Any = None
    counts: dict[str, int] = field(default_factory=lambda: {"received": 0, "forwarded": 0, "dropped": 0,
                                                             "duplicated": 0, "delayed": 0, "restamped": 0})


_RELAY_TYPES = {
    "chunk": ("lingbot_va_ros.msg", "ActionChunk", "RELIABLE_DEEP"),
    "observation": ("lingbot_va_ros.msg", "Observation", "RELIABLE_DEEP"),
    "executed": ("lingbot_va_ros.msg", "ExecutedActions", "RELIABLE_DEEP"),
    "tick": ("lingbot_va_ros.msg", "ActionTick", "RELIABLE_DEEP"),
    "image": ("sensor_msgs.msg", "Image", "SENSOR_DATA"),
    "compressed": ("sensor_msgs.msg", "CompressedImage", "SENSOR_DATA"),
    "joint_state": ("sensor_msgs.msg", "JointState", "SENSOR_DATA"),
    "heartbeat": ("std_msgs.msg", "Header", "RELIABLE"),
}


def _relay_main(args: argparse.Namespace) -> int:
    import importlib

    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.serialization import deserialize_message
    from std_msgs.msg import String

    from lingbot_va_ros.common import qos

    rclpy.init(args=None)
    node = rclpy.create_node(f"fault_relay_{args.name}")
    rng = random.Random(args.seed)
    lock = threading.Lock()
    pairs: dict[str, _Pair] = {}
    for spec in args.pair:
        name, rest = spec.split("=", 1)
        kind, src, dst = rest.split(":", 2)
        module, cls, profile = _RELAY_TYPES[kind]
        pairs[name] = _Pair(name, kind, getattr(importlib.import_module(module), cls), src, dst)
        pairs[name].pub = node.create_publisher(pairs[name].msg_type, dst, getattr(qos, profile))
    heap: list[tuple[float, int, Any, Any]] = []
    seq = itertools.count()
    wake = threading.Condition(lock)
    stop = threading.Event()
    state = {"ack": 0, "error": ""}
    status_pub = node.create_publisher(String, status_topic(args.name), qos.LATCHED)

    def publish_status() -> None:
        with lock:
            data = {"relay": args.name, "ack": state["ack"], "error": state["error"],
                    "pairs": {n: {**p.counts, "fault": asdict(p.fault), "src": p.src, "dst": p.dst,
                                  "subscribers": p.pub.get_subscription_count()} for n, p in pairs.items()}}
        for n, p in pairs.items():   # who this relay's participant has discovered on each output (= matched)
            try:
                data["pairs"][n]["subscriber_endpoints"] = sorted(
                    f"{i.node_name}:{bytes(i.endpoint_gid).hex()[-24:]}"
                    for i in node.get_subscriptions_info_by_topic(p.dst))
            except Exception:  # noqa: BLE001 - shutdown race
                pass
        status_pub.publish(String(data=json.dumps(data)))

    def send(pair: _Pair, payload: Any) -> None:
        pair.pub.publish(payload)
        with lock:
            pair.counts["forwarded"] += 1

    def on_message(pair: _Pair, raw: bytes) -> None:
        with lock:
            f = pair.fault
            pair.counts["received"] += 1
            if f.mode == "stall":
                pair.counts["dropped"] += 1
                return
            if f.drop_next > 0:
                f.drop_next -= 1
                pair.counts["dropped"] += 1
                return
            if f.drop and rng.random() < f.drop:
                pair.counts["dropped"] += 1
                return
            copies = 2 if f.duplicate and rng.random() < f.duplicate else 1
            delays = [f.delay_s + (rng.random() * f.jitter_s if f.jitter_s else 0.0) for _ in range(copies)]
            offset = f.stamp_offset_s
            if copies > 1:
                pair.counts["duplicated"] += 1
        payload: Any = raw
        if offset:
            msg = deserialize_message(raw, pair.msg_type)
            stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec + int(offset * 1e9)
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(max(stamp, 0), 1_000_000_000)
            payload = msg
            with lock:
                pair.counts["restamped"] += 1
        for d in delays:
            if d <= 0:
                send(pair, payload)
            else:
                with wake:
                    pair.counts["delayed"] += 1
                    heapq.heappush(heap, (time.monotonic() + d, next(seq), pair, payload))
                    wake.notify()

    def delayer() -> None:
        while not stop.is_set():
            with wake:
                while not heap and not stop.is_set():
                    wake.wait(0.1)
                if stop.is_set():
                    return
                due = heap[0][0] - time.monotonic()
                if due > 0:
                    wake.wait(due)
                    continue
                _, _, pair, payload = heapq.heappop(heap)
            try:
                send(pair, payload)
            except Exception:  # noqa: BLE001 - shutdown race
                return

    def on_control(msg: Any) -> None:
        req, error = 0, ""
        try:
            data = json.loads(msg.data)
            req = int(data.get("id", 0))
            new = {n: RelayFault.from_dict(v or {}) for n, v in data.get("pairs", {}).items()}
            unknown = sorted(set(new) - set(pairs))
            if unknown:
                raise ValueError(f"unknown pairs {unknown} (known: {sorted(pairs)})")
            with lock:
                for n, f in new.items():
                    pairs[n].fault = f
        except (ValueError, TypeError, AttributeError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        with lock:
            state["ack"], state["error"] = req, error
        publish_status()

    for p in pairs.values():
        module, cls, profile = _RELAY_TYPES[p.type_name]
        node.create_subscription(p.msg_type, p.src, lambda raw, p=p: on_message(p, raw), getattr(qos, profile),
                                 raw=True)
    node.create_subscription(String, control_topic(args.name), on_control, qos.RELIABLE)
    node.create_timer(1.0, publish_status)
    th = threading.Thread(target=delayer, daemon=True, name="relay_delayer")
    th.start()
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    publish_status()
    deadline = time.monotonic() + min(args.max_seconds, MAX_TOOL_SECONDS)
    try:
        while rclpy.ok() and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        stop.set()
        with wake:
            wake.notify_all()
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


# ================================================================================================ streamer process
def sinusoid_rows(q0: np.ndarray, moving: np.ndarray, start: int, rows: int, period: float, amplitude: float,
                  cycle_s: float, direction: np.ndarray | float = 1.0) -> np.ndarray:
    """Rows ``start .. start+rows-1`` of q(i) = q0 + d A (1 - cos(2 pi (i+1) dt / T)) on the moving joints
    (starts at rest at q0; peak speed A 2 pi / T; ``d`` = +-1 per joint, the side it swings to)."""
    idx = np.arange(start, start + rows, dtype=np.float64)
    phase = 2.0 * math.pi * (idx + 1.0) * period / cycle_s
    out = np.repeat(q0[None, :], rows, axis=0)
    sign = np.broadcast_to(np.asarray(direction, dtype=np.float64), q0.shape)
    swing = (amplitude * (1.0 - np.cos(phase)))[:, None] * sign[None, :]
    out[:, moving] += swing[:, moving]
    return out


def _streamer_main(args: argparse.Namespace) -> int:
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Header, String

    from lingbot_va_ros.common import qos
    from lingbot_va_ros.common.conversions import pack_matrix, seconds_to_duration
    from lingbot_va_ros.msg import ActionChunk, ActionTick

    rclpy.init(args=None)
    node = rclpy.create_node("fault_streamer")
    log = node.get_logger()
    chunk_pub = node.create_publisher(ActionChunk, args.chunk_topic, qos.RELIABLE_DEEP)
    hb_pub = node.create_publisher(Header, args.heartbeat_topic, qos.RELIABLE)
    lock = threading.Lock()
    st: dict[str, Any] = {"q0": None, "names": None, "progress": 0, "progress_t": time.monotonic(), "state": "",
                          "sent_until": 0, "chunk_index": 0, "sent": 0}

    def on_command(msg: Any) -> None:
        with lock:
            if st["q0"] is None and len(msg.position):
                st["q0"] = np.array(msg.position, dtype=np.float64)
                st["names"] = list(msg.name)

    def advance(index: int) -> None:
        if index > st["progress"]:
            st["progress"], st["progress_t"] = index, time.monotonic()

    def on_tick(msg: Any) -> None:
        if msg.episode_id == args.episode:
            with lock:
                advance(int(msg.action_index) + 1)

    def on_state(msg: Any) -> None:
        try:
            s = json.loads(msg.data)
        except ValueError:
            return
        with lock:
            st["state"] = s.get("state", "")
            if s.get("episode") == args.episode:
                advance(int(s.get("next_index", 0)))
                st["next_index"] = int(s.get("next_index", 0))

    node.create_subscription(JointState, topics.COMMAND, on_command, qos.COMMAND)
    node.create_subscription(ActionTick, topics.ACTION_TICK, on_tick, qos.RELIABLE_DEEP)
    node.create_subscription(String, topics.EXECUTOR_STATE, on_state, qos.LATCHED)

    def beat() -> None:
        msg = Header(frame_id=args.episode)
        msg.stamp = node.get_clock().now().to_msg()
        hb_pub.publish(msg)

    def send_chunk(start: int) -> None:
        q0, names = st["q0"], st["names"]
        moving = np.array(["gripper" not in n for n in names])
        # swing towards the middle of the range (0 rad), so restarted streamers never walk off the limits
        rows = sinusoid_rows(q0, moving, start, args.rows, args.period, args.amplitude, args.cycle_s,
                             np.where(q0 > 0.0, -1.0, 1.0))
        msg = ActionChunk(episode_id=args.episode, chunk_index=st["chunk_index"], start_index=start,
                          action_space="joint", channel_names=names, mode="sync", observation_action_index=-1)
        msg.header.stamp = node.get_clock().now().to_msg()
        msg.control_period = seconds_to_duration(args.period)
        msg.shape, msg.actions = pack_matrix(rows)
        chunk_pub.publish(msg)
        st["chunk_index"] += 1
        st["sent_until"] = start + args.rows
        st["sent"] += 1

    def plan() -> None:
        with lock:
            if st["q0"] is None or chunk_pub.get_subscription_count() == 0:
                return
            if st["sent"] >= args.max_chunks:
                return
            p = st["progress"]
            now = time.monotonic()
            stalled = now - st["progress_t"] > args.replan_s and now - st.get("last_send", 0.0) > args.replan_s
            if st["sent"] == 0:
                send_chunk(0)
            elif stalled and st["state"] in ("holding", "stopping", "estop", "fault"):
                start = max(st.get("next_index", p), p)
                send_chunk(start)          # lost chunk / cut plan / latched stop: re-plan from where the arm is
            elif st["sent_until"] - p < args.lookahead * args.rows:
                send_chunk(st["sent_until"])
            else:
                return
            st["last_send"] = now

    node.create_timer(1.0 / args.heartbeat_hz, beat)
    node.create_timer(0.02, plan)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    log.info(f"streaming episode '{args.episode}' on {args.chunk_topic}: {args.rows}-row chunks, lookahead "
             f"{args.lookahead}, amplitude {args.amplitude} rad, cycle {args.cycle_s} s")
    deadline = time.monotonic() + min(args.max_seconds, MAX_TOOL_SECONDS)
    try:
        while rclpy.ok() and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


def relay_args(name: str, pairs: dict[str, tuple[str, str, str]], seed: int = 0,
               max_seconds: float = 900.0) -> list[str]:
    """argv (after the module) of a relay: ``pairs`` = {pair: (kind, source topic, destination topic)}."""
    out = ["relay", "--name", name, "--seed", str(seed), "--max-seconds", str(max_seconds)]
    for pair, (kind, src, dst) in pairs.items():
        out += ["--pair", f"{pair}={kind}:{src}:{dst}"]
    return out


def streamer_args(episode: str = "stream", rows: int = 25, lookahead: int = 2, period: float = 0.02,
                  amplitude: float = 0.3, cycle_s: float = 4.0, chunk_topic: str = topics.ACTION_CHUNK,
                  max_seconds: float = 300.0, replan_s: float = 0.3, max_chunks: int = 100000) -> list[str]:
    return ["streamer", "--episode", episode, "--rows", str(rows), "--lookahead", str(lookahead), "--period",
            str(period), "--amplitude", str(amplitude), "--cycle-s", str(cycle_s), "--chunk-topic", chunk_topic,
            "--max-seconds", str(max_seconds), "--replan-s", str(replan_s), "--max-chunks", str(max_chunks)]


def streamer_peak_speed(amplitude: float = 0.3, cycle_s: float = 4.0) -> float:
    return amplitude * 2.0 * math.pi / cycle_s


# ================================================================================================ graphs
@contextmanager
def free_ros_domain():
    """A ROS_DOMAIN_ID held for the ``with`` block, with the same host-wide flock scheme as test/conftest.py
    (so module-scoped graphs, benchmarks and everyone's test runs never share a domain)."""
    import fcntl
    import tempfile

    lock_dir = Path(tempfile.gettempdir()) / "lingbot_va_ros_test_domains"
    lock_dir.mkdir(exist_ok=True)
    first = (os.getpid() * 7 + int(time.time())) % 101
    for k in range(101):
        domain = 1 + (first + k) % 101
        handle = open(lock_dir / f"{domain}.lock", "w")  # noqa: SIM115 - held for the block
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        try:
            yield domain
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()
        return
    raise RuntimeError("every ROS domain 1..101 is in use on this host")



def _deep_merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


class FaultGraph:
    """The bringup's node set (``build_graph``), started as processes like the standalone runner does, plus
    per-node remaps and parameter overrides (so relays can sit between nodes) and per-node restart."""

    def __init__(self, opts: Any, env: dict[str, str], log_dir: str | os.PathLike, *,
                 remaps: dict[str, Sequence[tuple[str, str]]] | None = None,
                 overrides: dict[str, dict] | None = None, only: Iterable[str] | None = None):
        from lingbot_va_ros.bringup.graph import build_graph

        self.env = env
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.remaps = {k: list(v) for k, v in (remaps or {}).items()}
        specs = build_graph(opts)
        keep = set(only) if only is not None else None
        self.specs = {s.name: replace(s, overrides=_deep_merge(s.overrides, (overrides or {}).get(s.name, {})))
                      for s in specs if keep is None or s.name in keep}
        self.procs: dict[str, Any] = {}
        self._starts: dict[str, int] = {}

    def _process(self, name: str):
        from lingbot_va_ros.bringup.runner import write_params_file
        from lingbot_va_ros.testing.ros_harness import NodeProcess

        spec = self.specs[name]
        n = self._starts.get(name, 0)
        self._starts[name] = n + 1
        files = [*spec.params_files, str(write_params_file(spec, self.log_dir))]
        ros_args = ["-r", f"__node:={spec.name}"]
        for src, dst in [*spec.remappings, *self.remaps.get(name, [])]:
            ros_args += ["-r", f"{src}:={dst}"]
        for f in files:
            ros_args += ["--params-file", f]
        return NodeProcess.module(spec.module, self.env, self.log_dir, ros_args=ros_args,
                                  name=spec.name if n == 0 else f"{spec.name}.{n}")

    def start(self, names: Iterable[str] | None = None) -> "FaultGraph":
        for name in (names or list(self.specs)):
            self.procs[name] = self._process(name).start()
        return self

    def restart(self, name: str) -> Any:
        old = self.procs.get(name)
        if old is not None:
            old.stop()
        self.procs[name] = self._process(name).start()
        return self.procs[name]

    def proc(self, name: str) -> Any:
        return self.procs[name]

    def pids(self) -> dict[str, int]:
        return {n: p.pid for n, p in self.procs.items() if p.alive()}

    def check_alive(self, names: Iterable[str] | None = None) -> None:
        for name in (names or list(self.procs)):
            p = self.procs[name]
            if not p.alive():
                tail = "\n".join(p.output().splitlines()[-20:])
                raise RuntimeError(f"node {name} exited with code {p.proc.returncode}; last log lines:\n{tail}")

    def logs(self, max_chars: int = 3000) -> str:
        return "\n".join(f"--- {n}\n{p.output()[-max_chars:]}" for n, p in self.procs.items())

    def stop(self) -> list[str]:
        for p in reversed(list(self.procs.values())):
            p.stop()
        return [n for n, p in self.procs.items() if p.alive()]


def demo_options(checkpoint: str | os.PathLike, mode: str = "sync", record: bool = False,
                 recording_dir: str = "", display_rate_hz: float = 0.0) -> Any:
    """The standalone demo's graph (tiny random checkpoint, sim arm with the random-policy arm profile)."""
    from lingbot_va_ros.bringup.graph import BringupOptions

    return BringupOptions(arm="sim_random_policy", embodiment="demo_sim", checkpoint=str(checkpoint), device="cpu",
                          mode=mode, record=record, recording_dir=recording_dir, use_sim=True, torch_threads=1,
                          live_view=display_rate_hz > 0, display_rate_hz=display_rate_hz)


def tiny_checkpoint(directory: str | os.PathLike, embodiment: str = "demo_sim") -> Path:
    from lingbot_va_ros.bringup.runner import ensure_checkpoint

    return ensure_checkpoint(Path(directory), embodiment)


@dataclass
class ImageDigest:
    height: int
    width: int
    encoding: str
    nbytes: int


@dataclass
class ObservationDigest:
    """What the audit checks of an Observation, without the pixels."""
    episode_id: str
    action_index: int
    header: Any
    camera_names: list
    capture_stamps: list
    images: list


def _observation_digest(msg: Any) -> ObservationDigest:
    return ObservationDigest(msg.episode_id, msg.action_index, msg.header, list(msg.camera_names),
                             list(msg.capture_stamps),
                             [ImageDigest(i.height, i.width, i.encoding, len(i.data)) for i in msg.images])


class ObservationAudit:
    """Checks that no chunk is computed from stale or mismatched images: every Observation the inference
    receives has the model's cameras in order, model-sized RGB, and capture stamps within ``max_age`` of its
    tick; every chunk the executor receives names such an Observation (episode, stamp, action index)."""

    def __init__(self, probe: Any, cameras: Sequence[tuple[str, int, int]], max_age: float,
                 latency_offset: float = 0.0):
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

        from lingbot_va_ros.msg import ActionChunk, Observation

        deep = QoSProfile(depth=500, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
        self.cameras = list(cameras)
        self.max_age, self.latency_offset = max_age, latency_offset
        self.observations = probe.subscribe(Observation, topics.OBSERVATION, deep, keep=_observation_digest)
        self.chunks = probe.subscribe(ActionChunk, topics.ACTION_CHUNK, deep)

    def observation_problems(self, obs: Any) -> list[str]:
        out = []
        where = f"observation {obs.episode_id}#{obs.action_index}"
        names = [c[0] for c in self.cameras]
        if list(obs.camera_names) != names:
            out.append(f"{where}: cameras {list(obs.camera_names)} != {names}")
        if len(obs.images) != len(names) or len(obs.capture_stamps) != len(names):
            out.append(f"{where}: {len(obs.images)} images / {len(obs.capture_stamps)} stamps for {len(names)} cameras")
            return out
        tick_ns = obs.header.stamp.sec * 1_000_000_000 + obs.header.stamp.nanosec
        for (name, h, w), img, cap in zip(self.cameras, obs.images, obs.capture_stamps):
            if (img.height, img.width, img.encoding) != (h, w, "rgb8") or img.nbytes != h * w * 3:
                out.append(f"{where}: {name} image {img.height}x{img.width} {img.encoding}, expected {h}x{w} rgb8")
            age = (tick_ns - int(self.latency_offset * 1e9) - (cap.sec * 1_000_000_000 + cap.nanosec)) / 1e9
            if abs(age) > self.max_age + 1e-9:
                out.append(f"{where}: {name} frame {age * 1e3:.1f} ms from its tick "
                           f"(max_age {self.max_age * 1e3:.0f} ms)")
        return out

    def problems(self) -> list[str]:
        out: list[str] = []
        seen = {}
        for obs in list(self.observations.messages):
            out += self.observation_problems(obs)
            stamp = obs.header.stamp.sec * 1_000_000_000 + obs.header.stamp.nanosec
            seen[(obs.episode_id, stamp)] = obs
        for c in list(self.chunks.messages):
            stamp = c.observation_stamp.sec * 1_000_000_000 + c.observation_stamp.nanosec
            obs = seen.get((c.episode_id, stamp))
            if obs is None:
                out.append(f"chunk {c.episode_id}#{c.chunk_index}: computed from an observation stamped {stamp} that "
                           "never reached the inference node")
            elif obs.action_index != c.observation_action_index:
                out.append(f"chunk {c.episode_id}#{c.chunk_index}: observation_action_index "
                           f"{c.observation_action_index} != the observation's {obs.action_index}")
        return out

    def chunks_of(self, episode: str) -> list[Any]:
        return [c for c in list(self.chunks.messages) if c.episode_id == episode]


def diagnostic_statuses(inbox: Any, prefix: str = "") -> dict[str, Any]:
    """The latest DiagnosticStatus per name (optionally only names starting with ``prefix``)."""
    latest: dict[str, Any] = {}
    for arr in list(inbox.messages):
        for s in arr.status:
            if s.name.startswith(prefix):
                latest[s.name] = s
    return latest


def diagnostic_values(status: Any) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


CAMERAS = ("cam_high", "cam_left_wrist", "cam_right_wrist")
EXECUTOR, INFERENCE, INGEST, SIM, RECORDER = ("lingbot_va_executor", "lingbot_va_inference", "lingbot_va_camera_ingest",
                                              "sim_arm", "lingbot_va_recorder")


class ClosedLoop:
    """The demo's closed loop (sim arm, camera ingest, executor, inference on a tiny random checkpoint,
    optionally the recorder) as separate processes, with a relay process on the chunk, observation and camera
    links (``relays=True``), and the probe-side instruments: command monitors (executor echo, what reaches the
    sim, measured joint states), executor state, an observation/chunk audit, /diagnostics, a RunEpisode client.
    """

    def __init__(self, run_dir: str | os.PathLike, domain_id: int, *, mode: str = "sync", record: bool = False,
                 relays: bool = True, inference: dict | None = None, display_rate_hz: float = 0.0,
                 checkpoint: str | os.PathLike | None = None, executor: dict | None = None,
                 recorder: dict | None = None, camera_max_age: float | None = None):
        from lingbot_va_ros.model.embodiment import load_embodiment
        from lingbot_va_ros.testing.ros_harness import apply_ros_env_to_this_process, ros_env

        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.domain_id = domain_id
        apply_ros_env_to_this_process(domain_id, str(self.run_dir / "ros"))
        self.env = ros_env(domain_id, self.run_dir / "ros")
        ckpt = tiny_checkpoint(checkpoint or self.run_dir / "tiny_checkpoint")
        self.recording_dir = self.run_dir / "recordings"
        self.opts = demo_options(ckpt, mode=mode, record=record, recording_dir=str(self.recording_dir),
                                 display_rate_hz=display_rate_hz)
        self.embodiment = load_embodiment(self.opts.embodiment)
        self.period = 1.0 / float(self.embodiment.control_hz)
        self.relays = relays
        remaps: dict[str, list[tuple[str, str]]] = {}
        if relays:
            remaps[INFERENCE] = [(topics.ACTION_CHUNK, f"{FAULTS_NS}/chunk_in")]
            remaps[INGEST] = [(topics.OBSERVATION, f"{FAULTS_NS}/obs_in")] + [
                (f"/sim_arm/{c}/image_raw", f"{FAULTS_NS}/{c}/image_raw") for c in CAMERAS]
        inf = _deep_merge({"display": {"enabled": display_rate_hz > 0}}, inference or {})
        self.camera_max_age = camera_max_age or 0.2          # config/camera_ingest_sim.yaml
        ingest = {"cameras": {c: {"max_age": camera_max_age} for c in CAMERAS}} if camera_max_age else {}
        self.graph = FaultGraph(self.opts, self.env, self.run_dir / "logs", remaps=remaps,
                                overrides={INFERENCE: inf, EXECUTOR: executor or {}, RECORDER: recorder or {},
                                           INGEST: ingest})
        self.relay_proc = None
        self.probe = None
        self.recorder_status = None

    def start(self, timeout: float = 180.0) -> "ClosedLoop":
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

        from lingbot_va_ros.common import qos
        from lingbot_va_ros.testing.ros_harness import NodeProcess, RosProbe

        if self.relays:
            pairs = {"chunks": ("chunk", f"{FAULTS_NS}/chunk_in", topics.ACTION_CHUNK),
                     "observations": ("observation", f"{FAULTS_NS}/obs_in", topics.OBSERVATION),
                     **{c: ("image", f"/sim_arm/{c}/image_raw", f"{FAULTS_NS}/{c}/image_raw") for c in CAMERAS}}
            self.relay_proc = NodeProcess.module("lingbot_va_ros.testing.faults", self.env, self.run_dir / "logs",
                                                 args=relay_args("links", pairs, max_seconds=MAX_TOOL_SECONDS),
                                                 name="relay_links").start()
        self.graph.start()
        self.probe = p = RosProbe(self.domain_id, "faults_probe")
        self.limits, _ = executor_limits(self.opts.arm)
        self.timing = ExecutorTiming(p)
        self.commands = CommandMonitor(p, self.limits, self.period)
        self.driver_commands = CommandMonitor(p, self.limits, self.period, topic="/sim_arm/joint_command")
        self.joint_states = CommandMonitor(p, self.limits, self.period, topic=topics.JOINT_STATES,
                                           qos_profile=qos.SENSOR_DATA, reorder=True)
        self.state = ExecutorStateWatch(p)
        cams = [(c, int(self.embodiment.image_sizes[c][0]), int(self.embodiment.image_sizes[c][1]))
                for c in self.embodiment.camera_names]
        self.audit = ObservationAudit(p, cams, max_age=self.camera_max_age)
        deep = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
        self.diagnostics = p.subscribe(DiagnosticArray, topics.DIAGNOSTICS, deep)
        self.episodes = EpisodeClient(p)
        self.links = RelayControl(p, "links") if self.relays else None
        self.recorder_status = None
        if self.opts.record:
            from std_msgs.msg import String

            from lingbot_va_ros.recording.control import STATUS_TOPIC

            self.recorder_status = p.subscribe(String, STATUS_TOPIC, qos.LATCHED)
        from std_msgs.msg import Bool
        from std_srvs.srv import Trigger

        self.Bool, self.Trigger = Bool, Trigger
        self.estop_pub = p.publisher(Bool, topics.E_STOP, qos.RELIABLE)
        self.rearm_client = p.node.create_client(Trigger, topics.REARM)
        self.episodes.wait_server(timeout, alive=self.graph.check_alive)
        if self.links is not None:
            self.links.ready(timeout)
        self.wait_executor(timeout)
        self.wait_ingest(timeout)
        self.heartbeat_timeout = float(self.executor_param("watchdog.heartbeat_timeout", 0.3))
        return self

    def recorder_state(self) -> str:
        msgs = self.recorder_status.messages if self.recorder_status is not None else []
        return json.loads(msgs[-1].data).get("state", "") if msgs else ""

    def executor_chunk_endpoints(self) -> set[str]:
        """The executor chunk subscriptions the chunk publisher's side has discovered (a SIGKILLed executor's
        stays listed until its DDS lease expires, so a restart is recognised by a new endpoint)."""
        if self.links is not None:
            found = self.links.counts("chunks").get("subscriber_endpoints", [])
        else:
            found = [f"{i.node_name}:{bytes(i.endpoint_gid).hex()[-24:]}"
                     for i in self.probe.node.get_subscriptions_info_by_topic(topics.ACTION_CHUNK)]
        return {e for e in found if e.startswith(EXECUTOR + ":")}

    def wait_executor(self, timeout: float = 60.0, previous: set[str] | None = None) -> None:
        """The (re)started executor commanding, serving re-arm, hearing the heartbeat, and matched with the chunk
        publisher (a chunk published before that match is lost: volatile durability). ``previous``: the
        executor endpoints before a restart (:meth:`executor_chunk_endpoints`)."""
        from lingbot_va_ros.testing.ros_harness import wait_until

        self.commands.wait_count(1, timeout)
        self.probe.wait_for_service(self.rearm_client, timeout=timeout)
        self.probe.wait_for_subscribers(self.estop_pub, timeout=timeout)
        old = previous or set()
        wait_until(lambda: self.executor_chunk_endpoints() - old, timeout,
                   "the executor's chunk subscription discovered by the chunk publisher's side", poll=0.1,
                   on_timeout=lambda: str(self.links.counts("chunks") if self.links else ""))
        self.state.wait(lambda s: s.get("heartbeat_age_s") is not None, timeout, "the executor hearing heartbeats")

    def executor_param(self, dotted: str, default: Any = None) -> Any:
        """The executor's effective parameter: its params files in order, then this graph's overrides."""
        import yaml

        spec = self.graph.specs[EXECUTOR]
        value = default
        for f in spec.params_files:
            doc = yaml.safe_load(Path(f).read_text()) or {}
            for key, node in doc.items():
                if key.split("/")[-1] == EXECUTOR:
                    v = node.get("ros__parameters", {})
                    for part in dotted.split("."):
                        v = v.get(part) if isinstance(v, dict) else None
                    if v is not None:
                        value = v
        v: Any = spec.overrides
        for part in dotted.split("."):
            v = v.get(part) if isinstance(v, dict) else None
        return value if v is None else v

    def wait_ingest(self, timeout: float = 60.0) -> None:
        """Camera ingest (and the recorder, if any) listening to ticks, the current ingest process ready."""
        from lingbot_va_ros.testing.ros_harness import wait_until

        n = 2 if self.opts.record else 1
        wait_until(lambda: self.probe.node.count_subscribers(topics.ACTION_TICK) >= n
                   and "camera ingest ready" in self.graph.proc(INGEST).output(), timeout,
                   "camera ingest listening to ticks", on_timeout=self.graph.logs)

    def rearm(self, timeout: float = 10.0) -> tuple[bool, str]:
        resp = self.probe.call(self.rearm_client, self.Trigger.Request(), timeout=timeout)
        return bool(resp.success), str(resp.message)

    def e_stop(self) -> int:
        t = time.time_ns()
        self.estop_pub.publish(self.Bool(data=True))
        return t

    def ingest_status(self, camera: str = "key frames") -> dict[str, str] | None:
        s = diagnostic_statuses(self.diagnostics, "camera_ingest").get(f"camera_ingest: {camera}")
        return None if s is None else {"level": str(int.from_bytes(s.level, "little")), "message": s.message,
                                       **diagnostic_values(s)}

    def executor_diagnostics(self) -> dict[str, str]:
        for name, s in diagnostic_statuses(self.diagnostics).items():
            if "executor" in name and "lingbot_va_executor" in name:
                return diagnostic_values(s)
        return {}

    def wait_mid_chunk(self, min_rows: int, timeout: float) -> tuple[float, dict]:
        """Wait for a fresh executor state (published at the start of a chunk) with >= ``min_rows`` planned."""
        from lingbot_va_ros.testing.ros_harness import wait_until

        start = time.monotonic()

        def hit():
            hist = self.state.history()
            if not hist:
                return None
            t, s = hist[-1]
            left = max((seg[1] for seg in s.get("plan", [])), default=0) - s.get("next_index", 0)
            fresh = time.monotonic() - t < 0.1 and t >= start
            return (t, s) if fresh and s.get("state") == "executing" and left >= min_rows else None
        return wait_until(hit, timeout, f"the executor starting a chunk with >= {min_rows} rows", poll=0.005,
                          on_timeout=lambda: json.dumps(self.state.latest())[:1000])

    def pids(self) -> dict[str, int]:
        out = self.graph.pids()
        if self.relay_proc is not None and self.relay_proc.alive():
            out["relay_links"] = self.relay_proc.pid
        return out

    def stop(self) -> list[str]:
        left = []
        if self.probe is not None:
            try:
                self.episodes.close()
            except Exception:  # noqa: BLE001 - teardown
                pass
            self.probe.close()
        left += self.graph.stop()
        if self.relay_proc is not None:
            self.relay_proc.stop()
            if self.relay_proc.alive():
                left.append("relay_links")
        return left


# ================================================================================================ resources
@dataclass(frozen=True)
class ResourceSample:
    t: float          # monotonic
    name: str
    pid: int
    rss: int          # bytes
    threads: int      # /proc/<pid>/task entries
    fds: int          # /proc/<pid>/fd entries
    children: int     # descendant processes


def sample_process(name: str, pid: int) -> ResourceSample | None:
    import psutil

    try:
        p = psutil.Process(pid)
        rss = p.memory_info().rss
        threads = len(os.listdir(f"/proc/{pid}/task"))
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        children = len(p.children(recursive=True))
    except (psutil.Error, OSError):
        return None
    return ResourceSample(time.monotonic(), name, pid, rss, threads, fds, children)


class ResourceSampler:
    """Samples RSS, threads, fds and children of named processes every ``period`` seconds on a thread."""

    def __init__(self, pids: Callable[[], dict[str, int]], period: float = 2.0):
        self.pids = pids
        self.period = period
        self.samples: list[ResourceSample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="resource_sampler")

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, pid in self.pids().items():
                s = sample_process(name, pid)
                if s is not None:
                    self.samples.append(s)
            self._stop.wait(self.period)

    def start(self) -> "ResourceSampler":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def series(self, name: str, since: float = -math.inf) -> list[ResourceSample]:
        return [s for s in self.samples if s.name == name and s.t >= since]


def growth(series: Sequence[ResourceSample], key: str) -> dict[str, float]:
    """Growth of one resource over a series: first/last (median of the first and last fifth, robust to
    spikes) and the least-squares slope per minute."""
    if len(series) < 4:
        return {"first": float("nan"), "last": float("nan"), "delta": float("nan"), "slope_per_min": float("nan"),
                "max": float("nan")}
    t = np.array([s.t for s in series])
    y = np.array([float(getattr(s, key)) for s in series])
    n = max(2, len(y) // 5)
    first, last = float(np.median(y[:n])), float(np.median(y[-n:]))
    slope = float(np.polyfit(t - t[0], y, 1)[0]) * 60.0 if np.ptp(t) > 0 else 0.0
    return {"first": first, "last": last, "delta": last - first, "slope_per_min": slope, "max": float(y.max())}


# ================================================================================================ soak
@dataclass
class SoakResult:
    seconds: float
    warmup_s: float
    episodes: list[dict] = field(default_factory=list)        # outcome, reason, chunks, duration_s, misses, latency
    rearms: list[str] = field(default_factory=list)           # latched states cleared between episodes
    samples: list[ResourceSample] = field(default_factory=list)
    timing: list[tuple[float, dict[str, str]]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    stream: dict = field(default_factory=dict)
    stream_problems: list[str] = field(default_factory=list)
    bags: list[dict] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)
    died: list[str] = field(default_factory=list)
    events: dict[str, int] = field(default_factory=dict)     # counted from the node logs after the run
    t_start: float = 0.0

    def reasons(self) -> dict[str, int]:
        """Episode end reasons with the numbers taken out (e.g. 'no executed actions N..N from the executor')."""
        import re

        out: dict[str, int] = {}
        for e in self.episodes:
            text = re.sub(r"^chunk \d+: ", "", e.get("reason", ""))
            text = re.sub(r"\s*\(.*", "", text)                      # the explanation in brackets
            text = re.sub(r"\[[^\]]*\]", "[...]", text)
            text = re.sub(r"-?\d+(\.\d+)?", "N", text)
            key = f"{e.get('outcome')}: {text.strip()}"
            out[key] = out.get(key, 0) + 1
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def growth(self, name: str, key: str) -> dict[str, float]:
        return growth([s for s in self.samples if s.name == name and s.t >= self.t_start + self.warmup_s], key)

    def names(self) -> list[str]:
        return sorted({s.name for s in self.samples})

    def timing_rates(self, parts: int = 3) -> list[dict[str, float]]:
        """Executor late ticks / missed deadlines per minute in ``parts`` equal windows after warm-up."""
        pts = [(t, int(v.get("timing_late_ticks", 0)), int(v.get("timing_missed_deadlines", 0)),
                int(v.get("timing_ticks", 0))) for t, v in self.timing if t >= self.t_start + self.warmup_s]
        if len(pts) < parts + 1:
            return []
        out = []
        edges = np.linspace(pts[0][0], pts[-1][0], parts + 1)
        for a, b in zip(edges, edges[1:]):
            w = [p for p in pts if a <= p[0] <= b]
            if len(w) < 2:
                continue
            minutes = (w[-1][0] - w[0][0]) / 60.0 or 1e-9
            out.append({"late_per_min": (w[-1][1] - w[0][1]) / minutes,
                        "missed_per_min": (w[-1][2] - w[0][2]) / minutes,
                        "ticks_per_min": (w[-1][3] - w[0][3]) / minutes})
        return out

    def resource_table(self) -> list[str]:
        """Markdown rows: per node RSS first/last/delta/slope, threads, fds, children (after warm-up)."""
        rows = ["| node | RSS after warm-up → end (MB) | RSS Δ (MB) | RSS slope (MB/min) | threads | fds | children |",
                "|---|---|---|---|---|---|---|"]
        for name in self.names():
            r, t, f, c = (self.growth(name, k) for k in ("rss", "threads", "fds", "children"))
            if not math.isfinite(r["first"]):
                continue
            rows.append(f"| {name} | {r['first'] / 2**20:.0f} → {r['last'] / 2**20:.0f} | {r['delta'] / 2**20:+.1f} | "
                        f"{r['slope_per_min'] / 2**20:+.2f} | {t['first']:.0f} → {t['last']:.0f} (max {t['max']:.0f}) | "
                        f"{f['first']:.0f} → {f['last']:.0f} (max {f['max']:.0f}) | {c['max']:.0f} |")
        return rows

    def latency_thirds(self) -> list[float]:
        lat = [x for e in self.episodes for x in e.get("latencies", [])]
        if len(lat) < 6:
            return []
        k = len(lat) // 3
        return [float(np.median(lat[:k])), float(np.median(lat[k:2 * k])), float(np.median(lat[2 * k:]))]


def check_bag(path: Path, image_every: int = 1) -> dict:
    """Open a recorded bag the way a user without this package would (rosbags AnyReader, EMPTY typestore:
    types from the bag's own definitions) and deserialise its messages (every ``image_every``-th image)."""
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    info: dict[str, Any] = {"path": str(path), "ok": False, "messages": 0, "topics": {}, "error": ""}
    try:
        with AnyReader([Path(path)], default_typestore=get_typestore(Stores.EMPTY)) as reader:
            seen: dict[str, int] = {}
            for conn, _t, raw in reader.messages():
                n = seen.get(conn.topic, 0)
                seen[conn.topic] = n + 1
                if conn.msgtype.endswith("/Image") and n % image_every:
                    continue
                reader.deserialize(raw, conn.msgtype)
            info["topics"], info["messages"], info["ok"] = seen, sum(seen.values()), True
    except Exception as exc:  # noqa: BLE001 - reported, the caller asserts
        info["error"] = f"{type(exc).__name__}: {exc}"
    return info


def log_events(graph: FaultGraph) -> dict[str, int]:
    """Safety-relevant events counted from the node logs (every restart's log included)."""
    import re

    text = {name: "".join(p.read_text(errors="replace") for p in graph.log_dir.glob(f"{name}*.log"))
            for name in (EXECUTOR, INGEST, INFERENCE, SIM, RECORDER)}
    ex = text[EXECUTOR]
    out = {f"executor latched {k}": n for k, n in
           sorted({m: len(re.findall(rf"LATCHED {m}:", ex)) for m in set(re.findall(r"LATCHED (\w+):", ex))}.items())}
    out["executor watchdog cuts (inference heartbeat stale)"] = len(re.findall(r"inference heartbeat stale \(", ex))
    out["executor overrun warnings (3+ late ticks in a row)"] = len(re.findall(r"consecutive late control ticks", ex))
    ing = text[INGEST]
    out["camera ingest key frames without Observation"] = len(re.findall(r"no Observation for action_index", ing))
    out["camera ingest stale-frame reports"] = len(re.findall(r"no Observation for action_index[^\n]*stale", ing))
    out["inference rejected inputs (log lines, throttled)"] = len(re.findall(r"rejected input", text[INFERENCE]))
    out["sim rejected commands (log lines, throttled)"] = len(re.findall(r"rejected joint command", text[SIM]))
    return {k: v for k, v in out.items() if v or k.startswith("executor watchdog")}


def run_soak(loop: "ClosedLoop", seconds: float, *, warmup_s: float = 30.0, episode_s: float = 30.0,
             sample_period: float = 5.0, prompt: str = "pick up the red block and place it in the bowl",
             log: Callable[[str], None] = lambda _s: None, keep_bags: int = 2, image_every: int = 1) -> SoakResult:
    """Run episodes back to back on a started ClosedLoop for ``seconds``, sampling every node's resources; then
    stop the graph and open every recorded bag. Bags beyond the last ``keep_bags`` are deleted once checked."""
    import shutil

    res = SoakResult(seconds=seconds, warmup_s=warmup_s)
    sampler = ResourceSampler(loop.pids, sample_period).start()
    res.t_start = time.monotonic()
    start_mark = loop.timing.mark()
    end = res.t_start + seconds
    try:
        while time.monotonic() < end:
            try:
                loop.graph.check_alive()
            except RuntimeError as exc:
                res.died.append(str(exc))
                break
            state = loop.state.latest()
            if state.get("latched"):
                ok, msg = loop.rearm()
                res.rearms.append(f"{json.dumps(state['latched'])} -> {msg}")
            left = end - time.monotonic()
            h = loop.episodes.send(prompt, max_duration_s=float(max(5.0, min(episode_s, left))))
            if not h.accepted:
                res.episodes.append({"outcome": "not accepted", "reason": "", "chunks": 0})
                continue
            try:
                r = h.result(max(60.0, episode_s + 60.0))
            except TimeoutError:
                # no result: a hung episode is itself a finding; record what the node reported and go on
                log(f"[soak] episode {len(res.episodes) + 1}: no result; inference log tail:\n"
                    + loop.graph.proc(INFERENCE).output()[-2000:])
                res.episodes.append({"outcome": "no result", "reason": "no RunEpisode result within the deadline",
                                     "chunks": len(h.feedback), "latencies": [float(f.latency_s) for f in h.feedback]})
                try:
                    h.cancel()
                except TimeoutError:
                    pass
                continue
            ep = {"outcome": r.outcome, "reason": r.reason, "episode_id": r.episode_id, "chunks": int(r.chunks),
                  "duration_s": float(r.duration_s), "latencies": [float(f.latency_s) for f in h.feedback],
                  "deadline_misses": int(h.feedback[-1].deadline_misses) if h.feedback else 0,
                  "modes": sorted({f.mode for f in h.feedback})}
            res.episodes.append(ep)
            log(f"[soak] {time.monotonic() - res.t_start:6.0f}s episode {len(res.episodes)}: {r.outcome} "
                f"({r.reason}); {r.chunks} chunks, misses {ep['deadline_misses']}")
            if r.outcome != "completed":
                # an aborted episode ends at once; the arm holds, the loop goes on with the next goal
                loop.state.wait(lambda s: s.get("state") in ("holding", "fault", "estop"), 30, "executor idle")
    finally:
        sampler.stop()
        res.samples = list(sampler.samples)
        res.timing = list(loop.timing.samples)
        end_mark = loop.timing.mark()
        window = loop.commands.window(start_mark[0], end_mark[0])
        res.violations = loop.commands.violations(window) + loop.driver_commands.violations(
            loop.driver_commands.window(start_mark[0], end_mark[0]))
        try:
            res.stream_problems, res.stream = stream_problems(loop.commands, loop.timing, start_mark, end_mark)
        except TimeoutError as exc:
            res.stream_problems = [str(exc)]
        if RECORDER in loop.graph.procs:
            from lingbot_va_ros.testing.ros_harness import wait_until

            # the last episode's bag closes auto_close_delay_s after its goal ended: wait for it before stopping
            try:
                wait_until(lambda: loop.recorder_state() == "idle", 30, "the recorder closing the last bag", poll=0.2)
            except TimeoutError:
                log("[soak] the recorder still had a bag open at the end")
        res.leftovers = loop.stop()
        res.events = log_events(loop.graph)
    bags = sorted(p.parent for p in loop.recording_dir.rglob("metadata.yaml"))
    for i, bag in enumerate(bags):
        res.bags.append(check_bag(bag, image_every))
        if i < len(bags) - keep_bags and res.bags[-1]["ok"]:
            shutil.rmtree(bag, ignore_errors=True)
    return res


# ================================================================================================ CLI
def main(argv: Sequence[str] | None = None) -> int:
    from rclpy.utilities import remove_ros_args

    argv = list(sys.argv[1:] if argv is None else argv)
    argv = remove_ros_args(["x", *argv])[1:]
    ap = argparse.ArgumentParser(prog="python -m lingbot_va_ros.testing.faults", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="tool", required=True)
    r = sub.add_parser("relay", help="forward topics with injected faults")
    r.add_argument("--name", required=True)
    r.add_argument("--pair", action="append", required=True,
                   help="NAME=KIND:SRC:DST, KIND in " + ", ".join(_RELAY_TYPES))
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--max-seconds", type=float, default=900.0)
    s = sub.add_parser("streamer", help="scripted inference stand-in: heartbeats + tiled joint chunks")
    s.add_argument("--episode", default="stream")
    s.add_argument("--rows", type=int, default=25)
    s.add_argument("--lookahead", type=int, default=2)
    s.add_argument("--period", type=float, default=0.02)
    s.add_argument("--amplitude", type=float, default=0.3)
    s.add_argument("--cycle-s", type=float, default=4.0)
    s.add_argument("--chunk-topic", default=topics.ACTION_CHUNK)
    s.add_argument("--heartbeat-topic", default=topics.HEARTBEAT)
    s.add_argument("--heartbeat-hz", type=float, default=20.0)
    s.add_argument("--replan-s", type=float, default=0.3)
    s.add_argument("--max-chunks", type=int, default=100000)
    s.add_argument("--max-seconds", type=float, default=300.0)
    args = ap.parse_args(argv)
    return _relay_main(args) if args.tool == "relay" else _streamer_main(args)


if __name__ == "__main__":
    raise SystemExit(main())
