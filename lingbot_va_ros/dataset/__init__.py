"""Demonstration datasets: recorded trials and tele-operated demos as LeRobot-format datasets (no rclpy)."""
