"""``lingbot-va-export``: recorded episode bags (model trials and tele-operated demos) -> one LeRobot v2.1 dataset.

    lingbot-va-export recordings/ --out datasets/pick --embodiment demo_sim --outcome completed --min-score 50

Bags are found below the given paths (as ``lingbot-va-score`` finds them), filtered by outcome and by the
Progress Score of their ``annotation.yaml``, read into :class:`DemoEpisode` rows (lingbot_va_ros/dataset/
bag_episode.py) and written with :func:`write_lerobot_dataset`, including the actions' 30-d q01/q99 for the
embodiment YAML. Exit code 0 on success, 2 on any error (the message names the bag and the problem).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

from pydantic import Field, field_validator

from lingbot_va_ros.common import topics
from lingbot_va_ros.common.params import NodeParams, ParameterError
from lingbot_va_ros.dataset.bag_episode import ExportError, bag_to_episode, camera_topics_from_ingest
from lingbot_va_ros.dataset.episode import DemoEpisode
from lingbot_va_ros.dataset.lerobot_format import DatasetMetadata, prepare_output, write_lerobot_dataset
from lingbot_va_ros.dataset.video import DEFAULT_CODEC, VIDEO_CODECS
from lingbot_va_ros.recording.control import OUTCOMES

SIM_CAMERA_CONFIG = "camera_ingest_sim.yaml"
ROBOT_CAMERA_CONFIG = "camera_ingest.yaml"


class ExportParams(NodeParams):
    """Parameters of lingbot-va-export (the CLI flags map one to one)."""

    bags: list[str] = Field(min_length=1, description="bag directories, or folders searched for bags")
    out: str = Field(min_length=1, description="dataset root to create")
    embodiment: str = Field("", description="embodiment name or YAML (default: the bags' custom_data embodiment)")
    outcomes: list[str] = Field(default_factory=list, description="keep only episodes with these outcomes "
                                "(empty = any)")
    min_score: float | None = Field(None, ge=0, le=100, description="keep only annotated episodes whose Progress "
                                    "Score (total / max x 100) is at least this")
    force: bool = Field(False, description="replace an existing dataset")
    fps: float | None = Field(None, gt=0, description="row rate (default: the embodiment's control_hz); demos "
                              "recorded at another rate are resampled, model trials must match")
    camera_config: str = Field("", description="camera ingest params YAML mapping raw topics to model roles "
                               "(default: camera_ingest_sim.yaml when the bag has /sim_arm cameras, else "
                               "camera_ingest.yaml)")
    state_topic: str = Field(topics.JOINT_STATES, description="sensor_msgs/JointState topic of the measured joints")
    video_codec: str = Field(DEFAULT_CODEC, description=f"one of {sorted(VIDEO_CODECS)}")
    max_frame_age_s: float = Field(0.5, gt=0, description="a row whose newest camera frame is older fails")
    task: str = Field("", description="prompt for bags that have none")
    urdf: str = Field("", description="URDF for the ee_relative conversion of demos (default: the package's)")
    skip_bad: bool = Field(False, description="skip bags that cannot be exported (listed) instead of failing")

    @field_validator("outcomes")
    @classmethod
    def _known_outcomes(cls, values: list[str]) -> list[str]:
        bad = [v for v in values if v not in OUTCOMES]
        if bad:
            raise ValueError(f"unknown outcome(s) {bad}; one of {list(OUTCOMES)}")
        return values

    @field_validator("video_codec")
    @classmethod
    def _codec(cls, value: str) -> str:
        if value not in VIDEO_CODECS:
            raise ValueError(f"unknown video codec {value!r}; one of {sorted(VIDEO_CODECS)}")
        return value


def progress_score(bag: Path) -> float | None:
    """The annotation's Progress Score of one trial (total / max x 100), or None when not annotated."""
    from lingbot_va_ros.scoring.annotation import read_annotation

    ann = read_annotation(bag)
    if ann is None:
        return None
    trial = ann.trial(bag.name)
    return 100.0 * trial.total / trial.max_score


def select_bags(params: ExportParams, log=print) -> list[tuple[Path, dict]]:
    """(bag, episode info + score) for every bag that passes the outcome and score filters, sorted by path."""
    from lingbot_va_ros.recording.bag_reader import find_bags, read_episode_info

    missing = [b for b in params.bags if not Path(b).expanduser().exists()]
    if missing:
        raise ExportError(f"no such bag or folder: {missing}")
    found = find_bags([Path(b).expanduser() for b in params.bags])
    if not found:
        raise ExportError(f"no bags found below {params.bags}")
    selected = []
    for bag in found:
        info = read_episode_info(bag)
        outcome = str(info.get("outcome") or "unknown")
        if params.outcomes and outcome not in params.outcomes:
            log(f"skip {bag}: outcome '{outcome}' not in {params.outcomes}")
            continue
        score = progress_score(bag)
        if params.min_score is not None and (score is None or score < params.min_score):
            log(f"skip {bag}: progress score {'none (not annotated)' if score is None else f'{score:.1f}'} "
                f"< {params.min_score:g}")
            continue
        selected.append((bag, {**info, "progress_score": score}))
    if not selected:
        raise ExportError(f"no episodes left after the filters (outcomes {params.outcomes or 'any'}, min score "
                          f"{params.min_score}); {len(found)} bag(s) found")
    return selected


