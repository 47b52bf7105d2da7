"""Loading the official ``transformer/`` layout: sharded + index, bf16 files, flex attn_mode, vestigial and
unused tensors, and clear errors for missing / mis-shaped tensors.

(diffusers' own ``from_pretrained`` only *warns* on a missing tensor and leaves that parameter uninitialised,
and it needs ``accelerate`` to keep fp32 modules; hence the explicit local-folder loader.)"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from lingbot_va_ros.model.transformer import TransformerLoadError, WanTransformer3DModel, load_transformer

SHIPPED = Path(__file__).resolve().parents[1].joinpath("fixtures", "reference_episode_small", "transformer")
TINY = dict(patch_size=[1, 2, 2], num_attention_heads=2, attention_head_dim=12, in_channels=48, out_channels=48,
            action_dim=30, text_dim=16, freq_dim=16, ffn_dim=32, num_layers=2)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return WanTransformer3DModel(**TINY).eval().requires_grad_(False)


def _folder(tmp_path: Path, model, state=None, attn_mode=None, name="t") -> Path:
    d = tmp_path / name
    d.mkdir()
    cfg = {k: v for k, v in dict(model.config).items() if not k.startswith("_")}  # as save_pretrained writes
    if attn_mode:
        cfg["attn_mode"] = attn_mode
    (d / "config.json").write_text(json.dumps({**cfg, "_class_name": "WanTransformer3DModel"}))
    state = {k: v.contiguous() for k, v in (state if state is not None else model.state_dict()).items()}
    save_file(state, str(d / "diffusion_pytorch_model.safetensors"))
    return d


def _probe(model):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 48, 2, 4, 6, generator=g)
    text = torch.randn(1, 5, model.config.text_dim, generator=g)
    return model(x.to(model.compute_dtype), torch.tensor([0.0, 500.0]), text).float()


def test_shipped_folder_loads_through_from_pretrained():
    m = WanTransformer3DModel.from_pretrained(SHIPPED)
    ref = load_file(str(SHIPPED / "diffusion_pytorch_model.safetensors"))
    assert torch.equal(m.state_dict()["blocks.1.ffn.net.2.weight"], ref["blocks.1.ffn.net.2.weight"])
    assert m.config.attention_head_dim == 24 and m.config.attn_mode == "torch"


def test_save_pretrained_round_trip(tiny, tmp_path):
    tiny.save_pretrained(str(tmp_path / "rt"))
    m = load_transformer(str(tmp_path / "rt"), "cpu", torch.float32)
    torch.testing.assert_close(_probe(m), _probe(tiny), atol=0, rtol=0)


def test_sharded_checkpoint_with_index(tiny, tmp_path):
    d = tmp_path / "sharded"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({k: v for k, v in dict(tiny.config).items() if not k.startswith("_")}))
    sd = {k: v.contiguous() for k, v in tiny.state_dict().items()}
    keys = sorted(sd)
    shards = {"diffusion_pytorch_model-00001-of-00002.safetensors": keys[: len(keys) // 2],
              "diffusion_pytorch_model-00002-of-00002.safetensors": keys[len(keys) // 2:]}
    weight_map = {}
    for fname, ks in shards.items():
        save_file({k: sd[k].to(torch.bfloat16) for k in ks}, str(d / fname))
        weight_map.update({k: fname for k in ks})
    (d / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    m = WanTransformer3DModel.from_pretrained(d, torch_dtype=torch.float32)
    for k, v in m.state_dict().items():
        assert v.dtype == torch.float32
        assert torch.equal(v, sd[k].to(torch.bfloat16).float()), k
    # a shard named by the index but absent -> clear error
    (d / "diffusion_pytorch_model-00002-of-00002.safetensors").unlink()
    with pytest.raises(TransformerLoadError, match="00002-of-00002"):
        WanTransformer3DModel.from_pretrained(d)


def test_bf16_load_keeps_norms_and_adaln_tables_fp32(tiny, tmp_path):
    d = _folder(tmp_path, tiny, {k: v.to(torch.bfloat16) for k, v in tiny.state_dict().items()})
    m = load_transformer(str(d), "cpu", torch.bfloat16)
    sd = m.state_dict()
    assert sd["blocks.0.attn1.to_q.weight"].dtype == torch.bfloat16
    assert sd["blocks.0.attn1.norm_q.weight"].dtype == torch.bfloat16
    for k in ("blocks.0.scale_shift_table", "scale_shift_table", "blocks.0.norm2.weight",
              "condition_embedder.time_embedder.linear_1.weight", "condition_embedder_action.time_embedder.linear_2.bias"):
        assert sd[k].dtype == torch.float32, k
    out = _probe(m)
    m32 = load_transformer(str(d), "cpu", torch.float32)  # same bf16 values, fp32 compute
    ref = _probe(m32)
    assert torch.isfinite(out).all()
    assert (out - ref).abs().max() < 0.05 * ref.abs().max()


def test_flex_attn_mode_loads_and_runs_inference(tiny, tmp_path):
    d = _folder(tmp_path, tiny, attn_mode="flex")
    m = load_transformer(str(d), "cpu", torch.float32)
    assert m.config.attn_mode == "flex"
    torch.testing.assert_close(_probe(m), _probe(tiny), atol=0, rtol=0)
    with pytest.raises(ValueError, match="attn_mode"):
        WanTransformer3DModel(**{**TINY, "attn_mode": "bogus"})


def test_vestigial_and_unused_tensors_are_tolerated(tiny, tmp_path, caplog):
    sd = dict(tiny.state_dict())
    inner = 24
    sd["patch_embedding.weight"] = torch.randn(inner, 48, 1, 2, 2)  # Wan conv, never used
    sd["patch_embedding.bias"] = torch.randn(inner)
    for k in [k for k in sd if k.startswith("condition_embedder_action.text_embedder.")]:
        del sd[k]  # never called: absence is fine too
    d = _folder(tmp_path, tiny, sd)
    with caplog.at_level("WARNING"):
        m = load_transformer(str(d), "cpu", torch.float32)
    assert "patch_embedding.weight" not in caplog.text
    torch.testing.assert_close(_probe(m), _probe(tiny), atol=0, rtol=0)


def test_missing_tensor_is_a_clear_error(tiny, tmp_path):
    sd = dict(tiny.state_dict())
    del sd["blocks.1.attn2.to_v.weight"]
    d = _folder(tmp_path, tiny, sd)
    with pytest.raises(TransformerLoadError, match=r"missing tensors \(1\): blocks\.1\.attn2\.to_v\.weight"):
        load_transformer(str(d), "cpu", torch.float32)


def test_shape_mismatch_names_tensor_and_both_shapes(tiny, tmp_path):
    sd = dict(tiny.state_dict())
    sd["action_proj_out.weight"] = torch.zeros(16, 24)
    d = _folder(tmp_path, tiny, sd)
    with pytest.raises(TransformerLoadError) as ei:
        WanTransformer3DModel.from_pretrained(d)
    msg = str(ei.value)
    assert "action_proj_out.weight" in msg and "[16, 24]" in msg and "[30, 24]" in msg


def test_no_weights_file_is_a_clear_error(tiny, tmp_path):
    d = _folder(tmp_path, tiny)
    (d / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(TransformerLoadError, match="diffusion_pytorch_model.safetensors"):
        load_transformer(str(d), "cpu", torch.float32)
