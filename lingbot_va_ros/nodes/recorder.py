"""Recorder node: writes the trial's topics into rosbag2 bags (MCAP), one per episode or one per session.

Subscriptions are raw (serialized CDR goes to disk untouched), created for every configured topic as soon as
it has a publisher (periodic discovery), with QoS matched to the publishers. Every connection embeds its full
message definition + RIHS01 hash, so the bags need nothing installed to be read. The pending MCAP chunk is
flushed every ``flush_period_s`` (crash-safety bound). Episodes are opened/closed through
``/lingbot_va/recorder/control`` (see lingbot_va_ros/recording/control.py and docs/recording.md), or by
themselves (``auto_episodes``): a tick of a new episode opens a bag, the end of its RunEpisode goal closes it.
"""
from __future__ import annotations

import datetime as _dt
import functools
import importlib
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any

from action_msgs.msg import GoalStatus, GoalStatusArray
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_action_status_default
from rclpy.serialization import deserialize_message
from std_msgs.msg import String

from lingbot_va_ros.common import qos as common_qos
from lingbot_va_ros.common import topics as common_topics
from lingbot_va_ros.msg import ActionTick
from lingbot_va_ros.nodes.runtime import node_options, run_node
from lingbot_va_ros.recording.bag_writer import CrashSafeBagWriter, utc_now_iso
from lingbot_va_ros.recording.control import (CONTROL_TOPIC, STATUS_TOPIC, ControlError, StartEpisode, StopEpisode,
                                              UpdateMetadata, parse_command, unique_bag_path)
from lingbot_va_ros.recording.custom_data import encode_custom_data
from lingbot_va_ros.recording.metadata import config_entries
from lingbot_va_ros.recording.params import RecorderParams
from lingbot_va_ros.recording.qos_match import is_compatible, subscription_qos, to_bag_qos
from lingbot_va_ros.recording.selection import TopicSelector
from lingbot_va_ros.recording.types import TypeCatalog, TypeDefinition, UnknownMessageType, type_hash_string


def message_class(msgtype: str):
    """The rclpy message class of 'pkg/msg/Name' (raw subscriptions still need its type support)."""
    pkg, kind, name = msgtype.split("/")
    try:
        return getattr(importlib.import_module(f"{pkg}.{kind}"), name)
    except (ImportError, AttributeError) as exc:
        raise UnknownMessageType(f"no Python type support for '{msgtype}' ({exc}); install/source the package "
                                 "that provides it") from None


def _sample_id(info: dict) -> tuple | None:
    """DDS identity of one sample (publisher gid + its sequence number); None when the middleware gives none."""
    gid, seq = info.get("publisher_gid"), info.get("publication_sequence_number")
    if gid is None or seq is None:
        return None
    data = gid.get("data") if isinstance(gid, dict) else gid
    return (bytes(data) if data is not None else None, int(seq))


@dataclass
class RecordedTopic:
    name: str
    definition: TypeDefinition
    qos: QoSProfile
    offered: list = field(default_factory=list)            # rosbags Qos of the publishers
    msg_cls: Any = None
    subscription: Any = None
    received: int = 0
    latched: deque | None = None                            # last messages of transient-local topics
    # (publisher gid, sequence number) of the latched messages received: a re-created transient-local
    # subscription is handed the publishers' history again, which is the same messages, not new ones
    latched_ids: deque | None = None


