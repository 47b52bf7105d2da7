"""Decoding of every supported encoding and the resize's agreement with the model's torch resize."""
from __future__ import annotations

import array
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from lingbot_va_ros.camera.image_ops import (SUPPORTED_ENCODINGS, compressed_msg_to_model_rgb, image_msg_pixels,
                                              image_msg_to_model_rgb, to_model_rgb)
from lingbot_va_ros.common.conversions import MessageError

REFERENCE = Path(__file__).resolve().parents[1].joinpath("fixtures", "reference_images")
CAMERAS = ("cam_high", "cam_left_wrist", "cam_right_wrist")
# Model sizes of the configs (spec §2.2) plus odd ones: down- and up-sizing in each axis, non-integer scales.
SIZES = [(256, 320), (128, 160), (224, 320), (128, 128), (480, 640), (100, 333), (37, 41)]


def _image_msg(pixels: np.ndarray, encoding: str, pad: int = 0):
    h, w = pixels.shape[:2]
    row = pixels.reshape(h, -1)
    if pad:
        row = np.concatenate([row, np.full((h, pad), 7, np.uint8)], axis=1)
    return SimpleNamespace(encoding=encoding, height=h, width=w, step=row.shape[1], is_bigendian=0,
                           data=array.array("B", np.ascontiguousarray(row).tobytes()))


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    rng = np.random.default_rng(3)
    return rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)


