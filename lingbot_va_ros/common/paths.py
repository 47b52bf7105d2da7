"""Where the package's share files (config/, urdf/, launch/) live: installed share dir or source tree."""
from __future__ import annotations

import os
from pathlib import Path

PACKAGE = "lingbot_va_ros"
_SOURCE_ROOT = Path(__file__).resolve().parents[2]


def share_dir() -> Path:
    """The folder holding config/, urdf/ and launch/.

    The source tree wins when it is complete (editable venv install); otherwise the ament index is asked
    (colcon install), so both set-ups read the same files.
    """
    if (_SOURCE_ROOT / "package.xml").is_file() and (_SOURCE_ROOT / "config").is_dir():
        return _SOURCE_ROOT
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory(PACKAGE))
    except Exception as exc:  # noqa: BLE001 - any lookup failure means the same thing to the user
        raise FileNotFoundError(
            f"cannot find the {PACKAGE} share folder (no source tree at {_SOURCE_ROOT} and the ament index "
            f"lookup failed: {exc}); source your workspace or set AMENT_PREFIX_PATH") from exc


def config_path(*parts: str) -> Path:
    return share_dir().joinpath("config", *parts)


def resolve_config(name_or_path: str, subdir: str) -> Path:
    """A YAML given as a path, or as a bare name looked up in config/<subdir>/<name>.yaml."""
    p = Path(os.path.expanduser(name_or_path))
    if p.suffix in (".yaml", ".yml") and p.is_file():
        return p
    candidate = config_path(subdir, f"{name_or_path}.yaml")
    if candidate.is_file():
        return candidate
    available = sorted(q.stem for q in config_path(subdir).glob("*.yaml"))
    raise FileNotFoundError(f"no config '{name_or_path}' (not a file, and not one of {available} in config/{subdir}/)")
