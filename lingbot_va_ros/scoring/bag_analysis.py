"""What a trial report shows from a bag: inference latency per chunk, arm idle gaps, a few live-view frames, and
per chunk the predicted key frame beside the real one (/lingbot_va/prediction_vs_real) with the prediction error.

Everything is read with an EMPTY typestore (types from the bag), so old bags stay readable after the
project's messages change.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from lingbot_va_ros.common import topics
from lingbot_va_ros.common.conversions import MessageError, compressed_msg_to_rgb, image_msg_to_rgb
from lingbot_va_ros.recording.bag_reader import BagError, iter_messages, open_bag, read_episode_info, topic_counts


@dataclass(frozen=True)
class ChunkRecord:
    t_s: float                  # receive time, seconds since the bag's first message
    chunk_index: int
    latency_s: float
    start_index: int
    rows: int
    mode: str


@dataclass(frozen=True)
class IdleGap:
    t_s: float                  # when the arm stopped (seconds since the bag's first message)
    duration_s: float           # time beyond what the executed actions needed
    after_action_index: int


@dataclass(frozen=True)
class PredictionVsReal:
    """One /lingbot_va/prediction_vs_real image (real key frame k | its prediction) with its info."""

    t_s: float                  # receive time, seconds since the bag's first message
    chunk_index: int
    action_index: int
    pixel_mse: float
    rgb: np.ndarray


@dataclass
class EpisodeAnalysis:
    bag: Path
    info: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    duration_s: float = 0.0
    control_period_s: float | None = None
    chunks: list[ChunkRecord] = field(default_factory=list)
    idle_gaps: list[IdleGap] = field(default_factory=list)
    idle_source: str = ""       # "action_tick" | "command" | "" (nothing to measure)
    active_span_s: float = 0.0  # first to last measured action
    frames: list[tuple[float, np.ndarray]] = field(default_factory=list)
    predicted_frames_per_chunk: dict[int, int] = field(default_factory=dict)   # predicted_frames_info per chunk
    predictions: list[PredictionVsReal] = field(default_factory=list)           # first one per chunk, in order
    latent_mse: dict[int, float] = field(default_factory=dict)                  # chunk -> PredictionError.latent_mse
    error: str = ""

    @property
    def latencies(self) -> np.ndarray:
        return np.array([c.latency_s for c in self.chunks], dtype=float)

    def latency_stats(self) -> dict[str, float]:
        lat = self.latencies
        if lat.size == 0:
            return {}
        return {"median_s": float(np.median(lat)), "p95_s": float(np.percentile(lat, 95)),
                "max_s": float(lat.max()), "mean_s": float(lat.mean())}

    @property
    def idle_total_s(self) -> float:
        return float(sum(g.duration_s for g in self.idle_gaps))

    @property
    def idle_fraction(self) -> float:
        return self.idle_total_s / self.active_span_s if self.active_span_s > 0 else 0.0


def idle_gaps_from_ticks(stamps_ns: Sequence[int], action_indices: Sequence[int], period_s: float,
                         tolerance_s: float | None = None, t0_ns: int = 0) -> list[IdleGap]:
    """Gaps between consecutive key-frame ticks beyond (index difference x control period).

    A tick is stamped when its action was commanded, so between two ticks the arm needed exactly
    ``(i1 - i0) * period``; anything more is time it stood still waiting for a chunk."""
    tolerance_s = max(2.0 * period_s, 0.01) if tolerance_s is None else tolerance_s
    pairs = sorted({int(i): int(t) for t, i in zip(stamps_ns, action_indices) if int(i) >= 0}.items())
    gaps = []
    for (i0, t0), (i1, t1) in zip(pairs, pairs[1:]):
        idle = (t1 - t0) / 1e9 - (i1 - i0) * period_s
        if idle > tolerance_s:
            gaps.append(IdleGap((t0 - t0_ns) / 1e9, idle, i0))
    return gaps


def idle_gaps_from_commands(stamps_ns: Sequence[int], period_s: float, tolerance_s: float | None = None,
                            t0_ns: int = 0) -> list[IdleGap]:
    """Fallback without ticks: gaps in the per-tick command stream longer than one control period.
    (An executor that keeps publishing a hold command while waiting shows no gaps here.)"""
    tolerance_s = max(2.0 * period_s, 0.01) if tolerance_s is None else tolerance_s
    ts = sorted(int(t) for t in stamps_ns)
    gaps = []
    for k, (a, b) in enumerate(zip(ts, ts[1:])):
        idle = (b - a) / 1e9 - period_s
        if idle > tolerance_s:
            gaps.append(IdleGap((a - t0_ns) / 1e9, idle, k))
    return gaps


def _stamp_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def analyse_bag(path: str | Path, max_frames: int = 4, frames_topic: str = topics.PREDICTED_FRAMES,
                control_period_s: float | None = None, max_strip: int = 24) -> EpisodeAnalysis:
    """Read one bag; errors end up in ``.error`` so a report can list the bag instead of failing."""
    result = EpisodeAnalysis(Path(path))
    try:
        result.info = read_episode_info(path)
        with open_bag(path) as reader:
            result.counts = topic_counts(reader)
            t0 = reader.start_time
            result.duration_s = max(0, reader.end_time - reader.start_time) / 1e9
            n_frames = result.counts.get(frames_topic, 0)
            wanted = set(np.linspace(0, n_frames - 1, min(max_frames, n_frames)).round().astype(int).tolist()) \
                if n_frames else set()
            frame_k = 0
            ticks: list[tuple[int, int]] = []
            commands: list[int] = []
            periods: list[float] = []
            for topic, t_ns, msg in iter_messages(reader, [topics.ACTION_CHUNK, topics.ACTION_TICK, topics.COMMAND,
                                                           frames_topic]):
                if topic == topics.ACTION_CHUNK:
                    rows = int(msg.shape[0]) if len(msg.shape) else 0
                    result.chunks.append(ChunkRecord((t_ns - t0) / 1e9, int(msg.chunk_index),
                                                     float(msg.inference_latency), int(msg.start_index), rows,
                                                     str(msg.mode)))
                    period = msg.control_period.sec + msg.control_period.nanosec * 1e-9
                    if period > 0:
                        periods.append(period)
                elif topic == topics.ACTION_TICK:
                    ticks.append((_stamp_ns(msg.header.stamp) or t_ns, int(msg.action_index)))
                elif topic == topics.COMMAND:
                    commands.append(_stamp_ns(msg.header.stamp) or t_ns)
                elif topic == frames_topic:
                    if frame_k in wanted:
                        try:
                            result.frames.append(((t_ns - t0) / 1e9, image_msg_to_rgb(msg)))
                        except MessageError:
                            pass
                    frame_k += 1
            _read_predictions(reader, result, t0, max_strip)
        result.control_period_s = control_period_s or (float(np.median(periods)) if periods else None)
        period = result.control_period_s
        if period and len(ticks) >= 2:
            result.idle_source = "action_tick"
            result.idle_gaps = idle_gaps_from_ticks([t for t, _ in ticks], [i for _, i in ticks], period, t0_ns=t0)
            valid = [t for t, i in ticks if i >= 0]
            result.active_span_s = (max(valid) - min(valid)) / 1e9 if len(valid) >= 2 else 0.0
        elif period and len(commands) >= 2:
            result.idle_source = "command"
            result.idle_gaps = idle_gaps_from_commands(commands, period, t0_ns=t0)
            result.active_span_s = (max(commands) - min(commands)) / 1e9
    except (BagError, OSError, KeyError, ValueError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    return result


def _header_key(msg) -> tuple[int, str]:
    return _stamp_ns(msg.header.stamp), str(msg.header.frame_id)


def _read_predictions(reader, result: EpisodeAnalysis, t0: int, max_strip: int) -> None:
    """Live-view facts: predicted-frame messages per chunk, latent error per grounded chunk, and the first
    prediction-vs-real image of up to ``max_strip`` chunks (matched to its info by the shared header)."""
    wanted: dict[tuple[int, str], object] = {}
    chosen: set[int] = set()
    for topic, _t, msg in iter_messages(reader, [topics.PREDICTED_FRAMES_INFO, topics.PREDICTION_VS_REAL_INFO,
                                                 topics.PREDICTION_ERROR]):
        if topic == topics.PREDICTED_FRAMES_INFO:
            chunk = int(msg.chunk_index)
            result.predicted_frames_per_chunk[chunk] = result.predicted_frames_per_chunk.get(chunk, 0) + 1
        elif topic == topics.PREDICTION_ERROR:
            result.latent_mse[int(msg.chunk_index)] = float(msg.latent_mse)
        elif int(msg.chunk_index) not in chosen and len(chosen) < max_strip:
            chosen.add(int(msg.chunk_index))
            wanted[_header_key(msg)] = msg
    if not wanted:
        return
    found: dict[tuple[int, str], PredictionVsReal] = {}
    # the raw image when recorded, else its JPEG (a bag may keep only the compressed stream)
    for topic, t_ns, msg in iter_messages(reader, [topics.PREDICTION_VS_REAL, topics.PREDICTION_VS_REAL_COMPRESSED]):
        key = _header_key(msg)
        info = wanted.get(key)
        if info is None or (key in found and topic == topics.PREDICTION_VS_REAL_COMPRESSED):
            continue
        try:
            rgb = image_msg_to_rgb(msg) if topic == topics.PREDICTION_VS_REAL else compressed_msg_to_rgb(msg)
        except MessageError:
            continue
        found[key] = PredictionVsReal((t_ns - t0) / 1e9, int(info.chunk_index), int(info.action_index),
                                      float(info.pixel_mse), rgb)
    result.predictions = sorted(found.values(), key=lambda p: p.chunk_index)
