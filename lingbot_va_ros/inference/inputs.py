"""Thread-safe episode inputs for the inference worker: key frames and executed actions keyed by action index.

ROS callbacks only ``add_*`` (cheap, never block on the model); the worker waits for exactly the indices a
chunk needs. Matching is by (episode id, action index), never by arrival order, so late, duplicated or
reordered messages cannot shift the timeline.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from lingbot_va_ros.inference.backend import BackendSpec, ChunkPrediction, KeyFrame


class InputError(ValueError):
    """An observation or executed-actions message that cannot be used; the text says why."""


class StaleInput(InputError):
    """Input of an episode that already ended (or of none). Normal after every episode: the executor finishes
    the chunks already published and camera ingest answers its ticks. Ignored, never reported as bad input."""


class EpisodeAborted(RuntimeError):
    """The episode cannot continue (cancel, stalled inputs, model error); the text is the result reason."""


@dataclass(frozen=True)
class StampedKeyFrame:
    action_index: int
    stamp_ns: int
    images: KeyFrame


def validate_keyframe(spec: BackendSpec, camera_names: list[str], images: list[np.ndarray]) -> dict[str, np.ndarray]:
    if list(camera_names) != list(spec.camera_names):
        raise InputError(f"cameras {list(camera_names)} do not match the model's {list(spec.camera_names)}")
    out: dict[str, np.ndarray] = {}
    for name, img in zip(camera_names, images):
        want = tuple(spec.image_sizes[name])
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise InputError(f"camera {name}: expected HxWx3 uint8 RGB, got {img.dtype} {img.shape}")
        if img.shape[:2] != want:
            raise InputError(f"camera {name}: image is {img.shape[0]}x{img.shape[1]}, the model expects {want[0]}x{want[1]}")
        out[name] = img
    return out


class EpisodeInputs:
    """Key frames and executed action rows of the current episode."""

    def __init__(self, spec: BackendSpec):
        self.spec = spec
        self._cond = threading.Condition()
        self.episode_id: str | None = None
        self._keyframes: dict[int, StampedKeyFrame] = {}
        self._executed: dict[int, np.ndarray] = {}
        self.rejected: dict[str, int] = {}
        self._finished: deque[str] = deque(maxlen=16)   # ids of the latest ended episodes
        self._latest: StampedKeyFrame | None = None  # newest real key frame, kept for the live view
        self._progress: tuple[int, float] | None = None  # (highest executed index, monotonic receipt time)

    def start(self, episode_id: str) -> None:
        with self._cond:
            if self.episode_id is not None and self.episode_id != episode_id:
                self._finished.append(self.episode_id)
            self.episode_id = episode_id
            self._keyframes.clear()
            self._executed.clear()
            self._latest = None
            self._progress = None
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            if self.episode_id is not None:
                self._finished.append(self.episode_id)
            self.episode_id = None
            self._cond.notify_all()

    def _check_episode(self, episode_id: str, what: str) -> None:
        if episode_id == self.episode_id:
            return
        if episode_id == "" or episode_id in self._finished:
            raise StaleInput(f"{what} of ended episode '{episode_id}'")
        self._reject(f"wrong episode: {what} for '{episode_id}', running '{self.episode_id}'")

    def _reject(self, reason: str) -> None:
        key = reason.split(":")[0]
        self.rejected[key] = self.rejected.get(key, 0) + 1
        raise InputError(reason)

    def add_keyframe(self, episode_id: str, action_index: int, stamp_ns: int, images: Mapping[str, np.ndarray]) -> None:
        with self._cond:
            self._check_episode(episode_id, "observation")
            if action_index < -1:
                self._reject(f"bad index: observation action_index {action_index}")
            kf = StampedKeyFrame(action_index, stamp_ns, dict(images))
            self._keyframes[action_index] = kf
            if self._latest is None or action_index >= self._latest.action_index:
                self._latest = kf
            self._cond.notify_all()

    def add_executed(self, episode_id: str, start_index: int, rows: np.ndarray) -> None:
        with self._cond:
            self._check_episode(episode_id, "executed actions")
            if rows.ndim != 2 or rows.shape[1] != len(self.spec.channel_names):
                self._reject(f"bad shape: executed actions {rows.shape}, expected [n, {len(self.spec.channel_names)}]")
            if not np.isfinite(rows).all():
                self._reject("non-finite: executed actions contain NaN/inf")
            if start_index < 0:
                self._reject(f"bad index: executed actions start_index {start_index}")
            for k, row in enumerate(rows):
                self._executed[start_index + k] = row.astype(np.float32, copy=True)
            last = start_index + rows.shape[0] - 1
            if self._progress is None or last > self._progress[0]:
                self._progress = (last, time.monotonic())
            self._cond.notify_all()

    def _wait(self, ready: Callable[[], bool], timeout: float, cancelled: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not ready():
                if cancelled():
                    raise EpisodeAborted("cancelled")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise EpisodeAborted(what)
                self._cond.wait(min(left, 0.05))

    def wait_initial(self, timeout: float, cancelled: Callable[[], bool]) -> StampedKeyFrame:
        self._wait(lambda: -1 in self._keyframes, timeout, cancelled,
                   f"no initial observation within {timeout:.1f}s (is camera ingest running and are all cameras fresh?)")
        with self._cond:
            return self._keyframes[-1]

    def keyframe_indices(self, chunk: ChunkPrediction) -> list[int]:
        step = self.spec.actions_per_keyframe
        n = chunk.actions.shape[0]
        return [chunk.start_index + k * step - 1 for k in range(1, n // step + 1)]

    def wait_feedback(self, chunk: ChunkPrediction, timeout: float, cancelled: Callable[[], bool]
                      ) -> tuple[list[StampedKeyFrame], np.ndarray]:
        """Block until every key frame and executed row of ``chunk`` has arrived."""
        kf_idx = self.keyframe_indices(chunk)
        rows = range(chunk.start_index, chunk.start_index + chunk.actions.shape[0])

        def ready() -> bool:
            return all(i in self._keyframes for i in kf_idx) and all(i in self._executed for i in rows)

        def missing() -> str:
            kfs = [i for i in kf_idx if i not in self._keyframes]
            ex = [i for i in rows if i not in self._executed]
            kf_text = f"after actions {kfs[:4]}{'...' if len(kfs) > 4 else ''}"
            if ex:  # the executor's ticks also trigger the key frames: without it both are missing
                text = f"no executed actions {ex[0]}..{ex[-1]} from the executor within {timeout:.1f}s"
                return text + (f" (nor key frames {kf_text}: camera ingest captures them on the executor's ticks)"
                               if kfs else "")
            return (f"no key frames {kf_text} from camera ingest within {timeout:.1f}s, although the executor "
                    f"executed those actions (is camera ingest running and every camera fresh?)")

        try:
            self._wait(ready, timeout, cancelled, "")
        except EpisodeAborted as exc:
            if str(exc) == "cancelled":
                raise
            with self._cond:
                reason = missing()
            raise EpisodeAborted(f"chunk {chunk.chunk_index}: {reason}") from None
        with self._cond:
            keyframes = [self._keyframes[i] for i in kf_idx]
            executed = np.stack([self._executed[i] for i in rows])
            # keep memory bounded: everything up to this chunk is consumed
            for i in [i for i in self._keyframes if -1 < i <= kf_idx[-1]]:
                del self._keyframes[i]
            for i in [i for i in self._executed if i < rows.stop]:
                del self._executed[i]
        return keyframes, executed

    def wait_executed_through(self, index: int, timeout: float, cancelled: Callable[[], bool]) -> bool:
        """Block until the executor reports action ``index`` executed; False on timeout."""
        try:
            self._wait(lambda: self._progress is not None and self._progress[0] >= index, timeout, cancelled, "")
        except EpisodeAborted as exc:
            if str(exc) == "cancelled":
                raise
            return False
        return True

    def latest_keyframe(self) -> StampedKeyFrame | None:
        with self._cond:
            return self._latest

    def progress(self) -> tuple[int, float] | None:
        """The executor's progress as seen here: (highest executed action index, when it was reported)."""
        with self._cond:
            return self._progress
