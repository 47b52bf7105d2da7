"""The camera ingest core: per-camera channels, the key-frame assembler thread and health reports (no ROS).

Flow: sources -> :class:`CameraChannel` (decode + resize worker, ring) ; ticks -> bounded tick queue ->
assembler thread -> :meth:`KeyFrameAssembler.assemble` -> ``on_result`` (the node publishes the Observation,
or diagnostics when the key frame is invalid). Waiting for a frame (``max_wait``, frames still decoding)
happens on the assembler thread with a deadline, so the ROS executor threads are never blocked.

Invalid key frames produce no Observation: the inference side sees the gap in action_index, and
/diagnostics carries the reason at ERROR level.
"""
from __future__ import annotations

import dataclasses
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from lingbot_va_ros.camera.alignment import frame_problem, next_frame_could_be_nearer, target_time_ns
from lingbot_va_ros.camera.channel import CameraChannel
from lingbot_va_ros.camera.frames import Frame
from lingbot_va_ros.camera.params import CameraIngestParams
from lingbot_va_ros.camera.stats import LatencyStats, name_os_thread

OK, WARN, ERROR = 0, 1, 2  # same values as diagnostic_msgs/DiagnosticStatus levels


@dataclass(frozen=True)
class TickRequest:
    episode_id: str
    action_index: int
    key_frame_index: int
    stamp_ns: int                     # the tick's stamp (control clock): the instant the key frame shows
    received_mono_ns: int             # time.monotonic_ns() at the start of the tick callback
    inflight_marks: tuple[int, ...]   # per camera: raw frames enqueued when the tick arrived


@dataclass(frozen=True)
class CameraChoice:
    camera: str
    target_ns: int
    frame: Frame | None
    problem: str | None

    @property
    def offset_ms(self) -> float:
        """target - frame stamp in ms (positive: the frame is older than the target)."""
        return float("nan") if self.frame is None else (self.target_ns - self.frame.stamp_ns) / 1e6


@dataclass(frozen=True)
class KeyFrameResult:
    tick: TickRequest
    choices: tuple[CameraChoice, ...]
    ready_mono_ns: int                 # selection finished
    waited_for_frames_ns: int = 0      # blocked on max_wait (frames newer than the target)
    waited_inflight_ns: int = 0        # blocked on frames still being decoded
    thread_cpu_start_ns: int = 0       # time.thread_time_ns() on the assembler thread when assembly began

    @property
    def valid(self) -> bool:
        return all(c.problem is None for c in self.choices)

    @property
    def problems(self) -> dict[str, str]:
        return {c.camera: c.problem for c in self.choices if c.problem is not None}

    def reason(self) -> str:
        return "; ".join(f"{cam}: {why}" for cam, why in self.problems.items())

    @property
    def images(self) -> list[np.ndarray]:
        return [c.frame.rgb for c in self.choices]  # type: ignore[union-attr]

    @property
    def capture_stamps_ns(self) -> list[int]:
        return [c.frame.stamp_ns for c in self.choices]  # type: ignore[union-attr]


class KeyFrameAssembler:
    """Chooses, for one tick, each camera's frame nearest to its target time, waiting with deadlines."""

    def __init__(self, channels: list[CameraChannel], cond: threading.Condition, inflight_timeout_s: float):
        self.channels = channels
        self.cond = cond
        self.inflight_timeout_ns = int(inflight_timeout_s * 1e9)

    def marks(self) -> tuple[int, ...]:
        with self.cond:
            return tuple(ch.enqueued for ch in self.channels)

    def _wait_deadline(self, ch: CameraChannel, mark: int, tick: TickRequest, now: int) -> tuple[int, bool] | None:
        """(deadline, waiting_for_a_newer_frame) while ``ch`` is not ready for ``tick``; None when ready."""
        target = target_time_ns(tick.stamp_ns, ch.params.latency_offset)
        inflight_deadline = tick.received_mono_ns + self.inflight_timeout_ns
        if now < inflight_deadline and ch.pending_could_be_nearer(mark, target):
            return inflight_deadline, False
        wait_deadline = tick.received_mono_ns + int(ch.params.max_wait * 1e9)
        if now < wait_deadline:
            newest = ch.ring.newest()
            if newest is None or next_frame_could_be_nearer(newest.stamp_ns, target, ch.period_ns()):
                return wait_deadline, True
        return None

    def assemble(self, tick: TickRequest) -> KeyFrameResult:
        cpu_start = time.thread_time_ns()
        waited_frames = waited_inflight = 0
        with self.cond:
            while True:
                now = time.monotonic_ns()
                pending = [self._wait_deadline(ch, mark, tick, now)
                           for ch, mark in zip(self.channels, tick.inflight_marks)]
                pending = [p for p in pending if p is not None]
                if not pending:
                    break
                deadline = min(p[0] for p in pending)
                self.cond.wait(max(deadline - now, 0) / 1e9)
                spent = time.monotonic_ns() - now
                if any(for_frame for _, for_frame in pending):
                    waited_frames += spent
                else:
                    waited_inflight += spent
            selected_mono = time.monotonic_ns()
            choices = []
            for ch in self.channels:
                target = target_time_ns(tick.stamp_ns, ch.params.latency_offset)
                frame = ch.ring.nearest(target)
                problem = frame_problem(frame, target, ch.params.max_age)
                faults = ch.take_faults()
                if faults:
                    why = f"stamps not increasing: {'; '.join(faults[-3:])}"
                    problem = why if problem is None else f"{problem}; {why}"
                if problem is not None:
                    ch.counters.invalid_ticks += 1
                    ch.last_problem = problem
                    ch.last_problem_mono_ns = selected_mono
                choices.append(CameraChoice(ch.name, target, frame, problem))
        return KeyFrameResult(tick, tuple(choices), time.monotonic_ns(), waited_frames, waited_inflight, cpu_start)


