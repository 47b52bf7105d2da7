"""``lingbot-va-replay``: re-run a recorded episode through a policy backend offline and compare the chunks.

    lingbot-va-replay recordings/ep-7 --checkpoint ckpt/ --embodiment robotwin --atol 1e-3
    lingbot-va-replay recordings/ep-7 --inspect            # what the bag holds per chunk; no model needed

Checkpoint, embodiment, seed and mode default to what the bag's metadata recorded. Exit code 0 when every
chunk matches its recording within --atol, 1 when not, 2 on errors (for regression tests of models/configs).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lingbot_va_ros.recording.bag_reader import BagError
from lingbot_va_ros.replay.episode import EpisodeError, chunk_inputs, infer_actions_per_keyframe, load_episode


def _inspect(episode) -> int:
    apk = infer_actions_per_keyframe(episode) or 1
    print(f"episode {episode.episode_id}: prompt {episode.prompt!r}, mode {episode.recorded_mode}, "
          f"{len(episode.chunks)} chunks, {len(episode.keyframes)} key frames (every {apk} actions), "
          f"{len(episode.executed)} executed rows, cameras {list(episode.camera_names)}")
    incomplete = 0
    for ci in chunk_inputs(episode, apk):
        c = ci.chunk
        status = "ok" if ci.complete else (f"missing key frames {list(ci.missing_keyframes)[:4]} "
                                           f"executed {list(ci.missing_actions)[:4]}")
        incomplete += 0 if ci.complete else 1
        print(f"  chunk {c.chunk_index:3d}: actions {c.start_index}..{c.start_index + c.rows - 1} ({c.rows} rows), "
              f"latency {1e3 * c.inference_latency:.0f} ms, {len(ci.keyframe_indices)} key frames: {status}")
    if incomplete:
        print(f"{incomplete} chunk(s) lack grounding inputs (normal for the last chunk of an episode that ended)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lingbot-va-replay", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bag", help="recorded episode bag directory")
    parser.add_argument("--checkpoint", help="checkpoint folder (default: the one the bag recorded)")
    parser.add_argument("--base-checkpoint", default="", help="folder with vae/ text_encoder/ tokenizer/")
    parser.add_argument("--embodiment", help="embodiment name or YAML (default: the bag's, else demo_sim)")
    parser.add_argument("--backend", default="lingbot_va", help=(
        "policy backend plugin (registry name or 'pkg.module:Class'); "
        "lingbot_va_ros.replay.digest_backend:DigestBackend is a model-free dry run"))
    parser.add_argument("--mode", choices=["sync", "async", "async_naive"], help="pipeline order (default: recorded)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--seed", type=int, help="noise seed (default: the bag's, else 0)")
    parser.add_argument("--atol", type=float, default=1e-4, help="largest allowed |replayed - recorded| action")
    parser.add_argument("--episode-id", help="which episode of a multi-episode bag")
    parser.add_argument("--prompt", help="override the recorded prompt")
    parser.add_argument("--max-chunks", type=int, default=0, help="compare only the first N chunks")
    parser.add_argument("--json", help="write the per-chunk comparison here")
    parser.add_argument("--inspect", action="store_true", help="only show the per-chunk inputs found in the bag")
    args = parser.parse_args(argv)
    try:
        episode = load_episode(args.bag, args.episode_id)
    except (BagError, EpisodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.prompt is not None:
        episode.prompt = args.prompt
    if args.inspect:
        return _inspect(episode)

    from lingbot_va_ros.inference.params import InferenceParams
    from lingbot_va_ros.nodes.inference import build_backend
    from lingbot_va_ros.replay.runner import ReplayError, replay_episode

    info = episode.info
    mode = args.mode or episode.recorded_mode
    try:
        params = InferenceParams.from_dict({
            "backend": args.backend, "checkpoint": args.checkpoint or str(info.get("checkpoint") or ""),
            "base_checkpoint": args.base_checkpoint,
            "embodiment": args.embodiment or str(info.get("embodiment") or "demo_sim"),
            "device": args.device, "dtype": args.dtype, "mode": mode,
            "seed": args.seed if args.seed is not None else int(info.get("seed") or 0)}, source="lingbot-va-replay")
        backend = build_backend(params)
    except Exception as exc:  # noqa: BLE001 - any construction failure is reported the same way
        print(f"error: cannot build backend '{args.backend}': {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    if episode.fell_back_to_sync:
        print("note: the recording fell back from async to sync mid-episode; chunks after the fallback will differ",
              file=sys.stderr)
    try:
        result = replay_episode(episode, backend, mode=mode, max_chunks=args.max_chunks)
    except ReplayError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        backend.close()
    print(f"replayed {episode.episode_id} ({mode}, seed {params.seed}): {result.outcome} ({result.reason})")
    for c in result.comparisons:
        if c.comparable:
            verdict = "ok" if c.within(args.atol) else "DIFFERS"
            print(f"  chunk {c.chunk_index:3d} @ {c.recorded_start}: max |d| {c.max_abs:.3g}, "
                  f"mean |d| {c.mean_abs:.3g}  {verdict}")
        else:
            print(f"  chunk {c.chunk_index:3d}: recorded {c.recorded_shape} @ {c.recorded_start}, replayed "
                  f"{c.replayed_shape} @ {c.replayed_start}  MISMATCH")
    passed = result.passed(args.atol)
    print(f"{len(result.comparisons)}/{result.recorded_chunks} chunks compared; max |d| {result.max_abs:.3g}, "
          f"mean |d| {result.mean_abs:.3g}; {'PASS' if passed else 'FAIL'} (atol {args.atol:g})")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "bag": str(episode.bag), "episode_id": episode.episode_id, "mode": mode, "seed": params.seed,
            "outcome": result.outcome, "reason": result.reason, "atol": args.atol, "passed": passed,
            "max_abs": result.max_abs, "mean_abs": result.mean_abs,
            "chunks": [c.__dict__ | {"within_atol": c.within(args.atol)} for c in result.comparisons]},
            indent=2, default=str))
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
