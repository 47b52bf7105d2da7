"""Read joints and their limits from a URDF (pure XML, no ROS), shared by the kinematics, the sim and the executor.

``load_joint_limits(urdf_path)`` is the stable entry point the executor uses:
``{name: (lower, upper, velocity)}`` for every independently actuated joint (revolute, prismatic,
continuous), in URDF document order. Mimic joints are left out: they follow another joint and are never
commanded. Continuous joints get (-inf, inf).
"""
from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

MOVABLE = ("revolute", "prismatic", "continuous")


class UrdfError(ValueError):
    """A URDF that cannot be used: the message names the file and the offending element."""


@dataclass(frozen=True)
class UrdfJoint:
    name: str
    type: str
    parent: str
    child: str
    origin_xyz: tuple[float, float, float]
    origin_rpy: tuple[float, float, float]
    axis: tuple[float, float, float]
    lower: float
    upper: float
    velocity: float
    effort: float
    mimic: str | None = None          # name of the joint this one follows
    mimic_multiplier: float = 1.0
    mimic_offset: float = 0.0

    @property
    def movable(self) -> bool:
        return self.type in MOVABLE


def _floats(text: str | None, n: int, default: float, where: str) -> tuple[float, ...]:
    if text is None:
        return (default,) * n
    parts = text.split()
    if len(parts) != n:
        raise UrdfError(f"{where}: expected {n} numbers, got {text!r}")
    return tuple(float(p) for p in parts)


def _root(urdf_path: str | Path) -> ET.Element:
    path = Path(urdf_path)
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise UrdfError(f"cannot read URDF {path}: {exc}") from exc
    if root.tag != "robot":
        raise UrdfError(f"{path}: root element is <{root.tag}>, expected <robot>")
    return root


def read_urdf_links(urdf_path: str | Path) -> list[str]:
    return [link.attrib["name"] for link in _root(urdf_path).findall("link")]


def read_urdf_joints(urdf_path: str | Path) -> dict[str, UrdfJoint]:
    """Every <joint> of the URDF, in document order."""
    root = _root(urdf_path)
    joints: dict[str, UrdfJoint] = {}
    for el in root.findall("joint"):
        name = el.attrib.get("name")
        where = f"{urdf_path}: joint {name!r}"
        if not name:
            raise UrdfError(f"{urdf_path}: a <joint> has no name")
        jtype = el.attrib.get("type", "")
        parent, child = el.find("parent"), el.find("child")
        if parent is None or child is None:
            raise UrdfError(f"{where}: needs <parent> and <child>")
        origin = el.find("origin")
        axis = el.find("axis")
        limit = el.find("limit")
        lower, upper, velocity, effort = -math.inf, math.inf, math.inf, math.inf
        if jtype in ("revolute", "prismatic"):
            if limit is None:
                raise UrdfError(f"{where}: a {jtype} joint needs <limit lower upper velocity effort>")
        if limit is not None:
            try:
                velocity = float(limit.attrib["velocity"])
                effort = float(limit.attrib["effort"])
            except KeyError as exc:
                raise UrdfError(f"{where}: <limit> lacks {exc.args[0]!r}") from None
            if jtype != "continuous":
                lower = float(limit.attrib.get("lower", 0.0))
                upper = float(limit.attrib.get("upper", 0.0))
        mimic = el.find("mimic")
        joints[name] = UrdfJoint(
            name=name, type=jtype, parent=parent.attrib["link"], child=child.attrib["link"],
            origin_xyz=_floats(None if origin is None else origin.attrib.get("xyz"), 3, 0.0, where),
            origin_rpy=_floats(None if origin is None else origin.attrib.get("rpy"), 3, 0.0, where),
            axis=_floats(None if axis is None else axis.attrib.get("xyz"), 3, 0.0, where)
            if jtype != "fixed" else (0.0, 0.0, 0.0),
            lower=lower, upper=upper, velocity=velocity, effort=effort,
            mimic=None if mimic is None else mimic.attrib["joint"],
            mimic_multiplier=1.0 if mimic is None else float(mimic.attrib.get("multiplier", 1.0)),
            mimic_offset=0.0 if mimic is None else float(mimic.attrib.get("offset", 0.0)),
        )
        if jtype == "fixed" or jtype in MOVABLE:
            continue
        raise UrdfError(f"{where}: joint type {jtype!r} is not supported (fixed, revolute, prismatic, continuous)")
    return joints


def load_joint_limits(urdf_path: str | Path) -> dict[str, tuple[float, float, float]]:
    """{name: (lower, upper, velocity)} of the actuated (movable, non-mimic) joints, in URDF order."""
    return {j.name: (j.lower, j.upper, j.velocity)
            for j in read_urdf_joints(urdf_path).values() if j.movable and j.mimic is None}


def chain_to(joints: dict[str, UrdfJoint], tip_link: str, base_link: str) -> list[UrdfJoint]:
    """The joints from ``base_link`` down to ``tip_link``, base first."""
    by_child = {j.child: j for j in joints.values()}
    chain: list[UrdfJoint] = []
    link = tip_link
    while link != base_link:
        joint = by_child.get(link)
        if joint is None:
            raise UrdfError(f"link {tip_link!r} is not below {base_link!r} (stopped at {link!r})")
        chain.append(joint)
        link = joint.parent
    return chain[::-1]


@dataclass(frozen=True)
class JointLimits:
    """Position and velocity limits of an ordered set of joints, as arrays for vectorised checks."""

    names: tuple[str, ...]
    lower: np.ndarray
    upper: np.ndarray
    velocity: np.ndarray
    effort: np.ndarray

    @classmethod
    def from_urdf(cls, urdf_path: str | Path, names: Sequence[str] | None = None) -> "JointLimits":
        """Limits of ``names`` (default: every actuated joint, URDF order); unknown names are an error."""
        joints = read_urdf_joints(urdf_path)
        if names is None:
            names = [j.name for j in joints.values() if j.movable and j.mimic is None]
        missing = [n for n in names if n not in joints or not joints[n].movable]
        if missing:
            raise UrdfError(f"{urdf_path}: no movable joint(s) named {missing}")
        sel = [joints[n] for n in names]
        return cls(tuple(names), np.array([j.lower for j in sel]), np.array([j.upper for j in sel]),
                   np.array([j.velocity for j in sel]), np.array([j.effort for j in sel]))

    def __len__(self) -> int:
        return len(self.names)

    def clip(self, q: Iterable[float]) -> np.ndarray:
        return np.clip(np.asarray(q, dtype=np.float64), self.lower, self.upper)

    def violations(self, q: Iterable[float], tol: float = 1e-9) -> list[str]:
        """Human-readable list of the joints of ``q`` outside their position limits."""
        q = np.asarray(q, dtype=np.float64)
        out = []
        for i in np.flatnonzero((q < self.lower - tol) | (q > self.upper + tol)):
            out.append(f"{self.names[i]}={q[i]:.4f} outside [{self.lower[i]:.4f}, {self.upper[i]:.4f}]")
        return out

    def as_dict(self) -> dict[str, tuple[float, float, float]]:
        return {n: (float(lo), float(hi), float(v))
                for n, lo, hi, v in zip(self.names, self.lower, self.upper, self.velocity)}


def default_urdf_path() -> Path:
    """The project's bimanual arm (urdf/bimanual_arm.urdf in the source tree or the installed share dir)."""
    from lingbot_va_ros.common.paths import share_dir

    return share_dir() / "urdf" / "bimanual_arm.urdf"
