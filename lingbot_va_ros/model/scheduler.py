"""Flow-matching Euler scheduler of LingBot-VA (spec §4.1, §4.3), reproducing the reference grids in float32.

sigma_base = linspace(1, 0, N+1)[:-1]; sigma = shift*s / (1 + (shift-1)*s); t = 1000*sigma.
The inference loop appends t = 0: the extra iteration is the cache *commit* pass. ``video_exec_step`` = k
keeps only the first k entries of that padded list (partial denoising): iteration k-1 then commits its
*input* latents at sigma_{k-1} (with that timestep in the adaLN) and still takes its Euler step.
"""
from __future__ import annotations

import torch


class FlowMatchScheduler:
    def __init__(self, shift: float, num_train_timesteps: int = 1000, sigma_min: float = 0.0, sigma_max: float = 1.0):
        self.shift = float(shift)
        self.num_train_timesteps = num_train_timesteps
        self.sigma_min = sigma_min
        self.sigma_max = sigma_max
        self.sigmas = torch.empty(0)
        self.timesteps = torch.empty(0)

    def set_timesteps(self, num_inference_steps: int) -> torch.Tensor:
        # Same float32 op sequence as the reference (extra_one_step=True, denoising_strength=1).
        start = self.sigma_min + (self.sigma_max - self.sigma_min) * 1.0
        s = torch.linspace(start, self.sigma_min, num_inference_steps + 1)[:-1]
        s = self.shift * s / (1 + (self.shift - 1) * s)
        self.sigmas = s
        self.timesteps = s * self.num_train_timesteps
        return self.timesteps

    def loop_timesteps(self, num_inference_steps: int, exec_step: int = -1) -> torch.Tensor:
        """The iterated list: N denoising timesteps + the final t = 0 commit, truncated to ``exec_step``."""
        ts = torch.cat([self.set_timesteps(num_inference_steps), torch.zeros(1)])
        return ts if exec_step == -1 else ts[:exec_step]

    def index_of(self, timestep) -> int:
        t = timestep.cpu() if isinstance(timestep, torch.Tensor) else torch.tensor(float(timestep))
        return int(torch.argmin((self.timesteps - t).abs()))

    def step(self, velocity: torch.Tensor, timestep, sample: torch.Tensor) -> torch.Tensor:
        """Euler: x + v * (sigma_next - sigma), the index being the grid timestep nearest to ``timestep``
        and sigma_next = 0 after the last one (so t = 0 maps onto the last grid point, as in the reference)."""
        i = self.index_of(timestep)
        sigma = self.sigmas[i]
        sigma_next = self.sigmas[i + 1] if i + 1 < len(self.timesteps) else 0
        # float32 difference as in the reference, passed as a Python scalar: no host->device copy (which
        # would synchronise a CUDA stream every step); a float32-exact scalar gives the same product.
        return sample + velocity * float(sigma_next - sigma)
