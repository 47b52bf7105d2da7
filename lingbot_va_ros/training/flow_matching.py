"""Flow-matching training noise of LingBot-VA (spec §4.1, §4.3): timestep grid, sampling, weights, loss.

The training grid is the scheduler's ``set_timesteps(1000)``: sigma_i = shift*b / (1 + (shift-1)*b) with
b = linspace(1, 0, 1001)[:-1], t_i = 1000*sigma_i (id 0 = pure noise). Every latent frame and every action
frame draws its own id uniformly (diffusion-forcing style). Loss weights are the reference's bell curve
w(t) = exp(-2((t - 500)/1000)^2), min-subtracted and normalised to mean 1. Noisy-history ids are drawn from
the upper half of the id range (``noisy_history_range`` [0.5, 1]: base sigma in (0, 0.5], i.e. the paper's
s_aug in [0.5, 1), shifted like every other timestep).
"""
from __future__ import annotations

import torch

from lingbot_va_ros.model.scheduler import FlowMatchScheduler


class TrainingNoise:
    def __init__(self, shift: float, num_train_timesteps: int = 1000):
        sched = FlowMatchScheduler(shift, num_train_timesteps=num_train_timesteps)
        sched.set_timesteps(num_train_timesteps)
        self.shift = float(shift)
        self.num_train_timesteps = num_train_timesteps
        self.sigmas = sched.sigmas.clone()            # [N] float32, decreasing from 1
        self.timesteps = sched.timesteps.clone()      # [N] = 1000 * sigmas
        n = float(num_train_timesteps)
        y = torch.exp(-2 * ((self.timesteps - n / 2) / n) ** 2)
        y = y - y.min()
        self.weights = y * (n / y.sum())              # mean 1 over the grid

    def sample_ids(self, count: int, generator: torch.Generator, lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
        """``count`` ids, u ~ U[lo, hi) scaled to the grid (reference ``sample_timestep_id``)."""
        u = torch.rand(count, generator=generator) * (hi - lo) + lo
        return (u * self.num_train_timesteps).clamp(0, self.num_train_timesteps - 1).long()

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, ids: torch.Tensor, frame_dim: int = 1) -> torch.Tensor:
        """(1 - sigma) x0 + sigma noise, sigma per frame along ``frame_dim``."""
        shape = [1] * x0.dim()
        shape[frame_dim] = ids.numel()
        sigma = self.sigmas[ids].to(x0.device, x0.dtype).view(shape)
        return (1 - sigma) * x0 + sigma * noise

    def timestep_of(self, ids: torch.Tensor) -> torch.Tensor:
        return self.timesteps[ids]

    def weight_of(self, ids: torch.Tensor) -> torch.Tensor:
        return self.weights[ids]


def velocity_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Flow-matching velocity v = noise - x0 (both heads predict it)."""
    return noise - x0


def frame_weighted_mse(pred: torch.Tensor, target: torch.Tensor, frame_weights: torch.Tensor,
                       mask: torch.Tensor | None = None) -> torch.Tensor:
    """Reference per-frame loss: for each latent frame f (dim 1 of [C, F, ...]), w_f * mean of the squared
    error over the frame's (masked) elements; then the mean over frames that have any element in the mask."""
    err = (pred.float() - target.float()) ** 2
    if mask is None:
        mask = torch.ones_like(err, dtype=torch.bool)
    m = mask.to(err.device, err.dtype).expand_as(err)
    frames = err.shape[1]
    per_frame_sum = (err * m).transpose(0, 1).reshape(frames, -1).sum(1)
    per_frame_count = m.transpose(0, 1).reshape(frames, -1).sum(1)
    valid = per_frame_count > 0
    if not bool(valid.any()):
        return err.sum() * 0.0
    per_frame = per_frame_sum[valid] / per_frame_count[valid]
    return (per_frame * frame_weights.to(err.device, err.dtype)[valid]).mean()
