"""Faults in the whole closed loop: sim arm, camera ingest, executor and inference (tiny random checkpoint) as
separate processes over real DDS, with a relay process (lingbot_va_ros.testing.faults) on the chunk
(inference -> executor), observation (ingest -> inference) and camera (sim -> ingest) links.

One graph serves the scenarios of this module in order (starting it costs ~20-40 s on 2 shared cores); each
scenario leaves it idle. Every scenario checks what reached the sim (the driver's command topic) and the
executor's command echo: never non-finite, outside the URDF limits or over max_step; and that no chunk was
computed from a stale or mismatched observation.
"""
from __future__ import annotations

import signal
import time

import numpy as np
import pytest

from lingbot_va_ros.testing.faults import (EXECUTOR, INFERENCE, INGEST, ClosedLoop, braking_problem, free_ros_domain,
                                          stream_problems)
from lingbot_va_ros.testing.ros_harness import wait_until

pytestmark = [pytest.mark.ros, pytest.mark.slow, pytest.mark.timeout(240)]

# the executor's heartbeat_timeout is read from the graph's config (loop.heartbeat_timeout: config/executor.yaml,
# 0.3 s, with the sim overlay config/executor_sim.yaml, 0.5 s, on top)
FEEDBACK_TIMEOUT = 2.5   # inference feedback_timeout_s in this graph (shipped: 5 s)
INITIAL_TIMEOUT = 5.0    # inference initial_observation_timeout_s in this graph (shipped: 10 s)
# The sim arm runs without real-time priority: on a loaded 2-core host its 100 Hz joint states were measured
# up to 286 ms (and, with two closed loops on 2 cores, 502 ms) late, which latches a 0.2-0.5 s state_timeout
# (a finding, see docs/reliability.md); the faults under test here are others, so this graph allows 1 s.
STATE_TIMEOUT = 1.0
# Likewise the sim renders late under that load and the shipped 0.2 s max_age drops key frames (which ends a
# sync episode): this graph allows 0.5 s. Every Observation is still audited against the max_age in force.
CAMERA_MAX_AGE = 0.5
PROMPT = "pick up the red block and place it in the bowl"


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    with free_ros_domain() as domain:
        lp = ClosedLoop(tmp_path_factory.mktemp("faults_graph"), domain, mode="sync",
                        inference={"initial_observation_timeout_s": INITIAL_TIMEOUT,
                                   "feedback_timeout_s": FEEDBACK_TIMEOUT},
                        executor={"watchdog": {"state_timeout": STATE_TIMEOUT}}, camera_max_age=CAMERA_MAX_AGE)
        try:
            lp.start()
            yield lp
        finally:
            left = lp.stop()
            assert not left, f"processes survived teardown: {left}"


@pytest.fixture
def g(loop, request):
    """Each scenario starts from an idle, healthy graph with clean links; node logs are attached to failures."""
    loop.links.reset()
    ok, msg = loop.rearm()
    assert ok, msg
    loop.t0 = loop.timing.mark()
    yield loop
    for name, proc in loop.graph.procs.items():
        request.node.add_report_section("call", f"node log {name}", proc.output()[-3000:])
    _assert_safe(loop, loop.t0[0])


def _assert_safe(lp: ClosedLoop, since_ns: int) -> None:
    for mon in (lp.commands, lp.driver_commands):
        bad = mon.violations(mon.window(since_ns))
        assert not bad, f"unsafe commands on {mon.topic}:\n" + "\n".join(bad[:20])
    bad = lp.joint_states.violations(lp.joint_states.window(since_ns), check_step=False, tol=0.02)
    assert not bad, "measured joint states out of range:\n" + "\n".join(bad[:10])
    problems = lp.audit.problems()
    assert not problems, "chunk computed from stale / mismatched images:\n" + "\n".join(problems[:20])


def _continuous(lp: ClosedLoop, start=None) -> dict:
    """Continuity of the executor's stream (and what reached the sim) since ``start`` (a timing mark)."""
    problems, report = stream_problems(lp.commands, lp.timing, start or lp.t0)
    assert not problems, "\n".join(problems[:20])
    return report


