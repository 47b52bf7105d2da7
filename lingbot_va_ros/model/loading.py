"""Load a LingBot-VA checkpoint folder (spec §7.1): transformer + Wan2.2 VAE + UMT5 text encoder + tokenizer.

Accepted layouts:
- an official root: ``transformer/``, ``vae/``, ``text_encoder/``, ``tokenizer/``;
- a post-trained checkpoint (``checkpoint_step_N/transformer/`` or a bare transformer folder holding
  ``config.json`` + safetensors) together with ``base_dir``, the official root that provides the rest.

Every config is read and cross-checked before any weight is loaded, so a wrong folder fails in
milliseconds with a message that names the folder, the file and the mismatch.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from lingbot_va_ros.model.text_encoder import OFFLOAD_MODES, PromptEncoder, TextEncoderOffload

COMPONENTS = ("transformer", "vae", "text_encoder", "tokenizer")
TRANSFORMER_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.safetensors.index.json")
VAE_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.safetensors.index.json")
TEXT_ENCODER_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
TOKENIZER_FILES = ("tokenizer.json", "spiece.model")


class CheckpointError(ValueError):
    """The checkpoint folder is missing something or its parts do not fit together."""


@dataclass
class CheckpointPaths:
    transformer: Path
    vae: Path
    text_encoder: Path
    tokenizer: Path


@dataclass
class LingBotVAComponents:
    transformer: torch.nn.Module          # lingbot_va_ros.model.transformer.WanTransformer3DModel
    vae: torch.nn.Module                  # diffusers AutoencoderKLWan
    prompt_encoder: PromptEncoder
    paths: CheckpointPaths
    device: torch.device
    dtype: torch.dtype

    def close(self) -> None:
        self.prompt_encoder.release()


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise CheckpointError(f"missing file {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from exc


def _require_any(folder: Path, names: tuple[str, ...], what: str) -> None:
    if not any((folder / n).is_file() for n in names):
        raise CheckpointError(f"{folder}: no {what} weights (expected one of {list(names)}); only safetensors "
                              f"checkpoints are supported")


def _is_transformer_folder(folder: Path) -> bool:
    cfg = folder / "config.json"
    if not cfg.is_file():
        return False
    try:
        return json.loads(cfg.read_text()).get("_class_name") == "WanTransformer3DModel"
    except json.JSONDecodeError:
        return False


def resolve_checkpoint(root: str | Path, base_dir: str | Path | None = None) -> CheckpointPaths:
    """Find the four component folders; raise CheckpointError naming what is missing where."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise CheckpointError(f"checkpoint folder {root} does not exist")
    base = Path(base_dir).expanduser() if base_dir is not None else None
    if base is not None and not base.is_dir():
        raise CheckpointError(f"base checkpoint folder {base} does not exist")

    if _is_transformer_folder(root):
        transformer = root
    elif (root / "transformer").is_dir():
        transformer = root / "transformer"
    else:
        raise CheckpointError(f"{root}: no transformer/ folder (and {root} itself is not a transformer folder "
                              f"with a WanTransformer3DModel config.json)")
    found = {"transformer": transformer}
    for name in COMPONENTS[1:]:
        candidates = [root / name] + ([base / name] if base is not None else [])
        hit = next((c for c in candidates if c.is_dir()), None)
        if hit is None:
            where = " or ".join(str(c) for c in candidates)
            hint = "" if base is not None else (" (a post-trained checkpoint holds only transformer/: pass the "
                                                "official base folder as base_dir)")
            raise CheckpointError(f"missing {name}/ folder: looked in {where}{hint}")
        found[name] = hit
    return CheckpointPaths(**found)


