"""The training set: LeRobot episodes -> checked -> cached latents/prompts + normalised action frames.

Errors name the problem: no episodes, cameras the embodiment needs but the dataset lacks, action channels that
do not match the embodiment (count, names or action space), non-finite actions, episodes too short for one
action frame.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from lingbot_va_ros.model.embodiment import EmbodimentConfig
from lingbot_va_ros.training.action_frames import action_frames, compute_action_stats
from lingbot_va_ros.training.keyframes import KeyframeLayout
from lingbot_va_ros.training.latent_cache import LatentCache, encode_keyframes, keyframe_images, pixels_digest
from lingbot_va_ros.training.sequence import TrainingSample

logger = logging.getLogger(__name__)


class DatasetProblem(ValueError):
    """The dataset cannot be trained on as configured; the message says why."""


def check_episode(ep, emb: EmbodimentConfig) -> None:
    """Raise DatasetProblem when an episode does not fit the embodiment."""
    where = f"episode {ep.episode_index}"
    missing = [c for c in emb.camera_names if c not in ep.camera_frames]
    if missing:
        raise DatasetProblem(f"{where}: missing cameras {missing}; the embodiment {emb.name!r} needs "
                             f"{list(emb.camera_names)}, the dataset has {sorted(ep.camera_frames)}")
    actions = np.asarray(ep.actions)
    if actions.ndim != 2 or actions.shape[1] != emb.num_channels:
        raise DatasetProblem(f"{where}: actions have {actions.shape[-1] if actions.ndim == 2 else actions.shape} "
                             f"channels but embodiment {emb.name!r} has {emb.num_channels} "
                             f"({list(emb.channel_names)}); pick the embodiment the data was recorded for")
    if tuple(ep.channel_names) != tuple(emb.channel_names):
        raise DatasetProblem(f"{where}: action channels {list(ep.channel_names)} differ from embodiment "
                             f"{emb.name!r} channels {list(emb.channel_names)}")
    if ep.action_space and ep.action_space != emb.action_space:
        raise DatasetProblem(f"{where}: actions are in {ep.action_space!r} space, embodiment {emb.name!r} is "
                             f"{emb.action_space!r}")
    if not np.isfinite(actions).all():
        raise DatasetProblem(f"{where}: {int((~np.isfinite(actions)).sum())} non-finite action values")


@dataclass
class TrainingSet:
    samples: list[TrainingSample]
    q01: list[float]
    q99: list[float]
    widened_channels: list[int]
    skipped: list[str] = field(default_factory=list)
    encoded: int = 0
    reused: int = 0

    @property
    def episode_indices(self) -> list[int]:
        return [s.episode_index for s in self.samples]


@dataclass
class _Kept:
    episode_index: int
    task: str
    num_frames: int
    actions: np.ndarray


def build_training_set(episodes: Iterable, emb: EmbodimentConfig, cache: LatentCache, encoders_factory: Callable,
                       *, action_stats: str = "dataset", min_quantile_range: float = 1e-3,
                       max_latent_frames: int = 0, action_clip: float | None = 1.5, rank: int = 0,
                       world_size: int = 1, barrier: Callable[[], None] = lambda: None) -> TrainingSet:
    """Check every episode, fill the cache (rank r encodes the episodes i with i % world_size == r; the
    encoders are only loaded when something is missing), then assemble the samples on every rank."""
    layout = KeyframeLayout(emb.action_per_frame)
    kept: list[_Kept] = []
    skipped, encoded, reused = [], 0, 0
    encoders = None
    count = 0
    for i, ep in enumerate(episodes):
        count += 1
        check_episode(ep, emb)
        f = layout.num_latent_frames(ep.num_rows, max_latent_frames)
        if f < 2:
            skipped.append(f"episode {ep.episode_index}: {ep.num_rows} rows < {emb.action_per_frame + 1} "
                           f"(one latent frame of actions)")
            continue
        keyframes = keyframe_images(ep.camera_frames, layout.keyframe_rows(f), emb.image_sizes)
        sha = pixels_digest(keyframes, emb.camera_names)
        status = cache.episode_status(ep.episode_index, sha, f)
        if status != "ok" and i % world_size == rank:
            if status != "missing":
                logger.warning("episode %d: cached latents are %s: re-encoding", ep.episode_index, status)
            encoders = encoders or encoders_factory()
            latents = encode_keyframes(encoders.observation, keyframes, layout.encode_calls(f, emb.frame_chunk_size))
            cache.store_episode(ep.episode_index, latents, sha, {"task": ep.task, "rows_used": layout.rows_used(f)})
            encoded += 1
        elif status == "ok":
            reused += 1
        kept.append(_Kept(ep.episode_index, ep.task, f, np.asarray(ep.actions, dtype=np.float32)))
    if count == 0:
        raise DatasetProblem("the dataset has no episodes")
    if not kept:
        raise DatasetProblem("no usable episodes: " + "; ".join(skipped))
    if rank == 0:
        for prompt in sorted({k.task for k in kept} | {""}):
            if cache.prompt_status(prompt) != "ok":
                encoders = encoders or encoders_factory()
                cache.store_prompt(prompt, encoders.prompts.encode(prompt))
    barrier()
    if encoders is not None:
        encoders.close()

    if action_stats == "dataset":
        q01, q99, widened = compute_action_stats([k.actions for k in kept], emb.used_action_channel_ids,
                                                 min_quantile_range)
    else:
        q01, q99, widened = list(emb.q01), list(emb.q99), []
    empty = cache.load_prompt("")
    texts = {t: cache.load_prompt(t) for t in {k.task for k in kept}}
    samples = []
    for k in kept:
        latents = cache.load_episode(k.episode_index)
        acts, mask = action_frames(k.actions, layout, k.num_frames, emb.used_action_channel_ids, q01, q99,
                                   action_clip)
        samples.append(TrainingSample(latents=latents, actions=torch.from_numpy(acts),
                                      action_mask=torch.from_numpy(mask), text=texts[k.task], empty_text=empty,
                                      episode_index=k.episode_index))
    return TrainingSet(samples, q01, q99, widened, skipped, encoded, reused)


class Encoders:
    """The inference VAE (ObservationEncoder in the embodiment's layout) and UMT5 prompt encoder, loaded on
    first use from a checkpoint's folders and released after caching."""

    def __init__(self, vae_dir: Path, text_encoder_dir: Path, tokenizer_dir: Path, emb: EmbodimentConfig,
                 device: torch.device, dtype: torch.dtype):
        from lingbot_va_ros.model.loading import load_vae
        from lingbot_va_ros.model.text_encoder import PromptEncoder
        from lingbot_va_ros.model.vae import ObservationEncoder

        self.vae = load_vae(vae_dir, device, dtype)
        self.observation = ObservationEncoder(self.vae, emb.camera_layout)
        self.prompts = PromptEncoder(text_encoder_dir, tokenizer_dir, device=device, dtype=dtype)

    def close(self) -> None:
        self.prompts.release()
        self.vae = self.observation = None
