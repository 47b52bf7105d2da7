"""A recorded episode as replay inputs: prompt, initial observation, the recorded chunks, and per chunk the key
frames and executed actions that grounded it (matched by action index, as the live pipeline does)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lingbot_va_ros.common import topics
from lingbot_va_ros.common.conversions import MessageError, image_msg_to_rgb, unpack_matrix
from lingbot_va_ros.recording.bag_reader import iter_messages, open_bag, read_episode_info


class EpisodeError(ValueError):
    """The bag does not hold a replayable episode; the text says what is missing."""


@dataclass(frozen=True)
class RecordedChunk:
    chunk_index: int
    start_index: int
    actions: np.ndarray              # [rows, channels] float32
    mode: str
    inference_latency: float
    observation_action_index: int
    control_period_s: float

    @property
    def rows(self) -> int:
        return int(self.actions.shape[0])


@dataclass
class RecordedEpisode:
    bag: Path
    episode_id: str
    prompt: str
    info: dict[str, Any]
    chunks: list[RecordedChunk]
    keyframes: dict[int, dict[str, np.ndarray]]        # action index -> camera -> HxWx3 RGB
    keyframe_stamps: dict[int, int]
    executed: dict[int, np.ndarray]                     # action index -> executed row
    channel_names: tuple[str, ...] = ()
    action_space: str = ""
    camera_names: tuple[str, ...] = ()

    @property
    def initial_observation(self) -> dict[str, np.ndarray] | None:
        return self.keyframes.get(-1)

    @property
    def recorded_mode(self) -> str:
        modes = [c.mode for c in self.chunks if c.mode]
        return modes[0] if modes else str(self.info.get("pipeline_mode") or "sync")

    @property
    def fell_back_to_sync(self) -> bool:
        """An async episode whose later chunks were produced in sync mode (deadline fallback)."""
        modes = [c.mode for c in self.chunks if c.mode]
        return bool(modes) and modes[0] != "sync" and "sync" in modes

    @property
    def control_period_s(self) -> float | None:
        periods = [c.control_period_s for c in self.chunks if c.control_period_s > 0]
        return float(np.median(periods)) if periods else None


@dataclass(frozen=True)
class ChunkInputs:
    """What grounding the recorded chunk needs, and whether the bag has it."""

    chunk: RecordedChunk
    keyframe_indices: tuple[int, ...]
    missing_keyframes: tuple[int, ...] = ()
    missing_actions: tuple[int, ...] = ()
    keyframes: tuple[dict[str, np.ndarray], ...] = field(default=(), repr=False)
    executed: np.ndarray | None = field(default=None, repr=False)

    @property
    def complete(self) -> bool:
        return not self.missing_keyframes and not self.missing_actions


def keyframe_indices(start_index: int, rows: int, actions_per_keyframe: int) -> list[int]:
    """Action indices of the key frames captured while a chunk ran (one after every k-th action)."""
    return [start_index + k * actions_per_keyframe - 1 for k in range(1, rows // actions_per_keyframe + 1)]


def _episode_ids(bag: Path) -> list[str]:
    ids: dict[str, None] = {}
    with open_bag(bag) as reader:
        for _, _, msg in iter_messages(reader, [topics.ACTION_CHUNK]):
            ids[str(msg.episode_id)] = None
    return list(ids)


def load_episode(bag: str | Path, episode_id: str | None = None) -> RecordedEpisode:
    """Everything replay needs from one episode of a bag (the bag's only episode unless ``episode_id``)."""
    bag = Path(bag)
    info = read_episode_info(bag)
    if not episode_id:
        ids = _episode_ids(bag)
        if not ids:
            raise EpisodeError(f"{bag}: no {topics.ACTION_CHUNK} messages; nothing to replay")
        if len(ids) > 1:
            raise EpisodeError(f"{bag} holds episodes {ids}; choose one with --episode-id")
        episode_id = ids[0]
    prompt = str(info.get("prompt", ""))
    if info.get("episode_id") not in (None, "", episode_id):   # a continuous-mode bag: prompts per episode
        for ep in info.get("episodes") or []:
            if isinstance(ep, dict) and ep.get("episode_id") == episode_id:
                prompt = str(ep.get("prompt", ""))
    episode = RecordedEpisode(bag, episode_id, prompt, info, [], {}, {}, {})
    with open_bag(bag) as reader:
        for topic, _, msg in iter_messages(reader, [topics.OBSERVATION, topics.ACTION_CHUNK, topics.EXECUTED_ACTIONS]):
            if str(msg.episode_id) != episode_id:
                continue
            try:
                if topic == topics.OBSERVATION:
                    _add_observation(episode, msg)
                elif topic == topics.ACTION_CHUNK:
                    _add_chunk(episode, msg)
                else:
                    rows = unpack_matrix(msg.shape, msg.actions, what="executed actions")
                    for k, row in enumerate(rows):
                        episode.executed[int(msg.start_index) + k] = row
            except MessageError as exc:
                raise EpisodeError(f"{bag}: bad {topic} message in episode {episode_id}: {exc}") from None
    if not episode.chunks:
        raise EpisodeError(f"{bag}: episode '{episode_id}' has no action chunks")
    episode.chunks.sort(key=lambda c: c.chunk_index)
    if episode.initial_observation is None:
        raise EpisodeError(f"{bag}: episode '{episode_id}' has no initial observation (action_index -1); was "
                           f"{topics.OBSERVATION} recorded from the start of the episode?")
    return episode


def _add_observation(episode: RecordedEpisode, msg) -> None:
    index = int(msg.action_index)
    if index in episode.keyframes:   # a republished key frame: the first one is what inference used
        return
    names = tuple(str(n) for n in msg.camera_names)
    if len(names) != len(msg.images):
        raise MessageError(f"{len(msg.images)} images for {len(names)} camera names")
    episode.keyframes[index] = {n: image_msg_to_rgb(img) for n, img in zip(names, msg.images)}
    episode.keyframe_stamps[index] = int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)
    episode.camera_names = episode.camera_names or names