def _camera_config(params: ExportParams, bag: Path) -> str:
    if params.camera_config:
        return params.camera_config
    from lingbot_va_ros.recording.bag_reader import open_bag, topic_counts

    with open_bag(bag) as reader:
        names = topic_counts(reader)
    return SIM_CAMERA_CONFIG if any(t.startswith("/sim_arm/") for t in names) else ROBOT_CAMERA_CONFIG


def export(params: ExportParams, log=print) -> tuple[DatasetMetadata, list[DemoEpisode], dict]:
    """Run the export; returns the written dataset's metadata, its episodes and timing figures."""
    from lingbot_va_ros.model.embodiment import load_embodiment

    started = time.perf_counter()
    prepare_output(params.out, params.force)   # fail before reading anything
    selected = select_bags(params, log)
    names = {str(info.get("embodiment") or "") for _, info in selected}
    name = params.embodiment or (names.pop() if len(names) == 1 else "")
    if not name:
        raise ExportError(f"the bags name embodiments {sorted(names)}; pass --embodiment")
    try:
        embodiment = load_embodiment(name)
    except (OSError, ValueError) as exc:
        raise ExportError(f"embodiment {name!r}: {exc}") from None
    episodes: list[DemoEpisode] = []
    skipped = []
    for bag, info in selected:
        try:
            cameras = camera_topics_from_ingest(_camera_config(params, bag), embodiment)
            extra = {"progress_score": info["progress_score"]} if info.get("progress_score") is not None else {}
            ep = bag_to_episode(bag, embodiment, cameras, episode_index=len(episodes), fps=params.fps,
                                task=params.task or None, state_topic=params.state_topic,
                                max_frame_age_s=params.max_frame_age_s, urdf=params.urdf or None,
                                extra_metadata=extra)
        except (ExportError, ParameterError, ValueError) as exc:
            if not params.skip_bad:
                raise ExportError(str(exc)) from None
            skipped.append(f"{bag}: {exc}")
            log(f"skip {bag}: {exc}")
            continue
        log(f"episode {ep.episode_index}: {bag} ({ep.num_rows} rows, {ep.metadata.get('source')}, "
            f"outcome '{ep.metadata.get('outcome')}')")
        episodes.append(ep)
    if not episodes:
        raise ExportError("no episode could be exported:\n  " + "\n  ".join(skipped))
    read_s = time.perf_counter() - started
    meta = write_lerobot_dataset(params.out, episodes, force=params.force, video_codec=params.video_codec,
                                 used_action_channel_ids=embodiment.used_action_channel_ids,
                                 robot_type=embodiment.name,
                                 extra_meta={"exported_from": [str(b) for b, _ in selected], "skipped": skipped})
    total_s = time.perf_counter() - started
    rows = sum(e.num_rows for e in episodes)
    return meta, episodes, {"read_s": read_s, "total_s": total_s, "rows": rows}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lingbot-va-export", description=(
        "Turn recorded episode bags (model trials and tele-operated demos) into one LeRobot v2.1 dataset "
        "(docs/dataset.md)."))
    p.add_argument("bags", nargs="+", help="bag directories or folders of bags")
    p.add_argument("--out", required=True, help="dataset root to create")
    p.add_argument("--embodiment", default="", help="embodiment name or YAML (default: from the bags)")
    p.add_argument("--outcome", dest="outcomes", nargs="+", default=[], choices=OUTCOMES,
                   help="keep only these outcomes")
    p.add_argument("--min-score", type=float, default=None, help="minimum Progress Score of annotated episodes")
    p.add_argument("--force", action="store_true", help="replace an existing dataset")
    p.add_argument("--fps", type=float, default=None, help="row rate (default: the embodiment's control_hz)")
    p.add_argument("--camera-config", default="", help="camera ingest params YAML (topic -> role)")
    p.add_argument("--state-topic", default=topics.JOINT_STATES)
    p.add_argument("--video-codec", default=DEFAULT_CODEC, choices=sorted(VIDEO_CODECS))
    p.add_argument("--max-frame-age", dest="max_frame_age_s", type=float, default=0.5)
    p.add_argument("--task", default="", help="prompt for bags that have none")
    p.add_argument("--urdf", default="", help="URDF for ee_relative demo conversion")
    p.add_argument("--skip-bad", action="store_true", help="skip bags that fail instead of stopping")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = vars(build_parser().parse_args(argv))
    try:
        params = ExportParams.from_dict(args, source="lingbot-va-export")
        meta, episodes, timing = export(params)
    except (ExportError, ParameterError, FileExistsError, ValueError, OSError) as exc:
        print(f"lingbot-va-export: {exc}", file=sys.stderr)
        return 2
    q = meta.lingbot_va_stats
    print(f"wrote {meta.root}: {len(episodes)} episodes, {timing['rows']} rows at {meta.fps:g} fps, cameras "
          f"{meta.camera_roles}, in {timing['total_s']:.1f} s")
    if "q01" in q:
        print(f"q01: {[round(v, 4) for v in q['q01']]}\nq99: {[round(v, 4) for v in q['q99']]}\n(paste into the "
              f"embodiment YAML; also in {meta.root / 'meta/lingbot_va_stats.json'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
