"""Source plugins: registry names, settings validation, and the OpenCV capture thread on a real video file."""
from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest

from lingbot_va_ros.camera.params import CameraParams
from lingbot_va_ros.camera.sources import (
    OpenCvSource,
    RosCompressedImageSource,
    RosImageSource,
    SourceContext,
)
from lingbot_va_ros.common.params import ParameterError
from lingbot_va_ros.common.registry import CAMERA_SOURCES
from lingbot_va_ros.testing.ros_harness import deadline_s, wait_until

FRAMES = 20


def _level(counter: int) -> int:
    return 20 + counter * 10  # well apart, so MJPG's few-LSB error cannot confuse neighbours


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "counter.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (64, 48))
    assert writer.isOpened(), "cv2.VideoWriter cannot write MJPG .avi here"
    for i in range(FRAMES):
        rgb = np.zeros((48, 64, 3), np.uint8)
        rgb[..., 0] = _level(i)       # red carries the counter; blue stays dark (checks BGR -> RGB)
        rgb[..., 1] = 60
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def _camera(settings: dict, source="opencv") -> CameraParams:
    return CameraParams(source=source, settings=settings, height=24, width=32)


class Collector:
    def __init__(self):
        self.frames = []
        self.lock = threading.Lock()

    def __call__(self, raw):
        with self.lock:
            self.frames.append(raw)


def _context(logs: list[str]) -> SourceContext:
    return SourceContext(node=None, now_ns=time.time_ns, log_info=logs.append, log_warn=logs.append)


def test_registry_resolves_the_builtin_sources():
    assert CAMERA_SOURCES.load("ros_image") is RosImageSource
    assert CAMERA_SOURCES.load("ros_compressed") is RosCompressedImageSource
    assert CAMERA_SOURCES.load("opencv") is OpenCvSource
    assert CAMERA_SOURCES.load("lingbot_va_ros.camera.sources:OpenCvSource") is OpenCvSource


def test_opencv_source_reads_a_video_file_on_its_own_thread(video):
    logs: list[str] = []
    out = Collector()
    src = OpenCvSource("cam_high", _camera({"device": str(video), "rate_hz": 100.0}), out, _context(logs))
    before = time.time_ns()
    src.start()
    assert src.finished.wait(deadline_s(5.0)), f"video not finished; logs: {logs}"
    src.stop()
    assert len(out.frames) == FRAMES
    stamps = [f.stamp_ns for f in out.frames]
    assert stamps[0] >= before and all(b > a for a, b in zip(stamps, stamps[1:]))
    gaps_ms = np.diff(stamps) / 1e6
    assert float(np.median(gaps_ms)) > 7.0          # paced at rate_hz = 100 by the capture clock (not faster)
    for i, raw in enumerate(out.frames):
        rgb = raw.decode(raw.payload, (24, 32))
        assert rgb.shape == (24, 32, 3) and rgb.dtype == np.uint8
        r, g, b = (int(np.median(rgb[..., c])) for c in range(3))
        assert abs(r - _level(i)) <= 4 and abs(g - 60) <= 4 and b <= 6, (i, r, g, b)
    assert any("end of" in line for line in logs)


def test_opencv_source_loops_and_stops_promptly(video):
    out = Collector()
    src = OpenCvSource("cam_high", _camera({"device": str(video), "rate_hz": 400.0, "loop": True}), out,
                       _context([]))
    src.start()
    wait_until(lambda: len(out.frames) >= FRAMES + 5, 5, "frames past the end of the file (looped)")
    thread = src._thread   # noqa: SLF001 - the capture thread must be gone once stop() returns
    src.stop()
    assert not thread.is_alive(), "stop() returned with the capture thread still running"
    assert len(out.frames) >= FRAMES + 5 and not src.finished.is_set()
    levels = [int(np.median(f.decode(f.payload, (24, 32))[..., 0])) for f in out.frames[FRAMES - 1:FRAMES + 1]]
    assert abs(levels[0] - _level(FRAMES - 1)) <= 4 and abs(levels[1] - _level(0)) <= 4  # wrapped around


def test_opencv_source_file_pace_defaults_to_the_file_rate(video):
    out = Collector()
    src = OpenCvSource("cam_high", _camera({"device": str(video)}), out, _context([]))
    src.start()
    wait_until(lambda: len(out.frames) >= 6, 5, "six frames")
    src.stop()
    # paced at the file's 30 fps, not read as fast as it decodes: frames are a period apart in the capture clock
    # (a stalled host only stretches the spacing; the rate itself is not the test's to judge)
    spacing = np.diff([f.stamp_ns for f in out.frames]) / 1e9
    assert np.median(spacing) >= 0.8 / 30.0, spacing


def test_opencv_settings_are_validated(tmp_path):
    with pytest.raises(ParameterError, match="no such video file"):
        OpenCvSource("cam_high", _camera({"device": str(tmp_path / "missing.mp4")}), Collector(), _context([]))
    with pytest.raises(ParameterError, match=r"cameras.cam_high.settings .*devise"):
        OpenCvSource("cam_high", _camera({"devise": 0}), Collector(), _context([]))
    with pytest.raises(ParameterError, match="backend"):
        OpenCvSource("cam_high", _camera({"device": 0, "backend": "directshow"}), Collector(), _context([]))
    src = OpenCvSource("cam_high", _camera({"device": "3"}), Collector(), _context([]))
    assert "3" in src.describe()


def test_ros_sources_need_a_topic():
    with pytest.raises(ParameterError, match="topic"):
        RosImageSource("cam_high", _camera({}, "ros_image"), Collector(), _context([]))
    src = RosCompressedImageSource("cam_high", _camera({"topic": "/cam/image_raw/compressed"}, "ros_compressed"),
                                   Collector(), _context([]))
    assert "/cam/image_raw/compressed" in src.describe()
    with pytest.raises(RuntimeError, match="needs a ROS node"):
        src.start()


def test_header_stamp_zero_is_rejected_with_advice():
    out = Collector()
    src = RosImageSource("cam_high", _camera({"topic": "/img"}, "ros_image"), out, _context([]))
    src._decode, src._use_header = None, True  # what start() sets, without a node
    from sensor_msgs.msg import Image

    src._on_message(Image())
    (raw,) = out.frames
    with pytest.raises(Exception, match="header stamp is zero.*stamp: receive"):
        raw.decode(raw.payload, (24, 32))
