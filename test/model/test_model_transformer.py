"""Transformer: cached incremental decoding == recomputation under the training block-causal mask; causality."""
from __future__ import annotations

import pytest
import torch

from lingbot_va_ros.model.kv_cache import SlabKVCache
from lingbot_va_ros.model.transformer import WanTransformer3DModel

TINY = dict(patch_size=[1, 2, 2], num_attention_heads=2, attention_head_dim=12, in_channels=48, out_channels=48,
            action_dim=30, text_dim=16, freq_dim=16, ffn_dim=32, num_layers=2)
F_CHUNK, H, W, A, K = 2, 4, 6, 3, 3  # frames per chunk, latent H/W, actions per frame, chunks


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return WanTransformer3DModel(**TINY).eval().requires_grad_(False)


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    return dict(
        video=torch.randn(1, 48, K * F_CHUNK, H, W, generator=g),
        actions=torch.randn(1, 30, K * F_CHUNK, A, 1, generator=g),
        noisy_video=torch.randn(1, 48, F_CHUNK, H, W, generator=g),
        noisy_actions=torch.randn(1, 30, F_CHUNK, A, 1, generator=g),
        tv=torch.rand(K * F_CHUNK, generator=g) * 1000,   # arbitrary per-frame adaLN timesteps
        ta=torch.rand(K * F_CHUNK, generator=g) * 1000,
        tn=torch.full((F_CHUNK,), 700.0),
        text=torch.randn(1, 5, 16, generator=g),
    )


def _ids(kind: str, chunks: range, noise: int, per_frame: int):
    """(frame_id, noise_id) per token as the training mask: video chunk c -> 2c, action chunk c -> 2c+1."""
    fid = []
    for c in chunks:
        fid += [2 * c + (kind == "action")] * (F_CHUNK * per_frame)
    return torch.tensor(fid), torch.full((len(fid),), noise)


def training_mask(parts) -> torch.Tensor:
    """Reference ``FlexAttnFunc._get_mask_mod`` (single sequence, no window limit): clean->clean block
    causal (<=), noisy->clean strictly earlier (<), noisy->noisy same block."""
    fid = torch.cat([p[0] for p in parts])
    nid = torch.cat([p[1] for p in parts])
    fq, fk = fid[:, None], fid[None, :]
    nq, nk = nid[:, None], nid[None, :]
    return ((nq == 1) & (nk == 1) & (fk <= fq)) | ((nq == 0) & (nk == 1) & (fk < fq)) | ((nq == 0) & (nk == 0) & (fk == fq))


