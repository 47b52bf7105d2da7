"""A scripted demonstrator for the simulated arm: pick a tabletop block, lift it, put it back (no rclpy).

A real controller, not a replay: each control tick it turns a Cartesian plan into joint targets with IK
(:mod:`lingbot_va_ros.kinematics`, warm-started from the previous target), and it advances through its phases
on the *measured* joints: a phase ends when FK of the measured joints is within ``reach_tolerance_m`` of the
phase's goal (or after a timeout), the grasp ends when the measured gripper stops closing. Targets come out in
the 14-joint executor order and go through the same command path as the executor's ``sim`` driver.

Per episode, a seed draws the block (when not given), the approach and lift heights, the Cartesian speed and a
small grasp offset, so episodes differ while the task stays the same: reach above the block (top-down, the
fingers across two faces of the block), descend, close, lift, hold, lower it back, open, retreat.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from lingbot_va_ros.kinematics.bimanual import JOINT_NAMES, Q_SLICES

BLOCK_COLORS = ("red", "green", "blue", "yellow", "purple", "cyan")   # lingbot_va_ros/sim/scene.py order
GRIPPER_OPEN = 0.034          # m per finger: clears a 4 cm block with 1.4 cm to spare
GRIPPER_CLOSED = 0.0          # the force-limited servo squeezes the block
HOME_YAW = math.pi / 2        # the home pose's gripper opening direction (base +y)


@dataclass(frozen=True)
class TableObject:
    name: str
    position: np.ndarray      # [3] m, base frame (centre)
    yaw: float                # rad about z

    @property
    def label(self) -> str:
        if self.name.startswith("block") and self.name[5:].isdigit():
            return f"{BLOCK_COLORS[int(self.name[5:]) % len(BLOCK_COLORS)]} block"
        return self.name


def objects_from_sim(sim) -> list[TableObject]:
    """The blocks of a :class:`lingbot_va_ros.sim.arm_sim.BimanualSim` (positions + yaw from their free joints)."""
    out = []
    for obj, adr in sim._objects:   # noqa: SLF001 - (object, qpos address) pairs of the built scene
        if not obj.name.startswith("block"):
            continue
        w, _, _, z = sim.data.qpos[adr + 3:adr + 7]
        out.append(TableObject(obj.name, np.array(sim.data.qpos[adr:adr + 3], dtype=np.float64),
                               float(2.0 * math.atan2(z, w))))
    return out


def top_down_quat(yaw: float) -> np.ndarray:
    """xyzw quaternion of a tool frame approaching straight down (x = -z) with its opening axis y at ``yaw``."""
    x = np.array([0.0, 0.0, -1.0])
    y = np.array([math.cos(yaw), math.sin(yaw), 0.0])
    return Rotation.from_matrix(np.column_stack([x, y, np.cross(x, y)])).as_quat()


def grasp_yaw(block_yaw: float) -> float:
    """Opening direction along a face normal of the block (every 90 deg), nearest the home direction."""
    k = round((HOME_YAW - block_yaw) / (math.pi / 2))
    return block_yaw + k * math.pi / 2


def min_jerk(s: float) -> float:
    s = min(max(s, 0.0), 1.0)
    return s ** 3 * (10 - 15 * s + 6 * s * s)


@dataclass
class Phase:
    name: str
    goal: np.ndarray              # tool position at the end [3]
    gripper: float                # finger target during the phase (m)
    duration_s: float             # nominal motion time
    wait_gripper: bool = False    # end when the measured gripper has settled


@dataclass
class PickSettings:
    approach_height: tuple[float, float] = (0.07, 0.11)   # m above the block centre, drawn per episode
    lift_height: tuple[float, float] = (0.08, 0.14)
    speed: tuple[float, float] = (0.14, 0.22)             # m/s average along each move
    grasp_offset: float = 0.004                           # m, xy jitter of the grasp point (uniform +-)
    grasp_depth: float = 0.004                            # m below the block centre the tool centre goes
    reach_tolerance_m: float = 0.015
    phase_timeout_s: float = 1.5                          # extra time a phase may wait for the arm
    hold_s: float = 0.3


@dataclass
class ScriptedPick:
    """One episode of the pick demonstration; call :meth:`step` once per control tick."""

    kinematics: object            # BimanualKinematics(gripper_units="joint")
    target: TableObject
    q_start: np.ndarray           # measured joints at the start [14]
    seed: int
    settings: PickSettings = field(default_factory=PickSettings)

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        s = self.settings
        self.arm = "left" if self.target.position[1] >= 0 else "right"
        self._slice = Q_SLICES[self.arm]
        self._grip_index = JOINT_NAMES.index(f"{self.arm}_gripper")
        self.quat = top_down_quat(grasp_yaw(self.target.yaw))
        start_pose = self.kinematics.fk(self.q_start)
        ee = start_pose[0:3] if self.arm == "left" else start_pose[8:11]
        self.start_position = np.asarray(ee, dtype=np.float64)
        self.start_quat = np.asarray(start_pose[3:7] if self.arm == "left" else start_pose[11:15], dtype=np.float64)
        grasp = self.target.position + np.r_[rng.uniform(-s.grasp_offset, s.grasp_offset, 2), -s.grasp_depth]
        above = grasp + [0.0, 0.0, rng.uniform(*s.approach_height)]
        lifted = grasp + [0.0, 0.0, rng.uniform(*s.lift_height)]
        place = grasp + [0.0, 0.0, 0.003]
        self.speed = float(rng.uniform(*s.speed))
        self.phases = [
            Phase("reach", above, GRIPPER_OPEN, self._time(self.start_position, above)),
            Phase("descend", grasp, GRIPPER_OPEN, self._time(above, grasp)),
            Phase("close", grasp, GRIPPER_CLOSED, 0.5, wait_gripper=True),
            Phase("lift", lifted, GRIPPER_CLOSED, self._time(grasp, lifted)),
            Phase("hold", lifted, GRIPPER_CLOSED, s.hold_s),
            Phase("lower", place, GRIPPER_CLOSED, self._time(lifted, place)),
            Phase("open", place, GRIPPER_OPEN, 0.4, wait_gripper=True),
            Phase("retreat", above, GRIPPER_OPEN, self._time(place, above)),
        ]
        self.phase_index = 0
        self._phase_t0 = 0.0
        self._from = self.start_position
        self._from_grip = float(self.q_start[self._grip_index])
        self._q_cmd = np.asarray(self.q_start, dtype=np.float64).copy()
        self._last_grip = None
        self.log: list[tuple[float, str]] = []

    def _time(self, a: np.ndarray, b: np.ndarray) -> float:
        return max(0.4, float(np.linalg.norm(np.asarray(b) - np.asarray(a))) / self.speed)

    @property
    def done(self) -> bool:
        return self.phase_index >= len(self.phases)

    @property
    def phase(self) -> str:
        return self.phases[self.phase_index].name if not self.done else "done"

    def _tool_position(self, q: np.ndarray) -> np.ndarray:
        pose = self.kinematics.fk(q)
        return pose[0:3] if self.arm == "left" else pose[8:11]

    def _phase_complete(self, phase: Phase, elapsed: float, q_measured: np.ndarray) -> bool:
        if elapsed < phase.duration_s:
            return False
        if elapsed > phase.duration_s + self.settings.phase_timeout_s:
            return True
        if phase.wait_gripper:
            grip = float(q_measured[self._grip_index])
            settled = self._last_grip is not None and abs(grip - self._last_grip) < 2e-4
            self._last_grip = grip
            return settled
        return float(np.linalg.norm(self._tool_position(q_measured) - phase.goal)) <= self.settings.reach_tolerance_m

    def step(self, t_s: float, q_measured: np.ndarray) -> np.ndarray:
        """Joint targets [14] for the tick at ``t_s`` (seconds since the episode started)."""
        while not self.done:
            phase = self.phases[self.phase_index]
            elapsed = t_s - self._phase_t0
            if not self._phase_complete(phase, elapsed, np.asarray(q_measured, dtype=np.float64)):
                break
            self.log.append((t_s, phase.name))
            self.phase_index += 1
            self._phase_t0 = t_s
            self._from, self._from_grip = phase.goal, phase.gripper
            self._last_grip = None
        if self.done:
            return self._q_cmd.copy()
        phase = self.phases[self.phase_index]
        s = min_jerk((t_s - self._phase_t0) / phase.duration_s)
        position = self._from + s * (phase.goal - self._from)
        quat = self.quat
        if self.phase_index == 0:   # turn the tool from its start orientation to the grasp one while reaching
            rots = Rotation.from_quat([self.start_quat, self.quat])
            quat = Slerp([0.0, 1.0], rots)([s]).as_quat()[0]
        seed6 = self._q_cmd[self._slice][:6]
        q_arm = self.kinematics.ik_arm(self.arm, position, quat, seed6)
        q = self._q_cmd.copy()
        q[self._slice.start:self._slice.start + 6] = q_arm
        q[self._grip_index] = self._from_grip + s * (phase.gripper - self._from_grip)
        self._q_cmd = q
        return q.copy()
