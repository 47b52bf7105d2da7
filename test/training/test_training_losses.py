"""Loss pieces: timestep grid and weights, per-frame weighted MSE with masks, noisy-history ranges, chunk /
window / FDM / text-dropout sampling, and the structure of the built IDM and FDM sequences."""
from __future__ import annotations

import math

import pytest
import torch

from lingbot_va_ros.model.scheduler import FlowMatchScheduler
from lingbot_va_ros.training.config import TrainingConfig
from lingbot_va_ros.training.flow_matching import TrainingNoise, frame_weighted_mse
from lingbot_va_ros.training.mask import ACTION, CLEAN, KNOWN, NOISY, VIDEO
from lingbot_va_ros.training.sequence import (
    TrainingSample,
    build_sequence,
    draw_sample,
    sample_generator,
    sequence_loss,
)

Z, F, H, W, A = 48, 5, 4, 6, 8
USED = [14, 15, 16, 28]


def make_sample(seed=0) -> TrainingSample:
    g = torch.Generator().manual_seed(seed)
    actions = torch.zeros(30, F, A, 1)
    actions[USED, 1:] = torch.rand(len(USED), F - 1, A, 1, generator=g) * 2 - 1
    mask = torch.zeros(30, F, A, 1, dtype=torch.bool)
    mask[USED] = True
    return TrainingSample(latents=torch.randn(Z, F, H, W, generator=g), actions=actions, action_mask=mask,
                          text=torch.randn(7, 16, generator=g), empty_text=torch.zeros(7, 16), episode_index=3)


def test_training_grid_weights_and_ranges():
    vn = TrainingNoise(5.0)
    ref = FlowMatchScheduler(5.0)
    ref.set_timesteps(1000)
    assert torch.equal(vn.sigmas, ref.sigmas) and vn.sigmas[0] == 1.0
    w = vn.weights
    assert math.isclose(float(w.mean()), 1.0, rel_tol=1e-5) and float(w.min()) == 0.0
    t_peak = float(vn.timesteps[int(w.argmax())])
    assert abs(t_peak - 500) < 5                               # bell curve centred on t = 500
    expected = torch.exp(-2 * ((vn.timesteps - 500) / 1000) ** 2)
    expected = (expected - expected.min()) * (1000 / (expected - expected.min()).sum())
    torch.testing.assert_close(w, expected)
    g = torch.Generator().manual_seed(0)
    ids = vn.sample_ids(20000, g)
    assert int(ids.min()) == 0 and int(ids.max()) == 999
    hist = vn.sample_ids(20000, g, 0.5, 1.0)                    # noisy-history ids: upper half
    assert int(hist.min()) >= 500 and int(hist.max()) == 999
    sig = vn.sigmas[hist]
    # s_aug in [0.5, 1): base sigma in (0, 0.5], shifted by 5 -> (0.005, 0.834]
    assert float(sig.min()) > 0.004 and float(sig.max()) <= 5 * 0.5 / (1 + 4 * 0.5) + 1e-6
    x0, noise = torch.randn(3, 4, 2), torch.randn(3, 4, 2)
    ids4 = torch.tensor([0, 999, 500, 250])
    out = vn.add_noise(x0, noise, ids4)
    for f, i in enumerate(ids4):
        s = vn.sigmas[i]
        torch.testing.assert_close(out[:, f], (1 - s) * x0[:, f] + s * noise[:, f])


def test_frame_weighted_mse_by_hand():
    pred = torch.randn(3, 4, 2, 2)
    target = torch.randn(3, 4, 2, 2)
    weights = torch.tensor([0.5, 2.0, 1.0, 3.0])
    mask = torch.ones(3, 4, 2, 2, dtype=torch.bool)
    mask[1:] = False           # only channel 0 counts
    mask[:, 3] = False         # frame 3 excluded entirely
    loss = frame_weighted_mse(pred, target, weights, mask)
    per_frame = [float(((pred[0, f] - target[0, f]) ** 2).mean()) * float(weights[f]) for f in range(3)]
    assert math.isclose(float(loss), sum(per_frame) / 3, rel_tol=1e-5)
    assert float(frame_weighted_mse(pred, pred, weights)) == 0.0