class RecorderNode(Node):
    def __init__(self) -> None:
        super().__init__("lingbot_va_recorder", **node_options())
        self.params = RecorderParams.from_node(self)
        self.catalog = TypeCatalog()
        self.selector = TopicSelector(self.params.topics, self.params.exclude_topics)
        self._lock = threading.RLock()
        self._topics: dict[str, RecordedTopic] = {}
        self._unrecordable: dict[str, str] = {}
        self._bag: CrashSafeBagWriter | None = None
        self._episode_id = ""
        self._opened_at = 0.0
        self._last_flush = time.monotonic()
        self._last_closed: dict[str, Any] = {}
        self._ack, self._error = "", ""
        self._dropped_outside_episode = 0
        self._duplicates_ignored = 0
        self._write_errors = 0
        self._session_episodes: list[dict[str, Any]] = []
        self._auto_bag = False                        # the open bag was opened by auto_episodes, not by 'start'
        self._closed_episodes: deque[str] = deque(maxlen=64)   # late ticks of these never reopen a bag
        self._executing_goals: set[bytes] = set()
        self._episode_goal: bytes | None = None       # the RunEpisode goal an auto bag belongs to
        self._auto_close: tuple[float, dict[str, Any]] | None = None   # (monotonic deadline, final metadata)
        self._configs = config_entries(self.params.metadata_files)
        self._recorder_id = f"lingbot_va_ros recorder (rosbags {version('rosbags')})"

        self._io = ReentrantCallbackGroup()
        self.status_pub = self.create_publisher(String, STATUS_TOPIC, common_qos.LATCHED)
        self.create_subscription(String, CONTROL_TOPIC, self._on_control, common_qos.RELIABLE,
                                 callback_group=MutuallyExclusiveCallbackGroup())
        self.create_timer(self.params.discovery_period_s, self._discover,
                          callback_group=MutuallyExclusiveCallbackGroup())
        self.create_timer(self.params.flush_period_s / 2, self._flush_timer,
                          callback_group=MutuallyExclusiveCallbackGroup())
        self.create_timer(self.params.status_period_s, self._periodic_status,
                          callback_group=MutuallyExclusiveCallbackGroup())
        if self.params.mode == "episodes" and self.params.auto_episodes:
            self.create_subscription(GoalStatusArray, f"{common_topics.RUN_EPISODE}/_action/status",
                                     self._on_goal_status, qos_profile_action_status_default,
                                     callback_group=MutuallyExclusiveCallbackGroup())
        if self.params.mode == "continuous":
            name = self.params.session_name or f"session-{_dt.datetime.now(_dt.timezone.utc).strftime('%Y%m%d-%H%M%S')}"
            self._open_bag(name, {"session": name, "recording_mode": "continuous"})
        self._discover()
        self._publish_status()
        self.get_logger().info(f"recording {self.params.mode} to {self.params.recording_dir}: topics "
                               f"{self.params.topics}; control on {CONTROL_TOPIC}")

    # -- discovery --------------------------------------------------------------------------------------
    def _discover(self) -> None:
        for name, types in self.get_topic_names_and_types():
            if not self.selector.matches(name) or name in self._unrecordable:
                continue
            publishers = self.get_publishers_info_by_topic(name)
            if not publishers:
                continue  # QoS is matched to publishers: wait until one exists
            offered = [p.qos_profile for p in publishers]
            existing = self._topics.get(name)
            if existing is not None:
                if not is_compatible(existing.qos, offered):
                    self.get_logger().warning(f"{name}: a publisher with weaker QoS joined; resubscribing best-effort")
                    self._subscribe(existing, subscription_qos(offered, self.params.queue_depth))
                continue
            if len(types) > 1:
                self.get_logger().warning(f"{name} has several types {types}; recording {types[0]}")
            try:
                definition = self.catalog.definition(types[0])
                msg_cls = message_class(types[0])
            except Exception as exc:  # noqa: BLE001 - any lookup failure means: cannot record this topic
                self._unrecordable[name] = str(exc)
                self.get_logger().error(f"not recording {name}: {exc}")
                continue
            for pub in publishers:
                advertised = type_hash_string(pub.topic_type_hash)
                if advertised and advertised != definition.rihs01:
                    self.get_logger().warning(
                        f"{name}: publisher {pub.node_name} advertises type hash {advertised}, the embedded definition "
                        f"of {definition.msgtype} hashes to {definition.rihs01} (different .msg version?)")
                    break
            topic = RecordedTopic(name, definition, subscription_qos(offered, self.params.queue_depth),
                                  [to_bag_qos(q) for q in offered], msg_cls)
            if topic.qos.durability == common_qos.LATCHED.durability:
                topic.latched = deque(maxlen=topic.qos.depth)
                topic.latched_ids = deque(maxlen=4 * topic.qos.depth)
            with self._lock:
                self._topics[name] = topic
                if self._bag is not None:
                    self._bag.add_topic(name, definition, topic.offered)
            self._subscribe(topic, topic.qos)
            reliability = "reliable" if topic.qos.reliability == ReliabilityPolicy.RELIABLE else "best effort"
            latching = ", transient local" if topic.latched is not None else ""
            self.get_logger().info(f"recording {name} [{definition.msgtype}] ({reliability}{latching})")

    def _subscribe(self, topic: RecordedTopic, qos: QoSProfile) -> None:
        if topic.subscription is not None:
            self.destroy_subscription(topic.subscription)
        topic.qos = qos
        topic.subscription = self.create_subscription(topic.msg_cls, topic.name,
                                                      functools.partial(self._on_message, topic), qos,
                                                      callback_group=self._io, raw=True)

    # -- data path --------------------------------------------------------------------------------------
    def _on_message(self, topic: RecordedTopic, raw: bytes, info: dict) -> None:
        stamp = self.get_clock().now().nanoseconds
        if topic.name == common_topics.ACTION_TICK and self.params.mode == "episodes" and self.params.auto_episodes:
            self._auto_episode(deserialize_message(raw, ActionTick).episode_id)
        with self._lock:
            if topic.latched_ids is not None:
                sample = _sample_id(info)
                if sample is not None and sample in topic.latched_ids:
                    self._duplicates_ignored += 1
                    return
                topic.latched_ids.append(sample)
            topic.received += 1
            if topic.latched is not None:
                topic.latched.append((stamp, raw))
            bag = self._bag
            if bag is None:
                self._dropped_outside_episode += 1
                return
            try:
                bag.write(topic.name, stamp, raw)
                # flushing here too keeps the bound when the executor is too busy to run the timer on time
                if time.monotonic() - self._last_flush >= self.params.flush_period_s:
                    self._flush_locked()
            except Exception as exc:  # noqa: BLE001 - disk full etc.: keep the node alive, report loudly
                self._write_errors += 1
                self.get_logger().error(f"writing {topic.name} to {bag.path} failed: {exc}",
                                        throttle_duration_sec=5.0)

    def _flush_locked(self) -> None:
        self._last_flush = time.monotonic()
        if self._bag is not None:
            self._bag.flush()

    def _flush_timer(self) -> None:
        with self._lock:
            if time.monotonic() - self._last_flush >= self.params.flush_period_s / 2:
                try:
                    self._flush_locked()
                except OSError as exc:
                    self._write_errors += 1
                    self.get_logger().error(f"flushing {self._bag.path if self._bag else ''} failed: {exc}",
                                            throttle_duration_sec=5.0)

    # -- automatic episodes -----------------------------------------------------------------------------
    def _auto_episode(self, episode_id: str) -> None:
        """A tick of an episode nobody announced: open its bag (never replaces an explicitly started one)."""
        with self._lock:
            if not episode_id or episode_id == self._episode_id or episode_id in self._closed_episodes:
                return
            if self._bag is not None and not self._auto_bag:
                return
            if self._bag is not None:
                pending = self._auto_close[1] if self._auto_close else {}
                self._close_bag(pending or {"outcome": "unknown", "reason": f"episode '{episode_id}' started"})
            goal = next(iter(self._executing_goals)) if len(self._executing_goals) == 1 else None
            self._open_bag(episode_id, {"episode_id": episode_id, "recording_mode": "episodes",
                                        "auto_started": True}, episode_id=episode_id)
            self._auto_bag, self._episode_goal = True, goal
        self._publish_status()

    def _on_goal_status(self, msg: GoalStatusArray) -> None:
        active = (GoalStatus.STATUS_ACCEPTED, GoalStatus.STATUS_EXECUTING, GoalStatus.STATUS_CANCELING)
        outcomes = {GoalStatus.STATUS_SUCCEEDED: "completed", GoalStatus.STATUS_CANCELED: "cancelled",
                    GoalStatus.STATUS_ABORTED: "aborted"}
        with self._lock:
            self._executing_goals = {bytes(s.goal_info.goal_id.uuid) for s in msg.status_list if s.status in active}
            if not self._auto_bag or self._bag is None:
                return
            if self._episode_goal is None and len(self._executing_goals) == 1:
                self._episode_goal = next(iter(self._executing_goals))
            ended = [s for s in msg.status_list
                     if bytes(s.goal_info.goal_id.uuid) == self._episode_goal and s.status in outcomes]
            if ended and self._auto_close is None:
                # the arm still executes the last chunk: close a little later (see _periodic_status)
                self._auto_close = (time.monotonic() + self.params.auto_close_delay_s,
                                    {"outcome": outcomes[ended[0].status], "reason": "RunEpisode goal ended"})

    # -- bags -------------------------------------------------------------------------------------------
    def _open_bag(self, name: str, values: dict[str, Any], episode_id: str = "") -> CrashSafeBagWriter:
        path = unique_bag_path(self.params.recording_dir, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        configs = list(self._configs) + list(values.pop("configs", None) or [])
        custom = {"recorder": self._recorder_id, "started_at": utc_now_iso(), **values}
        if configs:
            custom["configs"] = configs
        writer = CrashSafeBagWriter(path, encode_custom_data(custom), self.params.compression, self.params.fsync)
        writer.open()
        with self._lock:
            for topic in self._topics.values():
                writer.add_topic(topic.name, topic.definition, topic.offered)
                for stamp, raw in topic.latched or ():   # latched state (e.g. /tf_static) predates the episode
                    writer.write(topic.name, stamp, raw)
            self._bag = writer
            self._episode_id = episode_id
            self._opened_at = time.monotonic()
            self._last_flush = time.monotonic()
        self.get_logger().info(f"bag open: {path}")
        return writer

    def _close_bag(self, final: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            bag, self._bag = self._bag, None
            episode_id, self._episode_id = self._episode_id, ""
            self._auto_bag, self._episode_goal, self._auto_close = False, None, None
            if bag is None:
                return {}
            if episode_id:
                self._closed_episodes.append(episode_id)
            path = bag.close(final)
            closed = {"episode_id": episode_id, "bag_path": str(path), "messages": sum(bag.counts.values()),
                      "topics": dict(bag.counts), "outcome": final.get("outcome", ""), "closed_at": utc_now_iso()}
            self._last_closed = closed
        self.get_logger().info(f"bag closed: {path} ({closed['messages']} messages, outcome "
                               f"'{closed['outcome']}')")
        return closed

    # -- control ----------------------------------------------------------------------------------------
    def _on_control(self, msg: String) -> None:
        request_id, error = "", ""
        try:
            cmd = parse_command(msg.data)
            request_id = cmd.request_id
            if isinstance(cmd, StartEpisode):
                self._start(cmd)
            elif isinstance(cmd, StopEpisode):
                self._stop(cmd)
            elif isinstance(cmd, UpdateMetadata):
                with self._lock:
                    if self._bag is None:
                        raise ControlError("no bag is open")
                    self._bag.update_custom_data(cmd.metadata)
        except ControlError as exc:
            error = str(exc)
        except Exception as exc:  # noqa: BLE001 - report every failure to the client instead of dying
            error = f"{type(exc).__name__}: {exc}"
        if error:
            self.get_logger().error(f"control command refused: {error}")
        self._ack, self._error = request_id, error
        self._publish_status()

    def _start(self, cmd: StartEpisode) -> None:
        values = {**cmd.metadata, "episode_id": cmd.episode_id, "prompt": cmd.prompt}
        if self.params.mode == "continuous":
            with self._lock:
                self._session_episodes.append({"episode_id": cmd.episode_id, "prompt": cmd.prompt,
                                               "started_at": utc_now_iso(), **cmd.metadata})
                if self._bag is not None:
                    self._bag.update_custom_data({"episodes": self._session_episodes})
            return
        with self._lock:   # one step: an automatic episode must not open in between
            if self._bag is not None and self._episode_id == cmd.episode_id and self._auto_bag:
                # the episode's first tick beat the runner's start: keep that bag, add what the runner knows
                self._bag.update_custom_data({**values, "auto_started": False})
                self._auto_bag, self._episode_goal, self._auto_close = False, None, None
                return
            if self._bag is not None:
                self._close_bag({"outcome": "interrupted", "reason": f"episode '{cmd.episode_id}' started before "
                                 f"'{self._episode_id}' was stopped"})
            self._open_bag(cmd.episode_id, {**values, "recording_mode": "episodes"}, episode_id=cmd.episode_id)

    def _stop(self, cmd: StopEpisode) -> None:
        final = {**cmd.metadata, "outcome": cmd.outcome, "reason": cmd.reason}
        if self.params.mode == "continuous":
            with self._lock:
                for ep in reversed(self._session_episodes):
                    if not cmd.episode_id or ep["episode_id"] == cmd.episode_id:
                        ep.update(stopped_at=utc_now_iso(), **final)
                        break
                else:
                    raise ControlError(f"episode '{cmd.episode_id}' was never started")
                if self._bag is not None:
                    self._bag.update_custom_data({"episodes": self._session_episodes})
            return
        with self._lock:
            if self._bag is None:
                raise ControlError(f"no episode is being recorded (asked to stop '{cmd.episode_id}')")
            if cmd.episode_id and cmd.episode_id != self._episode_id:
                raise ControlError(f"episode '{cmd.episode_id}' is not being recorded (open: '{self._episode_id}')")
            self._close_bag(final)

    # -- status -----------------------------------------------------------------------------------------
    def _status(self) -> dict[str, Any]:
        with self._lock:
            bag = self._bag
            return {
                "state": "recording" if bag is not None else "idle",
                "mode": self.params.mode,
                "episode_id": self._episode_id,
                "bag_path": str(bag.path) if bag is not None else "",
                "messages": sum(bag.counts.values()) if bag is not None else 0,
                "topics": dict(bag.counts) if bag is not None else {},
                # on disk (handed to the OS) as of the last flush: what a killed recorder still leaves behind
                "flushed": dict(bag.flushed_counts) if bag is not None else {},
                "subscribed": sorted(self._topics),
                "received": {t.name: t.received for t in self._topics.values()},
                "unrecordable": dict(self._unrecordable),
                "dropped_outside_episode": self._dropped_outside_episode,
                "duplicates_ignored": self._duplicates_ignored,
                "write_errors": self._write_errors,
                "last_closed": dict(self._last_closed),
                "ack": self._ack,
                "error": self._error,
                "stamp": utc_now_iso(),
            }

    def _publish_status(self) -> None:
        self.status_pub.publish(String(data=json.dumps(self._status(), sort_keys=True)))

    def _periodic_status(self) -> None:
        limit = self.params.max_episode_s
        with self._lock:   # under the lock: a tick or a start may open the next episode meanwhile
            auto_close = self._auto_close
            if auto_close is not None and time.monotonic() >= auto_close[0]:
                self._close_bag(auto_close[1])
            elif limit and self._bag is not None and self.params.mode == "episodes" \
                    and time.monotonic() - self._opened_at > limit:
                self._close_bag({"outcome": "unknown", "reason": f"no stop command within max_episode_s={limit:g}"})
        self._publish_status()

    def close(self) -> None:
        """Shutdown: close the open bag properly (summary, metadata.yaml)."""
        if self.params.mode == "continuous":
            self._close_bag({"reason": "recorder shut down"})
        else:
            self._close_bag({"outcome": "interrupted", "reason": "recorder shut down during the episode"})


def main(argv: list[str] | None = None) -> None:
    raise SystemExit(run_node(RecorderNode, argv=argv))


if __name__ == "__main__":
    main()
