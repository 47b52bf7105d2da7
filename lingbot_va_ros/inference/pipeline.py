"""The episode pipeline: which backend call happens when, in each mode (no rclpy).

``sync``        the official protocol: predict chunk n, wait until it is executed and its key frames are
                captured, ground, predict n+1. The arm idles during grounding and prediction.
``async``       the paper's Algorithm 2 (FDM-grounded): while chunk n executes, ground chunk n-1 with its real
                key frames and executed actions, imagine chunk n's frames from its actions (FDM), then predict
                chunk n+1 — published before chunk n ends when latency allows.
``async_naive`` the paper's ablation: like async but predict n+1 from chunk n's own *predicted* cache entries
                (no FDM step); drifts open-loop (spec §6.2).

The runner is driven by one worker thread; it publishes through callbacks so the ROS node stays thin.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from lingbot_va_ros.inference.backend import ChunkPrediction, PolicyBackend
from lingbot_va_ros.inference.inputs import EpisodeAborted, EpisodeInputs

MODES = ("sync", "async", "async_naive")


@dataclass
class EpisodeLimits:
    max_chunks: int = 0              # 0: unlimited
    max_duration_s: float = 0.0      # 0: unlimited


@dataclass
class DeadlinePolicy:
    # Consecutive deadline misses after which an async episode falls back to sync (0: never).
    fallback_to_sync_after: int = 3


@dataclass
class EpisodeStats:
    chunks: int = 0
    deadline_misses: int = 0
    consecutive_misses: int = 0
    mode: str = "sync"
    fell_back_to_sync: bool = False
    latencies: list[float] = field(default_factory=list)
    stage_seconds: dict[str, list[float]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)   # backend call order, e.g. ["reset", "predict:0", ...]

    def add_stage(self, name: str, seconds: float) -> None:
        self.stage_seconds.setdefault(name, []).append(seconds)


@dataclass
class PublishedChunk:
    prediction: ChunkPrediction
    latency_s: float
    observation_action_index: int
    observation_stamp_ns: int
    publish_time: float           # monotonic


class EpisodeRunner:
    """Runs one episode on the calling thread until done, cancelled, out of limits or failed."""

    def __init__(self, backend: PolicyBackend, inputs: EpisodeInputs, mode: str,
                 publish_chunk: Callable[[PublishedChunk], None],
                 on_feedback: Callable[[EpisodeStats, PublishedChunk, str], None] = lambda *_: None,
                 limits: EpisodeLimits | None = None, deadline: DeadlinePolicy | None = None,
                 initial_timeout: float = 10.0, feedback_timeout: float = 10.0,
                 control_period: float | None = None):
        if mode not in MODES:
            raise ValueError(f"unknown pipeline mode '{mode}' (one of {', '.join(MODES)})")
        self.backend, self.inputs, self.mode = backend, inputs, mode
        self.publish_chunk, self.on_feedback = publish_chunk, on_feedback
        self.limits = limits or EpisodeLimits()
        self.deadline = deadline or DeadlinePolicy()
        self.initial_timeout, self.feedback_timeout = initial_timeout, feedback_timeout
        self.period = control_period or 1.0 / backend.spec.control_hz
        self.cancel_event = threading.Event()
        self.stats = EpisodeStats(mode=mode)
        self._t0 = 0.0
        self.inputs_ready_at = 0.0
        self.state = "idle"

    # -- helpers -----------------------------------------------------------------------------------
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def _check_limits(self) -> str | None:
        if self.limits.max_chunks and self.stats.chunks >= self.limits.max_chunks:
            return f"reached max_chunks={self.limits.max_chunks}"
        if self.limits.max_duration_s and time.monotonic() - self._t0 >= self.limits.max_duration_s:
            return f"reached max_duration_s={self.limits.max_duration_s:g}"
        return None

    def _timed(self, stage: str, fn: Callable, *args):
        self.state = stage
        t = time.perf_counter()
        out = fn(*args)
        self.stats.add_stage(stage, time.perf_counter() - t)
        return out

    def _predict_and_publish(self, started: float, obs_index: int, obs_stamp: int,
                             due_time: float | None) -> PublishedChunk:
        if self.cancelled():   # do not start a model call whose result may not be published
            raise EpisodeAborted("cancelled")
        pred = self._timed("predict", self.backend.predict_chunk)
        self.stats.calls.append(f"predict:{pred.chunk_index}")
        if self.cancelled():   # cancelled while predicting: a cancelled episode publishes nothing more
            raise EpisodeAborted("cancelled")
        if pred.actions.ndim != 2 or not np.isfinite(pred.actions).all():
            raise EpisodeAborted(f"model produced an invalid chunk {pred.chunk_index} (shape {pred.actions.shape}, "
                                 "non-finite values); nothing was published")
        for stage, seconds in pred.timings.items():
            self.stats.add_stage(stage, seconds)
        now = time.monotonic()
        published = PublishedChunk(pred, now - started, obs_index, obs_stamp, now)
        self.publish_chunk(published)
        self.stats.chunks += 1
        self.stats.latencies.append(published.latency_s)
        if due_time is not None:
            if now > due_time:
                self.stats.deadline_misses += 1
                self.stats.consecutive_misses += 1
            else:
                self.stats.consecutive_misses = 0
        self.on_feedback(self.stats, published, self.state)
        return published

    def _ground(self, chunk: ChunkPrediction) -> tuple[int, int]:
        self.state = "waiting_feedback"
        keyframes, executed = self.inputs.wait_feedback(chunk, self.feedback_timeout + self._chunk_seconds(chunk),
                                                        self.cancelled)
        self.inputs_ready_at = time.monotonic()  # latency is counted from here: the arm's data is complete
        self._timed("ground", self.backend.ground, [k.images for k in keyframes], executed, chunk.start_index)
        self.stats.calls.append(f"ground:{chunk.chunk_index}")
        return keyframes[-1].action_index, keyframes[-1].stamp_ns

    def _chunk_seconds(self, chunk: ChunkPrediction) -> float:
        return chunk.actions.shape[0] * self.period

    # -- the episode ---------------------------------------------------------------------------------
    def run(self, prompt: str) -> tuple[str, str]:
        """Returns (outcome, reason): completed | cancelled | aborted."""
        self._t0 = time.monotonic()
        try:
            self.state = "waiting_observation"
            initial = self.inputs.wait_initial(self.initial_timeout, self.cancelled)
            started = time.monotonic()
            self._timed("reset", self.backend.reset, prompt, initial.images)
            self.stats.calls.append("reset")
            current = self._predict_and_publish(started, initial.action_index, initial.stamp_ns, None)
            previous: PublishedChunk | None = None
            while True:
                reason = self._check_limits()
                if reason:
                    return "completed", self._finish_motion(current, reason)
                if self.cancelled():
                    return "cancelled", "cancel requested"
                mode = "sync" if self.stats.fell_back_to_sync else self.mode
                if mode == "sync":
                    obs = self._ground(current.prediction)
                    started = self.inputs_ready_at
                    nxt = self._predict_and_publish(started, obs[0], obs[1], None)
                    previous, current = current, nxt
                    continue
                # async / async_naive: `current` is executing now (or about to); `previous` has finished.
                started = time.monotonic()
                obs = (current.observation_action_index, current.observation_stamp_ns)
                if previous is not None:
                    obs = self._ground(previous.prediction)
                    started = self.inputs_ready_at
                if mode == "async":
                    self._timed("imagine", self.backend.imagine, current.prediction)
                    self.stats.calls.append(f"imagine:{current.prediction.chunk_index}")
                else:
                    self._timed("keep_prediction", self.backend.keep_prediction, current.prediction)
                    self.stats.calls.append(f"keep:{current.prediction.chunk_index}")
                due = self._due_time(current)
                nxt = self._predict_and_publish(started, obs[0], obs[1], due)
                previous, current = current, nxt
                if (self.deadline.fallback_to_sync_after
                        and self.stats.consecutive_misses >= self.deadline.fallback_to_sync_after):
                    self.stats.fell_back_to_sync = True
                    # the chunk just published follows `previous`; sync continues by grounding `previous` first
                    self._ground(previous.prediction)
                    previous = None
        except EpisodeAborted as exc:
            if str(exc) == "cancelled":
                return "cancelled", "cancel requested"
            return "aborted", str(exc)
        except Exception as exc:  # noqa: BLE001 - a model error ends the episode cleanly, never half-published
            return "aborted", f"model error: {type(exc).__name__}: {exc}"
        finally:
            self.state = "idle"

    def _finish_motion(self, last: PublishedChunk, reason: str) -> str:
        """A completed episode ends when the arm has executed every published chunk (then the node goes idle,
        which the executor reads as the episode's end): the result follows the motion, and the next goal
        starts from a settled arm. Waits at most feedback_timeout past the chunks' own duration."""
        self.state = "finishing"
        end = last.prediction.start_index + last.prediction.actions.shape[0] - 1
        progress = self.inputs.progress()
        done_until = progress[0] if progress is not None else last.prediction.start_index - 1
        timeout = self.feedback_timeout + max(end - done_until, 0) * self.period
        if self.inputs.wait_executed_through(end, timeout, self.cancelled):
            return reason
        return f"{reason}; the executor did not report the last published actions (up to {end}) within {timeout:.1f}s"

    def _due_time(self, executing: PublishedChunk) -> float:
        """When the first action after ``executing`` is due on the executor.

        Extrapolated from the executor's reported progress (executed-actions feedback) at the control period;
        before any feedback, from the executing chunk's publication (the arm starts it no earlier)."""
        end_index = executing.prediction.start_index + executing.prediction.actions.shape[0]
        progress = self.inputs.progress()
        if progress is not None and progress[0] >= executing.prediction.start_index - 1:
            index, seen = progress
            return seen + (end_index - 1 - index) * self.period
        return executing.publish_time + self._chunk_seconds(executing.prediction)
