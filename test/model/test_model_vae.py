"""Image preprocessing, the streaming Wan VAE encoder, camera layouts and display decoding (spec §2.1-2.2)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lingbot_va_ros.model.image_layout import (
    CameraLayout,
    preprocess_images,
    resize_image,
    resize_rgb_uint8,
)
from lingbot_va_ros.model.tiny_checkpoint import build_vae
from lingbot_va_ros.model.vae import (
    LatentStats,
    ObservationEncoder,
    StreamingVAEEncoder,
    encode_clip_one_shot,
    use_fast_cpu_conv3d,
)

REFERENCE_IMAGES = Path(__file__).resolve().parents[1].joinpath("fixtures", "reference_images")
TSHAPE_SIZES = {"cam_high": (256, 320), "cam_left_wrist": (128, 160), "cam_right_wrist": (128, 160)}


@pytest.fixture(scope="module")
def vae():
    return build_vae(seed=3, calibration_size=(64, 64))


def _reference_image(robot: str, cam: str) -> np.ndarray:
    from PIL import Image

    path = REFERENCE_IMAGES / robot / f"{cam}.png"
    assert path.is_file(), f"reference image {path} missing (the tests carry it in test/fixtures)"
    return np.array(Image.open(path).convert("RGB"))


def _random_frames(rng, n, h, w):
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


# ---- preprocessing ----------------------------------------------------------------------------------

@pytest.mark.parametrize("robot", ["robotwin", "franka"])
@pytest.mark.parametrize("cam", ["cam_high", "cam_left_wrist", "cam_right_wrist"])
def test_resize_matches_torch_bilinear_on_reference_images(robot, cam):
    img = _reference_image(robot, cam)
    as_torch = torch.from_numpy(img).float().permute(2, 0, 1)[None]
    for size in [(256, 320), (128, 160), (224, 320), (100, 77)]:
        expected = F.interpolate(as_torch, size=size, mode="bilinear", align_corners=False)[0].permute(1, 2, 0)
        got = resize_image(img, size)
        assert got.shape == (*size, 3) and got.dtype == np.float32
        # exact for the model's sizes; float32 rounding of the source coordinate for odd scale factors
        tol = 0.0 if size in [(256, 320), (128, 160), (224, 320)] else 1e-3
        assert np.abs(got - expected.numpy()).max() <= tol


def test_preprocess_images_scales_after_resizing():
    img = _reference_image("robotwin", "cam_high")
    pixels = preprocess_images([img, img[::-1].copy()], (256, 320))
    assert pixels.shape == (3, 2, 256, 320) and pixels.dtype == torch.float32
    assert pixels.min() >= -1.0 and pixels.max() <= 1.0
    expected = F.interpolate(torch.from_numpy(img).float().permute(2, 0, 1)[None], size=(256, 320),
                             mode="bilinear", align_corners=False)[0] / 255.0 * 2.0 - 1.0
    assert torch.equal(pixels[:, 0], expected)


def test_resize_rgb_uint8_rounds_the_same_resize():
    img = _reference_image("franka", "cam_left_wrist")
    out = resize_rgb_uint8(img, (128, 160))
    assert out.dtype == np.uint8 and out.shape == (128, 160, 3)
    assert np.abs(out.astype(np.float32) - resize_image(img, (128, 160))).max() <= 0.5


def test_preprocess_rejects_bad_images():
    with pytest.raises(ValueError, match="uint8"):
        preprocess_images([np.zeros((8, 8, 3), np.float32)], (8, 8))
    with pytest.raises(ValueError, match="HxWx3"):
        preprocess_images([np.zeros((8, 8), np.uint8)], (8, 8))


# ---- streaming encoder ------------------------------------------------------------------------------

def test_streaming_frame_count_rules(vae):
    enc = StreamingVAEEncoder(vae)
    x = torch.zeros(1, 3, 8, 64, 64)
    with pytest.raises(ValueError, match="exactly 1 frame"):
        enc.encode(x[:, :, :4])
    assert enc.encode(x[:, :, :1]).shape == (1, 48, 1, 4, 4)
    for bad in (1, 3, 5):
        with pytest.raises(ValueError, match="multiple of 4"):
            enc.encode(x[:, :, :bad])
    assert enc.encode(x[:, :, :4]).shape[2] == 1
    assert enc.encode(x).shape[2] == 2
    assert enc.frames_seen == 13
    enc.reset()
    with pytest.raises(ValueError, match="exactly 1 frame"):
        enc.encode(x[:, :, :4])


def test_streaming_equals_one_shot_encoding(vae):
    gen = torch.Generator().manual_seed(0)
    clip = torch.rand((2, 3, 13, 64, 96), generator=gen) * 2 - 1
    stats = LatentStats.from_vae(vae)
    enc = StreamingVAEEncoder(vae, stats)
    streamed = torch.cat([enc.encode(clip[:, :, :1]), enc.encode(clip[:, :, 1:5]), enc.encode(clip[:, :, 5:13])],
                         dim=2)
    one_shot = encode_clip_one_shot(vae, clip, stats)
    assert streamed.shape == one_shot.shape == (2, 48, 4, 4, 6)
    torch.testing.assert_close(streamed, one_shot, rtol=1e-4, atol=1e-5)
    # the reset really clears the causal cache: same first frame, same first latent
    enc.reset()
    torch.testing.assert_close(enc.encode(clip[:, :, :1]), one_shot[:, :, :1], rtol=1e-4, atol=1e-5)


def test_only_mu_is_used_and_normalised(vae):
    x = torch.rand(1, 3, 1, 64, 64) * 2 - 1
    with torch.no_grad():
        mu = vae.encode(x).latent_dist.mode()          # the posterior mean, no sampling
    mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)
    torch.testing.assert_close(StreamingVAEEncoder(vae).encode(x), (mu - mean) / std, rtol=1e-4, atol=1e-5)


def test_fast_cpu_conv3d_matches_reference_path():
    slow = build_vae(seed=5, calibration_size=(32, 32))
    fast = build_vae(seed=5, calibration_size=(32, 32))
    from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d

    for m in slow.modules():   # undo the instance-level override build_vae installs
        if isinstance(m, WanCausalConv3d):
            m.__dict__.pop("_conv_forward", None)
    assert use_fast_cpu_conv3d(fast) > 0
    x = torch.rand(1, 3, 5, 64, 64) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(encode_clip_one_shot(fast, x), encode_clip_one_shot(slow, x), rtol=1e-4, atol=1e-5)


# ---- layouts ----------------------------------------------------------------------------------------

def test_tshape_canvas_places_wrists_on_top_left_then_right(vae):
    layout = CameraLayout("robotwin_tshape", tuple(TSHAPE_SIZES), TSHAPE_SIZES)
    assert (layout.latent_height, layout.latent_width, layout.tokens_per_frame) == (24, 20, 120)
    rng = np.random.default_rng(1)
    frame = {cam: rng.integers(0, 256, (*size, 3), dtype=np.uint8) for cam, size in TSHAPE_SIZES.items()}
    canvas = ObservationEncoder(vae, layout).encode([frame])
    assert canvas.shape == (48, 1, 24, 20)

    def alone(cam):  # the camera encoded on its own by a fresh encoder
        return StreamingVAEEncoder(vae).encode(preprocess_images([frame[cam]], TSHAPE_SIZES[cam])[None])[0]

    torch.testing.assert_close(canvas[:, :, 8:24, 0:20], alone("cam_high"), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(canvas[:, :, 0:8, 0:10], alone("cam_left_wrist"), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(canvas[:, :, 0:8, 10:20], alone("cam_right_wrist"), rtol=1e-4, atol=1e-5)
    parts = layout.split(canvas)
    torch.testing.assert_close(layout.assemble(parts), canvas)


def test_tshape_wrists_share_one_cache_separate_from_head(vae):
    layout = CameraLayout("robotwin_tshape", tuple(TSHAPE_SIZES), TSHAPE_SIZES)
    obs = ObservationEncoder(vae, layout)
    assert [g for g in layout.groups] == [("cam_high",), ("cam_left_wrist", "cam_right_wrist")]
    assert len(obs.encoders) == 2 and obs.encoders[0]._feat_cache is not obs.encoders[1]._feat_cache
    rng = np.random.default_rng(2)
    frames = [{cam: rng.integers(0, 256, (*s, 3), dtype=np.uint8) for cam, s in TSHAPE_SIZES.items()}
              for _ in range(5)]
    first = obs.encode(frames[:1])
    later = obs.encode(frames[1:5])
    assert first.shape == later.shape == (48, 1, 24, 20)
    with pytest.raises(ValueError, match="multiple of 4"):
        obs.encode(frames[:2])


def test_none_layout_concatenates_cameras_along_width(vae):
    sizes = {"a": (64, 96), "b": (64, 96), "c": (64, 96)}
    layout = CameraLayout("none", tuple(sizes), sizes)
    assert (layout.latent_height, layout.latent_width) == (4, 18)
    rng = np.random.default_rng(3)
    frame = {cam: rng.integers(0, 256, (*s, 3), dtype=np.uint8) for cam, s in sizes.items()}
    canvas = ObservationEncoder(vae, layout).encode([frame])
    for k, cam in enumerate(sizes):
        alone = StreamingVAEEncoder(vae).encode(preprocess_images([frame[cam]], sizes[cam])[None])[0]
        torch.testing.assert_close(canvas[:, :, :, 6 * k:6 * (k + 1)], alone, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind,sizes,match", [
    ("robotwin_tshape", {"h": (256, 320), "l": (128, 160)}, "exactly 3 cameras"),
    ("robotwin_tshape", {"h": (256, 320), "l": (128, 160), "r": (120, 160)}, "half the head size"),
    ("none", {"a": (64, 64), "b": (64, 96)}, "same size"),
    ("none", {"a": (48, 64)}, "multiple of 32"),
    ("grid", {"a": (64, 64)}, "not one of"),
])
def test_invalid_layouts_are_explained(kind, sizes, match):
    with pytest.raises(ValueError, match=match):
        CameraLayout(kind, tuple(sizes), sizes)


def test_keyframe_validation_names_the_problem(vae):
    layout = CameraLayout("robotwin_tshape", tuple(TSHAPE_SIZES), TSHAPE_SIZES)
    obs = ObservationEncoder(vae, layout)
    good = {cam: np.zeros((*s, 3), np.uint8) for cam, s in TSHAPE_SIZES.items()}
    with pytest.raises(ValueError, match="missing \\['cam_right_wrist'\\]"):
        obs.encode([{k: v for k, v in good.items() if k != "cam_right_wrist"}])
    with pytest.raises(ValueError, match="expected 128x160"):
        obs.encode([{**good, "cam_left_wrist": np.zeros((256, 320, 3), np.uint8)}])
    with pytest.raises(ValueError, match="uint8"):
        obs.encode([{**good, "cam_high": np.zeros((256, 320, 3), np.float32)}])
    assert obs.frames_seen == 0       # nothing was encoded by the failed calls


def test_decode_returns_uint8_frames_per_camera(vae):
    layout = CameraLayout("robotwin_tshape", tuple(TSHAPE_SIZES), TSHAPE_SIZES)
    obs = ObservationEncoder(vae, layout)
    canvas = torch.randn(48, 2, 24, 20)
    video = obs.decode(canvas)
    assert video["cam_high"].shape == (5, 256, 320, 3)            # 1 + 4 frames for 2 latent frames
    assert video["cam_left_wrist"].shape == video["cam_right_wrist"].shape == (5, 128, 160, 3)
    assert all(v.dtype == np.uint8 for v in video.values())
    last = obs.decode(canvas, last_frame_only=True)
    np.testing.assert_array_equal(last["cam_high"][0], video["cam_high"][-1])
    with pytest.raises(ValueError, match="canvas"):
        obs.decode(torch.randn(48, 2, 20, 20))
