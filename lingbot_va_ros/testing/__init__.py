"""Helpers to test ROS 2 graphs of separate processes over real DDS (used by test/ and benchmarks/)."""
