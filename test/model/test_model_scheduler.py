"""Flow-matching grids (spec §4.1), the padded commit pass and video_exec_step truncation (§4.3)."""
from __future__ import annotations

import pytest
import torch

from lingbot_va_ros.model.scheduler import FlowMatchScheduler


def test_video_grid_robotwin_25_steps_shift_5():
    t = FlowMatchScheduler(5.0).set_timesteps(25)
    assert len(t) == 25 and t.dtype == torch.float32
    assert t[0].item() == pytest.approx(1000.0)
    assert [round(v, 1) for v in t[1:3].tolist()] == [991.7, 982.9]
    assert [round(v, 1) for v in t[-3:].tolist()] == [405.4, 303.0, 172.4]
    assert torch.all(t[1:] < t[:-1])


def test_video_grid_5_steps_shift_5():
    t = FlowMatchScheduler(5.0).set_timesteps(5)
    assert [round(v, 1) for v in t.tolist()] == [1000.0, 952.4, 882.4, 769.2, 555.6]


def test_action_grids_shift_1_and_005():
    s = FlowMatchScheduler(1.0)
    s.set_timesteps(50)
    torch.testing.assert_close(s.sigmas, torch.linspace(1, 0, 51)[:-1])
    assert s.sigmas[-1].item() == pytest.approx(0.02)
    s = FlowMatchScheduler(0.05)
    s.set_timesteps(50)
    assert [round(v, 2) for v in s.sigmas[:4].tolist()] == [1.0, 0.71, 0.55, 0.44]
    assert s.sigmas[-1].item() == pytest.approx(0.001, abs=2e-4)


def test_loop_pads_commit_and_truncates_for_partial_denoising():
    s = FlowMatchScheduler(5.0)
    full = s.loop_timesteps(3)
    assert len(full) == 4 and full[-1] == 0
    part = s.loop_timesteps(3, exec_step=2)
    assert torch.equal(part, full[:2])


def test_euler_step_uses_nearest_grid_index_and_zero_after_last():
    s = FlowMatchScheduler(5.0)
    s.set_timesteps(4)
    x, v = torch.ones(3), torch.full((3,), 2.0)
    out = s.step(v, s.timesteps[1] + 0.3, x)
    torch.testing.assert_close(out, x + v * (s.sigmas[2] - s.sigmas[1]))
    # the last step jumps to sigma = 0; t = 0 (the padded commit entry) maps onto the last grid point
    torch.testing.assert_close(s.step(v, s.timesteps[-1], x), x - v * s.sigmas[-1])
    torch.testing.assert_close(s.step(v, torch.tensor(0.0), x), x - v * s.sigmas[-1])


def test_full_denoise_integrates_sigma_one_to_zero():
    """x0 = noise - v exactly when the velocity is constant (v = eps - x0)."""
    s = FlowMatchScheduler(5.0)
    eps, x0 = torch.randn(8), torch.randn(8)
    x = eps.clone()
    for t in s.set_timesteps(6):
        x = s.step(eps - x0, t, x)
    torch.testing.assert_close(x, x0, atol=1e-5, rtol=1e-5)