def _add_chunk(episode: RecordedEpisode, msg) -> None:
    if any(c.chunk_index == int(msg.chunk_index) for c in episode.chunks):
        return
    actions = unpack_matrix(msg.shape, msg.actions, what=f"chunk {msg.chunk_index}")
    period = msg.control_period.sec + msg.control_period.nanosec * 1e-9
    episode.chunks.append(RecordedChunk(int(msg.chunk_index), int(msg.start_index), actions, str(msg.mode),
                                        float(msg.inference_latency), int(msg.observation_action_index), period))
    episode.channel_names = episode.channel_names or tuple(str(n) for n in msg.channel_names)
    episode.action_space = episode.action_space or str(msg.action_space)


def chunk_inputs(episode: RecordedEpisode, actions_per_keyframe: int) -> list[ChunkInputs]:
    """Per recorded chunk: the key frames and executed rows that grounded it (missing ones listed)."""
    out = []
    for chunk in episode.chunks:
        kf_idx = keyframe_indices(chunk.start_index, chunk.rows, actions_per_keyframe)
        rows = range(chunk.start_index, chunk.start_index + chunk.rows)
        missing_kf = tuple(i for i in kf_idx if i not in episode.keyframes)
        missing_rows = tuple(i for i in rows if i not in episode.executed)
        executed = np.stack([episode.executed[i] for i in rows]) if not missing_rows else None
        out.append(ChunkInputs(chunk, tuple(kf_idx), missing_kf, missing_rows,
                               tuple(episode.keyframes[i] for i in kf_idx if i in episode.keyframes), executed))
    return out


def infer_actions_per_keyframe(episode: RecordedEpisode) -> int | None:
    """Key-frame spacing seen in the recording (smallest positive gap between key-frame indices)."""
    idx = sorted(i for i in episode.keyframes if i >= 0)
    gaps = {b - a for a, b in zip(idx, idx[1:]) if b > a}
    if idx and not gaps:
        return idx[0] + 1
    return min(gaps) if gaps else None
