"""numpy <-> message conversions shared by all nodes (no rclpy import; works on any duck-typed message).

Arrays travel as a flat float32 list plus an explicit shape; every decoder validates shape, size and
finiteness and raises ``MessageError`` with a reason the node can log and report.
"""
from __future__ import annotations

import array
from typing import Sequence

import numpy as np


class MessageError(ValueError):
    """A message that is malformed; the text says exactly what is wrong."""


# ---- time -------------------------------------------------------------------------------------------
def stamp_to_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def ns_to_stamp(ns: int, msg_type=None):
    if msg_type is None:
        from builtin_interfaces.msg import Time as msg_type  # noqa: N813
    sec, nsec = divmod(int(ns), 1_000_000_000)
    return msg_type(sec=sec, nanosec=nsec)


def seconds_to_duration(seconds: float):
    from builtin_interfaces.msg import Duration

    sec, nsec = divmod(int(round(seconds * 1e9)), 1_000_000_000)
    return Duration(sec=sec, nanosec=nsec)


def duration_to_seconds(duration) -> float:
    return duration.sec + duration.nanosec * 1e-9


# ---- float arrays -----------------------------------------------------------------------------------
def pack_matrix(values: np.ndarray) -> tuple[list[int], array.array]:
    """A 2-D float array as (shape, flat float32 array) for the *shape/actions fields."""
    arr = np.ascontiguousarray(values, dtype=np.float32)
    if arr.ndim != 2:
        raise MessageError(f"expected a 2-D array, got shape {arr.shape}")
    return [int(arr.shape[0]), int(arr.shape[1])], array.array("f", arr.tobytes())


def unpack_matrix(shape: Sequence[int], data, *, what: str = "actions", require_finite: bool = True,
                  max_elements: int = 1 << 22) -> np.ndarray:
    """Inverse of :func:`pack_matrix`, with validation (shape, size, finiteness, bounded size)."""
    shape = [int(s) for s in shape]
    if len(shape) != 2:
        raise MessageError(f"{what}: shape must have 2 entries [rows, cols], got {shape}")
    rows, cols = shape
    if rows <= 0 or cols <= 0:
        raise MessageError(f"{what}: empty shape {shape}")
    if rows * cols > max_elements:
        raise MessageError(f"{what}: {rows * cols} elements exceed the limit {max_elements}")
    flat = np.asarray(data, dtype=np.float32)
    if flat.size != rows * cols:
        raise MessageError(f"{what}: shape {shape} needs {rows * cols} values, got {flat.size}")
    mat = flat.reshape(rows, cols)
    if require_finite and not np.isfinite(mat).all():
        bad = np.argwhere(~np.isfinite(mat))[0]
        raise MessageError(f"{what}: non-finite value {mat[tuple(bad)]} at row {bad[0]}, column {bad[1]}")
    return mat


# ---- images -------------------------------------------------------------------------------------------
_CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "8UC1": 1, "8UC3": 3,
             "yuv422": 2, "uyvy": 2, "yuv422_yuy2": 2, "yuyv": 2}


def rgb_to_image_msg(rgb: np.ndarray, stamp_ns: int = 0, frame_id: str = ""):
    """HxWx3 uint8 RGB -> sensor_msgs/Image (rgb8). Assigns an array.array (fast path, see docs)."""
    from sensor_msgs.msg import Image

    img = np.ascontiguousarray(rgb)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise MessageError(f"expected HxWx3 uint8 RGB, got {img.dtype} {img.shape}")
    msg = Image()
    msg.header.stamp = ns_to_stamp(stamp_ns)
    msg.header.frame_id = frame_id
    msg.height, msg.width = int(img.shape[0]), int(img.shape[1])
    msg.encoding = "rgb8"
    msg.is_bigendian = 0
    msg.step = msg.width * 3
    msg.data = array.array("B", img.tobytes())
    return msg


def image_msg_to_rgb(msg) -> np.ndarray:
    """sensor_msgs/Image in rgb8/bgr8/rgba8/bgra8/mono8/yuv422 (UYVY)/yuv422_yuy2 (YUYV) -> HxWx3 RGB."""
    enc = msg.encoding
    if enc not in _CHANNELS:
        raise MessageError(f"unsupported image encoding '{enc}' (supported: {', '.join(sorted(_CHANNELS))})")
    h, w, ch = int(msg.height), int(msg.width), _CHANNELS[enc]
    if h <= 0 or w <= 0:
        raise MessageError(f"empty image {h}x{w}")
    step = int(msg.step) or w * ch
    if step < w * ch:
        raise MessageError(f"image step {step} < width*channels {w * ch}")
    buf = np.frombuffer(bytes(msg.data) if not isinstance(msg.data, (bytes, bytearray, memoryview, array.array))
                        else msg.data, dtype=np.uint8)
    if buf.size < step * h:
        raise MessageError(f"image data has {buf.size} bytes, {enc} {h}x{w} (step {step}) needs {step * h}")
    rows = buf[: step * h].reshape(h, step)[:, : w * ch].reshape(h, w, ch)
    if enc in ("rgb8", "8UC3"):
        return rows.copy()
    if enc == "bgr8":
        return rows[:, :, ::-1].copy()
    if enc == "rgba8":
        return rows[:, :, :3].copy()
    if enc == "bgra8":
        return rows[:, :, 2::-1].copy()
    if ch == 1:
        return np.repeat(rows, 3, axis=2)
    import cv2

    code = cv2.COLOR_YUV2RGB_UYVY if enc in ("yuv422", "uyvy") else cv2.COLOR_YUV2RGB_YUYV
    return cv2.cvtColor(np.ascontiguousarray(rows), code)


def compressed_msg_to_rgb(msg) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg/png, any 'format' string ROS drivers use) -> HxWx3 RGB."""
    import cv2

    data = np.frombuffer(bytes(msg.data), dtype=np.uint8)
    if data.size == 0:
        raise MessageError("empty compressed image")
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if bgr is None:
        raise MessageError(f"cannot decode compressed image (format '{msg.format}', {data.size} bytes)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
