"""MuJoCo simulation of the bimanual arm (pure: scene building, physics, rendering; no rclpy).

The robot comes from urdf/bimanual_arm.urdf (scene.py adds the table, objects, actuators and cameras);
arm_sim.BimanualSim steps physics; render.CameraRenderer draws the cameras from a state snapshot. The GL
backend is chosen (gl.ensure_gl_backend) before the first ``import mujoco`` of these modules.
"""
