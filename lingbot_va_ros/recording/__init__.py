"""Trial recording: rosbag2 (MCAP) bags per episode with embedded message definitions, crash-safe flushing,
repair of killed recordings, the recorder's control protocol and the ``ros2 bag record`` equivalent.
The ROS node is :mod:`lingbot_va_ros.nodes.recorder`; see docs/recording.md."""
