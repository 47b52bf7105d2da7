"""Joint limits from a URDF (xml.etree only: no robot-model dependency just to read four attributes).

Reads ``<joint type=... name=...><limit lower upper velocity/><safety_controller soft_lower_limit
soft_upper_limit/></joint>``. Soft limits, when present, tighten the hard ones (the same choice as
ros2_control's soft limiter). ``continuous`` joints have no position limits (reported as +-inf).
"""
from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path


class UrdfError(ValueError):
    """A URDF that cannot be read or lacks the limits the executor needs."""


@dataclass(frozen=True)
class UrdfJointLimit:
    name: str
    type: str
    lower: float          # rad (revolute) or m (prismatic); -inf for continuous joints
    upper: float
    velocity: float       # rad/s or m/s; inf when the URDF gives none (then YAML must provide one)


def _attr(elem: ET.Element, key: str) -> float | None:
    value = elem.get(key)
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        raise UrdfError(f"joint attribute {key}={value!r} is not a number") from None


def parse_urdf_limits(source: str | Path) -> dict[str, UrdfJointLimit]:
    """Limits of every movable joint, from a URDF path or a URDF XML string."""
    text = str(source)
    try:
        if text.lstrip().startswith("<"):
            root = ET.fromstring(text)
        else:
            path = Path(text).expanduser()
            if not path.is_file():
                raise UrdfError(f"URDF file not found: {path}")
            root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise UrdfError(f"invalid URDF XML: {exc}") from None
    if root.tag != "robot":
        raise UrdfError(f"not a URDF: root element is <{root.tag}>, expected <robot>")
    out: dict[str, UrdfJointLimit] = {}
    for joint in root.iter("joint"):
        jtype = joint.get("type", "")
        name = joint.get("name", "")
        if jtype in ("fixed", "floating", "planar") or not name or joint.find("mimic") is not None:
            continue  # not independently commandable
        limit = joint.find("limit")
        lower = upper = velocity = None
        if limit is not None:
            lower, upper, velocity = _attr(limit, "lower"), _attr(limit, "upper"), _attr(limit, "velocity")
        if jtype == "continuous":
            lower, upper = -math.inf, math.inf
        else:
            if lower is None or upper is None:
                # URDF defaults lower/upper to 0; a joint that cannot move is almost surely a missing tag.
                raise UrdfError(f"joint '{name}' ({jtype}) has no <limit lower upper>")
            safety = joint.find("safety_controller")
            if safety is not None:
                soft_lo, soft_hi = _attr(safety, "soft_lower_limit"), _attr(safety, "soft_upper_limit")
                if soft_lo is not None:
                    lower = max(lower, soft_lo)
                if soft_hi is not None:
                    upper = min(upper, soft_hi)
            if not lower <= upper:
                raise UrdfError(f"joint '{name}': lower limit {lower} > upper limit {upper}")
        if velocity is None or velocity <= 0:
            velocity = math.inf  # unknown; the arm YAML must then give one (checked when limits are built)
        out[name] = UrdfJointLimit(name, jtype, float(lower), float(upper), float(velocity))
    return out
