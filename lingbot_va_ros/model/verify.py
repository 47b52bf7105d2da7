"""``lingbot-va-verify FIXTURE_DIR``: replay a reference episode through the PyTorch world model.

Loads ``transformer/`` + ``episode.json`` + ``episode.safetensors``, drives reset / infer / ground (and
``imagine`` for fixtures recorded by ``fixture.record_episode``) in order with the recorded noises in
float32, and prints the max abs error of every output. Exit status: 0 iff every output is within --atol,
1 if any output differs (or the frame bookkeeping disagrees), 2 if the fixture or checkpoint cannot be read.
"""
from __future__ import annotations

import argparse
import json
import sys

import torch


def main(argv: list[str] | None = None) -> int:
    from lingbot_va_ros.model.fixture import FixtureError, load_fixture, replay_fixture
    from lingbot_va_ros.model.transformer import TransformerLoadError

    p = argparse.ArgumentParser(prog="lingbot-va-verify", description=__doc__.split("\n\n")[0])
    p.add_argument("fixture_dir", help="directory with episode.json, episode.safetensors and transformer/")
    p.add_argument("--atol", type=float, default=1e-4, help="max allowed abs error per output (default 1e-4)")
    p.add_argument("--device", default="cpu", help="torch device (the fixture is float32; default cpu)")
    p.add_argument("--skip-action-commit", action="store_true", help="replay with the action commit forward elided")
    p.add_argument("--skip-unused-uncond", action="store_true", help="run only the cond stream in steps with guidance <= 1")
    p.add_argument("--json", action="store_true", help="print a JSON report instead of the table")
    p.add_argument("--threads", type=int, default=0,
                   help="torch intra-op threads (0: torch default; 1 is fastest for tiny fixtures on busy CPUs)")
    args = p.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    try:
        fx = load_fixture(args.fixture_dir)
        report = replay_fixture(
            fx, args.atol, device=args.device,
            skip_action_commit=args.skip_action_commit, skip_unused_uncond_steps=args.skip_unused_uncond,
        )
    except (FixtureError, TransformerLoadError, OSError, KeyError) as exc:
        print(f"lingbot-va-verify: cannot replay {args.fixture_dir}: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({
            "fixture": str(args.fixture_dir),
            "atol": args.atol,
            "ok": report.ok,
            "max_abs_err": report.max_by_output(),
            "rows": [r.__dict__ for r in report.rows],
        }, indent=1))
    else:
        print(f"fixture: {args.fixture_dir}  (torch {torch.__version__}, device {args.device}, float32)")
        print(report.format())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
