"""One training sample -> its random draw -> the teacher-forcing token sequence, mask and loss.

IDM sequence (the reference): [noisy video | clean video | noisy actions | clean actions]; loss =
latent_loss_weight * dynamics loss (video velocity) + action_loss_weight * inverse-dynamics loss (action
velocity, used channels only). FDM sequence (the paper's post-training addition): [noisy video | clean video |
clean actions | known actions], where the noisy video of chunk c also sees the KNOWN clean actions of chunk c
(mask.py) exactly as ``world_model.imagine`` conditions the executing chunk's video; loss = fdm_loss_weight *
that video loss only ("dynamics loss removed for FDM sequences").

Every random choice of a sample comes from one ``torch.Generator`` seeded from (seed, global sample index),
so the same sample gets the same draw whatever the number of processes or the resume point.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable

import torch

from lingbot_va_ros.training.flow_matching import TrainingNoise, frame_weighted_mse, velocity_target
from lingbot_va_ros.training.mask import ACTION, CLEAN, KNOWN, NOISY, VIDEO, SequenceLayout


@dataclass
class TrainingSample:
    """One segment: latents [z, F, H, W], normalised actions [30, F, A, 1] with their used-channel mask, the
    prompt embedding [L, D] and the '' embedding (CFG dropout)."""

    latents: torch.Tensor
    actions: torch.Tensor
    action_mask: torch.Tensor
    text: torch.Tensor
    empty_text: torch.Tensor
    episode_index: int = -1

    @property
    def num_frames(self) -> int:
        return int(self.latents.shape[1])


@dataclass
class SampleDraw:
    """The random part of one training step on one sample."""

    chunk_size: int
    window: int
    fdm: bool
    drop_text: bool
    video_ids: torch.Tensor          # [F] training-grid ids of the noisy video frames
    action_ids: torch.Tensor         # [F]
    video_noise: torch.Tensor        # like latents
    action_noise: torch.Tensor       # like actions
    noisy_history: bool
    history_ids: torch.Tensor        # [F] (used when noisy_history)
    history_noise: torch.Tensor


def sample_generator(seed: int, sample_index: int) -> torch.Generator:
    digest = hashlib.sha256(f"lingbot-va-train:{seed}:{sample_index}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))


def draw_sample(sample: TrainingSample, cfg, video_noise: TrainingNoise, action_noise: TrainingNoise,
                generator: torch.Generator) -> SampleDraw:
    """Draw everything random for ``sample`` from ``generator`` (CPU), in a fixed order."""
    f = sample.num_frames

    def randint(lo: int, hi: int) -> int:
        return int(torch.randint(lo, hi + 1, (1,), generator=generator))

    def coin(p: float) -> bool:
        return bool(torch.rand(1, generator=generator) < p)

    chunk_size = randint(*cfg.chunk_size_range)
    window = randint(*cfg.window_range)
    fdm = coin(cfg.fdm_prob)
    drop_text = coin(cfg.cfg_prob)
    noisy_history = coin(cfg.noisy_history_prob)
    video_ids = video_noise.sample_ids(f, generator)
    action_ids = action_noise.sample_ids(f, generator)
    lo, hi = cfg.noisy_history_range
    history_ids = video_noise.sample_ids(f, generator, lo, hi)
    vn = torch.randn(sample.latents.shape, generator=generator)
    an = torch.randn(sample.actions.shape, generator=generator)
    hn = torch.randn(sample.latents.shape, generator=generator)
    return SampleDraw(chunk_size, window, fdm, drop_text, video_ids, action_ids, vn, an, noisy_history,
                      history_ids, hn)


@dataclass
class BuiltSequence:
    segments: list                    # (x [1, ...], per-frame timesteps [F], action_mode, frame_start)
    outputs: list[bool]               # which segments need a head
    layout: SequenceLayout
    window: int
    text: torch.Tensor                # [1, L, D]
    video_target: torch.Tensor        # [1, z, F, H, W]
    video_weights: torch.Tensor       # [F]
    video_frame_mask: torch.Tensor    # [F] bool: frames in the video loss
    action_target: torch.Tensor | None
    action_weights: torch.Tensor | None
    action_loss_mask: torch.Tensor | None   # [30, F, A, 1]
    fdm: bool


def build_sequence(sample: TrainingSample, draw: SampleDraw, cfg, video_noise: TrainingNoise,
                   action_noise: TrainingNoise, tokens_per_frame: int, device) -> BuiltSequence:
    x0 = sample.latents.float()
    a0 = sample.actions.float()
    keep = sample.action_mask.to(torch.float32)
    f, per_frame_actions = a0.shape[1], a0.shape[2]

    noisy_video = video_noise.add_noise(x0, draw.video_noise, draw.video_ids)
    video_t = video_noise.timestep_of(draw.video_ids).clone()
    video_target = velocity_target(x0, draw.video_noise)
    video_frames = torch.ones(f, dtype=torch.bool)
    if draw.noisy_history:
        clean_video = video_noise.add_noise(x0, draw.history_noise, draw.history_ids)
        clean_t = video_noise.timestep_of(draw.history_ids).clone()
    else:
        clean_video, clean_t = x0, torch.zeros(f)
    noisy_actions = action_noise.add_noise(a0, draw.action_noise, draw.action_ids) * keep
    action_t = action_noise.timestep_of(draw.action_ids).clone()
    action_target = velocity_target(a0, draw.action_noise) * keep
    action_loss_mask = sample.action_mask.clone()
    if cfg.pin_first_frame:  # inference's first chunk: clean frame 0 at t = 0, zero actions at t = 0
        noisy_video[:, 0] = x0[:, 0]
        video_t[0] = 0.0
        video_frames[0] = False
        noisy_actions[:, 0] = a0[:, 0]
        action_t[0] = 0.0
        action_loss_mask[:, 0] = False

    def dev(t):
        return t.unsqueeze(0).to(device)

    cs = draw.chunk_size
    layout = SequenceLayout()
    segments = [(dev(noisy_video), video_t, False, 0), (dev(clean_video), clean_t, False, 0)]
    layout.add(VIDEO, NOISY, 0, f, tokens_per_frame, cs)
    layout.add(VIDEO, CLEAN, 0, f, tokens_per_frame, cs)
    zeros = torch.zeros(f)
    if draw.fdm:
        segments += [(dev(a0), zeros, True, 0), (dev(a0), zeros, True, 0)]
        layout.add(ACTION, CLEAN, 0, f, per_frame_actions, cs)
        layout.add(ACTION, KNOWN, 0, f, per_frame_actions, cs)
        # the clean actions' head output only enters the loss with weight 0: it keeps the action head in the
        # graph, so every rank of an FSDP step has a gradient (zero here) for every parameter
        outputs = [True, False, True, False]
    else:
        segments += [(dev(noisy_actions), action_t, True, 0), (dev(a0), zeros, True, 0)]
        layout.add(ACTION, NOISY, 0, f, per_frame_actions, cs)
        layout.add(ACTION, CLEAN, 0, f, per_frame_actions, cs)
        outputs = [True, False, True, False]
    text = sample.empty_text if draw.drop_text else sample.text
    return BuiltSequence(
        segments=segments, outputs=outputs, layout=layout, window=draw.window, text=dev(text.float()),
        video_target=dev(video_target), video_weights=video_noise.weight_of(draw.video_ids),
        video_frame_mask=video_frames,
        action_target=None if draw.fdm else dev(action_target),
        action_weights=None if draw.fdm else action_noise.weight_of(draw.action_ids),
        action_loss_mask=None if draw.fdm else dev(action_loss_mask), fdm=draw.fdm)


def sequence_loss(seq: BuiltSequence, outputs: list, cfg) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted total loss of one built sequence and its parts (as floats, for logging)."""
    video_pred = outputs[0]
    vmask = seq.video_frame_mask.to(video_pred.device).view(1, 1, -1, 1, 1)
    video_loss = frame_weighted_mse(video_pred[0], seq.video_target[0], seq.video_weights, vmask[0])
    if seq.fdm:
        total = cfg.fdm_loss_weight * video_loss + 0.0 * outputs[2].float().sum()
        return total, {"loss": float(total.detach()), "fdm_loss": float(video_loss.detach())}
    action_loss = frame_weighted_mse(outputs[2][0], seq.action_target[0], seq.action_weights,
                                     seq.action_loss_mask[0])
    total = cfg.latent_loss_weight * video_loss + cfg.action_loss_weight * action_loss
    return total, {"loss": float(total.detach()), "latent_loss": float(video_loss.detach()),
                   "action_loss": float(action_loss.detach())}


def attention_for(seq: BuiltSequence, backend: str, device) -> torch.Tensor | Callable:
    """The mask as the model's attention argument: a dense bool [L, L] or a flex-attention callable."""
    if backend == "flex":
        return seq.layout.flex_attention(seq.window, device)
    return seq.layout.dense(seq.window, device)


def forward_loss(model, seq: BuiltSequence, cfg, backend: str, device, forward: Callable | None = None):
    """Run the training forward of ``seq`` and return (loss tensor, parts)."""
    fn = forward or model.forward_train
    outs = fn(seq.segments, seq.text, attention_for(seq, backend, device), outputs=seq.outputs,
              activation_checkpointing=cfg.activation_checkpointing)
    return sequence_loss(seq, outs, cfg)
