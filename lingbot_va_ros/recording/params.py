"""Parameter schema of the recorder node (the single source of defaults, ranges and docs)."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from lingbot_va_ros.common import topics
from lingbot_va_ros.common.params import NodeParams

# Everything needed to score, debug and replay a trial. Globs (fnmatch) match topics that appear later.
DEFAULT_TOPICS = [
    topics.OBSERVATION, topics.ACTION_CHUNK, topics.ACTION_TICK, topics.EXECUTED_ACTIONS, topics.COMMAND,
    topics.PREDICTED_FRAMES, topics.PREDICTED_TRAJECTORY, topics.EXECUTOR_STATE, topics.JOINT_STATES,
    topics.DIAGNOSTICS, "/sim_arm/*/image_raw", "/tf", "/tf_static",
    # the live view: what the model imagined, per chunk, and how it compared with what happened
    topics.PREDICTED_FRAMES_COMPRESSED, topics.PREDICTED_FRAMES_INFO, topics.PREDICTION_VS_REAL,
    topics.PREDICTION_VS_REAL_COMPRESSED, topics.PREDICTION_VS_REAL_INFO, topics.PREDICTED_LATENTS,
    topics.PREDICTION_ERROR,
]


class RecorderParams(NodeParams):
    recording_dir: str = Field("recordings", min_length=1, description="bags are written to "
                               "<recording_dir>/<episode_id>/ (created when missing)")
    mode: Literal["episodes", "continuous"] = Field(
        "episodes", description="episodes = one bag per episode, opened and closed through "
        "/lingbot_va/recorder/control; continuous = one bag from start-up to shutdown")
    auto_episodes: bool = Field(True, description=(
        "episodes mode: open a bag by itself when an ActionTick of a new episode arrives (inference's initial tick) "
        "and close it when the RunEpisode goal ends, so episodes are recorded even without control commands; a "
        "'start' command for the same episode adopts the bag and adds the prompt and metadata"))
    auto_close_delay_s: float = Field(3.0, ge=0.0, le=60.0, description=(
        "auto episodes: keep recording this long after the RunEpisode goal ended (the arm is still executing the "
        "last chunk and its key frames and executed actions are still coming)"))
    session_name: str = Field("", description="continuous mode: bag folder name (default: session-<UTC time>)")
    topics: list[str] = Field(default_factory=lambda: list(DEFAULT_TOPICS), min_length=1, description=(
        "topics to record: exact names or globs (* within one name segment, ** across: /sim_arm/*/image_raw); "
        "topics that appear later are picked up by the periodic discovery"))
    exclude_topics: list[str] = Field(default_factory=list, description="names or globs never recorded")
    discovery_period_s: float = Field(1.0, gt=0, le=10, description="how often the graph is searched for "
                                      "matching topics that are not subscribed yet")
    flush_period_s: float = Field(0.5, gt=0, le=1.0, description=(
        "crash-safety bound: at this period the pending MCAP chunk is closed and written to the file, so a "
        "killed recorder loses at most about this much data (see docs/recording.md)"))
    fsync: bool = Field(False, description="also fsync at every flush (survives power loss, not only a killed "
                        "process; costs disk bandwidth on slow media)")
    compression: Literal["none", "zstd"] = Field("none", description="MCAP chunk compression (zstd saves space "
                                                 "on state topics; camera images barely compress)")
    queue_depth: int = Field(100, ge=1, le=10000, description=(
        "subscription queue depth (keep-last) of best-effort topics (cameras); reliable topics are subscribed "
        "keep-all, so a stalled recorder loses nothing their publishers still hold"))
    max_episode_s: float = Field(0.0, ge=0.0, description="close an episode bag automatically after this many "
                                 "seconds without a stop command (0 = never; a new start always closes it)")
    status_period_s: float = Field(1.0, gt=0, le=10, description="period of /lingbot_va/recorder/status updates "
                                   "while recording (also published on every change)")
    metadata_files: list[str] = Field(default_factory=list, description=(
        "config files whose path and sha256 are stored in every bag's custom_data (lingbot_va.configs)"))

    @field_validator("exclude_topics", "metadata_files", mode="before")
    @classmethod
    def _drop_empty(cls, values: list[str]) -> list[str]:
        # [""] is how a launch file or params YAML spells "none" (ROS parameters have no empty string array)
        return [v for v in values if v] if isinstance(values, list) else values

    @field_validator("topics", "exclude_topics")
    @classmethod
    def _absolute_names(cls, names: list[str]) -> list[str]:
        bad = [n for n in names if not n.startswith("/")]
        if bad:
            raise ValueError(f"topic names must be absolute (start with '/'): {bad}")
        return names