def _first_chunk_published(handle, timeout: float = 60.0) -> None:
    wait_until(lambda: handle.feedback, timeout, "the first chunk (goal feedback)")


def _aborted(handle, timeout: float, *needles: str):
    res = handle.result(timeout)
    assert res.outcome == "aborted", (res.outcome, res.reason)
    for n in needles:
        assert n in res.reason, (n, res.reason)
    return res


def test_chunk_and_observation_delay_and_loss(g):
    # delay + jitter on both links: the episode completes
    g.links.set(chunks={"delay_s": 0.05, "jitter_s": 0.1}, observations={"delay_s": 0.03, "jitter_s": 0.05})
    h = g.episodes.send(PROMPT, max_chunks=3)
    res = h.result(120)
    assert res.outcome == "completed", (res.outcome, res.reason)
    g.links.wait_count("chunks", "delayed", 3)
    g.links.wait_count("observations", "delayed", 4)

    # one lost chunk: the arm finishes what it has and holds; the episode ends naming the missing feedback
    g.links.reset()
    h = g.episodes.send(PROMPT, max_chunks=6)
    _first_chunk_published(h)
    g.links.set(chunks={"drop_next": 1})
    res = _aborted(h, 60, "executed actions", "executor")
    assert g.links.wait_count("chunks", "dropped", 1)["dropped"] == 1
    s = g.state.wait(lambda s: s["state"] == "holding", 10, "executor holding")
    # starved at the end of its plan, or (once the aborted episode's idle beat arrived) ended by the inference node
    assert any(w in s["reason"] for w in ("starved", "waiting", "ended by the inference node")), s

    # one lost observation: no chunk is predicted without it; the episode ends naming the missing key frame
    g.links.reset()
    h = g.episodes.send(PROMPT, max_chunks=6)
    _first_chunk_published(h)
    g.links.set(observations={"drop_next": 1})
    res = _aborted(h, 60, "key frames after actions", "camera ingest")
    assert len(g.audit.chunks_of(res.episode_id)) == res.chunks
    g.links.reset()
    _continuous(g)


def test_camera_stall_backwards_stamps_missing_camera_and_ingest_stall_never_feed_stale_images(g, loop):
    # (a) one camera stops publishing mid-episode: no Observation for the next tick, the episode ends
    h = g.episodes.send(PROMPT, max_chunks=8)
    _first_chunk_published(h)
    g.links.set(cam_left_wrist={"mode": "stall"})
    _aborted(h, 60, "key frames", "camera ingest")
    # The per-camera status says so: ERROR with the tick's "stale" reason while the last invalid tick is recent,
    # then (no more ticks once the episode ended) WARN "no fresh frame" for as long as the camera stays silent.
    st = wait_until(lambda: (s := g.ingest_status("cam_left_wrist"))
                    and (("stale" in s.get("reason", "") and s["level"] == "2")
                         or ("no fresh frame" in s["message"] and s["level"] == "1")) and s, 10,
                    "ingest diagnostics naming the stale camera")
    assert st["level"] in ("1", "2"), st

    # (b) stamps going backwards on one camera mid-episode
    g.links.reset()
    h = g.episodes.send(PROMPT, max_chunks=8)
    _first_chunk_published(h)
    g.links.set(cam_high={"stamp_offset_s": -1.0})
    _aborted(h, 60, "key frames", "camera ingest")
    st = wait_until(lambda: (s := g.ingest_status("cam_high")) and int(s.get("stamp_backwards", "0")) >= 1 and s, 10,
                    "ingest counting the backwards stamp")
    assert int(st["invalid_ticks"]) >= 1, st

    # (c) camera ingest itself stalls (SIGSTOP) mid-episode, then resumes: the ticks it missed get no
    # Observation built from old or new frames (the audit checks every Observation's capture stamps)
    g.links.reset()
    h = g.episodes.send(PROMPT, max_chunks=8)
    _first_chunk_published(h)
    ingest = loop.graph.proc(INGEST)
    ingest.signal(signal.SIGSTOP)
    try:
        time.sleep(1.5)        # the fault itself: a 1.5 s stall of the process
    finally:
        ingest.signal(signal.SIGCONT)
    _aborted(h, 60, "key frames", "camera ingest")

    # (d) one camera missing from the start: restart ingest with that camera's link stalled
    g.links.set(cam_right_wrist={"mode": "stall"})
    loop.graph.restart(INGEST)
    loop.wait_ingest(60)
    h = g.episodes.send(PROMPT, max_chunks=3)
    res = _aborted(h, 60, "no initial observation")
    assert res.chunks == 0 and not g.audit.chunks_of(res.episode_id)
    wait_until(lambda: (s := g.ingest_status("cam_right_wrist")) and "missing" in s.get("message", "") + s.get("reason", ""),
               10, "ingest reporting the missing camera")
    g.links.reset()
    _continuous(g)


