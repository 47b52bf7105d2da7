"""lingbot-va-train end to end on a tiny checkpoint and a small synthetic LeRobot dataset: checkpoint
save/resume gives the identical next-step loss, the output folder loads through load_lingbot_va and the
inference backend, refusing to overwrite, --force keeping the cache, non-finite losses stop training."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from lingbot_va_ros.training.config import load_training_config
from lingbot_va_ros.training.trainer import OutputExistsError, Trainer, TrainingError

STEPS = 8


def config(dataset, base, out, **over):
    values = {"dataset": str(dataset), "base_checkpoint": str(base), "output_dir": str(out), "num_steps": STEPS,
              "save_every": 4, "warmup_steps": 2, "keep_checkpoints": 3}
    values.update(over)
    return load_training_config("tiny_cpu", values)


@pytest.fixture(scope="module")
def trained(synthetic_dataset, tiny_base, tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "run"
    result = Trainer(config(synthetic_dataset, tiny_base, out)).run()
    return out, result


def test_run_writes_an_official_checkpoint_folder_and_logs(trained):
    out, result = trained
    assert result.steps == STEPS and len(result.losses) == STEPS and all(np.isfinite(result.losses))
    for name in ("transformer/config.json", "transformer/diffusion_pytorch_model.safetensors", "embodiment.yaml",
                 "train_log.jsonl", "training_summary.json", "checkpoints/step_0000004/state.json",
                 "checkpoints/step_0000008/model.safetensors"):
        assert (out / name).is_file(), name
    for name in ("vae", "text_encoder", "tokenizer"):
        assert (out / name).is_symlink()
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log] == list(range(1, STEPS + 1))
    assert log[0]["lr"] == 0.0 and log[2]["lr"] == pytest.approx(1e-3)          # reference warm-up from 0
    assert all({"loss", "grad_norm", "samples"} <= set(e) for e in log)
    assert not list(out.rglob("*.pt")) and not list(out.rglob("*.pth")) and not list(out.rglob("*.pkl"))


def test_output_loads_through_load_lingbot_va_and_runs_in_the_inference_backend(trained):
    from lingbot_va_ros.model.backend import LingBotVABackend
    from lingbot_va_ros.model.embodiment import load_embodiment
    from lingbot_va_ros.model.loading import load_lingbot_va

    out, _ = trained
    components = load_lingbot_va(out)
    final = load_file(str(out / "checkpoints/step_0000008/model.safetensors"))
    state = components.transformer.state_dict()
    assert set(final) == set(state)
    for k, v in final.items():
        torch.testing.assert_close(state[k].float(), v, atol=0, rtol=0)     # float32 export: bit-exact
    emb = load_embodiment(out / "embodiment.yaml")
    summary = json.loads((out / "training_summary.json").read_text())
    assert emb.q01 == pytest.approx(summary["q01"]) and emb.q99 == pytest.approx(summary["q99"])
    backend = LingBotVABackend(components=components, embodiment=out / "embodiment.yaml", device="cpu", dtype="float32")
    frame = {c.name: np.full((c.height, c.width, 3), 90, np.uint8) for c in emb.cameras}
    backend.reset("pick up the red block", frame)
    chunk = backend.predict_chunk()
    assert chunk.actions.shape == (emb.first_chunk_actions, emb.num_channels) and np.isfinite(chunk.actions).all()
    components.close()


def test_q01_q99_are_the_dataset_quantiles(trained, synthetic_dataset):
    from lingbot_va_ros.dataset.lerobot_format import read_lerobot_dataset
    from lingbot_va_ros.dataset.stats import action_quantiles
    from lingbot_va_ros.model.embodiment import load_embodiment

    out, _ = trained
    emb = load_embodiment(out / "embodiment.yaml")
    eps = read_lerobot_dataset(synthetic_dataset)
    q01, q99 = action_quantiles([e.actions for e in eps], emb.used_action_channel_ids)
    assert emb.q01 == pytest.approx(q01) and emb.q99 == pytest.approx(q99)


def test_resume_gives_the_identical_next_step_loss(trained, synthetic_dataset, tiny_base, tmp_path):
    out, result = trained
    resumed = tmp_path / "run"
    shutil.copytree(out, resumed, symlinks=True)
    shutil.rmtree(resumed / "checkpoints/step_0000008")                       # as if stopped after step 4
    again = Trainer(config(synthetic_dataset, tiny_base, resumed), resume=True).run()
    assert again.losses[:4] == result.losses[:4]                             # the kept log lines
    assert again.losses[4] == result.losses[4]                               # identical next-step loss
    assert again.losses == result.losses
    a = load_file(str(out / "checkpoints/step_0000008/model.safetensors"))
    b = load_file(str(resumed / "checkpoints/step_0000008/model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_refuses_to_overwrite_without_force_and_force_keeps_the_cache(trained, synthetic_dataset, tiny_base, tmp_path):
    out, _ = trained
    run = tmp_path / "run"
    shutil.copytree(out, run, symlinks=True)
    with pytest.raises(OutputExistsError, match="--force"):
        Trainer(config(synthetic_dataset, tiny_base, run, num_steps=1)).run()
    with pytest.raises(TrainingError, match="no complete checkpoint"):
        Trainer(config(synthetic_dataset, tiny_base, tmp_path / "empty", num_steps=1), resume=True).run()
    trainer = Trainer(config(synthetic_dataset, tiny_base, run, num_steps=1, save_every=1), force=True)
    trainer.run()
    assert trainer.data.encoded == 0 and trainer.data.reused == 3            # the cache survived --force
    assert not (run / "checkpoints/step_0000008").exists()


def test_non_finite_loss_stops_training(synthetic_dataset, tiny_base, tmp_path):
    cfg = config(synthetic_dataset, tiny_base, tmp_path / "run", learning_rate=1e30, warmup_steps=0, num_steps=6,
                 weight_decay=0.0, grad_clip=1e30, cache_dir=str(tmp_path / "cache"))
    with pytest.raises(TrainingError, match="non-finite"):
        Trainer(cfg).run()
    assert not (tmp_path / "run" / "transformer").exists()
