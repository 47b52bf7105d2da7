"""Live-view images: rows of [real | predicted] per camera, pixel error, JPEG."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from lingbot_va_ros.live_view.compose import compose_side_by_side, encode_jpeg, pixel_mse, psnr

CAMS = ("cam_high", "cam_left_wrist")
SIZES = {"cam_high": (64, 80), "cam_left_wrist": (32, 40)}


def solid(value: int, cam: str, scale: int = 1) -> np.ndarray:
    h, w = SIZES[cam]
    return np.full((h // scale, w // scale, 3), value, np.uint8)


def test_rows_hold_the_real_frame_left_and_the_prediction_right():
    real = {c: solid(50, c) for c in CAMS}
    pred = {c: solid(200, c) for c in CAMS}
    view = compose_side_by_side(real, pred, CAMS, "real @3", "predicted @15", "caption")
    label, pad = 18, 4
    # caption bar, then per camera: label bar, [real | gap | predicted]
    assert view.shape == (label + (label + 64 + pad) + (label + 32 + pad), 80 + pad + 80, 3)
    top = 2 * label                                          # first image row of the head camera
    assert (view[top:top + 64, :80] == 50).all() and (view[top:top + 64, 84:164] == 200).all()
    wrist = top + 64 + pad + label
    assert (view[wrist:wrist + 32, :40] == 50).all() and (view[wrist:wrist + 32, 44:84] == 200).all()
    assert view[:label].std() > 0                            # the caption bar carries text


def test_a_smaller_prediction_is_shown_at_the_real_frame_size():
    view = compose_side_by_side({c: solid(10, c) for c in CAMS}, {c: solid(90, c, scale=2) for c in CAMS}, CAMS,
                                "real", "predicted")
    assert view.shape[1] == 80 + 4 + 80 and (view[18:18 + 64, 84:164] == 90).all()


def test_without_a_real_frame_the_left_side_says_so():
    view = compose_side_by_side(None, {c: solid(0, c) for c in CAMS}, CAMS, "real", "predicted")
    assert view.shape[1] == 164
    assert (view[18:18 + 64, :80, 0] > 100).any()            # the red 'n/a' text


def test_missing_predicted_camera_is_an_error():
    with pytest.raises(ValueError, match="cam_left_wrist"):
        compose_side_by_side(None, {"cam_high": solid(0, "cam_high")}, CAMS, "real", "predicted")


def test_pixel_error_and_psnr():
    real = {c: solid(100, c) for c in CAMS}
    assert pixel_mse(real, real, CAMS) == 0 and psnr(0.0) == float("inf")
    off = {c: solid(110, c) for c in CAMS}
    assert pixel_mse(off, real, CAMS) == pytest.approx(100.0)
    assert psnr(100.0) == pytest.approx(10 * np.log10(255 ** 2 / 100))
    half = {c: solid(110, c, scale=2) for c in CAMS}          # compared at the real size
    assert pixel_mse(half, real, CAMS) == pytest.approx(100.0)


def test_jpeg_decodes_back_to_the_image_within_jpeg_tolerance():
    rng = np.random.default_rng(1)
    smooth = cv2.GaussianBlur(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8), (9, 9), 3)
    data = encode_jpeg(smooth, quality=90)
    back = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert back.shape == smooth.shape and len(data) < smooth.nbytes
    assert psnr(float(((back.astype(float) - smooth) ** 2).mean())) > 30
    with pytest.raises(ValueError, match="uint8"):
        encode_jpeg(smooth.astype(np.float32))
