"""Faults around the executor, each party in its own process over real DDS (mock arm with injectable driver
faults): the inference process stopped or killed mid-chunk, e-stop and driver faults during motion, lost /
delayed / reordered / duplicated chunks through a relay process, and late, duplicate, out-of-order,
wrong-episode and non-finite chunks. A monitor in the test records every command the driver gets (with its
receipt time); every scenario checks that none is non-finite, outside the URDF limits or over max_step, and
how fast and how far the arm comes to rest.
"""
from __future__ import annotations

import math
import signal
import time

import numpy as np
import pytest

from lingbot_va_ros.common import qos, topics
from lingbot_va_ros.common.conversions import pack_matrix, seconds_to_duration
from lingbot_va_ros.msg import ActionChunk
from lingbot_va_ros.testing.faults import ExecutorRig, braking_problem, sinusoid_rows, stream_problems
from lingbot_va_ros.testing.peers import HeartbeatPeer
from lingbot_va_ros.testing.ros_harness import wait_until

pytestmark = [pytest.mark.ros, pytest.mark.timeout(150)]

HB = 0.3                 # executor watchdog.heartbeat_timeout (the shipped default)
JITTER = 0.015           # allowed lateness of one control tick beyond its period (stamp gaps)


@pytest.fixture
def rig(probe, launch, tmp_path):
    return ExecutorRig(probe, launch, tmp_path / "rig").ready()


@pytest.fixture
def relay_rig(probe, launch, tmp_path):
    return ExecutorRig(probe, launch, tmp_path / "rig", relay=True).ready()


def _assert_safe(rig: ExecutorRig, start=None) -> dict:
    """No unsafe command reached the driver, and the stream had no gap the executor did not account for."""
    problems, report = stream_problems(rig.monitor, rig.timing, start or rig.t0, jitter=JITTER)
    assert not problems, "\n".join(problems[:20])
    return report


def _assert_controlled_stop(rig: ExecutorRig, m, what: str) -> None:
    """After the fault: a monotone deceleration to a hold, braking in no more ticks than the stop deceleration
    needs, and no further than the arm can travel before the stop began plus the braking distance. All in the
    executor's own command timeline, so it holds at any host speed; how soon the stop begins after the fault
    is a benchmark (benchmarks/bench_faults.py -> docs/benchmarks/faults.md)."""
    assert m.held_ticks >= 5, (what, m)
    problem = braking_problem(m, rig.limits, rig.period)
    assert not problem, (what, problem)
    speed = max(m.speed_at_fault, rig.peak_speed())
    assert m.stop_distance <= rig.stop_bound(speed, max(m.time_to_decel_s, 0.0)), (what, m)


def test_inference_process_sigstop_then_sigkill_mid_chunk_cuts_within_the_watchdog(rig):
    streamer = rig.start_streamer()
    v = rig.peak_speed()
    for sig in (signal.SIGSTOP, signal.SIGKILL):
        rig.monitor.wait_steady(0.8 * v, timeout=40)
        before = rig.state.latest()
        plan_end = max((seg[1] for seg in before.get("plan", [])), default=0)
        assert plan_end - before["next_index"] >= 10, f"not mid-chunk: {before}"   # rows left in the plan
        cuts = before["counters"]["watchdog_cuts"]
        t_fault = time.time_ns()
        t_mono = time.monotonic()
        streamer.signal(sig)
        m = rig.wait_hold(t_fault)
        # cut mid-chunk: the executor reported the stale heartbeat, cut the plan, and holds with rows left
        hit = wait_until(lambda: rig.state.first_since(t_mono, lambda s: s["reason"] == "inference heartbeat stale"
                                                       and s["counters"]["watchdog_cuts"] == cuts + 1),
                         5, "executor reporting the stale heartbeat")
        assert hit[1]["plan"] == []          # watchdog_cuts only counts a cut of an active plan: mid-chunk
        _assert_controlled_stop(rig, m, signal.Signals(sig).name)
        # holds: nothing moves while the inference process is gone
        rig.monitor.wait_count(25, 10)
        tail = rig.monitor.window()[-25:]
        assert all(np.array_equal(s.q, tail[0].q) for s in tail)
        if sig == signal.SIGSTOP:
            streamer.signal(signal.SIGCONT)   # the same process resumes: heartbeats fresh, it re-plans, motion resumes
            rig.state.wait(lambda s: s["state"] == "executing", 20, "execution resumed after SIGCONT")
    assert rig.node.alive() and not rig.state.latest()["latched"]
    _assert_safe(rig)


