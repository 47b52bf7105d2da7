"""Run every benchmark and assemble docs/benchmarks.md from their sections (one command: `make bench`).

Each benchmark script writes its own section to docs/benchmarks/<name>.md (machine, command, medians);
``--assemble-only`` just rebuilds docs/benchmarks.md from the existing sections.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import host  # benchmarks/host.py, next to this script

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ROOT / "docs" / "benchmarks"
ORDER = ["model_cpu", "encoders_cpu", "command_jitter", "sim_rates", "ingest_latency", "closed_loop", "live_view", "faults", "soak", "ros_executor"]


def assemble() -> None:
    parts = ["# Benchmarks\n",
             "Every figure below was produced by a script in `benchmarks/`; `make bench` reruns all of them and "
             "rebuilds this page. Machines are noisy: figures are medians (and p99 where stated) of repeated runs, "
             "and comparisons are measured side by side in one run.\n",
             f"Assembled {time.strftime('%Y-%m-%d %H:%M')} on: {host.describe(with_torch=True)}.\n"]
    names = sorted(SECTIONS.glob("*.md"), key=lambda p: (ORDER.index(p.stem) if p.stem in ORDER else 99, p.stem))
    for section in names:
        parts.append(section.read_text().strip() + "\n")
    (ROOT / "docs" / "benchmarks.md").write_text("\n".join(parts))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--assemble-only", action="store_true")
    args = ap.parse_args()
    if not args.assemble_only:
        for script in sorted((ROOT / "benchmarks").glob("bench_*.py")):
            print(f"== {script.name}", flush=True)
            subprocess.run([sys.executable, str(script)], check=True, cwd=ROOT)
    assemble()
    print(f"wrote {ROOT / 'docs' / 'benchmarks.md'}")


if __name__ == "__main__":
    main()
