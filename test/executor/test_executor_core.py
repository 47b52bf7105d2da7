"""Executor core with a fake clock (no ROS): timeline, seams, validation, watchdogs, latches, state sanity."""
from __future__ import annotations

import numpy as np
import pytest

from lingbot_va_ros.executor.chunks import PreparedChunk, Rejection
from lingbot_va_ros.executor.clock import FakeClock, JointStateSample
from lingbot_va_ros.executor.limits import SafetyLimiter
from lingbot_va_ros.executor.testing import chunk_data, make_core, make_limits, make_preparer, ramp

DT = 0.02
ARM = [i for i in range(14) if i not in (6, 13)]


class Rig:
    """Core + preparer + an ideal arm (measured = last command) on a fake clock; heartbeats every tick."""

    def __init__(self, q0=None, limits=None, **cfg):
        self.limits = limits or make_limits()
        cfg.setdefault("heartbeat_timeout", 0.1)
        cfg.setdefault("gap_timeout", 0.06)
        self.core = make_core(self.limits, period=DT, **cfg)
        self.prep = make_preparer(self.limits, period=DT)
        self.clock = FakeClock()
        self.q = np.zeros(14) if q0 is None else np.asarray(q0, dtype=float)
        self.heartbeat_episode: str | None = "ep"
        self.state_override = None
        self.results = []
        self.tick()  # initialise the command from the measured state

    @property
    def now(self) -> float:
        return self.clock()

    def state(self):
        if self.state_override is not None:
            return self.state_override(self)
        return JointStateSample(self.q.copy(), self.now)

    def send(self, rows, **kw) -> str:
        item = self.prep.prepare(chunk_data(rows, **kw), self.now)
        return self.core.ingest(item, self.now)

    def tick(self, n: int = 1):
        out = []
        for _ in range(n):
            self.clock.advance(DT)
            if self.heartbeat_episode is not None:
                self.core.heartbeat(self.heartbeat_episode, self.now)
            r = self.core.step(self.now, self.state())
            if r.command is not None:
                self.q = r.command.copy()
            self.results.append(r)
            out.append(r)
        return out

    def executed(self, results=None):
        return [r.executed.index for r in (results or self.results) if r.executed is not None]

    def ticks(self, results=None):
        return [r.tick for r in (results or self.results) if r.tick is not None]

    def events(self, results=None):
        return [e for r in (results or self.results) for e in r.events]


def slow_rows(q0, n, v=0.05, start=1):
    """Rows moving the arm joints at v rad/s from q0 (even from rest within every limit: never clamped)."""
    q = np.repeat(np.asarray(q0, float)[None], n, axis=0)
    q[:, ARM] += (np.arange(start, start + n) * v * DT)[:, None]
    return q


# ------------------------------------------------------------------------------------------- timeline
def test_waits_for_state_then_initialises_from_it():
    core = make_core(heartbeat_timeout=0.1)
    r = core.step(1.0, None)
    assert r.command is None and core.state == "waiting_for_state"
    q0 = np.full(14, 0.01)
    r = core.step(1.02, JointStateSample(q0, 1.02))
    np.testing.assert_allclose(r.command, q0)
    assert core.state == "holding"


def test_chunk_executes_one_action_per_tick_and_ticks_every_keyframe():
    rig = Rig(actions_per_keyframe=4, seam_policy="hard")
    rows = slow_rows(rig.q, 16)
    assert "accepted" in rig.send(rows)
    res = rig.tick(16)
    assert rig.executed(res) == list(range(16))
    ticks = rig.ticks(res)
    assert [(t.action_index, t.key_frame_index) for t in ticks] == [(3, 1), (7, 2), (11, 3), (15, 4)]
    assert [[row.index for row in t.rows] for t in ticks] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11],
                                                            [12, 13, 14, 15]]
    # slow enough for every limit: executed exactly as predicted, not marked modified
    np.testing.assert_allclose(rig.q, rows[-1], atol=1e-12)
    assert not any(row.modified for t in ticks for row in t.rows)
    assert rig.core.next_index == 16


