"""The live view's decode paths against the VAE itself (tiny checkpoint, small T-shape cameras)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lingbot_va_ros.live_view.compose import pixel_mse, psnr
from lingbot_va_ros.live_view.decoders import (LinearPreviewDecoder, VaeChunkDecoder, VaeFirstFrameDecoder,
                                               build_decoder, fit_linear_preview, load_or_fit_linear_preview)
from lingbot_va_ros.model.embodiment import load_embodiment
from lingbot_va_ros.model.loading import load_vae
from lingbot_va_ros.model.tiny_checkpoint import shared_tiny_checkpoint
from lingbot_va_ros.model.vae import LatentStats, ObservationEncoder

SMALL = [{"name": "cam_high", "height": 64, "width": 128}, {"name": "cam_left_wrist", "height": 32, "width": 64},
         {"name": "cam_right_wrist", "height": 32, "width": 64}]
LAYOUT = load_embodiment("demo_sim", cameras=SMALL).camera_layout       # 6x8 latent canvas


@pytest.fixture(scope="module")
def vae():
    return load_vae(shared_tiny_checkpoint() / "vae")


def encoded_clip(vae, layout) -> torch.Tensor:
    """Latents of a 1 + 4 key-frame clip of image-like frames (as the model predicts them): [z, 2, H, W]."""
    from lingbot_va_ros.live_view.decoders import calibration_frames

    h, w = layout.image_sizes["cam_high"]
    frames = calibration_frames(5, h, w, seed=3)
    to_rgb = lambda t: ((t.permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()  # noqa: E731
    keyframes = [{"cam_high": to_rgb(f), "cam_left_wrist": to_rgb(f[:, : h // 2, : w // 2]),
                  "cam_right_wrist": to_rgb(f[:, h // 2:, w // 2:])} for f in frames]
    enc = ObservationEncoder(vae, layout)
    return torch.cat([enc.encode(keyframes[:1]), enc.encode(keyframes[1:])], dim=1)


@pytest.fixture(scope="module")
def canvas(vae):
    return encoded_clip(vae, LAYOUT)


def direct_decode(vae, canvas, camera, frames):
    z = LAYOUT.split(canvas)[camera][None, :, frames]
    video = vae.decode(LatentStats.from_vae(vae).denormalize(z)).sample
    return ((video.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)[0].permute(1, 2, 3, 0).numpy()


@torch.no_grad()
def test_first_frame_path_is_the_vae_decoding_each_frame_alone(vae, canvas):
    out = VaeFirstFrameDecoder(vae, LAYOUT).decode(canvas, [0, 1])
    assert len(out) == 2
    for k in (0, 1):
        for cam in LAYOUT.camera_names:
            assert out[k][cam].shape == (*LAYOUT.image_sizes[cam], 3) and out[k][cam].dtype == np.uint8
            # batched (all cameras and frames in one call) vs one clip: float rounding moves a pixel by 1 at most
            assert np.abs(out[k][cam].astype(int) - direct_decode(vae, canvas, cam, [k])[0]).max() <= 1


@torch.no_grad()
def test_half_resolution_path_decodes_pooled_latents(vae, canvas):
    (out,) = VaeFirstFrameDecoder(vae, LAYOUT, pool=2).decode(canvas, [1])
    full = VaeFirstFrameDecoder(vae, LAYOUT).decode(canvas, [1])[0]
    for cam in LAYOUT.camera_names:
        h, w = LAYOUT.image_sizes[cam]
        assert out[cam].shape == (h // 2, w // 2, 3)
    assert psnr(pixel_mse(out, full, LAYOUT.camera_names)) > 10      # a blurrier view of the same image


@torch.no_grad()
def test_chunk_path_shows_each_frames_last_key_frame_of_the_causal_decode(vae, canvas):
    out = VaeChunkDecoder(vae, LAYOUT).decode(canvas, [0, 1])
    for cam in LAYOUT.camera_names:
        video = direct_decode(vae, canvas, cam, [0, 1])          # 1 + 4 images
        assert video.shape[0] == 5
        assert np.abs(out[0][cam].astype(int) - video[0]).max() <= 1
        assert np.abs(out[1][cam].astype(int) - video[4]).max() <= 1


@torch.no_grad()
def test_linear_preview_approximates_the_decoder_far_better_than_its_mean_image(vae, tmp_path):
    # the demo's real camera sizes: a conv decoder's borders dominate tiny test images, not real ones
    layout = load_embodiment("demo_sim").camera_layout
    canvas = encoded_clip(vae, layout)
    weight, bias, path, fitted = load_or_fit_linear_preview(vae, shared_tiny_checkpoint() / "vae", tmp_path, clips=4)
    assert fitted and path.suffix == ".safetensors" and path.parent == tmp_path
    again = load_or_fit_linear_preview(vae, shared_tiny_checkpoint() / "vae", tmp_path, clips=4)
    assert not again[3] and torch.equal(again[0], weight)          # the cached map, not a new fit
    preview = LinearPreviewDecoder(vae, layout, weight, bias).decode(canvas, [0, 1])
    exact = VaeFirstFrameDecoder(vae, layout).decode(canvas, [0, 1])
    cams = layout.camera_names
    for k in (0, 1):
        assert preview[k]["cam_high"].shape == exact[k]["cam_high"].shape
        mean_image = {c: np.broadcast_to(exact[k][c].reshape(-1, 3).mean(0).round().astype(np.uint8),
                                         exact[k][c].shape) for c in cams}
        assert pixel_mse(preview[k], exact[k], cams) < 0.5 * pixel_mse(mean_image, exact[k], cams)


def test_bad_requests_are_refused(vae, canvas):
    decoder = build_decoder("vae_first_frame", vae, LAYOUT)
    with pytest.raises(ValueError, match="not positions"):
        decoder.decode(canvas, [2])
    with pytest.raises(ValueError, match="not positions"):
        decoder.decode(canvas, [])
    with pytest.raises(ValueError, match=r"canvas latents \[48"):
        decoder.decode(canvas[:8], [0])
    with pytest.raises(ValueError, match="unknown decoder"):
        build_decoder("taesd", vae, LAYOUT)
    weight, bias = fit_linear_preview(vae, clips=1, size=(32, 32))
    with pytest.raises(ValueError, match="weight"):
        LinearPreviewDecoder(vae, LAYOUT, weight[:, :10], bias)
