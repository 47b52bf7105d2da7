"""The ``ros2 bag record`` command line equivalent to the built-in recorder's topic list (for launch files on
machines with rosbag2). It records one bag for the whole session; per-episode bags and the episode metadata
(prompt, configs, checkpoint hash, outcome) need the built-in recorder."""
from __future__ import annotations

import datetime as _dt
import shlex
from pathlib import Path
from typing import Mapping

from lingbot_va_ros.recording.params import RecorderParams
from lingbot_va_ros.recording.selection import TopicSelector, anchored_alternation

RECORDER_NODE = "lingbot_va_recorder"


def _load_params(params: RecorderParams | str | Path | None) -> RecorderParams:
    if params is None:
        return RecorderParams()
    if isinstance(params, RecorderParams):
        return params
    return RecorderParams.from_yaml(params, RECORDER_NODE)


def ros2_bag_record_command(params: RecorderParams | str | Path | None, recording_dir: str | Path,
                            *, name: str | None = None, storage_preset: str = "fastwrite",
                            custom_data: Mapping[str, str] | None = None) -> list[str]:
    """argv of ``ros2 bag record -s mcap`` for the recorder's topics (``params``: schema or recorder YAML).

    ``storage_preset='fastwrite'`` makes the MCAP plugin write unchunked, so a killed ``ros2 bag record`` loses
    little (recover the bag with ``ros2 bag reindex``); pass "" for rosbag2's default chunked writer.
    """
    p = _load_params(params)
    selector = TopicSelector(p.topics, p.exclude_topics)
    name = name or f"session-{_dt.datetime.now(_dt.timezone.utc).strftime('%Y%m%d-%H%M%S')}"
    argv = ["ros2", "bag", "record", "-s", "mcap", "-o", str(Path(recording_dir) / name),
            "--node-name", f"{RECORDER_NODE}_rosbag2", "--disable-keyboard-controls"]
    if storage_preset:
        argv += ["--storage-preset-profile", storage_preset]
    if selector.exact_names:
        argv += ["--topics", *selector.exact_names]
    if selector.globs:
        argv += ["--regex", anchored_alternation(selector.globs)]
    if p.exclude_topics:
        argv += ["--exclude-regex", anchored_alternation(p.exclude_topics)]
    data = {"lingbot_va.recorder": "ros2 bag record", **(custom_data or {})}
    argv += ["--custom-data", *[f"{k}={v}" for k, v in data.items()]]
    return argv


def ros2_bag_record_string(params: RecorderParams | str | Path | None, recording_dir: str | Path, **kwargs) -> str:
    """The same command as one shell-quoted string (to paste into a terminal)."""
    return shlex.join(ros2_bag_record_command(params, recording_dir, **kwargs))