def test_holding_never_advances_the_index_and_never_repeats_actions():
    rig = Rig(seam_policy="hard")
    rig.send(slow_rows(rig.q, 6, v=0.4))
    rig.tick(6)
    before, v_before = rig.q.copy(), abs(rig.results[-1].velocity[0])
    assert v_before > 0.2
    res = rig.tick(20)  # nothing covers action 6
    assert rig.executed(res) == [] and rig.core.next_index == 6
    assert rig.core.state == "holding" and "starved" in rig.core.reason
    assert any("no chunk covers action 6" in e for e in rig.events(res))
    # decelerated from 0.2 rad/s within stop_deceleration, then held still
    steps = np.diff(np.stack([before] + [r.command for r in res]), axis=0)
    assert np.all(np.abs(steps[-5:]) == 0.0)
    speeds = np.abs(steps[:, 0]) / DT
    assert np.all(np.diff(speeds) <= 1e-9)
    assert np.all(np.abs(np.diff(speeds, prepend=v_before)) <= rig.limits.stop_deceleration[0] * DT + 1e-9)


def test_late_chunk_drops_past_rows_and_entirely_past_chunk_is_ignored():
    rig = Rig(seam_policy="hard")
    rig.send(slow_rows(rig.q, 8), chunk_index=0)
    rig.tick(5)
    assert rig.core.next_index == 5
    # chunk 1 covers [2, 10): rows 2..4 are already past
    late = slow_rows(np.zeros(14), 8, start=3)
    out = rig.send(late, chunk_index=1, start=2)
    assert "3 late rows dropped" in out
    assert rig.core.counters["late_rows_dropped"] == 3
    res = rig.tick(5)
    assert rig.executed(res) == [5, 6, 7, 8, 9]
    np.testing.assert_allclose(res[0].executed.command, late[3])
    out = rig.send(slow_rows(np.zeros(14), 4), chunk_index=2, start=0)
    assert "entirely in the past" in out and rig.core.counters["chunks_past"] == 1


def test_duplicate_and_older_chunks_are_ignored_and_counted():
    rig = Rig()
    rows = slow_rows(rig.q, 8)
    assert "accepted" in rig.send(rows, chunk_index=3)
    assert "duplicate" in rig.send(rows, chunk_index=3)
    assert "old" in rig.send(rows, chunk_index=1)
    c = rig.core.counters
    assert (c["chunks_accepted"], c["chunks_duplicate"], c["chunks_old"], c["chunks_rejected"]) == (1, 1, 1, 0)


def test_gap_chunk_is_buffered_hold_is_reported_and_a_covering_chunk_resumes():
    rig = Rig(seam_policy="hard", gap_timeout=0.06)
    rig.send(slow_rows(rig.q, 4), chunk_index=0, start=0)
    out = rig.send(slow_rows(np.zeros(14), 4, start=9), chunk_index=1, start=8)
    assert "buffered after a gap" in out
    res = rig.tick(12)
    assert rig.executed(res) == [0, 1, 2, 3]
    assert rig.core.counters["gap_timeouts"] == 1 and "gap" in rig.core.reason
    assert rig.core.next_index == 4
    # a newer chunk covering the hole (and beyond) takes over from its start
    rig.send(slow_rows(rig.q, 10, start=1), chunk_index=2, start=4)
    res = rig.tick(10)
    assert rig.executed(res) == list(range(4, 14))


def test_old_episode_chunks_ignored_and_new_episode_restarts_at_zero():
    rig = Rig(seam_policy="hard")
    rig.send(slow_rows(rig.q, 20), episode="ep")
    rig.tick(6)
    rig.heartbeat_episode = "ep2"   # the inference process moved on to a new episode: "ep" is over, cut
    events = rig.tick()[0].events
    assert any("moved on to episode 'ep2': episode 'ep' ended" in e for e in events), events
    assert rig.core.counters["episodes_ended_idle"] == 1
    q_now = rig.q.copy()
    out = rig.send(slow_rows(q_now, 8), episode="ep2", chunk_index=0)
    assert "accepted" in out and rig.core.episode == "ep2" and rig.core.next_index == 0
    res = rig.tick(8)
    assert rig.executed(res)[0] == 0
    assert "ignored: episode already finished" in rig.send(slow_rows(rig.q, 4), episode="ep", chunk_index=9)


