"""``lingbot-va-train CONFIG``: post-train LingBot-VA on a LeRobot dataset (single process or torchrun).

    lingbot-va-train config/training/official.yaml --dataset DATA --base-checkpoint BASE --output OUT
    torchrun --nproc_per_node 8 -m lingbot_va_ros.training.cli CONFIG ...   (FSDP2, one GPU per process)

CONFIG is a YAML path or a name in config/training/ (official, paper_fdm, tiny_cpu). The output folder gets
transformer/ (official layout), vae/ text_encoder/ tokenizer/ (links to the base), embodiment.yaml (the
dataset's q01/q99), checkpoints/, train_log.jsonl. An existing output folder is only replaced with --force;
--resume continues from its newest checkpoint. Exit status: 0 done, 2 bad input, 1 training failure.
"""
from __future__ import annotations

import argparse
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    from lingbot_va_ros.common.params import ParameterError
    from lingbot_va_ros.training.config import load_training_config, parse_override

    ap = argparse.ArgumentParser(prog="lingbot-va-train", description=__doc__.split("\n\n")[0],
                                 epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config", help="training YAML (path, or a name in config/training/)")
    ap.add_argument("--dataset", help="LeRobot dataset root")
    ap.add_argument("--base-checkpoint", help="official LingBot-VA folder to start from")
    ap.add_argument("--output", help="output folder")
    ap.add_argument("--embodiment", help="embodiment name or YAML of the dataset")
    ap.add_argument("--steps", type=int, help="number of optimizer steps")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override any config key")
    ap.add_argument("--force", action="store_true", help="replace an existing training run in the output folder")
    ap.add_argument("--resume", action="store_true", help="continue from the output folder's newest checkpoint")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[train] %(message)s")
    if args.force and args.resume:
        print("lingbot-va-train: --force and --resume exclude each other", file=sys.stderr)
        return 2
    from lingbot_va_ros.dataset.lerobot_format import DatasetError
    from lingbot_va_ros.model.loading import CheckpointError
    from lingbot_va_ros.training.data import DatasetProblem
    from lingbot_va_ros.training.trainer import Trainer, TrainingError

    try:
        overrides = dict(parse_override(s) for s in args.set)
        for key, value in (("dataset", args.dataset), ("base_checkpoint", args.base_checkpoint),
                           ("output_dir", args.output), ("embodiment", args.embodiment), ("num_steps", args.steps)):
            if value is not None:
                overrides[key] = value
        cfg = load_training_config(args.config, overrides)
        trainer = Trainer(cfg, force=args.force, resume=args.resume)
        result = trainer.run()
    except (ParameterError, FileNotFoundError, FileExistsError, CheckpointError, DatasetError, DatasetProblem,
            ValueError) as exc:
        print(f"lingbot-va-train: {exc}", file=sys.stderr)
        return 2
    except TrainingError as exc:
        print(f"lingbot-va-train: {exc}", file=sys.stderr)
        return 1
    if result.exported is not None:
        first, last = (result.losses[0], result.losses[-1]) if result.losses else (float("nan"),) * 2
        print(f"[train] {result.steps} steps, loss {first:.4f} -> {last:.4f}\n"
              f"[train] checkpoint: {result.output_dir} (transformer/ + base components)\n"
              f"[train] run it:     lingbot-va-demo --checkpoint {result.output_dir} "
              f"--embodiment {result.output_dir / 'embodiment.yaml'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
