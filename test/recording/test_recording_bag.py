"""Bag writing, crash-safe flushing, repair, type definitions, QoS matching, topic selection, control protocol,
metadata hashing and the ros2-bag-record command line (no DDS)."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from mcap.stream_reader import StreamReader
from mcap.records import Message
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.serialization import serialize_message
from rosbags.interfaces import QosDurability, QosReliability

from lingbot_va_ros.common import topics
from lingbot_va_ros.msg import ActionTick
from lingbot_va_ros.recording import repair as repair_mod
from lingbot_va_ros.recording.bag_reader import BagNotClosed, iter_messages, open_bag, read_episode_info, read_metadata
from lingbot_va_ros.recording.bag_writer import SIDECAR, CrashSafeBagWriter
from lingbot_va_ros.recording.control import (ControlError, StartEpisode, StopEpisode, encode_command, parse_command,
                                              safe_dirname, unique_bag_path)
from lingbot_va_ros.recording.custom_data import decode_custom_data, encode_custom_data, merge_custom_data
from lingbot_va_ros.recording.metadata import checkpoint_hash, config_entries, episode_metadata
from lingbot_va_ros.recording.params import DEFAULT_TOPICS, RecorderParams
from lingbot_va_ros.recording.qos_match import is_compatible, subscription_qos, to_bag_qos
from lingbot_va_ros.recording.repair import needs_repair, repair_bag
from lingbot_va_ros.recording.ros2_bag import ros2_bag_record_command, ros2_bag_record_string
from lingbot_va_ros.recording.selection import TopicSelector, anchored_alternation, glob_to_regex
from lingbot_va_ros.recording.types import TypeCatalog, UnknownMessageType, rihs01_from_msgdef, trim_cdr

pytestmark = pytest.mark.timeout(60)

TICK_TYPE = "lingbot_va_ros/msg/ActionTick"


@pytest.fixture(scope="module")
def catalog() -> TypeCatalog:
    return TypeCatalog()


def _tick(catalog: TypeCatalog, i: int) -> bytes:
    return trim_cdr(catalog.typestore, TICK_TYPE, serialize_message(ActionTick(episode_id="ep", action_index=i)))


def _bag_with_ticks(path: Path, catalog: TypeCatalog, n: int, flush_every: int = 0,
                    compression: str = "none") -> CrashSafeBagWriter:
    writer = CrashSafeBagWriter(path, encode_custom_data({"episode_id": "ep", "prompt": "wipe", "seed": 3}),
                                compression=compression).open()
    writer.add_topic(topics.ACTION_TICK, catalog.definition(TICK_TYPE))
    for i in range(n):
        writer.write(topics.ACTION_TICK, 1_000 + i, _tick(catalog, i))
        if flush_every and (i + 1) % flush_every == 0:
            writer.flush()
    return writer


def _ticks_in(path: Path) -> list[int]:
    with open_bag(path) as reader:
        return [int(m.action_index) for _, _, m in iter_messages(reader, [topics.ACTION_TICK])]


# ---- custom data ------------------------------------------------------------------------------------------
def test_custom_data_round_trips_strings_and_json_values():
    enc = encode_custom_data({"prompt": "[not json]", "configs": [{"path": "a.yaml", "sha256": "x"}], "seed": 3,
                              "lingbot_va.outcome": "completed", "none": None})
    assert all(isinstance(v, str) for v in enc.values()) and "lingbot_va.none" not in enc
    dec = decode_custom_data(enc)
    assert dec == {"prompt": "[not json]", "configs": [{"path": "a.yaml", "sha256": "x"}], "seed": 3,
                   "outcome": "completed"}
    merged = decode_custom_data(merge_custom_data(enc, {"seed": "seven", "extra": {"k": 1}}))
    assert merged["seed"] == "seven" and merged["extra"] == {"k": 1} and merged["configs"][0]["path"] == "a.yaml"
    assert decode_custom_data({"foreign": "kept"}) == {"foreign": "kept"}


# ---- types -----------------------------------------------------------------------------------------------
def test_project_and_standard_definitions_embed_dependencies(catalog):
    obs = catalog.definition("lingbot_va_ros/msg/Observation")
    assert obs.msgdef.startswith("std_msgs/Header header") and "MSG: sensor_msgs/Image" in obs.msgdef
    # the embedded text alone reproduces the hash (what a reader with an EMPTY typestore relies on)
    assert rihs01_from_msgdef(obs.msgtype, obs.msgdef) == obs.rihs01
    image = catalog.definition("sensor_msgs/msg/Image")
    assert image.rihs01 == "RIHS01_d31d41a9a4c4bc8eae9be757b0beed306564f7526c88ea6a4588fb9582527d47"


def test_third_party_types_come_from_the_ament_index(tmp_path):
    msg_dir = tmp_path / "share" / "foo_msgs" / "msg"
    msg_dir.mkdir(parents=True)
    (msg_dir / "Bar.msg").write_text("# a comment\nstd_msgs/Header header\nBaz[] items\nuint8 MODE_A=1\n"
                                     "string<=8 tag\n")
    (msg_dir / "Baz.msg").write_text("float64[3] xyz\ngeometry_msgs/Pose pose\n")
    catalog = TypeCatalog(ament_prefixes=[str(tmp_path)])
    bar = catalog.definition("foo_msgs/msg/Bar")
    assert "MSG: foo_msgs/Baz" in bar.msgdef and "MSG: geometry_msgs/Pose" in bar.msgdef
    assert bar.rihs01.startswith("RIHS01_")
    with pytest.raises(UnknownMessageType, match="nope_msgs/msg/Missing"):
        catalog.definition("nope_msgs/msg/Missing")


def test_trim_cdr_removes_rmw_serialize_padding(catalog):
    raw = serialize_message(ActionTick(episode_id="ep", action_index=5))
    exact = trim_cdr(catalog.typestore, TICK_TYPE, raw)
    assert len(exact) <= len(raw)
    assert catalog.typestore.deserialize_cdr(exact, TICK_TYPE).action_index == 5


# ---- writer, flush, close ----------------------------------------------------------------------------------
def test_closed_bag_is_self_describing_with_custom_data(tmp_path, catalog):
    writer = _bag_with_ticks(tmp_path / "ep", catalog, 25)
    writer.close({"outcome": "completed"})
    meta = read_metadata(tmp_path / "ep")
    assert meta["custom_data"]["lingbot_va.outcome"] == "completed"
    info = read_episode_info(tmp_path / "ep")
    assert info["prompt"] == "wipe" and info["seed"] == 3 and info["recording_state"] == "complete"
    topic_meta = meta["topics_with_message_count"][0]
    assert topic_meta["message_count"] == 25
    assert topic_meta["topic_metadata"]["type_description_hash"] == catalog.definition(TICK_TYPE).rihs01
    assert _ticks_in(tmp_path / "ep") == list(range(25))
    assert not needs_repair(tmp_path / "ep")


def test_flush_puts_everything_written_on_disk_while_the_bag_stays_open(tmp_path, catalog):
    writer = _bag_with_ticks(tmp_path / "ep", catalog, 10)
    mcap = writer.mcap_path

    def on_disk() -> int:
        """Messages a reader can get from the file right now (it has no footer while open)."""
        count = 0
        with mcap.open("rb") as f:
            try:
                for record in StreamReader(f).records:
                    count += isinstance(record, Message)
            except Exception:  # noqa: BLE001 - the end of what was written so far
                pass
        return count

    assert on_disk() == 0, "rosbags buffers small messages in memory until the chunk is 1 MiB"
    assert writer.flush()
    assert on_disk() == 10
    assert not writer.flush(), "nothing new to flush"
    writer.write(topics.ACTION_TICK, 5_000, _tick(catalog, 10))
    writer.flush()
    assert on_disk() == 11
    writer.close()


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_repair_recovers_every_flushed_message_of_a_killed_recording(tmp_path, catalog, compression):
    live = tmp_path / "live"
    writer = _bag_with_ticks(live, catalog, 40, flush_every=10, compression=compression)   # 40 flushed
    for i in range(40, 45):                                        # written, not flushed: lost on a kill
        writer.write(topics.ACTION_TICK, 1_000 + i, _tick(catalog, i))
    killed = tmp_path / "killed"
    shutil.copytree(live, killed)             # the directory exactly as a SIGKILL leaves it
    (killed / "live.mcap").rename(killed / "killed.mcap")
    (killed / "annotation.yaml").write_text("task: x\n")
    writer.abort()
    with pytest.raises(BagNotClosed, match="lingbot-va-bag-repair"):
        read_metadata(killed)
    assert needs_repair(killed)
    report = repair_bag(killed, keep_original=True)
    assert report.repaired and report.messages == 40 and report.topics == {topics.ACTION_TICK: 40}
    assert report.original is not None and report.original.exists()
    assert _ticks_in(killed) == list(range(40))
    info = read_episode_info(killed)
    assert info["prompt"] == "wipe" and info["recording_state"] == "repaired" and info["outcome"] == "unknown"
    assert (killed / "annotation.yaml").is_file() and (killed / SIDECAR).is_file()
    assert repair_bag(killed).repaired is False, "a repaired bag is complete"


@pytest.mark.parametrize("cut", [0.35, 0.7, 0.999])
def test_repair_of_a_file_cut_anywhere_keeps_the_complete_prefix(tmp_path, catalog, cut):
    src = tmp_path / "src"
    _bag_with_ticks(src, catalog, 60, flush_every=5).close()
    bag = tmp_path / "cut"
    bag.mkdir()
    data = (src / "src.mcap").read_bytes()
    (bag / "cut.mcap").write_bytes(data[: int(len(data) * cut)])
    shutil.copy(src / SIDECAR, bag / SIDECAR)
    assert repair_mod.main([str(bag)]) == 0
    ticks = _ticks_in(bag)
    assert ticks == list(range(len(ticks))), "a contiguous prefix, nothing corrupted"
    assert len(ticks) >= int(60 * cut) - 10


def test_repair_refuses_a_bag_whose_recorder_is_alive(tmp_path, catalog):
    writer = _bag_with_ticks(tmp_path / "ep", catalog, 3, flush_every=1)
    side = (tmp_path / "ep" / SIDECAR).read_text().replace(f"pid: {os.getpid()}", f"pid: {os.getppid()}")
    (tmp_path / "ep" / SIDECAR).write_text(side)
    with pytest.raises(repair_mod.RepairError, match="still being written"):
        repair_bag(tmp_path / "ep")
    assert repair_mod.main([str(tmp_path / "ep"), "--check"]) == 1
    writer.abort()


# ---- QoS ---------------------------------------------------------------------------------------------------
def test_subscription_qos_follows_the_publishers():
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    latched = QoSProfile(depth=3, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    assert subscription_qos([reliable], 100).reliability == ReliabilityPolicy.RELIABLE
    # nothing reliable is dropped by the recorder's own queue, however long it stalls
    assert subscription_qos([reliable], 100).history == HistoryPolicy.KEEP_ALL
    assert subscription_qos([qos_profile_sensor_data], 100).history == HistoryPolicy.KEEP_LAST
    mixed = subscription_qos([reliable, qos_profile_sensor_data], 100)
    assert mixed.reliability == ReliabilityPolicy.BEST_EFFORT and mixed.durability == DurabilityPolicy.VOLATILE
    sub = subscription_qos([latched], 2)
    assert sub.durability == DurabilityPolicy.TRANSIENT_LOCAL and sub.depth == 3
    assert is_compatible(subscription_qos([reliable], 10), [reliable])
    assert not is_compatible(subscription_qos([reliable], 10), [reliable, qos_profile_sensor_data])
    bag_qos = to_bag_qos(qos_profile_sensor_data)
    assert bag_qos.reliability == QosReliability.BEST_EFFORT and bag_qos.durability == QosDurability.VOLATILE
    assert bag_qos.depth == qos_profile_sensor_data.depth


# ---- topic selection and ros2 bag record ---------------------------------------------------------------------
def test_topic_globs_match_one_name_segment_per_star():
    sel = TopicSelector(["/lingbot_va/observation", "/sim_arm/*/image_raw", "/cams/**"], ["/sim_arm/cam_x/image_raw"])
    assert sel.matches("/lingbot_va/observation") and not sel.matches("/lingbot_va/observation2")
    assert sel.matches("/sim_arm/cam_high/image_raw") and not sel.matches("/sim_arm/a/b/image_raw")
    assert not sel.matches("/sim_arm/cam_x/image_raw"), "excluded"
    assert sel.matches("/cams/a/b/c")
    assert glob_to_regex("/a/?[!x]") == "/a/[^/][^x]"
    assert anchored_alternation(["/a.b", "/c/*"]) == r"^(/a\.b|/c/[^/]*)$"


def test_ros2_bag_record_command_from_the_recorder_yaml():
    from lingbot_va_ros.common.paths import config_path

    argv = ros2_bag_record_command(config_path("recorder.yaml"), "/data/trials", name="session-1")
    assert argv[:9] == ["ros2", "bag", "record", "-s", "mcap", "-o", "/data/trials/session-1", "--node-name",
                        "lingbot_va_recorder_rosbag2"]
    exact = [t for t in DEFAULT_TOPICS if "*" not in t]
    i = argv.index("--topics")
    assert argv[i + 1: i + 1 + len(exact)] == exact
    assert argv[argv.index("--regex") + 1] == "^(/sim_arm/[^/]*/image_raw)$"
    assert argv[argv.index("--storage-preset-profile") + 1] == "fastwrite"
    assert "--exclude-regex" not in argv
    text = ros2_bag_record_string(RecorderParams(topics=["/a", "/b/*"], exclude_topics=["/b/secret"]), "out",
                                  name="s", storage_preset="", custom_data={"lingbot_va.site": "lab 2"})
    assert text == ("ros2 bag record -s mcap -o out/s --node-name lingbot_va_recorder_rosbag2 "
                    "--disable-keyboard-controls --topics /a --regex '^(/b/[^/]*)$' --exclude-regex '^(/b/secret)$' "
                    "--custom-data 'lingbot_va.recorder=ros2 bag record' 'lingbot_va.site=lab 2'")


def test_recorder_params_yaml_and_validation():
    from lingbot_va_ros.common.params import ParameterError
    from lingbot_va_ros.common.paths import config_path

    params = RecorderParams.from_yaml(config_path("recorder.yaml"), "lingbot_va_recorder")
    assert params.topics == DEFAULT_TOPICS and params.flush_period_s <= 1.0 and params.exclude_topics == []
    assert RecorderParams.from_dict({"metadata_files": [""]}).metadata_files == []
    with pytest.raises(ParameterError, match="absolute"):
        RecorderParams.from_dict({"topics": ["joint_states"]})
    with pytest.raises(ParameterError, match="flush_period_s"):
        RecorderParams.from_dict({"flush_period_s": 5.0})


# ---- control protocol --------------------------------------------------------------------------------------
def test_control_commands_parse_and_reject_with_reasons(tmp_path):
    start = parse_command(encode_command(StartEpisode("ep-1", "wipe", {"seed": 1}, "r1")))
    assert start == StartEpisode("ep-1", "wipe", {"seed": 1}, "r1")
    assert parse_command('{"command": "stop"}') == StopEpisode()
    for text, reason in [("nope", "not JSON"), ('{"command": "pause"}', "unknown command"),
                         ('{"command": "start"}', "episode_id"), ('{"command": "stop", "outcome": "great"}', "outcome"),
                         ('{"command": "start", "episode_id": "e", "colour": 1}', "no field"),
                         ('{"command": "start", "episode_id": 5}', "string")]:
        with pytest.raises(ControlError, match=reason):
            parse_command(text)
    assert safe_dirname("../a b/c") == "_a_b_c"
    (tmp_path / "ep").mkdir()
    assert unique_bag_path(tmp_path, "ep") == tmp_path / "ep-1"


# ---- metadata hashes ---------------------------------------------------------------------------------------
def test_config_and_checkpoint_hashes(tmp_path):
    cfg = tmp_path / "inference.yaml"
    cfg.write_text("seed: 1\n")
    (entry,) = config_entries([cfg])
    assert entry == {"path": str(cfg.resolve()), "sha256": hashlib.sha256(b"seed: 1\n").hexdigest()}
    assert config_entries([tmp_path / "missing.yaml"])[0]["sha256"] == "missing"
    ckpt = tmp_path / "ckpt" / "transformer"
    ckpt.mkdir(parents=True)
    weights = np.random.default_rng(0).integers(0, 255, 3 << 20, dtype=np.uint8)
    (ckpt / "model.safetensors").write_bytes(weights.tobytes())
    fp = checkpoint_hash(tmp_path / "ckpt")
    assert fp.startswith("fp-sha256:") and checkpoint_hash(tmp_path / "ckpt", full=True).startswith("sha256:")
    weights[-1] ^= 1                                     # the last MiB is sampled
    (ckpt / "model.safetensors").write_bytes(weights.tobytes())
    assert checkpoint_hash(tmp_path / "ckpt") != fp
    meta = episode_metadata(pipeline_mode="sync", checkpoint=str(tmp_path / "ckpt"), config_files=[cfg], seed=4)
    assert meta["checkpoint_hash"] == checkpoint_hash(tmp_path / "ckpt") and meta["seed"] == 4
    assert json.loads(json.dumps(meta)) == meta