def test_new_episode_first_action_must_pass_the_jump_check():
    rig = Rig()
    rig.send(slow_rows(rig.q, 4), episode="ep")
    rig.tick(4)
    rig.heartbeat_episode = "ep2"
    rig.tick()
    far = np.repeat((rig.q + 0.5)[None], 4, axis=0)
    far[:, [6, 13]] = rig.q[[6, 13]]
    out = rig.send(far, episode="ep2")
    assert out.startswith("rejected") and "max_first_jump" in out
    assert rig.core.counters["chunks_rejected"] == 1


# ------------------------------------------------------------------------------------------- seams
def stiff_limits():
    """Limits whose acceleration bound never binds, so blend values can be read off the commands."""
    return make_limits(limits={"velocity_scale": 1.0,
                               "default": {"position_margin": 0.02, "max_acceleration": 1000.0, "max_step": 0.1,
                                           "max_first_jump": 0.2, "tracking_tolerance": 0.5}})


def _overlap_setup(policy, **cfg):
    rig = Rig(seam_policy=policy, crossfade_ticks=4, frozen_actions=2, limits=stiff_limits(), **cfg)
    old = slow_rows(rig.q, 30, v=0.2)
    rig.send(old, chunk_index=0)
    rig.tick(10)                 # executed 0..9 (the first 4 eased in from rest: blended)
    rig.core.counters["blended_rows"] = 0
    new = old + 0.05             # a different prediction for the same indices (within max_first_jump)
    new[:, [6, 13]] = old[:, [6, 13]]
    rig.send(new[10:], chunk_index=1, start=10)
    return rig, old, new


def test_seam_hard_switches_at_once():
    rig, old, new = _overlap_setup("hard")
    res = rig.tick(3)
    assert rig.executed(res) == [10, 11, 12]
    # the accel limit may clamp the jump; the target is the new chunk from the first row on
    assert rig.core.counters["blended_rows"] == 0
    rig.tick(10)
    np.testing.assert_allclose(rig.q[ARM], new[22, ARM], atol=1e-9)


def test_seam_crossfade_blends_from_the_replaced_plan_over_k_ticks():
    rig, old, new = _overlap_setup("crossfade")
    res = rig.tick(6)
    cmds = np.stack([r.executed.command for r in res])
    for k in range(4):
        w = (k + 1) / 5
        expect = (1 - w) * old[10 + k] + w * new[10 + k]
        np.testing.assert_allclose(cmds[k, ARM], expect[ARM], atol=1e-9)
        assert res[k].executed.modified
    np.testing.assert_allclose(cmds[4, ARM], new[14, ARM], atol=1e-9)
    assert not res[4].executed.modified
    assert rig.core.counters["blended_rows"] == 4


def test_seam_frozen_prefix_keeps_committed_actions_then_blends():
    rig, old, new = _overlap_setup("frozen_prefix")
    res = rig.tick(8)
    cmds = np.stack([r.executed.command for r in res])
    np.testing.assert_allclose(cmds[:2, ARM], old[10:12, ARM], atol=1e-9)   # d = 2 committed actions
    for k in range(4):
        w = (k + 1) / 5
        np.testing.assert_allclose(cmds[2 + k, ARM], ((1 - w) * old[12 + k] + w * new[12 + k])[ARM], atol=1e-9)
    np.testing.assert_allclose(cmds[6, ARM], new[16, ARM], atol=1e-9)
    assert rig.core.counters["frozen_rows"] == 2


def test_tiled_continuation_is_not_blended_even_with_crossfade():
    rig = Rig(seam_policy="crossfade")
    rows = slow_rows(rig.q, 16)
    rig.send(rows[:8], chunk_index=0, start=0)
    rig.tick(4)
    blended_at_start = rig.core.counters["blended_rows"]   # the ease-in from rest of the first chunk
    rig.send(rows[8:], chunk_index=1, start=8)  # arrives early, tiles exactly
    res = rig.tick(12)
    assert rig.executed(res) == list(range(4, 16))
    assert rig.core.counters["blended_rows"] == blended_at_start
    np.testing.assert_allclose(rig.q, rows[-1], atol=1e-12)


