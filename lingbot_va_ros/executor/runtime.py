"""Threads around the pure core (still no rclpy): ROS callbacks -> inbox -> control thread -> outbox -> publisher.

- Callback threads (chunks, heartbeat, e-stop, re-arm) only validate/convert chunks and put items in a
  ``queue.SimpleQueue`` (a C-level queue: put/get never block on the consumer).
- The control thread (:class:`ControlLoop`) drains the inbox, runs one core step, sends the command to
  the driver and hands the result to the outbox. It never waits on ROS.
- The publisher thread turns outbox items into messages (command echo, ticks, executed actions, state)
  through the ``publish`` callback the node supplies, so message construction and DDS writes cost the
  control thread nothing beyond the driver's own non-blocking send.
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from lingbot_va_ros.executor.chunks import ChunkData, ChunkPreparer
from lingbot_va_ros.executor.clock import monotonic
from lingbot_va_ros.executor.core import ExecutorCore, TickResult
from lingbot_va_ros.executor.drivers.base import ArmDriver
from lingbot_va_ros.executor.loop import ControlLoop, TimingSettings


@dataclass
class Output:
    """One control tick's products, for the publisher thread."""

    result: TickResult
    stamp_ns: int
    status: dict[str, Any] | None = None
    logs: list[tuple[str, str]] = field(default_factory=list)   # (level, text)


class _Request:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.ok = False
        self.message = ""


class ExecutorRuntime:
    def __init__(self, core: ExecutorCore, driver: ArmDriver, preparer: ChunkPreparer, *,
                 publish: Callable[[Output], None], stamp_ns: Callable[[], int] = time.time_ns,
                 timing: TimingSettings | None = None, overrun_warn_ticks: int = 3, overrun_fault_ticks: int = 20,
                 status_period: float = 1.0, clock: Callable[[], float] = monotonic,
                 alive: Callable[[], bool] = lambda: True,
                 on_publish_error: Callable[[str], None] | None = None):
        self.core = core
        self.driver = driver
        self.preparer = preparer
        self.preparer.reference_q = self.reference_q
        self.publish = publish
        self.stamp_ns = stamp_ns
        self.clock = clock
        self.alive = alive
        self.on_publish_error = on_publish_error
        self.overrun_warn_ticks = overrun_warn_ticks
        self.overrun_fault_ticks = overrun_fault_ticks
        self.status_period = status_period
        self.loop = ControlLoop(core.cfg.period, self._tick, timing, on_error=self._on_tick_error)
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._outbox: queue.SimpleQueue = queue.SimpleQueue()
        self._latest_q: np.ndarray | None = None
        self._latest_state = None
        self._last_status = -1e9
        self._overrun_warned = False
        self._stop = threading.Event()
        self._publisher = threading.Thread(target=self._publish_loop, name="executor_publish", daemon=True)
        self.status: dict[str, Any] = core.status(clock())
        self.tick_errors = 0
        self.publish_errors = 0
        self.last_publish_error = ""

    # ----------------------------------------------------------------------------- any thread (callbacks)
    def submit_chunk(self, data: ChunkData) -> None:
        """Validate + convert on the caller's thread, then hand over. Never blocks the control thread."""
        self._inbox.put(("chunk", self.preparer.prepare(data, self.clock())))

    def heartbeat(self, episode_id: str) -> None:
        self._inbox.put(("heartbeat", episode_id, self.clock()))

    def e_stop(self, active: bool) -> None:
        if active:
            self._inbox.put(("e_stop",))

    def rearm(self, timeout: float = 2.0) -> tuple[bool, str]:
        if not self.loop.running:
            return False, "control loop not running"
        req = _Request()
        self._inbox.put(("rearm", req))
        if not req.done.wait(timeout):
            return False, f"no answer from the control thread within {timeout:.1f} s"
        return req.ok, req.message

    def reference_q(self) -> np.ndarray | None:
        """Current joints for chunk conversion (ee initial pose, IK seed): last command, else measured."""
        q = self._latest_q
        if q is not None:
            return q.copy()
        state = self._latest_state
        return None if state is None else np.asarray(state.positions, dtype=np.float64).copy()

    # ----------------------------------------------------------------------------- lifecycle
    def start(self) -> None:
        self._publisher.start()
        self.loop.start()

    def stop(self) -> None:
        self.loop.stop()
        self._stop.set()
        self._publisher.join(timeout=2.0)

    # ----------------------------------------------------------------------------- control thread
    def _tick(self, now: float) -> None:
        core = self.core
        logs: list[tuple[str, str]] = []
        while True:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                break
            kind = item[0]
            if kind == "chunk":
                logs.append(("debug", core.ingest(item[1], now)))
            elif kind == "heartbeat":
                core.heartbeat(item[1], item[2])
            elif kind == "e_stop":
                core.e_stop(now)
            elif kind == "rearm":
                req = item[1]
                if self.driver.clear_fault():
                    req.ok, req.message = core.rearm(now, self.driver.state())
                else:
                    req.ok, req.message = False, f"refused: driver fault persists ({self.driver.fault})"
                req.done.set()
        state = self.driver.state()
        self._latest_state = state
        stats = self.loop.stats
        if stats.consecutive_late >= self.overrun_fault_ticks:
            core.fault("overrun", f"{stats.consecutive_late} consecutive late control ticks")
        elif stats.consecutive_late >= self.overrun_warn_ticks and not self._overrun_warned:
            self._overrun_warned = True
            logs.append(("warn", f"{stats.consecutive_late} consecutive late control ticks"))
        elif stats.consecutive_late == 0:
            self._overrun_warned = False
        result = core.step(now, state, self.driver.fault)
        stamp = self.stamp_ns()
        if result.command is not None:
            self.driver.send(result.command, stamp, result.velocity)
            self._latest_q = result.command
        status = None
        if result.state_changed or now - self._last_status >= self.status_period:
            status = core.status(now)
            self._last_status = now
        if result.command is not None or result.events or status is not None or logs:
            self._outbox.put(Output(result, stamp, status, logs))

    def _on_tick_error(self, exc: BaseException) -> None:
        if not self.alive():  # the ROS context went down under us (shutdown): stop quietly
            self.loop.stop()
            return
        # A bug in a tick must not kill the loop silently nor keep commanding: latch a fault and report.
        self.tick_errors += 1
        try:
            self.core.fault("internal", f"control tick raised {type(exc).__name__}: {exc}")
        finally:
            self._outbox.put(Output(TickResult(), self.stamp_ns(), None,
                                    [("error", f"control tick raised {type(exc).__name__}: {exc}")]))

    # ----------------------------------------------------------------------------- publisher thread
    def _publish_loop(self) -> None:
        while not self._stop.is_set():
            try:
                out = self._outbox.get(timeout=0.1)
            except queue.Empty:
                continue
            if out.status is not None:
                self.status = out.status
            try:
                self.publish(out)
            except Exception as exc:  # noqa: BLE001 - a shutdown race or a publish error must not kill the thread
                if self._stop.is_set():
                    return
                self.publish_errors += 1
                self.last_publish_error = f"{type(exc).__name__}: {exc}"
                if self.on_publish_error is not None and self.publish_errors in (1, 10, 100, 1000):
                    self.on_publish_error(f"publishing executor outputs failed ({self.publish_errors} times so "
                                          f"far): {self.last_publish_error}")
