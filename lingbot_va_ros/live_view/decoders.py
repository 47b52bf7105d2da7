"""Ways to turn a chunk's predicted latents into images, from exact to nearly free (torch, no rclpy).

All decoders take the normalised canvas latents [z, F, H, W] of one chunk and the frame positions to show,
and return per shown frame ``{camera: HxWx3 uint8 RGB}``:

- ``vae_first_frame``: each shown latent frame alone through the Wan VAE decoder's first-frame path (the path
  that turns the first latent of a clip into one image). One exact decoder image per frame; the 4 key frames a
  later latent frame stands for are not separated, and the causal context of the frames before it is not used.
- ``vae_first_frame_half``: the same from latents average-pooled 2x2, so the decoder runs at a quarter of the
  cells and returns half-resolution images (~4x cheaper; blurrier, a preview).
- ``vae_chunk``: the whole chunk through the causal decoder (first latent frame -> 1 image, each later one -> 4),
  then the image of each shown frame's last key frame. The most faithful and by far the most expensive.
- ``linear_preview``: per latent cell, a linear map from the z channels to the 16x16 RGB pixels of that cell,
  fitted by ridge regression to this VAE's own first-frame decoder on synthetic clips (fitted once, cached as
  safetensors). About a millisecond; blocky and colour-approximate, documented as a preview. The option for a
  full-size VAE on a machine without a GPU, where a decoder image takes seconds.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from lingbot_va_ros.model.image_layout import VAE_SPATIAL_STRIDE, VAE_TEMPORAL_STRIDE, CameraLayout
from lingbot_va_ros.model.vae import LatentStats, StreamingVAEEncoder

Frames = list[dict[str, np.ndarray]]


def _to_uint8(video: torch.Tensor) -> np.ndarray:
    """[B, 3, T, h, w] in [-1, 1] -> uint8 [B, T, h, w, 3]."""
    return ((video.float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 4, 1).cpu().numpy()


def _check_canvas(canvas: torch.Tensor, z_dim: int, frames: Sequence[int]) -> None:
    if canvas.dim() != 4 or canvas.shape[0] != z_dim:
        raise ValueError(f"expected canvas latents [{z_dim}, F, H, W], got {tuple(canvas.shape)}")
    bad = [j for j in frames if not 0 <= j < canvas.shape[1]]
    if bad or not frames:
        raise ValueError(f"frames {list(frames)} are not positions of a {canvas.shape[1]}-frame chunk")


class LatentDecoder:
    """Common part: the VAE weights, the camera layout, and latent de-normalisation."""

    name = ""

    def __init__(self, vae, layout: CameraLayout):
        self.vae = vae
        self.layout = layout
        self.stats = LatentStats.from_vae(vae)
        param = next(vae.parameters())
        self.device, self.dtype = param.device, param.dtype
        self.z_dim = int(vae.config.z_dim)

    @torch.no_grad()
    def decode(self, canvas: torch.Tensor, frames: Sequence[int]) -> Frames:
        _check_canvas(canvas, self.z_dim, frames)
        return self._decode(canvas.float(), list(frames))

    def _decode(self, canvas: torch.Tensor, frames: list[int]) -> Frames:
        raise NotImplementedError

    def _group_latents(self, canvas: torch.Tensor, group: Sequence[str]) -> torch.Tensor:
        """The group's cameras as a batch [B, z, F, h, w] on the decoder's device, de-normalised."""
        per_camera = self.layout.split(canvas)
        z = torch.stack([per_camera[cam] for cam in group]).to(self.device, torch.float32)
        return self.stats.denormalize(z).to(self.dtype)


class VaeFirstFrameDecoder(LatentDecoder):
    """Each shown latent frame decoded on its own (one image), optionally from 2x2-pooled latents."""

    def __init__(self, vae, layout: CameraLayout, pool: int = 1):
        super().__init__(vae, layout)
        if pool not in (1, 2):
            raise ValueError(f"pool must be 1 or 2, got {pool}")
        self.pool = pool
        self.name = "vae_first_frame" if pool == 1 else "vae_first_frame_half"

    def _decode(self, canvas: torch.Tensor, frames: list[int]) -> Frames:
        out: Frames = [{} for _ in frames]
        for group in self.layout.groups:
            z = self._group_latents(canvas, group)[:, :, frames]                 # [B, z, n, h, w]
            b, c, n, h, w = z.shape
            # every (camera, frame) pair is its own 1-frame clip: one batched decoder call per camera group
            clips = z.permute(0, 2, 1, 3, 4).reshape(b * n, c, 1, h, w)
            if self.pool > 1:
                clips = torch.nn.functional.avg_pool3d(clips.float(), (1, self.pool, self.pool),
                                                       ceil_mode=True).to(self.dtype)
            images = _to_uint8(self.vae.decode(clips).sample)[:, 0]                # [b*n, H, W, 3]
            images = images.reshape(b, n, *images.shape[1:])
            for i, cam in enumerate(group):
                for k in range(n):
                    out[k][cam] = images[i, k]
        return out


class VaeChunkDecoder(LatentDecoder):
    """The whole chunk through the causal decoder; a shown frame's image is its last key frame's."""

    name = "vae_chunk"

    def _decode(self, canvas: torch.Tensor, frames: list[int]) -> Frames:
        out: Frames = [{} for _ in frames]
        upto = max(frames) + 1                                    # later frames cannot change earlier images
        for group in self.layout.groups:
            video = _to_uint8(self.vae.decode(self._group_latents(canvas[:, :upto], group)).sample)
            for k, j in enumerate(frames):
                image = 0 if j == 0 else VAE_TEMPORAL_STRIDE * j   # frame 0 -> 1 image, frame j -> images 4j-3..4j
                for i, cam in enumerate(group):
                    out[k][cam] = video[i, image]
        return out


class LinearPreviewDecoder(LatentDecoder):
    """Per latent cell: pixels of the cell = W z + b (a [z -> 16*16*3] map), in normalised latent space."""

    name = "linear_preview"

    def __init__(self, vae, layout: CameraLayout, weight: torch.Tensor, bias: torch.Tensor):
        super().__init__(vae, layout)
        cell = 3 * VAE_SPATIAL_STRIDE * VAE_SPATIAL_STRIDE
        if tuple(weight.shape) != (self.z_dim, cell) or tuple(bias.shape) != (cell,):
            raise ValueError(f"linear preview map must be weight [{self.z_dim}, {cell}] and bias [{cell}], got "
                             f"{tuple(weight.shape)} and {tuple(bias.shape)}")
        self.weight, self.bias = weight.float().cpu(), bias.float().cpu()

    def _decode(self, canvas: torch.Tensor, frames: list[int]) -> Frames:
        out: Frames = [{} for _ in frames]
        per_camera = self.layout.split(canvas.cpu())
        s = VAE_SPATIAL_STRIDE
        for cam, z in per_camera.items():                                         # [z, F, h, w]
            cells = z[:, frames].permute(1, 2, 3, 0)                              # [n, h, w, z]
            pixels = cells @ self.weight + self.bias                              # [n, h, w, 3*s*s]
            n, h, w, _ = pixels.shape
            images = pixels.reshape(n, h, w, s, s, 3).permute(0, 1, 3, 2, 4, 5).reshape(n, h * s, w * s, 3)
            images = ((images.clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8).numpy()
            for k in range(n):
                out[k][cam] = images[k]
        return out


# ---- fitting the linear preview -------------------------------------------------------------------------
def calibration_frames(count: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """Image-like synthetic frames [count, 3, h, w] in [-1, 1]: smooth colour fields with edges and detail."""
    gen = torch.Generator().manual_seed(seed)
    up = torch.nn.functional.interpolate
    coarse = torch.rand((count, 3, max(height // 32, 1), max(width // 32, 1)), generator=gen) * 2 - 1
    fine = torch.rand((count, 3, max(height // 8, 1), max(width // 8, 1)), generator=gen) * 2 - 1
    blocks = torch.rand((count, 3, max(height // 16, 1), max(width // 16, 1)), generator=gen) * 2 - 1
    img = (0.55 * up(coarse, size=(height, width), mode="bilinear", align_corners=False)
           + 0.25 * up(fine, size=(height, width), mode="bilinear", align_corners=False)
           + 0.20 * up(blocks, size=(height, width), mode="nearest"))
    return img.clamp(-1, 1)


def calibration_clip(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """1 + 4 frames [3, 5, h, w] of one synthetic scene drifting a few pixels per frame (camera motion)."""
    scene = calibration_frames(1, height + 16, width + 16, seed=seed)[0]
    return torch.stack([scene[:, 2 * t: 2 * t + height, 3 * t: 3 * t + width] for t in range(5)], dim=1)


@torch.no_grad()
def fit_linear_preview(vae, clips: int = 8, size: tuple[int, int] = (128, 160), ridge: float = 1e-3,
                       seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Fit the per-cell map to the VAE's own first-frame decoder, on the latents the model predicts: synthetic
    1 + 4 frame clips streamed through the encoder give a first-frame latent and a 4-frame-group latent each
    (normalised, as the model predicts them); each is decoded alone (the ``vae_first_frame`` image) and least
    squares maps each cell's z to its 16x16 pixels."""
    stats = LatentStats.from_vae(vae)
    param = next(vae.parameters())
    encoder = StreamingVAEEncoder(vae, stats, name="linear_preview_calibration")
    s = VAE_SPATIAL_STRIDE
    xs, ys = [], []
    for k in range(clips):
        clip = calibration_clip(*size, seed=seed + k)[None]                       # [1, 3, 5, h, w]
        encoder.reset()
        latents = torch.cat([encoder.encode(clip[:, :, :1]), encoder.encode(clip[:, :, 1:])], dim=2)
        for j in range(latents.shape[2]):
            z = latents[:, :, j:j + 1]                                            # [1, z, 1, h, w] normalised
            decoded = vae.decode(stats.denormalize(z).to(param.dtype)).sample.float().clamp(-1, 1)
            _, c, _, h, w = z.shape
            xs.append(z[0, :, 0].permute(1, 2, 0).reshape(h * w, c).float().cpu())
            ys.append(decoded[0, :, 0].reshape(3, h, s, w, s).permute(1, 3, 2, 4, 0).reshape(h * w, s * s * 3).cpu())
    x = torch.cat(xs).double()
    y = torch.cat(ys).double()
    x1 = torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype)], dim=1)
    gram = x1.T @ x1 + ridge * x1.shape[0] * torch.eye(x1.shape[1], dtype=x.dtype)
    solution = torch.linalg.solve(gram, x1.T @ y)                                # [z + 1, 3*s*s]
    return solution[:-1].float(), solution[-1].float()


