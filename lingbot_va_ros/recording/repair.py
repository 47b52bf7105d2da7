"""``lingbot-va-bag-repair``: make a bag whose recorder was killed readable again.

A killed recorder leaves an MCAP file without summary/footer and no metadata.yaml; neither ``ros2 bag`` nor
rosbags' AnyReader open it. Every complete record up to the last flush is still valid, so the repair
streams them with the ``mcap`` library (stopping at the first truncated record), writes them into a fresh
rosbag2 bag with the same writer the recorder uses, restores custom_data from the recorder's sidecar, and
swaps the repaired bag in. The original is kept as ``<bag>.crashed`` with ``--keep-original``.
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path

from mcap.exceptions import McapError
from mcap.records import Channel, Message, Schema
from mcap.stream_reader import StreamReader
from rosbags.rosbag2.metadata import parse_qos

from lingbot_va_ros.recording.bag_reader import METADATA, bag_dir, open_bag, read_sidecar, topic_counts
from lingbot_va_ros.recording.bag_writer import SIDECAR, CrashSafeBagWriter, utc_now_iso, write_yaml_atomic
from lingbot_va_ros.recording.custom_data import PREFIX
from lingbot_va_ros.recording.types import TypeDefinition, rihs01_from_msgdef

_MCAP_MAGIC = b"\x89MCAP0\r\n"


class RepairError(RuntimeError):
    pass


@dataclass
class RepairReport:
    bag: Path
    repaired: bool                      # False: the bag was already complete
    messages: int = 0
    topics: dict[str, int] = field(default_factory=dict)
    first_ns: int = 0
    last_ns: int = 0                    # receive time of the newest recovered message
    dropped_bytes: int = 0              # unreadable tail (the unflushed/partially written part)
    original: Path | None = None        # kept original (--keep-original)

    def summary(self) -> str:
        if not self.repaired:
            return f"{self.bag}: complete, nothing to repair"
        span = (self.last_ns - self.first_ns) / 1e9 if self.messages else 0.0
        return (f"{self.bag}: recovered {self.messages} messages on {len(self.topics)} topics ({span:.2f} s of data); "
                f"dropped a {self.dropped_bytes}-byte truncated tail")


def _mcap_file(d: Path) -> Path:
    files = sorted(d.glob("*.mcap"))
    if len(files) != 1:
        raise RepairError(f"{d}: expected exactly one .mcap file, found {[f.name for f in files]}")
    return files[0]


def has_valid_footer(path: Path) -> bool:
    size = path.stat().st_size
    if size < 2 * len(_MCAP_MAGIC) + 29:
        return False
    with path.open("rb") as f:
        f.seek(-(len(_MCAP_MAGIC) + 29), os.SEEK_END)
        tail = f.read()
    return tail.endswith(_MCAP_MAGIC) and tail[0] == 0x02


def needs_repair(path: str | Path) -> bool:
    d = bag_dir(path)
    return not (d / METADATA).is_file() or not has_valid_footer(_mcap_file(d))


def _recorder_alive(sidecar: dict) -> bool:
    pid = sidecar.get("pid")
    if sidecar.get("state") != "recording" or not pid or sidecar.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return int(pid) != os.getpid()


class _CountingReader:
    """File wrapper that remembers how far the stream reader got (the size of the readable prefix)."""

    def __init__(self, f):
        self._f = f
        self.consumed = 0

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self.consumed += len(data)
        return data


def repair_bag(path: str | Path, keep_original: bool = False, force: bool = False) -> RepairReport:
    d = bag_dir(path)
    if not needs_repair(d):
        return RepairReport(d, repaired=False)
    sidecar = read_sidecar(d)
    if _recorder_alive(sidecar) and not force:
        raise RepairError(f"{d} is still being written by recorder pid {sidecar['pid']}; stop it first "
                          "(or --force if that pid is not the recorder)")
    source = _mcap_file(d)
    tmp = d.with_name(f"{d.name}.repairing")
    if tmp.exists():
        shutil.rmtree(tmp)
    sidecar_topics = sidecar.get("topics") or {}
    custom = dict(sidecar.get("custom_data") or {})
    report = RepairReport(d, repaired=True)
    writer = CrashSafeBagWriter(tmp, custom_data=custom)
    writer.open()
    schemas: dict[int, Schema] = {}
    channels: dict[int, str] = {}
    try:
        with source.open("rb") as f:
            counting = _CountingReader(f)
            readable = 0
            try:
                for record in StreamReader(counting, emit_chunks=False).records:
                    readable = counting.consumed  # a record is yielded only once it (or its chunk) is complete
                    if isinstance(record, Schema):
                        schemas[record.id] = record
                    elif isinstance(record, Channel):
                        channels[record.id] = record.topic
                        if not writer.has_topic(record.topic):
                            writer.add_topic(record.topic, _definition(record, schemas, sidecar_topics),
                                             parse_qos(record.metadata.get("offered_qos_profiles", "")))
                    elif isinstance(record, Message) and record.channel_id in channels:
                        writer.write(channels[record.channel_id], record.log_time, record.data)
                        report.messages += 1
                        report.first_ns = record.log_time if report.messages == 1 else min(report.first_ns,
                                                                                           record.log_time)
                        report.last_ns = max(report.last_ns, record.log_time)
            except (McapError, EOFError, struct.error, ValueError):
                pass  # the truncated tail: everything before it was yielded already
            report.dropped_bytes = max(0, source.stat().st_size - readable)
        report.topics = dict(writer.counts)
        writer.close({"recording_state": "repaired", "repaired_at": utc_now_iso(),
                      "outcome": _outcome(custom), "repair_note": report.summary()})
    except BaseException:
        writer.abort()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _verify(tmp, report)
    for extra in d.iterdir():  # annotation.yaml and anything else the user put next to the bag
        if extra.name not in (source.name, METADATA, SIDECAR) and not (tmp / extra.name).exists():
            (shutil.copytree if extra.is_dir() else shutil.copy2)(extra, tmp / extra.name)
    side = read_sidecar(tmp)
    side.update(state="repaired", repaired_from=str(source), pid=None)
    write_yaml_atomic(tmp / SIDECAR, side)
    crashed = d.with_name(f"{d.name}.crashed")
    if crashed.exists():
        shutil.rmtree(crashed)
    os.replace(d, crashed)
    os.replace(tmp, d)
    report.bag = d
    if keep_original:
        report.original = crashed
    else:
        shutil.rmtree(crashed)
    return report


def _outcome(custom: dict) -> str:
    return custom.get(f"{PREFIX}outcome") or "unknown"


def _definition(channel: Channel, schemas: dict[int, Schema], sidecar_topics: dict) -> TypeDefinition:
    schema = schemas.get(channel.schema_id)
    if schema is None:
        raise RepairError(f"channel {channel.topic} refers to a missing schema {channel.schema_id}")
    msgdef = schema.data.decode()
    known = (sidecar_topics.get(channel.topic) or {}).get("rihs01")
    try:
        rihs01 = rihs01_from_msgdef(schema.name, msgdef)
    except Exception:  # noqa: BLE001 - an unparsable definition still keeps its data; use the recorded hash
        if not known:
            raise
        rihs01 = known
    return TypeDefinition(schema.name, msgdef, rihs01)


def _verify(tmp: Path, report: RepairReport) -> None:
    with open_bag(tmp) as reader:
        counts = topic_counts(reader)
    if sum(counts.values()) != report.messages:
        raise RepairError(f"repaired bag {tmp} holds {sum(counts.values())} messages, {report.messages} were written")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lingbot-va-bag-repair", description=(
        "Re-index bags whose recorder was killed (no metadata.yaml / truncated MCAP) so ros2 bag and rosbags "
        "can read them. Complete bags are left untouched."))
    parser.add_argument("bags", nargs="+", help="bag directories (or folders of bags with --recursive)")
    parser.add_argument("--recursive", "-r", action="store_true", help="repair every bag below the given folders")
    parser.add_argument("--keep-original", action="store_true", help="keep the damaged original as <bag>.crashed")
    parser.add_argument("--check", action="store_true", help="only report which bags need a repair (exit 1 if any)")
    parser.add_argument("--force", action="store_true", help="repair even if the sidecar's recorder pid is alive")
    args = parser.parse_args(argv)
    from lingbot_va_ros.recording.bag_reader import find_bags

    bags = find_bags(args.bags) if args.recursive else [bag_dir(b) for b in args.bags]
    status = 0
    for bag in bags:
        try:
            if args.check:
                broken = needs_repair(bag)
                print(f"{bag}: {'NEEDS REPAIR' if broken else 'ok'}")
                status = max(status, 1 if broken else 0)
                continue
            print(repair_bag(bag, keep_original=args.keep_original, force=args.force).summary())
        except (RepairError, OSError) as exc:
            print(f"{bag}: {exc}", file=sys.stderr)
            status = 2
    return status


if __name__ == "__main__":
    raise SystemExit(main())
