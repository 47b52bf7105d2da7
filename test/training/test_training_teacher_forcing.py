"""Teacher forcing == inference: the training forward under the §2.4 mask reproduces, for every noisy video
and action token, the output the inference path (LingBotVAWorldModel + slab KV cache) computed for the same
inputs - in the synchronous (IDM) flow and in the paper's FDM imagine flow. This is the proof that the mask,
the token layout, the RoPE positions and the per-token timesteps of training are those of inference.

Every transformer call the real world model makes (infer / ground / imagine) is recorded with a forward hook;
the recorded inputs are assembled into ONE training sequence per denoising step and run through
``forward_train``; its outputs must match the recorded outputs to float32 rounding. Negative controls show the
comparison is sensitive: one wrong mask rule breaks it by orders of magnitude more than the tolerance.
"""
from __future__ import annotations

import pytest
import torch

from lingbot_va_ros.model.transformer import WanTransformer3DModel
from lingbot_va_ros.model.world_model import LingBotVAWorldModel, WorldModelConfig
from lingbot_va_ros.training.mask import ACTION, CLEAN, KNOWN, NOISY, VIDEO, SequenceLayout

TINY = dict(patch_size=[1, 2, 2], num_attention_heads=2, attention_head_dim=12, in_channels=48, out_channels=48,
            action_dim=30, text_dim=16, freq_dim=16, ffn_dim=32, num_layers=3)
