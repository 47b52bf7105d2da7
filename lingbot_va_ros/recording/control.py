"""The recorder's control interface: JSON commands on a topic, JSON status on a latched topic.

``/lingbot_va/recorder/control`` (std_msgs/String, reliable, depth 10)::

    {"command": "start", "episode_id": "ep-7", "prompt": "make breakfast", "metadata": {...}, "request_id": "r1"}
    {"command": "stop", "episode_id": "ep-7", "outcome": "completed", "reason": "...", "metadata": {...}}
    {"command": "update", "metadata": {...}}                 # add custom data to the open bag

``/lingbot_va/recorder/status`` (std_msgs/String, reliable, transient local): the recorder's state, the open
bag, per-topic counts, the last closed bag, and ``ack`` = the request_id of the last command handled (with
``error`` when it was refused), so a client knows its command took effect.

Topics instead of a service because the project's messages are the only custom interfaces (a service
would need a new .srv), std_msgs/String needs nothing else installed, and ``ros2 topic pub`` can drive it.
"""
from __future__ import annotations

import json
import re
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lingbot_va_ros.common import topics

CONTROL_TOPIC = f"{topics.NAMESPACE}/recorder/control"
STATUS_TOPIC = f"{topics.NAMESPACE}/recorder/status"
OUTCOMES = ("completed", "cancelled", "aborted", "rejected", "failed", "interrupted", "unknown")


class ControlError(ValueError):
    """A control message that cannot be executed; the text is sent back in the status ``error``."""


@dataclass(frozen=True)
class StartEpisode:
    episode_id: str
    prompt: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    request_id: str = ""
    command: str = "start"


@dataclass(frozen=True)
class StopEpisode:
    episode_id: str = ""              # "" = whatever episode is open
    outcome: str = "completed"
    reason: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    request_id: str = ""
    command: str = "stop"


@dataclass(frozen=True)
class UpdateMetadata:
    metadata: dict[str, Any] = field(default_factory=dict)
    request_id: str = ""
    command: str = "update"


Command = StartEpisode | StopEpisode | UpdateMetadata
_COMMANDS = {"start": StartEpisode, "stop": StopEpisode, "update": UpdateMetadata}


def parse_command(text: str) -> Command:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ControlError(f"control message is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ControlError("control message must be a JSON object")
    kind = data.get("command")
    if kind not in _COMMANDS:
        raise ControlError(f"unknown command {kind!r}; one of {sorted(_COMMANDS)}")
    cls = _COMMANDS[kind]
    allowed = set(cls.__dataclass_fields__)
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ControlError(f"'{kind}' has no field(s) {unknown}; allowed: {sorted(allowed)}")
    if not isinstance(data.get("metadata", {}), dict):
        raise ControlError("'metadata' must be a JSON object")
    for key in allowed - {"metadata"}:
        if key in data and not isinstance(data[key], str):
            raise ControlError(f"'{key}' must be a string")
    if cls is StartEpisode and not str(data.get("episode_id", "")).strip():
        raise ControlError("'start' needs a non-empty episode_id")
    cmd = cls(**data)
    if isinstance(cmd, StopEpisode) and cmd.outcome not in OUTCOMES:
        raise ControlError(f"outcome {cmd.outcome!r} is not one of {list(OUTCOMES)}")
    return cmd


def encode_command(cmd: Command) -> str:
    return json.dumps(asdict(cmd), sort_keys=True)


def safe_dirname(name: str) -> str:
    """An episode id as a single folder name (no separators, no leading dots)."""
    cleaned = re.sub(r"[^A-Za-z0-9._+-]+", "_", name.strip()).lstrip(".")
    return cleaned[:200] or "episode"


def unique_bag_path(recording_dir: str | Path, name: str) -> Path:
    """<recording_dir>/<name>, or <name>-1, -2 ... when a bag of that name exists (episode ids can repeat)."""
    base = Path(recording_dir).expanduser() / safe_dirname(name)
    path, n = base, 0
    while path.exists() or path.with_name(f"{path.name}.crashed").exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


class RecorderClient:
    """For the episode runner: start/stop the recorder's episode bag and wait until it confirms.

    ``node`` must be spun by an executor on another thread (the status callback delivers the ack).
    """

    def __init__(self, node, control_topic: str = CONTROL_TOPIC, status_topic: str = STATUS_TOPIC):
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from std_msgs.msg import String

        self._string = String
        self._cond = threading.Condition()
        self.status: dict[str, Any] = {}
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self._pub = node.create_publisher(String, control_topic, reliable)
        self._sub = node.create_subscription(String, status_topic, self._on_status, latched)

    def _on_status(self, msg) -> None:
        try:
            status = json.loads(msg.data)
        except ValueError:
            return
        with self._cond:
            self.status = status
            self._cond.notify_all()

    def _wait(self, condition, timeout: float) -> bool:
        """True once ``condition()`` holds (checked under the status lock on each status and every 50 ms)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not condition():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    def wait_ready(self, timeout: float = 10.0) -> bool:
        """True once the recorder is subscribed to the control topic and has published its status."""
        return self._wait(lambda: bool(self.status) and self._pub.get_subscription_count() > 0, timeout)

    def _send(self, cmd: Command, timeout: float) -> dict[str, Any]:
        if not self.wait_ready(timeout):
            raise TimeoutError(f"no recorder on {self._pub.topic_name} within {timeout:.1f}s")
        self._pub.publish(self._string(data=encode_command(cmd)))
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.status.get("ack") != cmd.request_id:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"recorder did not confirm '{cmd.command}' within {timeout:.1f}s")
                self._cond.wait(min(left, 0.05))
            status = dict(self.status)
        if status.get("error"):
            raise ControlError(status["error"])
        return status

    def wait_subscribed(self, topics: list[str], timeout: float = 20.0) -> list[str]:
        """Wait until the recorder subscribes to every topic of ``topics`` (it subscribes when discovery finds a
        publisher, once per ``discovery_period_s``); returns those it still does not (e.g. not in its topic list)."""
        def missing() -> list[str]:
            return [t for t in topics if t not in self.status.get("subscribed", [])]

        self._wait(lambda: not missing(), timeout)
        with self._cond:
            return missing()

    def wait_recorded(self, counts: dict[str, int], timeout: float = 10.0) -> bool:
        """True once the open bag holds at least ``counts[topic]`` messages of each topic (what the caller saw
        published): messages still in flight to the recorder reach the bag before a stop closes it."""
        return self._wait(lambda: all(self.status.get("topics", {}).get(t, 0) >= n for t, n in counts.items()),
                          timeout)

    def start(self, episode_id: str, prompt: str = "", metadata: dict[str, Any] | None = None,
              timeout: float = 10.0) -> str:
        """Open the episode's bag; returns its directory."""
        status = self._send(StartEpisode(episode_id, prompt, dict(metadata or {}), uuid.uuid4().hex), timeout)
        return status.get("bag_path", "")

    def stop(self, episode_id: str = "", outcome: str = "completed", reason: str = "",
             metadata: dict[str, Any] | None = None, timeout: float = 10.0) -> str:
        """Close the episode's bag with its outcome; returns the closed bag's directory."""
        status = self._send(StopEpisode(episode_id, outcome, reason, dict(metadata or {}), uuid.uuid4().hex), timeout)
        return (status.get("last_closed") or {}).get("bag_path", "")

    def update(self, metadata: dict[str, Any], timeout: float = 10.0) -> None:
        self._send(UpdateMetadata(dict(metadata), uuid.uuid4().hex), timeout)
