"""Wan2.2 VAE: streaming causal encoding of key frames onto the multi-camera latent canvas, and display decoding.

The reference server never calls ``AutoencoderKLWan.encode`` at inference: that method clears the causal
feature cache on every call. Instead it drives ``vae.encoder`` + ``vae.quant_conv`` with its own
feature-cache list that lives for the whole episode (spec §2.1 step 5). :class:`StreamingVAEEncoder` does
the same, with one cache per camera group; several encoders may share one ``AutoencoderKLWan`` (the weights),
because the cache is a plain list owned by the encoder, not state on the module.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch

from lingbot_va_ros.model.image_layout import (
    VAE_SPATIAL_STRIDE,
    VAE_TEMPORAL_STRIDE,
    CameraLayout,
    check_rgb_uint8,
    preprocess_images,
)


def _patchify(x: torch.Tensor, patch_size: int | None) -> torch.Tensor:
    """The VAE's own 2x2 pixel patchify before its encoder (diffusers' layout: channels (c, pw, ph))."""
    if not patch_size or patch_size == 1:
        return x
    from diffusers.models.autoencoders.autoencoder_kl_wan import patchify

    return patchify(x, patch_size=patch_size)


def _count_causal_convs(vae) -> int:
    counts = getattr(vae, "_cached_conv_counts", None)
    if counts is not None:
        return counts["encoder"]
    from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d

    return sum(isinstance(m, WanCausalConv3d) for m in vae.encoder.modules())


def _mkldnn_conv3d_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None):
    if input.device.type == "cpu" and input.dtype == torch.float32 and not torch.is_grad_enabled():
        return torch.ops.aten.mkldnn_convolution(input.contiguous(), weight, bias, self.padding, self.stride,
                                                 self.dilation, self.groups)
    return torch.nn.Conv3d._conv_forward(self, input, weight, bias)


def use_fast_cpu_conv3d(vae) -> int:
    """Route this VAE's causal 3D convolutions through oneDNN on CPU (float32, inference only).

    PyTorch's CPU heuristic picks its slow reference conv3d whenever batch*channels*time*height < 20480,
    which is every layer of a batch-1 streaming encode (it ignores the width); oneDNN is ~10x faster there
    and agrees to float rounding. Only this instance is changed (an instance-level ``_conv_forward``);
    other devices and dtypes take the normal path. Returns the number of convolutions rerouted.
    """
    import types

    from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d

    if not torch.backends.mkldnn.is_available():
        return 0
    count = 0
    for module in vae.modules():
        if isinstance(module, WanCausalConv3d):
            module._conv_forward = types.MethodType(_mkldnn_conv3d_forward, module)
            count += 1
    return count


class LatentStats:
    """Per-channel ``latents_mean`` / ``latents_std`` from vae/config.json: z = (mu - mean) / std."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        if len(mean) != len(std):
            raise ValueError(f"latents_mean has {len(mean)} values but latents_std has {len(std)}")
        std_arr = np.asarray(std, dtype=np.float64)
        if not np.all(np.isfinite(std_arr)) or np.any(std_arr <= 0):
            raise ValueError("latents_std must be finite and positive")
        self.mean = torch.tensor(list(mean), dtype=torch.float32)
        self.std = torch.tensor(list(std), dtype=torch.float32)

    @classmethod
    def from_vae(cls, vae) -> "LatentStats":
        cfg = vae.config
        z_dim = int(cfg.z_dim)
        mean, std = getattr(cfg, "latents_mean", None), getattr(cfg, "latents_std", None)
        if mean is None or std is None or len(mean) != z_dim or len(std) != z_dim:
            raise ValueError(f"vae/config.json must hold latents_mean and latents_std with z_dim={z_dim} values "
                             f"each (got {None if mean is None else len(mean)} and "
                             f"{None if std is None else len(std)})")
        return cls(mean, std)

    def _view(self, t: torch.Tensor, x: torch.Tensor, channel_dim: int) -> torch.Tensor:
        shape = [1] * x.dim()
        shape[channel_dim] = -1
        return t.to(device=x.device).view(shape)

    def normalize(self, mu: torch.Tensor, channel_dim: int = 1) -> torch.Tensor:
        # fp32 arithmetic like the reference (it upcasts, normalises, then casts back)
        out = (mu.float() - self._view(self.mean, mu, channel_dim)) / self._view(self.std, mu, channel_dim)
        return out.to(mu.dtype)

    def denormalize(self, z: torch.Tensor, channel_dim: int = 1) -> torch.Tensor:
        out = z.float() * self._view(self.std, z, channel_dim) + self._view(self.mean, z, channel_dim)
        return out.to(z.dtype)


