"""Bookkeeping of the live view (pure Python): a newest-wins slot for latents waiting to be decoded, and the
pairing of each predicted key frame k with the real key frame k once both exist (in either order)."""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Generic, Mapping, TypeVar

import numpy as np

T = TypeVar("T")


class LatestSlot(Generic[T]):
    """Holds at most one item: ``put`` replaces a waiting one (counted in ``replaced``), ``take`` waits for one.

    The decoder takes from here, so however slow decoding gets it always works on the newest chunk and never
    builds a backlog (a queue would fall further behind the arm with every chunk)."""

    def __init__(self) -> None:
        self._item: T | None = None
        self._cond = threading.Condition()
        self.replaced = 0

    def put(self, item: T) -> None:
        with self._cond:
            if self._item is not None:
                self.replaced += 1
            self._item = item
            self._cond.notify_all()

    def take(self, timeout: float | None = None) -> T | None:
        """The waiting item (removed), or None after ``timeout`` seconds without one."""
        with self._cond:
            if self._item is None:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            return item


@dataclass
class Prediction:
    """One decoded predicted key frame (the key frame after ``action_index``) of one chunk."""

    episode_id: str
    chunk_index: int
    action_index: int
    images: Mapping[str, np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)      # carried through to the pair (stamps, latencies)


@dataclass
class KeyFrame:
    episode_id: str
    action_index: int
    images: Mapping[str, np.ndarray]
    stamp_ns: int = 0


@dataclass
class Pair:
    prediction: Prediction
    real: KeyFrame


class PredictionMatcher:
    """Pairs predicted key frame k with real key frame k of the same episode.

    A new episode id (from either side) forgets the previous episode. Both stores are bounded: the oldest real
    key frames and the oldest unmatched predictions are dropped first (``dropped_predictions`` counts the
    latter: predictions whose real key frame never came, e.g. an episode that ended early)."""

    def __init__(self, max_keyframes: int = 48, max_pending: int = 16):
        if max_keyframes < 1 or max_pending < 1:
            raise ValueError("max_keyframes and max_pending must be >= 1")
        self.max_keyframes, self.max_pending = max_keyframes, max_pending
        self._lock = threading.Lock()
        self.episode_id = ""
        self._keyframes: OrderedDict[int, KeyFrame] = OrderedDict()
        self._pending: OrderedDict[int, Prediction] = OrderedDict()
        self.dropped_predictions = 0
        self.paired = 0

    def _switch(self, episode_id: str) -> None:
        if episode_id != self.episode_id:
            self.episode_id = episode_id
            self.dropped_predictions += len(self._pending)
            self._keyframes.clear()
            self._pending.clear()

    def add_keyframe(self, keyframe: KeyFrame) -> list[Pair]:
        with self._lock:
            self._switch(keyframe.episode_id)
            self._keyframes[keyframe.action_index] = keyframe
            self._keyframes.move_to_end(keyframe.action_index)
            while len(self._keyframes) > self.max_keyframes:
                self._keyframes.popitem(last=False)
            prediction = self._pending.pop(keyframe.action_index, None)
            return self._paired([Pair(prediction, keyframe)] if prediction is not None else [])

    def add_prediction(self, prediction: Prediction) -> list[Pair]:
        with self._lock:
            self._switch(prediction.episode_id)
            real = self._keyframes.get(prediction.action_index)
            if real is not None:
                return self._paired([Pair(prediction, real)])
            self._pending[prediction.action_index] = prediction
            while len(self._pending) > self.max_pending:
                self._pending.popitem(last=False)
                self.dropped_predictions += 1
            return []

    def latest_keyframe(self, episode_id: str) -> KeyFrame | None:
        """The newest real key frame of ``episode_id`` (by action index), or None."""
        with self._lock:
            if episode_id != self.episode_id or not self._keyframes:
                return None
            return self._keyframes[max(self._keyframes)]

    @property
    def pending(self) -> int:
        return len(self._pending)

    def _paired(self, pairs: list[Pair]) -> list[Pair]:
        self.paired += len(pairs)
        return pairs
