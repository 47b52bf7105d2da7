"""Episode bags written exactly as the recorder writes them (rclpy serialization + the recorder's own bag writer),
with known contents: every camera frame is one uniform colour whose value encodes its frame number, so a test can
tell which frame the exporter picked for a row."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from lingbot_va_ros.common import topics
from lingbot_va_ros.recording.bag_writer import CrashSafeBagWriter
from lingbot_va_ros.recording.custom_data import encode_custom_data
from lingbot_va_ros.recording.types import TypeCatalog, trim_cdr

T0 = 1_800_000_000_000_000_000
JOINTS = ["left_joint1", "left_joint2", "left_joint3", "left_joint4", "left_joint5", "left_joint6", "left_gripper",
          "right_joint1", "right_joint2", "right_joint3", "right_joint4", "right_joint5", "right_joint6",
          "right_gripper"]
HOME = np.array([0.0, 0.0, 0.6, 0.0, 0.97, 0.0, 0.02] * 2)
SIM_CAMERAS = {"cam_high": (240, 320), "cam_left_wrist": (120, 160), "cam_right_wrist": (120, 160)}
CAMERA_PERIOD_NS = 66_666_667      # 15 Hz
CATALOG = TypeCatalog()


def frame_value(k: int) -> int:
    return (37 + 11 * k) % 250


def _type(cls) -> str:
    module = cls.__module__.split(".")
    return f"{module[0]}/{module[1]}/{cls.__name__}"


def joint_path(n: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """A smooth 14-joint motion around the home pose (rad / m)."""
    t = np.arange(n)[:, None] / 30.0
    q = HOME + 0.15 * np.sin(t * np.linspace(0.5, 1.5, 14))
    q[:, [6, 13]] = 0.02 + 0.01 * np.sin(t[:, 0:1] * 2.0)
    if rng is not None:
        q += rng.normal(0, 1e-3, q.shape)
    return q


class BagBuilder:
    def __init__(self, path: Path, info: dict):
        from rclpy.serialization import serialize_message

        self._serialize = serialize_message
        self.path = Path(path)
        self.writer = CrashSafeBagWriter(self.path, encode_custom_data(info)).open()
        self._types: dict[str, str] = {}
        self.events: list[tuple[int, str, object]] = []

    def add(self, t_ns: int, topic: str, msg) -> None:
        if topic not in self._types:
            self._types[topic] = _type(type(msg))
            self.writer.add_topic(topic, CATALOG.definition(self._types[topic]))
        self.events.append((t_ns, topic, msg))

    def close(self, final: dict | None = None, closed: bool = True) -> Path:
        for t, topic, msg in sorted(self.events, key=lambda e: e[0]):
            self.writer.write(topic, t, trim_cdr(CATALOG.typestore, self._types[topic], self._serialize(msg)))
        if closed:
            self.writer.close(final or {})
        else:
            self.writer.flush()
        return self.path


def _header(msg, t_ns: int):
    from lingbot_va_ros.common.conversions import ns_to_stamp

    msg.header.stamp = ns_to_stamp(t_ns)
    return msg


def add_sensors(b: BagBuilder, t_start: int, t_end: int, q_of_time, cameras=SIM_CAMERAS,
                camera_offset_ns: int = -20_000_000) -> list[int]:
    """100 Hz joint states and 15 Hz uniform-colour camera frames; returns the frame stamps."""
    from sensor_msgs.msg import Image, JointState

    for t in range(t_start - 200_000_000, t_end + 50_000_000, 10_000_000):
        b.add(t + 300_000, topics.JOINT_STATES, _header(JointState(name=JOINTS, position=list(q_of_time(t))), t))
    stamps = []
    k = 0
    for t in range(t_start + camera_offset_ns, t_end + 50_000_000, CAMERA_PERIOD_NS):
        for cam, (h, w) in cameras.items():
            img = Image(height=h, width=w, encoding="rgb8", step=w * 3)
            img.data = bytes([frame_value(k)]) * (h * w * 3)
            b.add(t + 5_000_000, f"/sim_arm/{cam}/image_raw", _header(img, t))
        stamps.append(t)
        k += 1
    return stamps


def write_demo_bag(path: Path, n: int = 60, *, rate_hz: float = 30.0, prompt: str = "pick up the red block",
                   outcome: str = "completed", q: np.ndarray | None = None, cameras=SIM_CAMERAS,
                   closed: bool = True, extra_info: dict | None = None) -> tuple[Path, np.ndarray, list[int], list[int]]:
    """A demo bag: one /lingbot_va/command per tick (jittered stamps), sensors. Returns (bag, q, command stamps,
    frame stamps)."""
    from sensor_msgs.msg import JointState

    q = joint_path(n) if q is None else q
    rng = np.random.default_rng(1)
    period = int(1e9 / rate_hz)
    stamps = [T0 + k * period + int(rng.integers(-2_000_000, 2_000_000)) for k in range(n)]
    b = BagBuilder(path, {"episode_id": Path(path).name, "prompt": prompt, "source": "demo",
                          "embodiment": "demo_sim", "recording_mode": "episodes", **(extra_info or {})})
    for t, row in zip(stamps, q):
        b.add(t + 100_000, topics.COMMAND, _header(JointState(name=JOINTS, position=list(row)), t))
    frames = add_sensors(b, stamps[0], stamps[-1], lambda t: q[min(max(0, int((t - T0) / period)), n - 1)],
                         cameras)
    b.close({"outcome": outcome}, closed=closed)
    return Path(path), q, stamps, frames


def write_trial_bag(path: Path, n: int = 64, *, channels: list[str] | None = None, nan_row: int | None = None,
                    prompt: str = "stack the blocks", outcome: str = "completed",
                    hold_ticks: int = 5) -> tuple[Path, np.ndarray, dict[int, int], list[int]]:
    """A model-trial bag: executed actions (one message per 4 actions, stamped at the tick of the last row),
    per-tick commands (with hold ticks between chunks of 16 that do not advance the index), chunks, sensors.
    Returns (bag, executed rows [n, C], action index -> command stamp, frame stamps)."""
    from sensor_msgs.msg import JointState

    from lingbot_va_ros.common.conversions import pack_matrix, seconds_to_duration
    from lingbot_va_ros.msg import ActionChunk, ExecutedActions

    channels = channels or JOINTS
    q = joint_path(n)
    rows = q[:, :len(channels)].astype(np.float32) if len(channels) <= 14 else np.tile(q, 2)[:, :len(channels)]
    rows = np.asarray(rows, dtype=np.float32)
    if nan_row is not None:
        rows[nan_row, 2] = np.nan
    period = 33_333_333
    b = BagBuilder(path, {"episode_id": "ep-trial", "prompt": prompt, "pipeline_mode": "sync",
                          "embodiment": "demo_sim", "recording_mode": "episodes"})
    t = T0
    stamp_of: dict[int, int] = {}
    for i in range(n):
        if i and i % 16 == 0:
            for _ in range(hold_ticks):   # the arm holds while the next chunk is inferred: commands, no index
                b.add(t + 100_000, topics.COMMAND, _header(JointState(name=JOINTS, position=list(q[i - 1])), t))
                t += period
        b.add(t + 100_000, topics.COMMAND, _header(JointState(name=JOINTS, position=list(q[i])), t))
        stamp_of[i] = t
        if i % 16 == 0:
            chunk = ActionChunk(episode_id="ep-trial", chunk_index=i // 16, start_index=i, action_space="joint",
                                channel_names=list(channels), mode="sync",
                                control_period=seconds_to_duration(period / 1e9))
            chunk.shape, chunk.actions = pack_matrix(rows[i:i + 16])
            b.add(t - 50_000_000, topics.ACTION_CHUNK, _header(chunk, t - 50_000_000))
        if i % 4 == 3:
            msg = ExecutedActions(episode_id="ep-trial", start_index=i - 3, action_space="joint",
                                  channel_names=list(channels), modified=[False] * 4)
            msg.shape, msg.actions = pack_matrix(rows[i - 3:i + 1])
            b.add(t + 200_000, topics.EXECUTED_ACTIONS, _header(msg, t))
        t += period
    frames = add_sensors(b, T0, t, lambda tt: q[0])
    b.close({"outcome": outcome})
    return Path(path), rows, stamp_of, frames
