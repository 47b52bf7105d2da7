"""Camera ingest core: sources -> decode + model resize -> per-camera rings -> time-aligned key frames.

Pure Python/numpy/cv2 (rclpy only inside the ROS source classes); the node is
``lingbot_va_ros.nodes.camera_ingest``. See docs/camera_ingest.md.
"""