def _torch_resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The official path: float bilinear, align_corners=False, antialias off (spec §2.1)."""
    import torch
    t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float()
    out = torch.nn.functional.interpolate(t, size=size, mode="bilinear", align_corners=False, antialias=False)
    return out[0].permute(1, 2, 0).numpy()


@pytest.mark.parametrize("encoding,convert", [
    ("rgb8", None), ("8UC3", None), ("bgr8", cv2.COLOR_RGB2BGR), ("rgba8", cv2.COLOR_RGB2RGBA),
    ("bgra8", cv2.COLOR_RGB2BGRA)])
@pytest.mark.parametrize("pad", [0, 5])
def test_colour_encodings_decode_to_rgb(rgb, encoding, convert, pad):
    raw = rgb if convert is None else cv2.cvtColor(rgb, convert)
    np.testing.assert_array_equal(image_msg_pixels(_image_msg(raw, encoding, pad)), rgb)
    out = image_msg_to_model_rgb(_image_msg(raw, encoding, pad), (24, 32))
    np.testing.assert_array_equal(out, to_model_rgb(rgb, (24, 32)))
    assert out.dtype == np.uint8 and out.shape == (24, 32, 3) and out.flags.c_contiguous


@pytest.mark.parametrize("encoding", ["mono8", "8UC1"])
def test_mono_is_grey_rgb(rgb, encoding):
    grey = rgb[:, :, 0].copy()
    out = image_msg_to_model_rgb(_image_msg(grey, encoding, pad=3), (24, 32))
    assert out.shape == (24, 32, 3)
    np.testing.assert_array_equal(out[:, :, 0], out[:, :, 1])
    np.testing.assert_array_equal(out[:, :, 0], to_model_rgb(np.repeat(grey[:, :, None], 3, 2), (24, 32))[:, :, 0])


@pytest.mark.parametrize("encoding,to_yuv", [
    ("yuv422", cv2.COLOR_RGB2YUV_UYVY), ("uyvy", cv2.COLOR_RGB2YUV_UYVY),
    ("yuv422_yuy2", cv2.COLOR_RGB2YUV_YUYV), ("yuyv", cv2.COLOR_RGB2YUV_YUYV)])
def test_yuv422_byte_orders(rgb, encoding, to_yuv):
    # Pairs of equal pixels along x survive 4:2:2 chroma subsampling, so the round trip is near exact and a
    # swapped byte order (UYVY read as YUYV) would be far off.
    pairs = np.repeat(rgb[:, ::2], 2, axis=1)
    yuv = cv2.cvtColor(pairs, to_yuv)
    assert yuv.shape == (48, 64, 2)
    decoded = image_msg_pixels(_image_msg(yuv, encoding))
    assert np.abs(decoded.astype(int) - pairs).max() <= 3
    other = {"yuv422": "yuyv", "uyvy": "yuyv", "yuv422_yuy2": "uyvy", "yuyv": "uyvy"}[encoding]
    assert np.abs(image_msg_pixels(_image_msg(yuv, other)).astype(int) - pairs).mean() > 20


@pytest.mark.parametrize("ext", [".jpg", ".png"])
def test_compressed_jpeg_and_png(ext):
    yy, xx = np.mgrid[0:48, 0:64]
    smooth = np.stack([xx * 3, yy * 4, 255 - xx * 2], axis=2).astype(np.uint8)  # JPEG-friendly content
    ok, data = cv2.imencode(ext, cv2.cvtColor(smooth, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    msg = SimpleNamespace(format="rgb8; jpeg compressed bgr8" if ext == ".jpg" else "png",
                          data=array.array("B", data.tobytes()))
    out = compressed_msg_to_model_rgb(msg, (48, 64))
    err = np.abs(out.astype(int) - smooth)
    if ext == ".png":
        assert err.max() == 0
    else:
        assert err.mean() < 2.0  # lossy, but RGB order and geometry are right
    # downsized output equals resizing the decoded pixels
    small = compressed_msg_to_model_rgb(msg, (24, 40))
    decoded = cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(small, to_model_rgb(decoded, (24, 40)))


@pytest.mark.parametrize("msg,match", [
    (SimpleNamespace(encoding="16UC1", height=2, width=2, step=4, data=b"\0" * 8), "unsupported image encoding"),
    (SimpleNamespace(encoding="rgb8", height=2, width=2, step=6, data=b"\0" * 11), "needs 12"),
    (SimpleNamespace(encoding="rgb8", height=2, width=2, step=5, data=b"\0" * 12), "step 5"),
    (SimpleNamespace(encoding="rgb8", height=0, width=2, step=6, data=b""), "empty image"),
])
def test_bad_raw_images_are_rejected_with_a_reason(msg, match):
    with pytest.raises(MessageError, match=match):
        image_msg_to_model_rgb(msg, (8, 8))


def test_bad_compressed_images_are_rejected_with_a_reason():
    with pytest.raises(MessageError, match="empty"):
        compressed_msg_to_model_rgb(SimpleNamespace(format="jpeg", data=b""), (8, 8))
    with pytest.raises(MessageError, match="cannot decode"):
        compressed_msg_to_model_rgb(SimpleNamespace(format="jpeg", data=b"not a jpeg"), (8, 8))
    with pytest.raises(MessageError, match="compressedDepth"):
        compressed_msg_to_model_rgb(SimpleNamespace(format="16UC1; compressedDepth", data=b"x"), (8, 8))


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_a_decompression_bomb_is_refused_from_its_header_before_decoding(ext, monkeypatch):
    from lingbot_va_ros.camera import image_ops

    ok, data = cv2.imencode(ext, np.zeros((6000, 6000), np.uint8))     # 36 MP of zeros: small compressed
    assert ok and data.size < 2_000_000
    decoded = []
    monkeypatch.setattr(image_ops.cv2, "imdecode", lambda *a: decoded.append(a) or None)
    with pytest.raises(MessageError, match="6000x6000 = 36000000 pixels, more than the 25000000"):
        compressed_msg_to_model_rgb(SimpleNamespace(format=ext[1:], data=data.tobytes()), (8, 8))
    assert decoded == []                                                  # nothing was decoded
    # a frame within the bound decodes as before
    ok, small = cv2.imencode(ext, np.full((48, 64, 3), 128, np.uint8))
    monkeypatch.undo()
    assert compressed_msg_to_model_rgb(SimpleNamespace(format=ext[1:], data=small.tobytes()), (8, 8)).shape == (8, 8, 3)


def test_every_supported_encoding_is_tested():
    assert set(SUPPORTED_ENCODINGS) == {"rgb8", "8UC3", "bgr8", "rgba8", "bgra8", "mono8", "8UC1", "yuv422",
                                        "uyvy", "yuv422_yuy2", "yuyv"}


# ---- agreement with the official torch resize on the real reference frames ---------------------------------
def _reference_frames() -> list[tuple[str, np.ndarray]]:
    frames = []
    for embodiment in ("robotwin", "franka"):
        for cam in CAMERAS:
            path = REFERENCE / embodiment / f"{cam}.png"
            if path.is_file():
                frames.append((f"{embodiment}/{cam}", cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)))
    return frames


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_resize_matches_torch_interpolate_on_reference_frames(size):
    frames = _reference_frames()
    assert len(frames) == 6, f"reference frames missing under {REFERENCE} (the tests carry them)"
    for name, img in frames:
        ours = to_model_rgb(img, size).astype(np.float32)
        official = _torch_resize(img, size)
        # <= 0.5 LSB rounding of the float result (+ float32 noise), so within 1 of torch's rounded value too.
        diff_float = np.abs(ours - official).max()
        diff_rounded = np.abs(ours - np.clip(np.rint(official), 0, 255)).max()
        assert diff_float <= 0.52, f"{name} -> {size}: max |diff| vs float torch = {diff_float}"
        assert diff_rounded <= 1, f"{name} -> {size}: max |diff| vs rounded torch = {diff_rounded}"
        # nearly every pixel equals torch's rounded value (differences only at exact .5 ties, frequent
        # when upsizing 2x where the weights are 0.25/0.75)
        assert np.mean(ours != np.rint(official)) < 0.01


def test_resize_matches_torch_through_every_decoder():
    frames = _reference_frames()
    assert frames, f"reference frames missing under {REFERENCE} (the tests carry them)"
    _, img = frames[0]
    official = _torch_resize(img, (256, 320))
    bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    ok, png = cv2.imencode(".png", bgr)
    outputs = {
        "rgb8": image_msg_to_model_rgb(_image_msg(img, "rgb8"), (256, 320)),
        "bgr8": image_msg_to_model_rgb(_image_msg(bgr, "bgr8"), (256, 320)),
        "bgra8": image_msg_to_model_rgb(_image_msg(cv2.cvtColor(img, cv2.COLOR_RGB2BGRA), "bgra8"), (256, 320)),
        "png": compressed_msg_to_model_rgb(SimpleNamespace(format="png", data=png.tobytes()), (256, 320)),
    }
    for name, out in outputs.items():
        assert np.abs(out.astype(np.float32) - official).max() <= 0.52, name


def test_model_resize_helper_agrees_with_ingest():
    """The model package's numpy resize (VAE path) and ingest's cv2 resize give the same pixels."""
    from lingbot_va_ros.model import image_layout as layout

    frames = _reference_frames()
    assert frames, f"reference frames missing under {REFERENCE} (the tests carry them)"
    for _, img in frames:
        for size in ((256, 320), (128, 160)):
            diff = np.abs(to_model_rgb(img, size).astype(int) - layout.resize_rgb_uint8(img, size)).max()
            assert diff <= 1
