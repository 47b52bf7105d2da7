"""LeRobot dataset format v2.1 (``codebase_version: v2.1``, what lerobot 0.3.3 and the official LingBot-VA
post-training read): write :class:`DemoEpisode` objects to it and read them back.

Layout (``root/``)::

    meta/info.json                 codebase_version, fps, totals, path templates, features (dtype/shape/names)
    meta/episodes.jsonl            {episode_index, tasks: [prompt], length, action_config: [segment], lingbot_va}
    meta/tasks.jsonl               {task_index, task}
    meta/episodes_stats.jsonl      {episode_index, stats: {feature: {min, max, mean, std, count}}}
    meta/lingbot_va.json           embodiment, action space, channel / state names, camera roles, q01/q99, sources
    meta/lingbot_va_stats.json     the 30-d q01/q99 of the actions (paste into the embodiment YAML)
    data/chunk-000/episode_000000.parquet     one row per control tick
    videos/chunk-000/observation.images.<role>/episode_000000.mp4

Parquet columns: ``action`` float32[C] (the embodiment's action space, channel_names order),
``observation.state`` float32[S] (measured joints), ``timestamp`` float32 (= frame_index / fps, LeRobot's nominal
row time, which its loader checks to 1e-4 s), ``frame_index``, ``episode_index``, ``index`` (global row),
``task_index`` (int64), and ``recorded_time`` float64 (when the row's action was really commanded, s since row 0).
Episodes go 1000 per chunk folder (LeRobot's ``chunks_size``). ``action_config`` holds one segment per episode
(start_frame 0, end_frame length, action_text = prompt): the official LingBot-VA loader trains on segments.

The writer builds the whole dataset in a sibling temporary folder and moves it into place at the end, so a
failed export never leaves a half-written dataset, and it refuses to replace an existing one without ``force``.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from lingbot_va_ros.dataset.episode import DemoEpisode
from lingbot_va_ros.dataset.stats import action_quantiles, image_stats, vector_stats
from lingbot_va_ros.dataset.video import DEFAULT_CODEC, decode_video, encode_video

CODEBASE_VERSION = "v2.1"
CHUNKS_SIZE = 1000
DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
IMAGE_PREFIX = "observation.images."
TIMESTAMP_TOLERANCE_S = 1e-4     # LeRobotDataset's default tolerance_s for timestamps vs 1 / fps
LINGBOT_META = "meta/lingbot_va.json"
LINGBOT_STATS = "meta/lingbot_va_stats.json"


class DatasetError(ValueError):
    """A dataset that cannot be written or read; the text names the problem."""


@dataclass
class DatasetMetadata:
    """What ``meta/`` says about a dataset (no data loaded)."""

    root: Path
    info: dict[str, Any]
    episodes: list[dict[str, Any]]
    tasks: dict[int, str]
    episodes_stats: dict[int, dict[str, Any]]
    lingbot_va: dict[str, Any] = field(default_factory=dict)
    lingbot_va_stats: dict[str, Any] = field(default_factory=dict)

    @property
    def fps(self) -> float:
        return float(self.info["fps"])

    @property
    def camera_roles(self) -> list[str]:
        return [k[len(IMAGE_PREFIX):] for k, f in self.info["features"].items()
                if k.startswith(IMAGE_PREFIX) and f.get("dtype") == "video"]

    @property
    def total_episodes(self) -> int:
        return int(self.info["total_episodes"])

    def data_file(self, episode_index: int) -> Path:
        return self.root / self.info["data_path"].format(episode_chunk=episode_index // self.chunks_size,
                                                         episode_index=episode_index)

    def video_file(self, episode_index: int, role: str) -> Path:
        return self.root / self.info["video_path"].format(episode_chunk=episode_index // self.chunks_size,
                                                          video_key=IMAGE_PREFIX + role,
                                                          episode_index=episode_index)

    @property
    def chunks_size(self) -> int:
        return int(self.info.get("chunks_size", CHUNKS_SIZE))


# ---------------------------------------------------------------------------------------------- writing

def _fps_value(fps: float) -> int | float:
    return int(round(fps)) if abs(fps - round(fps)) < 1e-9 else float(fps)


def _check_episodes(episodes: Sequence[DemoEpisode]) -> None:
    if not episodes:
        raise DatasetError("no episodes to write")
    first = episodes[0]
    problems = []
    for k, ep in enumerate(episodes):
        where = f"episode {k} (index {ep.episode_index})"
        if ep.episode_index != k:
            problems.append(f"{where}: episode_index must be {k} (episodes are numbered 0..N-1 in order)")
        if abs(ep.fps - first.fps) > 1e-9:
            problems.append(f"{where}: fps {ep.fps} differs from episode 0's {first.fps}")
        if tuple(ep.channel_names) != tuple(first.channel_names):
            problems.append(f"{where}: channel_names {list(ep.channel_names)} differ from episode 0's "
                            f"{list(first.channel_names)}")
        if tuple(ep.state_names) != tuple(first.state_names):
            problems.append(f"{where}: state_names differ from episode 0's")
        if ep.action_space != first.action_space or ep.embodiment != first.embodiment:
            problems.append(f"{where}: action space / embodiment {ep.action_space}/{ep.embodiment} differ from "
                            f"episode 0's {first.action_space}/{first.embodiment}")
        if sorted(ep.camera_frames) != sorted(first.camera_frames):
            problems.append(f"{where}: cameras {sorted(ep.camera_frames)} differ from episode 0's "
                            f"{sorted(first.camera_frames)}")
        else:
            for role, frames in ep.camera_frames.items():
                if frames.shape[1:] != first.camera_frames[role].shape[1:]:
                    problems.append(f"{where}: camera {role} is {frames.shape[1:3]}, episode 0's is "
                                    f"{first.camera_frames[role].shape[1:3]}")
        nominal = np.arange(ep.num_rows) / ep.fps
        off = np.abs(np.asarray(ep.timestamps, dtype=np.float64) - nominal)
        if off.max() > TIMESTAMP_TOLERANCE_S:
            row = int(off.argmax())
            problems.append(f"{where}: timestamps must be row / fps (LeRobot checks them to "
                            f"{TIMESTAMP_TOLERANCE_S} s); row {row} is {ep.timestamps[row]:.6f} s, expected "
                            f"{nominal[row]:.6f} s (real times belong in recorded_time_s)")
        if not ep.task.strip():
            problems.append(f"{where}: empty task (prompt)")
    if problems:
        raise DatasetError("cannot write the dataset:\n  - " + "\n  - ".join(problems))


def _features(first: DemoEpisode, video_infos: dict[str, dict]) -> dict[str, Any]:
    feats: dict[str, Any] = {
        "action": {"dtype": "float32", "shape": [len(first.channel_names)], "names": list(first.channel_names)},
        "observation.state": {"dtype": "float32", "shape": [len(first.state_names)],
                              "names": list(first.state_names)},
    }
    for role in sorted(first.camera_frames):
        _, h, w, c = first.camera_frames[role].shape
        feats[IMAGE_PREFIX + role] = {"dtype": "video", "shape": [h, w, c], "names": ["height", "width", "channels"],
                                      "info": video_infos[role]}
    feats.update({
        "timestamp": {"dtype": "float32", "shape": [1], "names": None},
        "frame_index": {"dtype": "int64", "shape": [1], "names": None},
        "episode_index": {"dtype": "int64", "shape": [1], "names": None},
        "index": {"dtype": "int64", "shape": [1], "names": None},
        "task_index": {"dtype": "int64", "shape": [1], "names": None},
        "recorded_time": {"dtype": "float64", "shape": [1], "names": None},
    })
    return feats


def _episode_table(ep: DemoEpisode, task_index: int, first_index: int):
    import pyarrow as pa

    t = ep.num_rows
    actions = np.ascontiguousarray(ep.actions, dtype=np.float32)
    states = np.ascontiguousarray(ep.states, dtype=np.float32)
    recorded = (np.asarray(ep.recorded_time_s, dtype=np.float64) if ep.recorded_time_s is not None
                else np.asarray(ep.timestamps, dtype=np.float64))

    def fixed_list(values: np.ndarray) -> pa.Array:
        return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1), type=pa.float32()), values.shape[1])

    return pa.table({
        "action": fixed_list(actions),
        "observation.state": fixed_list(states),
        "timestamp": pa.array((np.arange(t) / ep.fps).astype(np.float32)),
        "frame_index": pa.array(np.arange(t, dtype=np.int64)),
        "episode_index": pa.array(np.full(t, ep.episode_index, dtype=np.int64)),
        "index": pa.array(np.arange(first_index, first_index + t, dtype=np.int64)),
        "task_index": pa.array(np.full(t, task_index, dtype=np.int64)),
        "recorded_time": pa.array(recorded),
    })


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=_json_default) + "\n")


def _write_jsonl(path: Path, rows: Sequence[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, default=_json_default) + "\n" for r in rows))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def prepare_output(root: str | Path, force: bool) -> Path:
    """The output folder, checked: refuses an existing non-empty folder unless ``force``."""
    root = Path(root).expanduser()
    if root.exists() and (not root.is_dir() or any(root.iterdir())) and not force:
        raise FileExistsError(f"{root} exists and is not empty; pass --force to replace it")
    return root


def write_lerobot_dataset(root: str | Path, episodes: Sequence[DemoEpisode], *, force: bool = False,
                          video_codec: str = DEFAULT_CODEC, used_action_channel_ids: Sequence[int] | None = None,
                          robot_type: str | None = None, extra_meta: dict[str, Any] | None = None) -> DatasetMetadata:
    """Write ``episodes`` (numbered 0..N-1) as a LeRobot v2.1 dataset at ``root``.

    ``used_action_channel_ids`` (the embodiment's) places the actions' q01/q99 into the 30-d unified vector of
    ``meta/lingbot_va_stats.json``; without it only per-channel quantiles are written.
    """
    root = prepare_output(root, force)
    episodes = list(episodes)
    _check_episodes(episodes)
    import pyarrow.parquet as pq

    first = episodes[0]
    tmp = root.with_name(f".{root.name}.partial-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        tasks: dict[str, int] = {}
        ep_rows, stats_rows = [], []
        video_infos: dict[str, dict] = {}
        index = 0
        for ep in episodes:
            task_index = tasks.setdefault(ep.task, len(tasks))
            chunk = ep.episode_index // CHUNKS_SIZE
            table = _episode_table(ep, task_index, index)
            data_file = tmp / DATA_PATH.format(episode_chunk=chunk, episode_index=ep.episode_index)
            data_file.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, data_file)
            stats = {"action": vector_stats(ep.actions), "observation.state": vector_stats(ep.states),
                     "timestamp": vector_stats(table.column("timestamp").to_numpy()),
                     "frame_index": vector_stats(np.arange(ep.num_rows)),
                     "episode_index": vector_stats(np.full(ep.num_rows, ep.episode_index)),
                     "index": vector_stats(np.arange(index, index + ep.num_rows)),
                     "task_index": vector_stats(np.full(ep.num_rows, task_index)),
                     "recorded_time": vector_stats(table.column("recorded_time").to_numpy())}
            for role in sorted(ep.camera_frames):
                frames = ep.camera_frames[role]
                video_file = tmp / VIDEO_PATH.format(episode_chunk=chunk, video_key=IMAGE_PREFIX + role,
                                                     episode_index=ep.episode_index)
                video_infos[role] = encode_video(video_file, frames, ep.fps, video_codec)
                stats[IMAGE_PREFIX + role] = image_stats(frames)
            stats_rows.append({"episode_index": ep.episode_index, "stats": stats})
            ep_rows.append({"episode_index": ep.episode_index, "tasks": [ep.task], "length": ep.num_rows,
                            "action_config": [{"start_frame": 0, "end_frame": ep.num_rows, "action_text": ep.task}],
                            "lingbot_va": dict(ep.metadata)})
            index += ep.num_rows
        n = len(episodes)
        info = {
            "codebase_version": CODEBASE_VERSION, "robot_type": robot_type or first.embodiment or None,
            "total_episodes": n, "total_frames": index, "total_tasks": len(tasks),
            "total_videos": n * len(first.camera_frames), "total_chunks": (n - 1) // CHUNKS_SIZE + 1,
            "chunks_size": CHUNKS_SIZE, "fps": _fps_value(first.fps), "splits": {"train": f"0:{n}"},
            "data_path": DATA_PATH, "video_path": VIDEO_PATH, "features": _features(first, video_infos),
        }
        _write_json(tmp / "meta/info.json", info)
        _write_jsonl(tmp / "meta/episodes.jsonl", ep_rows)
        _write_jsonl(tmp / "meta/tasks.jsonl", [{"task_index": i, "task": t} for t, i in tasks.items()])
        _write_jsonl(tmp / "meta/episodes_stats.jsonl", stats_rows)
        quantiles = _quantile_stats([ep.actions for ep in episodes], first, used_action_channel_ids)
        _write_json(tmp / LINGBOT_STATS, quantiles)
        _write_json(tmp / LINGBOT_META, {
            "format": "lingbot_va_dataset/1", "embodiment": first.embodiment, "action_space": first.action_space,
            "channel_names": list(first.channel_names), "state_names": list(first.state_names),
            "camera_roles": sorted(first.camera_frames), "fps": first.fps, "video_codec": video_codec,
            "row_convention": "row t = camera frames and joint state before action t + the action executed at "
                              "tick t (lingbot_va_ros/dataset/episode.py)",
            **(extra_meta or {})})
        if root.exists():
            old = root.with_name(f".{root.name}.replaced-{os.getpid()}")
            os.replace(root, old)
            os.replace(tmp, root)
            shutil.rmtree(old, ignore_errors=True)
        else:
            root.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return read_metadata(root)


def _quantile_stats(actions: list[np.ndarray], first: DemoEpisode,
                    used_ids: Sequence[int] | None) -> dict[str, Any]:
    stacked = np.concatenate([np.asarray(a, dtype=np.float64) for a in actions], axis=0)
    out: dict[str, Any] = {
        "channel_names": list(first.channel_names),
        "q01_per_channel": np.quantile(stacked, 0.01, axis=0).tolist(),
        "q99_per_channel": np.quantile(stacked, 0.99, axis=0).tolist(),
        "rows": int(stacked.shape[0]), "episodes": len(actions),
        "note": "numpy.quantile (linear) over every row of every episode; q01/q99 are the 30-d unified vectors "
                "(used_action_channel_ids) to paste into the embodiment YAML",
    }
    if used_ids is not None:
        out["used_action_channel_ids"] = list(used_ids)
        out["q01"], out["q99"] = action_quantiles(actions, used_ids)
    return out


# ---------------------------------------------------------------------------------------------- reading

def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise DatasetError(f"{path} is missing: not a LeRobot v2.1 dataset")
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError as exc:
                raise DatasetError(f"{path}:{n}: not JSON ({exc})") from None
    return rows


def read_metadata(root: str | Path) -> DatasetMetadata:
    root = Path(root).expanduser()
    info_path = root / "meta/info.json"
    if not info_path.is_file():
        raise DatasetError(f"{root}: no meta/info.json (not a LeRobot dataset)")
    info = json.loads(info_path.read_text())
    if info.get("codebase_version") != CODEBASE_VERSION:
        raise DatasetError(f"{root}: codebase_version {info.get('codebase_version')!r}, this reader reads "
                           f"{CODEBASE_VERSION}")
    episodes = sorted(_read_jsonl(root / "meta/episodes.jsonl"), key=lambda e: e["episode_index"])
    tasks = {int(t["task_index"]): str(t["task"]) for t in _read_jsonl(root / "meta/tasks.jsonl")}
    stats = {int(s["episode_index"]): s["stats"] for s in _read_jsonl(root / "meta/episodes_stats.jsonl")}
    extra = json.loads((root / LINGBOT_META).read_text()) if (root / LINGBOT_META).is_file() else {}
    qstats = json.loads((root / LINGBOT_STATS).read_text()) if (root / LINGBOT_STATS).is_file() else {}
    return DatasetMetadata(root, info, episodes, tasks, stats, extra, qstats)


def iter_lerobot_dataset(root: str | Path, episodes: Sequence[int] | None = None) -> Iterator[DemoEpisode]:
    """Episodes of a LeRobot v2.1 dataset as :class:`DemoEpisode` objects, one at a time (videos decoded)."""
    import pyarrow.parquet as pq

    meta = read_metadata(root)
    feats = meta.info["features"]
    for key in ("action", "observation.state", "timestamp"):
        if key not in feats:
            raise DatasetError(f"{meta.root}: info.json has no '{key}' feature")
    channel_names = tuple(feats["action"].get("names") or [f"a{i}" for i in range(feats["action"]["shape"][0])])
    state_names = tuple(feats["observation.state"].get("names")
                        or [f"s{i}" for i in range(feats["observation.state"]["shape"][0])])
    wanted = None if episodes is None else set(int(e) for e in episodes)
    for entry in meta.episodes:
        index = int(entry["episode_index"])
        if wanted is not None and index not in wanted:
            continue
        data_file = meta.data_file(index)
        if not data_file.is_file():
            raise DatasetError(f"{meta.root}: episode {index}: {data_file} is missing")
        table = pq.read_table(data_file)
        length = int(entry["length"])
        if table.num_rows != length:
            raise DatasetError(f"{data_file}: {table.num_rows} rows, episodes.jsonl says {length}")
        actions = _fixed_list_column(table, "action", len(channel_names), data_file)
        states = _fixed_list_column(table, "observation.state", len(state_names), data_file)
        timestamps = table.column("timestamp").to_numpy().astype(np.float64)
        recorded = (table.column("recorded_time").to_numpy().astype(np.float64)
                    if "recorded_time" in table.column_names else None)
        task_index = int(table.column("task_index")[0].as_py()) if table.num_rows else 0
        frames = {}
        for role in meta.camera_roles:
            video, _ = decode_video(meta.video_file(index, role))
            if len(video) != length:
                raise DatasetError(f"{meta.video_file(index, role)}: {len(video)} frames for {length} rows")
            frames[role] = video
        yield DemoEpisode(episode_index=index, task=meta.tasks.get(task_index, (entry.get("tasks") or [""])[0]),
                          fps=meta.fps, camera_frames=frames, actions=actions, channel_names=channel_names,
                          action_space=str(meta.lingbot_va.get("action_space", "")), states=states,
                          state_names=state_names, timestamps=timestamps,
                          embodiment=str(meta.lingbot_va.get("embodiment", "")),
                          metadata=dict(entry.get("lingbot_va") or {}), recorded_time_s=recorded)


def _fixed_list_column(table, name: str, width: int, where: Path) -> np.ndarray:
    if name not in table.column_names:
        raise DatasetError(f"{where}: no '{name}' column")
    col = table.column(name).combine_chunks()
    values = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
    if values.size != table.num_rows * width:
        raise DatasetError(f"{where}: column '{name}' has {values.size} values for {table.num_rows} rows x "
                           f"{width} (info.json shape)")
    return values.reshape(table.num_rows, width)


def read_lerobot_dataset(root: str | Path, episodes: Sequence[int] | None = None) -> list[DemoEpisode]:
    """Every (or the selected) episode of a LeRobot v2.1 dataset; :func:`read_metadata` gives ``meta/``."""
    return list(iter_lerobot_dataset(root, episodes))
