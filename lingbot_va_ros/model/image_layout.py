"""Camera images -> model pixels, and the multi-camera latent canvas geometry (spec §2.1-2.2).

This is the single place where camera frames are resized. Camera ingest (numpy only, no torch) and the VAE
path both call :func:`resize_image`, so an image resized on ingest and one resized here are the same
pixels. The resize is plain bilinear with ``align_corners=False`` and no antialiasing: exactly what the
reference server's ``F.interpolate(mode="bilinear", align_corners=False)`` does on float pixels, also when
shrinking (no low-pass filter), so it is reproduced here in numpy and checked against torch in the tests.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

LAYOUT_TSHAPE = "robotwin_tshape"
LAYOUT_NONE = "none"
LAYOUTS = (LAYOUT_TSHAPE, LAYOUT_NONE)

# Wan2.2 VAE: 2x2 pixel patchify then 8x spatial downsampling -> 16 pixels per latent cell; the transformer
# then patchifies 2x2 latent cells into one token, so every camera side must be a multiple of 32 pixels
# for the token grid to tile without remainder.
VAE_SPATIAL_STRIDE = 16
VAE_TEMPORAL_STRIDE = 4
TOKEN_PATCH = 2


def _source_index_and_weight(out_size: int, in_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per output index: the two source indices and the weight of the second (torch's half-pixel rule).

    Computed in float32 like torch's CPU kernel, so non-integer scale factors round the same way.
    """
    scale = np.float32(in_size) / np.float32(out_size)
    src = (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
    src = np.maximum(src, np.float32(0.0))              # torch clamps negative coordinates to 0
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    lam = (src - i0.astype(np.float32)).astype(np.float32)
    return i0, i1, lam


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of an HxWxC image to ``size=(height, width)``; returns float32 in the input's units.

    Matches ``torch.nn.functional.interpolate(x.float(), size, mode="bilinear", align_corners=False)``
    (antialias off) to float32 rounding. The aspect ratio is not preserved (the reference does not crop).
    """
    if image.ndim != 3:
        raise ValueError(f"expected an HxWxC image, got shape {tuple(image.shape)}")
    out_h, out_w = int(size[0]), int(size[1])
    if out_h <= 0 or out_w <= 0:
        raise ValueError(f"target size must be positive, got {size}")
    img = image.astype(np.float32, copy=False)
    in_h, in_w = img.shape[:2]
    if (in_h, in_w) == (out_h, out_w):
        return img.copy() if img is image else img
    y0, y1, ly = _source_index_and_weight(out_h, in_h)
    x0, x1, lx = _source_index_and_weight(out_w, in_w)
    ly = ly[:, None, None]
    lx = lx[None, :, None]
    rows0, rows1 = img[y0], img[y1]
    top = rows0[:, x0] * (1.0 - lx) + rows0[:, x1] * lx
    bottom = rows1[:, x0] * (1.0 - lx) + rows1[:, x1] * lx
    return (top * (1.0 - ly) + bottom * ly).astype(np.float32, copy=False)


def resize_rgb_uint8(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """What camera ingest stores: the same resize, rounded back to uint8 RGB."""
    check_rgb_uint8(image, "image")
    return np.clip(np.rint(resize_image(image, size)), 0, 255).astype(np.uint8)


def check_rgb_uint8(image: object, what: str, size: tuple[int, int] | None = None) -> None:
    """Raise a ValueError that names ``what`` unless it is an HxWx3 uint8 array (of ``size`` if given)."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"{what}: expected a numpy HxWx3 uint8 RGB array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"{what}: expected dtype uint8 (RGB 0..255), got {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{what}: expected shape HxWx3, got {tuple(image.shape)}")
    if size is not None and tuple(image.shape[:2]) != tuple(size):
        raise ValueError(f"{what}: expected {size[0]}x{size[1]} (HxW) as configured for this camera, got "
                         f"{image.shape[0]}x{image.shape[1]}; resize on ingest with "
                         f"lingbot_va_ros.model.image_layout.resize_rgb_uint8")


def preprocess_images(images: Sequence[np.ndarray], size: tuple[int, int]):
    """RGB uint8 frames of one camera -> torch float32 [3, T, h, w] in [-1, 1] at ``size`` (spec §2.1).

    The resize happens on float pixels before scaling, as in the reference (x/255*2-1 after interpolate).
    """
    import torch

    if len(images) == 0:
        raise ValueError("preprocess_images needs at least one frame")
    frames = []
    for i, img in enumerate(images):
        check_rgb_uint8(img, f"frame {i}")
        frames.append(resize_image(img, size))
    video = np.stack(frames, axis=0)                    # [T, h, w, 3] float32 in 0..255
    tensor = torch.from_numpy(video).permute(3, 0, 1, 2).contiguous()
    return tensor / 255.0 * 2.0 - 1.0


