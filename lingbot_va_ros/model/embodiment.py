"""Embodiment configs: cameras, chunk geometry, denoising settings and action statistics of one robot set-up.

One YAML per embodiment in ``config/embodiments/`` (looked up by name) or any YAML path. The schema is
strict (unknown keys and wrong types are errors) because a silently ignored typo in, say, ``q99`` makes the
robot move wrongly rather than fail.
"""
from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lingbot_va_ros.model.image_layout import VAE_TEMPORAL_STRIDE, CameraLayout, layout_problems

ACTION_DIM = 30
# The RoboTwin/Franka 16-d EEF output order: [L_xyz, L_quat(xyzw), L_grip, R_xyz, R_quat(xyzw), R_grip].
EEF16_CHANNEL_IDS = [0, 1, 2, 3, 4, 5, 6, 28, 7, 8, 9, 10, 11, 12, 13, 29]


class CameraConfig(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    height: int = Field(gt=0)
    width: int = Field(gt=0)


class EmbodimentConfig(BaseModel):
    """Everything the backend needs to know about one robot + checkpoint pairing."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    description: str = ""
    layout: Literal["robotwin_tshape", "none"]       # the reference's env_type
    cameras: list[CameraConfig] = Field(min_length=1)

    frame_chunk_size: int = Field(ge=2, description="latent frames per chunk (F); the first chunk executes F-1")
    action_per_frame: int = Field(gt=0, description="actions per latent frame (A), a multiple of 4")
    attn_window: int = Field(ge=2, description="KV window in frame-id units (2 per chunk)")
    num_inference_steps: int = Field(ge=1)
    action_num_inference_steps: int = Field(ge=1)
    video_exec_step: int = -1
    snr_shift: float = Field(gt=0)
    action_snr_shift: float = Field(gt=0)
    guidance_scale: float = Field(ge=0)
    action_guidance_scale: float = Field(ge=0)

    action_space: Literal["ee_relative", "joint"]
    used_action_channel_ids: list[int] = Field(min_length=1)
    channel_names: list[str]
    q01: list[float]
    q99: list[float]
    control_hz: float = Field(gt=0)

    @model_validator(mode="after")
    def _check(self) -> "EmbodimentConfig":
        problems = layout_problems(self.layout, self.camera_names, self.image_sizes)
        if self.action_per_frame % VAE_TEMPORAL_STRIDE:
            problems.append(f"action_per_frame ({self.action_per_frame}) must be a multiple of "
                            f"{VAE_TEMPORAL_STRIDE}: a key frame is taken every action_per_frame/4 actions")
        if not (self.video_exec_step == -1 or 1 <= self.video_exec_step <= self.num_inference_steps + 1):
            problems.append(f"video_exec_step must be -1 (full denoising) or 1..num_inference_steps+1, "
                            f"got {self.video_exec_step}")
        ids = self.used_action_channel_ids
        bad = [i for i in ids if not 0 <= i < ACTION_DIM]
        if bad:
            problems.append(f"used_action_channel_ids {bad} outside 0..{ACTION_DIM - 1}")
        if len(set(ids)) != len(ids):
            problems.append(f"used_action_channel_ids repeat: {ids}")
        if len(self.channel_names) != len(ids):
            problems.append(f"channel_names has {len(self.channel_names)} names but used_action_channel_ids has "
                            f"{len(ids)} channels")
        if len(set(self.channel_names)) != len(self.channel_names):
            problems.append("channel_names repeat")
        for key in ("q01", "q99"):
            if len(getattr(self, key)) != ACTION_DIM:
                problems.append(f"{key} must have {ACTION_DIM} values (the unified action vector), "
                                f"got {len(getattr(self, key))}")
        if len(self.q01) == ACTION_DIM == len(self.q99):
            inverted = [i for i in range(ACTION_DIM) if self.q99[i] < self.q01[i]]
            if inverted:
                problems.append(f"q99 < q01 on channels {inverted}")
            nonfinite = [i for i in range(ACTION_DIM) if not all(abs(v) < float("inf") and v == v
                                                                  for v in (self.q01[i], self.q99[i]))]
            if nonfinite:
                problems.append(f"q01/q99 not finite on channels {nonfinite}")
            flat = [i for i in ids if 0 <= i < ACTION_DIM and self.q99[i] - self.q01[i] <= 0]
            if flat:
                problems.append(f"used channels {flat} have q99 == q01: their actions would all de-normalise "
                                f"to one value (paste the checkpoint's real statistics)")
        if self.action_space == "ee_relative" and ids != EEF16_CHANNEL_IDS:
            problems.append(f"action_space 'ee_relative' is the RoboTwin 16-d EEF convention and needs "
                            f"used_action_channel_ids {EEF16_CHANNEL_IDS}, got {ids}")
        if problems:
            raise ValueError(f"embodiment {self.name!r}: " + "; ".join(problems))
        return self

    # ---- derived geometry -------------------------------------------------------------------------
    @property
    def camera_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.cameras)

    @property
    def image_sizes(self) -> dict[str, tuple[int, int]]:
        return {c.name: (c.height, c.width) for c in self.cameras}

    @cached_property
    def camera_layout(self) -> CameraLayout:
        return CameraLayout(self.layout, self.camera_names, self.image_sizes)

    @property
    def latent_height(self) -> int:
        return self.camera_layout.latent_height

    @property
    def latent_width(self) -> int:
        return self.camera_layout.latent_width

    @property
    def num_channels(self) -> int:
        return len(self.used_action_channel_ids)

    @property
    def inverse_used_action_channel_ids(self) -> list[int]:
        """30 entries: position of each unified channel in the used list, or C_used (a zero column) if unused."""
        from lingbot_va_ros.model.actions import inverse_channel_ids

        return inverse_channel_ids(self.used_action_channel_ids, ACTION_DIM)

    @property
    def actions_per_keyframe(self) -> int:
        return self.action_per_frame // VAE_TEMPORAL_STRIDE

    @property
    def actions_per_chunk(self) -> int:
        return self.frame_chunk_size * self.action_per_frame

    @property
    def first_chunk_actions(self) -> int:
        return (self.frame_chunk_size - 1) * self.action_per_frame

    @property
    def keyframes_per_chunk(self) -> int:
        return self.frame_chunk_size * VAE_TEMPORAL_STRIDE

    @property
    def first_chunk_keyframes(self) -> int:
        return (self.frame_chunk_size - 1) * VAE_TEMPORAL_STRIDE

    @property
    def chunk_seconds(self) -> float:
        return self.actions_per_chunk / self.control_hz

    def world_model_kwargs(self) -> dict:
        """Keyword arguments of ``world_model.WorldModelConfig`` for this embodiment."""
        return dict(
            attn_window=self.attn_window,
            frame_chunk_size=self.frame_chunk_size,
            action_per_frame=self.action_per_frame,
            latent_height=self.latent_height,
            latent_width=self.latent_width,
            num_inference_steps=self.num_inference_steps,
            action_num_inference_steps=self.action_num_inference_steps,
            video_exec_step=self.video_exec_step,
            snr_shift=self.snr_shift,
            action_snr_shift=self.action_snr_shift,
            guidance_scale=self.guidance_scale,
            action_guidance_scale=self.action_guidance_scale,
            used_action_channel_ids=list(self.used_action_channel_ids),
            q01=list(self.q01),
            q99=list(self.q99),
            action_dim=ACTION_DIM,
        )


def load_embodiment(name_or_path: str | Path, **overrides) -> EmbodimentConfig:
    """Load ``config/embodiments/<name>.yaml`` or a YAML path; ``overrides`` replace top-level keys."""
    if isinstance(name_or_path, EmbodimentConfig):
        if not overrides:
            return name_or_path
        return EmbodimentConfig.model_validate({**name_or_path.model_dump(), **overrides})
    from lingbot_va_ros.common.paths import resolve_config

    path = resolve_config(str(name_or_path), "embodiments")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of embodiment settings, got {type(data).__name__}")
    data.update(overrides)
    try:
        return EmbodimentConfig.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"{path}: invalid embodiment config:\n{exc}") from exc


def available_embodiments() -> list[str]:
    from lingbot_va_ros.common.paths import config_path

    return sorted(p.stem for p in config_path("embodiments").glob("*.yaml"))
