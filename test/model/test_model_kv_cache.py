"""Slab KV cache == the official gather-based cache, shown against an independent reference written here.

``GatherCache`` restates the reference ``WanAttention`` cache per layer (valid mask, ids, is_pred, smallest-id
eviction with argsort, ``key_pool[:, valid]`` gathers). ``ReferenceServer`` restates the server's
``_infer`` / ``_compute_kv_cache`` loops (in-place first-chunk pinning, padded t = 0 commit, video_exec_step,
CFG batch, quantile normalisation) with its own scheduler; it shares only the transformer math with the code
under test (that math is pinned by the official fixture in test_model_verify.py).
"""
from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lingbot_va_ros.model import verify
from lingbot_va_ros.model.fixture import record_episode
from lingbot_va_ros.model.kv_cache import SlabKVCache
from lingbot_va_ros.model.transformer import WanTransformer3DModel
from lingbot_va_ros.model.world_model import LingBotVAWorldModel, WorldModelConfig

TINY = dict(patch_size=[1, 2, 2], num_attention_heads=2, attention_head_dim=12, in_channels=48, out_channels=48,
            action_dim=30, text_dim=16, freq_dim=16, ffn_dim=32, num_layers=2)
LATENT = [48, 4, 6]  # 2 x 3 = 6 video tokens per latent frame


def make_transformer(seed=0, **over) -> WanTransformer3DModel:
    torch.manual_seed(seed)
    return WanTransformer3DModel(**{**TINY, **over}).eval().requires_grad_(False)


def server_config(**over) -> dict:
    used = [0, 1, 2, 3, 4, 5, 6, 28, 7, 8, 9, 10, 11, 12, 13, 29]
    cfg = dict(attn_window=4, frame_chunk_size=2, env_type="none", height=64, width=48, action_dim=30,
               action_per_frame=3, obs_cam_keys=["cam0", "cam1"], guidance_scale=3.0, action_guidance_scale=1.0,
               num_inference_steps=3, video_exec_step=-1, action_num_inference_steps=3, snr_shift=5.0,
               action_snr_shift=1.0, used_action_channel_ids=used, action_norm_method="quantiles",
               norm_stat={"q01": [-0.3] * 14 + [0.0] * 16, "q99": [0.4] * 14 + [0.0] * 14 + [1.0, 1.0]},
               patch_size=[1, 2, 2])
    cfg.update(over)
    return cfg


