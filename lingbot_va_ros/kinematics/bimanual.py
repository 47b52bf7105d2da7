"""Forward and inverse kinematics of the bimanual arm, read from its URDF, in the RoboTwin 16-d EEF layout.

Joint vector (14, the ALOHA / dual-Piper order):
    [left_joint1..6, left_gripper, right_joint1..6, right_gripper]   (rad; gripper = finger travel in m)
EEF vector (16, spec §5.6 RoboTwin order):
    [L_xyz(3), L_quat(4), L_grip, R_xyz(3), R_quat(4), R_grip]
    xyz of ``<arm>_ee`` in the base frame (m); quaternion in scipy (x, y, z, w) order, sign chosen so w >= 0;
    gripper normalised to 0 (closed) .. 1 (fully open) as RoboTwin stores it, or in metres with
    ``gripper_units="joint"``.

IK uses ikpy (maintained, pure Python, pip-installable, parses the URDF chain itself and honours the joint
limits as optimiser bounds). Each arm is solved on its own 6-joint chain from ``base_link`` to ``<arm>_ee``,
warm-started from the seed (the current joints) so consecutive targets stay on the same solution branch;
when that fails, a few deterministic restarts are tried before :class:`UnreachableError` is raised.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy.spatial.transform import Rotation

from lingbot_va_ros.kinematics.urdf_limits import JointLimits, chain_to, default_urdf_path, read_urdf_joints

ARMS = ("left", "right")
ARM_JOINTS = {arm: tuple(f"{arm}_joint{i}" for i in range(1, 7)) for arm in ARMS}
GRIPPERS = {arm: f"{arm}_gripper" for arm in ARMS}
JOINT_NAMES: tuple[str, ...] = (*ARM_JOINTS["left"], GRIPPERS["left"], *ARM_JOINTS["right"], GRIPPERS["right"])
EE_LINKS = {arm: f"{arm}_ee" for arm in ARMS}
Q_SLICES = {"left": slice(0, 7), "right": slice(7, 14)}     # per arm: 6 joints + gripper
EE_SLICES = {"left": slice(0, 8), "right": slice(8, 16)}    # per arm: xyz, quat, gripper


class UnreachableError(ValueError):
    """No joint configuration within limits reaches the target within tolerance."""

    def __init__(self, arm: str, position_error: float, orientation_error: float, position_tolerance: float,
                 orientation_tolerance: float, target: np.ndarray):
        self.arm = arm
        self.position_error = position_error
        self.orientation_error = orientation_error
        self.position_tolerance = position_tolerance
        self.orientation_tolerance = orientation_tolerance
        self.target = np.asarray(target)
        super().__init__(
            f"{arm} arm cannot reach xyz={np.round(self.target[:3], 4).tolist()} "
            f"quat_xyzw={np.round(self.target[3:7], 4).tolist()} within joint limits: best solution is "
            f"{position_error * 1000:.1f} mm / {np.degrees(orientation_error):.2f} deg away "
            f"(tolerance {position_tolerance * 1000:.1f} mm / {np.degrees(orientation_tolerance):.2f} deg)")


def _pose_errors(T: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    pos = float(np.linalg.norm(T[:3, 3] - target[:3, 3]))
    cos = (np.trace(T[:3, :3].T @ target[:3, :3]) - 1.0) / 2.0
    return pos, float(np.arccos(np.clip(cos, -1.0, 1.0)))


class BimanualKinematics:
    """FK / IK of both arms of ``urdf_path`` (default: the project's urdf/bimanual_arm.urdf).

    Thread-safe: solves on the same instance are serialised (ikpy chains hold no per-call state we rely on,
    but the lock keeps the cost predictable when several threads share one instance).
    """

    def __init__(self, urdf_path: str | Path | None = None, *, base_link: str = "base_link",
                 position_tolerance: float = 1e-3, orientation_tolerance: float = 1e-2, restarts: int = 6,
                 gripper_units: str = "normalized", solver_tol: float = 1e-4):
        import warnings

        from ikpy.chain import Chain

        if gripper_units not in ("normalized", "joint"):
            raise ValueError(f"gripper_units must be 'normalized' or 'joint', got {gripper_units!r}")
        self.urdf_path = Path(urdf_path) if urdf_path is not None else default_urdf_path()
        self.base_link = base_link
        self.position_tolerance = float(position_tolerance)
        self.orientation_tolerance = float(orientation_tolerance)
        self.restarts = int(restarts)
        self.gripper_units = gripper_units
        self.solver_tol = float(solver_tol)
        self.joint_names = JOINT_NAMES
        self.limits = JointLimits.from_urdf(self.urdf_path, JOINT_NAMES)
        joints = read_urdf_joints(self.urdf_path)
        self._chains = {}
        self._active = {}
        for arm in ARMS:
            path = chain_to(joints, EE_LINKS[arm], base_link)
            movable = [j.name for j in path if j.movable]
            if tuple(movable) != ARM_JOINTS[arm]:
                raise ValueError(f"{self.urdf_path}: chain {base_link} -> {EE_LINKS[arm]} has movable joints "
                                 f"{movable}, expected {list(ARM_JOINTS[arm])}")
            elements = [base_link]
            for j in path:
                elements += [j.name, j.child]
            mask = [False] + [j.movable for j in path]   # ikpy prepends its own origin link
            with warnings.catch_warnings():  # ikpy warns about the fixed links we explicitly mask out
                warnings.simplefilter("ignore")
                # symbolic: ikpy compiles the chain's FK once (~0.15 s), making each FK ~6x faster
                self._chains[arm] = Chain.from_urdf_file(str(self.urdf_path), base_elements=elements,
                                                         active_links_mask=mask, name=arm, symbolic=True)
            self._active[arm] = np.flatnonzero(mask)
        arm_idx = {arm: [JOINT_NAMES.index(n) for n in ARM_JOINTS[arm]] for arm in ARMS}
        self._lo = {arm: self.limits.lower[arm_idx[arm]] for arm in ARMS}
        self._hi = {arm: self.limits.upper[arm_idx[arm]] for arm in ARMS}
        self._grip_idx = {arm: JOINT_NAMES.index(GRIPPERS[arm]) for arm in ARMS}
        self._lock = threading.Lock()

    # ---- gripper units ----------------------------------------------------------------------------------
    def gripper_to_ee(self, arm: str, q_grip: float) -> float:
        if self.gripper_units == "joint":
            return float(q_grip)
        i = self._grip_idx[arm]
        lo, hi = self.limits.lower[i], self.limits.upper[i]
        return float((q_grip - lo) / (hi - lo))

    def gripper_from_ee(self, arm: str, value: float) -> float:
        i = self._grip_idx[arm]
        lo, hi = self.limits.lower[i], self.limits.upper[i]
        q = value if self.gripper_units == "joint" else lo + value * (hi - lo)
        return float(np.clip(q, lo, hi))

    # ---- forward kinematics -------------------------------------------------------------------------------
    def arm_pose(self, arm: str, q_arm: Sequence[float]) -> np.ndarray:
        """4x4 pose of ``<arm>_ee`` in the base frame for the arm's 6 joint angles."""
        chain = self._chains[arm]
        full = np.zeros(len(chain.links))
        full[self._active[arm]] = np.asarray(q_arm, dtype=np.float64)[:6]
        return np.asarray(chain.forward_kinematics(full), dtype=np.float64)

    def fk(self, q14: Sequence[float]) -> np.ndarray:
        """[14] joints -> [16] EEF (or [N, 14] -> [N, 16])."""
        q = np.asarray(q14, dtype=np.float64)
        if q.shape[-1] != 14:
            raise ValueError(f"fk expects 14 joint values {list(JOINT_NAMES)}, got shape {q.shape}")
        if not np.all(np.isfinite(q)):
            raise ValueError("fk: non-finite joint values")
        if q.ndim == 2:
            return np.stack([self.fk(row) for row in q])
        out = np.empty(16)
        for arm in ARMS:
            qa = q[Q_SLICES[arm]]
            T = self.arm_pose(arm, qa[:6])
            quat = Rotation.from_matrix(T[:3, :3]).as_quat()
            if quat[3] < 0:  # one canonical sign so identical poses give identical vectors
                quat = -quat
            s = EE_SLICES[arm]
            out[s] = [*T[:3, 3], *quat, self.gripper_to_ee(arm, qa[6])]
        return out

    # ---- inverse kinematics --------------------------------------------------------------------------------
    def ik_arm(self, arm: str, position: Sequence[float], quat_xyzw: Sequence[float],
               seed: Sequence[float]) -> np.ndarray:
        """6 joint angles of ``arm`` placing ``<arm>_ee`` at the pose, starting from ``seed`` (6)."""
        pos = np.asarray(position, dtype=np.float64)
        quat = np.asarray(quat_xyzw, dtype=np.float64)
        norm = np.linalg.norm(quat)
        if not (np.all(np.isfinite(pos)) and np.all(np.isfinite(quat))) or norm < 1e-8:
            raise ValueError(f"{arm} arm: target must be finite with a non-zero quaternion, got {pos}, {quat}")
        target = np.eye(4)
        target[:3, :3] = Rotation.from_quat(quat / norm).as_matrix()
        target[:3, 3] = pos
        lo, hi = self._lo[arm], self._hi[arm]
        seed6 = np.asarray(seed, dtype=np.float64)[:6]
        if not np.all(np.isfinite(seed6)):
            raise ValueError(f"{arm} arm: non-finite seed {seed6}")
        # ikpy needs a start strictly inside its bounds
        margin = 1e-6
        seed6 = np.clip(seed6, lo + margin, hi - margin)

        # Already there (the target did not move): no solve, no drift.
        pe, oe = _pose_errors(self.arm_pose(arm, seed6), target)
        if pe < self.position_tolerance * 1e-3 and oe < self.orientation_tolerance * 1e-3:
            return seed6

        rng = np.random.default_rng(0)  # fixed: the same target and seed always give the same answer
        starts = [seed6, np.clip(np.zeros(6), lo + margin, hi - margin)]
        starts += [rng.uniform(lo + 0.1 * (hi - lo), hi - 0.1 * (hi - lo)) for _ in range(self.restarts)]
        best = (np.inf, np.inf, seed6)
        with self._lock:
            for k, start in enumerate(starts):
                # restarts reach for the position first: from a far start the joint pose solve tends to
                # settle on the orientation and stall short of the position
                q = self._solve(arm, target, start, position_first=k > 0)
                pe, oe = _pose_errors(self.arm_pose(arm, q), target)
                if pe <= self.position_tolerance and oe <= self.orientation_tolerance:
                    return q
                if pe / self.position_tolerance + oe / self.orientation_tolerance < \
                        best[0] / self.position_tolerance + best[1] / self.orientation_tolerance:
                    best = (pe, oe, q)
        raise UnreachableError(arm, best[0], best[1], self.position_tolerance, self.orientation_tolerance,
                               np.concatenate([pos, quat / norm]))

    def _solve(self, arm: str, target: np.ndarray, start6: np.ndarray,
               position_first: bool = False) -> np.ndarray:
        chain, active = self._chains[arm], self._active[arm]
        full = np.zeros(len(chain.links))
        full[active] = start6
        if position_first:
            full = np.asarray(chain.inverse_kinematics_frame(target, initial_position=full, orientation_mode=None,
                                                             tol=self.solver_tol), dtype=np.float64)
            full[active] = np.clip(full[active], self._lo[arm] + 1e-6, self._hi[arm] - 1e-6)
        sol = chain.inverse_kinematics_frame(target, initial_position=full, orientation_mode="all",
                                             tol=self.solver_tol)
        # the optimiser's bounds are the URDF limits; clip away round-off only
        return np.clip(np.asarray(sol, dtype=np.float64)[self._active[arm]], self._lo[arm], self._hi[arm])

    def ik(self, ee16: Sequence[float], q_seed: Sequence[float] | None = None) -> np.ndarray:
        """[16] EEF target -> [14] joints, seeded from ``q_seed`` [14] (normally the current joints; None = q 0).

        Raises :class:`UnreachableError` (naming the arm and the errors achieved) when an arm's target is out
        of reach within the joint limits and tolerances; ``ValueError`` for malformed input.
        """
        ee = np.asarray(ee16, dtype=np.float64)
        seed = np.zeros(14) if q_seed is None else np.asarray(q_seed, dtype=np.float64)
        if ee.shape != (16,):
            raise ValueError(f"ik expects a 16-d EEF vector [L_xyz, L_quat, L_grip, R_xyz, R_quat, R_grip], "
                             f"got shape {ee.shape}")
        if seed.shape != (14,):
            raise ValueError(f"ik expects a 14-d seed {list(JOINT_NAMES)}, got shape {seed.shape}")
        if not np.all(np.isfinite(ee)):
            raise ValueError(f"ik: non-finite EEF target {ee.tolist()}")
        out = np.empty(14)
        for arm in ARMS:
            e, qs = ee[EE_SLICES[arm]], seed[Q_SLICES[arm]]
            q = out[Q_SLICES[arm]]
            q[:6] = self.ik_arm(arm, e[:3], e[3:7], qs[:6])
            q[6] = self.gripper_from_ee(arm, e[7])
        return out
