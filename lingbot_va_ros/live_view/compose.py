"""The live-view images: per camera, a real key frame beside a predicted one, labelled (numpy + OpenCV only).

Both published views use the same layout, one row per camera, [real | predicted], and a caption bar on top:

- ``/lingbot_va/predicted_frames``: the newest real key frame beside the chunk's prediction of a future key
  frame (what the model imagines the arm is about to see);
- ``/lingbot_va/prediction_vs_real``: the prediction of key frame k beside the real key frame k, once it has been
  captured, with the pixel error in the caption.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import cv2
import numpy as np

_PAD = 4
_LABEL_H = 18
_NA_COLOUR = (200, 60, 60)


def label_bar(img: np.ndarray, text: str) -> np.ndarray:
    """``img`` with a dark bar holding ``text`` on top."""
    bar = np.full((_LABEL_H, img.shape[1], 3), 24, np.uint8)
    cv2.putText(bar, text, (4, _LABEL_H - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (235, 235, 235), 1, cv2.LINE_AA)
    return np.vstack([bar, img])


def _fit(img: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``img`` at another HxW (a half-resolution or preview decode shown beside a full-size real frame)."""
    if img.shape[:2] == shape[:2]:
        return img
    return cv2.resize(img, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


def _missing(shape: tuple[int, ...]) -> np.ndarray:
    img = np.zeros(shape, np.uint8)
    cv2.putText(img, "n/a", (4, shape[0] // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.5, _NA_COLOUR, 1)
    return img


def compose_side_by_side(real: Mapping[str, np.ndarray] | None, predicted: Mapping[str, np.ndarray],
                         cameras: Sequence[str], real_label: str, predicted_label: str,
                         caption: str = "") -> np.ndarray:
    """One RGB image: a row per camera with [real | predicted]; a missing real frame shows as 'n/a'.

    The predicted image is resized to the real one's size when they differ; labels read
    '<camera> <real_label>' and '<camera> <predicted_label>'."""
    if not cameras:
        raise ValueError("no cameras to compose")
    rows = []
    for cam in cameras:
        if cam not in predicted:
            raise ValueError(f"no predicted image for camera {cam!r} (have {sorted(predicted)})")
        pred = predicted[cam]
        left = real.get(cam) if real else None
        if left is None:
            left = _missing(pred.shape)
        pred = _fit(pred, left.shape)
        left, right = label_bar(left, f"{cam} {real_label}"), label_bar(pred, f"{cam} {predicted_label}")
        rows.append(np.hstack([left, np.zeros((left.shape[0], _PAD, 3), np.uint8), right]))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, _PAD), (0, width - r.shape[1]), (0, 0))) for r in rows]
    view = np.vstack(rows)
    return label_bar(view, caption) if caption else view


def pixel_mse(predicted: Mapping[str, np.ndarray], real: Mapping[str, np.ndarray], cameras: Sequence[str]) -> float:
    """Mean squared pixel error (0..255 scale) over the cameras, predicted resized to the real size."""
    errors, counts = 0.0, 0
    for cam in cameras:
        r = real[cam].astype(np.float64)
        p = _fit(predicted[cam], real[cam].shape).astype(np.float64)
        errors += float(((p - r) ** 2).sum())
        counts += r.size
    return errors / counts


def psnr(mse: float) -> float:
    """Peak signal-to-noise ratio in dB of an 8-bit image with this mean squared error (inf when identical)."""
    return math.inf if mse <= 0 else 10.0 * math.log10(255.0 ** 2 / mse)


def encode_jpeg(rgb: np.ndarray, quality: int = 85) -> bytes:
    """HxWx3 uint8 RGB -> JPEG bytes (what sensor_msgs/CompressedImage carries, format 'rgb8; jpeg compressed bgr8')."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected HxWx3 uint8 RGB, got {rgb.dtype} {rgb.shape}")
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


JPEG_FORMAT = "rgb8; jpeg compressed bgr8"     # image_transport's compressed format string
