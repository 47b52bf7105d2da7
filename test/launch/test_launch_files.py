"""launch/*.launch.py evaluated for real: nodes, executables, parameters and their validation, options.

launch_ros is not installable from PyPI, so when it is missing the real launch files are evaluated against
the minimal stand-in API in fake_launch_api/ (only what the files use); in a sourced ROS workspace the real
launch / launch_ros packages are used instead.
"""
from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from pathlib import Path

import pytest
import yaml

from lingbot_va_ros.common.params import NodeParams, flatten

ROOT = Path(__file__).resolve().parents[2]
FAKE_API = Path(__file__).parent / "fake_launch_api"
SCHEMAS = {
    "sim_arm": "lingbot_va_ros.sim.params:SimArmParams",
    "lingbot_va_camera_ingest": "lingbot_va_ros.camera.params:CameraIngestParams",
    "lingbot_va_executor": "lingbot_va_ros.executor.params:ExecutorParams",
    "lingbot_va_inference": "lingbot_va_ros.inference.params:InferenceParams",
    "lingbot_va_recorder": "lingbot_va_ros.recording.params:RecorderParams",
    "lingbot_va_live_view": "lingbot_va_ros.live_view.params:LiveViewParams",
}


@pytest.fixture
def launch_api():
    """The launch API: the real one if importable, else the stand-in (removed again afterwards)."""
    try:
        importlib.import_module("launch_ros.actions")
        yield "real"
        return
    except ImportError:
        pass
    sys.path.insert(0, str(FAKE_API))
    try:
        yield "fake"
    finally:
        sys.path.remove(str(FAKE_API))
        for name in [m for m in sys.modules if m == "launch" or m.startswith(("launch.", "launch_ros"))]:
            del sys.modules[name]


