"""Tiny checkpoints: official folder layout, offline loading, determinism, and load_lingbot_va's errors."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lingbot_va_ros.model.loading import CheckpointError, check_compatibility, load_lingbot_va, resolve_checkpoint
from lingbot_va_ros.model.tiny_checkpoint import TINY_TRANSFORMER, main, shared_tiny_checkpoint


@pytest.fixture(scope="module")
def checkpoint() -> Path:
    return shared_tiny_checkpoint()


def _copy(checkpoint: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "ckpt"
    shutil.copytree(checkpoint, dst)
    return dst


def _edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def test_official_layout(checkpoint):
    for rel in ["transformer/config.json", "transformer/diffusion_pytorch_model.safetensors", "vae/config.json",
                "vae/diffusion_pytorch_model.safetensors", "text_encoder/config.json",
                "text_encoder/model.safetensors", "tokenizer/tokenizer.json", "tokenizer/tokenizer_config.json"]:
        assert (checkpoint / rel).is_file(), rel
    assert not list(checkpoint.rglob("*.bin")) and not list(checkpoint.rglob("*.pt*"))   # safetensors only
    vae = json.loads((checkpoint / "vae/config.json").read_text())
    assert (vae["_class_name"], vae["z_dim"], vae["patch_size"], vae["is_residual"]) == ("AutoencoderKLWan", 48, 2, True)
    assert len(vae["latents_mean"]) == len(vae["latents_std"]) == 48
    transformer = json.loads((checkpoint / "transformer/config.json").read_text())
    assert transformer["_class_name"] == "WanTransformer3DModel" and transformer["in_channels"] == 48
    text = json.loads((checkpoint / "text_encoder/config.json").read_text())
    assert text["d_model"] == transformer["text_dim"]


def test_loads_offline_with_the_official_classes(checkpoint):
    from diffusers import AutoencoderKLWan
    from transformers import T5TokenizerFast, UMT5EncoderModel

    tokenizer = T5TokenizerFast.from_pretrained(str(checkpoint / "tokenizer"), local_files_only=True)
    ids = tokenizer("pick up the red block").input_ids
    assert ids[-1] == tokenizer.eos_token_id == 1 and tokenizer.pad_token_id == 0 and tokenizer.unk_token_id not in ids
    UMT5EncoderModel.from_pretrained(str(checkpoint / "text_encoder"), local_files_only=True)
    vae = AutoencoderKLWan.from_pretrained(str(checkpoint / "vae"), local_files_only=True)
    x = torch.zeros(1, 3, 1, 256, 320)
    with torch.no_grad():
        assert vae.encode(x).latent_dist.mode().shape == (1, 48, 1, 16, 20)     # 16x spatial


def test_round_trip_through_load_lingbot_va(checkpoint):
    c = load_lingbot_va(checkpoint, "cpu", torch.float32)
    assert c.transformer.config.text_dim == c.prompt_encoder.d_model == TINY_TRANSFORMER["text_dim"]
    assert c.vae.config.z_dim == c.transformer.config.in_channels == 48
    assert c.prompt_encoder.encode("open the drawer").shape == (512, TINY_TRANSFORMER["text_dim"])
    assert c.paths.transformer == checkpoint / "transformer"


def test_cli_is_deterministic_given_the_seed(checkpoint, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main([str(out), "--embodiment", "demo_sim", "--seed", "0"]) == 0
    for rel in ["transformer/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors",
                "text_encoder/model.safetensors"]:
        a, b = load_file(str(checkpoint / rel)), load_file(str(out / rel))
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), rel
    for rel in ["vae/config.json", "tokenizer/tokenizer.json", "transformer/config.json"]:
        assert (checkpoint / rel).read_text() == (out / rel).read_text(), rel
    assert main([str(out)]) == 2                                   # refuses to overwrite silently
    assert "not empty" in capsys.readouterr().err


def test_other_seed_other_weights():
    from lingbot_va_ros.model.tiny_checkpoint import build_transformer

    a, b = build_transformer(0).state_dict(), build_transformer(1).state_dict()
    assert not torch.equal(a["proj_out.weight"], b["proj_out.weight"])


def test_post_trained_transformer_with_base_folder(checkpoint, tmp_path):
    post = tmp_path / "checkpoint_step_100"
    shutil.copytree(checkpoint / "transformer", post / "transformer")
    with pytest.raises(CheckpointError, match="missing vae/ folder.*base_dir"):
        resolve_checkpoint(post)
    paths = resolve_checkpoint(post, base_dir=checkpoint)
    assert paths.transformer == post / "transformer" and paths.vae == checkpoint / "vae"
    bare = resolve_checkpoint(post / "transformer", base_dir=checkpoint)      # the transformer folder itself
    assert bare.transformer == post / "transformer"
    c = load_lingbot_va(post, base_dir=checkpoint)
    assert c.paths.tokenizer == checkpoint / "tokenizer"


def test_missing_pieces_are_named(checkpoint, tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        resolve_checkpoint(tmp_path / "nowhere")
    ckpt = _copy(checkpoint, tmp_path)
    (ckpt / "vae/diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="vae: no VAE weights"):
        check_compatibility(resolve_checkpoint(ckpt))
    shutil.rmtree(ckpt / "tokenizer")
    with pytest.raises(CheckpointError, match="missing tokenizer/ folder"):
        resolve_checkpoint(ckpt)
    shutil.rmtree(ckpt / "transformer")
    with pytest.raises(CheckpointError, match="no transformer/ folder"):
        resolve_checkpoint(ckpt)


def test_incompatible_configs_say_exactly_what(checkpoint, tmp_path):
    ckpt = _copy(checkpoint, tmp_path)
    _edit_json(ckpt / "vae/config.json", z_dim=16)
    _edit_json(ckpt / "text_encoder/config.json", d_model=4096)
    with pytest.raises(CheckpointError) as info:
        load_lingbot_va(ckpt)
    text = str(info.value)
    assert "VAE z_dim 16 != transformer in_channels 48" in text
    assert "text encoder d_model 4096 != transformer text_dim 32" in text
    assert "latents_mean must list z_dim=16 values" in text


def test_bad_offload_mode(checkpoint):
    with pytest.raises(ValueError, match="text_encoder_offload"):
        load_lingbot_va(checkpoint, text_encoder_offload="disk")
