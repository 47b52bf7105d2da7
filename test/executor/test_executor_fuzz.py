"""Property-based fuzzing of chunks and joint states: whatever arrives, the emitted command is finite,
within the position limits and within the per-tick step bound, and the timeline stays consistent."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lingbot_va_ros.executor.chunks import ChunkData
from lingbot_va_ros.executor.clock import JointStateSample
from lingbot_va_ros.executor.testing import make_core, make_limits, make_preparer

DT = 0.02
LIM = make_limits()
NAMES = LIM.names
J = len(NAMES)

nasty_floats = st.one_of(
    st.floats(-2.5, 2.5, allow_nan=False, width=32),
    st.sampled_from([np.nan, np.inf, -np.inf, 1e308, -1e308, 3.4e38, 0.0, -0.0, 1e-45]),
)


@st.composite
def chunk_msgs(draw):
    kind = draw(st.sampled_from(["good"] * 6 + ["noise", "shape", "names", "empty", "period"]))
    rows = draw(st.integers(1, 16))
    # start / chunk_index: mostly relative to the executor's next index / last accepted chunk (so chunks
    # really execute, overlap and tile), sometimes absolute garbage (past, negative, gaps, reversed order)
    relative = draw(st.booleans()) or kind == "good"
    start = draw(st.integers(-3, 3)) if relative else draw(st.integers(-3, 40))
    index = draw(st.integers(0, 2)) if relative else draw(st.integers(-1, 12))
    episode = draw(st.sampled_from(["a", "a", "a", "a", "b", ""]))
    base = draw(st.floats(-0.15, 0.15))
    if kind == "good":   # plausible, smooth rows near the current region
        slope = draw(st.floats(-0.02, 0.02))
        values = base + slope * np.arange(rows)[:, None] + np.zeros((rows, J))
        values[:, [6, 13]] = np.clip(0.01 + 0.01 * values[:, [6, 13]], 0.0, 0.04)
        shape = (rows, J)
        flat = values.astype(np.float32).reshape(-1)
    elif kind == "noise":
        shape = (rows, J)
        flat = np.array(draw(st.lists(nasty_floats, min_size=rows * J, max_size=rows * J)), dtype=np.float64)
        with np.errstate(over="ignore"):
            flat = flat.astype(np.float32)
    elif kind == "shape":
        shape = tuple(draw(st.lists(st.integers(-2, 20), min_size=0, max_size=3)))
        flat = np.zeros(draw(st.integers(0, 60)), dtype=np.float32)
    elif kind == "empty":
        shape, flat = (0, J), np.zeros(0, dtype=np.float32)
    else:
        shape = (rows, J)
        flat = np.full(rows * J, base, dtype=np.float32)
    names = NAMES if kind != "names" else tuple(reversed(NAMES[:-1])) + ("bogus",)
    period = DT if kind != "period" else draw(st.sampled_from([0.0, 0.033, 1.0]))
    data = ChunkData(episode_id=episode, chunk_index=index, start_index=start, action_space="joint",
                     channel_names=names, shape=shape, actions=flat, control_period=period)
    return data, relative


_chunk = st.tuples(st.just("chunk"), chunk_msgs())
_tick = st.tuples(st.just("tick"), st.integers(1, 8))
events = st.one_of(
    _chunk, _chunk, _chunk, _chunk, _tick, _tick, _tick,
    st.tuples(st.just("heartbeat_off"), st.integers(1, 15)),
    st.tuples(st.just("bad_state"), st.sampled_from(["nan", "far", "stale"])),
    st.tuples(st.just("e_stop"), st.just(0)),
    st.tuples(st.just("rearm"), st.just(0)),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(events, min_size=1, max_size=40), st.sampled_from(["hard", "crossfade", "frozen_prefix"]))
def test_commands_stay_finite_in_limits_and_step_bounded(script, policy):
    core = make_core(LIM, period=DT, heartbeat_timeout=0.1, seam_policy=policy, max_bad_chunks=3)
    prep = make_preparer(LIM, period=DT)
    t = 1000.0
    q_meas = np.zeros(J)
    last = None
    hb_off = 0
    bad_state = None
    episode_index = {}

    def tick():
        nonlocal t, last, hb_off, bad_state, q_meas
        t += DT
        if hb_off > 0:
            hb_off -= 1
        else:
            core.heartbeat("", t)   # "" = the inference process is alive (counts for any episode)
        state = JointStateSample(q_meas.copy(), t)
        if bad_state == "nan":
            state = JointStateSample(np.full(J, np.nan), t)
        elif bad_state == "far":
            state = JointStateSample(q_meas + 5.0, t)
        elif bad_state == "stale":
            state = JointStateSample(q_meas.copy(), t - 10.0)
        bad_state = None
        ep_before, idx_before = core.episode, core.next_index
        r = core.step(t, state)
        assert r.command is not None
        cmd = r.command
        assert np.isfinite(cmd).all()
        assert np.all(cmd >= LIM.lower - 1e-12) and np.all(cmd <= LIM.upper + 1e-12)
        if last is not None:
            assert np.all(np.abs(cmd - last) <= LIM.max_step + 1e-12)
            assert np.all(np.abs(r.velocity) <= np.minimum(LIM.velocity, LIM.max_step / DT) + 1e-9)
        last = cmd.copy()
        q_meas = cmd.copy()
        # the index only moves by executing, one action per tick, within an episode
        if core.episode == ep_before:
            assert core.next_index - idx_before == (1 if r.executed is not None else 0)
        if r.executed is not None:
            assert r.executed.index == idx_before
        if r.tick is not None:
            assert (r.tick.action_index + 1) % core.cfg.actions_per_keyframe == 0
            assert r.tick.rows[-1].index == r.tick.action_index
            assert [row.index for row in r.tick.rows] == list(range(r.tick.rows[0].index, r.tick.action_index + 1))
        episode_index[core.episode] = core.next_index

    tick()
    for kind, arg in script:
        if kind == "chunk":
            data, relative = arg
            if relative and data.episode_id == core.episode:
                data = replace(data, start_index=core.next_index + data.start_index,
                               chunk_index=core._last_chunk_index + data.chunk_index)  # noqa: SLF001
            elif relative:  # a new episode starts at action 0
                data = replace(data, start_index=max(data.start_index, 0))
            core.ingest(prep.prepare(data, t), t)
        elif kind == "tick":
            for _ in range(arg):
                tick()
        elif kind == "heartbeat_off":
            hb_off = arg
        elif kind == "bad_state":
            bad_state = arg
            tick()
        elif kind == "e_stop":
            core.e_stop(t)
        elif kind == "rearm":
            core.rearm(t, JointStateSample(q_meas.copy(), t))
    for _ in range(5):
        tick()
    status = core.status(t)
    assert status["counters"]["chunks_received"] == sum(1 for k, _ in script if k == "chunk")


@settings(max_examples=200, deadline=None)
@given(st.lists(nasty_floats, min_size=J, max_size=J), st.lists(st.floats(-2.0, 2.0), min_size=J, max_size=J),
       st.lists(st.floats(-10, 10), min_size=J, max_size=J))
def test_limiter_invariants_for_any_target(target, q_prev, v_prev):
    from lingbot_va_ros.executor.limits import SafetyLimiter

    sl = SafetyLimiter(LIM, DT)
    q = np.clip(np.asarray(q_prev), LIM.lower, LIM.upper)
    res = sl.limit(np.asarray(target, dtype=np.float64), q, np.asarray(v_prev))
    assert np.isfinite(res.position).all()
    assert np.all(res.position >= LIM.lower) and np.all(res.position <= LIM.upper)
    assert np.all(np.abs(res.position - q) <= LIM.max_step + 1e-12)


@st.composite
def plausible_chunks(draw):
    """Valid chunks near the current command with adversarial timing: late, overlapping, early, duplicated,
    out of order, new episodes."""
    rows = draw(st.integers(1, 24))
    slope = draw(st.floats(-0.01, 0.01))
    offset = draw(st.floats(-0.05, 0.05))
    start = draw(st.integers(-4, 6))
    index_step = draw(st.sampled_from([1, 1, 1, 2, 0, -1]))
    new_episode = draw(st.integers(0, 19)) == 0
    return rows, slope, offset, start, index_step, new_episode


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(plausible_chunks(), st.integers(0, 10)), min_size=1, max_size=25),
       st.sampled_from(["hard", "crossfade", "frozen_prefix"]))
def test_plausible_streams_execute_and_keep_invariants(script, policy):
    core = make_core(LIM, period=DT, heartbeat_timeout=0.1, seam_policy=policy)
    prep = make_preparer(LIM, period=DT)
    t, q, episode, n_episode = 1000.0, np.zeros(J), "e0", 0
    executed = 0
    for (rows, slope, offset, start, index_step, new_episode), ticks in script:
        if new_episode:
            n_episode += 1
            episode = f"e{n_episode}"
        base = q + offset
        values = base + slope * np.arange(1, rows + 1)[:, None] + np.zeros((rows, J))
        values[:, [6, 13]] = q[[6, 13]]
        same = core.episode == episode
        index = (core._last_chunk_index + index_step) if same else 0  # noqa: SLF001
        data = ChunkData(episode_id=episode, chunk_index=index,
                         start_index=max(0, (core.next_index if same else 0) + start), action_space="joint",
                         channel_names=NAMES, shape=values.shape, actions=values.astype(np.float32).reshape(-1),
                         control_period=DT)
        core.ingest(prep.prepare(data, t), t)
        for _ in range(ticks):
            t += DT
            core.heartbeat("", t)
            before = core.next_index
            r = core.step(t, JointStateSample(q.copy(), t))
            assert np.isfinite(r.command).all()
            assert np.all(np.abs(r.command - q) <= LIM.max_step + 1e-12)
            assert np.all(r.command >= LIM.lower) and np.all(r.command <= LIM.upper)
            if r.executed is not None:
                executed += 1
                assert r.executed.index == before and core.next_index == before + 1
            q = r.command.copy()
    assert not core.latched or core.counters["chunks_rejected"] >= core.cfg.max_bad_chunks