def test_draws_are_deterministic_per_sample_index_and_follow_the_configured_distributions():
    cfg = TrainingConfig(fdm_prob=0.5)
    vn, an = TrainingNoise(5.0), TrainingNoise(1.0)
    s = make_sample()
    d1 = draw_sample(s, cfg, vn, an, sample_generator(7, 123))
    d2 = draw_sample(s, cfg, vn, an, sample_generator(7, 123))
    d3 = draw_sample(s, cfg, vn, an, sample_generator(7, 124))
    assert torch.equal(d1.video_noise, d2.video_noise) and d1.chunk_size == d2.chunk_size
    assert not torch.equal(d1.video_noise, d3.video_noise)
    draws = [draw_sample(s, cfg, vn, an, sample_generator(0, n)) for n in range(2000)]
    assert {d.chunk_size for d in draws} == {1, 2, 3, 4}
    windows = [d.window for d in draws]
    assert min(windows) == 4 and max(windows) == 64
    n = len(draws)
    for attr, p in (("fdm", 0.5), ("drop_text", 0.1), ("noisy_history", 0.5)):
        frac = sum(getattr(d, attr) for d in draws) / n
        assert abs(frac - p) < 4 * math.sqrt(p * (1 - p) / n), (attr, frac)
    assert all(int(d.history_ids.min()) >= 500 for d in draws)
    off = TrainingConfig(fdm_prob=0.0, cfg_prob=0.0, noisy_history_prob=0.0, chunk_size_range=(2, 2))
    draws = [draw_sample(s, off, vn, an, sample_generator(0, n)) for n in range(200)]
    assert not any(d.fdm or d.drop_text or d.noisy_history for d in draws) and {d.chunk_size for d in draws} == {2}


def _draw(cfg, **force):
    s = make_sample()
    d = draw_sample(s, cfg, TrainingNoise(5.0), TrainingNoise(1.0), sample_generator(0, 5))
    for k, v in force.items():
        setattr(d, k, v)
    return s, d