def test_resume_after_hold_crossfades_from_the_held_command():
    rig = Rig(seam_policy="crossfade", crossfade_ticks=3)
    q0 = rig.q.copy()
    rows = np.repeat(q0[None], 6, axis=0)
    rows[:, 0] += 0.1            # a step (allowed: < max_first_jump) instead of a ramp
    rig.send(rows)
    res = rig.tick(4)
    got = [r.executed.command[0] for r in res]
    # targets 0.025, 0.05, 0.075 (blend weights 1/4, 2/4, 3/4), then 0.1; accel/step limits may trail them
    assert got[0] <= 0.025 + 1e-12 and np.all(np.diff(got) >= 0)
    assert rig.core.counters["blended_rows"] == 3


# ------------------------------------------------------------------------------------------- validation
@pytest.mark.parametrize("mutate, category", [
    (lambda d: d.__setitem__("rows", np.full((4, 14), np.nan)), "nonfinite"),
    (lambda d: d.__setitem__("rows", np.zeros((4, 13))), "shape"),
    (lambda d: d.__setitem__("names", tuple(f"j{i}" for i in range(14))), "channels"),
    (lambda d: d.__setitem__("period", 1 / 30), "period"),
    (lambda d: d.__setitem__("space", "cartesian"), "action_space"),
])
def test_ingest_rejects_the_whole_chunk_with_a_reason(mutate, category):
    rig = Rig()
    spec = {"rows": slow_rows(rig.q, 4), "names": rig.limits.names, "period": DT, "space": "joint"}
    mutate(spec)
    item = rig.prep.prepare(chunk_data(spec["rows"], names=spec["names"], period=spec["period"],
                                       space=spec["space"]))
    assert isinstance(item, Rejection) and item.category == category, item
    assert rig.core.ingest(item, rig.now).startswith("rejected")
    assert rig.core.rejections_by_category == {category: 1}


def test_ingest_rejects_targets_far_outside_limits_and_internal_jumps():
    lim = make_limits()
    prep = make_preparer(lim)
    far = np.zeros((3, 14))
    far[1, 0] = 2.5   # limit 2.0, tolerance 5 % of 4.0 = 0.2
    assert prep.prepare(chunk_data(far)).category == "limits"
    jumpy = np.zeros((3, 14))
    jumpy[2, 1] = 0.3
    assert prep.prepare(chunk_data(jumpy)).category == "row_jump"
    assert prep.prepare(chunk_data(np.zeros((2000, 14)))).category == "size"
    slight = np.zeros((3, 14))
    slight[:, 0] = 2.05          # within the tolerance: accepted, then clamped at the final write
    assert isinstance(prep.prepare(chunk_data(slight)), PreparedChunk)


def test_a_gripper_past_its_limits_is_clamped_a_joint_is_rejected():
    """A policy closes a gripper past closed to grasp (post-trained sim checkpoints asked for 11 % of the range
    below closed and 29 % above open): accepted up to gripper_limit_tolerance (default a whole range) and clamped
    at the final write; an arm joint at the same fraction of its range, or a gripper target beyond the tolerance
    (a unit error), is rejected."""
    lim = make_limits()
    prep = make_preparer(lim)
    g = lim.names.index("left_gripper")
    width = lim.upper[g] - lim.lower[g]
    closing = np.zeros((3, 14))
    for target in (lim.lower[g] - 0.11 * width, lim.upper[g] + 0.29 * width, lim.upper[g] + 0.9 * width):
        closing[:, g] = target
        assert isinstance(prep.prepare(chunk_data(closing)), PreparedChunk), target
    closing[:, g] = 1000 * lim.upper[g]                   # millimetres sent as metres
    assert prep.prepare(chunk_data(closing)).category == "limits"
    arm = np.zeros((3, 14))
    arm[:, 0] = lim.lower[0] - 0.11 * (lim.upper[0] - lim.lower[0])
    assert prep.prepare(chunk_data(arm)).category == "limits"
    strict = make_preparer(lim, gripper_limit_tolerance=0.05)
    closing[:, g] = lim.lower[g] - 0.11 * width
    assert strict.prepare(chunk_data(closing)).category == "limits"
    # the accepted target is clamped into the limits before it reaches the driver
    q = np.zeros(14)
    q[g] = lim.soft_lower[g]
    res = SafetyLimiter(lim, 0.02).limit(np.where(np.arange(14) == g, lim.lower[g] - 0.11 * width, 0.0), q,
                                          np.zeros(14))
    assert res.position[g] >= lim.lower[g] and res.modified


