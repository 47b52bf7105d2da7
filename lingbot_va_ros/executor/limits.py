"""The safety limiter at the final write: every command the executor emits passes through here.

Rules, in order, per joint, all relative to the last COMMANDED position (not the measured one: a lagging
arm must not drag the command along, the same choice as ros2_control's soft limiter):

1. non-finite target -> replaced by the last command (the joint then decelerates, it never jumps);
2. position limits with a margin (a joint already inside the margin band may stay where it is but never
   move further out, so a hold never creeps);
3. velocity in the intersection of: +-v_max, +-max_step/dt, the braking bound that still allows stopping
   before the position limit at a_max, and the acceleration window v_prev +- a_max*dt (position safety
   wins where the two cannot both hold);
4. a final hard clamp into the position limits and the +-max_step window around the last command, so the
   two invariants (finite, within limits, bounded step) hold whatever the arithmetic above did.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Bit flags per joint of what changed a target (reported and counted).
NONFINITE, POSITION, VELOCITY, ACCELERATION, STEP = 1, 2, 4, 8, 16
FLAG_NAMES = {NONFINITE: "nonfinite", POSITION: "position", VELOCITY: "velocity",
              ACCELERATION: "acceleration", STEP: "step"}


@dataclass(frozen=True)
class JointLimits:
    """Per-joint limits in executor joint order (all float64 arrays of the same length)."""

    names: tuple[str, ...]
    lower: np.ndarray            # hard position limits (URDF, tightened by YAML)
    upper: np.ndarray
    margin: np.ndarray           # commands stay in [lower + margin, upper - margin]
    velocity: np.ndarray         # max |v| (URDF velocity x velocity_scale, or YAML)
    acceleration: np.ndarray     # max |a|
    max_step: np.ndarray         # max |q_k - q_{k-1}| per control tick
    stop_deceleration: np.ndarray  # deceleration of a controlled stop (<= acceleration)
    max_first_jump: np.ndarray   # a chunk whose first action is farther than this from the command is rejected
    tracking_tolerance: np.ndarray  # |measured - commanded| above this faults (0 = off)
    is_gripper: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))

    def __post_init__(self) -> None:
        n = len(self.names)
        for key in ("lower", "upper", "margin", "velocity", "acceleration", "max_step", "stop_deceleration",
                    "max_first_jump", "tracking_tolerance"):
            arr = np.asarray(getattr(self, key), dtype=np.float64).reshape(-1)
            if arr.shape != (n,):
                raise ValueError(f"limits.{key} has {arr.size} entries, expected {n} (one per joint)")
            object.__setattr__(self, key, arr)
        grip = np.asarray(self.is_gripper, dtype=bool).reshape(-1)
        object.__setattr__(self, "is_gripper", grip if grip.shape == (n,) else np.zeros(n, dtype=bool))
        bad = [self.names[i] for i in range(n) if not self.lower[i] <= self.upper[i]]
        if bad:
            raise ValueError(f"lower > upper for joints {bad}")
        for key in ("velocity", "acceleration", "max_step", "stop_deceleration"):
            arr = getattr(self, key)
            if not (np.all(np.isfinite(arr)) and np.all(arr > 0)):
                raise ValueError(f"limits.{key} must be finite and > 0 for every joint, got {arr.tolist()}")
        if np.any(self.margin < 0) or np.any(self.max_first_jump <= 0) or np.any(self.tracking_tolerance < 0):
            raise ValueError("margins and tracking tolerances must be >= 0 and max_first_jump > 0")
        if np.any(self.stop_deceleration > self.acceleration + 1e-12):
            raise ValueError("stop_deceleration must not exceed the acceleration limit")

    @property
    def soft_lower(self) -> np.ndarray:
        # A margin wider than half the range would invert the band: collapse it to the middle instead.
        mid = np.where(np.isfinite(self.lower + self.upper), 0.5 * (self.lower + self.upper), 0.0)
        return np.minimum(self.lower + self.margin, np.where(np.isfinite(mid), mid, np.inf))

    @property
    def soft_upper(self) -> np.ndarray:
        mid = np.where(np.isfinite(self.lower + self.upper), 0.5 * (self.lower + self.upper), 0.0)
        return np.maximum(self.upper - self.margin, np.where(np.isfinite(mid), mid, -np.inf))

    def range_width(self) -> np.ndarray:
        """Joint range (inf for continuous joints)."""
        return self.upper - self.lower


@dataclass
class LimitResult:
    position: np.ndarray
    velocity: np.ndarray
    flags: np.ndarray            # int per joint, OR of the flag bits above

    @property
    def modified(self) -> bool:
        return bool(self.flags.any())


class SafetyLimiter:
    """Stateless apart from its limits and period; the caller owns the last command and velocity."""

    def __init__(self, limits: JointLimits, period: float):
        if not period > 0:
            raise ValueError(f"control period must be > 0, got {period}")
        self.limits = limits
        self.dt = float(period)
        self._lo = limits.soft_lower
        self._hi = limits.soft_upper
        self._step = limits.max_step
        self._vmax = np.minimum(limits.velocity, limits.max_step / self.dt)
        self._dv = limits.acceleration * self.dt

    def limit(self, target: np.ndarray, q_prev: np.ndarray, v_prev: np.ndarray, tol: float = 1e-9) -> LimitResult:
        lim = self.limits
        dt = self.dt
        flags = np.zeros(q_prev.shape, dtype=np.int64)
        tgt = np.array(target, dtype=np.float64, copy=True)

        finite = np.isfinite(tgt)
        if not finite.all():
            flags[~finite] |= NONFINITE
            tgt[~finite] = q_prev[~finite]

        # 2. position band; where the arm already sits outside the margin band it may hold but not go further out.
        lo = np.maximum(np.minimum(self._lo, q_prev), lim.lower)
        hi = np.minimum(np.maximum(self._hi, q_prev), lim.upper)
        clamped = np.minimum(np.maximum(tgt, lo), hi)  # (np.clip is several times slower on tiny arrays)
        flags[np.abs(clamped - tgt) > tol] |= POSITION
        tgt = clamped

        # 3. velocity window.
        v_des = (tgt - q_prev) / dt
        room_up = np.maximum(hi - q_prev, 0.0)
        room_down = np.maximum(q_prev - lo, 0.0)
        brake_up = np.sqrt(2.0 * lim.acceleration * room_up)
        brake_down = np.sqrt(2.0 * lim.acceleration * room_down)
        s_hi = np.minimum(self._vmax, brake_up)
        s_lo = -np.minimum(self._vmax, brake_down)       # [s_lo, s_hi] always contains 0
        a_lo = v_prev - self._dv
        a_hi = v_prev + self._dv
        w_lo = np.maximum(s_lo, a_lo)
        w_hi = np.minimum(s_hi, a_hi)
        empty = w_lo > w_hi
        if empty.any():
            # Cannot both respect the acceleration and stay safe: safety wins, nearest safe velocity to the window.
            nearest = np.clip(np.where(a_lo > s_hi, s_hi, s_lo), s_lo, s_hi)
            w_lo = np.where(empty, nearest, w_lo)
            w_hi = np.where(empty, nearest, w_hi)
        v = np.minimum(np.maximum(v_des, w_lo), w_hi)
        changed = np.abs(v - v_des) * dt > tol
        if changed.any():
            at_acc = changed & (((np.abs(v - a_lo) < 1e-9) & (a_lo >= s_lo))
                                | ((np.abs(v - a_hi) < 1e-9) & (a_hi <= s_hi)))
            step_v = self._step / dt
            at_step = changed & ~at_acc & (np.abs(np.abs(v) - step_v) < 1e-9) & (step_v <= lim.velocity)
            flags[at_acc] |= ACCELERATION
            flags[at_step] |= STEP
            flags[changed & ~at_acc & ~at_step] |= VELOCITY  # velocity limit or braking before a position limit

        # 4. hard invariants (the order matters: the step window wins over the band, so a joint never jumps).
        q = q_prev + v * dt
        q = np.minimum(np.maximum(q, lo), hi)
        q = np.minimum(np.maximum(q, q_prev - self._step), q_prev + self._step)
        if not np.isfinite(q).all():  # unreachable with finite q_prev; kept as the last line of defence
            bad = ~np.isfinite(q)
            q[bad] = q_prev[bad]
            flags[bad] |= NONFINITE
        return LimitResult(q, (q - q_prev) / dt, flags)

    def stop_step(self, q_prev: np.ndarray, v_prev: np.ndarray) -> LimitResult:
        """One tick of a controlled stop: reduce |v| by stop_deceleration*dt, then the usual limits."""
        dv = self.limits.stop_deceleration * self.dt
        v = np.sign(v_prev) * np.maximum(np.abs(v_prev) - dv, 0.0)
        res = self.limit(q_prev + v * self.dt, q_prev, v_prev)
        res.flags[:] = 0  # braking is intended, not a clamp of a target
        return res