# ------------------------------------------------------------------------------ reference: gather cache
class GatherCache:
    """Per-layer pools exactly like the reference: allocate free slots in index order, evict the smallest
    ids (argsort), id = max valid id + 1, gather the valid slots for attention, release if update 0."""

    def __init__(self, num_layers, capacity, batch_size, num_heads, head_dim, *, device="cpu", dtype=torch.float32, slack=None):
        self.capacity = capacity
        self.layers = [dict(k=torch.zeros(batch_size, capacity, num_heads, head_dim, dtype=dtype),
                            v=torch.zeros(batch_size, capacity, num_heads, head_dim, dtype=dtype),
                            id=torch.full((capacity,), -1, dtype=torch.long),
                            mask=torch.zeros(capacity, dtype=torch.bool),
                            is_pred=torch.zeros(capacity, dtype=torch.bool),
                            frame=torch.zeros(capacity)) for _ in range(num_layers)]
        self._pending = None

    def _allocate(self, c, n):
        free = (~c["mask"]).nonzero().squeeze(-1)
        if free.numel() < n:
            used = c["mask"].nonzero().squeeze(-1)
            order = torch.argsort(c["id"][used], stable=True)
            to_free = used[order[: n - free.numel()]]
            c["mask"][to_free] = False
            c["id"][to_free] = -1
            free = (~c["mask"]).nonzero().squeeze(-1)
        assert free.numel() >= n
        return free[:n]

    def _write_meta(self, c, slots, update, frames):
        new_id = c["id"][c["mask"]].max() + 1 if c["mask"].any() else 0
        c["mask"][slots] = True
        c["id"][slots] = new_id
        c["is_pred"][slots] = update == 1
        c["frame"][slots] = frames

    def begin(self, n, update, frames, batch=None):
        self._pending = (n, update, frames.float(), batch)

    def attend(self, layer, q, k, v):
        n, update, frames, b = self._pending
        c = self.layers[layer]
        slots = self._allocate(c, n)
        self._write_meta(c, slots, update, frames)
        b = b or c["k"].shape[0]
        c["k"][:b, slots] = k
        c["v"][:b, slots] = v
        valid = c["mask"].nonzero().squeeze(-1)
        key, value = c["k"][:b, valid], c["v"][:b, valid]  # the per-forward gather the slab avoids
        out = F.scaled_dot_product_attention(q.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2)).transpose(1, 2)
        if update == 0:
            c["mask"][slots] = False
        return out

    def end_forward(self):
        self._pending = None

    def abort(self):
        self._pending = None

    def reserve(self, n, frames):
        for c in self.layers:
            self._write_meta(c, self._allocate(c, n), 1, frames.float())

    def clear(self):
        for c in self.layers:
            c["mask"][:] = False
            c["id"][:] = -1

    def clear_pred(self):
        for c in self.layers:
            c["mask"][c["is_pred"]] = False

    def clear_frames(self, lo, hi=math.inf, pred_only=True):
        for c in self.layers:
            sel = (c["frame"] >= lo) & (c["frame"] < hi)
            if pred_only:
                sel &= c["is_pred"]
            c["mask"][sel] = False

    def fill(self):
        return float(self.layers[0]["mask"].sum()) / self.capacity

    def live_frames(self):
        c = self.layers[0]
        return c["frame"][c["mask"]]

    def live_is_pred(self):
        c = self.layers[0]
        return c["is_pred"][c["mask"]]


# ------------------------------------------------------------------------------ reference: server loop
class RefScheduler:
    def __init__(self, shift):
        self.shift = shift

    def set_timesteps(self, n):
        s = torch.linspace(1.0, 0.0, n + 1)[:-1]
        self.sigmas = self.shift * s / (1 + (self.shift - 1) * s)
        self.timesteps = self.sigmas * 1000
        return self.timesteps

    def step(self, v, t, x):
        i = torch.argmin((self.timesteps - t).abs())
        nxt = self.sigmas[i + 1] if i + 1 < len(self.timesteps) else 0
        return x + v * (nxt - self.sigmas[i])


