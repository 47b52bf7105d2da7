"""One recorded episode bag -> one :class:`DemoEpisode` (no rclpy: bags are read with rosbags, types from the bag).

Rows are control ticks at the embodiment's rate:

- **model trials** (the bag has ``/lingbot_va/executed_actions``): row ``i`` = action index ``i``; its action is
  the executed row the executor reported (already in the model's action space), its time the instant that
  action was commanded: the ``/lingbot_va/command`` message of that control tick (an ExecutedActions message is
  stamped with the tick of its last row; earlier rows are the commands before it), or, without commands,
  ``stamp - k x period``. Holds do not advance the index, so waits between chunks are not rows.
- **demos** (no executed actions, ``/lingbot_va/command`` from the demo recorder): one row per command; the
  commanded joint targets become actions through the inference path's own conversion
  (:mod:`lingbot_va_ros.executor.action_space`: identity for ``joint``, FK + RoboTwin relative EEF for
  ``ee_relative``, relative to the FK of the first row's measured joints).

Per row, each camera role gets the newest frame whose stamp is at or before the row time (minus the camera's
``latency_offset``): never a frame from the future of the tick. Frames come from the raw camera topics named in
the camera ingest config (``config/camera_ingest_sim.yaml`` for the simulator), decoded and resized to the
embodiment's size exactly as camera ingest does (:mod:`lingbot_va_ros.camera.image_ops`). The joint state of
a row is the newest ``/joint_states`` sample at or before it. Leading rows that have no frame or state yet are
dropped (counted in the metadata).
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lingbot_va_ros.common import topics
from lingbot_va_ros.dataset.episode import DemoEpisode
from lingbot_va_ros.model.embodiment import EmbodimentConfig

NS = 1_000_000_000


class ExportError(ValueError):
    """A bag that cannot become a dataset episode; the text names the bag and the problem."""


@dataclass(frozen=True)
class CameraTopic:
    role: str
    topic: str
    compressed: bool = False
    stamp: str = "header"             # header | receive
    latency_offset_s: float = 0.0


def camera_topics_from_ingest(config: str | Path, embodiment: EmbodimentConfig) -> dict[str, CameraTopic]:
    """Role -> raw topic, the way camera ingest maps them (its params YAML, validated by its own schema)."""
    from lingbot_va_ros.camera.params import CameraIngestParams
    from lingbot_va_ros.common.paths import config_path

    path = Path(config)
    if not path.is_file():
        path = config_path(str(config) if str(config).endswith(".yaml") else f"{config}.yaml")
    if not path.is_file():
        raise ExportError(f"camera config {config!r} not found (a params YAML of camera ingest, e.g. "
                          f"config/camera_ingest_sim.yaml)")
    params = CameraIngestParams.from_yaml(path, "lingbot_va_camera_ingest")
    out = {}
    missing = [r for r in embodiment.camera_names if r not in params.cameras]
    if missing:
        raise ExportError(f"{path}: no camera settings for the embodiment's cameras {missing}")
    for role in embodiment.camera_names:
        cam = params.cameras[role]
        if cam.source not in ("ros_image", "ros_compressed"):
            raise ExportError(f"{path}: camera {role} uses source {cam.source!r}; only ROS topics are recorded in "
                              f"bags (ros_image / ros_compressed)")
        topic = cam.settings.get("topic")
        if not topic:
            raise ExportError(f"{path}: camera {role} has no settings.topic")
        out[role] = CameraTopic(role, str(topic), cam.source == "ros_compressed", cam.stamp, cam.latency_offset)
    return out


@dataclass
class BagContents:
    """What one pass over a bag collects (stamps in ns)."""

    info: dict[str, Any]
    episode_id: str = ""
    commands: list[tuple[int, tuple[str, ...], np.ndarray]] = field(default_factory=list)
    states: list[tuple[int, tuple[str, ...], np.ndarray]] = field(default_factory=list)
    frames: dict[str, list[tuple[int, np.ndarray]]] = field(default_factory=dict)
    executed: dict[int, np.ndarray] = field(default_factory=dict)
    executed_msgs: list[tuple[int, int, int]] = field(default_factory=list)   # (stamp, start, rows)
    executed_space: str = ""
    executed_channels: tuple[str, ...] = ()
    control_period_s: float | None = None
    topic_counts: dict[str, int] = field(default_factory=dict)


def _stamp(header_stamp, receive_ns: int, mode: str = "header") -> int:
    ns = int(header_stamp.sec) * NS + int(header_stamp.nanosec)
    return ns if mode == "header" and ns > 0 else int(receive_ns)


def read_bag(bag: Path, embodiment: EmbodimentConfig, cameras: dict[str, CameraTopic],
             state_topic: str = topics.JOINT_STATES) -> BagContents:
    from lingbot_va_ros.camera.image_ops import compressed_msg_to_model_rgb, image_msg_to_model_rgb
    from lingbot_va_ros.common.conversions import MessageError, unpack_matrix
    from lingbot_va_ros.recording.bag_reader import BagError, iter_messages, open_bag, read_episode_info, topic_counts

    try:
        info = read_episode_info(bag)
        with open_bag(bag) as reader:
            counts = topic_counts(reader)
            contents = BagContents(info=info, topic_counts=counts, episode_id=str(info.get("episode_id") or ""))
            if not any(counts.values()):
                raise ExportError(f"{bag}: the bag is empty (no messages)")
            by_topic = {c.topic: c for c in cameras.values()}
            missing = [f"{c.role} ({c.topic})" for c in cameras.values() if not counts.get(c.topic)]
            if missing:
                raise ExportError(f"{bag}: no messages from camera(s) {', '.join(missing)}; recorded topics: "
                                  f"{sorted(t for t, n in counts.items() if n)} (record the raw camera topics, or "
                                  f"pass the camera config these cameras were ingested with)")
            sizes = embodiment.image_sizes
            contents.frames = {c.role: [] for c in cameras.values()}
            wanted = [topics.COMMAND, topics.EXECUTED_ACTIONS, topics.ACTION_CHUNK, state_topic, *by_topic]
            for topic, t_ns, msg in iter_messages(reader, wanted):
                if topic in by_topic:
                    cam = by_topic[topic]
                    try:
                        rgb = (compressed_msg_to_model_rgb(msg, sizes[cam.role]) if cam.compressed
                               else image_msg_to_model_rgb(msg, sizes[cam.role]))
                    except MessageError as exc:
                        raise ExportError(f"{bag}: camera {cam.role} ({topic}): {exc}") from None
                    contents.frames[cam.role].append((_stamp(msg.header.stamp, t_ns, cam.stamp), rgb))
                elif topic == topics.COMMAND:
                    contents.commands.append((_stamp(msg.header.stamp, t_ns), tuple(str(n) for n in msg.name),
                                              np.asarray(msg.position, dtype=np.float64)))
                elif topic == state_topic:
                    contents.states.append((_stamp(msg.header.stamp, t_ns), tuple(str(n) for n in msg.name),
                                            np.asarray(msg.position, dtype=np.float64)))
                elif topic == topics.ACTION_CHUNK:
                    period = msg.control_period.sec + msg.control_period.nanosec * 1e-9
                    if period > 0 and contents.control_period_s is None:
                        contents.control_period_s = float(period)
                    contents.episode_id = contents.episode_id or str(msg.episode_id)
                elif topic == topics.EXECUTED_ACTIONS:
                    if contents.episode_id and str(msg.episode_id) != contents.episode_id:
                        continue
                    contents.episode_id = contents.episode_id or str(msg.episode_id)
                    try:
                        rows = unpack_matrix(msg.shape, msg.actions, what="executed actions", require_finite=False)
                    except MessageError as exc:
                        raise ExportError(f"{bag}: bad {topic} message: {exc}") from None
                    for k, row in enumerate(rows):
                        contents.executed[int(msg.start_index) + k] = row
                    contents.executed_msgs.append((_stamp(msg.header.stamp, t_ns), int(msg.start_index), len(rows)))
                    contents.executed_space = contents.executed_space or str(msg.action_space)
                    contents.executed_channels = contents.executed_channels or tuple(str(n) for n in msg.channel_names)
    except BagError as exc:   # includes BagNotClosed: the text names the repair command
        raise ExportError(str(exc)) from None
    return contents


def _latest_at_or_before(stamps: list[int], t_ns: int) -> int:
    """Index of the newest stamp <= t_ns, or -1."""
    return bisect.bisect_right(stamps, t_ns) - 1


def _trial_rows(bag: Path, c: BagContents, embodiment: EmbodimentConfig) -> tuple[np.ndarray, np.ndarray, dict]:
    """(actions [N, C] in embodiment channel order, row times ns [N], notes) from executed actions."""
    if c.executed_space and c.executed_space != embodiment.action_space:
        raise ExportError(f"{bag}: executed actions are in the '{c.executed_space}' action space, the embodiment "
                          f"'{embodiment.name}' uses '{embodiment.action_space}'")
    names = tuple(embodiment.channel_names)
    if len(c.executed_channels) != len(names) or sorted(c.executed_channels) != sorted(names):
        raise ExportError(f"{bag}: executed actions have {len(c.executed_channels)} channels "
                          f"{list(c.executed_channels)}, the embodiment '{embodiment.name}' has {len(names)} "
                          f"{list(names)} (mismatched action dimensions)")
    order = [c.executed_channels.index(n) for n in names]
    count = 0
    while count in c.executed:
        count += 1
    if count == 0:
        raise ExportError(f"{bag}: executed actions do not start at action index 0 (first: {min(c.executed)})")
    notes = {}
    if count < len(c.executed):
        notes["truncated_at_missing_action_index"] = count
    actions = np.stack([c.executed[i] for i in range(count)])[:, order].astype(np.float32)
    period_ns = int(round(NS * (c.control_period_s or 1.0 / embodiment.control_hz)))
    cmd_stamps = [s for s, _, _ in c.commands]
    cmd_pos = {s: k for k, s in enumerate(cmd_stamps)}
    times = np.full(count, -1, dtype=np.int64)
    for stamp, start, rows in c.executed_msgs:
        last = start + rows - 1
        k_last = cmd_pos.get(stamp)
        for k in range(rows):
            index = start + k
            if index >= count:
                continue
            back = last - index
            if k_last is not None and k_last - back >= 0:
                times[index] = cmd_stamps[k_last - back]
            else:
                times[index] = stamp - back * period_ns
    notes["row_times_from"] = "command" if cmd_pos else "executed_actions stamp - k x period"
    return actions, times, notes


def _demo_rows(bag: Path, c: BagContents, fps: float) -> tuple[np.ndarray, np.ndarray, dict, tuple[str, ...]]:
    """(actions, row times, notes, joint names) from the demo recorder's per-tick commands."""
    if not c.commands:
        raise ExportError(f"{bag}: no {topics.EXECUTED_ACTIONS} and no {topics.COMMAND} messages: nothing was "
                          f"commanded in this episode")
    joint_names = c.commands[0][1]
    if any(names != joint_names for _, names, _ in c.commands):
        raise ExportError(f"{bag}: the joint names of {topics.COMMAND} change within the episode")
    stamps = np.array([s for s, _, _ in c.commands], dtype=np.int64)
    q = np.stack([p for _, _, p in c.commands])
    if q.shape[1] != len(joint_names):
        raise ExportError(f"{bag}: {topics.COMMAND} has {len(joint_names)} names but {q.shape[1]} positions")
    notes: dict[str, Any] = {}
    if len(stamps) > 1:
        rate = 1e9 / float(np.median(np.diff(stamps)))
        notes["command_rate_hz"] = round(rate, 3)
        if abs(rate - fps) / fps > 0.05:
            # zero-order hold: the target the arm was holding at each row instant
            grid = stamps[0] + np.round(np.arange(int((stamps[-1] - stamps[0]) * fps / 1e9) + 1) * 1e9 / fps)
            pick = np.searchsorted(stamps, grid, side="right") - 1
            q, stamps = q[pick], grid.astype(np.int64)
            notes["resampled_from_hz"] = round(rate, 3)
    return q, stamps, notes, joint_names