@dataclass
class HealthStatus:
    """One diagnostic status, ROS-free (the node maps it to diagnostic_msgs/DiagnosticStatus)."""

    name: str
    level: int
    message: str
    hardware_id: str = ""
    values: dict[str, str] = field(default_factory=dict)


class CameraIngest:
    def __init__(self, params: CameraIngestParams, on_result: Callable[[KeyFrameResult], None],
                 now_ns: Callable[[], int], log_error: Callable[[str], None] = print,
                 describe_source: Callable[[str], str] | None = None):
        self.params = params
        self.cond = threading.Condition()
        self.channels = {name: CameraChannel(name, cam, self.cond) for name, cam in params.ordered_cameras()}
        self.assembler = KeyFrameAssembler(list(self.channels.values()), self.cond, params.inflight_timeout)
        self.on_result = on_result
        self.now_ns = now_ns
        self.log_error = log_error
        self.describe_source = describe_source or (lambda name: params.cameras[name].source)
        self.total_ms = LatencyStats()        # tick callback start -> Observation published
        self.work_ms = LatencyStats()         # the same minus time spent waiting for newer frames
        self.cpu_ms = LatencyStats()          # CPU time of the assembler thread per tick (immune to preemption)
        self.ticks = self.observations = self.invalid_ticks = self.dropped_ticks = 0
        self.last_invalid_reason = ""
        self.last_invalid_mono_ns = 0
        self.last_dropped_tick_mono_ns = 0
        self._ticks: deque[TickRequest] = deque()
        self._tick_cond = threading.Condition()
        self._running = False
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> None:
        for ch in self.channels.values():
            ch.start()
        self._running = True
        self._thread = threading.Thread(target=self._assemble_loop, name="ingest_assembler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._tick_cond:
            self._running = False
            self._tick_cond.notify_all()
        if self._thread is not None:
            self._thread.join(2.0)
        for ch in self.channels.values():
            ch.stop()

    # -- ticks -----------------------------------------------------------------------------------------
    def on_tick(self, episode_id: str, action_index: int, key_frame_index: int, stamp_ns: int,
                received_mono_ns: int | None = None) -> None:
        """Queue one tick (cheap; safe to call from an executor callback)."""
        received = time.monotonic_ns() if received_mono_ns is None else received_mono_ns
        tick = TickRequest(episode_id, int(action_index), int(key_frame_index), int(stamp_ns), received,
                           self.assembler.marks())
        with self._tick_cond:
            self.ticks += 1
            if len(self._ticks) >= self.params.tick_queue_size:
                lost = self._ticks.popleft()
                self.dropped_ticks += 1
                self.last_dropped_tick_mono_ns = received
                self.log_error(f"tick queue full ({self.params.tick_queue_size}): dropped the tick of action_index "
                               f"{lost.action_index} (episode '{lost.episode_id}')")
            self._ticks.append(tick)
            self._tick_cond.notify()

    def _assemble_loop(self) -> None:
        name_os_thread("ingest_assemble")
        while True:
            with self._tick_cond:
                while self._running and not self._ticks:
                    self._tick_cond.wait()
                if not self._running:
                    return
                tick = self._ticks.popleft()
            result = self.assembler.assemble(tick)
            if result.valid:
                self.observations += 1
            else:
                self.invalid_ticks += 1
                self.last_invalid_reason = (f"action_index {tick.action_index} (episode '{tick.episode_id}'): "
                                            f"{result.reason()}")
                self.last_invalid_mono_ns = result.ready_mono_ns
            try:
                self.on_result(result)
            except Exception as exc:  # noqa: BLE001 - one failed publish must not stop the assembler
                self.log_error(f"publishing the key frame of action_index {tick.action_index} failed: "
                               f"{type(exc).__name__}: {exc}")

    def record_published(self, result: KeyFrameResult, published_mono_ns: int) -> tuple[float, float, float]:
        """Account one published Observation (call on the assembler thread, right after publishing);
        returns (total_ms, work_ms, cpu_ms)."""
        total = (published_mono_ns - result.tick.received_mono_ns) / 1e6
        work = total - result.waited_for_frames_ns / 1e6
        cpu = (time.thread_time_ns() - result.thread_cpu_start_ns) / 1e6
        self.total_ms.add(total)
        self.work_ms.add(work)
        self.cpu_ms.add(cpu)
        return total, work, cpu

    # -- health ----------------------------------------------------------------------------------------
    def health(self, period_s: float, now_mono_ns: int | None = None) -> list[HealthStatus]:
        """Per-camera statuses plus a summary; ERROR for anything that invalidated a tick in the period."""
        now_mono = time.monotonic_ns() if now_mono_ns is None else now_mono_ns
        now_ns = self.now_ns()
        recent = int(period_s * 1e9 * 1.5)
        statuses = []
        with self.cond:
            snapshot = [(ch, ch.ring.newest(), len(ch.ring)) for ch in self.channels.values()]
            counters = {ch.name: dataclasses.replace(ch.counters) for ch in self.channels.values()}
        for ch, newest, buffered in snapshot:
            rate = ch.rate.rate(now_mono)
            age_ms = (now_ns - newest.stamp_ns) / 1e6 if newest is not None else float("nan")
            c = counters[ch.name]
            p50, p99 = ch.decode_ms.percentiles(50, 99)
            if ch.last_problem_mono_ns and now_mono - ch.last_problem_mono_ns <= recent:
                level, message = ERROR, ch.last_problem
            elif newest is None:
                level, message = WARN, "no frames received yet"
            elif age_ms > ch.params.max_age * 1e3:
                level, message = WARN, f"no fresh frame: newest is {age_ms:.0f} ms old at {rate:.1f} Hz"
            else:
                level, message = OK, f"{rate:.1f} Hz, newest frame {age_ms:.0f} ms old"
            values = {
                "rate_hz": f"{rate:.2f}", "age_ms": f"{age_ms:.1f}", "received": str(c.received),
                "drops": str(c.drops), "dropped_queue_full": str(c.dropped_queue), "decode_errors": str(c.decode_errors),
                "stamp_repeats": str(c.stamp_repeats), "stamp_backwards": str(c.stamp_backwards),
                "invalid_ticks": str(c.invalid_ticks), "buffered": str(buffered),
                "queue_length": str(ch.queue_length()), "decode_resize_ms_p50": f"{p50:.2f}",
                "decode_resize_ms_p99": f"{p99:.2f}", "model_size": f"{ch.size[0]}x{ch.size[1]}",
                "reason": ch.last_problem if level == ERROR else "", "last_error": ch.last_error,
            }
            statuses.append(HealthStatus(f"camera_ingest: {ch.name}", level, message,
                                         self.describe_source(ch.name), values))
        t50, t99 = self.total_ms.percentiles(50, 99)
        w50, w99 = self.work_ms.percentiles(50, 99)
        c50, c99 = self.cpu_ms.percentiles(50, 99)
        if self.last_invalid_mono_ns and now_mono - self.last_invalid_mono_ns <= recent:
            level, message = ERROR, f"invalid key frame, no Observation: {self.last_invalid_reason}"
        elif self.last_dropped_tick_mono_ns and now_mono - self.last_dropped_tick_mono_ns <= recent:
            level, message = ERROR, "tick queue overflow: ticks dropped (assembler too slow?)"
        elif any(s.level for s in statuses):
            level, message = WARN, "camera warnings: " + "; ".join(
                f"{s.name.split(': ', 1)[1]}: {s.message}" for s in statuses if s.level)
        else:
            level, message = OK, f"{self.observations} observations, work p99 {w99:.2f} ms"
        statuses.append(HealthStatus("camera_ingest: key frames", level, message, "camera_ingest", {
            "ticks": str(self.ticks), "observations": str(self.observations),
            "invalid_ticks": str(self.invalid_ticks), "dropped_ticks": str(self.dropped_ticks),
            "tick_to_publish_ms_p50": f"{t50:.2f}", "tick_to_publish_ms_p99": f"{t99:.2f}",
            "work_ms_p50": f"{w50:.2f}", "work_ms_p99": f"{w99:.2f}",
            "tick_cpu_ms_p50": f"{c50:.2f}", "tick_cpu_ms_p99": f"{c99:.2f}",
            "last_invalid_reason": self.last_invalid_reason,
        }))
        return statuses