class StreamingVAEEncoder:
    """Causal streaming encoder with its own feature cache: 1 frame first, then groups of 4 frames.

    ``encode`` takes [B, 3, T, h, w] pixels in [-1, 1] and returns normalised mu [B, z, T', h/16, w/16]. Only
    the mean of the posterior is used (no sampling), as in the reference.
    """

    def __init__(self, vae, stats: LatentStats | None = None, name: str = "vae"):
        self.vae = vae
        self.stats = stats or LatentStats.from_vae(vae)
        self.name = name
        self._num_convs = _count_causal_convs(vae)
        self._feat_cache: list = []
        self.frames_seen = 0
        self.reset()

    def reset(self) -> None:
        """Forget the episode: the next call must be the single first frame."""
        self._feat_cache = [None] * self._num_convs
        self.frames_seen = 0

    def check_frame_count(self, num_frames: int) -> None:
        if self.frames_seen == 0:
            if num_frames != 1:
                raise ValueError(
                    f"{self.name}: the first encode after reset must hold exactly 1 frame (got {num_frames}); "
                    f"the causal Wan VAE encodes 1 + 4k frames: the first frame alone, then groups of "
                    f"{VAE_TEMPORAL_STRIDE}")
        elif num_frames <= 0 or num_frames % VAE_TEMPORAL_STRIDE:
            raise ValueError(
                f"{self.name}: after the first frame every encode must hold a positive multiple of "
                f"{VAE_TEMPORAL_STRIDE} frames (got {num_frames}; {self.frames_seen} frames encoded so far)")

    @torch.no_grad()
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        if frames.dim() != 5 or frames.shape[1] != 3:
            raise ValueError(f"{self.name}: expected pixels [B, 3, T, h, w], got {tuple(frames.shape)}")
        h, w = frames.shape[-2:]
        if h % VAE_SPATIAL_STRIDE or w % VAE_SPATIAL_STRIDE:
            raise ValueError(f"{self.name}: frame size {h}x{w} is not a multiple of {VAE_SPATIAL_STRIDE}")
        self.check_frame_count(int(frames.shape[2]))
        param = next(self.vae.parameters())
        x = _patchify(frames.to(device=param.device, dtype=param.dtype), self.vae.config.patch_size)
        # The whole call goes through the encoder at once (as the reference wrapper does): with the cached
        # last frames prepended, the causal convolutions give the same values as 4-frame pieces.
        out = self.vae.encoder(x, feat_cache=self._feat_cache, feat_idx=[0])
        enc = self.vae.quant_conv(out)
        self.frames_seen += int(frames.shape[2])
        mu = enc[:, : enc.shape[1] // 2]
        return self.stats.normalize(mu)


@torch.no_grad()
def encode_clip_one_shot(vae, frames: torch.Tensor, stats: LatentStats | None = None) -> torch.Tensor:
    """Non-streaming reference: the whole 1+4k clip through diffusers' own encode, normalised mu."""
    stats = stats or LatentStats.from_vae(vae)
    param = next(vae.parameters())
    mu = vae.encode(frames.to(device=param.device, dtype=param.dtype)).latent_dist.mode()
    return stats.normalize(mu)


class ObservationEncoder:
    """Key frames of all cameras -> latent canvas [z, F, H, W] per the embodiment's camera layout.

    One :class:`StreamingVAEEncoder` per camera group (T-shape: head alone; both wrists batched in a second
    instance with its own cache). All groups share the VAE weights.
    """

    def __init__(self, vae, layout: CameraLayout, stats: LatentStats | None = None):
        self.vae = vae
        self.layout = layout
        self.stats = stats or LatentStats.from_vae(vae)
        self.encoders = [StreamingVAEEncoder(vae, self.stats, name=f"vae[{'+'.join(group)}]")
                         for group in layout.groups]

    @property
    def z_dim(self) -> int:
        return int(self.vae.config.z_dim)

    @property
    def frames_seen(self) -> int:
        return self.encoders[0].frames_seen

    def reset(self) -> None:
        for enc in self.encoders:
            enc.reset()

    def check_keyframes(self, keyframes: Sequence[Mapping[str, np.ndarray]]) -> None:
        """Validate camera sets, dtypes and sizes of every key frame (ValueError naming the culprit)."""
        expected = set(self.layout.camera_names)
        for i, frame in enumerate(keyframes):
            if not isinstance(frame, Mapping):
                raise ValueError(f"key frame {i}: expected a mapping camera -> image, got {type(frame).__name__}")
            got = set(frame.keys())
            if got != expected:
                raise ValueError(f"key frame {i}: camera set {sorted(got)} does not match the embodiment's "
                                 f"{list(self.layout.camera_names)} (missing {sorted(expected - got)}, "
                                 f"unexpected {sorted(got - expected)})")
            for cam in self.layout.camera_names:
                check_rgb_uint8(frame[cam], f"key frame {i} camera {cam!r}", self.layout.image_sizes[cam])

    @torch.no_grad()
    def encode(self, keyframes: Sequence[Mapping[str, np.ndarray]]) -> torch.Tensor:
        """Encode the next key frames of the episode (1 first, then multiples of 4) -> [z, F, H, W]."""
        if len(keyframes) == 0:
            raise ValueError("no key frames to encode")
        self.encoders[0].check_frame_count(len(keyframes))      # fail before any cache is touched
        self.check_keyframes(keyframes)
        per_camera: dict[str, torch.Tensor] = {}
        for group, encoder in zip(self.layout.groups, self.encoders):
            pixels = torch.stack([
                preprocess_images([kf[cam] for kf in keyframes], self.layout.image_sizes[cam]) for cam in group
            ])                                                     # [B=len(group), 3, T, h, w]
            latents = encoder.encode(pixels)                       # [B, z, T', h/16, w/16]
            for b, cam in enumerate(group):
                per_camera[cam] = latents[b]
        return self.layout.assemble(per_camera)

    @torch.no_grad()
    def decode(self, canvas: torch.Tensor, last_frame_only: bool = False) -> dict[str, np.ndarray]:
        """Normalised canvas latents [z, F, H, W] -> {camera: uint8 [T, h, w, 3]} (non-streaming, display only).

        The latent chunk is decoded on its own (its first latent frame decodes to 1 image, later ones to 4).
        """
        if canvas.dim() != 4 or canvas.shape[0] != self.z_dim:
            raise ValueError(f"expected canvas latents [{self.z_dim}, F, H, W], got {tuple(canvas.shape)}")
        param = next(self.vae.parameters())
        per_camera = self.layout.split(canvas)
        out: dict[str, np.ndarray] = {}
        for group in self.layout.groups:
            z = torch.stack([per_camera[cam] for cam in group]).to(device=param.device, dtype=param.dtype)
            z = self.stats.denormalize(z)
            video = self.vae.decode(z).sample                     # [B, 3, T, h, w] in [-1, 1]
            if last_frame_only:
                video = video[:, :, -1:]
            frames = ((video.float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
            frames = frames.permute(0, 2, 3, 4, 1).cpu().numpy()     # [B, T, h, w, 3]
            for b, cam in enumerate(group):
                out[cam] = frames[b]
        return out


