"""Episode videos: one MP4 per camera and episode, one frame per dataset row, encoded and decoded with PyAV.

Frame ``k`` has pts ``k`` in a ``1/fps`` time base, so its presentation time is ``k / fps`` = the row's LeRobot
``timestamp`` (what LeRobot's decoders seek to).

Codecs (``VIDEO_CODECS``):

- ``lossless`` (default): H.264 "High 4:4:4 Predictive" through ``libx264rgb`` with ``crf 0`` on ``rgb24``
  (planar GBR in the stream). Decoding gives back the exact RGB pixels (max abs error 0), so the dataset holds the
  pixels camera ingest produced for the model. Any FFmpeg-based decoder reads it (PyAV, torchcodec, ffmpeg).
- ``h264``: ``libx264`` yuv420p ``crf 18``: small files that every player shows; chroma subsampling makes it lossy
  (errors concentrate on sharp colour edges).
- ``av1``: ``libsvtav1`` yuv420p ``crf 30``, GOP 2: LeRobot's own default encoding; smallest, lossy.

docs/dataset.md has the measured round-trip errors and sizes of each.
"""
from __future__ import annotations

import contextlib
import fractions
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np


@dataclass(frozen=True)
class VideoCodec:
    name: str              # our preset name
    encoder: str           # FFmpeg encoder
    pix_fmt: str           # pixel format of the encoded stream
    options: tuple[tuple[str, str], ...]
    codec_label: str       # what info.json calls it (video.codec)
    lossless: bool


VIDEO_CODECS: dict[str, VideoCodec] = {
    "lossless": VideoCodec("lossless", "libx264rgb", "rgb24", (("crf", "0"), ("preset", "veryfast")), "h264", True),
    "h264": VideoCodec("h264", "libx264", "yuv420p", (("crf", "18"), ("preset", "veryfast")), "h264", False),
    "av1": VideoCodec("av1", "libsvtav1", "yuv420p", (("crf", "30"), ("g", "2"), ("preset", "8")), "av1", False),
}
DEFAULT_CODEC = "lossless"


class VideoError(ValueError):
    """A video that cannot be written or read back as one frame per row; the text says why."""


def _codec(name: str) -> VideoCodec:
    try:
        return VIDEO_CODECS[name]
    except KeyError:
        raise VideoError(f"unknown video codec {name!r}; one of {sorted(VIDEO_CODECS)}") from None


@contextlib.contextmanager
def _thread_scheduling_kept():
    """Restore the calling thread's scheduling policy and priority afterwards.

    libsvtav1 (the ``av1`` encoder) switches the thread that opens it to SCHED_FIFO 99 when it may (root, or
    CAP_SYS_NICE) and leaves it so: every process started from that thread afterwards inherits real-time priority
    99, and a busy one then starves the whole host, robot control included. Seen as a 66 load average on a
    2-core machine after one export test; the encoder's own worker threads end with the encode."""
    if not hasattr(os, "sched_getscheduler"):
        yield
        return
    policy, param = os.sched_getscheduler(0), os.sched_getparam(0)
    try:
        yield
    finally:
        if (os.sched_getscheduler(0), os.sched_getparam(0).sched_priority) != (policy, param.sched_priority):
            os.sched_setscheduler(0, policy, param)


def encode_video(path: str | Path, frames: np.ndarray | Iterable[np.ndarray], fps: float,
                 codec: str = DEFAULT_CODEC) -> dict:
    """Write uint8 RGB frames [T, h, w, 3] to an MP4; returns LeRobot's per-video ``info`` dict."""
    import av

    spec = _codec(codec)
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise VideoError(f"{path}: expected uint8 RGB frames [T>0, h, w, 3], got {frames.dtype} {frames.shape}")
    _, h, w, _ = frames.shape
    if spec.pix_fmt == "yuv420p" and (h % 2 or w % 2):
        raise VideoError(f"{path}: codec {codec!r} (yuv420p) needs even frame sizes, got {h}x{w}; use 'lossless'")
    rate = fractions.Fraction(fps).limit_denominator(1001)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _thread_scheduling_kept(), av.open(str(path), "w") as container:
        stream = container.add_stream(spec.encoder, rate=rate)
        stream.width, stream.height, stream.pix_fmt = w, h, spec.pix_fmt
        stream.time_base = 1 / rate
        stream.options = dict(spec.options)
        for k, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts = k
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return {"video.fps": float(fps), "video.height": int(h), "video.width": int(w), "video.channels": 3,
            "video.codec": spec.codec_label, "video.pix_fmt": spec.pix_fmt, "video.is_depth_map": False,
            "has_audio": False}


def decode_video(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(frames uint8 [T, h, w, 3] RGB, presentation times in seconds [T]) of every frame, in order."""
    import av

    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path}: no such video")
    frames, times = [], []
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            for frame in container.decode(stream):
                frames.append(frame.to_ndarray(format="rgb24"))
                times.append(float(frame.pts * stream.time_base) if frame.pts is not None else np.nan)
    except av.FFmpegError as exc:
        raise VideoError(f"{path}: cannot decode ({exc})") from None
    if not frames:
        raise VideoError(f"{path}: no video frames")
    return np.stack(frames), np.asarray(times, dtype=np.float64)
