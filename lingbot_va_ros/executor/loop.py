"""The control loop's timing thread: absolute deadlines, sleep-until plus a short final spin, jitter stats.

Why not ``sleep(period)``: a relative sleep accumulates every wake-up delay and every tick's compute time
into drift. Here deadline k is ``t0 + k * period`` on the monotonic clock; the thread sleeps until shortly
before it (the kernel's wake-up latency is tens to hundreds of microseconds), then spins the last
``spin_s``. A tick that starts more than a whole period late skips the missed deadlines instead of
bursting to catch up (the action index is advanced by executed ticks, not by wall time, so nothing is lost
except time). Linux timer slack is set to 1 ns for this thread so the kernel does not coalesce its wake-ups.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import math
import os
import threading
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

_PR_SET_TIMERSLACK = 29


def _set_thread_timer_slack(ns: int = 1) -> bool:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(_PR_SET_TIMERSLACK, ctypes.c_ulong(ns), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


class JitterStats:
    """Period and lateness statistics over a ring buffer of recent ticks (plus all-time maxima/counts)."""

    def __init__(self, period: float, window: int = 30000, late_threshold: float | None = None):
        self.period = period
        self.late_threshold = late_threshold if late_threshold is not None else 0.1 * period
        self._period_err = np.zeros(window)   # |actual period - nominal|, s
        self._lateness = np.zeros(window)     # wake-up time - deadline, s
        self._exec = np.zeros(window)         # tick compute time, s
        self._n = 0
        self.ticks = 0
        self.late_ticks = 0
        self.missed_deadlines = 0
        self.max_period_err = 0.0
        self.max_lateness = 0.0
        self.max_exec = 0.0
        self.consecutive_late = 0

    def record(self, period_err: float | None, lateness: float, exec_time: float) -> None:
        i = self._n % self._period_err.size
        self._period_err[i] = abs(period_err) if period_err is not None else 0.0
        self._lateness[i] = lateness
        self._exec[i] = exec_time
        self._n += 1
        self.ticks += 1
        if period_err is not None:
            self.max_period_err = max(self.max_period_err, abs(period_err))
        self.max_lateness = max(self.max_lateness, lateness)
        self.max_exec = max(self.max_exec, exec_time)
        if lateness > self.late_threshold:
            self.late_ticks += 1
            self.consecutive_late += 1
        else:
            self.consecutive_late = 0

    def period_errors(self) -> np.ndarray:
        """|period - nominal| (s) of the ticks in the window, oldest first is not guaranteed (a ring)."""
        return self._period_err[:min(self._n, self._period_err.size)].copy()

    def summary(self) -> dict[str, float]:
        n = min(self._n, self._period_err.size)
        if n == 0:
            return {"ticks": 0}
        pe, la, ex = self._period_err[:n], self._lateness[:n], self._exec[:n]
        return {
            "ticks": self.ticks,
            "period_ms": self.period * 1e3,
            "period_jitter_p50_ms": float(np.percentile(pe, 50)) * 1e3,
            "period_jitter_p99_ms": float(np.percentile(pe, 99)) * 1e3,
            "period_jitter_max_ms": self.max_period_err * 1e3,
            "lateness_p50_ms": float(np.percentile(la, 50)) * 1e3,
            "lateness_p99_ms": float(np.percentile(la, 99)) * 1e3,
            "lateness_max_ms": self.max_lateness * 1e3,
            "exec_p50_ms": float(np.percentile(ex, 50)) * 1e3,
            "exec_p99_ms": float(np.percentile(ex, 99)) * 1e3,
            "exec_max_ms": self.max_exec * 1e3,
            "late_ticks": self.late_ticks,
            "late_share": self.late_ticks / max(self.ticks, 1),
            "late_threshold_ms": self.late_threshold * 1e3,
            "missed_deadlines": self.missed_deadlines,
        }


@dataclass
class TimingSettings:
    spin_s: float = 0.0003            # busy-wait before each deadline
    realtime_priority: int = 0        # SCHED_FIFO priority for the thread (0 = leave the default policy)
    cpu_affinity: tuple[int, ...] = ()


class ControlLoop:
    """Calls ``tick(now)`` every ``period`` seconds on its own thread, deadline-scheduled."""

    def __init__(self, period: float, tick: Callable[[float], None], settings: TimingSettings | None = None,
                 name: str = "executor_control", on_error: Callable[[BaseException], None] | None = None):
        if not period > 0:
            raise ValueError("period must be > 0")
        self.period = float(period)
        self.tick = tick
        self.settings = settings or TimingSettings()
        self.name = name
        self.on_error = on_error
        self.stats = JitterStats(self.period)
        self.notes: list[str] = []
        self._stop = threading.Event()
        self._configured = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("control loop already started")
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        self._configured.wait(2.0)  # so ``notes`` (scheduler, affinity) are known when start() returns

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def run_for(self, seconds: float) -> dict[str, float]:
        """Run on a fresh thread for ``seconds`` (benchmarks); returns the stats summary. A fresh thread so the
        scheduling policy and affinity it sets never leak into the caller's thread."""
        self.start()
        time.sleep(seconds)
        self.stop()
        return self.stats.summary()

    # ------------------------------------------------------------------------------------------------------
    def _configure_thread(self) -> None:
        if _set_thread_timer_slack(1):
            self.notes.append("timer slack 1 ns")
        s = self.settings
        if s.cpu_affinity:
            try:
                os.sched_setaffinity(0, set(s.cpu_affinity))
                self.notes.append(f"cpu affinity {sorted(s.cpu_affinity)}")
            except OSError as exc:
                self.notes.append(f"cpu affinity {list(s.cpu_affinity)} refused: {exc}")
        if s.realtime_priority > 0:
            try:  # pid 0 = the calling thread on Linux
                os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(s.realtime_priority))
                self.notes.append(f"SCHED_FIFO priority {s.realtime_priority}")
            except (OSError, AttributeError) as exc:
                self.notes.append(f"SCHED_FIFO {s.realtime_priority} refused ({exc}); running SCHED_OTHER "
                                  "(grant rtprio via limits.conf or --cap-add=sys_nice)")

    def _sleep_until(self, deadline: float) -> None:
        spin = self.settings.spin_s
        while True:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return
            if remaining > spin:
                time.sleep(remaining - spin)
            # else: spin (the last few hundred microseconds)

    def _run(self) -> None:
        self._configure_thread()
        self._configured.set()
        period = self.period
        deadline = time.perf_counter() + period
        prev_start: float | None = None
        while not self._stop.is_set():
            self._sleep_until(deadline)
            start = time.perf_counter()
            lateness = start - deadline
            try:
                self.tick(time.monotonic())
            except BaseException as exc:  # noqa: BLE001 - the loop must report, never die silently
                if self.on_error is not None:
                    self.on_error(exc)
                else:
                    raise
            end = time.perf_counter()
            self.stats.record(None if prev_start is None else (start - prev_start) - period, lateness, end - start)
            prev_start = start
            deadline += period
            behind = end - deadline
            if behind >= period:  # whole periods lost: skip those deadlines, never burst to catch up
                missed = math.floor(behind / period)
                self.stats.missed_deadlines += missed
                deadline += missed * period