def check_compatibility(paths: CheckpointPaths) -> dict:
    """Cross-check the component configs; return them. Raises CheckpointError with the exact conflict."""
    t_cfg = _read_json(paths.transformer / "config.json")
    v_cfg = _read_json(paths.vae / "config.json")
    e_cfg = _read_json(paths.text_encoder / "config.json")
    _require_any(paths.transformer, TRANSFORMER_WEIGHTS, "transformer")
    _require_any(paths.vae, VAE_WEIGHTS, "VAE")
    _require_any(paths.text_encoder, TEXT_ENCODER_WEIGHTS, "text encoder")
    if not any((paths.tokenizer / n).is_file() for n in TOKENIZER_FILES):
        raise CheckpointError(f"{paths.tokenizer}: no tokenizer files (expected one of {list(TOKENIZER_FILES)})")

    problems = []
    if t_cfg.get("_class_name") != "WanTransformer3DModel":
        problems.append(f"{paths.transformer}/config.json is a {t_cfg.get('_class_name')!r}, "
                        f"expected 'WanTransformer3DModel'")
    if v_cfg.get("_class_name") != "AutoencoderKLWan":
        problems.append(f"{paths.vae}/config.json is a {v_cfg.get('_class_name')!r}, expected 'AutoencoderKLWan'")
    z_dim, in_ch = v_cfg.get("z_dim"), t_cfg.get("in_channels")
    if z_dim != in_ch:
        problems.append(f"VAE z_dim {z_dim} != transformer in_channels {in_ch} (LingBot-VA needs the Wan2.2 VAE, "
                        f"z_dim 48)")
    if t_cfg.get("out_channels", in_ch) != in_ch:
        problems.append(f"transformer out_channels {t_cfg.get('out_channels')} != in_channels {in_ch}")
    for key in ("latents_mean", "latents_std"):
        values = v_cfg.get(key)
        if not isinstance(values, list) or len(values) != z_dim:
            problems.append(f"{paths.vae}/config.json {key} must list z_dim={z_dim} values, "
                            f"got {None if values is None else len(values)}")
    if v_cfg.get("patch_size") not in (None, 1, 2):
        problems.append(f"VAE patch_size {v_cfg.get('patch_size')} is not supported (Wan2.2 uses 2)")
    spatial = (v_cfg.get("patch_size") or 1) * 2 ** sum(1 for _ in v_cfg.get("dim_mult", [])[:-1])
    if spatial != 16:
        problems.append(f"VAE spatial compression is {spatial}x (patch_size x 2^(levels-1)), the camera "
                        f"layouts assume the Wan2.2 16x")
    temporal = 2 ** sum(bool(t) for t in v_cfg.get("temperal_downsample", []))
    if temporal != 4:
        problems.append(f"VAE temporal compression is {temporal}x, LingBot-VA's key-frame timing assumes 4x")
    d_model, text_dim = e_cfg.get("d_model"), t_cfg.get("text_dim")
    if d_model != text_dim:
        problems.append(f"text encoder d_model {d_model} != transformer text_dim {text_dim}")
    if t_cfg.get("action_dim", 30) != 30:
        problems.append(f"transformer action_dim {t_cfg.get('action_dim')} != 30 (the unified action vector)")
    if list(t_cfg.get("patch_size", [1, 2, 2])) != [1, 2, 2]:
        problems.append(f"transformer patch_size {t_cfg.get('patch_size')} != [1, 2, 2]")
    if problems:
        raise CheckpointError("incompatible checkpoint components:\n  " + "\n  ".join(problems))
    return {"transformer": t_cfg, "vae": v_cfg, "text_encoder": e_cfg}


def load_vae(folder: str | Path, device="cpu", dtype: torch.dtype = torch.float32):
    from diffusers import AutoencoderKLWan

    from lingbot_va_ros.model.vae import use_fast_cpu_conv3d

    vae = AutoencoderKLWan.from_pretrained(str(folder), torch_dtype=dtype, local_files_only=True)
    vae = vae.to(device).eval().requires_grad_(False)
    use_fast_cpu_conv3d(vae)
    return vae


def load_lingbot_va(root: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, *,
                    base_dir: str | Path | None = None, text_encoder_offload: TextEncoderOffload = "none",
                    vae_dtype: torch.dtype | None = None) -> LingBotVAComponents:
    """Load every component on ``device``; the text encoder lives where ``text_encoder_offload`` says.

    ``vae_dtype`` defaults to ``dtype`` (the reference runs its VAE in the model dtype).
    """
    from lingbot_va_ros.model.transformer import load_transformer

    if text_encoder_offload not in OFFLOAD_MODES:
        raise ValueError(f"text_encoder_offload must be one of {OFFLOAD_MODES}, got {text_encoder_offload!r}")
    device = torch.device(device)
    paths = resolve_checkpoint(root, base_dir)
    check_compatibility(paths)
    transformer = load_transformer(str(paths.transformer), device=device, dtype=dtype)
    vae = load_vae(paths.vae, device, vae_dtype or dtype)
    prompt_encoder = PromptEncoder(paths.text_encoder, paths.tokenizer, device=device, dtype=dtype,
                                   offload=text_encoder_offload)
    return LingBotVAComponents(transformer=transformer, vae=vae, prompt_encoder=prompt_encoder, paths=paths,
                               device=device, dtype=dtype)
