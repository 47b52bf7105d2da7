"""Chunk ingest: validate a whole chunk and convert it to joint targets, or reject it with one reason.

Runs on the ROS callback thread (so IK never delays a control tick). A chunk is never repaired point-wise:
one bad value anywhere rejects all of it. Checks that need the executor's timeline (ordering, duplicates,
the first-action jump against the current command) happen in :class:`~lingbot_va_ros.executor.core.ExecutorCore`.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from lingbot_va_ros.executor.action_space import ActionSpace, ActionSpaceError
from lingbot_va_ros.executor.limits import JointLimits

MAX_EPISODE_ID = 256


@dataclass(frozen=True)
class ChunkData:
    """The fields of a lingbot_va_ros/ActionChunk the executor uses (rclpy-free)."""

    episode_id: str
    chunk_index: int
    start_index: int
    action_space: str
    channel_names: tuple[str, ...]
    shape: tuple[int, ...]
    actions: Any                      # flat row-major sequence of floats
    control_period: float = 0.0       # seconds; 0 = not given
    inference_latency: float = 0.0
    observation_action_index: int = -1

    @classmethod
    def from_msg(cls, msg: Any) -> "ChunkData":
        period = msg.control_period.sec + msg.control_period.nanosec * 1e-9
        return cls(episode_id=str(msg.episode_id), chunk_index=int(msg.chunk_index),
                   start_index=int(msg.start_index), action_space=str(msg.action_space),
                   channel_names=tuple(msg.channel_names), shape=tuple(int(s) for s in msg.shape),
                   actions=msg.actions, control_period=period, inference_latency=float(msg.inference_latency),
                   observation_action_index=int(msg.observation_action_index))


@dataclass(eq=False)
class PreparedChunk:
    """A validated chunk: original rows (chunk channel order) and joint targets (executor order)."""

    episode_id: str
    chunk_index: int
    start_index: int
    action_space: str
    channel_names: tuple[str, ...]   # the chunk's own order (ExecutedActions is reported in it)
    raw: np.ndarray                  # [N, C] float32, exactly as received
    joints: np.ndarray               # [N, J] float64 joint targets
    space: ActionSpace
    to_canonical: np.ndarray         # column permutation chunk order -> the space's canonical order
    context: Any = None              # per-episode conversion context (ee: initial EEF pose)
    received: float = 0.0
    inference_latency: float = 0.0

    @property
    def rows(self) -> int:
        return int(self.raw.shape[0])

    @property
    def end(self) -> int:
        return self.start_index + self.rows

    def report_rows(self, commanded: np.ndarray, modified: np.ndarray, row_ids: np.ndarray) -> np.ndarray:
        """What was executed, in this chunk's space and channel order: unmodified rows are the chunk's own
        values bit for bit; modified rows are converted back from the commanded joints."""
        out = self.raw[row_ids].astype(np.float32, copy=True)
        if modified.any():
            canon = self.space.from_joints(commanded[modified], self.context)
            chunk_order = np.empty_like(canon)
            chunk_order[:, self.to_canonical] = canon
            out[modified] = chunk_order.astype(np.float32)
        return out


@dataclass(frozen=True)
class Rejection:
    episode_id: str
    chunk_index: int
    start_index: int
    reason: str
    category: str
    received: float = 0.0


@dataclass
class ValidationSettings:
    max_rows: int = 1024
    period_tolerance: float = 0.05          # relative
    limit_tolerance: float = 0.05           # fraction of a joint's range a target may exceed before rejection
    gripper_limit_tolerance: float = 1.0    # the same for grippers: saturated like every gripper driver does
    check_row_jumps: bool = True
    max_episodes_remembered: int = 8


@dataclass
class ChunkPreparer:
    spaces: Mapping[str, ActionSpace]
    limits: JointLimits
    period: float
    settings: ValidationSettings = field(default_factory=ValidationSettings)
    reference_q: Callable[[], np.ndarray | None] = lambda: None   # current joints (ee: initial pose, IK seed)

    def __post_init__(self) -> None:
        self._contexts: OrderedDict[tuple[str, str], Any] = OrderedDict()
        width = self.limits.range_width()
        fraction = np.where(self.limits.is_gripper, self.settings.gripper_limit_tolerance,
                            self.settings.limit_tolerance)
        tol = np.where(np.isfinite(width), width * fraction, np.inf)
        self._reject_lo = self.limits.lower - tol
        self._reject_hi = self.limits.upper + tol

    def prepare(self, data: ChunkData, now: float = 0.0) -> PreparedChunk | Rejection:
        def reject(category: str, reason: str) -> Rejection:
            return Rejection(str(data.episode_id)[:MAX_EPISODE_ID], int(data.chunk_index), int(data.start_index),
                             f"chunk {data.episode_id}#{data.chunk_index}@{data.start_index}: {reason}", category, now)

        if len(data.episode_id) > MAX_EPISODE_ID:
            return reject("episode", f"episode_id longer than {MAX_EPISODE_ID} characters")
        if data.start_index < 0:
            return reject("index", f"negative start_index {data.start_index}")
        space = self.spaces.get(data.action_space)
        if space is None:
            return reject("action_space", f"action space '{data.action_space}' not accepted "
                                          f"(accepted: {sorted(self.spaces)})")
        shape = tuple(data.shape)
        if len(shape) != 2:
            return reject("shape", f"shape must be [rows, cols], got {list(shape)}")
        rows, cols = shape
        if rows <= 0 or cols <= 0:
            return reject("shape", f"empty chunk, shape {list(shape)}")
        if rows > self.settings.max_rows:
            return reject("size", f"{rows} rows exceed max_rows {self.settings.max_rows}")
        expected = space.channel_names
        if cols != len(expected):
            return reject("shape", f"{cols} columns, the '{space.name}' space has {len(expected)}")
        try:
            flat = np.asarray(data.actions, dtype=np.float32).reshape(-1)
        except (TypeError, ValueError) as exc:
            return reject("shape", f"actions are not numbers: {exc}")
        if flat.size != rows * cols:
            return reject("size", f"shape {list(shape)} needs {rows * cols} values, got {flat.size}")
        raw = flat.reshape(rows, cols)
        if not np.isfinite(raw).all():
            r, c = np.argwhere(~np.isfinite(raw))[0]
            return reject("nonfinite", f"non-finite value {raw[r, c]} at row {r}, column {c}")
        names = tuple(data.channel_names)
        if names != expected:
            if sorted(names) != sorted(expected):
                return reject("channels", f"channel_names {list(names)} do not match the '{space.name}' channels "
                                          f"{list(expected)}")
        pos = {n: i for i, n in enumerate(names)}
        to_canonical = np.array([pos[n] for n in expected], dtype=np.int64)  # canonical column k <- chunk column
        if data.control_period > 0:
            rel = abs(data.control_period - self.period) / self.period
            if rel > self.settings.period_tolerance:
                return reject("period", f"control_period {data.control_period:.4f} s does not match the executor's "
                                        f"{self.period:.4f} s")
        canonical = raw[:, to_canonical].astype(np.float64)
        try:
            context = self._context(data.episode_id, space)
            joints = space.to_joints(canonical, context, self.reference_q())
        except ActionSpaceError as exc:
            return reject("conversion", str(exc))
        joints = np.asarray(joints, dtype=np.float64)
        if joints.shape != (rows, len(self.limits.names)) or not np.isfinite(joints).all():
            return reject("conversion", f"conversion produced {joints.shape} / non-finite joint targets")
        out = (joints < self._reject_lo) | (joints > self._reject_hi)
        if out.any():
            r, j = np.argwhere(out)[0]
            return reject("limits", f"row {r}: {self.limits.names[j]} = {joints[r, j]:.4f} outside "
                                    f"[{self.limits.lower[j]:.4f}, {self.limits.upper[j]:.4f}] by more than the "
                                    f"tolerance")
        if self.settings.check_row_jumps and rows > 1:
            steps = np.abs(np.diff(joints, axis=0)) - self.limits.max_first_jump
            if (steps > 0).any():
                r, j = np.argwhere(steps > 0)[0]
                return reject("row_jump", f"row {r + 1}: {self.limits.names[j]} jumps "
                                          f"{abs(joints[r + 1, j] - joints[r, j]):.4f} from the previous row "
                                          f"(max_first_jump {self.limits.max_first_jump[j]:.4f})")
        return PreparedChunk(episode_id=data.episode_id, chunk_index=int(data.chunk_index),
                             start_index=int(data.start_index), action_space=space.name, channel_names=names,
                             raw=raw.copy(), joints=joints, space=space, to_canonical=to_canonical,
                             context=context, received=now, inference_latency=float(data.inference_latency))

    def _context(self, episode_id: str, space: ActionSpace) -> Any:
        key = (episode_id, space.name)
        if key not in self._contexts:
            self._contexts[key] = space.begin_episode(self.reference_q())
            while len(self._contexts) > self.settings.max_episodes_remembered:
                self._contexts.popitem(last=False)
        return self._contexts[key]