def test_e_stop_and_a_driver_fault_during_motion_latch_until_rearm(rig):
    rig.start_streamer()
    v = rig.peak_speed()

    # e-stop: controlled stop at once, latched: chunks keep arriving and are dropped, re-arm resumes
    rig.monitor.wait_steady(0.8 * v, timeout=40)
    t = rig.e_stop()
    m = rig.wait_hold(t)
    _assert_controlled_stop(rig, m, "e-stop")
    dropped = rig.state.counter("chunks_dropped_latched")
    rig.state.wait(lambda s: s["state"] == "estop" and s["counters"]["chunks_dropped_latched"] > dropped, 10,
                   "chunks dropped while the e-stop is latched")
    ok, msg = rig.rearm()
    assert ok and "e_stop" in msg, msg
    rig.state.wait(lambda s: s["state"] == "executing", 20, "execution resumed after re-arm")

    # driver fault: latched; re-arm refused while the driver still reports it, accepted once it is cleared
    rig.monitor.wait_steady(0.8 * v, timeout=40)
    t = rig.driver_fault("servo overcurrent on left_joint2")
    m = rig.wait_hold(t)
    _assert_controlled_stop(rig, m, "driver fault")
    s = rig.state.wait(lambda s: s["state"] == "fault" and "driver" in s["latched"], 10, "driver fault latched")
    assert "servo overcurrent" in s["reason"] and s["counters"]["driver_faults"] == 1
    ok, msg = rig.rearm()
    assert not ok and "driver fault persists" in msg, msg
    assert rig.state.latest()["state"] == "fault"
    rig.driver_fault("")                                   # the cause is gone
    ok, msg = wait_until(lambda: (r := rig.rearm()) and r[0] and r, 10, "re-arm accepted after the cause cleared")
    rig.state.wait(lambda s: s["state"] == "executing", 20, "execution resumed after the driver fault")
    assert rig.node.alive()
    _assert_safe(rig)


def test_lost_delayed_reordered_duplicated_chunks_keep_the_command_stream_continuous_and_safe(relay_rig):
    rig = relay_rig
    rig.start_streamer(lookahead=4)      # 2 s of plan ahead: a loaded host's scheduling never starves the arm
    v = rig.peak_speed()
    rig.monitor.wait_steady(0.8 * v, timeout=40)

    # delay + jitter well inside the streamer's lookahead: nothing is lost, the arm never waits
    # (whether the arm ever waits under such delays is a matter of host speed: benchmarks/bench_faults.py)
    rejected = rig.state.counter("chunks_rejected")
    t0 = rig.timing.mark()
    rig.relay.set(chunks={"delay_s": 0.02, "jitter_s": 0.08})
    wait_until(lambda: rig.relay.counts("chunks").get("delayed", 0) >= 8, 30, "8 delayed chunks")
    s = rig.state.wait(lambda s: s["state"] == "executing", 20, "executing with delayed chunks")
    assert s["counters"]["chunks_rejected"] == rejected and not s["latched"], s

    # loss, duplication and reordering: the executor holds on each gap, re-plans resume it; never a jump
    executed = rig.state.counter("actions_executed")
    rig.relay.set(chunks={"drop": 0.35, "duplicate": 0.3, "delay_s": 0.01, "jitter_s": 0.12})
    wait_until(lambda: (c := rig.relay.counts("chunks")).get("dropped", 0) >= 4 and c.get("duplicated", 0) >= 2,
               60, "4 lost and 2 duplicated chunks", on_timeout=lambda: str(rig.relay.counts("chunks")))
    rig.relay.set(chunks={})
    rig.state.wait(lambda s: s["state"] == "executing", 20, "executing again after the loss")
    s = rig.state.wait(lambda s: s["counters"]["actions_executed"] >= executed + 100, 30, "progress under loss")
    c = s["counters"]
    assert c["chunks_duplicate"] + c["chunks_old"] >= 1, c        # duplicates (and stale reorders) ignored
    assert c["gap_timeouts"] + c["starved_timeouts"] >= 1, c      # lost chunks: a reported hold, not a jump
    assert not s["latched"] and c["chunks_rejected"] == 0, s
    cont = _assert_safe(rig, t0)
    # a loaded host may delay the control thread: every missing command must then be one the executor reported
    assert cont["missing_ticks"] <= max(2, cont["executor_late_ticks"] + cont["executor_missed_deadlines"]), cont
    assert rig.node.alive()


class ProbeInference:
    """The inference process, split in two: its heartbeat (20 Hz) beats from a peer process, so it never lapses
    while this test process is busy; the hand-made chunks come from the test probe."""

    def __init__(self, rig: ExecutorRig):
        self.rig = rig
        self.episode = "ep-a"
        self.pub = rig.probe.publisher(ActionChunk, topics.ACTION_CHUNK, qos.RELIABLE_DEEP)
        self.heartbeat = HeartbeatPeer(rig.probe, rig.launch, episodes=[self.episode])
        rig.probe.wait_for_subscribers(self.pub, timeout=30)
        rig.state.wait(lambda s: s.get("heartbeat_episode") == self.episode and s["heartbeat_age_s"] < HB, 10,
                       "the executor hearing the heartbeat")
        self.q0 = rig.monitor.current().q.copy()
        self.moving = np.array(["gripper" not in n for n in rig.limits.names])

    def switch_episode(self, episode: str) -> None:
        """Like the inference node between goals: heartbeats name the new episode (only: it runs one at a time,
        and the executor reads a beat for another episode as the end of its current one) before its first chunk."""
        self.heartbeat.beat(episode)
        self.episode = episode

    def rows(self, start: int, n: int, q0=None) -> np.ndarray:
        return sinusoid_rows(self.q0 if q0 is None else q0, self.moving, start, n, self.rig.period, 0.3, 4.0)

    def send(self, chunk_index: int, start: int, rows: np.ndarray, episode: str | None = None) -> None:
        msg = ActionChunk(episode_id=episode or self.episode, chunk_index=chunk_index, start_index=start,
                          action_space="joint", channel_names=list(self.rig.limits.names), mode="sync")
        msg.control_period = seconds_to_duration(self.rig.period)
        msg.shape, msg.actions = pack_matrix(np.asarray(rows, dtype=np.float32))
        self.pub.publish(msg)

    def close(self) -> None:
        self.heartbeat.resume()


