"""The timing thread and the thread plumbing around the core (real threads, real time, no ROS)."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from lingbot_va_ros.executor.drivers.mock import MockDriver
from lingbot_va_ros.executor.loop import ControlLoop, JitterStats
from lingbot_va_ros.executor.runtime import ExecutorRuntime
from lingbot_va_ros.executor.testing import chunk_data, make_core, make_limits, make_preparer, ramp
from lingbot_va_ros.testing.ros_harness import wait_until

pytestmark = pytest.mark.timeout(60)


def test_control_loop_keeps_absolute_deadlines():
    stamps = []
    loop = ControlLoop(0.01, lambda now: stamps.append(now))
    loop.start()
    wait_until(lambda: len(stamps) >= 30, 5, "30 ticks")
    loop.stop()
    n, span = len(stamps), stamps[-1] - stamps[0]
    # absolute deadlines: the average period stays exact even when single wake-ups are late (no drift)
    assert span / (n - 1) == pytest.approx(0.01, rel=0.1)
    s = loop.stats.summary()
    assert s["ticks"] == n and {"period_jitter_p99_ms", "lateness_max_ms", "late_share"} <= set(s)


def test_jitter_stats_count_late_ticks():
    st = JitterStats(0.02, window=8)
    for lateness in (0.0, 0.0001, 0.005, 0.006, 0.0):
        st.record(0.0, lateness, 0.0001)
    s = st.summary()
    assert s["late_ticks"] == 2 and st.consecutive_late == 0 and s["lateness_max_ms"] == pytest.approx(6.0)


class Collector:
    def __init__(self):
        self.outputs = []
        self.lock = threading.Lock()

    def __call__(self, out):
        with self.lock:
            self.outputs.append(out)

    def ticks(self):
        with self.lock:
            return [o.result.tick for o in self.outputs if o.result.tick is not None]

    def statuses(self):
        with self.lock:
            return [o.status for o in self.outputs if o.status is not None]


def _runtime(**cfg):
    limits = make_limits()
    # the heartbeat comes from a thread of this (possibly starved) test process: a generous timeout, the watchdog
    # is test_executor_core's and the fault tests' subject
    core = make_core(limits, period=0.01, heartbeat_timeout=5.0, **cfg)
    driver = MockDriver(None, limits.names, {"state_topic": ""}, period=0.01)
    sink = Collector()
    rt = ExecutorRuntime(core, driver, make_preparer(limits, period=0.01), publish=sink)
    return rt, driver, sink


def test_runtime_executes_chunks_handles_e_stop_and_rearm_across_threads():
    rt, driver, sink = _runtime(seam_policy="hard")
    rt.start()
    try:
        wait_until(lambda: rt.reference_q() is not None, 5, "initial command")
        stop_hb = threading.Event()

        def beat():
            while not stop_hb.is_set():
                rt.heartbeat("ep")
                time.sleep(0.02)

        hb = threading.Thread(target=beat, daemon=True)
        hb.start()
        wait_until(lambda: rt.core.heartbeat_age(time.monotonic()) is not None, 5, "the heartbeat received")
        rt.submit_chunk(chunk_data(ramp(np.zeros(14), 8, velocity=0.05, period=0.01), period=0.01))
        wait_until(lambda: len(sink.ticks()) >= 2, 5, "two key-frame ticks")
        assert [t.action_index for t in sink.ticks()] == [3, 7]
        rt.e_stop(True)
        wait_until(lambda: any(s["state"] == "estop" for s in sink.statuses()), 5, "estop state")
        ok, msg = rt.rearm()
        assert ok, msg
        wait_until(lambda: sink.statuses()[-1]["state"] != "estop", 5, "state after re-arm")
        stop_hb.set()
        hb.join()
    finally:
        rt.stop()
    assert not rt.loop.running


def test_a_tick_that_raises_latches_a_fault_instead_of_killing_the_loop():
    rt, driver, sink = _runtime()
    calls = {"n": 0}
    original = driver.send

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("bus error")
        original(*args, **kwargs)

    driver.send = flaky
    rt.start()
    try:
        wait_until(lambda: rt.core.latched.get("internal"), 5, "internal fault latched")
        n = calls["n"]
        wait_until(lambda: calls["n"] > n + 3, 5, "loop still ticking (holding)")
    finally:
        rt.stop()
    assert rt.tick_errors == 1
    assert any(level == "error" for o in sink.outputs for level, _ in o.logs)


def test_consecutive_late_ticks_latch_an_overrun_fault():
    rt, driver, sink = _runtime()
    rt.overrun_fault_ticks = 5
    rt.loop.stats.consecutive_late = 5       # as if the last five ticks started late
    rt._tick(time.monotonic())                # noqa: SLF001 - one control tick, synchronously
    assert "overrun" in rt.core.latched and rt.core.counters["overrun_faults"] == 1
