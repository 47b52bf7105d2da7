"""Action spaces a chunk may use, and how they map to/from executor joint targets.

- ``joint``: absolute joint targets in executor joint order (rad; grippers in metres). Identity.
- ``ee_relative``: the RoboTwin 16-d EEF convention [L_xyz, L_quat(xyzw), L_grip, R_xyz, R_quat, R_grip],
  relative to the episode's initial EEF pose. Converted with the relative<->absolute convention of
  :mod:`lingbot_va_ros.model.actions` and IK/FK of :mod:`lingbot_va_ros.kinematics`. Both are imported
  lazily, on first use, so the joint path never depends on them and a missing module becomes a clear
  per-chunk rejection reason instead of a crash at start-up.

Conversions run on the ROS callback thread (IK is the slow part), never on the control thread.
"""
from __future__ import annotations

import abc
from typing import Any, Callable, Sequence

import numpy as np

# The RoboTwin/Franka embodiment channel names (config/embodiments/robotwin.yaml).
EE16_CHANNELS: tuple[str, ...] = tuple(
    f"{arm}_{c}" for arm in ("left", "right") for c in ("x", "y", "z", "qx", "qy", "qz", "qw", "gripper"))


class ActionSpaceError(ValueError):
    """A chunk that cannot be converted (unreachable pose, missing kinematics); the text says why."""


class ActionSpace(abc.ABC):
    """Maps rows of one action space (canonical channel order) to executor joint targets and back."""

    name: str
    channel_names: tuple[str, ...]

    def begin_episode(self, q_reference: np.ndarray | None) -> Any:
        """Per-episode context (e.g. the initial EEF pose), computed once from the arm's joints."""
        return None

    @abc.abstractmethod
    def to_joints(self, rows: np.ndarray, context: Any, q_seed: np.ndarray | None) -> np.ndarray:
        """[N, C] rows -> [N, J] joint targets (float64). Raises ActionSpaceError."""

    @abc.abstractmethod
    def from_joints(self, q: np.ndarray, context: Any) -> np.ndarray:
        """[N, J] commanded joints -> [N, C] rows in this space (what was really executed)."""


class JointSpace(ActionSpace):
    name = "joint"

    def __init__(self, joint_names: Sequence[str]):
        self.channel_names = tuple(joint_names)

    def to_joints(self, rows: np.ndarray, context: Any, q_seed: np.ndarray | None) -> np.ndarray:
        return np.asarray(rows, dtype=np.float64)

    def from_joints(self, q: np.ndarray, context: Any) -> np.ndarray:
        return np.asarray(q, dtype=np.float64)


