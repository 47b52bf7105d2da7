"""The arm YAML (``config/arms/<name>.yaml``): which driver, its parameters, joint order, rate and limits.

Swapping the robot = pointing the executor's ``arm`` parameter at another YAML. Position and velocity
limits come from the URDF; acceleration, per-tick step, stop deceleration, first-jump and tracking
tolerances come from here. YAML overrides can only TIGHTEN URDF position/velocity limits (a typo must never
widen what the robot's description allows); for a joint the URDF lacks, the YAML must give them.
"""
from __future__ import annotations

import fnmatch
import math
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lingbot_va_ros.common.paths import resolve_config, share_dir
from lingbot_va_ros.executor.limits import JointLimits
from lingbot_va_ros.executor.urdf import UrdfJointLimit, parse_urdf_limits

BIMANUAL_JOINTS: tuple[str, ...] = tuple(
    [f"left_joint{i}" for i in range(1, 7)] + ["left_gripper"]
    + [f"right_joint{i}" for i in range(1, 7)] + ["right_gripper"])


class ArmConfigError(ValueError):
    """An arm YAML that does not validate, or limits that cannot be built from it."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class JointLimitSettings(_Strict):
    """Per-joint settings; every field optional so a pattern can set just one of them."""

    lower: float | None = Field(None, description="position lower limit (rad or m); tightens the URDF's")
    upper: float | None = Field(None, description="position upper limit (rad or m); tightens the URDF's")
    velocity: float | None = Field(None, gt=0, description="velocity limit (rad/s or m/s) before velocity_scale; "
                                                           "tightens the URDF's")
    position_margin: float | None = Field(None, ge=0, description="commands stay this far inside the limits")
    max_acceleration: float | None = Field(None, gt=0, description="rad/s^2 or m/s^2")
    max_step: float | None = Field(None, gt=0, description="largest change of the command in one control tick")
    stop_deceleration: float | None = Field(None, gt=0, description="deceleration of a controlled stop "
                                                                    "(<= max_acceleration; default = it)")
    max_first_jump: float | None = Field(None, gt=0, description="reject a chunk whose first action is farther "
                                                                 "than this from the current command")
    tracking_tolerance: float | None = Field(None, ge=0, description="fault if |measured - commanded| exceeds "
                                                                     "this (0 = off)")


class LimitsConfig(_Strict):
    velocity_scale: float = Field(0.5, gt=0, le=1.0, description="fraction of the URDF velocity limit used "
                                                                 "(bring-up: 0.1-0.25)")
    default: JointLimitSettings = Field(
        default_factory=lambda: JointLimitSettings(position_margin=0.02, max_acceleration=4.0, max_step=0.03,
                                                   max_first_jump=0.2, tracking_tolerance=0.5),
        description="applied to every joint first")
    joints: dict[str, JointLimitSettings] = Field(
        default_factory=dict, description="per joint name or fnmatch pattern (e.g. '*_gripper'), applied in order")


class ArmConfig(_Strict):
    description: str = ""
    driver: str = Field(min_length=1, description="ARM_DRIVERS name (mock, sim, joint_state_topic, "
                                                  "ros2_control) or 'package.module:Class'")
    driver_params: dict[str, Any] = Field(default_factory=dict, description="validated by the driver's schema")
    rate_hz: float = Field(50.0, gt=0, le=2000, description="control (= action) rate")
    joints: list[str] = Field(default_factory=lambda: list(BIMANUAL_JOINTS), min_length=1,
                              description="executor joint order (commands, /lingbot_va/command, joint chunks)")
    gripper_joints: list[str] = Field(default_factory=lambda: ["*gripper*"],
                                      description="names or patterns of gripper joints (metres of opening)")
    urdf: str | None = Field("urdf/bimanual_arm.urdf", description="URDF with position/velocity limits: absolute, "
                             "relative to this YAML, or to the package share dir; null = all limits from YAML")
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    source: str = Field("", description="(filled in by the loader) where this config came from")

    @model_validator(mode="after")
    def _unique_joints(self) -> "ArmConfig":
        if len(set(self.joints)) != len(self.joints):
            raise ValueError(f"joints repeat: {self.joints}")
        return self

    def is_gripper(self) -> np.ndarray:
        return np.array([any(fnmatch.fnmatchcase(j, p) for p in self.gripper_joints) for j in self.joints])

    def resolve_urdf(self, override: str | None = None) -> Path | None:
        name = override or self.urdf
        if not name:
            return None
        p = Path(name).expanduser()
        candidates = [p] if p.is_absolute() else []
        if not p.is_absolute():
            if self.source:
                candidates.append(Path(self.source).parent / p)
            candidates.append(share_dir() / p)
        for c in candidates:
            if c.is_file():
                return c
        raise ArmConfigError(f"URDF '{name}' not found (looked in: {', '.join(str(c) for c in candidates)}); "
                             "set 'urdf' in the arm YAML or the executor's 'urdf' parameter")

    def settings_for(self, joint: str) -> JointLimitSettings:
        merged = self.limits.default.model_dump(exclude_none=True)
        for pattern, settings in self.limits.joints.items():
            if fnmatch.fnmatchcase(joint, pattern):
                merged.update(settings.model_dump(exclude_none=True))
        return JointLimitSettings(**merged)

    def build_limits(self, urdf: str | Path | None = None) -> JointLimits:
        """Combine URDF limits (a path, URDF XML text, or the YAML's ``urdf``) with the YAML settings."""
        if urdf is None:
            path = self.resolve_urdf()
            urdf_limits = parse_urdf_limits(path) if path is not None else {}
        else:
            urdf_limits = parse_urdf_limits(urdf)
        return _combine(self, urdf_limits)


def _combine(arm: ArmConfig, urdf: dict[str, UrdfJointLimit]) -> JointLimits:
    problems: list[str] = []
    cols: dict[str, list[float]] = {k: [] for k in ("lower", "upper", "margin", "velocity", "acceleration",
                                                     "max_step", "stop_deceleration", "max_first_jump",
                                                     "tracking_tolerance")}
    for joint in arm.joints:
        s = arm.settings_for(joint)
        u = urdf.get(joint)
        lower = u.lower if u else -math.inf
        upper = u.upper if u else math.inf
        velocity = u.velocity if u else math.inf
        if s.lower is not None:
            lower = max(lower, s.lower)
        if s.upper is not None:
            upper = min(upper, s.upper)
        if s.velocity is not None:
            velocity = min(velocity, s.velocity)
        if u is None and (s.lower is None or s.upper is None):
            problems.append(f"{joint}: not in the URDF and no lower/upper in the YAML")
        if not math.isfinite(velocity):
            problems.append(f"{joint}: no velocity limit (URDF or YAML 'velocity')")
        if lower > upper:
            problems.append(f"{joint}: lower {lower} > upper {upper}")
        missing = [k for k in ("position_margin", "max_acceleration", "max_step", "max_first_jump",
                               "tracking_tolerance") if getattr(s, k) is None]
        if missing:
            problems.append(f"{joint}: no {', '.join(missing)} (set them under limits.default)")
            continue
        stop = s.stop_deceleration if s.stop_deceleration is not None else s.max_acceleration
        if stop > s.max_acceleration:
            problems.append(f"{joint}: stop_deceleration {stop} > max_acceleration {s.max_acceleration}")
        for key, value in (("lower", lower), ("upper", upper), ("margin", s.position_margin),
                           ("velocity", velocity * arm.limits.velocity_scale), ("acceleration", s.max_acceleration),
                           ("max_step", s.max_step), ("stop_deceleration", min(stop, s.max_acceleration)),
                           ("max_first_jump", s.max_first_jump), ("tracking_tolerance", s.tracking_tolerance)):
            cols[key].append(value)
    if problems:
        raise ArmConfigError(f"arm config {arm.source or '(inline)'}: cannot build joint limits:\n  - "
                             + "\n  - ".join(problems))
    return JointLimits(names=tuple(arm.joints), is_gripper=arm.is_gripper(),
                       **{k: np.asarray(v, dtype=np.float64) for k, v in cols.items()})


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _read_arm_yaml(name_or_path: str, seen: tuple[str, ...] = ()) -> tuple[dict[str, Any], Path]:
    """Read an arm YAML; ``extends: <name or path>`` deep-merges it over a base file (lists are replaced)."""
    path = resolve_config(str(name_or_path), "arms")
    if str(path) in seen:
        raise ArmConfigError(f"{path}: 'extends' cycle through {' -> '.join(seen)}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ArmConfigError(f"{path}: invalid YAML: {exc}") from None
    base = data.pop("extends", None)
    if base:
        base_path = Path(base) if Path(base).is_absolute() else path.parent / base
        base_data, _ = _read_arm_yaml(str(base_path) if base_path.suffix else base, (*seen, str(path)))
        data = _merge(base_data, data)
    return data, path


def load_arm_config(name_or_path: str | Path) -> ArmConfig:
    """An arm YAML by name (``config/arms/<name>.yaml``) or path, validated."""
    data, path = _read_arm_yaml(str(name_or_path))
    return arm_config_from_dict(data, source=str(path))


def arm_config_from_dict(data: dict[str, Any], source: str = "") -> ArmConfig:
    try:
        return ArmConfig.model_validate({**data, "source": source})
    except ValidationError as exc:
        lines = [f"invalid arm config {source or '(inline)'}:"]
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            lines.append(f"  - {loc}: {err['msg']} (got {err.get('input')!r})")
        raise ArmConfigError("\n".join(lines)) from None

