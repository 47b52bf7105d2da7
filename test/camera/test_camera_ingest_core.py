"""The ingest core without ROS: channels, assembler thread, waiting with deadlines, validity, health."""
from __future__ import annotations

import queue
import threading
import time

import numpy as np
import pytest

from lingbot_va_ros.camera.frames import RawFrame
from lingbot_va_ros.camera.ingest import ERROR, OK, WARN, CameraIngest, KeyFrameResult
from lingbot_va_ros.camera.params import CameraIngestParams
from lingbot_va_ros.testing.ros_harness import deadline_s

MS = 1_000_000
NAMES = ["cam_high", "cam_left_wrist", "cam_right_wrist"]
BASE = 1_700_000_000 * 1_000_000_000


def _counter_image(counter: int, size) -> np.ndarray:
    return np.full((size[0], size[1], 3), counter % 256, np.uint8)


def _decode_counter(payload, size):
    return _counter_image(payload, size)


def _params(**per_camera) -> CameraIngestParams:
    cams = {}
    for name in NAMES:
        cam = {"height": 16, "width": 20, "max_age": 0.1}
        cam.update(per_camera.get(name, {}))
        cams[name] = cam
    extra = per_camera.get("node", {})
    return CameraIngestParams.from_dict({"camera_names": NAMES, "cameras": cams, **extra})


class Harness:
    def __init__(self, params: CameraIngestParams):
        self.results: queue.Queue[KeyFrameResult] = queue.Queue()
        self.errors: list[str] = []
        self.ingest = CameraIngest(params, self.results.put, now_ns=lambda: BASE, log_error=self.errors.append)
        self.ingest.start()

    def frame(self, camera: str, stamp_ms: float, counter: int, decode=_decode_counter, wait: bool = True) -> None:
        """Hand over one frame like a source; by default wait until it is processed (a real camera's frames
        are 33 ms apart, far slower than the decode queue drains)."""
        self.ingest.channels[camera].submit(RawFrame(BASE + int(stamp_ms * MS), time.monotonic_ns(), counter, decode))
        if wait:
            self.settle()

    def settle(self, timeout: float = 2.0) -> None:
        deadline = time.monotonic() + deadline_s(timeout)
        while any(ch.completed < ch.enqueued for ch in self.ingest.channels.values()):
            assert time.monotonic() < deadline, "frames not processed"
            time.sleep(0.001)

    def tick(self, stamp_ms: float, action_index: int = 3, key_frame_index: int = 1) -> float:
        started = time.perf_counter()
        self.ingest.on_tick("ep", action_index, key_frame_index, BASE + int(stamp_ms * MS))
        return time.perf_counter() - started

    def result(self, timeout: float = 2.0) -> KeyFrameResult:
        return self.results.get(timeout=deadline_s(timeout))

    def close(self) -> None:
        self.ingest.stop()


@pytest.fixture
def make():
    made = []

    def _make(**kw) -> Harness:
        h = Harness(_params(**kw))
        made.append(h)
        return h

    yield _make
    for h in made:
        h.close()


def _counters(result: KeyFrameResult) -> list[int]:
    return [int(img[0, 0, 0]) for img in result.images]


def test_each_camera_gets_its_nearest_frame_with_its_latency_offset(make):
    h = make(cam_left_wrist={"latency_offset": 0.05}, cam_right_wrist={"latency_offset": -0.02})
    for i in range(10):                                  # 30 Hz, 15 Hz, 30 Hz
        h.frame("cam_high", i * 33.3, 100 + i)
        h.frame("cam_right_wrist", i * 33.3 + 5, 200 + i)
        if i % 2 == 0:
            h.frame("cam_left_wrist", i * 33.3, 150 + i)
    h.settle()
    h.tick(170.0)
    r = h.result()
    assert r.valid, r.reason()
    # cam_high target 170 -> frame 5 (166.5 vs 199.8); left target 120 -> frame 4 (133.2 vs 66.6);
    # right target 190 -> frame 6 (204.8 vs 171.5)
    assert _counters(r) == [105, 154, 206]
    assert [round((s - BASE) / MS, 1) for s in r.capture_stamps_ns] == [166.5, 133.2, 204.8]
    assert r.tick.action_index == 3 and r.tick.key_frame_index == 1
    assert all(img.shape == (16, 20, 3) for img in r.images)


