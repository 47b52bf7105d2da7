"""Offline replay: drive a policy backend with a recorded episode's inputs, in the live pipeline's call order,
and compare the new chunks with the recorded ones.

The live :class:`~lingbot_va_ros.inference.pipeline.EpisodeRunner` runs the replay, fed from an
:class:`~lingbot_va_ros.inference.inputs.EpisodeInputs` pre-filled with the bag's key frames and executed
actions, so reset / predict / ground / imagine happen exactly as in the recorded mode (deadline fallback
off: nothing is late offline). With the same checkpoint, config and seed the chunks must come out identical.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lingbot_va_ros.inference.backend import ChunkPrediction, PolicyBackend
from lingbot_va_ros.inference.inputs import EpisodeInputs, InputError, validate_keyframe
from lingbot_va_ros.inference.pipeline import MODES, DeadlinePolicy, EpisodeLimits, EpisodeRunner
from lingbot_va_ros.replay.episode import RecordedChunk, RecordedEpisode


class ReplayError(RuntimeError):
    """The recorded episode does not fit the backend (cameras, image sizes, channels)."""


@dataclass(frozen=True)
class ChunkComparison:
    chunk_index: int
    recorded_start: int
    replayed_start: int
    recorded_shape: tuple[int, int]
    replayed_shape: tuple[int, int]
    max_abs: float                    # nan when the shapes differ
    mean_abs: float

    @property
    def comparable(self) -> bool:
        return self.recorded_shape == self.replayed_shape and self.recorded_start == self.replayed_start

    def within(self, atol: float) -> bool:
        return self.comparable and self.max_abs <= atol


@dataclass
class ReplayResult:
    mode: str
    outcome: str                      # the runner's: completed | aborted
    reason: str
    recorded_chunks: int
    comparisons: list[ChunkComparison] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)

    @property
    def max_abs(self) -> float:
        vals = [c.max_abs for c in self.comparisons if c.comparable]
        return max(vals) if vals else float("nan")

    @property
    def mean_abs(self) -> float:
        vals = [c.mean_abs for c in self.comparisons if c.comparable]
        return float(np.mean(vals)) if vals else float("nan")

    def passed(self, atol: float, expected_chunks: int | None = None) -> bool:
        expected = self.recorded_chunks if expected_chunks is None else expected_chunks
        return (len(self.comparisons) == expected and expected > 0
                and all(c.within(atol) for c in self.comparisons))


def compare_chunk(recorded: RecordedChunk, replayed: ChunkPrediction) -> ChunkComparison:
    a, b = recorded.actions, np.asarray(replayed.actions, dtype=np.float32)
    if a.shape == b.shape:
        diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
        max_abs, mean_abs = float(diff.max()), float(diff.mean())
    else:
        max_abs = mean_abs = float("nan")
    return ChunkComparison(recorded.chunk_index, recorded.start_index, int(replayed.start_index),
                           tuple(a.shape), tuple(b.shape), max_abs, mean_abs)


def prefill_inputs(episode: RecordedEpisode, backend: PolicyBackend) -> EpisodeInputs:
    spec = backend.spec
    if episode.channel_names and tuple(episode.channel_names) != tuple(spec.channel_names):
        raise ReplayError(f"recorded channels {list(episode.channel_names)} differ from the backend's "
                          f"{list(spec.channel_names)} (other embodiment?)")
    inputs = EpisodeInputs(spec)
    inputs.start(episode.episode_id)
    try:
        for index, images in sorted(episode.keyframes.items()):
            frame = validate_keyframe(spec, list(images), list(images.values()))
            inputs.add_keyframe(episode.episode_id, index, episode.keyframe_stamps.get(index, 0), frame)
        for index, row in sorted(episode.executed.items()):
            inputs.add_executed(episode.episode_id, index, row[None, :])
    except InputError as exc:
        raise ReplayError(f"recorded inputs do not fit the backend: {exc}") from None
    return inputs


def replay_episode(episode: RecordedEpisode, backend: PolicyBackend, mode: str | None = None,
                   max_chunks: int = 0, feedback_timeout_s: float = 1.0) -> ReplayResult:
    mode = mode or episode.recorded_mode
    if mode not in MODES:
        raise ReplayError(f"unknown mode '{mode}' (one of {', '.join(MODES)})")
    inputs = prefill_inputs(episode, backend)
    n = len(episode.chunks) if not max_chunks else min(max_chunks, len(episode.chunks))
    replayed: list[ChunkPrediction] = []
    runner = EpisodeRunner(backend, inputs, mode, lambda pub: replayed.append(pub.prediction),
                           limits=EpisodeLimits(max_chunks=n), deadline=DeadlinePolicy(fallback_to_sync_after=0),
                           initial_timeout=feedback_timeout_s, feedback_timeout=feedback_timeout_s,
                           control_period=episode.control_period_s)
    outcome, reason = runner.run(episode.prompt)
    recorded = {c.chunk_index: c for c in episode.chunks}
    result = ReplayResult(mode, outcome, reason, n, calls=list(runner.stats.calls))
    for pred in replayed:
        if pred.chunk_index in recorded:
            result.comparisons.append(compare_chunk(recorded[pred.chunk_index], pred))
    return result
