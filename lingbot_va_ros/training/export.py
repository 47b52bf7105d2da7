"""What a training run leaves for inference: an official ``transformer/`` folder, the base checkpoint's
other components, and an embodiment YAML holding the dataset's action statistics.

- ``transformer/config.json`` + ``diffusion_pytorch_model.safetensors``: the official layout and parameter
  names (the reference's ``save_checkpoint`` writes the same: one file, bf16 by default), loaded unchanged
  by ``load_lingbot_va`` / the inference node.
- ``vae/``, ``text_encoder/``, ``tokenizer/``: symlinks to (or copies of) the base checkpoint's, so the
  output folder is a complete checkpoint (``lingbot-va-demo --checkpoint OUT``); with ``link_base: none`` pass
  the base folder as ``base_checkpoint`` instead.
- ``embodiment.yaml``: the training embodiment with q01/q99 replaced by the ones the model was trained
  with (``--embodiment OUT/embodiment.yaml``, or the inference node's ``embodiment`` parameter).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
import yaml
from safetensors.torch import save_file

from lingbot_va_ros.model.embodiment import EmbodimentConfig, load_embodiment

_DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32}


def export_transformer(model_state: dict[str, torch.Tensor], config: dict, folder: Path, dtype: str) -> Path:
    """Write ``folder/config.json`` + ``diffusion_pytorch_model.safetensors`` (atomically replacing it)."""
    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.partial-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    cfg = {k: v for k, v in dict(config).items() if not k.startswith("_") or k in ("_class_name", "_diffusers_version")}
    cfg["_class_name"] = "WanTransformer3DModel"
    cfg["attn_mode"] = "torch"
    (tmp / "config.json").write_text(json.dumps(cfg, indent=2, default=list) + "\n")
    save_file({k: v.to(_DTYPES[dtype]).contiguous() for k, v in model_state.items()},
              str(tmp / "diffusion_pytorch_model.safetensors"), metadata={"format": "pt"})
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return folder


def link_base_components(base_root: Path, out: Path, mode: str) -> list[str]:
    """vae/ text_encoder/ tokenizer/ of the base checkpoint into ``out`` (symlink or copy)."""
    if mode == "none":
        return []
    from lingbot_va_ros.model.loading import resolve_checkpoint

    paths = resolve_checkpoint(base_root)
    done = []
    for name in ("vae", "text_encoder", "tokenizer"):
        src, dst = Path(getattr(paths, name)).resolve(), out / name
        if dst.is_symlink() or dst.is_file():
            dst.unlink()
        elif dst.is_dir():
            shutil.rmtree(dst)
        if mode == "symlink":
            dst.symlink_to(src, target_is_directory=True)
        else:
            shutil.copytree(src, dst)
        done.append(name)
    return done


def write_embodiment(base: EmbodimentConfig, q01: list[float], q99: list[float], path: Path, note: str) -> EmbodimentConfig:
    """The base embodiment with the trained q01/q99, validated by loading it back."""
    data = base.model_dump(mode="json")
    data["q01"], data["q99"] = [float(v) for v in q01], [float(v) for v in q99]
    data["description"] = (base.description + " | " if base.description else "") + note
    header = (f"# Written by lingbot-va-train: embodiment {base.name!r} with the action statistics (q01/q99) of\n"
              f"# the post-training dataset. Use it with this checkpoint only (--embodiment {path.name}).\n")
    path.write_text(header + yaml.safe_dump(data, sort_keys=False, width=110))
    return load_embodiment(path)
