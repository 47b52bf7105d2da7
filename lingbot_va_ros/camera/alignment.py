"""Alignment and freshness rules of one key frame (pure functions of stamps; no threads, no ROS).

Each camera's frame is the one nearest to its target time ``tick stamp - latency_offset``. The key frame is
valid only if every camera has such a frame within ``max_age`` of its target and no camera's stamps went
backwards or repeated since the previous tick.
"""
from __future__ import annotations

import statistics
from typing import Sequence

from lingbot_va_ros.camera.frames import Frame

NS_PER_S = 1_000_000_000


def seconds_to_ns(seconds: float) -> int:
    return int(round(seconds * NS_PER_S))


def target_time_ns(tick_stamp_ns: int, latency_offset_s: float) -> int:
    return tick_stamp_ns - seconds_to_ns(latency_offset_s)


def estimate_period_ns(stamps: Sequence[int], recent: int = 9) -> int | None:
    """Median spacing of the last ``recent`` + 1 stamps (robust to one dropped or late frame)."""
    tail = list(stamps)[-(recent + 1):]
    if len(tail) < 3:
        return None
    gaps = [b - a for a, b in zip(tail, tail[1:]) if b > a]
    return int(statistics.median(gaps)) if gaps else None


def next_frame_could_be_nearer(newest_stamp_ns: int, target_ns: int, period_ns: int | None) -> bool:
    """Whether waiting for the next frame may improve on the newest one for ``target_ns``.

    The next frame is expected one period after the newest, so it is nearer once the newest lags the target
    by more than half a period. Frame times jitter (a late frame is followed by an "early" one), so we wait
    unless the lag is within a quarter period; unknown period: wait.
    """
    lag = target_ns - newest_stamp_ns
    if lag <= 0:
        return False
    return period_ns is None or 4 * lag > period_ns


def frame_problem(frame: Frame | None, target_ns: int, max_age_s: float) -> str | None:
    """Why ``frame`` cannot represent the instant ``target_ns`` (None when it can)."""
    if frame is None:
        return "missing: no frame received yet"
    offset_ns = target_ns - frame.stamp_ns
    limit_ns = seconds_to_ns(max_age_s)
    if offset_ns > limit_ns:
        return (f"stale: nearest frame is {offset_ns / 1e6:.1f} ms older than the tick target "
                f"(max_age {max_age_s * 1e3:.0f} ms)")
    if -offset_ns > limit_ns:
        return (f"ahead: nearest frame is {-offset_ns / 1e6:.1f} ms newer than the tick target "
                f"(max_age {max_age_s * 1e3:.0f} ms; clocks out of sync or latency_offset wrong?)")
    return None
