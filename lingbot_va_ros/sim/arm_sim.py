"""The bimanual arm simulation: physics only (no threads, no clock, no ROS); the node drives it in real time.

Commands are joint position targets. Like a real arm's position mode, the servo setpoint moves towards the
target no faster than the URDF velocity limit, so a far target (e.g. "go home") becomes a smooth move and a
stream of 50 Hz targets is tracked closely. Everything is deterministic: the same seed, targets and step
counts give bit-identical states.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from lingbot_va_ros.sim.gl import ensure_gl_backend

ensure_gl_backend()
import mujoco  # noqa: E402

from lingbot_va_ros.kinematics.bimanual import JOINT_NAMES  # noqa: E402
from lingbot_va_ros.sim.params import SimArmParams  # noqa: E402
from lingbot_va_ros.sim.scene import TABLE_TOP_Z, build_model  # noqa: E402


class CommandError(ValueError):
    """A joint command that is rejected as a whole; the message says why."""


@dataclass(frozen=True)
class SimSnapshot:
    """What a renderer needs: the generalized positions at one simulated instant."""

    time: float
    qpos: np.ndarray


def _name2id(model: mujoco.MjModel, kind: mujoco.mjtObj, name: str) -> int:
    i = mujoco.mj_name2id(model, kind, name)
    if i < 0:
        raise KeyError(f"model has no {kind.name[6:].lower()} named {name!r}")
    return i


class BimanualSim:
    def __init__(self, params: SimArmParams | None = None, urdf_path: str | Path | None = None,
                 seed: int | None = None):
        self.params = params or SimArmParams()
        self.model, self.layout = build_model(self.params, urdf_path)
        self.data = mujoco.MjData(self.model)
        m = self.model
        self.joint_names: tuple[str, ...] = JOINT_NAMES
        self._index = {n: i for i, n in enumerate(JOINT_NAMES)}
        jid = np.array([_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, n) for n in JOINT_NAMES])
        self._qadr = m.jnt_qposadr[jid]
        self._dadr = m.jnt_dofadr[jid]
        aid = np.array([_name2id(m, mujoco.mjtObj.mjOBJ_ACTUATOR, n) for n in JOINT_NAMES])
        if not np.array_equal(aid, np.arange(len(JOINT_NAMES))):
            raise RuntimeError("actuators must be the 14 commanded joints, in order")  # step() relies on it
        self.lower = m.jnt_range[jid, 0].copy()
        self.upper = m.jnt_range[jid, 1].copy()
        self.velocity_limits = np.array([self.layout.velocity_limits[n] for n in JOINT_NAMES])
        self._mimic = [(m.jnt_qposadr[_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, f)],
                        m.jnt_qposadr[_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, lead)], mult, off)
                       for f, (lead, mult, off) in self.layout.mimic.items()]
        self._objects = [(o, m.jnt_qposadr[_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, o.joint)])
                         for o in self.layout.objects]
        self._targets = np.zeros(len(JOINT_NAMES))
        self.steps = 0
        self.reset(self.params.seed if seed is None else seed)

    # ---- state ------------------------------------------------------------------------------------------
    @property
    def time(self) -> float:
        return float(self.data.time)

    @property
    def timestep(self) -> float:
        return float(self.model.opt.timestep)

    def reset(self, seed: int | None = None, q0: Sequence[float] | None = None) -> None:
        """Arms at ``q0`` (default: params.initial_positions), objects placed from ``seed``, time 0."""
        mujoco.mj_resetData(self.model, self.data)
        q = np.clip(np.asarray(self.params.initial_positions if q0 is None else q0, dtype=np.float64),
                    self.lower, self.upper)
        self.data.qpos[self._qadr] = q
        self._sync_mimic()
        self.data.ctrl[:] = q
        self._targets = q.copy()
        self.place_objects(self.params.seed if seed is None else seed)
        self.steps = 0
        mujoco.mj_forward(self.model, self.data)

    def _sync_mimic(self) -> None:
        for qf, ql, mult, off in self._mimic:
            self.data.qpos[qf] = mult * self.data.qpos[ql] + off

    def place_objects(self, seed: int) -> None:
        """Objects at random non-overlapping spots of the configured region (or a fixed row)."""
        cfg = self.params.objects
        rng = np.random.default_rng(seed)
        placed: list[tuple[float, float, float]] = []
        for k, (obj, adr) in enumerate(self._objects):
            if cfg.randomize:
                for _ in range(1000):
                    x, y = rng.uniform(*cfg.region_x), rng.uniform(*cfg.region_y)
                    if all(np.hypot(x - px, y - py) > obj.radius + pr + 0.01 for px, py, pr in placed):
                        break
                else:
                    raise RuntimeError(f"cannot place {obj.name} without overlap in the object region")
                yaw = rng.uniform(-np.pi, np.pi)
            else:
                n = max(1, len(self._objects) - 1)
                x = float(np.mean(cfg.region_x))
                y = cfg.region_y[0] + (cfg.region_y[1] - cfg.region_y[0]) * k / n
                yaw = 0.0
            placed.append((x, y, obj.radius))
            self.data.qpos[adr:adr + 3] = [x, y, TABLE_TOP_Z + obj.half_height + 1e-3]
            self.data.qpos[adr + 3:adr + 7] = [np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]

    # ---- commands -------------------------------------------------------------------------------------------
    def validate_command(self, names: Sequence[str],
                         positions: Sequence[float]) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(indices, values clipped to the limits, names that were clipped); CommandError if unusable."""
        names = list(names)
        if not names:
            raise CommandError("no joint names")
        if len(positions) != len(names):
            raise CommandError(f"{len(names)} names but {len(positions)} positions")
        unknown = [n for n in names if n not in self._index]
        if unknown:
            raise CommandError(f"unknown joint(s) {unknown}; known: {list(JOINT_NAMES)}")
        if len(set(names)) != len(names):
            raise CommandError(f"duplicate joint names in {names}")
        values = np.asarray(positions, dtype=np.float64)
        bad = [n for n, v in zip(names, values) if not np.isfinite(v)]
        if bad:
            raise CommandError(f"non-finite position for {bad}")
        idx = np.array([self._index[n] for n in names])
        clipped = np.clip(values, self.lower[idx], self.upper[idx])
        return idx, clipped, [n for n, v, c in zip(names, values, clipped) if v != c]

    def set_targets(self, names: Sequence[str], positions: Sequence[float]) -> list[str]:
        """Set position targets for some joints (others keep theirs). Returns the names clipped to limits."""
        idx, values, clipped = self.validate_command(names, positions)
        self._targets[idx] = values
        return clipped

    def set_target_vector(self, q14: Sequence[float]) -> list[str]:
        return self.set_targets(JOINT_NAMES, q14)

    @property
    def targets(self) -> np.ndarray:
        return self._targets.copy()

    # ---- stepping ---------------------------------------------------------------------------------------
    def step(self, n: int = 1) -> None:
        """Advance n physics steps; servo setpoints slew towards the targets at the URDF velocity limits."""
        m, d = self.model, self.data
        max_delta = self.velocity_limits * m.opt.timestep
        targets = self._targets
        for _ in range(n):
            ctrl = d.ctrl
            ctrl += np.clip(targets - ctrl, -max_delta, max_delta)
            mujoco.mj_step(m, d)
        self.steps += n

    # ---- readings ---------------------------------------------------------------------------------------------
    def joint_positions(self) -> np.ndarray:
        return self.data.qpos[self._qadr].copy()

    def joint_velocities(self) -> np.ndarray:
        return self.data.qvel[self._dadr].copy()

    def joint_efforts(self) -> np.ndarray:
        return self.data.actuator_force[:len(JOINT_NAMES)].copy()

    def snapshot(self) -> SimSnapshot:
        return SimSnapshot(float(self.data.time), self.data.qpos.copy())

    def body_pose(self, body: str) -> np.ndarray:
        """4x4 pose of a body (URDF link) in the world = base frame."""
        i = _name2id(self.model, mujoco.mjtObj.mjOBJ_BODY, body)
        T = np.eye(4)
        T[:3, :3] = self.data.xmat[i].reshape(3, 3)
        T[:3, 3] = self.data.xpos[i]
        return T

    def object_positions(self) -> dict[str, np.ndarray]:
        return {o.name: self.data.qpos[adr:adr + 3].copy() for o, adr in self._objects}
