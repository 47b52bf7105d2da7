"""Tele-operation sources for the demo recorder: where the arm's joint targets come from, one per control tick.

A source is chosen by name in YAML / on the command line (``lingbot_va_ros.teleop_sources`` entry points, or
``package.module:Class``) and validates its own ``settings``:

- ``topic``: a leader arm, spacemouse or any tele-operation node publishing ``sensor_msgs/JointState`` targets
  (by joint name) on a topic; the newest target is used at each tick (the real-lab case, e.g. ALOHA / Piper
  leader arms). Joints it does not name keep their last target; a silent topic holds the arm.
- ``scripted``: the built-in demonstrator of the simulated arm (:mod:`lingbot_va_ros.teleop.scripted`): it asks
  the running sim node for its parameters, rebuilds the same MuJoCo scene to find the blocks, and picks one per
  episode (IK + feedback from the measured joints).

The node calls ``start(node)`` once, ``begin_episode(q_measured, seed)`` per episode, then ``target(t, q)`` every
tick until ``finished``.
"""
from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from lingbot_va_ros.common.registry import Registry

TELEOP_SOURCES = Registry("lingbot_va_ros.teleop_sources", {
    "topic": "lingbot_va_ros.teleop.sources:TopicSource",
    "scripted": "lingbot_va_ros.teleop.sources:ScriptedSource",
})
DEFAULT_TARGET_TOPIC = "/lingbot_va/teleop/joint_targets"


class TeleopError(RuntimeError):
    """A source that cannot run (bad settings, no sim to read the scene from, ...)."""


class SourceSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TeleopSource:
    settings_model: type[SourceSettings] = SourceSettings

    def __init__(self, joint_names: list[str], settings: dict[str, Any] | None = None):
        self.joint_names = list(joint_names)
        try:
            self.settings = self.settings_model.model_validate(dict(settings or {}))
        except Exception as exc:  # noqa: BLE001 - pydantic's message lists every bad setting
            raise TeleopError(f"{type(self).__name__} settings: {exc}") from None

    def start(self, node) -> None:
        """Create subscriptions / clients (node is spun on another thread)."""

    def begin_episode(self, q_measured: np.ndarray, seed: int) -> dict[str, Any]:
        """Prepare an episode from the measured joints; returns metadata for the bag (e.g. the object)."""
        return {}

    def episode_prompt(self, template: str) -> str:
        return template

    def target(self, t_s: float, q_measured: np.ndarray) -> np.ndarray | None:
        """Joint targets [J] (executor order) for this tick; None = hold the last command."""
        raise NotImplementedError

    @property
    def finished(self) -> bool:
        return False

    def describe(self) -> dict[str, Any]:
        return {"teleop_source": type(self).__name__, **self.settings.model_dump()}


class TopicSettings(SourceSettings):
    topic: str = Field(DEFAULT_TARGET_TOPIC, description="sensor_msgs/JointState targets (names + positions)")
    joint_name_map: dict[str, str] = Field(default_factory=dict, description="source joint name -> executor "
                                           "joint name (default: the same names)")
    reliability: str = Field("best_effort", description="best_effort also matches reliable publishers")
    stale_after_s: float = Field(0.5, gt=0, description="a target older than this holds the arm (leader stopped)")


class TopicSource(TeleopSource):
    settings_model = TopicSettings

    def __init__(self, joint_names, settings=None):
        super().__init__(joint_names, settings)
        self._lock = threading.Lock()
        self._latest: np.ndarray | None = None
        self._received_at = 0.0
        self.received = 0
        self._index = {n: i for i, n in enumerate(self.joint_names)}

    def start(self, node) -> None:
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import JointState

        s = self.settings
        rel = ReliabilityPolicy.RELIABLE if s.reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT
        node.create_subscription(JointState, s.topic, self._on_targets, QoSProfile(depth=5, reliability=rel))

    def _on_targets(self, msg) -> None:
        if len(msg.position) != len(msg.name):
            return
        with self._lock:
            base = self._latest.copy() if self._latest is not None else None
            for name, value in zip(msg.name, msg.position):
                i = self._index.get(self.settings.joint_name_map.get(name, name))
                if i is None or not np.isfinite(value):
                    continue
                if base is None:
                    base = np.full(len(self.joint_names), np.nan)
                base[i] = value
            self._latest = base
            self._received_at = time.monotonic()
            self.received += 1

    def begin_episode(self, q_measured: np.ndarray, seed: int) -> dict[str, Any]:
        return {"teleop_topic": self.settings.topic}

    def target(self, t_s: float, q_measured: np.ndarray) -> np.ndarray | None:
        with self._lock:
            if self._latest is None or time.monotonic() - self._received_at > self.settings.stale_after_s:
                return None
            latest = self._latest.copy()
        # joints the leader never named keep the measured position
        return np.where(np.isfinite(latest), latest, q_measured)


