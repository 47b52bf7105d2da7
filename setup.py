"""Python packaging of lingbot_va_ros for the self-contained venv (``pip install -e .``).

In a colcon workspace the package is built by CMakeLists.txt (ament_cmake) instead; this file then only
documents the console scripts and plugin entry points, which the registries also resolve without it.
"""
from setuptools import find_packages, setup

setup(
    name="lingbot_va_ros",
    version="0.1.0",
    description="ROS 2 controller for the LingBot-VA causal video-action world model",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["lingbot_va_ros", "lingbot_va_ros.*"]),
    entry_points={
        "console_scripts": [
            "lingbot-va-verify = lingbot_va_ros.model.verify:main",
            "lingbot-va-make-tiny-checkpoint = lingbot_va_ros.model.tiny_checkpoint:main",
            "lingbot-va-demo = lingbot_va_ros.bringup.runner:main",
            "lingbot-va = lingbot_va_ros.bringup.operator_cli:main",
            "lingbot-va-camera-ingest = lingbot_va_ros.nodes.camera_ingest:main",
            "lingbot-va-inference = lingbot_va_ros.nodes.inference:main",
            "lingbot-va-executor = lingbot_va_ros.nodes.executor:main",
            "lingbot-va-sim-arm = lingbot_va_ros.nodes.sim_arm:main",
            "lingbot-va-recorder = lingbot_va_ros.nodes.recorder:main",
            "lingbot-va-live-view = lingbot_va_ros.nodes.live_view:main",
            "lingbot-va-score = lingbot_va_ros.scoring.cli:main",
            "lingbot-va-replay = lingbot_va_ros.replay.cli:main",
            "lingbot-va-bag-repair = lingbot_va_ros.recording.repair:main",
            "lingbot-va-export = lingbot_va_ros.dataset.export:main",
            "lingbot-va-record-demo = lingbot_va_ros.teleop.record_demo:main",
            "lingbot-va-train = lingbot_va_ros.training.cli:main",
        ],
        # Third-party packages extend the product through these groups (see docs/plugins.md).
        "lingbot_va_ros.arm_drivers": [
            "mock = lingbot_va_ros.executor.drivers.mock:MockDriver",
            "sim = lingbot_va_ros.executor.drivers.sim:SimDriver",
            "joint_state_topic = lingbot_va_ros.executor.drivers.joint_state_topic:JointStateTopicDriver",
            "ros2_control = lingbot_va_ros.executor.drivers.ros2_control:Ros2ControlDriver",
        ],
        "lingbot_va_ros.camera_sources": [
            "ros_image = lingbot_va_ros.camera.sources:RosImageSource",
            "ros_compressed = lingbot_va_ros.camera.sources:RosCompressedImageSource",
            "opencv = lingbot_va_ros.camera.sources:OpenCvSource",
        ],
        "lingbot_va_ros.teleop_sources": [
            "topic = lingbot_va_ros.teleop.sources:TopicSource",
            "scripted = lingbot_va_ros.teleop.sources:ScriptedSource",
        ],
        "lingbot_va_ros.policy_backends": [
            "lingbot_va = lingbot_va_ros.model.backend:LingBotVABackend",
        ],
    },
)