@dataclass(frozen=True)
class CameraLayout:
    """Where each camera's latent sits on the canvas the transformer sees.

    ``robotwin_tshape``: camera 0 is the head camera at full size; cameras 1 and 2 are the left/right wrists
    at exactly half size, encoded together by a second streaming VAE, placed [left | right] along width and
    stacked on top of the head latent. ``none``: all cameras the same size, side by side along width.
    """

    kind: str
    camera_names: tuple[str, ...]
    image_sizes: Mapping[str, tuple[int, int]]

    def __post_init__(self) -> None:
        problems = layout_problems(self.kind, self.camera_names, self.image_sizes)
        if problems:
            raise ValueError("invalid camera layout: " + "; ".join(problems))

    # -- groups: cameras that share one streaming VAE instance (one feature cache), batched together
    @property
    def groups(self) -> tuple[tuple[str, ...], ...]:
        if self.kind == LAYOUT_TSHAPE:
            return (self.camera_names[:1], self.camera_names[1:])
        return (self.camera_names,)

    def latent_size(self, camera: str) -> tuple[int, int]:
        h, w = self.image_sizes[camera]
        return h // VAE_SPATIAL_STRIDE, w // VAE_SPATIAL_STRIDE

    def placement(self, camera: str) -> tuple[int, int]:
        """(row, column) of the camera's top-left latent cell on the canvas."""
        idx = self.camera_names.index(camera)
        if self.kind == LAYOUT_TSHAPE:
            wrist_h, wrist_w = self.latent_size(self.camera_names[1])
            return {0: (wrist_h, 0), 1: (0, 0), 2: (0, wrist_w)}[idx]
        return 0, sum(self.latent_size(c)[1] for c in self.camera_names[:idx])

    @property
    def latent_height(self) -> int:
        if self.kind == LAYOUT_TSHAPE:
            return self.latent_size(self.camera_names[0])[0] + self.latent_size(self.camera_names[1])[0]
        return self.latent_size(self.camera_names[0])[0]

    @property
    def latent_width(self) -> int:
        if self.kind == LAYOUT_TSHAPE:
            return self.latent_size(self.camera_names[0])[1]
        return sum(self.latent_size(c)[1] for c in self.camera_names)

    @property
    def tokens_per_frame(self) -> int:
        return (self.latent_height // TOKEN_PATCH) * (self.latent_width // TOKEN_PATCH)

    def assemble(self, per_camera):
        """{camera: [C, F, h, w]} -> canvas [C, F, H, W] (torch tensors)."""
        first = per_camera[self.camera_names[0]]
        canvas = first.new_zeros((first.shape[0], first.shape[1], self.latent_height, self.latent_width))
        for cam in self.camera_names:
            lat = per_camera[cam]
            r, c = self.placement(cam)
            h, w = self.latent_size(cam)
            if tuple(lat.shape[-2:]) != (h, w):
                raise ValueError(f"latent of camera {cam!r} is {tuple(lat.shape[-2:])}, expected {(h, w)}")
            canvas[:, :, r:r + h, c:c + w] = lat
        return canvas

    def split(self, canvas) -> dict:
        """canvas [..., H, W] -> {camera: [..., h, w]} (inverse of :meth:`assemble`)."""
        if tuple(canvas.shape[-2:]) != (self.latent_height, self.latent_width):
            raise ValueError(f"canvas is {tuple(canvas.shape[-2:])}, expected "
                             f"{(self.latent_height, self.latent_width)}")
        out = {}
        for cam in self.camera_names:
            r, c = self.placement(cam)
            h, w = self.latent_size(cam)
            out[cam] = canvas[..., r:r + h, c:c + w]
        return out


def layout_problems(kind: str, camera_names: Sequence[str], image_sizes: Mapping[str, tuple[int, int]]) -> list[str]:
    """Every reason the cameras cannot be tiled as ``kind`` (empty when valid)."""
    problems: list[str] = []
    names = tuple(camera_names)
    if kind not in LAYOUTS:
        return [f"layout {kind!r} is not one of {list(LAYOUTS)}"]
    if not names:
        return ["at least one camera is needed"]
    if len(set(names)) != len(names):
        problems.append(f"camera names repeat: {list(names)}")
    missing = [n for n in names if n not in image_sizes]
    if missing:
        return problems + [f"no image size for cameras {missing}"]
    step = VAE_SPATIAL_STRIDE * TOKEN_PATCH
    if kind == LAYOUT_TSHAPE:
        if len(names) != 3:
            return problems + [f"robotwin_tshape needs exactly 3 cameras (head, left wrist, right wrist), "
                               f"got {len(names)}: {list(names)}"]
        head_h, head_w = image_sizes[names[0]]
        for n in names[1:]:
            if tuple(image_sizes[n]) != (head_h // 2, head_w // 2):
                problems.append(f"robotwin_tshape wrist camera {n!r} must be half the head size "
                                f"({head_h // 2}x{head_w // 2}), got {image_sizes[n][0]}x{image_sizes[n][1]}")
        if head_h % (2 * step) or head_w % (2 * step):
            problems.append(f"robotwin_tshape head size {head_h}x{head_w} must be a multiple of {2 * step} "
                            f"so the half-size wrists still tile into 2x2 latent tokens")
    else:
        sizes = {tuple(image_sizes[n]) for n in names}
        if len(sizes) != 1:
            problems.append(f"layout 'none' needs every camera at the same size, got "
                            f"{ {n: tuple(image_sizes[n]) for n in names} }")
        for n in names:
            h, w = image_sizes[n]
            if h % step or w % step:
                problems.append(f"camera {n!r} size {h}x{w} must be a multiple of {step} "
                                f"(16-pixel VAE cells, 2x2 cells per token)")
    return problems
