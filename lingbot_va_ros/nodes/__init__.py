"""Thin rclpy wrappers (one module per executable). The logic lives in the rclpy-free cores."""