VT = (H // 2) * (W // 2)  # video tokens per frame


def test_incremental_clean_commits_equal_full_sequence_recomputation(model, data):
    text = model.prepare_text(data["text"])
    cache = SlabKVCache(len(model.blocks), 10_000, 1, 2, 12)
    inc_v, inc_a = [], []
    for c in range(K):
        s = slice(c * F_CHUNK, (c + 1) * F_CHUNK)
        inc_v.append(model(data["video"][:, :, s], data["tv"][s], text, frame_start=c * F_CHUNK, kv_cache=cache, update_cache=2))
        inc_a.append(model(data["actions"][:, :, s], data["ta"][s], text, action_mode=True, frame_start=c * F_CHUNK, kv_cache=cache, update_cache=2))
    mask = training_mask([_ids("video", range(K), 1, VT), _ids("action", range(K), 1, A)])
    full_v, full_a = model.forward_segments(
        [(data["video"], data["tv"], False, 0), (data["actions"], data["ta"], True, 0)], text, mask)
    torch.testing.assert_close(torch.cat(inc_v, 2), full_v, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.cat(inc_a, 2), full_a, atol=1e-5, rtol=1e-5)


def test_noisy_queries_equal_training_mask_rules(model, data):
    """Video denoising of chunk K-1 sees clean history < K-1; action denoising of chunk K-1 also sees the
    committed clean video of chunk K-1 (inverse dynamics) - exactly the training noisy->clean rule."""
    text = model.prepare_text(data["text"])
    cache = SlabKVCache(len(model.blocks), 10_000, 1, 2, 12)
    last = (K - 1) * F_CHUNK
    for c in range(K - 1):
        s = slice(c * F_CHUNK, (c + 1) * F_CHUNK)
        model(data["video"][:, :, s], data["tv"][s], text, frame_start=c * F_CHUNK, kv_cache=cache, update_cache=2)
        model(data["actions"][:, :, s], data["ta"][s], text, action_mode=True, frame_start=c * F_CHUNK, kv_cache=cache, update_cache=2)
    live = cache.num_live
    inc_nv = model(data["noisy_video"], data["tn"], text, frame_start=last, kv_cache=cache, update_cache=0)
    assert cache.num_live == live  # transient
    s = slice(last, last + F_CHUNK)
    model(data["video"][:, :, s], data["tv"][s], text, frame_start=last, kv_cache=cache, update_cache=1)
    inc_na = model(data["noisy_actions"], data["tn"], text, action_mode=True, frame_start=last, kv_cache=cache, update_cache=0)

    hist = range(K - 1)
    segs = [(data["video"][:, :, :last], data["tv"][:last], False, 0),
            (data["actions"][:, :, :last], data["ta"][:last], True, 0),
            (data["noisy_video"], data["tn"], False, last)]
    mask = training_mask([_ids("video", hist, 1, VT), _ids("action", hist, 1, A), _ids("video", [K - 1], 0, VT)])
    full_nv = model.forward_segments(segs, text, mask)[2]
    torch.testing.assert_close(inc_nv, full_nv, atol=1e-5, rtol=1e-5)

    segs = [(data["video"], data["tv"], False, 0),
            (data["actions"][:, :, :last], data["ta"][:last], True, 0),
            (data["noisy_actions"], data["tn"], True, last)]
    mask = training_mask([_ids("video", range(K), 1, VT), _ids("action", hist, 1, A), _ids("action", [K - 1], 0, A)])
    full_na = model.forward_segments(segs, text, mask)[2]
    torch.testing.assert_close(inc_na, full_na, atol=1e-5, rtol=1e-5)


def test_future_tokens_never_change_past_outputs(model, data):
    text = model.prepare_text(data["text"])
    mask = training_mask([_ids("video", range(K), 1, VT), _ids("action", range(K), 1, A)])
    base = model.forward_segments([(data["video"], data["tv"], False, 0), (data["actions"], data["ta"], True, 0)], text, mask)
    v2, a2 = data["video"].clone(), data["actions"].clone()
    v2[:, :, -F_CHUNK:] += 3.0   # change the last chunk's video ...
    a2[:, :, -F_CHUNK:] -= 2.0   # ... and actions
    pert = model.forward_segments([(v2, data["tv"], False, 0), (a2, data["ta"], True, 0)], text, mask)
    past = slice(0, (K - 1) * F_CHUNK)
    assert torch.equal(base[0][:, :, past], pert[0][:, :, past])
    assert torch.equal(base[1][:, :, past], pert[1][:, :, past])
    assert not torch.allclose(base[0][:, :, -F_CHUNK:], pert[0][:, :, -F_CHUNK:])
    # video of the last chunk does not see that chunk's actions (IDM ordering)
    a3 = data["actions"].clone()
    a3[:, :, -F_CHUNK:] += 5.0
    pert3 = model.forward_segments([(data["video"], data["tv"], False, 0), (a3, data["ta"], True, 0)], text, mask)
    assert torch.equal(base[0], pert3[0])


def test_cfg_streams_are_independent_and_text_context_matches_raw(model, data):
    g = torch.Generator().manual_seed(5)
    text2 = torch.cat([data["text"], torch.randn(1, 5, 16, generator=g)])
    x = data["video"][:, :, :F_CHUNK]
    both = model(x.expand(2, -1, -1, -1, -1), data["tv"][:F_CHUNK], text2)
    ctx = model.prepare_text(text2)
    cond = model(x, data["tv"][:F_CHUNK], ctx.select(1))
    torch.testing.assert_close(both[:1], cond, atol=1e-6, rtol=1e-6)
    assert not torch.allclose(both[0], both[1])
    torch.testing.assert_close(model(x, data["tv"][:F_CHUNK], data["text"]), cond, atol=1e-6, rtol=1e-6)
