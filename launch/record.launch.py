"""Record the LingBot-VA topics alone (e.g. alongside a hand-started graph).

    ros2 launch lingbot_va_ros record.launch.py recording_dir:=/data/trials use_ros2_bag:=false

use_ros2_bag:=true runs `ros2 bag record -s mcap` with the same topic list instead of the built-in recorder
(the built-in one adds per-episode bags and the episode metadata: prompt, configs, checkpoint hash, outcome).
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def _actions(context, *args, **kwargs):
    from lingbot_va_ros.common.paths import config_path

    recording_dir = LaunchConfiguration("recording_dir").perform(context)
    namespace = LaunchConfiguration("namespace").perform(context)
    params = str(config_path("recorder.yaml"))
    if LaunchConfiguration("use_ros2_bag").perform(context).lower() in ("1", "true", "yes"):
        from lingbot_va_ros.recording.ros2_bag import ros2_bag_record_command

        return [ExecuteProcess(cmd=ros2_bag_record_command(params, recording_dir), output="screen")]
    return [Node(package="lingbot_va_ros", executable="recorder_node", name="lingbot_va_recorder",
                 namespace=namespace, output="screen",
                 parameters=[params, {"recording_dir": recording_dir}])]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([
        DeclareLaunchArgument("recording_dir", default_value="recordings", description="where bags are written"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the recorder node"),
        DeclareLaunchArgument("use_ros2_bag", default_value="false",
                              description="use `ros2 bag record` instead of the built-in recorder"),
        OpaqueFunction(function=_actions),
    ])