def test_executor_killed_mid_episode_then_a_restarted_executor_serves_the_next_goal(g, loop):
    first = g.episodes.send(PROMPT, max_chunks=3)
    assert first.result(120).outcome == "completed"
    fill0 = first.feedback[0].cache_fill

    h = g.episodes.send(PROMPT, max_chunks=8)
    _first_chunk_published(h)
    g.state.wait(lambda s: s["state"] == "executing", 20, "executing")
    loop.graph.proc(EXECUTOR).signal(signal.SIGKILL)
    _aborted(h, FEEDBACK_TIMEOUT + 2.0 + 30, "executed actions", "executor")

    # the sim holds its last target while nothing commands it
    t_dead = time.time_ns()
    g.joint_states.wait_for(lambda s: s.stamp_ns > t_dead + int(1e9), 10, "joint states after the kill")

    before = loop.executor_chunk_endpoints()
    loop.graph.restart(EXECUTOR)
    t_back = time.time_ns()
    g.commands.wait_for(lambda s: s.stamp_ns > t_back, 60, "the restarted executor commanding")
    loop.wait_executor(60, previous=before)
    start = g.timing.mark()
    h = g.episodes.send(PROMPT, max_chunks=3)
    res = h.result(120)
    assert res.outcome == "completed", (res.outcome, res.reason)
    assert [f.chunk_index for f in h.feedback] == [0, 1, 2]
    assert h.feedback[0].cache_fill == pytest.approx(fill0)      # the episode started from a clean cache
    _continuous(g, start)


def _stop_checks(lp: ClosedLoop, t_fault: int, t_mono: float, cuts: int, plan_end: int, what: str):
    """The watchdog cut the plan mid-chunk and the arm came to a controlled hold. How soon after the fault is a
    benchmark (benchmarks/bench_faults.py: time to decelerate / hold); here what holds at any host speed."""
    hit = wait_until(lambda: lp.state.first_since(t_mono, lambda s: s["reason"] == "inference heartbeat stale"
                                                   and s["counters"]["watchdog_cuts"] == cuts + 1),
                     10, f"executor reporting the stale heartbeat ({what})")
    assert hit[1]["plan"] == [] and hit[1]["next_index"] < plan_end, (what, hit[1])   # cut mid-chunk
    n = int(round(0.5 / lp.period))
    lp.commands.wait_for(lambda s: s.stamp_ns > t_fault + int((lp.heartbeat_timeout + 1.5) * 1e9), 10,
                         "commands after the stop")
    m = lp.commands.stop_metrics(t_fault)
    assert m.held_ticks >= n, (what, m)
    problem = braking_problem(m, lp.limits, lp.period)
    assert not problem, (what, problem)
    return m