def _evaluate(launch_file: str, **args: str) -> list:
    """Load a launch file, apply arguments over its declared defaults, run its OpaqueFunctions."""
    from launch import LaunchContext
    from launch.actions import DeclareLaunchArgument, OpaqueFunction

    spec = importlib.util.spec_from_file_location(f"launch_under_test_{Path(launch_file).stem}",
                                                  ROOT / "launch" / launch_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ld = module.generate_launch_description()
    declared = {e.name: e.default_value for e in ld.entities if isinstance(e, DeclareLaunchArgument)}
    unknown = set(args) - set(declared)
    assert not unknown, f"arguments not declared by {launch_file}: {unknown}"
    context = LaunchContext()
    context.launch_configurations.update({**{k: str(v) for k, v in declared.items()}, **args})
    actions = []
    for entity in ld.entities:
        if isinstance(entity, OpaqueFunction):
            actions += entity.execute(context) or []
    return actions


def _node_kwargs(actions) -> dict[str, dict]:
    return {a.kwargs["name"]: a.kwargs for a in actions if hasattr(a, "kwargs") and "executable" in a.kwargs}


def _schema(name: str) -> type[NodeParams]:
    module, _, attr = SCHEMAS[name].partition(":")
    return getattr(importlib.import_module(module), attr)


def _merged_parameters(node_name: str, parameters: list) -> dict:
    merged: dict = {}
    for entry in parameters:
        if isinstance(entry, dict):
            merged.update(flatten(entry))
            continue
        doc = yaml.safe_load(Path(entry).read_text()) or {}
        for key in ("/**", node_name, f"/**/{node_name}"):
            merged.update(flatten((doc.get(key) or {}).get("ros__parameters", {})))
    return merged


def test_default_bringup_starts_the_whole_graph_with_valid_parameters(launch_api):
    nodes = _node_kwargs(_evaluate("bringup.launch.py", checkpoint="/ckpt"))
    assert set(nodes) == {*SCHEMAS, "robot_state_publisher"}
    installed = re.findall(r"bin/(\w+)", (ROOT / "CMakeLists.txt").read_text())
    for name, kw in nodes.items():
        if name == "robot_state_publisher":
            urdf = kw["parameters"][0]["robot_description"]
            assert "<robot" in urdf and "left_joint1" in urdf
            continue
        assert kw["package"] == "lingbot_va_ros" and kw["executable"] in installed, name
        for entry in kw["parameters"]:
            if not isinstance(entry, dict):
                assert Path(entry).is_file(), f"{name}: missing params file {entry}"
        # the exact parameter set the node will get validates against its schema
        _schema(name).from_dict(_merged_parameters(name, kw["parameters"]), source=f"launch: {name}")
    inference = _merged_parameters("lingbot_va_inference", nodes["lingbot_va_inference"]["parameters"])
    assert inference["checkpoint"] == "/ckpt" and inference["mode"] == "sync"
    executor = _merged_parameters("lingbot_va_executor", nodes["lingbot_va_executor"]["parameters"])
    assert executor["arm"].endswith("config/arms/sim.yaml")
    # the executor runs at the embodiment's control rate with its key-frame spacing
    emb = yaml.safe_load((ROOT / "config/embodiments/demo_sim.yaml").read_text())
    assert executor["rate_hz"] == emb["control_hz"] and executor["actions_per_keyframe"] == emb["action_per_frame"] // 4
    camera = nodes["lingbot_va_camera_ingest"]["parameters"]
    assert any(str(p).endswith("camera_ingest_sim.yaml") for p in camera)


def test_bringup_options_change_the_graph(launch_api):
    nodes = _node_kwargs(_evaluate("bringup.launch.py", record="false", use_sim="false", arm="piper",
                                   mode="async", namespace="robot1", use_respawn="true", embodiment="robotwin"))
    assert "lingbot_va_recorder" not in nodes and "sim_arm" not in nodes
    assert all(kw["namespace"] == "robot1" for kw in nodes.values())
    # the nodes' absolute default names move under the namespace by remapping (diagnostics stay global)
    for kw in nodes.values():
        remaps = dict(kw.get("remappings") or [])
        assert remaps["/lingbot_va/action_chunk"] == "/robot1/lingbot_va/action_chunk"
        assert remaps["/joint_states"] == "/robot1/joint_states" and "/diagnostics" not in remaps
    assert nodes["lingbot_va_inference"]["respawn"] and nodes["lingbot_va_camera_ingest"]["respawn"]
    assert not nodes["lingbot_va_executor"]["respawn"], "the executor must never be respawned behind the operator"
    executor = _merged_parameters("lingbot_va_executor", nodes["lingbot_va_executor"]["parameters"])
    assert executor["arm"].endswith("config/arms/piper.yaml")
    inference = _merged_parameters("lingbot_va_inference", nodes["lingbot_va_inference"]["parameters"])
    assert inference["mode"] == "async" and inference["embodiment"].endswith("robotwin.yaml")
    assert any(str(p).endswith("config/camera_ingest.yaml") for p in nodes["lingbot_va_camera_ingest"]["parameters"])
    for name, kw in nodes.items():
        if name in SCHEMAS:
            _schema(name).from_dict(_merged_parameters(name, kw["parameters"]), source=f"launch: {name}")


def test_autostart_runs_an_episode_through_the_operator_cli(launch_api):
    actions = _evaluate("bringup.launch.py", autostart="true", prompt="stack the bowls", max_chunks="20",
                        namespace="robot1")
    (proc,) = [a for a in actions if hasattr(a, "cmd")]
    assert proc.cmd[0] == "lingbot-va" and "stack the bowls" in proc.cmd and "/robot1/lingbot_va/run_episode" in proc.cmd
    assert not [a for a in _evaluate("bringup.launch.py") if hasattr(a, "cmd")]
    with pytest.raises(ValueError, match="prompt"):
        _evaluate("bringup.launch.py", autostart="true")


def test_unknown_arm_fails_with_the_available_names(launch_api):
    with pytest.raises(FileNotFoundError, match="sim"):
        _evaluate("bringup.launch.py", arm="no_such_arm")


def test_record_launch_builtin_and_ros2_bag(launch_api):
    (node,) = _evaluate("record.launch.py", recording_dir="/data/trials")
    params = _merged_parameters("lingbot_va_recorder", node.kwargs["parameters"])
    assert node.kwargs["executable"] == "recorder_node" and params["recording_dir"] == "/data/trials"
    _schema("lingbot_va_recorder").from_dict(params)
    (proc,) = _evaluate("record.launch.py", recording_dir="/data/trials", use_ros2_bag="true")
    assert proc.cmd[:3] == ["ros2", "bag", "record"] and "mcap" in proc.cmd and "/lingbot_va/action_chunk" in proc.cmd


def test_ros_params_files_hold_no_empty_lists():
    """rclpy cannot type an empty list from a params file (PARAMETER_NOT_SET): the node would not start."""
    for path in (ROOT / "config").glob("*.yaml"):
        doc = yaml.safe_load(path.read_text()) or {}
        for node, section in doc.items():
            assert node.startswith("/**/"), f"{path.name}: key '{node}' only matches the node in the root namespace"
            for key, value in flatten((section or {}).get("ros__parameters", {})).items():
                assert value != [], f"{path.name}: {node}.{key} is an empty list"


def test_live_view_decodes_with_the_inference_nodes_checkpoint_and_layout(launch_api):
    nodes = _node_kwargs(_evaluate("bringup.launch.py", checkpoint="/ckpt", embodiment="robotwin", device="cpu"))
    live = _merged_parameters("lingbot_va_live_view", nodes["lingbot_va_live_view"]["parameters"])
    inference = _merged_parameters("lingbot_va_inference", nodes["lingbot_va_inference"]["parameters"])
    assert (live["checkpoint"], live["embodiment"], live["device"]) == ("/ckpt", inference["embodiment"], "cpu")
    assert live["base_checkpoint"] == inference["base_checkpoint"] and inference["display.enabled"] is True
    # without it nothing decodes, so the inference node does not publish latents either
    nodes = _node_kwargs(_evaluate("bringup.launch.py", live_view="false"))
    assert "lingbot_va_live_view" not in nodes
    inference = _merged_parameters("lingbot_va_inference", nodes["lingbot_va_inference"]["parameters"])
    assert inference["display.enabled"] is False
