"""Time sources. The core never reads a clock itself: every call gets ``now`` (monotonic seconds), so unit
tests drive it with :class:`FakeClock` and run thousands of ticks in milliseconds."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np


def monotonic() -> float:
    return time.monotonic()


class FakeClock:
    """A manually advanced clock for tests (callable like ``time.monotonic``)."""

    def __init__(self, start: float = 1000.0):
        self.t = float(start)

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> float:
        self.t += float(seconds)
        return self.t


@dataclass(frozen=True)
class JointStateSample:
    """Measured joint state in executor joint order, as a driver reports it.

    ``received`` is the monotonic time the sample arrived (not the message stamp: the robot's clock may
    differ from ours, and staleness is about when WE last heard from the arm).
    """

    positions: np.ndarray
    received: float
    velocities: np.ndarray | None = None