def _convert_demo_actions(bag: Path, q: np.ndarray, joint_names: tuple[str, ...], q_start: np.ndarray,
                          embodiment: EmbodimentConfig, urdf: str | None) -> tuple[np.ndarray, dict]:
    from lingbot_va_ros.executor.action_space import ActionSpaceError, EeRelativeSpace

    if embodiment.action_space == "joint":
        missing = [n for n in embodiment.channel_names if n not in joint_names]
        if missing:
            raise ExportError(f"{bag}: the embodiment '{embodiment.name}' has joint channels {missing} that the "
                              f"commands {list(joint_names)} lack (mismatched action dimensions)")
        return q[:, [joint_names.index(n) for n in embodiment.channel_names]].astype(np.float32), {}
    from lingbot_va_ros.kinematics.bimanual import JOINT_NAMES

    missing = [n for n in JOINT_NAMES if n not in joint_names]
    if missing:
        raise ExportError(f"{bag}: ee_relative needs the 14 bimanual joints; the commands lack {missing}")
    from lingbot_va_ros.kinematics.urdf_limits import default_urdf_path

    order = [joint_names.index(n) for n in JOINT_NAMES]
    space = EeRelativeSpace(urdf or str(default_urdf_path()), JOINT_NAMES)
    try:
        context = space.begin_episode(q_start[order])
        rows = space.from_joints(q[:, order], context)   # canonical EE16 order
    except ActionSpaceError as exc:
        raise ExportError(f"{bag}: {exc}") from None
    canon = list(space.channel_names)
    rows = rows[:, [canon.index(n) for n in embodiment.channel_names]]
    return rows.astype(np.float32), {"initial_eef_pose": np.asarray(context).tolist()}


