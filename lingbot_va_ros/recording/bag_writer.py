"""A rosbag2 (metadata.yaml + MCAP) writer whose data survives a killed process up to the last flush.

rosbags' MCAP writer keeps messages in an in-memory chunk until it exceeds 1 MiB, and writes the summary,
footer and metadata.yaml only on close. Low-rate topics (chunks, ticks, diagnostics) could therefore sit in
memory for minutes. :meth:`CrashSafeBagWriter.flush` closes the pending chunk and pushes it to the kernel
(optionally fsync); the recorder calls it every ``flush_period_s``, so SIGKILL loses at most that much.
A killed bag has no footer and no metadata.yaml: :mod:`lingbot_va_ros.recording.repair` re-indexes it.

A sidecar file (:data:`SIDECAR`) written at open holds the episode metadata, so a repaired bag gets its
custom_data back, and the recorder's pid, so repair never touches a bag that is still being written.
"""
from __future__ import annotations

import datetime as _dt
import os
import socket
from importlib.metadata import version
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml
from rosbags.interfaces import Connection, Qos
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.rosbag2.enums import CompressionFormat, CompressionMode

from lingbot_va_ros.recording.custom_data import merge_custom_data
from lingbot_va_ros.recording.types import TypeDefinition

SIDECAR = "lingbot_va_recording.yaml"
SIDECAR_FORMAT = "lingbot_va_recording/1"


def utc_now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


def write_yaml_atomic(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(yaml.safe_dump(dict(data), sort_keys=False, allow_unicode=True))
    os.replace(tmp, path)


class CrashSafeBagWriter:
    """One bag directory. Not thread-safe by itself: the recorder serialises calls with its lock."""

    def __init__(self, path: str | os.PathLike, custom_data: Mapping[str, str] | None = None,
                 compression: str = "none", fsync: bool = False):
        self.path = Path(path)
        self.fsync = fsync
        self.compression = compression
        self.custom_data: dict[str, str] = dict(custom_data or {})
        self.counts: dict[str, int] = {}
        self.flushed_counts: dict[str, int] = {}   # messages per topic handed to the OS by the last flush
        self.bytes_written = 0
        self.last_flush_ns = 0          # receive time of the newest message that is on disk
        self._newest_ns = 0
        self._dirty = False
        self._writer: Writer | None = None
        self._connections: dict[str, Connection] = {}
        self._topic_info: dict[str, dict[str, str]] = {}
        self._started_at = ""

    # -- lifecycle ------------------------------------------------------------------------------------
    def open(self) -> "CrashSafeBagWriter":
        writer = Writer(self.path, version=9, storage_plugin=StoragePlugin.MCAP)
        if self.compression == "zstd":
            writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
        writer.open()
        storage = writer.storage
        if not all(hasattr(storage, a) for a in ("chunk", "close_chunk", "bio")):
            writer.abort()
            raise RuntimeError(f"rosbags {version('rosbags')}: its MCAP writer no longer has the chunk/close_chunk/"
                               "bio members that crash-safe flushing relies on (tested with 0.11.9)")
        self._writer = writer
        self._started_at = utc_now_iso()
        self._write_sidecar("recording")
        return self

    @property
    def is_open(self) -> bool:
        return self._writer is not None

    @property
    def mcap_path(self) -> Path:
        return self.path / f"{self.path.name}.mcap"

    def has_topic(self, topic: str) -> bool:
        return topic in self._connections

    def add_topic(self, topic: str, definition: TypeDefinition, offered_qos: Iterable[Qos] = ()) -> None:
        assert self._writer is not None, "bag not open"
        if topic in self._connections:
            return
        self._connections[topic] = self._writer.add_connection(
            topic, definition.msgtype, msgdef=definition.msgdef, rihs01=definition.rihs01,
            offered_qos_profiles=list(offered_qos))
        self.counts[topic] = 0
        self._topic_info[topic] = {"type": definition.msgtype, "rihs01": definition.rihs01}
        self._write_sidecar("recording")

    def write(self, topic: str, timestamp_ns: int, data: bytes | memoryview) -> None:
        assert self._writer is not None, "bag not open"
        self._writer.write(self._connections[topic], timestamp_ns, data)
        self.counts[topic] += 1
        self.bytes_written += len(data)
        self._newest_ns = max(self._newest_ns, timestamp_ns)
        self._dirty = True

    def flush(self) -> bool:
        """Close the pending chunk and hand everything written so far to the OS. True if anything moved."""
        if self._writer is None or not self._dirty:
            return False
        storage = self._writer.storage
        if storage.chunk.bio.tell():
            storage.close_chunk()
        storage.bio.flush()
        if self.fsync:
            os.fsync(storage.bio.fileno())
        self.last_flush_ns = self._newest_ns
        self.flushed_counts = dict(self.counts)
        self._dirty = False
        return True

    def update_custom_data(self, values: Mapping[str, Any]) -> None:
        self.custom_data = merge_custom_data(self.custom_data, values)
        if self._writer is not None:
            self._write_sidecar("recording")

    def close(self, final: Mapping[str, Any] | None = None) -> Path:
        """Write the summary, footer and metadata.yaml (with custom_data); returns the bag directory."""
        if self._writer is None:
            return self.path
        self.update_custom_data({"stopped_at": utc_now_iso(), "recording_state": "complete", **(final or {})})
        for key, value in self.custom_data.items():
            self._writer.set_custom_data(key, value)
        writer, self._writer = self._writer, None
        writer.close()
        self._write_sidecar("closed")
        return self.path

    def abort(self) -> None:
        """Stop writing without a summary (the bag then needs lingbot-va-bag-repair)."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.abort()

    # -- sidecar ----------------------------------------------------------------------------------------
    def _write_sidecar(self, state: str) -> None:
        write_yaml_atomic(self.path / SIDECAR, {
            "format": SIDECAR_FORMAT,
            "state": state,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started_at": self._started_at,
            "custom_data": dict(self.custom_data),
            "topics": dict(self._topic_info),
        })

