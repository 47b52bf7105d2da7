"""Latent + prompt cache of a training set: safetensors tensors with JSON sidecars, never pickle.

Each episode's key frames go through the inference encoders exactly as at run time: images resized with the
camera-ingest resize to the embodiment's camera sizes, then the streaming Wan VAE (``ObservationEncoder``,
the embodiment's camera layout: T-shape = head alone + both wrists in a second instance) called with the
first frame alone and then the frame counts the inference loop uses. Prompts go through UMT5
(``PromptEncoder``: 512 rows, zero padding); the '' embedding is cached for CFG text dropout.

Staleness: every entry records the fingerprint of the encoders (VAE / text encoder / tokenizer configs and
weights), the camera layout and the sha256 of the exact key-frame pixels it encoded. An entry whose record
differs from the current one is re-encoded (and the reason printed), so a changed dataset, checkpoint or
embodiment can never train on stale latents.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

CACHE_VERSION = 1
_FULL_HASH_LIMIT = 256 << 20          # files up to 256 MiB are hashed whole
_SAMPLE_BLOCKS, _BLOCK = 64, 1 << 20  # larger ones: 64 evenly spaced 1 MiB blocks + size + header


def file_fingerprint(path: Path) -> str:
    """sha256 of a file (whole up to 256 MiB; beyond, its size and 64 evenly spaced 1 MiB blocks: a UMT5-XXL
    checkpoint is fingerprinted in milliseconds and any retrained weights change sampled bytes)."""
    h = hashlib.sha256()
    size = path.stat().st_size
    h.update(str(size).encode())
    with open(path, "rb") as fh:
        if size <= _FULL_HASH_LIMIT:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
        else:
            for i in range(_SAMPLE_BLOCKS):
                fh.seek((size - _BLOCK) * i // (_SAMPLE_BLOCKS - 1))
                h.update(fh.read(_BLOCK))
    return h.hexdigest()


def folder_fingerprint(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(q for q in Path(folder).rglob("*") if q.is_file()):
        h.update(str(p.relative_to(folder)).encode())
        h.update(file_fingerprint(p).encode())
    return h.hexdigest()


def encoder_fingerprint(vae_dir: Path, text_encoder_dir: Path, tokenizer_dir: Path) -> dict[str, str]:
    return {"vae": folder_fingerprint(vae_dir), "text_encoder": folder_fingerprint(text_encoder_dir),
            "tokenizer": folder_fingerprint(tokenizer_dir)}


def prompt_key(prompt: str) -> str:
    from lingbot_va_ros.model.text_encoder import clean_prompt

    return hashlib.sha256(clean_prompt(prompt).encode()).hexdigest()[:24]


def keyframe_images(camera_frames: Mapping[str, np.ndarray], rows: Sequence[int],
                    image_sizes: Mapping[str, tuple[int, int]]) -> list[dict[str, np.ndarray]]:
    """The key frames as inference sees them: each camera's image at the configured size (camera ingest's
    ``resize_rgb_uint8`` when the recorded size differs)."""
    from lingbot_va_ros.model.image_layout import resize_rgb_uint8

    out = []
    for r in rows:
        frame = {}
        for cam, size in image_sizes.items():
            img = camera_frames[cam][int(r)]
            frame[cam] = img if tuple(img.shape[:2]) == tuple(size) else resize_rgb_uint8(img, size)
        out.append(frame)
    return out


def pixels_digest(keyframes: Sequence[Mapping[str, np.ndarray]], cameras: Sequence[str]) -> str:
    h = hashlib.sha256()
    for kf in keyframes:
        for cam in cameras:
            a = np.ascontiguousarray(kf[cam])
            h.update(f"{cam}{a.shape}".encode())
            h.update(a.tobytes())
    return h.hexdigest()


def _write_atomic(path: Path, tensors: dict[str, torch.Tensor], record: dict) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
    os.replace(tmp, path)
    side = path.with_suffix(".json")
    tmp_side = side.with_name(f".{side.name}.{os.getpid()}.tmp")
    tmp_side.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    os.replace(tmp_side, side)


def _read_record(path: Path) -> dict | None:
    side = path.with_suffix(".json")
    if not (path.is_file() and side.is_file()):
        return None
    try:
        return json.loads(side.read_text())
    except json.JSONDecodeError:
        return None


class LatentCache:
    """One cache folder: ``episodes/episode_NNNNNN.safetensors`` (+ .json) and ``prompts/<key>.safetensors``."""

    def __init__(self, root: str | Path, fingerprint: Mapping[str, str], layout: Mapping, dtype: torch.dtype):
        self.root = Path(root)
        self.dtype = dtype
        self.context = {"version": CACHE_VERSION, "encoders": dict(fingerprint), "layout": dict(layout),
                        "dtype": str(dtype).replace("torch.", "")}

    def episode_path(self, episode_index: int) -> Path:
        return self.root / "episodes" / f"episode_{int(episode_index):06d}.safetensors"

    def prompt_path(self, prompt: str) -> Path:
        return self.root / "prompts" / f"{prompt_key(prompt)}.safetensors"

    def episode_status(self, episode_index: int, pixels_sha: str, num_frames: int) -> str:
        """'ok', 'missing' or why the entry is stale."""
        rec = _read_record(self.episode_path(episode_index))
        if rec is None:
            return "missing"
        want = {**self.context, "pixels_sha256": pixels_sha, "num_latent_frames": num_frames}
        diff = [k for k in want if rec.get(k) != want[k]]
        return "ok" if not diff else "stale (" + ", ".join(sorted(diff)) + " changed)"

    def store_episode(self, episode_index: int, latents: torch.Tensor, pixels_sha: str, extra: dict) -> None:
        record = {**self.context, "pixels_sha256": pixels_sha, "num_latent_frames": int(latents.shape[1]),
                  "episode_index": int(episode_index), **extra}
        _write_atomic(self.episode_path(episode_index), {"latents": latents.detach().to("cpu", self.dtype)}, record)

    def load_episode(self, episode_index: int) -> torch.Tensor:
        from safetensors.torch import load_file

        return load_file(str(self.episode_path(episode_index)))["latents"].float()

    def prompt_status(self, prompt: str) -> str:
        rec = _read_record(self.prompt_path(prompt))
        if rec is None:
            return "missing"
        ok = rec.get("encoders") == self.context["encoders"] and rec.get("version") == CACHE_VERSION
        return "ok" if ok else "stale (encoders changed)"

    def store_prompt(self, prompt: str, embedding: torch.Tensor) -> None:
        record = {"version": CACHE_VERSION, "encoders": self.context["encoders"], "prompt": prompt}
        _write_atomic(self.prompt_path(prompt), {"embedding": embedding.detach().to("cpu", self.dtype)}, record)

    def load_prompt(self, prompt: str) -> torch.Tensor:
        from safetensors.torch import load_file

        return load_file(str(self.prompt_path(prompt)))["embedding"].float()


def encode_keyframes(encoder, keyframes: Sequence[Mapping[str, np.ndarray]], calls: Sequence[int]) -> torch.Tensor:
    """Streaming VAE over an episode's key frames in inference-sized calls -> canvas latents [z, F, H, W]."""
    encoder.reset()
    outs, i = [], 0
    for n in calls:
        outs.append(encoder.encode(list(keyframes[i:i + n])).float().cpu())
        i += n
    return torch.cat(outs, dim=1)