class EeRelativeSpace(ActionSpace):
    """RoboTwin 16-d relative EEF <-> 14 joints, through a lazily imported kinematics model.

    ``kinematics`` / ``conventions`` may be injected (tests); otherwise they are
    ``lingbot_va_ros.kinematics.BimanualKinematics(urdf_path)`` and ``lingbot_va_ros.model.actions``.
    """

    name = "ee_relative"
    channel_names = EE16_CHANNELS

    def __init__(self, urdf_path: str | None, joint_names: Sequence[str], kinematics: Any = None,
                 conventions: Any = None, channel_names: Sequence[str] | None = None):
        self.urdf_path = urdf_path
        self.joint_names = tuple(joint_names)
        if channel_names is not None:
            self.channel_names = tuple(channel_names)
        self._kin = kinematics
        self._conv = conventions
        self._load_error: str | None = None

    # -- lazy dependencies ---------------------------------------------------------------------------------
    def _deps(self) -> tuple[Any, Any]:
        if self._kin is not None and self._conv is not None:
            return self._kin, self._conv
        if self._load_error:
            raise ActionSpaceError(self._load_error)
        try:
            if self._conv is None:
                from lingbot_va_ros.model import actions as conventions

                self._conv = conventions
            if self._kin is None:
                from lingbot_va_ros.kinematics import BimanualKinematics

                if not self.urdf_path:
                    raise ActionSpaceError("no URDF configured for the ee_relative IK")
                self._kin = BimanualKinematics(self.urdf_path)
        except ActionSpaceError as exc:
            self._load_error = f"ee_relative action space unavailable: {exc}"
            raise ActionSpaceError(self._load_error) from None
        except Exception as exc:  # noqa: BLE001 - ImportError, a broken URDF, ...: the chunk is rejected with it
            self._load_error = (f"ee_relative action space unavailable: cannot load lingbot_va_ros.kinematics "
                                f"BimanualKinematics / lingbot_va_ros.model.actions ({type(exc).__name__}: {exc})")
            raise ActionSpaceError(self._load_error) from None
        kin_names = getattr(self._kin, "joint_names", None)
        if kin_names is not None and tuple(kin_names) != self.joint_names:
            self._load_error = (f"ee_relative: kinematics joint order {list(kin_names)} differs from the executor's "
                                f"{list(self.joint_names)}")
            raise ActionSpaceError(self._load_error)
        if len(self.joint_names) != 14:
            self._load_error = (f"ee_relative needs the 14-joint bimanual arm, the arm config has "
                                f"{len(self.joint_names)}")
            raise ActionSpaceError(self._load_error)
        return self._kin, self._conv

    def available(self) -> tuple[bool, str]:
        try:
            self._deps()
            return True, "ok"
        except ActionSpaceError as exc:
            return False, str(exc)

    # -- conversions -------------------------------------------------------------------------------------
    def begin_episode(self, q_reference: np.ndarray | None) -> np.ndarray:
        kin, _ = self._deps()
        if q_reference is None:
            raise ActionSpaceError("no joint state yet: cannot latch the episode's initial EEF pose")
        pose = np.asarray(kin.fk(np.asarray(q_reference, dtype=np.float64)), dtype=np.float64).reshape(16)
        if not np.isfinite(pose).all():
            raise ActionSpaceError("FK of the initial joint state is not finite")
        return pose

    def to_joints(self, rows: np.ndarray, context: Any, q_seed: np.ndarray | None) -> np.ndarray:
        kin, conv = self._deps()
        if context is None:
            raise ActionSpaceError("no initial EEF pose for this episode")
        try:
            absolute = np.asarray(conv.relative_to_absolute_eef(np.asarray(rows, dtype=np.float64), context),
                                  dtype=np.float64)
        except ValueError as exc:
            raise ActionSpaceError(f"relative->absolute EEF conversion failed: {exc}") from None
        out = np.empty((absolute.shape[0], len(self.joint_names)), dtype=np.float64)
        seed = None if q_seed is None else np.asarray(q_seed, dtype=np.float64)
        for k, target in enumerate(absolute):
            try:
                q = np.asarray(kin.ik(target, seed), dtype=np.float64).reshape(-1)
            except Exception as exc:  # noqa: BLE001 - UnreachableError or any solver failure rejects the chunk
                raise ActionSpaceError(f"IK failed for row {k}: {type(exc).__name__}: {exc}") from None
            if q.shape != (len(self.joint_names),) or not np.isfinite(q).all():
                raise ActionSpaceError(f"IK returned an invalid solution for row {k}")
            out[k] = q
            seed = q  # warm start along the chunk: consecutive rows are close
        return out

    def from_joints(self, q: np.ndarray, context: Any) -> np.ndarray:
        kin, conv = self._deps()
        q2 = np.atleast_2d(np.asarray(q, dtype=np.float64))
        absolute = np.stack([np.asarray(kin.fk(row), dtype=np.float64).reshape(16) for row in q2])
        return np.asarray(conv.absolute_to_relative_eef(absolute, context), dtype=np.float64)


def build_action_spaces(names: Sequence[str], joint_names: Sequence[str], urdf_path: str | None,
                        factory: Callable[..., ActionSpace] | None = None) -> dict[str, ActionSpace]:
    spaces: dict[str, ActionSpace] = {}
    for name in names:
        if name == "joint":
            spaces[name] = JointSpace(joint_names)
        elif name == "ee_relative":
            spaces[name] = (factory or EeRelativeSpace)(urdf_path, joint_names)
        else:
            raise ValueError(f"unknown action space '{name}' (known: joint, ee_relative)")
    return spaces