class ScriptedSettings(SourceSettings):
    sim_node: str = Field("/sim_arm", description="the simulator node whose parameters describe the scene")
    object: str = Field("", description="block to pick (block0, block1, ...); empty = drawn per episode")
    timeout_s: float = Field(30.0, gt=0, description="how long to wait for the sim node's parameter service")


class ScriptedSource(TeleopSource):
    """The scripted pick demonstrator on the simulated arm (see lingbot_va_ros/teleop/scripted.py)."""

    settings_model = ScriptedSettings

    def __init__(self, joint_names, settings=None):
        super().__init__(joint_names, settings)
        from lingbot_va_ros.kinematics.bimanual import JOINT_NAMES

        if tuple(self.joint_names) != JOINT_NAMES:
            raise TeleopError(f"the scripted demonstrator drives the 14-joint simulated arm {list(JOINT_NAMES)}, "
                              f"the arm config has {self.joint_names}")
        self.objects = []
        self.controller = None
        self.target_object = None
        self._kin = None

    def start(self, node) -> None:
        from lingbot_va_ros.kinematics.bimanual import BimanualKinematics
        from lingbot_va_ros.sim.arm_sim import BimanualSim
        from lingbot_va_ros.teleop.scripted import objects_from_sim

        params = read_sim_params(node, self.settings.sim_node, self.settings.timeout_s)
        self.objects = objects_from_sim(BimanualSim(params))   # same params + seed -> the same scene
        if not self.objects:
            raise TeleopError(f"the scene of {self.settings.sim_node} has no blocks (objects.num_blocks = 0)")
        names = [o.name for o in self.objects]
        if self.settings.object and self.settings.object not in names:
            raise TeleopError(f"no object {self.settings.object!r} in the scene; blocks: {names}")
        self._kin = BimanualKinematics(gripper_units="joint")

    def begin_episode(self, q_measured: np.ndarray, seed: int) -> dict[str, Any]:
        from lingbot_va_ros.teleop.scripted import ScriptedPick

        rng = np.random.default_rng(seed)
        chosen = [o for o in self.objects if o.name == self.settings.object] or \
            [self.objects[int(rng.integers(len(self.objects)))]]
        self.target_object = chosen[0]
        self.controller = ScriptedPick(self._kin, self.target_object, np.asarray(q_measured, dtype=np.float64),
                                       seed=int(seed))
        return {"teleop_object": self.target_object.name, "teleop_object_label": self.target_object.label,
                "teleop_arm": self.controller.arm,
                "teleop_object_position": [round(float(v), 5) for v in self.target_object.position]}

    def episode_prompt(self, template: str) -> str:
        label = self.target_object.label if self.target_object else "block"
        return template.replace("{object}", label)

    def target(self, t_s: float, q_measured: np.ndarray) -> np.ndarray | None:
        return self.controller.step(t_s, q_measured)

    @property
    def finished(self) -> bool:
        return self.controller is not None and self.controller.done


def read_sim_params(node, sim_node: str, timeout_s: float):
    """The running sim node's SimArmParams, read through its parameter services (node spun elsewhere)."""
    from rcl_interfaces.srv import GetParameters, ListParameters
    from rclpy.parameter import parameter_value_to_python

    from lingbot_va_ros.sim.params import SimArmParams

    def call(srv_type, name, request):
        client = node.create_client(srv_type, f"{sim_node}/{name}")
        try:
            if not client.wait_for_service(timeout_sec=timeout_s):
                raise TeleopError(f"no sim node {sim_node} ({sim_node}/{name} not available within {timeout_s:g} s)")
            future = client.call_async(request)
            deadline = time.monotonic() + timeout_s
            while not future.done():
                if time.monotonic() > deadline:
                    raise TeleopError(f"{sim_node}/{name} did not answer within {timeout_s:g} s")
                time.sleep(0.01)
            return future.result()
        finally:
            node.destroy_client(client)

    names = [n for n in call(ListParameters, "list_parameters", ListParameters.Request()).result.names
             if n not in ("use_sim_time", "start_type_description_service")]
    values = call(GetParameters, "get_parameters", GetParameters.Request(names=names)).values
    flat = {n: parameter_value_to_python(v) for n, v in zip(names, values)}
    return SimArmParams.from_dict({k: v for k, v in flat.items() if v is not None}, source=f"node {sim_node}")
