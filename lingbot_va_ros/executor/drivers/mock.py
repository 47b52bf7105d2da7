"""``mock``: an in-process arm for tests and dry runs. The measured state follows the command (optionally
through a first-order lag) and is mirrored to ``/joint_states`` so the rest of the graph sees an arm.

Like ros2_control's ``mock_components/GenericSystem``: no dynamics, no faults unless injected."""
from __future__ import annotations

import math
import threading

import numpy as np
from pydantic import Field

from lingbot_va_ros.executor.clock import JointStateSample, monotonic
from lingbot_va_ros.executor.drivers.base import ArmDriver, DriverError, DriverParams


class MockParams(DriverParams):
    initial_positions: dict[str, float] | list[float] = Field(
        default_factory=dict, description="start positions (list in executor order, or joint -> value; "
                                          "missing joints start at 0)")
    lag_tau: float = Field(0.0, ge=0.0, le=10.0, description="first-order lag time constant of the simulated "
                           "joints, s (0 = the state equals the last command)")
    state_topic: str = Field("/joint_states", description="where the mirrored state is published ('' = nowhere)")


class MockDriver(ArmDriver):
    params_model = MockParams

    def __init__(self, node, joint_names, params=None, *, period=0.02, grippers=None):
        super().__init__(node, joint_names, params, period=period, grippers=grippers)
        init = self.params.initial_positions
        if isinstance(init, list):
            if len(init) != len(self.joint_names):
                raise DriverError(f"mock initial_positions has {len(init)} values for {len(self.joint_names)} joints")
            q0 = np.asarray(init, dtype=np.float64)
        else:
            unknown = set(init) - set(self.joint_names)
            if unknown:
                raise DriverError(f"mock initial_positions names unknown joints {sorted(unknown)}")
            q0 = np.array([float(init.get(n, 0.0)) for n in self.joint_names])
        self._q = q0
        self._target = q0.copy()
        self._t_last: float | None = None
        self._lock = threading.Lock()
        self._pub = None
        self.sent = 0

    def start(self) -> None:
        if self.params.state_topic and self.node is not None:
            from sensor_msgs.msg import JointState

            from lingbot_va_ros.common.qos import SENSOR_DATA

            self._JointState = JointState
            self._pub = self.node.create_publisher(JointState, self.params.state_topic, SENSOR_DATA)
            self._publish(self._q, None)

    def _advance(self, now: float) -> None:
        tau = self.params.lag_tau
        if tau <= 0 or self._t_last is None:
            self._q = self._target.copy() if self._t_last is not None else self._q
        else:
            alpha = 1.0 - math.exp(-max(now - self._t_last, 0.0) / tau)
            self._q = self._q + alpha * (self._target - self._q)
        self._t_last = now

    def send(self, positions, stamp_ns, velocities=None) -> None:
        now = monotonic()
        with self._lock:
            self._advance(now)        # the lag integrates towards the previous target up to now
            self._target = np.asarray(positions, dtype=np.float64).copy()
            if self.params.lag_tau <= 0:
                self._q = self._target.copy()
            q = self._q.copy()
        self.sent += 1
        self._publish(q, stamp_ns)

    def state(self) -> JointStateSample:
        now = monotonic()
        with self._lock:
            self._advance(now)
            return JointStateSample(self._q.copy(), now)

    def _publish(self, q: np.ndarray, stamp_ns: int | None) -> None:
        if self._pub is None:
            return
        msg = self._JointState()
        if stamp_ns is None:
            stamp_ns = self.node.get_clock().now().nanoseconds
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)
        msg.name = list(self.joint_names)
        msg.position = q.tolist()
        self._pub.publish(msg)

    def stop(self) -> None:
        if self._pub is not None:
            self.node.destroy_publisher(self._pub)
            self._pub = None

    def describe(self) -> dict[str, str]:
        return {"driver": "MockDriver", "lag_tau": str(self.params.lag_tau), "commands_sent": str(self.sent)}
