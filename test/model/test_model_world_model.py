"""LingBotVAWorldModel: stage sequencing, frame bookkeeping in sync / FDM-async / naive-async modes,
keep_prediction, config parsing and action (de)normalisation."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lingbot_va_ros.model.transformer import WanTransformer3DModel
from lingbot_va_ros.model.world_model import LingBotVAWorldModel, WorldModelConfig

TINY = dict(patch_size=[1, 2, 2], num_attention_heads=2, attention_head_dim=12, in_channels=48, out_channels=48,
            action_dim=30, text_dim=16, freq_dim=16, ffn_dim=32, num_layers=2)
ROBOTWIN_IDS = [0, 1, 2, 3, 4, 5, 6, 28, 7, 8, 9, 10, 11, 12, 13, 29]
C, H, W, F, A = 48, 4, 6, 2, 3
VT, AT = F * (H // 2) * (W // 2), F * A  # tokens per chunk


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return WanTransformer3DModel(**TINY).eval().requires_grad_(False)


def make_cfg(**over) -> WorldModelConfig:
    base = dict(attn_window=40, frame_chunk_size=F, action_per_frame=A, latent_height=H, latent_width=W,
                num_inference_steps=3, action_num_inference_steps=2, video_exec_step=-1, snr_shift=5.0,
                action_snr_shift=1.0, guidance_scale=4.0, action_guidance_scale=1.0,
                used_action_channel_ids=ROBOTWIN_IDS, q01=[-0.3] * 14 + [0.0] * 16,
                q99=[0.4] * 14 + [0.0] * 14 + [1.0, 1.0])
    base.update(over)
    return WorldModelConfig(**base)


class Inputs:
    """Deterministic inputs by name, so two flows can be fed identical tensors."""

    def __init__(self, seed=0):
        self.g = torch.Generator().manual_seed(seed)
        self.cache = {}

    def __call__(self, name, *shape):
        if name not in self.cache:
            self.cache[name] = torch.randn(*shape, generator=self.g)
        return self.cache[name]

    def prompt(self):
        return self("prompt", 5, 16), self("neg", 5, 16)

    def vnoise(self, k):
        return self(f"vn{k}", C, F, H, W)

    def anoise(self, k):
        return self(f"an{k}", 30, F, A, 1)

    def obs(self, k):
        return self(f"obs{k}", C, F - 1 if k == 0 else F, H, W)

    def init(self):
        return self("init", C, 1, H, W)


def test_sync_stage_sequence_and_positions(model):
    wm = LingBotVAWorldModel(model, make_cfg())
    x = Inputs()
    wm.reset(*x.prompt())
    r = wm.infer(x.init(), x.vnoise(0), x.anoise(0))
    assert wm.call_log == ["reset"] + ["infer.video"] * 3 + ["infer.video_commit"] + ["infer.action"] * 2 + ["infer.action_commit"]
    assert r.frame_start == 0 and r.latents.shape == (C, F, H, W) and r.actions.shape == (16, F, A)
    assert r.actions_normalized.shape == (30, F, A, 1) and r.actions.dtype == torch.float32
    # first chunk: frame 0 pinned to the observation, its actions are the normalised-zero placeholder
    assert torch.equal(r.latents[:, :1], x.init())
    assert torch.all(r.actions_normalized[:, 0] == 0)
    assert torch.all(r.actions_normalized[16:28] == 0)  # unused channels zeroed
    assert wm.cache.live_is_pred().sum() == VT + AT
    wm.ground(x.obs(0), r.actions)
    assert wm.call_log[-2:] == ["ground.video", "ground.action"]
    assert wm.frame_st_id == F and wm.next_frame == F
    assert wm.cache.live_is_pred().sum() == 0 and wm.cache.num_live == VT + AT
    r1 = wm.infer(None, x.vnoise(1), x.anoise(1))
    assert r1.frame_start == F
    assert wm.cache_fill() == pytest.approx((2 * (VT + AT)) / wm.cfg.cache_capacity)


def test_predictions_never_leak_past_ground(model):
    """Whatever chunk 1's prediction was, after grounding it the next chunk is identical."""
    outs = []
    for noise_seed in (11, 12):
        wm = LingBotVAWorldModel(model, make_cfg(attn_window=4))  # small window: eviction is active
        x = Inputs()
        wm.reset(*x.prompt())
        r0 = wm.infer(x.init(), x.vnoise(0), x.anoise(0))
        wm.ground(x.obs(0), r0.actions)
        g = torch.Generator().manual_seed(noise_seed)
        wm.infer(None, torch.randn(C, F, H, W, generator=g), torch.randn(30, F, A, 1, generator=g))
        wm.ground(x.obs(1), x("exec1", 16, F, A))
        outs.append(wm.infer(None, x.vnoise(2), x.anoise(2)))
    assert torch.equal(outs[0].latents, outs[1].latents)
    assert torch.equal(outs[0].actions_normalized, outs[1].actions_normalized)


