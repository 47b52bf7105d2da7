"""Resumable training checkpoints in safetensors + JSON (no pickle, no torch.distributed.checkpoint files).

``checkpoints/step_NNNNNNN/``:
- ``model.safetensors``: the full fp32 master weights under the official parameter names;
- ``optimizer.safetensors`` + ``optimizer.json``: AdamW state per parameter name (exp_avg, exp_avg_sq, step)
  and the param groups;
- ``rng.safetensors``: torch CPU (and CUDA) generator states;
- ``state.json``: step, LR-scheduler state, world size, config digest - written last, so a folder without it
  is an interrupted save and is ignored.
Full (unsharded) state dicts are gathered with ``torch.distributed.checkpoint.state_dict`` (which works for
FSDP2 and plain modules alike); rank 0 writes, every rank reads the same files on resume.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

STEP_PREFIX = "step_"
STATE_FILE = "state.json"


def _options(cpu_offload: bool = True):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=cpu_offload)


def full_model_state(model) -> dict[str, torch.Tensor]:
    """Unsharded fp32 weights on the CPU (rank 0 of a sharded model; {} elsewhere)."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return {k: v.detach().float().contiguous() for k, v in get_model_state_dict(model, options=_options()).items()}


def full_optimizer_state(model, optimizer) -> dict:
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer, options=_options())


def flatten_optimizer_state(osd: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, keys = {}, {}
    for name, entry in osd.get("state", {}).items():
        keys[name] = sorted(entry)
        for k, v in entry.items():
            t = v if isinstance(v, torch.Tensor) else torch.tensor(v)
            tensors[f"{name}::{k}"] = t.detach().to("cpu").contiguous()
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in osd.get("param_groups", [])]
    return tensors, {"param_groups": groups, "state_keys": keys}


def unflatten_optimizer_state(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state = {name: {k: tensors[f"{name}::{k}"] for k in ks} for name, ks in meta["state_keys"].items()}
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


def rng_state() -> dict[str, torch.Tensor]:
    out = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            out[f"torch_cuda_{i}"] = s
    return out


def restore_rng(tensors: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(tensors["torch_cpu"])
    cuda = [tensors[k] for k in sorted(t for t in tensors if t.startswith("torch_cuda_"))]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def save_checkpoint(folder: Path, step: int, model_state: dict, optimizer_state: dict, scheduler_state: dict,
                    extra: dict, keep: int) -> Path:
    """Write (rank 0) ``folder/step_N`` atomically and delete all but the newest ``keep`` checkpoints."""
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{STEP_PREFIX}{step:07d}"
    tmp = folder / f".{final.name}.partial-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    save_file(model_state, str(tmp / "model.safetensors"))
    opt_tensors, opt_meta = flatten_optimizer_state(optimizer_state)
    save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
    (tmp / "optimizer.json").write_text(json.dumps(opt_meta, indent=1) + "\n")
    save_file(rng_state(), str(tmp / "rng.safetensors"))
    (tmp / STATE_FILE).write_text(json.dumps({"step": step, "scheduler": scheduler_state, **extra}, indent=1) + "\n")
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in list_checkpoints(folder)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    done = [p for p in folder.iterdir() if p.is_dir() and p.name.startswith(STEP_PREFIX) and (p / STATE_FILE).is_file()]
    return sorted(done, key=lambda p: int(p.name[len(STEP_PREFIX):]))


def latest_checkpoint(folder: Path) -> Path | None:
    found = list_checkpoints(folder)
    return found[-1] if found else None


def read_checkpoint(path: Path) -> dict:
    state = json.loads((path / STATE_FILE).read_text())
    return {"state": state, "model": load_file(str(path / "model.safetensors")),
            "optimizer": unflatten_optimizer_state(load_file(str(path / "optimizer.safetensors")),
                                                   json.loads((path / "optimizer.json").read_text())),
            "rng": load_file(str(path / "rng.safetensors"))}


def load_optimizer_state(model, optimizer, osd: dict) -> None:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    # strict=False: a parameter that never received a gradient before the save (e.g. the action head when
    # every sample so far was an FDM sequence) has no AdamW state, which is exactly the state to restore
    set_optimizer_state_dict(model, optimizer, osd, options=StateDictOptions(full_state_dict=True, strict=False))