def test_channel_permutation_is_accepted_and_reported_back_in_the_chunk_order():
    lim = make_limits()
    prep = make_preparer(lim)
    names = list(reversed(lim.names))
    rows = np.stack([np.arange(14) * 1e-3, np.arange(14) * 1e-3 + 1e-3]).astype(np.float32)
    item = prep.prepare(chunk_data(rows, names=names))
    assert isinstance(item, PreparedChunk)
    np.testing.assert_allclose(item.joints[0], rows[0][::-1], atol=1e-7)
    # unmodified rows are reported bit for bit; modified rows are the commanded joints in chunk order
    commanded = item.joints.copy()
    commanded[1, 0] += 0.5
    out = item.report_rows(commanded, np.array([False, True]), np.array([0, 1]))
    assert out[0].tobytes() == rows[0].tobytes()
    np.testing.assert_allclose(out[1], commanded[1][::-1], atol=1e-6)


def test_first_jump_rejected_at_ingest_and_at_activation():
    rig = Rig(seam_policy="hard")
    far = np.repeat((rig.q + 0.3)[None], 4, axis=0)
    far[:, [6, 13]] = 0.0
    assert "first action" in rig.send(far, chunk_index=0)
    assert "accepted" in rig.send(slow_rows(rig.q, 4), chunk_index=1, start=0)
    # a buffered chunk (after a gap) cannot be checked against a plan: it is checked when it becomes active
    assert "buffered" in rig.send(far, chunk_index=2, start=6)
    # a newer chunk fills the gap [4, 6) without overlapping the buffered one, which therefore stays
    assert "accepted" in rig.send(slow_rows(np.zeros(14), 2, start=5), chunk_index=3, start=4)
    res = rig.tick(10)
    assert rig.executed(res) == [0, 1, 2, 3, 4, 5]
    assert rig.core.counters["chunks_rejected"] == 2 and rig.core.rejections_by_category == {"first_jump": 2}
    assert "when it became active" in rig.core.last_rejection
    assert rig.core.next_index == 6 and rig.core.state == "holding"


def test_gap_filled_by_a_newer_chunk_continues_into_the_buffered_chunk():
    rig = Rig(seam_policy="hard")
    rows = slow_rows(rig.q, 12)
    rig.send(rows[:4], chunk_index=0, start=0)
    rig.send(rows[8:], chunk_index=1, start=8)     # buffered: 4..7 missing
    rig.tick(6)
    assert rig.core.next_index == 4
    rig.send(rows[4:8], chunk_index=2, start=4)    # fills the gap exactly
    res = rig.tick(8)
    assert rig.executed(res) == [4, 5, 6, 7, 8, 9, 10, 11]


def test_consecutive_bad_chunks_latch_a_fault_until_rearm():
    rig = Rig(max_bad_chunks=3)
    bad = np.full((4, 14), np.inf)
    for i in range(3):
        rig.send(bad, chunk_index=i)
    rig.tick()
    assert rig.core.state == "fault" and "bad_chunks" in rig.core.latched
    assert "dropped: latched" in rig.send(slow_rows(rig.q, 4), chunk_index=5)
    ok, msg = rig.core.rearm(rig.now, rig.state())
    assert ok and "bad_chunks" in msg
    assert "accepted" in rig.send(slow_rows(rig.q, 4), chunk_index=6)
    rig.tick(4)
    assert rig.core.state == "executing" or rig.core.next_index == 4


def test_a_good_chunk_resets_the_bad_streak():
    rig = Rig(max_bad_chunks=2)
    rig.send(np.full((4, 14), np.nan), chunk_index=0)
    rig.send(slow_rows(rig.q, 4), chunk_index=1)
    rig.send(np.full((4, 14), np.nan), chunk_index=2)
    assert not rig.core.latched