def _sync_flow(model, x, chunks):
    wm = LingBotVAWorldModel(model, make_cfg())
    wm.reset(*x.prompt())
    r = wm.infer(x.init(), x.vnoise(0), x.anoise(0))
    for k in range(chunks):
        wm.ground(x.obs(k), x(f"exec{k}", 16, F, A))
        r = wm.infer(None, x.vnoise(100 + k), x.anoise(100 + k))
    return wm, r


def test_fdm_async_positions_match_sync(model):
    """ground(n-1) -> imagine(n) -> infer(n+1): frame ids as in sync mode, imagined entries are predicted
    and dropped by the next ground, and grounding writes the same history as sync mode."""
    x = Inputs()
    wm = LingBotVAWorldModel(model, make_cfg())
    wm.reset(*x.prompt())
    r0 = wm.infer(x.init(), x.vnoise(0), x.anoise(0))
    assert r0.frame_start == 0
    imag = wm.imagine(x("exec0", 16, F, A), video_noise=x("im0", C, F, H, W))
    assert torch.equal(imag[:, :1], x.init())  # first chunk: frame 0 pinned to the observation
    assert wm.call_log[-5:] == ["imagine.action_known", "imagine.video", "imagine.video", "imagine.video", "imagine.video_commit"]
    frames, pred = wm.cache.live_frames(), wm.cache.live_is_pred()
    assert bool(pred.all()) and frames.numel() == VT + AT and float(frames.max()) < F  # stale forecast replaced
    assert wm.frame_st_id == 0 and wm.next_frame == F
    r1 = wm.infer(None, x.vnoise(1), x.anoise(1))
    assert r1.frame_start == F
    for k in range(2):
        wm.ground(x.obs(k), x(f"exec{k}", 16, F, A))
        assert wm.frame_st_id == (k + 1) * F and wm.next_frame == wm.frame_st_id
        assert not bool(wm.cache.live_is_pred().any())
        if k == 0:
            wm.imagine(x("exec1", 16, F, A), video_noise=x("im1", C, F, H, W))
            assert wm.next_frame == 2 * F
            assert wm.infer(None, x.vnoise(2), x.anoise(2)).frame_start == 2 * F
    # same grounded history as the sync loop -> the next prediction is identical
    r_async = wm.infer(None, x.vnoise(101), x.anoise(101))
    wm_sync, r_sync = _sync_flow(model, x, 2)
    assert r_async.frame_start == r_sync.frame_start == 2 * F
    assert torch.equal(torch.sort(wm.cache.live_frames()).values, torch.sort(wm_sync.cache.live_frames()).values)
    torch.testing.assert_close(r_async.latents, r_sync.latents, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(r_async.actions, r_sync.actions, atol=1e-6, rtol=1e-6)


def test_keep_prediction_noop_after_infer_and_rewrite_after_ground(model):
    x = Inputs()
    wm = LingBotVAWorldModel(model, make_cfg())
    wm.reset(*x.prompt())
    r0 = wm.infer(x.init(), x.vnoise(0), x.anoise(0))
    n = len(wm.call_log)
    wm.keep_prediction(r0)
    assert len(wm.call_log) == n and wm.next_frame == F  # entries already there
    r1 = wm.infer(None, x.vnoise(1), x.anoise(1))
    assert r1.frame_start == F
    wm.ground(x.obs(0), r0.actions)  # drops chunk 1's predictions too
    wm.keep_prediction(r1)
    assert wm.call_log[-2:] == ["keep.video", "keep.action"] and wm.next_frame == 2 * F
    pred_frames = wm.cache.live_frames()[wm.cache.live_is_pred()]
    assert pred_frames.numel() == VT + AT and bool(((pred_frames >= F) & (pred_frames < 2 * F)).all())
    assert wm.infer(None, x.vnoise(2), x.anoise(2)).frame_start == 2 * F


def test_open_loop_with_skipped_action_commit_equals_default(model):
    """i2va-style infer -> keep -> infer: with the commit skipped, keep_prediction writes the real action
    entries (the reserved ones are phantoms) and the next chunk equals the default path."""
    results = []
    for skip in (False, True):
        x = Inputs()
        wm = LingBotVAWorldModel(model, make_cfg(), skip_action_commit=skip)
        wm.reset(*x.prompt())
        r = wm.infer(x.init(), x.vnoise(0), x.anoise(0))
        wm.keep_prediction(r)
        assert ("keep.action" in wm.call_log) == skip
        results.append(wm.infer(None, x.vnoise(1), x.anoise(1)))
    torch.testing.assert_close(results[0].latents, results[1].latents, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(results[0].actions_normalized, results[1].actions_normalized, atol=1e-6, rtol=1e-6)


def test_partial_denoising_commits_input_latents_at_sigma_k_minus_1(model):
    wm = LingBotVAWorldModel(model, make_cfg(num_inference_steps=4, video_exec_step=2))
    x = Inputs()
    wm.reset(*x.prompt())
    r = wm.infer(x.init(), x.vnoise(0), x.anoise(0))
    assert wm.call_log.count("infer.video") == 1 and wm.call_log.count("infer.video_commit") == 1
    t1 = wm.video_scheduler.loop_timesteps(4)[1]
    assert torch.equal(r.commit_timesteps, torch.tensor([0.0, float(t1)]))
    assert not torch.equal(r.commit_latents[:, 1:], r.latents[:, 1:])  # returned latents took one more step


def test_server_config_parsing_robotwin_geometry():
    cfg = dict(attn_window=72, frame_chunk_size=2, env_type="robotwin_tshape", height=256, width=320,
               obs_cam_keys=["h", "l", "r"], action_per_frame=16, num_inference_steps=25, video_exec_step=-1,
               action_num_inference_steps=50, snr_shift=5.0, action_snr_shift=1.0, guidance_scale=5.0,
               action_guidance_scale=1.0, used_action_channel_ids=ROBOTWIN_IDS, action_norm_method="quantiles",
               norm_stat={"q01": [0.0] * 30, "q99": [1.0] * 30})
    wc = WorldModelConfig.from_server_config(cfg)
    assert (wc.latent_height, wc.latent_width) == (24, 20)
    assert wc.video_tokens_per_chunk == 240 and wc.action_tokens_per_chunk == 32
    assert wc.cache_capacity == 9792 and wc.cfg_batch == 2
    inv = wc.inverse_channel_ids()
    assert inv[:7] == list(range(7)) and inv[7:14] == list(range(8, 15)) and inv[28] == 7 and inv[29] == 15
    assert inv[14:28] == [16] * 14
    cfg2 = dict(cfg, env_type="none", height=128, width=128, obs_cam_keys=["a", "b"])
    assert (WorldModelConfig.from_server_config(cfg2).latent_height, WorldModelConfig.from_server_config(cfg2).latent_width) == (8, 16)
    with pytest.raises(NotImplementedError):
        WorldModelConfig.from_server_config(dict(cfg, action_norm_method="minmax"))


def test_action_normalisation_round_trip_without_clipping(model):
    wm = LingBotVAWorldModel(model, make_cfg())
    a = np.random.default_rng(0).uniform(-2, 2, size=(16, F, A)).astype(np.float32)  # far outside q01..q99
    n = wm.normalize_actions(a)
    assert n.shape == (30, F, A, 1)
    assert float(n.abs().max()) > 1.5  # no clipping at inference
    # channel 0: (a - q01) / (q99 - q01 + 1e-6) * 2 - 1
    torch.testing.assert_close(n[0, ..., 0], (torch.from_numpy(a[0]) + 0.3) / (0.7 + 1e-6) * 2 - 1)
    n[~wm.action_mask.cpu()] = 0
    torch.testing.assert_close(wm.denormalize_actions(n), torch.from_numpy(a), atol=1e-5, rtol=1e-5)


def test_errors(model):
    wm = LingBotVAWorldModel(model, make_cfg())
    x = Inputs()
    with pytest.raises(RuntimeError, match="reset"):
        wm.infer(x.init())
    wm.reset(*x.prompt())
    with pytest.raises(ValueError, match="init_latent"):
        wm.infer(None)
    with pytest.raises(ValueError, match="init_latent"):
        wm.ground(x.obs(0), x("exec0", 16, F, A))
    with pytest.raises(ValueError, match="C_used"):
        wm.normalize_actions(np.zeros((7, F, A), np.float32))
    with pytest.raises(ValueError, match="negative"):
        wm.reset(x.prompt()[0], None)
