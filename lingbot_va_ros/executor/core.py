"""The executor's pure core: chunk timeline, seam policies, watchdogs, latches and the safety limiter.

No rclpy, no threads, no clock: the caller passes ``now`` (monotonic seconds) and the latest measured
state to :meth:`ExecutorCore.step` once per control tick and forwards the returned command to the driver.

Timeline contract (shared with inference and camera ingest):
- actions are counted from 0 per episode; a chunk covers [start_index, start_index + rows);
- the next index advances ONLY when an action from a chunk is executed (holding never advances it);
- a newer chunk (higher chunk_index) replaces the plan it overlaps from its first row on (the overlapped
  chunk's tail is dropped); rows already in the past are dropped; a chunk that starts beyond the plan
  leaves a gap and is buffered until a newer chunk fills the gap; an older/duplicate chunk or one entirely
  in the past is ignored; a new episode_id starts a new timeline at index 0.

Whenever no action may be executed (no chunk covers the next index, heartbeat stale, fault, e-stop), the
arm decelerates within its stop-deceleration limits and then holds the last command. Actions are never
repeated or extrapolated.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lingbot_va_ros.executor.chunks import PreparedChunk, Rejection
from lingbot_va_ros.executor.clock import JointStateSample
from lingbot_va_ros.executor.limits import (ACCELERATION, NONFINITE, POSITION, STEP, VELOCITY, JointLimits,
                                            SafetyLimiter)

SEAM_POLICIES = ("hard", "crossfade", "frozen_prefix")
_FAULT_COUNTERS = {"driver": "driver_faults", "overrun": "overrun_faults", "state_stale": "state_stale",
                   "state_nonfinite": "state_nonfinite", "state_out_of_range": "state_out_of_range",
                   "tracking": "tracking_errors"}
_STOPPED = 1e-6  # rad/s (or m/s) below which the arm counts as stopped

COUNTER_KEYS = (
    "chunks_received", "chunks_accepted", "chunks_rejected", "chunks_duplicate", "chunks_old",
    "chunks_past", "chunks_old_episode", "chunks_late", "late_rows_dropped", "chunks_gap_buffered",
    "chunks_replaced_tail", "chunks_dropped_latched", "chunks_dropped_stale", "episodes",
    "actions_executed", "keyframe_ticks", "rows_unreported", "blended_rows", "frozen_rows",
    "limited_actions", "clamp_position", "clamp_velocity", "clamp_acceleration", "clamp_step",
    "nonfinite_targets", "hold_ticks", "gap_timeouts", "starved_timeouts", "watchdog_cuts", "episodes_ended_idle",
    "e_stops", "faults", "rearms", "rearm_refused", "bad_chunk_faults", "state_stale", "state_nonfinite",
    "state_out_of_range", "tracking_errors", "driver_faults", "overrun_faults",
)


@dataclass
class CoreConfig:
    joint_names: tuple[str, ...]
    period: float
    actions_per_keyframe: int = 4
    seam_policy: str = "crossfade"
    crossfade_ticks: int = 4
    frozen_actions: int = 2
    max_bad_chunks: int = 3
    heartbeat_timeout: float = 0.3          # 0 = heartbeat not required (bench testing only)
    state_timeout: float = 0.2
    gap_timeout: float = 0.1
    stale_requires_rearm: bool = False
    state_range_tolerance: float = 0.05     # fraction of a joint's range a measured position may exceed

    def __post_init__(self) -> None:
        if self.seam_policy not in SEAM_POLICIES:
            raise ValueError(f"seam policy '{self.seam_policy}' unknown (choose from {SEAM_POLICIES})")
        if self.actions_per_keyframe < 1 or self.crossfade_ticks < 1 or self.frozen_actions < 0:
            raise ValueError("actions_per_keyframe and crossfade_ticks must be >= 1, frozen_actions >= 0")
        if self.max_bad_chunks < 1 or not self.period > 0:
            raise ValueError("max_bad_chunks must be >= 1 and period > 0")


@dataclass(eq=False)
class _Segment:
    """The part [start, end) of one chunk the plan currently uses."""

    chunk: PreparedChunk
    start: int
    end: int
    refs: dict[int, np.ndarray] = field(default_factory=dict)  # rows of the plan it replaced (seam blending)


@dataclass
class ExecutedRow:
    index: int
    chunk: PreparedChunk
    row: int                  # row within the chunk
    command: np.ndarray       # joints really commanded
    modified: bool            # seam blending or safety limiting changed it


@dataclass
class KeyframeTick:
    episode_id: str
    action_index: int
    key_frame_index: int
    rows: list[ExecutedRow]


@dataclass
class TickResult:
    command: np.ndarray | None = None
    velocity: np.ndarray | None = None
    executed: ExecutedRow | None = None
    tick: KeyframeTick | None = None
    events: list[str] = field(default_factory=list)
    state_changed: bool = False


class ExecutorCore:
    def __init__(self, config: CoreConfig, limits: JointLimits):
        if tuple(config.joint_names) != tuple(limits.names):
            raise ValueError("config.joint_names and limits.names differ")
        self.cfg = config
        self.limits = limits
        self.limiter = SafetyLimiter(limits, config.period)
        self.counters: dict[str, int] = {k: 0 for k in COUNTER_KEYS}
        self.rejections_by_category: dict[str, int] = {}
        width = limits.range_width()
        tol = np.where(np.isfinite(width), width * config.state_range_tolerance, np.inf)
        self._state_lo, self._state_hi = limits.lower - tol, limits.upper + tol
        # command state
        self._q: np.ndarray | None = None
        self._v = np.zeros(len(limits.names))
        # timeline
        self.episode: str | None = None
        self.episode_space: str | None = None
        self.next_index = 0
        self._last_chunk_index = -1
        self._segments: list[_Segment] = []
        self._active: _Segment | None = None
        self._overrides: dict[int, tuple[np.ndarray, str]] = {}
        self._executed_prev = False
        self._pending: list[ExecutedRow] = []
        self._past_episodes: OrderedDict[str, None] = OrderedDict()
        self._episode_ended = False          # the inference process went idle after beating for it
        # watchdogs and latches
        self._heartbeats: OrderedDict[str, float] = OrderedDict()
        self._latched: dict[str, str] = {}
        self._bad_streak = 0
        self._waiting_since: float | None = None
        self._wait_reported = False
        self._stale = False
        self.last_rejection = ""
        self._events: list[str] = []
        self._state = ("waiting_for_state", "no joint state received yet")
        self._last_step: float | None = None

    # ================================================================== inputs (called between ticks)
    def heartbeat(self, episode_id: str, now: float) -> None:
        """The inference heartbeat: frame_id is the running episode's id, "" while idle.

        A beat that is idle or names another episode, after beats for the current episode, means the inference
        process ended it (cancel, abort, completion, a restarted process; it runs one episode at a time): the
        plan is cut at once and the arm decelerates to hold, instead of playing out chunks nobody will ground."""
        self._heartbeats[episode_id] = now
        self._heartbeats.move_to_end(episode_id)
        while len(self._heartbeats) > 16:
            self._heartbeats.popitem(last=False)
        if (episode_id != self.episode and self.episode is not None and not self._episode_ended
                and self.episode in self._heartbeats):
            self._end_episode()

    def e_stop(self, now: float, source: str = "e_stop topic") -> None:
        if "e_stop" not in self._latched:
            self.counters["e_stops"] += 1
            self._latch("e_stop", f"e-stop from {source}: controlled stop, latched until re-armed", count=False)

    def fault(self, key: str, text: str) -> None:
        """External fault (driver, overrun): controlled stop, latched until re-armed."""
        if key not in self._latched:
            counter = _FAULT_COUNTERS.get(key)
            if counter:
                self.counters[counter] += 1
            self._latch(key, text)

    def rearm(self, now: float, state: JointStateSample | None) -> tuple[bool, str]:
        if not self._latched:
            return True, "nothing latched"
        if self._q is not None:
            problem = self._state_problem(now, state, tracking=False)
            if problem:
                self.counters["rearm_refused"] += 1
                return False, f"refused: {problem[1]}"
        cleared = ", ".join(sorted(self._latched))
        self._latched.clear()
        self._bad_streak = 0
        self._stale = False
        self.counters["rearms"] += 1
        if self._q is not None and state is not None and float(np.max(np.abs(self._v))) < _STOPPED:
            # Resume from where the arm really is (ros2_control does the same on activation).
            self._q = np.clip(np.asarray(state.positions, dtype=np.float64), self.limits.lower, self.limits.upper)
            self._v = np.zeros_like(self._v)
        self._event(f"re-armed (cleared: {cleared})")
        return True, f"re-armed (cleared: {cleared})"

    def ingest(self, item: PreparedChunk | Rejection, now: float) -> str:
        """Take one prepared chunk (or an ingest-time rejection). Returns what happened, for the log."""
        self.counters["chunks_received"] += 1
        if isinstance(item, Rejection):
            return self._bad(item.reason, item.category)
        c = item
        tag = f"chunk {c.episode_id}#{c.chunk_index}@[{c.start_index},{c.end})"
        if self._latched:
            self.counters["chunks_dropped_latched"] += 1
            return f"{tag} dropped: latched ({', '.join(sorted(self._latched))}); call the re-arm service"
        if c.episode_id in self._past_episodes:
            self.counters["chunks_old_episode"] += 1
            return f"{tag} ignored: episode already finished"
        if c.episode_id != self.episode:
            self._start_episode(c.episode_id)
        if not self._heartbeat_fresh(now):
            self.counters["chunks_dropped_stale"] += 1
            return f"{tag} dropped: inference heartbeat stale"
        if c.chunk_index <= self._last_chunk_index:
            key = "chunks_duplicate" if c.chunk_index == self._last_chunk_index else "chunks_old"
            self.counters[key] += 1
            return f"{tag} ignored: {key[7:]} (last accepted chunk_index {self._last_chunk_index})"
        if self.episode_space is not None and c.action_space != self.episode_space:
            return self._bad(f"{tag}: action space '{c.action_space}' differs from the episode's "
                             f"'{self.episode_space}'", "action_space")
        if c.end <= self.next_index:
            self.counters["chunks_past"] += 1
            return f"{tag} ignored: entirely in the past (next action {self.next_index})"
        start = max(c.start_index, self.next_index)
        late = start - c.start_index
        # First-action jump: against the current command, or against the planned action just before it.
        first = c.joints[start - c.start_index]
        reference = self._q if start == self.next_index else self._planned_row(start - 1)
        if reference is not None:
            bad = self._jump_problem(first, reference)
            if bad:
                return self._bad(f"{tag}: first action {bad}", "first_jump")
        gap = start > self._plan_end() and start > self.next_index
        self._splice(c, start)
        self._last_chunk_index = c.chunk_index
        self.episode_space = c.action_space
        self._bad_streak = 0
        self.counters["chunks_accepted"] += 1
        if late:
            self.counters["chunks_late"] += 1
            self.counters["late_rows_dropped"] += late
        if gap:
            self.counters["chunks_gap_buffered"] += 1
        return (f"{tag} accepted" + (f", {late} late rows dropped" if late else "")
                + (", buffered after a gap" if gap else ""))

    # ================================================================== the control tick
    def step(self, now: float, state: JointStateSample | None, driver_fault: str | None = None) -> TickResult:
        self._last_step = now
        result = TickResult(events=self._events)  # also carries the events of ingest/e-stop/re-arm since the last tick
        if self._q is None:
            if not self._initialise(now, state):
                return self._finish(result)
        else:
            problem = self._state_problem(now, state, tracking=True)
            if problem:
                self.fault(problem[0], problem[1])
        if driver_fault:
            self.fault("driver", f"driver fault: {driver_fault}")

        fresh = self._heartbeat_fresh(now)
        if not fresh and not self._stale:
            self._stale = True
            if self._segments:
                self.counters["watchdog_cuts"] += 1
                age = self.heartbeat_age(now)
                self._cut(f"inference heartbeat stale ({'never received' if age is None else f'{age:.3f} s old'}, "
                          f"timeout {self.cfg.heartbeat_timeout:.3f} s): cut the active chunk at action "
                          f"{self.next_index}, decelerating to hold")
            if self.cfg.stale_requires_rearm and self.episode is not None:
                self._latch("heartbeat", "inference heartbeat stale (stale_requires_rearm)")
        elif fresh and self._stale:
            self._stale = False
            if self.episode is not None:
                self._event("inference heartbeat fresh again")

        executed = None
        if not self._latched and fresh:
            executed = self._execute(now)
        if executed is None:
            res = self.limiter.stop_step(self._q, self._v)
            self._q, self._v = res.position, res.velocity
            self.counters["hold_ticks"] += 1
            self._executed_prev = False
            self._note_waiting(now)
        else:
            result.executed = executed
            result.tick = self._after_execution(executed)
        result.command, result.velocity = self._q.copy(), self._v.copy()
        return self._finish(result)

    # ================================================================== status
    @property
    def state(self) -> str:
        return self._state[0]

    @property
    def reason(self) -> str:
        return self._state[1]

    @property
    def latched(self) -> dict[str, str]:
        return dict(self._latched)

    @property
    def last_command(self) -> np.ndarray | None:
        return None if self._q is None else self._q.copy()

    def heartbeat_age(self, now: float) -> float | None:
        """Age of the heartbeat that lets the current episode execute (see :meth:`heartbeat`)."""
        t = self._heartbeat_time()
        return None if t is None else now - t

    def inference_heartbeat_age(self, now: float) -> float | None:
        """Age of the inference process's latest beat of any kind: is it alive at all."""
        return now - max(self._heartbeats.values()) if self._heartbeats else None

    def status(self, now: float) -> dict[str, Any]:
        age = self.inference_heartbeat_age(now)
        return {
            "state": self.state, "reason": self.reason, "episode": self.episode or "",
            "action_space": self.episode_space or "", "next_index": self.next_index,
            "latched": dict(self._latched), "moving": bool(float(np.max(np.abs(self._v))) >= _STOPPED),
            "plan": [[s.start, s.end, s.chunk.chunk_index] for s in self._segments[:6]],
            "heartbeat_age_s": None if age is None else round(age, 4),
            # what the inference node's latest beat names: the episode it runs ("" = idle)
            "heartbeat_episode": next(reversed(self._heartbeats)) if self._heartbeats else None,
            "seam_policy": self.cfg.seam_policy, "bad_chunk_streak": self._bad_streak,
            "last_rejection": self.last_rejection, "counters": dict(self.counters),
            "rejections_by_category": dict(self.rejections_by_category),
        }

    # ================================================================== internals: timeline
    def _remember_past(self, episode_id: str) -> None:
        self._past_episodes[episode_id] = None
        while len(self._past_episodes) > 64:
            self._past_episodes.popitem(last=False)

    def _end_episode(self) -> None:
        self._episode_ended = True
        self._remember_past(self.episode)
        self.counters["episodes_ended_idle"] += 1
        latest = next(reversed(self._heartbeats))
        why = (f"inference went idle: episode '{self.episode}' ended" if latest == "" else
               f"inference moved on to episode '{latest}': episode '{self.episode}' ended")
        if self._segments:
            self._cut(f"{why}; cut the plan at action {self.next_index}, decelerating to hold")
        else:
            self._event(why)

    def _start_episode(self, episode_id: str) -> None:
        if self.episode is not None:
            self._remember_past(self.episode)
            if self._segments:
                self._cut(f"episode '{self.episode}' superseded by '{episode_id}' at action {self.next_index}")
        if self._pending:
            self.counters["rows_unreported"] += len(self._pending)
        self._pending = []
        self.episode = episode_id
        self._episode_ended = False
        self.episode_space = None
        self.next_index = 0
        self._last_chunk_index = -1
        self._segments, self._active, self._overrides = [], None, {}
        self._executed_prev = False
        self.counters["episodes"] += 1
        self._event(f"episode '{episode_id}' started")

    def _plan_end(self) -> int:
        return self._segments[-1].end if self._segments else self.next_index

    def _segment_at(self, index: int) -> _Segment | None:
        for seg in self._segments:
            if seg.start <= index < seg.end:
                return seg
        return None

    def _planned_row(self, index: int) -> np.ndarray | None:
        if index in self._overrides:
            return self._overrides[index][0]
        seg = self._segment_at(index)
        return None if seg is None else seg.chunk.joints[index - seg.chunk.start_index]

    def _splice(self, chunk: PreparedChunk, start: int) -> None:
        """Newest chunk wins on [start, end): an overlapped plan loses its tail from ``start`` on (kept aside as
        the seam-blending reference); a buffered chunk entirely beyond ``end`` is not overlapped and stays."""
        end = chunk.end
        window = self.cfg.frozen_actions + self.cfg.crossfade_ticks + 1
        refs = {}
        for i in range(start, start + window):
            row = self._planned_row(i)
            if row is not None:
                refs[i] = row
        kept = []
        for seg in self._segments:
            if seg.end <= start or seg.start >= end:
                kept.append(seg)
            elif seg.start < start:
                seg.end = start
                self.counters["chunks_replaced_tail"] += 1
                kept.append(seg)
            else:
                self.counters["chunks_replaced_tail"] += 1
        self._overrides = {i: v for i, v in self._overrides.items() if i < start or i >= end}
        kept.append(_Segment(chunk, start, end, refs))
        kept.sort(key=lambda seg: seg.start)
        self._segments = kept
        if self._active is not None and self._active not in kept:
            self._active = None

    def _cut(self, why: str) -> None:
        self._segments, self._active, self._overrides = [], None, {}
        self._executed_prev = False
        self._event(why)

    def _drop_chunk(self, chunk: PreparedChunk) -> None:
        self._segments = [s for s in self._segments if s.chunk is not chunk]

    # ================================================================== internals: execution
    def _execute(self, now: float) -> ExecutedRow | None:
        idx = self.next_index
        self._segments = [s for s in self._segments if s.end > idx]
        seg = self._segment_at(idx)
        if seg is None:
            return None
        chunk = seg.chunk
        row = idx - chunk.start_index
        if seg is not self._active:
            bad = self._jump_problem(chunk.joints[row], self._q)
            if bad:
                self._drop_chunk(chunk)
                self._bad(f"chunk {chunk.episode_id}#{chunk.chunk_index}: action {idx} {bad} when it became "
                          f"active", "first_jump")
                return None
            self._activate(seg, idx)
        override = self._overrides.pop(idx, None)
        target = chunk.joints[row] if override is None else override[0]
        res = self.limiter.limit(target, self._q, self._v)
        self._q, self._v = res.position, res.velocity
        if res.modified:
            self._count_flags(res.flags)
        self._waiting_since, self._wait_reported = None, False
        self._executed_prev = True
        self.next_index = idx + 1
        self.counters["actions_executed"] += 1
        return ExecutedRow(idx, chunk, row, self._q.copy(), bool(res.modified or override is not None))

    def _activate(self, seg: _Segment, idx: int) -> None:
        """Seam between the previous plan (or the held command) and ``seg``, starting at action ``idx``."""
        self._active = seg
        policy = self.cfg.seam_policy
        refs = {i: r for i, r in seg.refs.items() if i >= idx} if self._executed_prev else {}
        if policy == "hard" or (self._executed_prev and not refs):
            return  # hard switch, or a clean continuation of a tiled timeline: nothing to blend
        chunk = seg.chunk
        i = idx
        if policy == "frozen_prefix":
            while i < min(idx + self.cfg.frozen_actions, seg.end) and i in refs:
                self._overrides[i] = (refs[i].copy(), "frozen")
                self.counters["frozen_rows"] += 1
                i += 1
        # Crossfade from the replaced plan (overlap) or from the held command (after a hold / new episode).
        ref = self._q.copy()
        k_ticks = self.cfg.crossfade_ticks
        for k in range(k_ticks):
            j = i + k
            if j >= seg.end:
                break
            ref = refs.get(j, ref)
            w = (k + 1) / (k_ticks + 1)
            self._overrides[j] = ((1.0 - w) * ref + w * chunk.joints[j - chunk.start_index], "blend")
            self.counters["blended_rows"] += 1

    def _after_execution(self, executed: ExecutedRow) -> KeyframeTick | None:
        self._pending.append(executed)
        i = executed.index
        if (i + 1) % self.cfg.actions_per_keyframe:
            return None
        rows, self._pending = self._pending, []
        self.counters["keyframe_ticks"] += 1
        return KeyframeTick(self.episode or "", i, (i + 1) // self.cfg.actions_per_keyframe, rows)

    def _note_waiting(self, now: float) -> None:
        if self._latched or self._stale or self.episode is None or self._episode_ended:
            return
        if self._waiting_since is None:
            self._waiting_since = now
        if not self._wait_reported and now - self._waiting_since > self.cfg.gap_timeout:
            self._wait_reported = True
            nxt = self._segments[0].start if self._segments else None
            if nxt is not None:
                self.counters["gap_timeouts"] += 1
                self._event(f"gap: no chunk covers action {self.next_index} for {self.cfg.gap_timeout:.3f} s "
                            f"(next buffered chunk starts at {nxt}); holding")
            else:
                self.counters["starved_timeouts"] += 1
                self._event(f"no chunk covers action {self.next_index} for {self.cfg.gap_timeout:.3f} s; holding")

    # ================================================================== internals: safety
    def _jump_problem(self, row: np.ndarray, reference: np.ndarray) -> str:
        jump = np.abs(row - reference)
        over = jump > self.limits.max_first_jump
        if not over.any():
            return ""
        j = int(np.argmax(jump - self.limits.max_first_jump))
        return (f"is {jump[j]:.4f} from the command on {self.limits.names[j]} "
                f"(max_first_jump {self.limits.max_first_jump[j]:.4f})")

    def _bad(self, reason: str, category: str) -> str:
        self.counters["chunks_rejected"] += 1
        self.rejections_by_category[category] = self.rejections_by_category.get(category, 0) + 1
        self._bad_streak += 1
        self.last_rejection = reason
        self._event(f"rejected {reason}")
        if self._bad_streak >= self.cfg.max_bad_chunks and "bad_chunks" not in self._latched:
            self.counters["bad_chunk_faults"] += 1
            self._latch("bad_chunks", f"{self._bad_streak} consecutive bad chunks (last: {reason})")
        return f"rejected {reason}"

    def _latch(self, key: str, text: str, count: bool = True) -> None:
        self._latched[key] = text
        if count:
            self.counters["faults"] += 1
        self._cut(f"LATCHED {key}: {text}")

    def _state_problem(self, now: float, state: JointStateSample | None, tracking: bool) -> tuple[str, str] | None:
        if state is None or now - state.received > self.cfg.state_timeout:
            age = "never received" if state is None else f"{now - state.received:.3f} s old"
            return "state_stale", f"joint state stale ({age}, state_timeout {self.cfg.state_timeout:.3f} s)"
        pos = np.asarray(state.positions, dtype=np.float64)
        if pos.shape != self._v.shape or not np.isfinite(pos).all():
            return "state_nonfinite", f"joint state not finite / wrong size: {pos.tolist()}"
        out = (pos < self._state_lo) | (pos > self._state_hi)
        if out.any():
            j = int(np.argmax(out))
            return "state_out_of_range", (f"joint state out of range: {self.limits.names[j]} = {pos[j]:.4f} not in "
                                          f"[{self.limits.lower[j]:.4f}, {self.limits.upper[j]:.4f}]")
        if tracking and self._q is not None:
            tol = self.limits.tracking_tolerance
            err = np.abs(pos - self._q)
            bad = (tol > 0) & (err > tol)
            if bad.any():
                j = int(np.argmax(np.where(bad, err - tol, -np.inf)))
                return "tracking", (f"tracking error on {self.limits.names[j]}: measured {pos[j]:.4f}, commanded "
                                    f"{self._q[j]:.4f} (tolerance {tol[j]:.4f})")
        return None

    def _initialise(self, now: float, state: JointStateSample | None) -> bool:
        if state is None:
            return False
        problem = self._state_problem(now, state, tracking=False)
        if problem:
            if problem[0] != "state_stale":
                self.fault(problem[0], problem[1])
            return False
        self._q = np.asarray(state.positions, dtype=np.float64).copy()
        self._v = np.zeros_like(self._q)
        self._event("initialised the command from the measured joint state")
        return True

    def _count_flags(self, flags: np.ndarray) -> None:
        self.counters["limited_actions"] += 1
        for bit, key in ((POSITION, "clamp_position"), (VELOCITY, "clamp_velocity"),
                         (ACCELERATION, "clamp_acceleration"), (STEP, "clamp_step"), (NONFINITE, "nonfinite_targets")):
            if np.any(flags & bit):
                self.counters[key] += 1

    def _heartbeat_time(self) -> float | None:
        if not self._heartbeats:
            return None
        if self.episode is None or self._episode_ended:
            return max(self._heartbeats.values())
        if self.episode in self._heartbeats:
            return self._heartbeats[self.episode]
        return self._heartbeats.get("")   # before the episode's first own beat, the idle beat shows liveness

    def _heartbeat_fresh(self, now: float) -> bool:
        if self.cfg.heartbeat_timeout <= 0:
            return True
        t = self._heartbeat_time()
        return t is not None and now - t <= self.cfg.heartbeat_timeout

    def _event(self, text: str) -> None:
        self._events.append(text)

    def _finish(self, result: TickResult) -> TickResult:
        self._events = []
        new = self._classify()
        if new != self._state:
            self._state = new
            result.state_changed = True
        return result

    def _classify(self) -> tuple[str, str]:
        if self._q is None:
            if self._latched:
                return "fault", "; ".join(self._latched.values())
            return "waiting_for_state", "no valid joint state yet"
        if "e_stop" in self._latched:
            return "estop", self._latched["e_stop"]
        if self._latched:
            return "fault", "; ".join(f"{k}: {v}" for k, v in sorted(self._latched.items()))
        if self._executed_prev:
            return "executing", f"episode {self.episode}"
        moving = float(np.max(np.abs(self._v))) >= _STOPPED
        name = "stopping" if moving else "holding"
        if self._stale:
            return name, "inference heartbeat stale"
        if self.episode is None:
            return name, "no chunk received yet"
        if self._episode_ended:
            return name, f"episode {self.episode} ended by the inference node"
        nxt = self._segments[0].start if self._segments else None
        if self._wait_reported:
            if nxt is not None:
                return name, f"gap: waiting for a chunk covering action {self.next_index} (next starts at {nxt})"
            return name, f"starved: no chunk covers action {self.next_index}"
        return name, f"waiting for action {self.next_index}"


def describe_limits(limits: JointLimits) -> list[dict[str, Any]]:
    """Human-readable per-joint limits (for diagnostics and docs)."""
    out = []
    for j, name in enumerate(limits.names):
        out.append({"joint": name, "lower": _fmt(limits.lower[j]), "upper": _fmt(limits.upper[j]),
                    "velocity": _fmt(limits.velocity[j]), "acceleration": _fmt(limits.acceleration[j]),
                    "max_step": _fmt(limits.max_step[j])})
    return out


def _fmt(x: float) -> float | str:
    return x if math.isfinite(x) else ("inf" if x > 0 else "-inf")
