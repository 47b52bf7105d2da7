"""Reading recorded bags the way any user without this package would: rosbags ``AnyReader`` with an EMPTY
typestore, so every type comes from the definitions embedded in the bag."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterable, Iterator

import yaml
from rosbags.highlevel import AnyReader
from rosbags.typesys import Stores, get_typestore

from lingbot_va_ros.recording.bag_writer import SIDECAR
from lingbot_va_ros.recording.custom_data import decode_custom_data

METADATA = "metadata.yaml"


class BagError(RuntimeError):
    """A path that is not a readable bag; the text says what to do."""


class BagNotClosed(BagError):
    """The recorder was killed before closing the bag: it has data but no index/metadata yet."""


def bag_dir(path: str | Path) -> Path:
    """The bag directory for a bag folder, its metadata.yaml or its .mcap file."""
    p = Path(path)
    if p.is_file():
        p = p.parent
    if not p.is_dir():
        raise BagError(f"{path}: no such bag directory")
    return p


def is_bag(path: Path) -> bool:
    return path.is_dir() and ((path / METADATA).is_file() or (path / SIDECAR).is_file())


def find_bags(roots: Iterable[str | Path]) -> list[Path]:
    """Bag directories given directly or anywhere below the given folders, sorted, without duplicates."""
    found: dict[Path, None] = {}
    for root in roots:
        root = Path(root)
        if root.is_file():
            root = root.parent
        if is_bag(root):
            found[root.resolve()] = None
            continue
        for meta in sorted(list(root.rglob(METADATA)) + list(root.rglob(SIDECAR))):
            if is_bag(meta.parent) and not meta.parent.name.endswith((".crashed", ".repairing")):
                found[meta.parent.resolve()] = None
    return sorted(found)


def read_sidecar(path: str | Path) -> dict[str, Any]:
    side = bag_dir(path) / SIDECAR
    return yaml.safe_load(side.read_text()) or {} if side.is_file() else {}


def read_metadata(path: str | Path) -> dict[str, Any]:
    """rosbag2_bagfile_information of a closed bag."""
    d = bag_dir(path)
    meta = d / METADATA
    if not meta.is_file():
        raise BagNotClosed(f"{d} has no metadata.yaml: the recorder did not close it (killed?). Recover what was "
                           f"flushed with:  lingbot-va-bag-repair {d}")
    return (yaml.safe_load(meta.read_text()) or {}).get("rosbag2_bagfile_information", {})


def read_episode_info(path: str | Path) -> dict[str, Any]:
    """Decoded ``lingbot_va.*`` custom data (from metadata.yaml, or the sidecar of an unclosed bag)."""
    try:
        custom = read_metadata(path).get("custom_data") or {}
    except BagNotClosed:
        custom = read_sidecar(path).get("custom_data") or {}
    return decode_custom_data(custom)


@contextlib.contextmanager
def open_bag(path: str | Path) -> Iterator[AnyReader]:
    """An open AnyReader on the bag with an EMPTY default typestore (types only from the bag)."""
    d = bag_dir(path)
    read_metadata(d)  # the clear "not closed, repair it" error instead of rosbags' generic one
    reader = AnyReader([d], default_typestore=get_typestore(Stores.EMPTY))
    reader.open()
    try:
        yield reader
    finally:
        reader.close()


def iter_messages(reader: AnyReader, topics: Iterable[str] | None = None) -> Iterator[tuple[str, int, Any]]:
    """(topic, receive time ns, deserialized message) in log-time order, optionally for some topics only."""
    wanted = None if topics is None else set(topics)
    conns = [c for c in reader.connections if wanted is None or c.topic in wanted]
    if not conns:
        return
    for conn, t_ns, raw in reader.messages(connections=conns):
        yield conn.topic, t_ns, reader.deserialize(raw, conn.msgtype)


def topic_counts(reader: AnyReader) -> dict[str, int]:
    counts: dict[str, int] = {}
    for conn in reader.connections:
        counts[conn.topic] = counts.get(conn.topic, 0) + conn.msgcount
    return counts