def test_idm_sequence_structure_noise_and_targets():
    cfg = TrainingConfig()
    vn, an = TrainingNoise(5.0), TrainingNoise(1.0)
    s, d = _draw(cfg, fdm=False, noisy_history=False, drop_text=False)
    seq = build_sequence(s, d, cfg, vn, an, tokens_per_frame=(H // 2) * (W // 2), device="cpu")
    (nv, tv, am0, fs0), (cv, tc, am1, _), (na, ta, am2, _), (ca, tca, am3, _) = seq.segments
    assert (am0, am1, am2, am3) == (False, False, True, True) and seq.outputs == [True, False, True, False]
    sig = vn.sigmas[d.video_ids].view(1, F, 1, 1)
    torch.testing.assert_close(nv[0], (1 - sig) * s.latents + sig * d.video_noise)
    torch.testing.assert_close(tv, vn.timesteps[d.video_ids])
    assert torch.equal(cv[0], s.latents) and torch.all(tc == 0) and torch.all(tca == 0)
    unused = [c for c in range(30) if c not in USED]
    assert torch.all(na[0, unused] == 0) and torch.all(seq.action_target[0, unused] == 0)
    torch.testing.assert_close(seq.video_target[0], d.video_noise - s.latents)
    _, f, r = seq.layout.ids()
    roles = [int(r[a]) for a, _ in seq.layout.spans]
    mods = [int(f[a]) % 2 for a, _ in seq.layout.spans]
    assert roles == [NOISY, CLEAN, NOISY, CLEAN] and mods == [VIDEO, VIDEO, ACTION, ACTION]
    assert torch.equal(seq.text[0], s.text)
    # loss = latent + lambda * action, each a weighted per-frame MSE
    outs = [torch.zeros_like(nv), None, torch.zeros_like(na), None]
    total, parts = sequence_loss(seq, outs, TrainingConfig(action_loss_weight=0.5))
    assert math.isclose(parts["loss"], parts["latent_loss"] + 0.5 * parts["action_loss"], rel_tol=1e-6)
    assert math.isclose(parts["latent_loss"], float(frame_weighted_mse(outs[0][0], seq.video_target[0],
                                                                        vn.weights[d.video_ids])), rel_tol=1e-6)


def test_noisy_history_and_text_dropout():
    cfg = TrainingConfig()
    vn, an = TrainingNoise(5.0), TrainingNoise(1.0)
    s, d = _draw(cfg, fdm=False, noisy_history=True, drop_text=True)
    seq = build_sequence(s, d, cfg, vn, an, 6, "cpu")
    cv, tc = seq.segments[1][0][0], seq.segments[1][1]
    sig = vn.sigmas[d.history_ids].view(1, F, 1, 1)
    torch.testing.assert_close(cv, (1 - sig) * s.latents + sig * d.history_noise)
    torch.testing.assert_close(tc, vn.timesteps[d.history_ids])
    assert float(tc.min()) > 0 and torch.equal(seq.text[0], s.empty_text)


def test_fdm_sequence_has_known_actions_and_only_the_video_loss():
    cfg = TrainingConfig(fdm_loss_weight=2.0)
    vn, an = TrainingNoise(5.0), TrainingNoise(1.0)
    s, d = _draw(cfg, fdm=True)
    seq = build_sequence(s, d, cfg, vn, an, 6, "cpu")
    _, f, r = seq.layout.ids()
    roles = [int(r[a]) for a, _ in seq.layout.spans]
    assert roles == [NOISY, CLEAN, CLEAN, KNOWN] and seq.outputs == [True, False, True, False]
    assert torch.equal(seq.segments[2][0][0], s.actions) and torch.equal(seq.segments[3][0][0], s.actions)
    assert torch.all(seq.segments[3][1] == 0) and seq.action_target is None
    outs = [torch.zeros_like(seq.segments[0][0]), None, torch.ones_like(seq.segments[2][0]), None]
    total, parts = sequence_loss(seq, outs, cfg)      # the action head output only enters with weight 0
    assert set(parts) == {"loss", "fdm_loss"} and math.isclose(parts["loss"], 2.0 * parts["fdm_loss"], rel_tol=1e-6)


def test_pin_first_frame_matches_the_inference_first_chunk_and_leaves_it_out_of_the_loss():
    cfg = TrainingConfig(pin_first_frame=True)
    vn, an = TrainingNoise(5.0), TrainingNoise(1.0)
    s, d = _draw(cfg, fdm=False, noisy_history=False)
    seq = build_sequence(s, d, cfg, vn, an, 6, "cpu")
    nv, tv = seq.segments[0][0][0], seq.segments[0][1]
    na, ta = seq.segments[2][0][0], seq.segments[2][1]
    assert torch.equal(nv[:, 0], s.latents[:, 0]) and tv[0] == 0 and torch.all(na[:, 0] == 0) and ta[0] == 0
    assert not bool(seq.video_frame_mask[0]) and not bool(seq.action_loss_mask[:, :, 0].any())
    outs = [torch.zeros_like(seq.segments[0][0]), None, torch.zeros_like(seq.segments[2][0]), None]
    base = sequence_loss(seq, outs, cfg)[1]
    outs[0][:, :, 0] += 100.0                    # a huge error on the pinned frame changes nothing
    outs[2][:, :, 0] += 100.0
    assert sequence_loss(seq, outs, cfg)[1] == base


def test_config_rejects_bad_ranges():
    for bad in ({"chunk_size_range": (3, 1)}, {"window_range": (0, 4)}, {"noisy_history_range": (0.5, 1.5)},
                {"betas": (0.9, 1.0)}, {"fdm_prob": 1.5}):
        with pytest.raises(ValueError):
            TrainingConfig(**bad)


def test_activation_checkpointing_gives_the_same_loss_and_gradients():
    from lingbot_va_ros.model.transformer import WanTransformer3DModel
    from lingbot_va_ros.training.sequence import forward_loss

    torch.manual_seed(0)
    model = WanTransformer3DModel(patch_size=[1, 2, 2], num_attention_heads=2, attention_head_dim=12, in_channels=48,
                                  out_channels=48, action_dim=30, text_dim=16, freq_dim=16, ffn_dim=32,
                                  num_layers=2).train()
    grads = []
    for ckpt in (False, True):
        cfg = TrainingConfig(activation_checkpointing=ckpt)
        s, d = _draw(cfg, fdm=False)
        seq = build_sequence(s, d, cfg, TrainingNoise(5.0), TrainingNoise(1.0), (H // 2) * (W // 2), "cpu")
        model.zero_grad(set_to_none=True)
        loss, _ = forward_loss(model, seq, cfg, "dense", "cpu")
        loss.backward()
        grads.append((float(loss), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    assert grads[0][0] == grads[1][0]
    assert grads[0][1].keys() == grads[1][1].keys()
    for n, g in grads[0][1].items():
        torch.testing.assert_close(grads[1][1][n], g, atol=1e-6, rtol=1e-5)
