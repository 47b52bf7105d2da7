"""Test helpers for the executor (used by test/executor and the jitter benchmark): a small bimanual URDF,
limits, and chunk builders. Kept in the package so tests in separate processes can share them."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from lingbot_va_ros.executor.action_space import JointSpace
from lingbot_va_ros.executor.arm_config import BIMANUAL_JOINTS, ArmConfig, arm_config_from_dict
from lingbot_va_ros.executor.chunks import ChunkData, ChunkPreparer, PreparedChunk, ValidationSettings
from lingbot_va_ros.executor.core import CoreConfig, ExecutorCore
from lingbot_va_ros.executor.limits import JointLimits

ARM_LIMIT = 2.0       # rad, symmetric, every arm joint of the test URDF
ARM_VELOCITY = 3.0    # rad/s
GRIPPER_MAX = 0.04    # m
GRIPPER_VELOCITY = 0.1


def make_urdf(joints: Sequence[str] = BIMANUAL_JOINTS) -> str:
    """A URDF string with one limited joint per name (revolute arms, prismatic grippers), no geometry."""
    parts = ['<?xml version="1.0"?>', '<robot name="test_bimanual">', '  <link name="base"/>']
    parent = "base"
    for name in joints:
        link = f"{name}_link"
        parts.append(f'  <link name="{link}"/>')
        if "gripper" in name:
            limit = f'<limit lower="0.0" upper="{GRIPPER_MAX}" velocity="{GRIPPER_VELOCITY}" effort="10"/>'
            jtype = "prismatic"
        else:
            limit = f'<limit lower="{-ARM_LIMIT}" upper="{ARM_LIMIT}" velocity="{ARM_VELOCITY}" effort="10"/>'
            jtype = "revolute"
        parts.append(f'  <joint name="{name}" type="{jtype}"><parent link="{parent}"/><child link="{link}"/>'
                     f'<axis xyz="0 0 1"/>{limit}</joint>')
        parent = link
    parts.append("</robot>")
    return "\n".join(parts)


def make_arm_config(joints: Sequence[str] = BIMANUAL_JOINTS, **overrides) -> ArmConfig:
    data = {"driver": "mock", "rate_hz": 50.0, "joints": list(joints), "urdf": None,
            "limits": {"velocity_scale": 0.5,
                       "default": {"position_margin": 0.02, "max_acceleration": 4.0, "max_step": 0.03,
                                   "max_first_jump": 0.2, "tracking_tolerance": 0.5},
                       "joints": {"*gripper*": {"position_margin": 0.001, "max_acceleration": 0.5,
                                                "max_step": 0.002, "max_first_jump": 0.01,
                                                "tracking_tolerance": 0.02}}}}
    data.update(overrides)
    return arm_config_from_dict(data, source="(test)")


def make_limits(joints: Sequence[str] = BIMANUAL_JOINTS, **overrides) -> JointLimits:
    return make_arm_config(joints, **overrides).build_limits(make_urdf(joints))


def make_core(limits: JointLimits | None = None, period: float = 0.02, **cfg) -> ExecutorCore:
    limits = limits or make_limits()
    return ExecutorCore(CoreConfig(joint_names=limits.names, period=period, **cfg), limits)


def make_preparer(limits: JointLimits, period: float = 0.02, **settings) -> ChunkPreparer:
    return ChunkPreparer({"joint": JointSpace(limits.names)}, limits, period, ValidationSettings(**settings))


def chunk_data(rows: np.ndarray, *, episode: str = "ep", chunk_index: int = 0, start: int = 0,
               names: Sequence[str] = BIMANUAL_JOINTS, period: float = 0.02, space: str = "joint") -> ChunkData:
    rows = np.asarray(rows, dtype=np.float32)
    return ChunkData(episode_id=episode, chunk_index=chunk_index, start_index=start, action_space=space,
                     channel_names=tuple(names), shape=tuple(rows.shape), actions=rows.reshape(-1),
                     control_period=period)


def ramp(start_q: np.ndarray, rows: int, velocity: float = 0.5, period: float = 0.02,
         joints: Sequence[int] | None = None) -> np.ndarray:
    """Rows moving the chosen joints (default: all but the grippers) at a constant velocity from ``start_q``
    (the first row is one step ahead)."""
    q = np.asarray(start_q, dtype=np.float64)
    out = np.repeat(q[None, :], rows, axis=0)
    if joints is None:  # the arm joints of the 14-joint layout (grippers have much smaller limits)
        joints = [i for i in range(len(q)) if len(q) != 14 or i not in (6, 13)]
    sel = list(joints)
    steps = (np.arange(1, rows + 1) * velocity * period)[:, None]
    out[:, sel] += steps
    return out


def prepared(preparer: ChunkPreparer, rows: np.ndarray, **kwargs) -> PreparedChunk:
    item = preparer.prepare(chunk_data(rows, names=preparer.limits.names, **kwargs))
    if not isinstance(item, PreparedChunk):
        raise AssertionError(f"test chunk rejected: {item.reason}")
    return item
