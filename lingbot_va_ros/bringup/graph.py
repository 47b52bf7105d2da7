"""The node set of a bringup, computed once and shared by launch/bringup.launch.py and the standalone runner.

Both turn the same :class:`NodeSpec` list into processes (launch_ros ``Node`` actions, or
:class:`~lingbot_va_ros.testing.ros_harness.NodeProcess`), so the YAML a user edits behaves the same either way.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lingbot_va_ros.common.paths import config_path, resolve_config, share_dir

PACKAGE = "lingbot_va_ros"


@dataclass(frozen=True)
class BringupOptions:
    arm: str = "sim"                    # config/arms/<name>.yaml or a path
    embodiment: str = "demo_sim"        # config/embodiments/<name>.yaml or a path
    checkpoint: str = ""
    device: str = "auto"
    mode: str = "sync"
    namespace: str = ""
    record: bool = True
    recording_dir: str = "recordings"
    use_sim: bool = True
    use_respawn: bool = False
    respawn_delay: float = 2.0
    log_level: str = "info"
    camera_config: str = ""             # camera ingest params file; default: config/camera_ingest[_sim].yaml
    torch_threads: int = 0              # inference CPU threads (0 = torch default)
    live_view: bool = True              # live-view node decoding the predicted frames (off: no latents published)
    display_rate_hz: float = 0.0        # live view's max decodes per second (0 = config/live_view.yaml's)


@dataclass(frozen=True)
class NodeSpec:
    name: str                           # ROS node name (also the params-file key)
    executable: str                     # installed in lib/lingbot_va_ros (ros2 run / launch_ros)
    module: str                         # python -m entry (standalone runner)
    package: str = PACKAGE
    params_files: tuple[str, ...] = ()
    overrides: dict = field(default_factory=dict)
    remappings: tuple[tuple[str, str], ...] = ()
    respawn: bool = False


def namespaced_names() -> list[str]:
    """Absolute names of one robot's graph. The nodes use absolute default names (stable, documented), so a
    namespace is applied by remapping each of them to /<namespace><name> in every node of the bringup."""
    from lingbot_va_ros.common import topics

    names = [v for k, v in vars(topics).items() if k.isupper() and isinstance(v, str) and v.startswith("/")
             and k not in ("NAMESPACE", "DIAGNOSTICS")]  # /diagnostics stays global for the aggregator/rqt
    names += [f"{topics.NAMESPACE}/recorder/control", f"{topics.NAMESPACE}/recorder/status", "/sim_arm/joint_command"]
    names += [f"/sim_arm/{cam}/{kind}" for cam in ("cam_high", "cam_left_wrist", "cam_right_wrist")
              for kind in ("image_raw", "camera_info")]
    return sorted(set(names))


def namespace_remappings(namespace: str) -> tuple[tuple[str, str], ...]:
    ns = "/" + namespace.strip("/") if namespace.strip("/") else ""
    return tuple((name, f"{ns}{name}") for name in namespaced_names()) if ns else ()


def _camera_params(opts: BringupOptions) -> Path:
    if opts.camera_config:
        return resolve_config(opts.camera_config, ".")
    sim = config_path("camera_ingest_sim.yaml")
    return sim if opts.use_sim and sim.is_file() else config_path("camera_ingest.yaml")


def build_graph(opts: BringupOptions) -> list[NodeSpec]:
    from lingbot_va_ros.model.embodiment import load_embodiment

    arm_yaml = str(resolve_config(opts.arm, "arms"))
    embodiment_yaml = str(resolve_config(opts.embodiment, "embodiments"))
    embodiment = load_embodiment(embodiment_yaml)
    nodes = []
    if opts.use_sim:
        nodes.append(NodeSpec("sim_arm", "sim_arm_node", "lingbot_va_ros.nodes.sim_arm",
                              params_files=(str(config_path("sim_arm.yaml")),),
                              overrides={"urdf": str(share_dir() / "urdf" / "bimanual_arm.urdf")}))
    nodes += [
        NodeSpec("lingbot_va_camera_ingest", "camera_ingest_node", "lingbot_va_ros.nodes.camera_ingest",
                 params_files=(str(_camera_params(opts)),), overrides={"embodiment": embodiment_yaml},
                 respawn=opts.use_respawn),
        NodeSpec("lingbot_va_executor", "executor_node", "lingbot_va_ros.nodes.executor",
                 params_files=(str(config_path("executor.yaml")),
                               *((str(config_path("executor_sim.yaml")),) if opts.use_sim else ())),
                 # the control rate and key-frame spacing are the model's (what it was trained with)
                 overrides={"arm": arm_yaml, "rate_hz": float(embodiment.control_hz),
                            "actions_per_keyframe": int(embodiment.actions_per_keyframe)},
                 respawn=False),  # never respawn the last line of defence behind the operator's back
        NodeSpec("lingbot_va_inference", "inference_node", "lingbot_va_ros.nodes.inference",
                 params_files=(str(config_path("inference.yaml")),),
                 overrides={"checkpoint": opts.checkpoint, "embodiment": embodiment_yaml, "device": opts.device,
                            "mode": opts.mode, "recording_dir": opts.recording_dir if opts.record else "",
                            "torch_threads": opts.torch_threads, "display": {"enabled": opts.live_view}},
                 respawn=opts.use_respawn),
    ]
    if opts.live_view:
        import yaml

        # the live view decodes with the inference node's VAE (base_checkpoint) and camera layout
        inference_yaml = yaml.safe_load(config_path("inference.yaml").read_text())
        base = inference_yaml["/**/lingbot_va_inference"]["ros__parameters"].get("base_checkpoint", "")
        nodes.append(NodeSpec("lingbot_va_live_view", "live_view_node", "lingbot_va_ros.nodes.live_view",
                              params_files=(str(config_path("live_view.yaml")),),
                              overrides={"checkpoint": opts.checkpoint, "base_checkpoint": base or "",
                                         "embodiment": embodiment_yaml, "device": opts.device,
                                         **({"max_rate_hz": opts.display_rate_hz} if opts.display_rate_hz else {})},
                              respawn=opts.use_respawn))
    if opts.record:
        recorder_overrides: dict = {"recording_dir": opts.recording_dir}
        if namespace_remappings(opts.namespace):
            # the recorder selects topics by the names it sees in the graph: record this robot's names
            import yaml

            doc = yaml.safe_load(config_path("recorder.yaml").read_text())
            listed = doc["/**/lingbot_va_recorder"]["ros__parameters"]["topics"]
            mapping = dict(namespace_remappings(opts.namespace))
            recorder_overrides["topics"] = [mapping.get(t, t) for t in listed]
        nodes.append(NodeSpec("lingbot_va_recorder", "recorder_node", "lingbot_va_ros.nodes.recorder",
                              params_files=(str(config_path("recorder.yaml")),),
                              overrides=recorder_overrides, respawn=opts.use_respawn))
    remaps = namespace_remappings(opts.namespace)
    return [NodeSpec(**{**n.__dict__, "remappings": n.remappings + remaps}) for n in nodes]
