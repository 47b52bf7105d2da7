"""Fixture replay (`lingbot-va-verify`): passes on the official fixture, fails on perturbed ones, and the
recorder writes fixtures in the same format (including async ``imagine`` calls)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from lingbot_va_ros.model import verify
from lingbot_va_ros.model.fixture import load_fixture, record_episode, replay_fixture
from lingbot_va_ros.model.transformer import WanTransformer3DModel
from lingbot_va_ros.model.world_model import LingBotVAWorldModel, WorldModelConfig

SHIPPED = Path(__file__).resolve().parents[1].joinpath("fixtures", "reference_episode_small")


def _copy_fixture(dst: Path, edit_tensors=None, edit_meta=None) -> Path:
    """Writable copy (the shared fixture is read-only) with optional edits."""
    (dst / "transformer").mkdir(parents=True)
    for f in (SHIPPED / "transformer").iterdir():
        shutil.copyfile(f, dst / "transformer" / f.name)
    tensors = load_file(str(SHIPPED / "episode.safetensors"))
    meta = json.loads((SHIPPED / "episode.json").read_text())
    if edit_tensors:
        edit_tensors(tensors)
    if edit_meta:
        edit_meta(meta)
    save_file(tensors, str(dst / "episode.safetensors"))
    (dst / "episode.json").write_text(json.dumps(meta))
    return dst


def test_official_fixture_reproduced_to_1e5(capsys):
    rep = replay_fixture(SHIPPED)
    assert rep.ok and len(rep.rows) == 9
    per = rep.max_by_output()
    assert set(per) == {"latents", "actions_normalized", "actions"}
    assert max(per.values()) < 1e-5, per
    assert verify.main([str(SHIPPED)]) == 0
    out = capsys.readouterr().out
    assert "RESULT: PASS" in out and "latents" in out


# Reference episodes in the project's shared data beside the clone (CI has it), replayed as users would.
_SHARED = Path(__file__).resolve().parents[3] / "shared" / "fixtures"
_SHARED_EPISODES = sorted(p.parent for p in _SHARED.glob("*/episode.json")) if _SHARED.is_dir() else []


@pytest.mark.parametrize("fixture_dir", _SHARED_EPISODES, ids=lambda p: p.name)
def test_every_shared_reference_episode_passes_the_cli(fixture_dir, capsys):
    assert verify.main([str(fixture_dir)]) == 0, capsys.readouterr().out


def test_official_fixture_with_inference_shortcuts():
    assert replay_fixture(SHIPPED, skip_action_commit=True, skip_unused_uncond_steps=True).max_abs_err < 1e-5


def test_perturbed_output_fails(tmp_path, capsys):
    def bump(t):
        t["c1.latents"] = t["c1.latents"] + 1e-3

    d = _copy_fixture(tmp_path / "fx", edit_tensors=bump)
    assert verify.main([str(d)]) == 1
    out = capsys.readouterr().out
    assert "RESULT: FAIL" in out
    bad = [line for line in out.splitlines() if "FAIL" in line and "latents" in line]
    assert len(bad) == 1 and " 2 " in bad[0].replace("infer", " ")  # frame 2 only


def test_perturbed_input_fails(tmp_path):
    def bump(t):
        t["g0.executed_actions"] = t["g0.executed_actions"] * 1.01  # grounding feeds every later chunk

    d = _copy_fixture(tmp_path / "fx", edit_tensors=bump)
    rep = replay_fixture(d)
    assert not rep.ok
    assert all(r.ok for r in rep.rows if r.frame == 0)  # chunk 0 precedes the edit


def test_frame_bookkeeping_mismatch_fails(tmp_path):
    def shift(meta):
        meta["calls"][3]["frame_start"] = 3

    d = _copy_fixture(tmp_path / "fx", edit_meta=shift)
    assert verify.main([str(d)]) == 1


def test_atol_and_json_and_unreadable(tmp_path, capsys):
    assert verify.main([str(SHIPPED), "--atol", "1e-9"]) == 1
    capsys.readouterr()
    assert verify.main([str(SHIPPED), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["ok"] and rep["max_abs_err"]["latents"] < 1e-5
    d = _copy_fixture(tmp_path / "fx")
    (d / "episode.safetensors").unlink()
    assert verify.main([str(d)]) == 2
    assert "episode.safetensors" in capsys.readouterr().err


@pytest.mark.parametrize("imagine", [False, True])
def test_recorder_round_trip(tmp_path, imagine):
    fx = load_fixture(SHIPPED)
    torch.manual_seed(4)
    m = WanTransformer3DModel(patch_size=[1, 2, 2], num_attention_heads=2, attention_head_dim=12, in_channels=48,
                              out_channels=48, action_dim=30, text_dim=16, freq_dim=16, ffn_dim=32, num_layers=2).eval()
    cfg = dict(fx.config, attn_window=4, action_guidance_scale=2.0, num_inference_steps=4, video_exec_step=3)
    wm = LingBotVAWorldModel(m, WorldModelConfig.from_server_config(cfg, fx.latent_shape_per_frame))
    out = record_episode(wm, tmp_path / "rec", cfg, fx.latent_shape_per_frame, transformer=m, num_chunks=3, seed=2,
                         imagine=imagine)
    rec = load_fixture(out)
    kinds = [c["call"] for c in rec.calls]
    assert kinds[:2] == ["reset", "infer"] and kinds.count("ground") == 3
    assert ("imagine" in kinds) == imagine
    assert rec.tensors["c0.video_noise"].dtype == torch.float32
    rep = replay_fixture(out)
    assert rep.ok and rep.max_abs_err < 1e-6