def vae_fingerprint(vae_dir: str | Path) -> str:
    """Identity of a vae/ folder for the preview cache: its config and its weight files' sizes and ends."""
    folder = Path(vae_dir)
    digest = hashlib.sha256((folder / "config.json").read_bytes())
    for path in sorted(folder.glob("*.safetensors")):
        size = path.stat().st_size
        digest.update(f"{path.name}:{size}".encode())
        with open(path, "rb") as f:
            digest.update(f.read(1 << 20))
            f.seek(max(0, size - (1 << 20)))
            digest.update(f.read(1 << 20))
    return digest.hexdigest()[:24]


def load_or_fit_linear_preview(vae, vae_dir: str | Path, cache_dir: str | Path, clips: int = 8
                               ) -> tuple[torch.Tensor, torch.Tensor, Path, bool]:
    """The cached map for this VAE, or a new fit written to the cache; returns (weight, bias, file, fitted_now)."""
    from safetensors.torch import load_file, save_file

    cache = Path(cache_dir).expanduser()
    path = cache / f"{vae_fingerprint(vae_dir)}_{clips}clips.safetensors"
    if path.is_file():
        tensors = load_file(str(path))
        return tensors["weight"], tensors["bias"], path, False
    weight, bias = fit_linear_preview(vae, clips=clips)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({"weight": weight.contiguous(), "bias": bias.contiguous()}, str(tmp),
              metadata={"vae_dir": str(vae_dir), "calibration_clips": json.dumps(clips)})
    tmp.replace(path)                                  # atomic: a concurrent reader never sees half a file
    return weight, bias, path, True


def build_decoder(name: str, vae, layout: CameraLayout, *, vae_dir: str | Path | None = None,
                  cache_dir: str | Path | None = None, calibration_clips: int = 8) -> LatentDecoder:
    """The decoder called ``name`` (see the module docstring)."""
    if name == "vae_first_frame":
        return VaeFirstFrameDecoder(vae, layout, pool=1)
    if name == "vae_first_frame_half":
        return VaeFirstFrameDecoder(vae, layout, pool=2)
    if name == "vae_chunk":
        return VaeChunkDecoder(vae, layout)
    if name == "linear_preview":
        if vae_dir is None or cache_dir is None:
            weight, bias = fit_linear_preview(vae, clips=calibration_clips)
        else:
            weight, bias, _, _ = load_or_fit_linear_preview(vae, vae_dir, cache_dir, calibration_clips)
        return LinearPreviewDecoder(vae, layout, weight, bias)
    raise ValueError(f"unknown decoder '{name}' (one of vae_first_frame, vae_first_frame_half, vae_chunk, "
                     "linear_preview)")