def test_max_wait_waits_for_a_newer_frame_without_blocking_the_caller(make):
    h = make(cam_high={"max_wait": 1.0})
    for i in range(4):
        for cam in NAMES:
            h.frame(cam, i * 33.3, i)
    h.settle()
    # tick at 130 ms: newest cam_high frame is 100 ms (30 ms lag > half a 33 ms period) -> wait for the next.
    # The caller is not blocked: the tick returns, and the frame handed over after it is the one chosen.
    h.tick(130.0)
    time.sleep(0.08)                               # the frame comes 80 ms later (within max_wait)
    assert h.results.empty()
    h.frame("cam_high", 133.3, 4)
    r = h.result()
    assert r.valid and _counters(r)[0] == 4
    # it waited for the frame (at least the 80 ms), and stopped when it came, not at the 1 s deadline
    assert 60 * MS < r.waited_for_frames_ns < 1000 * MS


def test_max_wait_deadline_uses_what_is_buffered(make):
    h = make(cam_high={"max_wait": 0.06})
    for i in range(4):
        for cam in NAMES:
            h.frame(cam, i * 33.3, i)
    h.settle()
    h.tick(130.0)
    r = h.result()
    assert r.valid and _counters(r)[0] == 3       # the 100 ms frame, 30 ms old, within max_age
    assert r.waited_for_frames_ns >= 50 * MS       # waited out max_wait (how much longer: host speed)


def test_no_wait_when_the_next_frame_cannot_be_nearer(make):
    h = make(cam_high={"max_wait": 0.5})
    for i in range(4):
        for cam in NAMES:
            h.frame(cam, i * 33.3, i)
    h.settle()
    h.tick(105.0)                                  # 5 ms after the newest frame: it is already the nearest
    r = h.result(timeout=0.2)
    assert r.valid and r.waited_for_frames_ns == 0


def test_frames_still_decoding_are_waited_for(make):
    h = make(node={"inflight_timeout": 1.0})      # decoding 3 x 30 ms must fit on a loaded host
    for cam in NAMES:
        h.frame(cam, 0.0, 1)
    h.settle()

    def slow(payload, size):
        time.sleep(0.03)
        return _counter_image(payload, size)

    for cam in NAMES:
        h.frame(cam, 33.3, 2, decode=slow, wait=False)  # arrived before the tick, not decoded yet
    h.tick(33.3)
    r = h.result()
    assert r.valid and _counters(r) == [2, 2, 2]
    assert r.waited_inflight_ns > 5 * MS


def test_frames_still_decoding_are_not_waited_for_when_they_cannot_be_nearer(make):
    h = make(cam_high={"latency_offset": 0.1})
    for i in range(5):
        for cam in NAMES:
            h.frame(cam, i * 33.3, i)
    release = threading.Event()

    def blocked(payload, size):
        release.wait(deadline_s(2.0))
        return _counter_image(payload, size)

    h.frame("cam_high", 166.5, 5, decode=blocked, wait=False)  # decoding, but far from cam_high's target
    try:
        h.tick(170.0)                                # cam_high target 70 ms -> frame 2 (66.6), buffered
        r = h.result(timeout=1.0)
        assert r.valid and r.waited_inflight_ns == 0 and _counters(r)[0] == 2
    finally:
        release.set()


def test_stale_camera_invalidates_the_key_frame_and_reports_error(make):
    h = make()
    for i in range(3):
        h.frame("cam_high", i * 33.3, i)
        h.frame("cam_left_wrist", i * 33.3, i)
    h.frame("cam_right_wrist", -200.0, 0)            # stopped long ago
    h.settle()
    h.tick(70.0)
    r = h.result()
    assert not r.valid
    assert list(r.problems) == ["cam_right_wrist"]
    assert "stale" in r.problems["cam_right_wrist"] and "270.0 ms older" in r.problems["cam_right_wrist"]
    assert h.ingest.invalid_ticks == 1 and h.ingest.observations == 0
    health = {s.name: s for s in h.ingest.health(1.0)}
    bad = health["camera_ingest: cam_right_wrist"]
    assert bad.level == ERROR and "stale" in bad.message and bad.values["invalid_ticks"] == "1"
    assert health["camera_ingest: cam_high"].level != ERROR
    summary = health["camera_ingest: key frames"]
    assert summary.level == ERROR and "cam_right_wrist" in summary.message and summary.values["invalid_ticks"] == "1"


