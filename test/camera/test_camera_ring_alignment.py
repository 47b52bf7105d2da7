"""Ring buffer, nearest-frame selection, latency offset and freshness rules (pure functions)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lingbot_va_ros.camera.alignment import (estimate_period_ns, frame_problem, next_frame_could_be_nearer,
                                             target_time_ns)
from lingbot_va_ros.camera.frames import BackwardsStamp, Frame, FrameRing, RepeatedStamp

MS = 1_000_000
PIXELS = np.zeros((2, 2, 3), np.uint8)


def _frame(stamp_ns: int) -> Frame:
    return Frame(stamp_ns, 0, PIXELS)


def _ring(stamps, capacity=8) -> FrameRing:
    ring = FrameRing(capacity)
    for s in stamps:
        assert ring.push(_frame(s)) is None
    return ring


def test_ring_is_bounded_and_keeps_the_newest():
    ring = _ring(range(0, 100 * MS, 10 * MS), capacity=4)
    assert len(ring) == 4
    assert ring.stamps() == [60 * MS, 70 * MS, 80 * MS, 90 * MS]
    assert ring.newest().stamp_ns == 90 * MS


def test_nearest_picks_the_closest_stamp_and_the_earlier_one_on_a_tie():
    ring = _ring([0, 33 * MS, 66 * MS, 100 * MS])
    assert ring.nearest(40 * MS).stamp_ns == 33 * MS
    assert ring.nearest(50 * MS).stamp_ns == 66 * MS
    assert ring.nearest(int(49.5 * MS)).stamp_ns == 33 * MS      # exact tie -> earlier
    assert ring.nearest(-5 * MS).stamp_ns == 0                   # before the first
    assert ring.nearest(500 * MS).stamp_ns == 100 * MS           # after the newest
    assert FrameRing(3).nearest(0) is None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 10**9), min_size=1, max_size=40, unique=True), st.integers(-10**8, 2 * 10**9))
def test_nearest_equals_brute_force(stamps, target):
    stamps = sorted(stamps)
    ring = _ring(stamps, capacity=64)
    best = min(stamps, key=lambda s: (abs(s - target), s))
    assert ring.nearest(target).stamp_ns == best


def test_repeated_stamp_is_dropped_and_reported():
    ring = _ring([10 * MS, 20 * MS])
    fault = ring.push(_frame(20 * MS))
    assert isinstance(fault, RepeatedStamp) and "repeated" in fault
    assert ring.stamps() == [10 * MS, 20 * MS]


def test_backwards_stamp_restarts_the_buffer():
    ring = _ring([10 * MS, 20 * MS, 30 * MS])
    fault = ring.push(_frame(5 * MS))
    assert isinstance(fault, BackwardsStamp) and "backwards by 25.0 ms" in fault
    assert ring.stamps() == [5 * MS]          # a restarted clock recovers after one fault
    assert ring.push(_frame(6 * MS)) is None


def test_latency_offset_moves_the_target_back():
    assert target_time_ns(1_000 * MS, 0.03) == 970 * MS
    assert target_time_ns(1_000 * MS, -0.01) == 1_010 * MS
    ring = _ring([900 * MS, 933 * MS, 966 * MS, 1_000 * MS])
    assert ring.nearest(target_time_ns(1_000 * MS, 0.0)).stamp_ns == 1_000 * MS
    assert ring.nearest(target_time_ns(1_000 * MS, 0.06)).stamp_ns == 933 * MS


def test_freshness_rules():
    assert frame_problem(None, 0, 0.1).startswith("missing")
    assert frame_problem(_frame(900 * MS), 1_000 * MS, 0.1) is None            # exactly max_age: ok
    stale = frame_problem(_frame(899 * MS), 1_000 * MS, 0.1)
    assert stale.startswith("stale") and "101.0 ms older" in stale
    ahead = frame_problem(_frame(1_150 * MS), 1_000 * MS, 0.1)
    assert ahead.startswith("ahead") and "150.0 ms newer" in ahead


def test_period_estimate_is_robust_to_one_gap():
    stamps = [i * 33 * MS for i in range(10)]
    stamps.insert(5, stamps[4] + 1 * MS)  # a late duplicate-ish frame
    assert abs(estimate_period_ns(stamps) - 33 * MS) <= 1 * MS
    assert estimate_period_ns([0, 33 * MS]) is None


def test_waiting_helps_only_when_the_next_frame_can_be_nearer():
    period = 33 * MS
    assert not next_frame_could_be_nearer(1_000 * MS, 1_000 * MS, period)      # newest at/after target
    assert not next_frame_could_be_nearer(993 * MS, 1_000 * MS, period)        # 7 ms < a quarter period
    assert next_frame_could_be_nearer(990 * MS, 1_000 * MS, period)            # 10 ms: a jittered next frame may be nearer
    assert next_frame_could_be_nearer(999 * MS, 1_000 * MS, None)              # period unknown: wait


@pytest.mark.parametrize("capacity", [0, -1])
def test_ring_needs_capacity(capacity):
    with pytest.raises(ValueError):
        FrameRing(capacity)
