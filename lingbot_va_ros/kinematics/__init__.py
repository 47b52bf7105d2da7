"""Kinematics of the bimanual arm from its URDF (pure: numpy, scipy, ikpy; no rclpy)."""
from lingbot_va_ros.kinematics.bimanual import (ARM_JOINTS, ARMS, EE_LINKS, JOINT_NAMES, BimanualKinematics,
                                                UnreachableError)
from lingbot_va_ros.kinematics.urdf_limits import JointLimits, default_urdf_path, load_joint_limits

__all__ = ["ARMS", "ARM_JOINTS", "EE_LINKS", "JOINT_NAMES", "BimanualKinematics", "UnreachableError",
           "JointLimits", "default_urdf_path", "load_joint_limits"]