def test_missing_camera_invalidates_the_key_frame(make):
    h = make()
    h.frame("cam_high", 0.0, 1)
    h.frame("cam_left_wrist", 0.0, 1)
    h.settle()
    h.tick(0.0)
    r = h.result()
    assert not r.valid and r.problems == {"cam_right_wrist": "missing: no frame received yet"}


@pytest.mark.parametrize("bad_stamp,word,counter_name", [(66.6, "repeated", "stamp_repeats"),
                                                          (10.0, "backwards", "stamp_backwards")])
def test_repeated_or_backwards_stamps_invalidate_the_next_key_frame_only(make, bad_stamp, word, counter_name):
    h = make()
    for i in range(3):
        for cam in NAMES:
            h.frame(cam, i * 33.3, i)
    h.frame("cam_left_wrist", bad_stamp, 9)
    h.settle()
    h.tick(66.6)
    r = h.result()
    assert not r.valid and list(r.problems) == ["cam_left_wrist"]
    assert word in r.problems["cam_left_wrist"] and "stamps not increasing" in r.problems["cam_left_wrist"]
    assert getattr(h.ingest.channels["cam_left_wrist"].counters, counter_name) == 1
    for cam in NAMES:                                # later frames are consistent again
        h.frame(cam, 100.0, 3)
    h.settle()
    h.tick(100.0, action_index=7)
    r = h.result()
    assert r.valid, r.reason()


def test_decode_errors_and_queue_overflow_are_counted(make):
    h = make(cam_high={"queue_size": 2})
    release, decoding = threading.Event(), threading.Event()

    def blocked(payload, size):
        decoding.set()
        release.wait(deadline_s(2.0))
        return _counter_image(payload, size)

    def broken(payload, size):
        raise ValueError("corrupt frame")

    h.frame("cam_high", 0.0, 0, decode=blocked, wait=False)
    assert decoding.wait(deadline_s(2.0)), "the worker never started decoding"   # the worker is now busy
    for i in range(1, 5):                            # 4 more into a queue of 2 -> 2 dropped
        h.frame("cam_high", i * 10.0, i, wait=False)
    release.set()
    h.frame("cam_left_wrist", 0.0, 0, decode=broken)
    h.settle()
    high, left = h.ingest.channels["cam_high"].counters, h.ingest.channels["cam_left_wrist"].counters
    assert (high.received, high.dropped_queue, high.decoded) == (5, 2, 3)
    assert left.decode_errors == 1 and "corrupt frame" in h.ingest.channels["cam_left_wrist"].last_error
    health = {s.name: s for s in h.ingest.health(1.0)}
    assert health["camera_ingest: cam_high"].values["drops"] == "2"
    assert health["camera_ingest: cam_left_wrist"].values["decode_errors"] == "1"


def test_tick_queue_is_bounded(make):
    h = make(cam_high={"max_wait": 1.0}, node={"tick_queue_size": 1})
    for i in range(4):                               # no frames at all -> every tick waits max_wait
        h.tick(i * 80.0, action_index=i)
    results = [h.result(timeout=2.0)]
    while results[-1].tick.action_index != 3:
        results.append(h.result(timeout=2.0))
    # the newest tick always survives; what was dropped is counted and logged
    assert h.ingest.dropped_ticks + len(results) == 4 and h.ingest.dropped_ticks >= 2
    assert any("tick queue full" in e for e in h.errors)
    assert all(not r.valid for r in results)


def test_health_reports_rate_and_age(make):
    h = make()
    ingest = h.ingest
    ingest.now_ns = lambda: BASE + 150 * MS
    start = time.monotonic_ns()
    for i in range(5):
        ingest.channels["cam_high"].submit(RawFrame(BASE + i * 33 * MS, start + i * 33 * MS, i, _decode_counter))
    h.settle()
    statuses = {s.name: s for s in ingest.health(1.0, now_mono_ns=start + 132 * MS)}
    high = statuses["camera_ingest: cam_high"]
    assert high.level == OK and abs(float(high.values["rate_hz"]) - 30.3) < 0.5
    assert float(high.values["age_ms"]) == pytest.approx(18.0)
    assert statuses["camera_ingest: cam_left_wrist"].level == WARN
    assert "no frames" in statuses["camera_ingest: cam_left_wrist"].message
    assert statuses["camera_ingest: key frames"].level == WARN
