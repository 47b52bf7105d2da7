"""Parameter schema of the demo recorder (``lingbot-va-record-demo``): the single source of defaults and docs."""
from __future__ import annotations

from typing import Any

from pydantic import Field

from lingbot_va_ros.common.params import NodeParams

DEMO_STOP_TOPIC = "/lingbot_va/demo/stop"


class DemoRecorderParams(NodeParams):
    prompt: str = Field("pick up the {object} and put it back", min_length=1, description=(
        "the task instruction stored as the episode prompt; '{object}' is replaced by the scripted source's "
        "object (e.g. 'red block')"))
    source: str = Field("scripted", min_length=1, description=(
        "tele-operation source: topic (JointState targets from a leader arm / spacemouse node) | scripted (the "
        "built-in sim demonstrator) | an entry point of lingbot_va_ros.teleop_sources | package.module:Class"))
    source_settings: dict[str, Any] = Field(default_factory=dict, description=(
        "settings of the source (topic: topic, joint_name_map, stale_after_s; scripted: sim_node, object)"))
    arm: str = Field("sim", min_length=1, description=(
        "arm YAML (config/arms/): driver, joint order and safety limits; every target passes the executor's "
        "safety limiter and goes out through this driver, exactly like the executor's commands"))
    embodiment: str = Field("demo_sim", min_length=1, description=(
        "embodiment the demos are for (stored in the bag; its control_hz is the default control rate)"))
    rate_hz: float = Field(0.0, ge=0.0, le=1000.0, description="control rate; 0 = the embodiment's control_hz")
    episodes: int = Field(1, ge=1, le=100000, description="episodes to record one after the other")
    duration_s: float = Field(0.0, ge=0.0, description=(
        "close an episode after this long (0 = when the source finishes, a stop command or Ctrl-C)"))
    seed: int = Field(0, ge=0, description="episode k uses seed + k (scripted source: object, heights, speed)")
    episode_prefix: str = Field("demo", min_length=1, description="episode ids are <prefix>-<UTC time>-<k>")
    settle_s: float = Field(0.5, ge=0.0, le=10.0, description=(
        "hold the start pose this long after the recorder opened the episode (cameras and joint states are in "
        "the bag before the first move) and after the source finished"))
    wait_timeout_s: float = Field(60.0, gt=0.0, description=(
        "how long to wait for the recorder, the arm's joint states and the source at start-up"))
    wait_for_topics: list[str] = Field(default_factory=lambda: ["/joint_states", "/sim_arm/*/image_raw"],
                                       description=(
        "before the first episode, wait until the recorder has received messages on these topics (names or "
        "globs), so the first episode's bag has the cameras and joint states from its start; [''] = none"))
    stop_topic: str = Field(DEMO_STOP_TOPIC, description=(
        "std_msgs/String: any message closes the open episode; data = its outcome (empty = completed)"))
    metadata: dict[str, Any] = Field(default_factory=dict, description="extra custom data for every bag")