# ------------------------------------------------------------------------------------------- watchdogs
def test_stale_heartbeat_cuts_the_active_chunk_mid_chunk_then_holds():
    rig = Rig(heartbeat_timeout=0.1, seam_policy="hard")
    rig.send(slow_rows(rig.q, 50))
    rig.tick(10)
    rig.heartbeat_episode = None            # the inference process dies
    res = rig.tick(30)
    executed = rig.executed(res)
    # heartbeat age exceeds 0.1 s after 6 ticks of 20 ms: at most 5 more actions, then never again
    assert executed == list(range(10, 10 + len(executed))) and len(executed) <= 5
    assert rig.core.counters["watchdog_cuts"] == 1
    assert rig.core.state == "holding" and "heartbeat stale" in rig.core.reason
    assert np.all(np.diff(np.stack([r.command for r in res[-5:]]), axis=0) == 0)
    assert rig.core.next_index == 10 + len(executed)
    # the rest of the cut chunk never executes, even when the heartbeat returns
    rig.heartbeat_episode = "ep"
    assert rig.executed(rig.tick(5)) == []
    # a fresh chunk covering the next index resumes (no re-arm needed by default)
    rig.send(slow_rows(rig.q, 5), chunk_index=1, start=rig.core.next_index)
    assert len(rig.executed(rig.tick(5))) == 5


def test_chunks_arriving_while_the_heartbeat_is_stale_are_dropped():
    rig = Rig(heartbeat_timeout=0.1)
    rig.heartbeat_episode = None
    rig.tick(10)
    assert "heartbeat stale" in rig.send(slow_rows(rig.q, 4))
    assert rig.core.counters["chunks_dropped_stale"] == 1


def test_heartbeat_for_another_episode_does_not_keep_this_episode_alive():
    rig = Rig(heartbeat_timeout=0.1, seam_policy="hard")
    rig.send(slow_rows(rig.q, 40))
    rig.tick(5)
    rig.heartbeat_episode = "other-episode"   # the inference node runs one episode at a time: "ep" is over
    assert rig.executed(rig.tick(10)) == []
    assert rig.core.counters["episodes_ended_idle"] == 1 and rig.core.counters["watchdog_cuts"] == 0


def test_a_chunk_whose_episode_never_beat_needs_the_idle_beat():
    """A chunk naming an episode the inference node never announced, while it beats another one, is dropped."""
    rig = Rig(heartbeat_timeout=0.1)
    rig.heartbeat_episode = "ep"
    rig.tick(3)
    assert "heartbeat stale" in rig.send(slow_rows(rig.q, 8), episode="orphan")
    assert rig.executed(rig.tick(3)) == []


def test_idle_heartbeat_after_the_episodes_own_ends_it_at_once():
    """Cancel/abort: the inference node beats "" (idle) right away; the plan is cut within the next tick."""
    rig = Rig(heartbeat_timeout=0.1, seam_policy="hard")
    rig.send(slow_rows(rig.q, 50))
    rig.tick(10)
    rig.heartbeat_episode = ""               # the inference process went idle: the episode is over
    res = rig.tick(15)
    assert rig.executed(res) == []           # no action of the cut chunk after the idle beat
    assert rig.core.counters["episodes_ended_idle"] == 1 and rig.core.counters["watchdog_cuts"] == 0
    assert rig.core.state == "holding" and "ended by the inference node" in rig.core.reason
    assert any("inference went idle" in e for e in sum((r.events for r in res), []))
    # the ended episode's late chunks never execute; the inference node stays alive (idle beats are fresh)
    assert "ignored: episode already finished" in rig.send(slow_rows(rig.q, 4), chunk_index=1, start=10)
    assert rig.core.heartbeat_age(rig.now) <= DT + 1e-9
    # the next episode runs normally
    rig.heartbeat_episode = "ep2"
    out = rig.send(slow_rows(rig.q, 6), episode="ep2")
    assert "accepted" in out
    assert rig.executed(rig.tick(6)) == list(range(6))