def _running_mid_chunk(g, attempts: int = 3):
    """An unlimited episode whose executor just started a chunk with >= 20 rows left: the instant the faults
    below are injected. On a loaded host the inference heartbeat can lapse and end an episode before that
    (finding 2 in docs/reliability.md); such a set-up is retried with a fresh goal, at most ``attempts`` times."""
    last = None
    for _ in range(attempts):
        h = g.episodes.send(PROMPT, max_chunks=0, max_duration_s=90)
        _first_chunk_published(h)
        try:
            return (h, *g.wait_mid_chunk(20, 30))
        except TimeoutError as exc:
            last = exc
            if not h.done():
                h.cancel()
            h.result(60)
            g.rearm()
    raise last


def test_cancel_mid_chunk_stops_the_arm_within_a_heartbeat_and_the_next_goal_runs(g, loop):
    """Cancel: the inference node beats idle at once; the executor cuts the plan on that beat (no watchdog
    wait, no playing out of chunks already published) and decelerates to hold."""
    h, _t, before = _running_mid_chunk(g)
    plan_end = max(seg[1] for seg in before["plan"])
    ended, cuts = before["counters"]["episodes_ended_idle"], before["counters"]["watchdog_cuts"]
    t_fault, t_mono = time.time_ns(), time.monotonic()
    h.cancel()
    hit = wait_until(lambda: g.state.first_since(t_mono, lambda s: s["counters"]["episodes_ended_idle"] == ended + 1),
                     10, "the executor ending the episode on the idle heartbeat")
    res = h.result(30)
    assert (res.outcome, res.reason) == ("cancelled", "cancel requested")
    assert hit[1]["plan"] == [] and hit[1]["next_index"] < plan_end, hit[1]         # cut mid-chunk
    g.commands.wait_for(lambda s: s.stamp_ns > t_fault + int(1.5e9), 10, "commands after the stop")
    m = g.commands.stop_metrics(t_fault)
    assert m.held_ticks >= int(round(0.5 / g.period)), m
    problem = braking_problem(m, g.limits, g.period)
    assert not problem, problem
    # ended by the idle beat (the cancel path), not by the watchdog: so it stopped within a heartbeat rather
    # than after the watchdog timeout (the seconds it takes are benchmarks/bench_faults.py's "cancel" row)
    assert g.state.latest()["counters"]["watchdog_cuts"] == cuts
    h = g.episodes.send(PROMPT, max_chunks=3)
    res = h.result(120)
    assert res.outcome == "completed" and res.reason == "reached max_chunks=3", (res.outcome, res.reason)


def test_inference_sigstop_mid_chunk_cuts_within_the_watchdog_and_the_episode_ends_cleanly(g, loop):
    h, _t, before = _running_mid_chunk(g)
    plan_end = max(seg[1] for seg in before["plan"])
    cuts = before["counters"]["watchdog_cuts"]
    inference = loop.graph.proc(INFERENCE)
    t_fault, t_mono = time.time_ns(), time.monotonic()
    inference.signal(signal.SIGSTOP)
    try:
        m = _stop_checks(g, t_fault, t_mono, cuts, plan_end, "SIGSTOP")
    finally:
        inference.signal(signal.SIGCONT)
    # the inference process resumes: the cut chunk's feedback never comes, so the episode ends with a reason
    _aborted(h, 60, "executed actions")
    assert m.stop_distance is not None


def test_inference_sigkill_mid_chunk_cuts_within_the_watchdog_and_the_arm_holds(g, loop):
    h, _t, before = _running_mid_chunk(g)
    plan_end = max(seg[1] for seg in before["plan"])
    cuts = before["counters"]["watchdog_cuts"]
    t_fault, t_mono = time.time_ns(), time.monotonic()
    loop.graph.proc(INFERENCE).signal(signal.SIGKILL)
    _stop_checks(g, t_fault, t_mono, cuts, plan_end, "SIGKILL")
    # nothing moves afterwards: the executor holds, the sim follows
    t = time.time_ns()
    g.commands.wait_for(lambda s: s.stamp_ns > t + int(1e9), 10, "one more second of commands")
    held = g.commands.window(t)
    assert all(np.array_equal(s.q, held[0].q) for s in held)
    assert g.state.latest()["state"] == "holding" and loop.graph.proc(EXECUTOR).alive()
