"""The arm-driver plugin interface, and pure helpers for joint-name mapping and state assembly.

A driver turns the executor's final command (executor joint order, rad / m) into whatever the robot
stack consumes, and reports the measured state and its faults. Drivers are chosen by name in the arm
YAML (``driver:``), resolved through ``lingbot_va_ros.common.registry.ARM_DRIVERS``; ``driver_params`` are
validated by the driver's ``params_model`` (a strict pydantic model: unknown keys are errors).

Threading contract: ``send`` and ``state`` are called from the control thread every tick and must not
block (publish, copy, return); ROS callbacks that update the state hold a lock only to copy numbers.
"""
from __future__ import annotations

import abc
import math
import threading
from typing import Any, Mapping, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from lingbot_va_ros.executor.clock import JointStateSample, monotonic


class DriverError(RuntimeError):
    """A driver that cannot start (bad parameters, missing message package, ...)."""


class DriverParams(BaseModel):
    """Base of every driver's parameter schema."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ArmDriver(abc.ABC):
    """Base class of arm drivers. Subclasses set ``params_model`` and implement send/state."""

    params_model: type[DriverParams] = DriverParams

    def __init__(self, node: Any, joint_names: Sequence[str], params: Mapping[str, Any] | None = None, *,
                 period: float = 0.02, grippers: Sequence[bool] | None = None):
        self.node = node
        self.joint_names = tuple(joint_names)
        self.period = float(period)
        self.grippers = np.asarray(grippers if grippers is not None else [False] * len(self.joint_names), dtype=bool)
        self.params = self.validate_params(params or {})
        self._fault: str | None = None
        self._fault_lock = threading.Lock()

    @classmethod
    def validate_params(cls, params: Mapping[str, Any]) -> Any:
        try:
            return cls.params_model.model_validate(dict(params))
        except ValidationError as exc:
            lines = [f"invalid driver_params for {cls.__name__}:"]
            for err in exc.errors():
                loc = ".".join(str(p) for p in err["loc"])
                lines.append(f"  - {loc}: {err['msg']} (got {err.get('input')!r})")
            raise DriverError("\n".join(lines)) from None

    # -- lifecycle ---------------------------------------------------------------------------------------
    def start(self) -> None:
        """Create publishers/subscriptions/clients. Called once, before the control loop starts."""

    def stop(self) -> None:
        """Release resources; never commands motion (a stopped executor leaves the arm holding)."""

    # -- the control-thread API --------------------------------------------------------------------------
    @abc.abstractmethod
    def send(self, positions: np.ndarray, stamp_ns: int, velocities: np.ndarray | None = None) -> None:
        """Forward one command (executor order, rad / m). Must not block."""

    @abc.abstractmethod
    def state(self) -> JointStateSample | None:
        """The latest measured state in executor order, or None if not every joint has been heard from."""

    @property
    def fault(self) -> str | None:
        """A driver-detected fault (e.g. a rejected goal); the executor stops and latches it."""
        with self._fault_lock:
            return self._fault

    def set_fault(self, text: str) -> None:
        with self._fault_lock:
            if self._fault is None:
                self._fault = text

    def clear_fault(self) -> bool:
        """Called by re-arm. Return False if the cause persists (re-arm is then refused)."""
        with self._fault_lock:
            self._fault = None
        return True

    def describe(self) -> dict[str, str]:
        """Key/values for /diagnostics."""
        return {"driver": type(self).__name__}


# ---- pure helpers ---------------------------------------------------------------------------------------
def joint_scales(grippers: np.ndarray, position_unit: str, gripper_scale: float) -> np.ndarray:
    """Per-joint factor executor unit -> driver unit (rad->deg for arm joints, metres x scale for grippers)."""
    arm = 180.0 / math.pi if position_unit == "deg" else 1.0
    return np.where(grippers, float(gripper_scale), arm)


def resolve_joint_map(joint_names: Sequence[str],
                      spec: Mapping[str, str] | Sequence[str] | None) -> list[tuple[int, str]]:
    """(executor index, driver joint name) pairs for a group; ``spec`` is a dict executor->driver name, a
    list of executor names (driver names identical), or None (every joint, identical names)."""
    index = {n: i for i, n in enumerate(joint_names)}
    if spec is None or len(spec) == 0:
        return [(i, n) for i, n in enumerate(joint_names)]
    items = spec.items() if isinstance(spec, Mapping) else [(n, n) for n in spec]
    out = []
    for exec_name, driver_name in items:
        if exec_name not in index:
            raise DriverError(f"joint '{exec_name}' in the driver mapping is not an executor joint "
                              f"({list(joint_names)})")
        out.append((index[exec_name], str(driver_name)))
    return out


class StateAssembler:
    """Assembles the executor-order state from JointState-like messages of one or more topics.

    Each joint keeps its own receive time; a sample is as old as its OLDEST joint, so one silent topic of a
    two-arm setup makes the state stale (and the executor fault) instead of silently holding half a robot.
    """

    def __init__(self, n_joints: int):
        self._pos = np.full(n_joints, np.nan)
        self._vel = np.full(n_joints, np.nan)
        self._t = np.full(n_joints, -np.inf)
        self._lock = threading.Lock()
        self._cache: dict[Any, tuple[tuple[str, ...], np.ndarray, np.ndarray]] = {}

    def update(self, group: Any, mapping: Sequence[tuple[int, str]], names: Sequence[str], positions: Sequence[float],
               scale: np.ndarray, velocities: Sequence[float] = (), received: float | None = None) -> int:
        """Apply one message. ``mapping``: (executor index, driver name); ``scale``: executor->driver factor
        per executor joint. Returns how many joints it updated. Messages without names are positional."""
        received = monotonic() if received is None else received
        names_t = tuple(names)
        cached = self._cache.get(group)
        if cached is None or cached[0] != names_t:
            if names_t:
                where = {n: k for k, n in enumerate(names_t)}
                pairs = [(i, where[d]) for i, d in mapping if d in where]
            else:
                pairs = [(i, k) for k, (i, _d) in enumerate(mapping)]
            exec_idx = np.array([p[0] for p in pairs], dtype=np.int64)
            msg_idx = np.array([p[1] for p in pairs], dtype=np.int64)
            cached = (names_t, exec_idx, msg_idx)
            self._cache[group] = cached
        _, exec_idx, msg_idx = cached
        pos = np.asarray(positions, dtype=np.float64)
        if exec_idx.size == 0 or msg_idx.max(initial=-1) >= pos.size:
            return 0
        values = pos[msg_idx] / scale[exec_idx]
        vel = np.asarray(velocities, dtype=np.float64)
        with self._lock:
            self._pos[exec_idx] = values
            self._t[exec_idx] = received
            if vel.size > msg_idx.max(initial=-1):
                self._vel[exec_idx] = vel[msg_idx] / scale[exec_idx]
        return int(exec_idx.size)

    def sample(self) -> JointStateSample | None:
        with self._lock:
            if not np.isfinite(self._t).all():
                return None
            pos, vel, t = self._pos.copy(), self._vel.copy(), float(self._t.min())
        return JointStateSample(pos, t, vel if np.isfinite(vel).all() else None)
