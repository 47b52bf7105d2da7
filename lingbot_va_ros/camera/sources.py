"""Camera source plugins: where a camera role's frames come from (registry ``CAMERA_SOURCES``).

A source hands :class:`~lingbot_va_ros.camera.frames.RawFrame` objects (payload + stamp + decoder) to
``deliver`` and does nothing heavy itself; decoding and resizing run on the camera's ingest worker.

Built-ins:
- ``ros_image``: any sensor_msgs/Image topic (rgb8, bgr8, rgba8, bgra8, mono8, yuv422/uyvy, yuyv/yuv422_yuy2).
- ``ros_compressed``: any sensor_msgs/CompressedImage topic (JPEG or PNG), e.g. ``<image topic>/compressed``
  from image_transport (realsense2_camera, usb_cam, v4l2_camera) or the simulator.
- ``opencv``: a local device index, device path, video file or stream URL read by cv2.VideoCapture on its
  own capture thread, stamped with the node clock right after each grab.

Third-party sources subclass :class:`CameraSource`, declare a pydantic ``Settings`` model and register an
entry point in group ``lingbot_va_ros.camera_sources`` (or are named as ``package.module:Class``).
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lingbot_va_ros.camera.frames import RawFrame
from lingbot_va_ros.camera.image_ops import compressed_msg_to_model_rgb, image_msg_to_model_rgb, to_model_rgb
from lingbot_va_ros.camera.params import STAMP_HEADER, CameraParams
from lingbot_va_ros.camera.stats import name_os_thread
from lingbot_va_ros.common.conversions import MessageError, stamp_to_ns
from lingbot_va_ros.common.params import ParameterError


@dataclass
class SourceContext:
    """What a source may use from its host: the ROS node (None outside ROS), the control clock, logging."""

    node: Any | None
    now_ns: Callable[[], int]
    log_info: Callable[[str], None] = print
    log_warn: Callable[[str], None] = print


class SourceSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CameraSource:
    """Base class of every camera source plugin."""

    Settings: ClassVar[type[SourceSettings]] = SourceSettings

    def __init__(self, camera: str, params: CameraParams, deliver: Callable[[RawFrame], None],
                 context: SourceContext):
        self.camera = camera
        self.params = params
        self.deliver = deliver
        self.context = context
        try:
            self.settings = self.Settings.model_validate(dict(params.settings))
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}"
                                 for e in exc.errors())
            raise ParameterError(f"cameras.{camera}.settings ({type(self).__name__}): {problems}") from None

    def start(self) -> None:
        """Begin delivering frames (subscribe / start the capture thread)."""

    def stop(self) -> None:
        """Stop delivering frames and release resources; must be idempotent."""

    def describe(self) -> str:
        return type(self).__name__


# ---- ROS topics ---------------------------------------------------------------------------------------
class RosTopicSettings(SourceSettings):
    topic: str = Field(..., min_length=1, description="image topic (remappable like any ROS name)")
    qos_depth: int = Field(5, ge=1, le=100, description="subscription depth (keep-last)")
    reliability: Literal["best_effort", "reliable"] = Field("best_effort", description=(
        "best_effort (sensor data: matches every camera driver, a late frame is dropped rather than resent) or "
        "reliable (only matches reliable publishers; no frame lost in transport, e.g. a republisher over a lossy "
        "link, or tests that check which frame was chosen)"))


def _reject(reason: str):
    def decode(_payload, _size):
        raise MessageError(reason)
    return decode


class _RosTopicSource(CameraSource):
    Settings = RosTopicSettings
    msg_type_name: ClassVar[str] = ""

    def _msg_type(self):
        raise NotImplementedError

    def _decoder(self):
        raise NotImplementedError

    def start(self) -> None:
        from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        from lingbot_va_ros.common.qos import SENSOR_DATA

        node = self.context.node
        if node is None:
            raise RuntimeError(f"{type(self).__name__} for camera '{self.camera}' needs a ROS node")
        reliability = (ReliabilityPolicy.RELIABLE if self.settings.reliability == "reliable"
                       else SENSOR_DATA.reliability)
        qos = QoSProfile(depth=self.settings.qos_depth, reliability=reliability,
                         durability=SENSOR_DATA.durability, history=SENSOR_DATA.history)
        self._decode = self._decoder()
        self._use_header = self.params.stamp == STAMP_HEADER
        # One exclusive group per camera: different cameras are taken (deserialised) in parallel, while one
        # camera's messages stay in order (a reentrant group let two threads hand frames over swapped, which
        # then looked like a stamp going backwards).
        self._subscription = node.create_subscription(self._msg_type(), self.settings.topic, self._on_message, qos,
                                                      callback_group=MutuallyExclusiveCallbackGroup())

    def _on_message(self, msg) -> None:
        received = time.monotonic_ns()
        if self._use_header:
            stamp = stamp_to_ns(msg.header.stamp)
            if stamp == 0:
                self.deliver(RawFrame(0, received, msg, _reject(
                    f"header stamp is zero on {self.settings.topic}; set cameras.{self.camera}.stamp: receive")))
                return
        else:
            stamp = self.context.now_ns()
        self.deliver(RawFrame(stamp, received, msg, self._decode))

    def stop(self) -> None:
        sub = getattr(self, "_subscription", None)
        if sub is not None and self.context.node is not None:
            self.context.node.destroy_subscription(sub)
            self._subscription = None

    def describe(self) -> str:
        return f"{self.msg_type_name} {self.settings.topic} (stamp: {self.params.stamp})"


class RosImageSource(_RosTopicSource):
    """sensor_msgs/Image topic."""

    msg_type_name = "sensor_msgs/Image"

    def _msg_type(self):
        from sensor_msgs.msg import Image

        return Image

    def _decoder(self):
        return image_msg_to_model_rgb


class RosCompressedImageSource(_RosTopicSource):
    """sensor_msgs/CompressedImage topic (JPEG / PNG)."""

    msg_type_name = "sensor_msgs/CompressedImage"

    def _msg_type(self):
        from sensor_msgs.msg import CompressedImage

        return CompressedImage

    def _decoder(self):
        return compressed_msg_to_model_rgb


# ---- OpenCV capture -------------------------------------------------------------------------------------
_BACKENDS = {"": cv2.CAP_ANY, "any": cv2.CAP_ANY, "v4l2": cv2.CAP_V4L2, "ffmpeg": cv2.CAP_FFMPEG,
             "gstreamer": cv2.CAP_GSTREAMER, "images": cv2.CAP_IMAGES}


class OpenCvSettings(SourceSettings):
    device: int | str = Field(..., description=(
        "device index (0), device path (/dev/video2), video file, image pattern or stream URL"))
    backend: str = Field("", description=f"cv2 capture backend: {' | '.join(k for k in _BACKENDS if k)} (empty: any)")
    rate_hz: float = Field(0.0, ge=0.0, le=1000.0, description=(
        "pace frames at this rate; 0 = as the device delivers them (files: the file's own frame rate)"))
    loop: bool = Field(False, description="restart a video file at its end instead of stopping")
    width: int = Field(0, ge=0, le=8192, description="requested capture width (0: device default)")
    height: int = Field(0, ge=0, le=8192, description="requested capture height (0: device default)")
    fps: float = Field(0.0, ge=0.0, le=1000.0, description="requested device frame rate (0: device default)")
    fourcc: str = Field("", max_length=4, description="requested pixel format, e.g. MJPG (empty: device default)")
    reopen_period: float = Field(1.0, gt=0.0, le=60.0, description="seconds between attempts to (re)open a device")


def _decode_bgr(bgr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return to_model_rgb(bgr, size, bgr=bgr.ndim == 3)


class OpenCvSource(CameraSource):
    """cv2.VideoCapture on its own thread; each frame is stamped with the node clock right after grab()."""

    Settings = OpenCvSettings

    def __init__(self, camera, params, deliver, context):
        super().__init__(camera, params, deliver, context)
        dev = self.settings.device
        if isinstance(dev, str) and dev.strip().isdigit():
            dev = int(dev)
        self._device = dev
        self._is_file = isinstance(dev, str) and "://" not in dev and not dev.startswith("/dev/") and "%" not in dev
        if self._is_file and not os.path.isfile(os.path.expanduser(dev)):
            raise ParameterError(f"cameras.{camera}.settings.device: no such video file '{dev}'")
        if self.settings.backend.lower() not in _BACKENDS:
            raise ParameterError(f"cameras.{camera}.settings.backend '{self.settings.backend}' is not one of "
                                 f"{[k for k in _BACKENDS if k]}")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.frames_captured = 0
        self.finished = threading.Event()      # a non-looping file reached its end

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"capture_{self.camera}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
            self._thread = None

    def describe(self) -> str:
        return f"opencv {self._device!r} (stamp: capture clock)"

    def _open(self) -> cv2.VideoCapture | None:
        dev = os.path.expanduser(self._device) if self._is_file else self._device
        cap = cv2.VideoCapture(dev, _BACKENDS[self.settings.backend.lower()])
        if not cap.isOpened():
            cap.release()
            return None
        s = self.settings
        if s.fourcc:
            cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*s.fourcc.ljust(4)))
        if s.width:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, s.width)
        if s.height:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, s.height)
        if s.fps:
            cap.set(cv2.CAP_PROP_FPS, s.fps)
        if not self._is_file:
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # newest frame, not a stale driver queue (where supported)
        return cap

    def _frame_period(self, cap: cv2.VideoCapture) -> float:
        if self.settings.rate_hz > 0:
            return 1.0 / self.settings.rate_hz
        if self._is_file:
            fps = cap.get(cv2.CAP_PROP_FPS)
            return 1.0 / fps if fps and fps > 0 else 1.0 / 30.0
        return 0.0  # a live device paces itself

    def _run(self) -> None:
        name_os_thread(f"capture_{self.camera}")
        cap = None
        while not self._stop.is_set():
            cap = self._open()
            if cap is not None:
                break
            self.context.log_warn(f"camera '{self.camera}': cannot open {self._device!r}; retrying in "
                                  f"{self.settings.reopen_period:.1f} s")
            self._stop.wait(self.settings.reopen_period)
        if cap is None:
            return
        period = self._frame_period(cap)
        next_due = time.monotonic()
        try:
            while not self._stop.is_set():
                if period:
                    delay = next_due - time.monotonic()
                    if delay > 0 and self._stop.wait(delay):
                        break
                    next_due = max(next_due + period, time.monotonic() - period)  # no catch-up burst
                if not cap.grab():
                    if self._is_file and self.settings.loop:
                        cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                        continue
                    if self._is_file:
                        self.context.log_info(f"camera '{self.camera}': end of {self._device!r}")
                        self.finished.set()
                        return
                    self.context.log_warn(f"camera '{self.camera}': grab failed on {self._device!r}; reopening")
                    cap.release()
                    self._stop.wait(self.settings.reopen_period)
                    cap = self._open() or cap
                    continue
                stamp, received = self.context.now_ns(), time.monotonic_ns()
                ok, image = cap.retrieve()
                if not ok or image is None:
                    continue
                self.frames_captured += 1
                self.deliver(RawFrame(stamp, received, image, _decode_bgr))
        finally:
            cap.release()
