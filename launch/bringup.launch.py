"""Bring up the whole LingBot-VA graph: camera ingest, inference, arm executor, robot_state_publisher,
the simulated arm (use_sim), the live view (live_view) and the recorder (record).

    ros2 launch lingbot_va_ros bringup.launch.py arm:=sim embodiment:=demo_sim checkpoint:=/path/to/ckpt mode:=sync

The node set comes from lingbot_va_ros.bringup.graph, shared with the standalone runner (lingbot-va-demo).
"""
from pathlib import Path

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

ARGUMENTS = [
    ("arm", "sim", "arm config: name in config/arms/ (sim, mock, piper, ros2_control_jtc, ...) or a YAML path"),
    ("embodiment", "demo_sim", "embodiment/model config: name in config/embodiments/ or a YAML path"),
    ("checkpoint", "", "LingBot-VA checkpoint folder (transformer/ vae/ text_encoder/ tokenizer/)"),
    ("device", "auto", "auto | cpu | cuda | cuda:N"),
    ("mode", "sync", "pipeline mode: sync | async | async_naive"),
    ("namespace", "", "namespace for every node"),
    ("record", "true", "record every episode as a rosbag2 MCAP bag"),
    ("live_view", "true", "decode every chunk's predicted frames for rqt (live-view node, its own process)"),
    ("recording_dir", "recordings", "where bags are written"),
    ("use_sim", "true", "start the MuJoCo simulated arm with cameras"),
    ("use_respawn", "false", "respawn camera ingest / inference / recorder if they crash (the executor never is)"),
    ("respawn_delay", "2.0", "seconds before a respawn"),
    ("log_level", "info", "ROS log level"),
    ("autostart", "false", "send a RunEpisode goal with `prompt` once the graph is up (lingbot-va run)"),
    ("prompt", "", "language instruction for autostart"),
    ("max_chunks", "0", "autostart episode length in chunks (0 = until cancelled)"),
    ("camera_config", "", "camera ingest params file (default: config/camera_ingest_sim.yaml with use_sim, "
                          "else config/camera_ingest.yaml)"),
]


def _truthy(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def _launch_nodes(context, *args, **kwargs):
    from lingbot_va_ros.bringup.graph import BringupOptions, build_graph, namespace_remappings
    from lingbot_va_ros.common.topics import RUN_EPISODE
    from lingbot_va_ros.common.paths import share_dir

    get = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    opts = BringupOptions(
        arm=get("arm"), embodiment=get("embodiment"), checkpoint=get("checkpoint"), device=get("device"),
        mode=get("mode"), namespace=get("namespace"), record=_truthy(get("record")),
        live_view=_truthy(get("live_view")),
        recording_dir=get("recording_dir"), use_sim=_truthy(get("use_sim")), use_respawn=_truthy(get("use_respawn")),
        respawn_delay=float(get("respawn_delay")), log_level=get("log_level"), camera_config=get("camera_config"))
    ros_args = ["--log-level", opts.log_level]
    actions = []
    for spec in build_graph(opts):
        actions.append(Node(
            package=spec.package, executable=spec.executable, name=spec.name, namespace=opts.namespace,
            parameters=[*spec.params_files, spec.overrides], remappings=list(spec.remappings),
            respawn=spec.respawn, respawn_delay=opts.respawn_delay, output="screen", ros_arguments=ros_args))
    urdf = Path(share_dir()) / "urdf" / "bimanual_arm.urdf"
    actions.append(Node(package="robot_state_publisher", executable="robot_state_publisher",
                        name="robot_state_publisher", namespace=opts.namespace, output="screen",
                        parameters=[{"robot_description": urdf.read_text()}], ros_arguments=ros_args,
                        remappings=list(namespace_remappings(opts.namespace))))
    if _truthy(get("autostart")):
        if not get("prompt").strip():
            raise ValueError("autostart:=true needs a prompt:=\"...\"")
        # the operator CLI waits for the RunEpisode server, runs the episode and reports its outcome
        actions.append(ExecuteProcess(
            cmd=["lingbot-va", "--timeout", "120",
                 "--action", dict(namespace_remappings(opts.namespace)).get(RUN_EPISODE, RUN_EPISODE),
                 "run", get("prompt"), "--chunks", get("max_chunks")],
            output="screen"))
    return actions


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([
        *(DeclareLaunchArgument(name, default_value=default, description=doc) for name, default, doc in ARGUMENTS),
        OpaqueFunction(function=_launch_nodes),
    ])
