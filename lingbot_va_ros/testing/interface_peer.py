"""A peer process for the interface round-trip tests: echoes the project's messages and serves RunEpisode.

- ``/peer/action_chunk_in`` -> republished unchanged on ``/peer/action_chunk_out`` (same for Observation),
  so a test can check a full cross-process round trip of every field.
- ``/peer/run_episode``: accepts goals with a non-empty prompt, publishes one feedback per 50 ms chunk
  until ``max_chunks`` (then succeeds) or a cancel (then reports cancelled); rejects empty prompts.
"""
from __future__ import annotations

import sys
import time

import rclpy
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node

from lingbot_va_ros.action import RunEpisode
from lingbot_va_ros.common.qos import RELIABLE_DEEP
from lingbot_va_ros.msg import ActionChunk, Observation


class InterfacePeer(Node):
    def __init__(self) -> None:
        super().__init__("interface_peer")
        for msg_type, name in ((ActionChunk, "action_chunk"), (Observation, "observation")):
            pub = self.create_publisher(msg_type, f"/peer/{name}_out", RELIABLE_DEEP)
            self.create_subscription(msg_type, f"/peer/{name}_in", pub.publish, RELIABLE_DEEP)
        self._server = ActionServer(
            self, RunEpisode, "/peer/run_episode", execute_callback=self._execute,
            goal_callback=self._on_goal, cancel_callback=lambda _g: CancelResponse.ACCEPT,
            callback_group=ReentrantCallbackGroup())

    def _on_goal(self, goal: RunEpisode.Goal) -> GoalResponse:
        return GoalResponse.ACCEPT if goal.prompt.strip() else GoalResponse.REJECT

    def _execute(self, handle) -> RunEpisode.Result:
        goal = handle.request
        result = RunEpisode.Result(episode_id=goal.episode_id or "peer-episode")
        chunks = 0
        while goal.max_chunks == 0 or chunks < goal.max_chunks:
            if handle.is_cancel_requested:
                handle.canceled()
                result.outcome, result.reason, result.chunks = "cancelled", "cancel requested", chunks
                return result
            handle.publish_feedback(RunEpisode.Feedback(chunk_index=chunks, latency_s=0.05, state="predicting",
                                                        mode="sync"))
            chunks += 1
            time.sleep(0.05)  # stands in for one chunk's inference time
        handle.succeed()
        result.outcome, result.reason, result.chunks = "completed", f"prompt '{goal.prompt}' done", chunks
        return result


def main(args=None) -> None:
    rclpy.init(args=args if args is not None else sys.argv)
    node = InterfacePeer()
    executor = MultiThreadedExecutor(num_threads=3)
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


if __name__ == "__main__":
    main()
