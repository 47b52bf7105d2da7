"""The machine a benchmark ran on, described the same way in every section of docs/benchmarks.md."""
from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def describe(with_torch: bool = False) -> str:
    """'Linux 6.x, 2 cores (CPU model), Python 3.11.7' (+ ', torch X' when asked)."""
    text = (f"{platform.system()} {platform.release()}, {os.cpu_count()} cores ({cpu_model()}), "
            f"Python {platform.python_version()}")
    if with_torch:
        try:
            import torch

            text += f", torch {torch.__version__}"
        except ImportError:
            text += ", torch n/a"
    return text
