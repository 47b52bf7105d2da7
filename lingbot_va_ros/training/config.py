"""The one parameter schema of ``lingbot-va-train`` (pydantic; YAML in config/training/).

Defaults are the official post-training recipe (Robbyant/lingbot-va ``train.py`` + ``va_robotwin_train_cfg``,
spec §4.3, §7.3): AdamW lr 1e-5, betas (0.9, 0.95), weight decay 0.1, 10 warm-up steps then constant, clip
2.0, per-GPU batch 1, cfg_prob 0.1, noisy history p = 0.5, chunk_size ~ U{1..4}, window ~ U{4..64}, loss
weights 1, bf16 FSDP with activation checkpointing. The paper-only FDM loss is off by default
(``fdm_prob: 0``; the paper picks FDM or IDM per sequence, i.e. 0.5).
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, model_validator

from lingbot_va_ros.common.params import NodeParams, ParameterError


class TrainingConfig(NodeParams):
    # ---- what to train on / from / to (the CLI flags override these) -------------------------------
    dataset: str = Field("", description="LeRobot dataset root (lingbot_va_ros.dataset.lerobot_format)")
    base_checkpoint: str = Field("", description="official LingBot-VA folder: transformer/ vae/ text_encoder/ "
                                 "tokenizer/ (the transformer is the starting point, the rest is reused)")
    output_dir: str = Field("", description="run folder: transformer/, embodiment.yaml, checkpoints/, logs")
    episodes: list[int] = Field(default_factory=list, description="episode indices of the dataset to train on "
                                "(empty = all; e.g. hold some out for evaluation)")
    embodiment: str = Field("robotwin", min_length=1, description="embodiment name or YAML the dataset's "
                            "actions and cameras are in (its q01/q99 are replaced by the dataset's)")
    action_stats: Literal["dataset", "embodiment"] = Field(
        "dataset", description="q01/q99 for normalisation: computed from the dataset (written to the output "
        "embodiment YAML) or taken from the embodiment YAML as is")
    min_quantile_range: float = Field(1e-3, gt=0, description="a used channel whose q01..q99 band is narrower "
                                      "(never moved in the demos) is widened to this")
    max_latent_frames: int = Field(0, ge=0, description="use at most this many latent frames of each episode "
                                   "(0 = the whole episode: one training segment per episode)")
    cache_dir: str = Field("", description="latent/prompt cache folder (default <output_dir>/cache)")
    cache_dtype: Literal["float32", "bfloat16"] = Field("bfloat16", description="dtype of cached latents and "
                                                        "prompt embeddings (the reference stores bf16)")
    encode_device: str = Field("auto", description="device for the VAE / text encoder while caching")

    # ---- optimisation -------------------------------------------------------------------------------
    num_steps: int = Field(50000, ge=1, description="optimizer steps (RoboTwin 50K; paper post-training 3K)")
    learning_rate: float = Field(1e-5, gt=0)
    betas: tuple[float, float] = (0.9, 0.95)
    adam_eps: float = Field(1e-8, gt=0)
    weight_decay: float = Field(0.1, ge=0)
    warmup_steps: int = Field(10, ge=0, description="linear warm-up from 0, then constant")
    grad_clip: float = Field(2.0, gt=0, description="max global gradient norm")
    gradient_accumulation_steps: int = Field(1, ge=1, description="micro-batches (one segment each) per rank "
                                             "per optimizer step; global batch = world size x this")
    seed: int = Field(42, description="data order and every per-sample random draw derive from it")

    # ---- diffusion / losses -----------------------------------------------------------------------
    snr_shift: float | None = Field(None, gt=0, description="video timestep shift (None: the embodiment's)")
    action_snr_shift: float | None = Field(None, gt=0, description="action timestep shift (None: the "
                                           "embodiment's)")
    num_train_timesteps: int = Field(1000, ge=10)
    noisy_history_prob: float = Field(0.5, ge=0, le=1, description="probability that a sample's clean video "
                                      "copy is replaced by a noised one (noisy-history augmentation)")
    noisy_history_range: tuple[float, float] = Field((0.5, 1.0), description="fraction of the timestep-id "
                                                     "range its per-frame ids are drawn from (s_aug in [0.5, 1])")
    latent_loss_weight: float = Field(1.0, ge=0, description="dynamics (video) loss weight")
    action_loss_weight: float = Field(1.0, ge=0, description="lambda of the inverse-dynamics loss")
    fdm_prob: float = Field(0.0, ge=0, le=1, description="probability that a sequence is an FDM sequence "
                            "(video of chunk c conditioned on chunk c's clean actions; no dynamics / IDM loss)")
    fdm_loss_weight: float = Field(1.0, ge=0)
    cfg_prob: float = Field(0.1, ge=0, le=1, description="text dropout: prompt replaced by the '' embedding")
    chunk_size_range: tuple[int, int] = Field((1, 4), description="latent frames per chunk ~ U{lo..hi}")
    window_range: tuple[int, int] = Field((4, 64), description="attention window in frame-id units (2 per "
                                          "chunk) ~ U{lo..hi}")
    action_clip: float | None = Field(1.5, gt=0, description="clip normalised actions to +-this (None: off)")
    pin_first_frame: bool = Field(False, description="give the noisy copy the clean latent frame 0 (t = 0) and "
                                  "zero actions, as inference pins them on the first chunk, and leave them out "
                                  "of the loss (the reference noises and scores them)")

    # ---- runtime ----------------------------------------------------------------------------------
    device: str = Field("auto", description="auto = cuda:LOCAL_RANK when CUDA is available, else cpu")
    mixed_precision: Literal["auto", "bf16", "fp32"] = Field("auto", description="auto = bf16 params with fp32 "
                                                             "reduce on CUDA, fp32 on CPU; master weights fp32")
    attention: Literal["auto", "dense", "flex"] = Field("auto", description="auto = flex attention (BlockMask) "
                                                         "on CUDA, a dense bool mask with SDPA on CPU")
    activation_checkpointing: bool = True
    fsdp: bool = Field(True, description="shard with FSDP2 (fully_shard per block) when WORLD_SIZE > 1 "
                       "(otherwise plain data parallel is not offered: FSDP is the multi-process path)")
    torch_threads: int = Field(0, ge=0, description="intra-op CPU threads per process (0 = torch default)")

    # ---- output -------------------------------------------------------------------------------------
    save_every: int = Field(1000, ge=1, description="write a resumable checkpoint every N steps (and at the end)")
    keep_checkpoints: int = Field(2, ge=1, description="resumable checkpoints kept (oldest deleted)")
    log_every: int = Field(1, ge=1)
    export_dtype: Literal["bfloat16", "float32"] = Field("bfloat16", description="dtype of the exported "
                                                        "transformer/ (the reference saves bf16)")
    link_base: Literal["symlink", "copy", "none"] = Field("symlink", description="how vae/ text_encoder/ "
                                                          "tokenizer/ of the base checkpoint appear in the output")
    tensorboard: bool = Field(True, description="also log to TensorBoard when the package is installed")
    progress_bar: bool = True

    @model_validator(mode="after")
    def _ranges(self) -> "TrainingConfig":
        problems = []
        for name in ("chunk_size_range", "window_range"):
            lo, hi = getattr(self, name)
            if not 1 <= lo <= hi:
                problems.append(f"{name} must satisfy 1 <= lo <= hi, got {(lo, hi)}")
        lo, hi = self.noisy_history_range
        if not 0 <= lo <= hi <= 1:
            problems.append(f"noisy_history_range must satisfy 0 <= lo <= hi <= 1, got {(lo, hi)}")
        b1, b2 = self.betas
        if not (0 <= b1 < 1 and 0 <= b2 < 1):
            problems.append(f"betas must be in [0, 1), got {self.betas}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def resolved_cache_dir(self) -> Path:
        return Path(self.cache_dir) if self.cache_dir else Path(self.output_dir) / "cache"


def load_training_config(path: str | Path | None = None, overrides: dict | None = None) -> TrainingConfig:
    """YAML (a path, or a name in config/training/) + overrides -> validated config (ParameterError lists
    every bad key)."""
    data: dict = {}
    source = "defaults"
    if path is not None:
        from lingbot_va_ros.common.paths import resolve_config

        p = resolve_config(str(path), "training")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ParameterError(f"{p}: not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise ParameterError(f"{p}: expected a mapping of training settings, got {type(data).__name__}")
        source = str(p)
    data.update(overrides or {})
    return TrainingConfig.from_dict(data, source=source)


def parse_override(text: str) -> tuple[str, object]:
    """``key=value`` with a YAML value (``--set num_steps=10``, ``--set betas=[0.9,0.99]``)."""
    if "=" not in text:
        raise ParameterError(f"--set expects key=value, got {text!r}")
    key, value = text.split("=", 1)
    return key.strip(), yaml.safe_load(value)
