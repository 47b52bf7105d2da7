"""``sim``: the simulated arm node (``lingbot_va_ros/nodes/sim_arm.py``) as a configuration of
``joint_state_topic``: sensor_msgs/JointState commands (names + positions, executor joint names) on
``/sim_arm/joint_command``, measured state from ``/joint_states``. Same parameters, sim defaults."""
from __future__ import annotations

from pydantic import Field

from lingbot_va_ros.executor.drivers.joint_state_topic import JointStateTopicDriver, JointStateTopicParams

SIM_COMMAND_TOPIC = "/sim_arm/joint_command"
SIM_STATE_TOPIC = "/joint_states"


class SimParams(JointStateTopicParams):
    command_topic: str = Field(SIM_COMMAND_TOPIC, description="the sim arm's command topic")
    state_topic: str = Field(SIM_STATE_TOPIC, description="the sim arm's joint-state topic")


class SimDriver(JointStateTopicDriver):
    params_model = SimParams
