"""``lingbot-va-score``: annotate recorded trials and report Progress Score / Success Rate per task.

    lingbot-va-score annotate BAG --task make_breakfast --scores 1,1,0.5,1,1,1,1,1,0.5,1
    lingbot-va-score annotate BAG --task "open drawer" --steps "grasp handle,pull,release"   # asks per step on a TTY
    lingbot-va-score report recordings/ --out report/                                          # index.html, scores.json
"""
from __future__ import annotations

import argparse
import getpass
import sys

from lingbot_va_ros.recording.bag_reader import BagError, bag_dir, is_bag, read_episode_info
from lingbot_va_ros.scoring.annotation import Annotation, prompt_scores, read_annotation, write_annotation
from lingbot_va_ros.scoring.protocol import ScoringError, parse_scores
from lingbot_va_ros.scoring.tasks import PAPER_TASKS, parse_steps, preset_steps


def _annotate(args: argparse.Namespace) -> int:
    bag = bag_dir(args.bag)
    if not is_bag(bag):
        raise BagError(f"{bag} is not a recorded bag (no metadata.yaml)")
    previous = read_annotation(bag)
    if args.steps:
        steps = parse_steps(args.steps)
    elif preset_steps(args.task):
        steps = preset_steps(args.task)
    elif previous is not None and previous.task == args.task:
        steps = previous.steps
    else:
        raise ScoringError(f"task '{args.task}' has no built-in step list ({', '.join(PAPER_TASKS)}); "
                           "pass --steps 'step one,step two,...'")
    if args.scores:
        scores = parse_scores(args.scores)
    elif sys.stdin.isatty():
        print(f"{bag.name}: task '{args.task}', {len(steps)} steps")
        scores = prompt_scores(steps)
    else:
        raise ScoringError("--scores is required when stdin is not a terminal")
    episode_id = str(read_episode_info(bag).get("episode_id", ""))
    annotation = Annotation(task=args.task, steps=steps, scores=scores, episode_id=episode_id,
                            annotator=args.annotator if args.annotator is not None else getpass.getuser(),
                            notes=args.notes)
    path = write_annotation(bag, annotation, overwrite=args.force)
    t = annotation.trial(bag.name)
    print(f"{path}: {t.total:g} / {t.max_score:g}{' (full score)' if t.full_score else ''}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from lingbot_va_ros.scoring.report import build_report

    report = build_report(args.dirs, args.out, plots=not args.no_plots, max_frames=args.frames,
                          strip_chunks=args.strip_chunks)
    for s in report.summaries:
        print(f"{s.task:24s} N={s.n_trials:3d}  PS {s.progress_score:5.1f}  SR {s.success_rate:5.1f}")
    if report.summaries:
        ps, sr = report.mean
        print(f"{'mean':24s} {'':6s} PS {ps:5.1f}  SR {sr:5.1f}")
    if report.unannotated:
        print(f"{len(report.unannotated)} bag(s) not annotated (listed in the report)")
    for problem in report.problems:
        print(f"warning: {problem}", file=sys.stderr)
    print(f"report: {report.out_dir / 'index.html'}")
    return 0 if report.summaries else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lingbot-va-score", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    a = sub.add_parser("annotate", help="score one trial's steps (writes annotation.yaml next to the bag)")
    a.add_argument("bag", help="bag directory (or its .mcap / metadata.yaml)")
    a.add_argument("--task", required=True, help=f"task name; built-in step lists: {', '.join(PAPER_TASKS)}")
    a.add_argument("--steps", help="comma-separated step names (default: the built-in list, or the previous "
                   "annotation's)")
    a.add_argument("--scores", help="comma-separated step scores: 1 first try, 0.5 after retry, 0 failed "
                   "(omit on a terminal to be asked per step)")
    a.add_argument("--notes", default="", help="free text kept with the annotation")
    a.add_argument("--annotator", default=None, help="who scored it (default: the login name)")
    a.add_argument("--force", action="store_true", help="replace an existing annotation")
    a.set_defaults(func=_annotate)
    r = sub.add_parser("report", help="Progress Score / Success Rate per task + plots (index.html, scores.json)")
    r.add_argument("dirs", nargs="+", help="bag directories or folders containing them")
    r.add_argument("--out", required=True, help="report folder (created)")
    r.add_argument("--no-plots", action="store_true", help="scores only (fast; no bag plots or frames)")
    r.add_argument("--frames", type=int, default=4, help="live-view frames shown per trial (default 4)")
    r.add_argument("--strip-chunks", type=int, default=24, help="chunks in each trial's prediction-vs-real strip "
                   "(default 24)")
    r.set_defaults(func=_report)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ScoringError, BagError, FileExistsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
