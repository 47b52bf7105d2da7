"""``ros2_control``: stream the executor's command into ros2_control controllers.

Interfaces (``interface:``):
- ``joint_trajectory`` (default): trajectory_msgs/JointTrajectory with ONE point per tick on
  ``<controller>/joint_trajectory`` of a joint_trajectory_controller; header.stamp = 0 (start now) and
  ``time_from_start`` = one control period, so each message replaces the previous one.
- ``forward_command``: std_msgs/Float64MultiArray on ``<controller>/commands`` of a
  forward_command_controller / JointGroupPositionController (data in the controller's joint order).
- ``follow_joint_trajectory``: control_msgs/FollowJointTrajectory goals on
  ``<controller>/follow_joint_trajectory``; a rejected or aborted goal becomes a driver fault. control_msgs
  is not on PyPI: it is imported lazily and a missing package is a clear start-up error.

Measured state: sensor_msgs/JointState on ``state_topic`` (joint_state_broadcaster's ``/joint_states``).
Remember that JTC does not check positions for NaN/inf and its ``cmd_timeout`` counts from the end of the
trajectory: the executor's own finite checks and heartbeat watchdog are what protect the arm.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from lingbot_va_ros.executor.drivers.base import (ArmDriver, DriverError, DriverParams, StateAssembler,
                                                  resolve_joint_map)

CONTROL_MSGS_MISSING = (
    "the ros2_control 'follow_joint_trajectory' interface needs the control_msgs Python package, which is not "
    "installed (it is not on PyPI: install ros-<distro>-control-msgs in a ROS workspace, or use "
    "interface: joint_trajectory / forward_command)")


class Controller(DriverParams):
    name: str = Field(min_length=1, description="controller name/namespace, e.g. /left_arm_controller")
    joints: dict[str, str] | list[str] = Field(
        default_factory=list, description="executor joint -> controller joint name, in the controller's order "
                                          "(a list keeps the executor names; empty = every joint)")


class Ros2ControlParams(DriverParams):
    interface: Literal["joint_trajectory", "forward_command", "follow_joint_trajectory"] = "joint_trajectory"
    controllers: list[Controller] = Field(
        default_factory=lambda: [Controller(name="/joint_trajectory_controller")],
        description="one entry per controller; together they must cover every executor joint exactly once")
    state_topic: str = Field("/joint_states", description="joint_state_broadcaster topic")
    time_from_start: float = Field(0.0, ge=0.0, le=1.0, description="time_from_start of the streamed point, "
                                   "s (0 = one control period)")
    send_velocities: bool = Field(False, description="JointTrajectory: also send the commanded velocity "
                                  "(cubic instead of linear interpolation in JTC)")


class Ros2ControlDriver(ArmDriver):
    params_model = Ros2ControlParams

    def __init__(self, node, joint_names, params=None, *, period=0.02, grippers=None):
        super().__init__(node, joint_names, params, period=period, grippers=grippers)
        self._ctrls = []
        covered: list[int] = []
        for c in self.params.controllers:
            mapping = resolve_joint_map(self.joint_names, c.joints)
            covered.extend(i for i, _ in mapping)
            self._ctrls.append((c, mapping))
        if sorted(covered) != list(range(len(self.joint_names))):
            raise DriverError("ros2_control controllers must cover every executor joint exactly once "
                              f"(covered {[self.joint_names[i] for i in covered]})")
        self._scale = np.ones(len(self.joint_names))
        self._state = StateAssembler(len(self.joint_names))
        self._outs = []
        self._sub = None
        self.sent = 0
        if self.params.interface == "follow_joint_trajectory":
            self._import_control_msgs()

    @staticmethod
    def _import_control_msgs():
        try:
            from control_msgs.action import FollowJointTrajectory
        except ImportError:
            raise DriverError(CONTROL_MSGS_MISSING) from None
        return FollowJointTrajectory

    def start(self) -> None:
        from sensor_msgs.msg import JointState

        from lingbot_va_ros.common.qos import COMMAND, SENSOR_DATA

        p = self.params
        for c, mapping in self._ctrls:
            names = [d for _, d in mapping]
            idx = np.array([i for i, _ in mapping])
            base = c.name.rstrip("/")
            if p.interface == "joint_trajectory":
                from trajectory_msgs.msg import JointTrajectory

                out = self.node.create_publisher(JointTrajectory, f"{base}/joint_trajectory", COMMAND)
            elif p.interface == "forward_command":
                from std_msgs.msg import Float64MultiArray

                out = self.node.create_publisher(Float64MultiArray, f"{base}/commands", COMMAND)
            else:
                from rclpy.action import ActionClient

                out = ActionClient(self.node, self._import_control_msgs(), f"{base}/follow_joint_trajectory")
            self._outs.append((out, names, idx))
        all_map = [pair for _, mapping in self._ctrls for pair in mapping]
        self._sub = self.node.create_subscription(
            JointState, p.state_topic,
            lambda msg: self._state.update("state", all_map, msg.name, msg.position, self._scale, msg.velocity),
            SENSOR_DATA)

    def _point(self, positions, velocities, idx):
        from trajectory_msgs.msg import JointTrajectoryPoint

        from lingbot_va_ros.common.conversions import seconds_to_duration

        pt = JointTrajectoryPoint(positions=positions[idx].tolist())
        if self.params.send_velocities and velocities is not None:
            pt.velocities = velocities[idx].tolist()
        pt.time_from_start = seconds_to_duration(self.params.time_from_start or self.period)
        return pt

    def send(self, positions, stamp_ns, velocities=None) -> None:
        q = np.asarray(positions, dtype=np.float64)
        v = None if velocities is None else np.asarray(velocities, dtype=np.float64)
        interface = self.params.interface
        for out, names, idx in self._outs:
            if interface == "forward_command":
                from std_msgs.msg import Float64MultiArray

                out.publish(Float64MultiArray(data=q[idx].tolist()))
            elif interface == "joint_trajectory":
                from trajectory_msgs.msg import JointTrajectory

                out.publish(JointTrajectory(joint_names=names, points=[self._point(q, v, idx)]))
            else:
                if not out.server_is_ready():
                    self.set_fault(f"FollowJointTrajectory server {out._action_name} not available")  # noqa: SLF001
                    continue
                goal = self._import_control_msgs().Goal()
                goal.trajectory.joint_names = names
                goal.trajectory.points = [self._point(q, v, idx)]
                out.send_goal_async(goal).add_done_callback(self._on_goal_response)
        self.sent += 1

    def _on_goal_response(self, future) -> None:
        handle = future.result()
        if handle is None or not handle.accepted:
            self.set_fault("FollowJointTrajectory goal rejected")
            return
        handle.get_result_async().add_done_callback(self._on_result)

    def _on_result(self, future) -> None:
        result = future.result()
        # error_code 0 = SUCCESSFUL; a preempted goal (replaced by the next tick's goal) is not a fault.
        code = getattr(getattr(result, "result", None), "error_code", 0)
        status = getattr(result, "status", 0)
        if code not in (0,) and status != 5:  # 5 = CANCELED (action_msgs/GoalStatus)
            self.set_fault(f"FollowJointTrajectory goal failed (error_code {code}, status {status})")

    def state(self):
        return self._state.sample()

    def stop(self) -> None:
        for out, _, _ in self._outs:
            if hasattr(out, "destroy"):
                out.destroy()
            else:
                self.node.destroy_publisher(out)
        if self._sub is not None:
            self.node.destroy_subscription(self._sub)
        self._outs, self._sub = [], None

    def describe(self) -> dict[str, str]:
        return {"driver": "Ros2ControlDriver", "interface": self.params.interface,
                "controllers": ", ".join(c.name for c, _ in self._ctrls), "commands_sent": str(self.sent)}
