"""Message definitions (ros2msg text + RIHS01 type hash) for every type the recorder may meet.

A bag is only self-describing when each connection embeds its full definition; ``ros2 bag`` and rosbags'
``AnyReader`` with an EMPTY typestore then need nothing installed. Definitions come from, in order: the
project's own msg/*.msg (so they always match this checkout), rosbags' Kilted typestore (standard
interfaces), and the ``share/<pkg>/msg/<Type>.msg`` files of an ament index (third-party types on a
sourced ROS installation).
"""
from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from lingbot_va_ros.common.paths import PACKAGE, share_dir

_PRIMITIVES = {"bool", "byte", "char", "float32", "float64", "int8", "uint8", "int16", "uint16", "int32",
               "uint32", "int64", "uint64", "string", "wstring", "time", "duration"}


class UnknownMessageType(LookupError):
    """No definition of this type could be found; a topic of it cannot be recorded self-describingly."""


@dataclass(frozen=True)
class TypeDefinition:
    msgtype: str          # "pkg/msg/Name"
    msgdef: str           # ros2msg text with its dependencies appended (rosbag2's MCAP schema format)
    rihs01: str           # "RIHS01_<sha256 hex>"


def project_msg_types(msg_dir: Path | None = None) -> dict:
    """rosbags type definitions of the project's messages, parsed from the .msg files."""
    msg_dir = msg_dir or share_dir() / "msg"
    types: dict = {}
    for path in sorted(msg_dir.glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"{PACKAGE}/msg/{path.stem}"))
    return types


def _referenced_types(msg_text: str, package: str) -> set[str]:
    """Non-primitive field types of a .msg text, as full 'pkg/msg/Name' names."""
    found = set()
    for line in msg_text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        token = line.split()[0]
        base = re.sub(r"\[.*?\]$", "", token)          # arrays: T[], T[3], T[<=3]
        base = re.sub(r"<=\d+$", "", base)             # bounded strings
        if base in _PRIMITIVES:
            continue
        if "/" in base:
            pkg, name = base.split("/", 1)
            found.add(f"{pkg}/msg/{name.split('/')[-1]}")
        elif base == "Header":
            found.add("std_msgs/msg/Header")
        else:
            found.add(f"{package}/msg/{base}")
    return found


class TypeCatalog:
    """Thread-safe lookup of :class:`TypeDefinition` by message type name."""

    def __init__(self, ament_prefixes: list[str] | None = None, msg_dir: Path | None = None):
        self._store: Typestore = get_typestore(Stores.ROS2_KILTED)
        self._store.register(project_msg_types(msg_dir))
        if ament_prefixes is None:
            ament_prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
        self._prefixes = ament_prefixes
        self._lock = threading.Lock()
        self._cache: dict[str, TypeDefinition] = {}

    @property
    def typestore(self) -> Typestore:
        return self._store

    def definition(self, msgtype: str) -> TypeDefinition:
        with self._lock:
            if msgtype not in self._cache:
                if msgtype not in self._store.types:
                    self._load_from_ament(msgtype)
                msgdef, _ = self._store.generate_msgdef(msgtype, ros_version=2)
                self._cache[msgtype] = TypeDefinition(msgtype, msgdef, self._store.hash_rihs01(msgtype))
            return self._cache[msgtype]

    def _find_msg_file(self, msgtype: str) -> Path | None:
        pkg, kind, name = (msgtype.split("/") + ["", ""])[:3]
        if kind != "msg":
            return None
        for prefix in self._prefixes:
            path = Path(prefix) / "share" / pkg / "msg" / f"{name}.msg"
            if path.is_file():
                return path
        return None

    def _load_from_ament(self, msgtype: str) -> None:
        pending, parsed = [msgtype], {}
        while pending:
            name = pending.pop()
            if name in parsed or name in self._store.types:
                continue
            path = self._find_msg_file(name)
            if path is None:
                raise UnknownMessageType(
                    f"no definition of '{name}'{f' (needed by {msgtype})' if name != msgtype else ''}: not a "
                    f"standard Kilted type, not in {PACKAGE}/msg, and no share/<pkg>/msg/<Type>.msg under "
                    f"AMENT_PREFIX_PATH (source the workspace that provides it)")
            text = path.read_text()
            parsed.update(get_types_from_msg(text, name))
            pending.extend(_referenced_types(text, name.split("/")[0]))
        self._store.register(parsed)


def rihs01_from_msgdef(msgtype: str, msgdef: str) -> str:
    """The RIHS01 hash of a type given only its embedded definition (used when re-indexing a bag)."""
    store = get_typestore(Stores.EMPTY)
    store.register(get_types_from_msg(msgdef, msgtype))
    return store.hash_rihs01(msgtype)


def type_hash_string(type_hash) -> str | None:
    """rclpy's TypeHash of a graph endpoint as 'RIHS01_<hex>' (None when the publisher did not send one)."""
    version = getattr(type_hash, "version", -1)
    value = getattr(type_hash, "value", b"")
    if version != 1 or not value or not any(value):
        return None
    return f"RIHS01_{bytes(value).hex()}"


def trim_cdr(store: Typestore, msgtype: str, raw: bytes) -> bytes:
    """``raw`` cut to its exact CDR length.

    rclpy's ``serialize_message`` (rmw_fastrtps ``rmw_serialize``) returns the *estimated* buffer size, i.e. the
    message followed by a few uninitialised bytes; strict readers (rosbags) reject that. Messages taken from
    DDS are exact already. Only needed when writing bags from locally serialized messages.
    """
    if len(raw) < 4 or raw[:2] not in (b"\x00\x00", b"\x00\x01"):
        raise ValueError(f"{msgtype}: not a CDR message")
    msgdef = store.get_msgdef(msgtype)
    func = msgdef.deserialize_cdr_le if raw[1] else msgdef.deserialize_cdr_be
    _, pos = func(memoryview(raw)[4:], 0, msgdef.cls, store)
    return bytes(raw[:4 + pos])
