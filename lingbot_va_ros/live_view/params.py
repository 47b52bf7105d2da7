"""Parameter schema of the live-view node (the single source of defaults, ranges and docs)."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from lingbot_va_ros.common.params import NodeParams

DECODERS = ("vae_first_frame", "vae_first_frame_half", "vae_chunk", "linear_preview")


class LiveViewParams(NodeParams):
    checkpoint: str = Field("", description="checkpoint folder whose vae/ decodes the latents (the inference "
                            "node's `checkpoint`; required)")
    base_checkpoint: str = Field("", description="folder with vae/ when `checkpoint` holds only a post-trained "
                                 "transformer/ (as for the inference node)")
    embodiment: str = Field("demo_sim", description="embodiment config (config/embodiments/) or YAML path: the "
                            "camera layout of the latent canvas; must be the inference node's")
    decoder: Literal["vae_first_frame", "vae_first_frame_half", "vae_chunk", "linear_preview"] = Field(
        "vae_first_frame", description=(
            "vae_first_frame = each shown latent frame through the VAE decoder's first-frame path (one exact "
            "decoder image per frame); vae_first_frame_half = the same from 2x2-pooled latents (half resolution, "
            "~4x cheaper); vae_chunk = the whole chunk through the causal decoder (1 + 4 images per frame, the "
            "most expensive); linear_preview = a per-cell linear latent-to-RGB map fitted to this VAE's decoder "
            "at start-up (a coarse preview, ~free; for a full-size VAE on a CPU). docs/monitoring.md compares them"))
    frames: Literal["last", "all"] = Field("last", description=(
        "latent frames decoded per chunk: last = the chunk's furthest prediction (one predicted key frame per "
        "chunk); all = every executed latent frame (one prediction_vs_real image per latent frame)"))
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$", description="auto = cuda when available")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="VAE decoder dtype: auto = bfloat16 on cuda, float32 on cpu")
    torch_threads: int = Field(1, ge=0, le=256, description="torch intra-op CPU threads (0 = torch's default); "
                               "1 keeps the decoder to one core beside the model")
    nice: int = Field(10, ge=0, le=19, description="process niceness added at start-up: the decoder only gets CPU "
                      "the control path (model, executor, cameras) leaves")
    max_rate_hz: float = Field(5.0, gt=0, le=100, description=(
        "at most this many decodes per second; a decode never queues: the newest chunk's latents replace any "
        "waiting ones (counted as skipped in /diagnostics)"))
    jpeg_quality: int = Field(85, ge=10, le=100, description="JPEG quality of the <topic>/compressed images")
    keyframe_history: int = Field(48, ge=4, le=1000, description="real key frames kept to pair with predictions "
                                  "(a regular chunk spans keyframes_per_chunk of them)")
    pending_predictions: int = Field(16, ge=1, le=1000, description="decoded predictions kept waiting for their "
                                     "real key frame")
    preview_calibration_clips: int = Field(8, ge=1, le=256, description="linear_preview: synthetic 1 + 4 "
                                           "frame clips encoded and decoded once to fit the preview map")
    preview_cache_dir: str = Field("", description="linear_preview: where fitted maps are cached as safetensors "
                                   "(default ~/.cache/lingbot_va_ros/linear_preview; keyed by the VAE files)")
    diagnostics_hz: float = Field(1.0, gt=0, le=10, description="/diagnostics rate")
