"""The arm executor: plays action chunks on the arm at the control rate, behind a safety limiter.

Pure core (no rclpy): ``core.ExecutorCore`` (timeline, seams, watchdogs, latches), ``limits.SafetyLimiter``,
``chunks.ChunkPreparer`` (validation + action-space conversion), ``loop.ControlLoop`` (timing thread),
``runtime.ExecutorRuntime`` (threads glue). Arm drivers: ``drivers/``. The ROS node: ``nodes/executor.py``.
See docs/executor.md and docs/drivers.md.
"""