def bag_to_episode(bag: str | Path, embodiment: EmbodimentConfig, cameras: dict[str, CameraTopic], *,
                   episode_index: int = 0, fps: float | None = None, task: str | None = None,
                   state_topic: str = topics.JOINT_STATES, max_frame_age_s: float = 0.5,
                   urdf: str | None = None, extra_metadata: dict | None = None) -> DemoEpisode:
    """Read one episode bag into a :class:`DemoEpisode` (see the module docstring for the row rules)."""
    bag = Path(bag)
    fps = float(fps or embodiment.control_hz)
    c = read_bag(bag, embodiment, cameras, state_topic)
    trial = bool(c.executed)
    if trial:
        actions, times, notes = _trial_rows(bag, c, embodiment)
        model_period = c.control_period_s or 1.0 / embodiment.control_hz
        if abs(1.0 / model_period - fps) / fps > 0.02:
            raise ExportError(f"{bag}: the model ran at {1.0 / model_period:g} Hz (chunk control_period), the "
                              f"dataset is at {fps:g} Hz; model-trial rows are action indices and cannot be "
                              f"resampled")
        joint_names = c.commands[0][1] if c.commands else (c.states[0][1] if c.states else ())
    else:
        q, times, notes, joint_names = _demo_rows(bag, c, fps)
        actions = q  # converted below, once the first row's joint state is known
    if not c.states:
        raise ExportError(f"{bag}: no {state_topic} messages (the measured joint state of each row)")
    state_stamps = [s for s, _, _ in c.states]
    state_names = tuple(joint_names) or c.states[0][1]
    frame_stamps = {role: [s for s, _ in fr] for role, fr in c.frames.items()}

    first = 0
    while first < len(times):  # leading rows without a frame per camera or a state are dropped
        t = int(times[first])
        if _latest_at_or_before(state_stamps, t) >= 0 and all(
                _latest_at_or_before(frame_stamps[r], t - int(cameras[r].latency_offset_s * NS)) >= 0
                for r in frame_stamps):
            break
        first += 1
    if first == len(times):
        raise ExportError(f"{bag}: no row has a camera frame from every camera and a joint state at or before it "
                          f"(cameras start after the commands ended?)")
    times = times[first:]
    actions = actions[first:]
    n = len(times)
    states = np.empty((n, len(state_names)), dtype=np.float32)
    frames = {role: np.empty((n, *embodiment.image_sizes[role], 3), dtype=np.uint8) for role in frame_stamps}
    for k, t in enumerate(times):
        t = int(t)
        _, names, pos = c.states[_latest_at_or_before(state_stamps, t)]
        try:
            states[k] = pos[[names.index(j) for j in state_names]]
        except ValueError:
            raise ExportError(f"{bag}: {state_topic} names {list(names)} lack some of {list(state_names)}") from None
        for role, stamps in frame_stamps.items():
            target = t - int(cameras[role].latency_offset_s * NS)
            i = _latest_at_or_before(stamps, target)
            age = (target - stamps[i]) / NS
            if age > max_frame_age_s:
                raise ExportError(f"{bag}: camera {role}: the newest frame before row {k} is {age:.3f} s old "
                                  f"(max_frame_age_s {max_frame_age_s:g}); the camera stalled or dropped frames")
            frames[role][k] = c.frames[role][i][1]
    if not trial:
        actions, conv_notes = _convert_demo_actions(bag, actions, tuple(joint_names), states[0].astype(np.float64),
                                                    embodiment, urdf)
        notes.update(conv_notes)
    bad = ~np.isfinite(actions)
    if bad.any():
        r, col = np.argwhere(bad)[0]
        raise ExportError(f"{bag}: action row {r}, channel {embodiment.channel_names[col]} is {actions[r, col]} "
                          f"({int(bad.sum())} non-finite values): NaNs in actions")
    info = c.info
    metadata = {
        "source_bag": str(bag), "episode_id": c.episode_id, "source": "model" if trial else str(
            info.get("source") or "demo"),
        "outcome": str(info.get("outcome") or ""), "prompt": str(info.get("prompt") or ""),
        "dropped_leading_rows": first, **{k: v for k, v in info.items() if v not in (None, "") and (
            k in ("pipeline_mode", "checkpoint", "checkpoint_hash", "seed", "recording_state", "reason")
            or k.startswith("teleop_"))},
        **notes, **(extra_metadata or {}),
    }
    prompt = task or str(info.get("prompt") or "")
    if not prompt.strip():
        raise ExportError(f"{bag}: the bag has no prompt (custom_data lingbot_va.prompt); pass --task")
    rel = (times - times[0]) / NS
    return DemoEpisode(episode_index=episode_index, task=prompt, fps=fps, camera_frames=frames,
                       actions=np.ascontiguousarray(actions, dtype=np.float32), channel_names=tuple(
                           embodiment.channel_names), action_space=embodiment.action_space, states=states,
                       state_names=tuple(state_names), timestamps=np.arange(n) / fps, embodiment=embodiment.name,
                       metadata=metadata, recorded_time_s=rel.astype(np.float64))
