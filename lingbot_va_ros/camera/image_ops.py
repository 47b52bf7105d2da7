"""Camera frame -> model pixels: decode any supported encoding and resize to the camera's model size.

The model's reference resize is ``F.interpolate(x.float(), size, mode="bilinear", align_corners=False)``
with antialias off (spec §2.1). ``cv2.resize(INTER_LINEAR)`` on float32 pixels computes the same bilinear
weights (half-pixel centres, source coordinates clamped at the borders, no low-pass filter when
shrinking), so the float results agree to float32 rounding. We then round half-to-even to uint8, so every
pixel is within 0.5 LSB (+ float32 noise; 0.5006 max on the reference frames) of the official float path,
and equal to its rounded value except on .5 ties. cv2 on uint8 pixels would be 2x faster but uses 11-bit
fixed-point weights (up to 0.8 LSB off), hence the float path.

Channel order conversion is done by cv2 (numpy's reversed-stride copies cost ~2.5 ms on 480x640), and
grey images are resized on one channel before being expanded to RGB (3x less work).
"""
from __future__ import annotations

import array

import cv2
import numpy as np

from lingbot_va_ros.common.conversions import MessageError

# encoding -> (bytes per pixel, cv2 conversion to RGB or None when the bytes already are RGB / grey)
_RAW_ENCODINGS: dict[str, tuple[int, int | None]] = {
    "rgb8": (3, None),
    "8UC3": (3, None),  # same convention as lingbot_va_ros.common.conversions
    "bgr8": (3, cv2.COLOR_BGR2RGB),
    "rgba8": (4, cv2.COLOR_RGBA2RGB),
    "bgra8": (4, cv2.COLOR_BGRA2RGB),
    "mono8": (1, None),
    "8UC1": (1, None),
    "yuv422": (2, cv2.COLOR_YUV2RGB_UYVY),  # ROS "yuv422" is UYVY byte order
    "uyvy": (2, cv2.COLOR_YUV2RGB_UYVY),
    "yuv422_yuy2": (2, cv2.COLOR_YUV2RGB_YUYV),
    "yuyv": (2, cv2.COLOR_YUV2RGB_YUYV),
}
SUPPORTED_ENCODINGS = tuple(sorted(_RAW_ENCODINGS))


def _as_uint8_buffer(data) -> np.ndarray:
    if isinstance(data, (bytes, bytearray, memoryview, array.array)):
        return np.frombuffer(data, dtype=np.uint8)
    return np.frombuffer(bytes(data), dtype=np.uint8)


def image_msg_pixels(msg) -> np.ndarray:
    """sensor_msgs/Image -> HxWx3 RGB or HxW grey uint8 (a view into the message where possible).

    Only 8-bit-per-channel encodings are accepted, so ``is_bigendian`` never matters.
    """
    enc = msg.encoding
    if enc not in _RAW_ENCODINGS:
        raise MessageError(f"unsupported image encoding '{enc}' (supported: {', '.join(SUPPORTED_ENCODINGS)})")
    channels, conversion = _RAW_ENCODINGS[enc]
    h, w = int(msg.height), int(msg.width)
    if h <= 0 or w <= 0:
        raise MessageError(f"empty image {h}x{w}")
    step = int(msg.step) or w * channels
    if step < w * channels:
        raise MessageError(f"image step {step} < width*channels {w * channels} ({enc})")
    buf = _as_uint8_buffer(msg.data)
    if buf.size < step * h:
        raise MessageError(f"image data has {buf.size} bytes, {enc} {h}x{w} (step {step}) needs {step * h}")
    rows = buf[: step * h].reshape(h, step)[:, : w * channels]
    if channels == 1:
        return rows
    pixels = rows.reshape(h, w, channels)
    if conversion is None:
        return pixels
    return cv2.cvtColor(np.ascontiguousarray(pixels), conversion)


# A compressed frame may not decode to more than this (a 6000x6000 PNG of zeros is ~100 KB and decodes to
# 108 MB; OpenCV's own limit is 2^30 pixels). 25 MP is above any camera this node is meant for (4K = 8.3 MP).
MAX_DECODED_PIXELS = 25_000_000


def compressed_header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the image header alone (Pillow reads no pixel data on open); None if unknown."""
    import io

    from PIL import Image as PILImage

    try:
        with PILImage.open(io.BytesIO(data)) as im:
            return im.size
    except PILImage.DecompressionBombError:
        return (1 << 31, 1)
    except Exception:  # noqa: BLE001 - not a format Pillow knows: cv2 decides
        return None


def compressed_msg_pixels(msg, max_pixels: int = MAX_DECODED_PIXELS) -> np.ndarray:
    """sensor_msgs/CompressedImage (JPEG/PNG; the format string is informative only) -> HxWx3 BGR uint8.

    Returns BGR (cv2's native order); :func:`to_model_rgb` converts after resizing, which is cheaper. The header's
    size is checked against ``max_pixels`` before anything is decoded.
    """
    fmt = str(getattr(msg, "format", ""))
    if "compressedDepth" in fmt:
        raise MessageError(f"compressedDepth images are depth maps, not camera colour (format '{fmt}')")
    data = _as_uint8_buffer(msg.data)
    if data.size == 0:
        raise MessageError("empty compressed image")
    size = compressed_header_size(data.tobytes())
    if size is not None and size[0] * size[1] > max_pixels:
        raise MessageError(f"compressed image header says {size[0]}x{size[1]} = {size[0] * size[1]} pixels, more "
                           f"than the {max_pixels} this node decodes (format '{fmt}', {data.size} bytes)")
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if bgr is None:
        raise MessageError(f"cannot decode compressed image (format '{fmt}', {data.size} bytes)")
    return bgr


def bilinear_resize_float(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of HxW or HxWxC pixels to ``size=(height, width)`` as float32 (torch's rule)."""
    out_h, out_w = int(size[0]), int(size[1])
    src = pixels.astype(np.float32, copy=False)
    if src.shape[:2] == (out_h, out_w):
        return src.copy() if src is pixels else src
    return cv2.resize(src, (out_w, out_h), interpolation=cv2.INTER_LINEAR)


def to_model_rgb(pixels: np.ndarray, size: tuple[int, int], bgr: bool = False) -> np.ndarray:
    """Decoded pixels (RGB, BGR or grey) -> HxWx3 uint8 RGB at the model size, contiguous."""
    if pixels.dtype != np.uint8:
        raise MessageError(f"expected uint8 pixels, got {pixels.dtype}")
    if pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] not in (1, 3)):
        raise MessageError(f"expected HxW grey or HxWx3 colour pixels, got shape {pixels.shape}")
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    resized = bilinear_resize_float(pixels, size)
    np.rint(resized, out=resized)  # half-to-even; bilinear is a convex combination, so 0 <= value <= 255
    small = resized.astype(np.uint8)
    if small.ndim == 2:
        return cv2.cvtColor(small, cv2.COLOR_GRAY2RGB)
    if bgr:
        return cv2.cvtColor(small, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(small)


def image_msg_to_model_rgb(msg, size: tuple[int, int]) -> np.ndarray:
    return to_model_rgb(image_msg_pixels(msg), size)


def compressed_msg_to_model_rgb(msg, size: tuple[int, int]) -> np.ndarray:
    return to_model_rgb(compressed_msg_pixels(msg), size, bgr=True)
