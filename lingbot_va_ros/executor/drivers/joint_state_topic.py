"""``joint_state_topic``: commands as sensor_msgs/JointState, state from sensor_msgs/JointState topics.

The Piper-style contract (agilexrobotics/Piper_ros ``piper_ctrl_single_node``: one node per arm,
``joint_ctrl_single`` takes names joint1..joint6 + position[6] = gripper opening in metres, and publishes
``joint_states_single``), and any other arm whose driver node takes JointState targets. One or more
groups, each with its own command topic, optional state topic and executor->driver joint-name mapping.
Units: arm joints in rad or deg, grippers in metres times ``gripper_scale``.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from lingbot_va_ros.executor.drivers.base import (ArmDriver, DriverError, DriverParams, StateAssembler, joint_scales,
                                                  resolve_joint_map)


class JointGroup(DriverParams):
    command_topic: str = Field(min_length=1, description="sensor_msgs/JointState command topic of this group")
    state_topic: str | None = Field(None, description="JointState state topic (default: the driver's state_topic)")
    joints: dict[str, str] | list[str] = Field(
        default_factory=list, description="executor joint -> driver joint name, in the order the driver expects "
                                          "them (a list keeps the executor names; empty = every joint)")


class JointStateTopicParams(DriverParams):
    groups: list[JointGroup] = Field(default_factory=list, description="one entry per command topic (e.g. per "
                                     "arm); empty = one group with command_topic/state_topic and every joint")
    command_topic: str = Field("/joint_command", description="command topic of the implicit single group")
    state_topic: str = Field("/joint_states", description="measured-state topic (groups may override it)")
    joint_name_map: dict[str, str] = Field(default_factory=dict, description="executor -> driver names for the "
                                           "implicit single group (default: identical names)")
    position_unit: Literal["rad", "deg"] = Field("rad", description="unit of arm joints on the wire")
    gripper_scale: float = Field(1.0, gt=0, description="wire gripper value = scale x metres of opening")
    command_reliability: Literal["reliable", "best_effort"] = "reliable"
    command_depth: int = Field(5, ge=1, le=100)
    state_reliability: Literal["reliable", "best_effort"] = Field(
        "best_effort", description="best_effort also matches reliable publishers")
    send_velocity: bool = Field(False, description="fill JointState.velocity with the commanded velocity")
    velocity: list[float] = Field(default_factory=list, description="a constant velocity field to send instead "
                                  "(Piper: 7 values, index 6 = speed percent 1-100; empty = none)")


class JointStateTopicDriver(ArmDriver):
    params_model = JointStateTopicParams

    def __init__(self, node, joint_names, params=None, *, period=0.02, grippers=None):
        super().__init__(node, joint_names, params, period=period, grippers=grippers)
        p = self.params
        groups = p.groups or [JointGroup(command_topic=p.command_topic, state_topic=p.state_topic,
                                         joints=dict(p.joint_name_map) or list(self.joint_names))]
        self._groups = []
        covered: list[int] = []
        for g in groups:
            mapping = resolve_joint_map(self.joint_names, g.joints)
            covered.extend(i for i, _ in mapping)
            self._groups.append((g, mapping))
        missing = sorted(set(range(len(self.joint_names))) - set(covered))
        if missing or len(covered) != len(set(covered)):
            raise DriverError(f"{type(self).__name__}: every executor joint must be in exactly one group "
                              f"(missing {[self.joint_names[i] for i in missing]}, covered {len(covered)})")
        self._scale = joint_scales(self.grippers, p.position_unit, p.gripper_scale)
        self._state = StateAssembler(len(self.joint_names))
        self._pubs = []
        self._subs = []
        self.sent = 0

    def start(self) -> None:
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import JointState

        self._JointState = JointState
        p = self.params
        rel = {"reliable": ReliabilityPolicy.RELIABLE, "best_effort": ReliabilityPolicy.BEST_EFFORT}
        cmd_qos = QoSProfile(depth=p.command_depth, reliability=rel[p.command_reliability],
                             history=HistoryPolicy.KEEP_LAST)
        state_qos = QoSProfile(depth=5, reliability=rel[p.state_reliability], history=HistoryPolicy.KEEP_LAST)
        state_topics: dict[str, list] = {}
        for g, mapping in self._groups:
            pub = self.node.create_publisher(JointState, g.command_topic, cmd_qos)
            self._pubs.append((pub, [d for _, d in mapping], np.array([i for i, _ in mapping])))
            state_topics.setdefault(g.state_topic or p.state_topic, []).extend(mapping)
        for topic, mapping in state_topics.items():
            self._subs.append(self.node.create_subscription(
                JointState, topic, lambda msg, t=topic, m=mapping: self._on_state(t, m, msg), state_qos))

    def _on_state(self, topic, mapping, msg) -> None:
        self._state.update(topic, mapping, msg.name, msg.position, self._scale, msg.velocity)

    def send(self, positions: np.ndarray, stamp_ns: int, velocities: np.ndarray | None = None) -> None:
        p = self.params
        wire = np.asarray(positions, dtype=np.float64) * self._scale
        wire_vel = None if velocities is None else np.asarray(velocities, dtype=np.float64) * self._scale
        sec, nsec = divmod(int(stamp_ns), 1_000_000_000)
        for pub, names, idx in self._pubs:
            msg = self._JointState()
            msg.header.stamp.sec, msg.header.stamp.nanosec = sec, nsec
            msg.name = names
            msg.position = wire[idx].tolist()
            if p.velocity:
                msg.velocity = list(p.velocity)
            elif p.send_velocity and wire_vel is not None:
                msg.velocity = wire_vel[idx].tolist()
            pub.publish(msg)
        self.sent += 1

    def state(self):
        return self._state.sample()

    def stop(self) -> None:
        for pub, _, _ in self._pubs:
            self.node.destroy_publisher(pub)
        for sub in self._subs:
            self.node.destroy_subscription(sub)
        self._pubs, self._subs = [], []

    def describe(self) -> dict[str, str]:
        return {"driver": type(self).__name__,
                "command_topics": ", ".join(g.command_topic for g, _ in self._groups),
                "position_unit": self.params.position_unit, "gripper_scale": str(self.params.gripper_scale),
                "commands_sent": str(self.sent)}