def test_idle_heartbeat_counts_for_a_new_episode_until_its_own_beat_arrives():
    """The first chunk may arrive before the first beat naming its episode: the idle beat shows liveness."""
    rig = Rig(heartbeat_timeout=0.1)
    rig.heartbeat_episode = ""
    rig.tick(3)
    assert "accepted" in rig.send(slow_rows(rig.q, 8), episode="ep3")
    assert len(rig.executed(rig.tick(3))) == 3
    rig.heartbeat_episode = "ep3"
    assert len(rig.executed(rig.tick(5))) == 5 and rig.core.counters["episodes_ended_idle"] == 0


def test_stale_requires_rearm_option_latches():
    rig = Rig(heartbeat_timeout=0.1, stale_requires_rearm=True)
    rig.send(slow_rows(rig.q, 40))
    rig.tick(5)
    rig.heartbeat_episode = None
    rig.tick(10)
    assert rig.core.state == "fault" and "heartbeat" in rig.core.latched


def test_e_stop_latches_a_controlled_stop_until_rearm():
    rig = Rig(seam_policy="hard")
    rig.send(slow_rows(rig.q, 100, v=1.0))
    rig.tick(20)
    v_before = np.abs(rig.results[-1].velocity).max()
    rig.core.e_stop(rig.now)
    res = rig.tick(30)
    assert rig.executed(res) == [] and rig.core.state == "estop"
    speeds = [np.abs(r.velocity).max() for r in res]
    assert speeds[0] < v_before and speeds[-1] == 0.0
    assert np.all(np.diff(speeds) <= 1e-12)
    assert "dropped: latched" in rig.send(slow_rows(rig.q, 4), chunk_index=1, start=rig.core.next_index)
    rig.tick(5)
    assert rig.core.state == "estop"           # stays latched: no timeout clears it
    ok, _ = rig.core.rearm(rig.now, rig.state())
    assert ok and not rig.core.latched
    rig.tick()
    assert rig.core.state == "holding"
    rig.send(slow_rows(rig.q, 4), chunk_index=2, start=rig.core.next_index)
    assert len(rig.executed(rig.tick(4))) == 4
    assert rig.core.counters["e_stops"] == 1 and rig.core.counters["rearms"] == 1


# ------------------------------------------------------------------------------------------- state sanity
def test_stale_joint_state_faults_and_rearm_is_refused_while_it_persists():
    rig = Rig(state_timeout=0.1)
    frozen_at = rig.now
    rig.state_override = lambda r: JointStateSample(r.q.copy(), frozen_at)
    rig.tick(10)
    assert rig.core.state == "fault" and "state_stale" in rig.core.latched
    ok, msg = rig.core.rearm(rig.now, rig.state())
    assert not ok and "stale" in msg
    rig.state_override = None
    assert rig.core.rearm(rig.now, rig.state())[0]


@pytest.mark.parametrize("bad_value, key", [(np.nan, "state_nonfinite"), (3.0, "state_out_of_range"),
                                            (0.7, "tracking")])
def test_insane_joint_state_faults(bad_value, key):
    rig = Rig()

    def state(r):
        q = r.q.copy()
        q[2] = bad_value
        return JointStateSample(q, r.now)

    rig.state_override = state
    rig.tick(2)
    assert rig.core.state == "fault" and key in rig.core.latched
    assert rig.core.status(rig.now)["counters"]["faults"] == 1


def test_driver_fault_latches():
    rig = Rig()
    rig.core.step(rig.now + DT, rig.state(), driver_fault="CAN bus lost")
    assert rig.core.state == "fault" and "CAN bus lost" in rig.core.latched["driver"]


def test_status_is_json_serialisable_and_complete():
    import json

    rig = Rig()
    rig.send(slow_rows(rig.q, 4))
    rig.tick(2)
    status = json.loads(json.dumps(rig.core.status(rig.now)))
    assert {"state", "reason", "episode", "next_index", "counters", "latched", "plan"} <= set(status)
    assert status["next_index"] == 2 and status["episode"] == "ep"


def test_ramp_helper_moves_only_arm_joints():
    r = ramp(np.zeros(14), 3, velocity=1.0, period=0.02)
    assert r[0, 0] == pytest.approx(0.02) and r[2, 6] == 0.0
