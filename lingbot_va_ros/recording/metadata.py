"""Content hashes for the episode metadata: which configs and which checkpoint produced a trial.

Config files are hashed whole (sha256). Checkpoints are tens of GB, so the default checkpoint hash is a
*fingerprint*: sha256 over every file's relative path, size and its first and last MiB — it changes with
any re-export or different weights, and takes milliseconds. ``full=True`` hashes every byte.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

_SAMPLE = 1 << 20


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def config_entries(paths: Iterable[str | os.PathLike]) -> list[dict[str, str]]:
    """[{path, sha256}] for each config file (sha256 'missing' when the file does not exist)."""
    out = []
    for p in paths:
        path = Path(p).expanduser()
        out.append({"path": str(path.resolve() if path.exists() else path),
                    "sha256": file_sha256(path) if path.is_file() else "missing"})
    return out


def checkpoint_hash(checkpoint: str | os.PathLike, full: bool = False) -> str:
    """'fp-sha256:<hex>' fingerprint (default) or 'sha256:<hex>' of all bytes; '' when there is no checkpoint."""
    root = Path(checkpoint).expanduser()
    if not str(checkpoint) or not root.exists():
        return ""
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    h = hashlib.sha256()
    for path in files:
        rel = path.name if root.is_file() else path.relative_to(root).as_posix()
        size = path.stat().st_size
        h.update(f"{rel}\0{size}\0".encode())
        with path.open("rb") as f:
            if full or size <= 2 * _SAMPLE:
                for block in iter(lambda: f.read(1 << 22), b""):
                    h.update(block)
            else:
                h.update(f.read(_SAMPLE))
                f.seek(-_SAMPLE, os.SEEK_END)
                h.update(f.read(_SAMPLE))
    return f"{'sha256' if full else 'fp-sha256'}:{h.hexdigest()}"


def episode_metadata(*, pipeline_mode: str = "", checkpoint: str = "", embodiment: str = "",
                     config_files: Iterable[str | os.PathLike] = (), seed: int | None = None,
                     full_checkpoint_hash: bool = False, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``metadata`` of a recorder start command, as the runner should fill it."""
    meta: dict[str, Any] = {
        "pipeline_mode": pipeline_mode,
        "checkpoint": str(Path(checkpoint).expanduser().resolve()) if checkpoint else "",
        "checkpoint_hash": checkpoint_hash(checkpoint, full=full_checkpoint_hash) if checkpoint else "",
        "embodiment": embodiment,
        "configs": config_entries(config_files),
    }
    if seed is not None:
        meta["seed"] = int(seed)
    meta.update(extra or {})
    return meta
