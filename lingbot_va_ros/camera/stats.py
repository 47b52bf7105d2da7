"""Small bounded statistics for diagnostics: arrival rate over a time window, latency percentiles."""
from __future__ import annotations

import ctypes
import sys
import threading
from collections import deque

import numpy as np


class RateMeter:
    """Events per second over the last ``window_s`` seconds of monotonic arrival times."""

    def __init__(self, window_s: float = 2.0, max_events: int = 1024):
        self.window_ns = int(window_s * 1e9)
        self._times: deque[int] = deque(maxlen=max_events)
        self._lock = threading.Lock()

    def add(self, mono_ns: int) -> None:
        with self._lock:
            self._times.append(mono_ns)

    def rate(self, now_mono_ns: int) -> float:
        with self._lock:
            recent = [t for t in self._times if now_mono_ns - t <= self.window_ns]
        if len(recent) < 2:
            return 0.0
        span = now_mono_ns - recent[0]
        return (len(recent) - 1) / (span / 1e9) if span > 0 else 0.0


class LatencyStats:
    """The last ``capacity`` samples (milliseconds) with percentile queries."""

    def __init__(self, capacity: int = 2048):
        self._samples: deque[float] = deque(maxlen=capacity)
        self._lock = threading.Lock()
        self.count = 0

    def add(self, value_ms: float) -> None:
        with self._lock:
            self._samples.append(float(value_ms))
            self.count += 1

    def percentiles(self, *qs: float) -> list[float]:
        with self._lock:
            data = np.fromiter(self._samples, dtype=np.float64)
        if data.size == 0:
            return [float("nan")] * len(qs)
        return [float(v) for v in np.percentile(data, qs)]


def name_os_thread(name: str) -> None:
    """Give the calling thread a kernel name (top -H, /proc/<pid>/task/*/comm); Linux only, best effort."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None)
        libc.prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME, 15 bytes + NUL
    except (OSError, AttributeError):
        pass
