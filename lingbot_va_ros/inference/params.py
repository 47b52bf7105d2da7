"""Parameter schema of the inference node (the single source of defaults, ranges and docs)."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from lingbot_va_ros.common.params import NodeParams, SubParams


class DisplayParams(SubParams):
    enabled: bool = Field(True, description="publish each chunk's predicted video latents on "
                          "/lingbot_va/predicted_latents (a copy, ~0.1 MB fp16) for the live-view node, which decodes "
                          "them in its own process into /lingbot_va/predicted_frames (rqt live view)")
    publish_trajectory: bool = Field(True, description="publish each chunk as trajectory_msgs/JointTrajectory")


class InferenceParams(NodeParams):
    backend: str = Field("lingbot_va", description="policy backend plugin (registry name or 'pkg.module:Class')")
    checkpoint: str = Field("", description="checkpoint folder (official layout: transformer/ vae/ text_encoder/ "
                            "tokenizer/); required by the lingbot_va backend")
    base_checkpoint: str = Field("", description="folder with vae/ text_encoder/ tokenizer/ when `checkpoint` holds "
                                 "only a post-trained transformer/")
    embodiment: str = Field("demo_sim", description="embodiment config name (config/embodiments/) or YAML path")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$", description="auto = cuda when available")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="auto = bfloat16 on cuda, float32 on cpu")
    attention_backend: Literal["auto", "sdpa", "flash_attn"] = Field(
        "auto", description="auto = flash-attn when installed and on cuda, else torch SDPA")
    text_encoder_offload: bool = Field(True, description="keep the text encoder off the GPU except while encoding "
                                       "the prompt (once per episode)")
    torch_threads: int = Field(0, ge=0, le=256, description="torch intra-op CPU threads (0 = torch's default); "
                               "on a small shared CPU, 1 is often fastest")
    seed: int = Field(0, ge=0, description="noise seed; each episode reseeds from it")
    mode: Literal["sync", "async", "async_naive"] = Field(
        "sync", description="sync = the official protocol (safe default for released checkpoints, which were not "
        "trained with the FDM loss); async = paper Alg. 2 with FDM grounding; async_naive = ablation")
    fallback_to_sync_after: int = Field(3, ge=0, description="consecutive deadline misses after which an async "
                                        "episode continues in sync mode (0 = never)")
    initial_observation_timeout_s: float = Field(10.0, gt=0, description="wait for the first key frame")
    feedback_timeout_s: float = Field(5.0, gt=0, description="extra wait beyond a chunk's duration for its key "
                                      "frames and executed actions before the episode is aborted")
    heartbeat_hz: float = Field(20.0, ge=5, le=200, description="liveliness heartbeat for the executor's watchdog")
    diagnostics_hz: float = Field(1.0, gt=0, le=10, description="/diagnostics rate")
    recording_dir: str = Field("", description="where the recorder writes episodes (reported in the result)")
    display: DisplayParams = DisplayParams()
