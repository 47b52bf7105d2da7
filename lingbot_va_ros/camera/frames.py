"""Frames on their way through ingest and the per-camera ring buffer that keeps them, stamp-ordered."""
from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

# (payload, (height, width)) -> HxWx3 uint8 RGB at that size
Decoder = Callable[[Any, tuple[int, int]], np.ndarray]


@dataclass(frozen=True)
class RawFrame:
    """What a source hands over: the undecoded payload, its stamp and how to decode it.

    Decoding happens later on the camera's worker thread, so a source callback stays cheap.
    """

    stamp_ns: int        # frame time on the control clock (header stamp, receive time or capture time)
    receive_ns: int      # time.monotonic_ns() when the source got it (rates, queue ages)
    payload: Any
    decode: Decoder


@dataclass(frozen=True)
class Frame:
    """A decoded, model-sized frame; ``rgb`` is read-only and shared, never copied per tick."""

    stamp_ns: int
    receive_ns: int
    rgb: np.ndarray = field(repr=False)


class StampFault(str):
    """Why a frame's stamp broke the camera's monotonic order (the text is the user-facing reason)."""


class RepeatedStamp(StampFault):
    pass


class BackwardsStamp(StampFault):
    pass


class FrameRing:
    """Bounded, strictly stamp-increasing frame history of one camera (not thread-safe; caller locks).

    A frame whose stamp repeats the newest one is dropped (a duplicate or a stuck clock). A frame older than
    the newest empties the buffer and starts it again from that frame, so a camera whose clock jumped back
    (driver or simulator restart) recovers after one fault instead of being rejected forever.
    """

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError(f"ring capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._frames: deque[Frame] = deque(maxlen=capacity)
        self._stamps: deque[int] = deque(maxlen=capacity)

    def push(self, frame: Frame) -> StampFault | None:
        """Store ``frame``; returns the fault when its stamp repeats or goes backwards, else None."""
        if self._stamps:
            newest = self._stamps[-1]
            if frame.stamp_ns == newest:
                return RepeatedStamp(f"repeated stamp {_fmt_ns(frame.stamp_ns)} (frame dropped)")
            if frame.stamp_ns < newest:
                fault = BackwardsStamp(f"stamp went backwards by {(newest - frame.stamp_ns) / 1e6:.1f} ms "
                                   f"({_fmt_ns(newest)} -> {_fmt_ns(frame.stamp_ns)}; buffer restarted)")
                self.clear()
                self._append(frame)
                return fault
        self._append(frame)
        return None

    def _append(self, frame: Frame) -> None:
        self._frames.append(frame)
        self._stamps.append(frame.stamp_ns)

    def clear(self) -> None:
        self._frames.clear()
        self._stamps.clear()

    def newest(self) -> Frame | None:
        return self._frames[-1] if self._frames else None

    def nearest(self, target_ns: int) -> Frame | None:
        """The frame whose stamp is closest to ``target_ns``; on an exact tie the earlier one (it was
        already captured when the action was commanded)."""
        if not self._frames:
            return None
        stamps = self._stamps
        i = bisect.bisect_left(stamps, target_ns)
        if i == 0:
            return self._frames[0]
        if i == len(stamps):
            return self._frames[-1]
        before, after = stamps[i - 1], stamps[i]
        return self._frames[i] if after - target_ns < target_ns - before else self._frames[i - 1]

    def stamps(self) -> list[int]:
        return list(self._stamps)

    def __len__(self) -> int:
        return len(self._frames)

    def __iter__(self) -> Iterator[Frame]:
        return iter(list(self._frames))


def _fmt_ns(ns: int) -> str:
    sec, nsec = divmod(int(ns), 1_000_000_000)
    return f"{sec}.{nsec:09d}"
