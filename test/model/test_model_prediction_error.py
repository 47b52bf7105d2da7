"""Latent prediction error per camera region, and which key frame each predicted latent frame stands for."""
from __future__ import annotations

import pytest
import torch

from lingbot_va_ros.model.embodiment import load_embodiment
from lingbot_va_ros.model.prediction_error import frame_action_indices, latent_mse

LAYOUT = load_embodiment("demo_sim").camera_layout          # T-shape: head 16x20 cells below wrists 8x10 + 8x10


def test_latent_mse_is_the_mean_square_over_the_canvas_and_each_camera_region():
    real = torch.zeros(48, 2, LAYOUT.latent_height, LAYOUT.latent_width)
    predicted = real.clone()
    assert latent_mse(predicted, real, LAYOUT) == (0.0, {c: 0.0 for c in LAYOUT.camera_names})
    # an error of 2 everywhere in the left wrist's region only
    r, c = LAYOUT.placement("cam_left_wrist")
    h, w = LAYOUT.latent_size("cam_left_wrist")
    predicted[:, :, r:r + h, c:c + w] = 2.0
    total, per_camera = latent_mse(predicted, real, LAYOUT)
    assert per_camera == {"cam_high": 0.0, "cam_left_wrist": 4.0, "cam_right_wrist": 0.0}
    assert total == pytest.approx(4.0 * h * w / (LAYOUT.latent_height * LAYOUT.latent_width))


def test_latent_mse_rejects_latents_of_different_frames():
    a = torch.zeros(48, 2, LAYOUT.latent_height, LAYOUT.latent_width)
    with pytest.raises(ValueError, match="differ in shape"):
        latent_mse(a, a[:, :1], LAYOUT)
    with pytest.raises(ValueError, match=r"\[z, frames, H, W\]"):
        latent_mse(a[0], a[0], LAYOUT)


def test_each_latent_frame_predicts_the_key_frame_after_its_last_action():
    # demo_sim: 2 latent frames of 16 actions; key frames every 4 actions (after actions 3, 7, 11, 15, ...)
    assert frame_action_indices(0, 0, 2, 16) == (-1, 15)            # frame 0: the initial observation
    assert frame_action_indices(1, 16, 2, 16) == (31, 47)
    assert frame_action_indices(2, 48, 2, 16) == (63, 79)
    assert frame_action_indices(0, 0, 4, 20) == (-1, 19, 39, 59)    # franka-like: 4 frames of 20 actions
