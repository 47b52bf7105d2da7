"""Shared, rclpy-free helpers: topic names, message conversions, parameter schemas, plugin registry."""