USED = [14, 15, 16, 17, 18, 19, 28, 21, 22, 23, 24, 25, 26, 29]
Z, H, W, F, A, K = 48, 4, 6, 2, 4, 3            # latent channels/size, frames per chunk, actions/frame, chunks
TPF = (H // 2) * (W // 2)                        # video tokens per latent frame
STEPS = 3
TOL = dict(atol=5e-6, rtol=1e-6)                  # float32: measured max abs error 4.8e-7 (outputs ~2)
WINDOW = 10_000                                  # no window limit (the cache below never evicts either)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return WanTransformer3DModel(**TINY).eval().requires_grad_(False)


def world_model(model) -> LingBotVAWorldModel:
    q01 = [0.0] * 30
    q99 = [0.0] * 30
    for ch in USED:
        q01[ch], q99[ch] = -0.5, 0.7
    cfg = WorldModelConfig(attn_window=64, frame_chunk_size=F, action_per_frame=A, latent_height=H, latent_width=W,
                           num_inference_steps=STEPS, action_num_inference_steps=STEPS, video_exec_step=-1,
                           snr_shift=5.0, action_snr_shift=1.0, guidance_scale=1.0, action_guidance_scale=1.0,
                           used_action_channel_ids=USED, q01=q01, q99=q99)
    return LingBotVAWorldModel(model, cfg)


class Recorder:
    """Every transformer call: (stage, x, timesteps, action_mode, frame_start, update, output)."""

    def __init__(self, model, wm):
        self.calls = []
        self.handle = model.register_forward_hook(self._hook, with_kwargs=True)
        self.wm = wm

    def _hook(self, module, args, kwargs, output):
        self.calls.append(dict(stage=self.wm.call_log[-1], x=args[0].clone(), t=args[1].clone(),
                               action=kwargs["action_mode"], fs=kwargs["frame_start"], update=kwargs["update_cache"],
                               out=None if output is None else output.clone()))

    def stage(self, name: str, fs: int) -> list[dict]:
        return [c for c in self.calls if c["stage"] == name and c["fs"] == fs]

    def close(self):
        self.handle.remove()


def _inputs(seed=1):
    g = torch.Generator().manual_seed(seed)
    return dict(text=torch.randn(1, 5, 16, generator=g), init=torch.randn(Z, 1, H, W, generator=g), g=g)


def cat_frames(calls: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    """Chunk calls in frame order -> one segment input (x concatenated along frames, per-frame timesteps)."""
    return torch.cat([c["x"] for c in calls], 2), torch.cat([c["t"].reshape(-1) for c in calls])


def idm_layout(rule_overrides=None) -> SequenceLayout:
    layout = SequenceLayout()
    layout.add(VIDEO, NOISY, 0, K * F, TPF, F)
    layout.add(VIDEO, CLEAN, 0, K * F, TPF, F)
    layout.add(ACTION, NOISY, 0, K * F, A, F)
    layout.add(ACTION, CLEAN, 0, K * F, A, F)
    return layout


def fdm_layout() -> SequenceLayout:
    layout = SequenceLayout()
    layout.add(VIDEO, NOISY, 0, K * F, TPF, F)
    layout.add(VIDEO, CLEAN, 0, K * F, TPF, F)
    layout.add(ACTION, CLEAN, 0, K * F, A, F)
    layout.add(ACTION, KNOWN, 0, K * F, A, F)
    return layout


@pytest.fixture(scope="module")
def sync_episode(model):
    """Synchronous flow: infer chunk c, ground it with its own predicted video (so the committed clean video
    the action loop saw is the one later chunks see) and its actions; K chunks."""
    wm = world_model(model)
    x = _inputs()
    rec = Recorder(model, wm)
    wm.reset(x["text"][0])
    for c in range(K):
        r = wm.infer(x["init"] if c == 0 else None, generator=x["g"])
        obs = r.latents[:, 1:] if c == 0 else r.latents
        wm.ground(obs, r.actions)
    rec.close()
    return rec, x


def test_idm_training_forward_equals_cached_inference_for_every_denoising_step(model, sync_episode):
    rec, x = sync_episode
    ground_v = [rec.stage("ground.video", c * F)[0] for c in range(K)]
    ground_a = [rec.stage("ground.action", c * F)[0] for c in range(K)]
    # the commit the action loop saw == the ground truth later chunks see (same latents, t = 0)
    for c in range(K):
        commit = rec.stage("infer.video_commit", c * F)[0]
        assert torch.equal(commit["x"], ground_v[c]["x"]) and torch.equal(commit["t"], ground_v[c]["t"])
    clean_v, clean_vt = cat_frames(ground_v)
    clean_a, clean_at = cat_frames(ground_a)
    mask = idm_layout().dense(WINDOW)
    worst = 0.0
    for step in range(STEPS):
        video_steps = [rec.stage("infer.video", c * F)[step] for c in range(K)]
        action_steps = [rec.stage("infer.action", c * F)[step] for c in range(K)]
        noisy_v, noisy_vt = cat_frames(video_steps)
        noisy_a, noisy_at = cat_frames(action_steps)
        segments = [(noisy_v, noisy_vt, False, 0), (clean_v, clean_vt, False, 0),
                    (noisy_a, noisy_at, True, 0), (clean_a, clean_at, True, 0)]
        out_v, _, out_a, _ = model.forward_train(segments, x["text"], mask, outputs=[True, False, True, False])
        for c in range(K):
            fr = slice(c * F, (c + 1) * F)
            torch.testing.assert_close(out_v[:, :, fr], video_steps[c]["out"], **TOL)
            torch.testing.assert_close(out_a[:, :, fr], action_steps[c]["out"], **TOL)
            worst = max(worst, float((out_v[:, :, fr] - video_steps[c]["out"]).abs().max()),
                        float((out_a[:, :, fr] - action_steps[c]["out"]).abs().max()))
    assert worst < 5e-6, worst


def test_idm_negative_controls_break_the_equivalence(model, sync_episode):
    """A noisy video chunk that may see its own chunk's clean video (the classic leak), or noisy actions that
    may not see it (no inverse dynamics), must change the outputs far beyond the tolerance."""
    rec, x = sync_episode
    clean_v, clean_vt = cat_frames([rec.stage("ground.video", c * F)[0] for c in range(K)])
    clean_a, clean_at = cat_frames([rec.stage("ground.action", c * F)[0] for c in range(K)])
    video_steps = [rec.stage("infer.video", c * F)[0] for c in range(K)]
    action_steps = [rec.stage("infer.action", c * F)[0] for c in range(K)]
    noisy_v, noisy_vt = cat_frames(video_steps)
    noisy_a, noisy_at = cat_frames(action_steps)
    segments = [(noisy_v, noisy_vt, False, 0), (clean_v, clean_vt, False, 0),
                (noisy_a, noisy_at, True, 0), (clean_a, clean_at, True, 0)]
    layout = idm_layout()
    s, f, r = layout.ids()
    good = layout.dense(WINDOW)
    q_noisy, k_clean = (r == NOISY)[:, None], (r == CLEAN)[None, :]
    leak = good | (q_noisy & k_clean & (f[:, None] == f[None, :]) & (f[:, None] % 2 == 0))
    no_idm = good & ~(q_noisy & k_clean & (f[:, None] % 2 == 1) & (f[None, :] == f[:, None] - 1))
    expected_v = torch.cat([c["out"] for c in video_steps], 2)
    expected_a = torch.cat([c["out"] for c in action_steps], 2)
    out_v, _, out_a, _ = model.forward_train(segments, x["text"], leak)
    assert float((out_v - expected_v).abs().max()) > 1e-2
    out_v, _, out_a, _ = model.forward_train(segments, x["text"], no_idm)
    assert float((out_a - expected_a).abs().max()) > 1e-2
    torch.testing.assert_close(out_v, expected_v, **TOL)   # the video part is untouched by that rule


@pytest.fixture(scope="module")
def fdm_episode(model):
    """The paper's async flow (Alg. 2): infer(0); imagine(0) with its actions; infer(1); ground(0);
    imagine(1); infer(2); ground(1); imagine(2). Each imagine(c) denoises chunk c's video with chunk c's
    executing actions in the cache as known clean tokens."""
    wm = world_model(model)
    x = _inputs(seed=2)
    rec = Recorder(model, wm)
    wm.reset(x["text"][0])
    results = [wm.infer(x["init"], generator=x["g"])]
    for c in range(K):
        wm.imagine(results[c].actions, generator=x["g"])
        if c + 1 < K:
            results.append(wm.infer(generator=x["g"]))
        if c + 1 < K:
            obs = results[c].latents[:, 1:] if c == 0 else results[c].latents
            wm.ground(obs, results[c].actions)
    rec.close()
    return rec, x


def test_fdm_training_forward_equals_world_model_imagine(model, fdm_episode):
    rec, x = fdm_episode
    known = [rec.stage("imagine.action_known", c * F)[0] for c in range(K)]
    ground_v = [rec.stage("ground.video", c * F)[0] for c in range(K - 1)]
    ground_a = [rec.stage("ground.action", c * F)[0] for c in range(K - 1)]
    for c in range(K - 1):   # the grounded (executed) actions are the ones imagined with
        assert torch.equal(known[c]["x"], ground_a[c]["x"])
    # chunk K-1's clean copies are never seen by any noisy video token: fill them with its known actions
    # and the imagined commit (any values give the same outputs)
    last_commit = rec.stage("imagine.video_commit", (K - 1) * F)[0]
    clean_v, clean_vt = cat_frames(ground_v + [last_commit])
    clean_a, clean_at = cat_frames(ground_a + [known[K - 1]])
    known_a, known_at = cat_frames(known)
    assert torch.all(known_at == 0)
    mask = fdm_layout().dense(WINDOW)
    for step in range(STEPS):
        video_steps = [rec.stage("imagine.video", c * F)[step] for c in range(K)]
        noisy_v, noisy_vt = cat_frames(video_steps)
        segments = [(noisy_v, noisy_vt, False, 0), (clean_v, clean_vt, False, 0),
                    (clean_a, clean_at, True, 0), (known_a, known_at, True, 0)]
        out_v = model.forward_train(segments, x["text"], mask, outputs=[True, False, False, False])[0]
        for c in range(K):
            fr = slice(c * F, (c + 1) * F)
            torch.testing.assert_close(out_v[:, :, fr], video_steps[c]["out"], **TOL)
    # negative control: the IDM rules (no KNOWN tokens visible) do not reproduce imagine
    idm_like = mask & ~((fdm_layout().ids()[2] == KNOWN)[None, :])
    out_v = model.forward_train(segments, x["text"], idm_like, outputs=[True, False, False, False])[0]
    expected = torch.cat([c["out"] for c in video_steps], 2)
    assert float((out_v - expected).abs().max()) > 1e-2


def test_flex_block_mask_gives_the_dense_mask_result(model, sync_episode):
    """The CUDA path (flex attention with a BlockMask from the same predicate) equals the dense SDPA path;
    run here eagerly on the CPU, forward only (CPU flex has no backward)."""
    rec, x = sync_episode
    clean_v, clean_vt = cat_frames([rec.stage("ground.video", c * F)[0] for c in range(K)])
    clean_a, clean_at = cat_frames([rec.stage("ground.action", c * F)[0] for c in range(K)])
    noisy_v, noisy_vt = cat_frames([rec.stage("infer.video", c * F)[1] for c in range(K)])
    noisy_a, noisy_at = cat_frames([rec.stage("infer.action", c * F)[1] for c in range(K)])
    segments = [(noisy_v, noisy_vt, False, 0), (clean_v, clean_vt, False, 0),
                (noisy_a, noisy_at, True, 0), (clean_a, clean_at, True, 0)]
    layout = idm_layout()
    for window in (WINDOW, 3):
        dense = model.forward_train(segments, x["text"], layout.dense(window))
        flex = model.forward_train(segments, x["text"], layout.flex_attention(window, "cpu", compile_kernel=False))
        for d, fl in zip(dense, flex):
            torch.testing.assert_close(fl, d, atol=1e-5, rtol=1e-5)