def test_late_duplicate_out_of_order_wrong_episode_and_non_finite_chunks_never_reach_the_driver(rig):
    inf = ProbeInference(rig)
    st = rig.state

    def counters(**expected) -> dict:
        return st.wait(lambda s: all(s["counters"][k] >= v for k, v in expected.items()), 10,
                       f"counters {expected}")["counters"]

    try:
        inf.send(0, 0, inf.rows(0, 100))
        st.wait(lambda s: s["state"] == "executing" and s["next_index"] >= 10, 20, "chunk 0 executing")
        inf.send(0, 0, inf.rows(0, 100))                       # duplicate
        counters(chunks_duplicate=1)
        # out of order: chunk 2 (a gap after chunk 0) overtakes chunk 1; chunk 1 then arrives and is too old
        inf.send(2, 150, inf.rows(150, 100))
        inf.send(1, 100, inf.rows(100, 100))
        c = counters(chunks_old=1, chunks_gap_buffered=1)
        st.wait(lambda s: s["next_index"] == 100 and s["state"] == "holding", 20, "holding at the gap")
        assert c["chunks_accepted"] == 2
        inf.send(3, 100, inf.rows(100, 200))                  # a newer chunk fills the gap
        s = st.wait(lambda s: s["state"] == "executing" and s["next_index"] > 110, 20, "resumed into the gap")
        # late: rows already in the past are dropped, a chunk entirely in the past is ignored
        nxt = s["next_index"]
        inf.send(4, nxt - 10, inf.rows(nxt - 10, 120))
        c = counters(chunks_late=1)
        assert c["late_rows_dropped"] >= 10
        inf.send(5, 0, inf.rows(0, 10))
        counters(chunks_past=1)

        # ep-a runs to the end of chunk 4, brakes to a stop and holds there
        end = nxt - 10 + 120
        st.wait(lambda s: s["next_index"] == end and s["state"] == "holding" and not s["moving"], 20,
                "ep-a stopped at its end")
        q_now = rig.monitor.current().q.copy()
        np.testing.assert_allclose(rig.monitor.current().q, q_now, atol=1e-9)      # held: the command is steady
        # wrong episode: a new episode cuts the old plan; the old episode's chunks are then ignored
        inf.switch_episode("ep-b")
        inf.send(0, 0, inf.rows(0, 200, q0=q_now), episode="ep-b")
        st.wait(lambda s: s["episode"] == "ep-b" and s["state"] == "executing", 20, "episode ep-b executing")
        inf.send(9, 400, inf.rows(400, 50), episode="ep-a")
        s = st.wait(lambda s: s["counters"]["chunks_old_episode"] >= 1, 10, "ep-a chunk ignored")
        assert s["episode"] == "ep-b" and all(seg[2] == 0 for seg in s["plan"]), s

        # non-finite chunks: each rejected whole (the plan keeps executing); three in a row latch a fault
        for k, bad in enumerate((math.nan, math.inf, -math.inf)):
            nxt = st.latest()["next_index"]
            rows = inf.rows(nxt + 5, 30, q0=q_now)
            rows[7 + k, 3] = bad
            inf.send(1 + k, nxt + 5, rows, episode="ep-b")
            if k < 2:
                s = st.wait(lambda s, k=k: s["rejections_by_category"].get("nonfinite", 0) >= k + 1, 10,
                            f"non-finite chunk {k} rejected")
                assert s["state"] == "executing" and "non-finite" in s["last_rejection"], s
        t_latch = time.monotonic()
        s = st.wait(lambda s: s["state"] == "fault" and "bad_chunks" in s["latched"], 10, "bad chunks latched")
        assert s["counters"]["bad_chunk_faults"] == 1 and s["counters"]["chunks_rejected"] == 3
        hit = st.first_since(t_latch - 5, lambda s: s["state"] == "fault")
        assert hit is not None
        st.wait(lambda s: not s["moving"], 10, "stopped after the latch")
        ok, msg = rig.rearm()
        assert ok and "bad_chunks" in msg, msg
        nxt = st.latest()["next_index"]
        inf.send(5, nxt, inf.rows(nxt, 60, q0=rig.monitor.current().q.copy() - (inf.rows(nxt, 1, q0=q_now)[0] - q_now)),
                 episode="ep-b")
        st.wait(lambda s: s["state"] == "executing" and s["next_index"] > nxt, 20, "a good chunk executes after re-arm")
    finally:
        inf.close()
    assert rig.node.alive()
    _assert_safe(rig)