class ReferenceServer:
    """The official server loop restated (server-mode API: reset / infer / ground, frame_st_id)."""

    def __init__(self, transformer, cfg: dict, latent_shape):
        self.m, self.cfg = transformer, cfg
        self.C, self.H, self.W = latent_shape
        self.sched = RefScheduler(cfg["snr_shift"])
        self.asched = RefScheduler(cfg["action_snr_shift"])

    def reset(self, prompt, negative):
        c = self.cfg
        self.use_cfg = c["guidance_scale"] > 1 or c["action_guidance_scale"] > 1
        self.frame_st_id, self.init_latent = 0, None
        v_tok = c["frame_chunk_size"] * (self.H // 2) * (self.W // 2)
        a_tok = c["frame_chunk_size"] * c["action_per_frame"]
        cap = (c["attn_window"] // 2) * v_tok + (c["attn_window"] // 2) * a_tok
        m = self.m
        self.cache = GatherCache(len(m.blocks), cap, 2 if self.use_cfg else 1, m.num_attention_heads, m.attention_head_dim)
        self.mask = torch.zeros(c["action_dim"]).bool()
        self.mask[c["used_action_channel_ids"]] = True
        self.q01 = torch.tensor(c["norm_stat"]["q01"]).reshape(-1, 1, 1)
        self.q99 = torch.tensor(c["norm_stat"]["q99"]).reshape(-1, 1, 1)
        inv = [len(c["used_action_channel_ids"])] * c["action_dim"]
        for pos, ch in enumerate(c["used_action_channel_ids"]):
            inv[ch] = pos
        self.inv = inv
        self.prompt, self.negative = prompt[None], negative[None]

    def _fwd(self, x, t, action_mode, update):
        text = self.prompt
        if self.use_cfg:
            x = x.repeat(2, 1, 1, 1, 1)
            text = torch.cat([self.prompt, self.negative])
            t = t[None].repeat(2, 1)
        else:
            t = t[None]
        return self.m(x, t, text, action_mode=action_mode, frame_start=self.frame_st_id, kv_cache=self.cache, update_cache=update)

    def infer(self, init_latent, video_noise, action_noise):
        c, fs = self.cfg, self.frame_st_id
        if fs == 0:
            self.init_latent = init_latent[None].clone()
        latents, actions = video_noise[None].clone(), action_noise[None].clone()
        ts = F.pad(self.sched.set_timesteps(c["num_inference_steps"]), (0, 1))
        if c["video_exec_step"] != -1:
            ts = ts[: c["video_exec_step"]]
        ats = F.pad(self.asched.set_timesteps(c["action_num_inference_steps"]), (0, 1))
        f = c["frame_chunk_size"]
        for i, t in enumerate(ts):
            last = i == len(ts) - 1
            tv = torch.ones(f) * t
            if fs == 0:
                latents[:, :, 0:1] = self.init_latent
                tv[0:1] *= 0
            out = self._fwd(latents, tv, False, 1 if last else 0)
            if not last or c["video_exec_step"] != -1:
                out = out[1:] + c["guidance_scale"] * (out[:1] - out[1:]) if c["guidance_scale"] > 1 else out[:1]
                latents = self.sched.step(out, t, latents)
            if fs == 0:
                latents[:, :, 0:1] = self.init_latent
        for i, t in enumerate(ats):
            last = i == len(ats) - 1
            ta = torch.ones(f) * t
            if fs == 0:
                actions[:, :, 0:1] = 0
                ta[0:1] *= 0
            actions[:, ~self.mask] *= 0
            out = self._fwd(actions, ta, True, 1 if last else 0)
            if not last:
                g = c["action_guidance_scale"]
                out = out[1:] + g * (out[:1] - out[1:]) if g > 1 else out[:1]
                actions = self.asched.step(out, t, actions)
            if fs == 0:
                actions[:, :, 0:1] = 0
        actions[:, ~self.mask] *= 0
        post = ((actions[0, ..., 0] + 1) / 2 * (self.q99 - self.q01 + 1e-6) + self.q01)[c["used_action_channel_ids"]]
        return latents[0], actions[0], post

    def ground(self, obs_latents, executed):
        self.cache.clear_pred()
        lat = obs_latents[None]
        if self.frame_st_id == 0:
            lat = torch.cat([self.init_latent, lat], dim=2)
        a = torch.from_numpy(np.asarray(executed, dtype=np.float32))
        a = F.pad(a, [0, 0, 0, 0, 0, 1])[self.inv]
        a = ((a - self.q01) / (self.q99 - self.q01 + 1e-6) * 2.0 - 1.0)[None, ..., None]
        a[:, ~self.mask] *= 0
        self._fwd(lat, torch.zeros(lat.shape[2]), False, 2)
        self._fwd(a, torch.zeros(a.shape[2]), True, 2)
        self.frame_st_id += lat.shape[2]


VARIANTS = {
    # capacity = 2 chunks: transient and commit passes evict, and evictions cut through groups
    "evict": dict(attn_window=4),
    # capacity = exactly 1 chunk: every pass evicts
    "evict_tight": dict(attn_window=2, num_inference_steps=2, action_num_inference_steps=2),
    # action CFG only: batch 2, video takes the conditional stream
    "action_cfg": dict(guidance_scale=1.0, action_guidance_scale=2.5, attn_window=6),
    # partial denoising: commit at sigma_{k-1}, then still step
    "partial": dict(num_inference_steps=4, video_exec_step=2, attn_window=4),
    # no CFG at all: batch 1
    "no_cfg": dict(guidance_scale=1.0, action_guidance_scale=1.0),
    # other geometry / chunking / channel set (LIBERO-like 7 channels)
    "geometry": dict(frame_chunk_size=3, action_per_frame=4, used_action_channel_ids=[0, 1, 2, 3, 4, 5, 6],
                     norm_stat={"q01": [-1.0] * 30, "q99": [1.0] * 30}, attn_window=4, action_snr_shift=0.05),
}


def _drive(variant: str, chunks: int, **wm_kwargs):
    cfg = server_config(**VARIANTS[variant])
    latent = [48, 6, 4] if variant == "geometry" else LATENT
    m = make_transformer()
    wcfg = WorldModelConfig.from_server_config(cfg, latent)
    wm = LingBotVAWorldModel(m, wcfg, **wm_kwargs)
    ref = ReferenceServer(m, cfg, latent)
    g = torch.Generator().manual_seed(1)
    prompt, neg = torch.randn(5, 16, generator=g), torch.randn(5, 16, generator=g)
    wm.reset(prompt, neg)
    ref.reset(prompt, neg)
    c, h, w = latent
    f, a = cfg["frame_chunk_size"], cfg["action_per_frame"]
    errs, fills = [], []
    for n in range(chunks):
        init = torch.randn(c, 1, h, w, generator=g) if n == 0 else None
        vn, an = torch.randn(c, f, h, w, generator=g), torch.randn(30, f, a, 1, generator=g)
        assert wm.next_frame == ref.frame_st_id
        r = wm.infer(init, vn, an)
        lat, an_ref, post = ref.infer(init, vn, an)
        errs.append(max(float((r.latents - lat).abs().max()), float((r.actions_normalized - an_ref).abs().max()),
                        float((r.actions - post).abs().max())))
        obs = torch.randn(c, f - 1 if n == 0 else f, h, w, generator=g)
        wm.ground(obs, r.actions)
        ref.ground(obs, post.numpy())
        # the live *set* is identical (slots may differ): compare the multiset of frame tags
        assert torch.equal(torch.sort(wm.cache.live_frames()).values, torch.sort(ref.cache.live_frames()).values)
        assert wm.cache_fill() == pytest.approx(ref.cache.fill())
        fills.append(wm.cache_fill())
    return errs, fills, wm


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_world_model_with_slab_matches_gather_reference(variant):
    errs, fills, wm = _drive(variant, chunks=5)
    assert max(errs) < 2e-5, errs
    if variant.startswith("evict"):
        assert wm.cache.num_evicted > 0 and fills[-1] == 1.0


def test_skip_action_commit_stays_exact_under_eviction():
    """The reserved (phantom) slots evict what the real commit would have evicted."""
    errs, _, wm = _drive("evict", chunks=5, skip_action_commit=True)
    assert max(errs) < 2e-5
    assert "infer.action_commit_reserved" in wm.call_log and "infer.action_commit" not in wm.call_log


def test_skip_unused_uncond_steps_matches():
    errs, _, _ = _drive("evict", chunks=4, skip_unused_uncond_steps=True)
    assert max(errs) < 2e-5


@pytest.mark.parametrize("variant", ["evict", "action_cfg", "partial"])
def test_verify_cli_passes_on_fixtures_recorded_from_the_reference(variant, tmp_path, capsys):
    """The replay tool handles any fixture in the format: eviction, action CFG, partial denoising."""
    cfg = server_config(**VARIANTS[variant])
    m = make_transformer(seed=3)
    out = record_episode(ReferenceServer(m, cfg, LATENT), tmp_path / variant, cfg, LATENT, transformer=m,
                         num_chunks=4, seed=7, prompt_len=6)
    assert verify.main([str(out)]) == 0
    assert "RESULT: PASS" in capsys.readouterr().out


# ------------------------------------------------------------------------------ cache unit tests
def _random_ops(seed: int, slack: int):
    rng = random.Random(seed)
    layers, cap, b, h, d = 2, 20, 2, 2, 4
    slab = SlabKVCache(layers, cap, b, h, d, slack=slack)
    ref = GatherCache(layers, cap, b, h, d)
    gen = torch.Generator().manual_seed(seed)
    frame = 0
    for step in range(150):
        op = rng.random()
        if op < 0.08:
            slab.clear_pred(), ref.clear_pred()
        elif op < 0.14:
            lo = rng.randint(max(0, frame - 6), frame)
            hi = lo + rng.randint(1, 4)
            po = rng.random() < 0.5
            slab.clear_frames(lo, hi, pred_only=po), ref.clear_frames(lo, hi, pred_only=po)
        elif op < 0.18:
            n = rng.randint(1, 5)
            fr = torch.full((n,), float(frame + 1000))
            slab.reserve(n, fr), ref.reserve(n, fr)
            slab.clear_frames(1000, pred_only=True), ref.clear_frames(1000, pred_only=True)
        else:
            n = rng.randint(1, 8)
            update = rng.choice([0, 0, 1, 2])
            bb = 1 if (update == 0 and rng.random() < 0.3) else b
            frames = torch.full((n,), float(frame))
            frame += 1
            slab.begin(n, update, frames, bb)
            ref.begin(n, update, frames, bb)
            for layer in range(layers):
                q, k, v = (torch.randn(bb, n, h, d, generator=gen) for _ in range(3))
                o1, o2 = slab.attend(layer, q, k, v), ref.attend(layer, q, k, v)
                assert torch.allclose(o1, o2, atol=1e-6), (step, layer)
            slab.end_forward(), ref.end_forward()
        assert torch.equal(torch.sort(slab.live_frames()).values, torch.sort(ref.live_frames()).values), step
    return slab


@pytest.mark.parametrize("seed,slack", [(0, 0), (1, 3), (2, 64)])
def test_slab_random_operation_sequences_match_gather(seed, slack):
    slab = _random_ops(seed, slack)
    assert slab.num_evicted > 0
    if slack < 64:
        assert slab.num_compactions > 0


def test_slab_attends_a_view_without_copy_and_releases_transient_writes():
    c = SlabKVCache(1, 10, 1, 1, 2, slack=10)
    c.begin(4, 2, torch.zeros(4))
    c.attend(0, torch.randn(1, 4, 1, 2), torch.randn(1, 4, 1, 2), torch.randn(1, 4, 1, 2))
    c.end_forward()
    ptr = c.k[0].data_ptr()
    c.begin(3, 0, torch.ones(3))
    assert (c.start, c.end) == (0, 7)
    c.attend(0, torch.randn(1, 3, 1, 2), torch.randn(1, 3, 1, 2), torch.randn(1, 3, 1, 2))
    c.end_forward()
    assert (c.start, c.end) == (0, 4) and c.k[0].data_ptr() == ptr
    # eviction cuts a group: 4 live + 8 new > 10 -> the 2 oldest tokens go
    c.begin(8, 1, torch.full((8,), 2.0))
    c.end_forward()
    assert c.num_live == 10 and c.live_frames().tolist() == [0.0, 0.0] + [2.0] * 8
    assert c.clear_pred() == 8 and c.num_live == 2


def test_reserved_slots_must_be_cleared_before_attention():
    c = SlabKVCache(1, 10, 1, 1, 2)
    c.reserve(3, torch.full((3,), 5.0))
    with pytest.raises(RuntimeError, match="reserved"):
        c.begin(1, 0, torch.zeros(1))
    c.clear_frames(5)
    c.begin(1, 0, torch.zeros(1))
    c.end_forward()
