"""The project's own messages and action across two processes over real DDS (issue: foundation)."""
from __future__ import annotations

import numpy as np
import pytest
from rclpy.action import ActionClient

from lingbot_va_ros.action import RunEpisode
from lingbot_va_ros.common.conversions import (image_msg_to_rgb, ns_to_stamp, pack_matrix, rgb_to_image_msg,
                                               seconds_to_duration, unpack_matrix)
from lingbot_va_ros.common.qos import RELIABLE_DEEP
from lingbot_va_ros.msg import ActionChunk, Observation
from lingbot_va_ros.testing.ros_harness import wait_until

pytestmark = [pytest.mark.ros, pytest.mark.timeout(90)]


def _chunk(i: int) -> ActionChunk:
    actions = np.arange(32 * 14, dtype=np.float32).reshape(32, 14) * 0.01 + i
    msg = ActionChunk(episode_id="ep-1", chunk_index=i, start_index=32 * i, action_space="joint",
                      channel_names=[f"j{k}" for k in range(14)], mode="async", inference_latency=0.25,
                      observation_action_index=32 * i - 1)
    msg.control_period = seconds_to_duration(0.02)
    msg.observation_stamp = ns_to_stamp(1_700_000_000_123_456_789 + i)
    msg.shape, msg.actions = pack_matrix(actions)
    return msg


def test_action_chunk_and_observation_round_trip(probe, launch):
    peer = launch("lingbot_va_ros.testing.interface_peer")
    chunk_out = probe.subscribe(ActionChunk, "/peer/action_chunk_out", RELIABLE_DEEP)
    obs_out = probe.subscribe(Observation, "/peer/observation_out", RELIABLE_DEEP)
    chunk_pub = probe.publisher(ActionChunk, "/peer/action_chunk_in", RELIABLE_DEEP)
    obs_pub = probe.publisher(Observation, "/peer/observation_in", RELIABLE_DEEP)
    probe.wait_for_subscribers(chunk_pub)
    probe.wait_for_subscribers(obs_pub)
    probe.wait_for_publishers("/peer/action_chunk_out")
    probe.wait_for_publishers("/peer/observation_out")

    rng = np.random.default_rng(0)
    images = {"cam_high": rng.integers(0, 256, (256, 320, 3), dtype=np.uint8),
              "cam_left_wrist": rng.integers(0, 256, (128, 160, 3), dtype=np.uint8)}
    obs = Observation(episode_id="ep-1", action_index=15, key_frame_index=4, camera_names=list(images))
    obs.header.stamp = ns_to_stamp(42_000_000_001)
    obs.images = [rgb_to_image_msg(img, 42_000_000_001) for img in images.values()]
    obs.capture_stamps = [ns_to_stamp(41_990_000_000), ns_to_stamp(41_995_000_000)]

    for i in range(3):
        chunk_pub.publish(_chunk(i))
    obs_pub.publish(obs)

    chunks = chunk_out.wait_for(count=3, timeout=20, what="echoed chunks")
    for i, got in enumerate(sorted(chunks, key=lambda m: m.chunk_index)):
        sent = _chunk(i)
        assert (got.episode_id, got.chunk_index, got.start_index, got.mode) == ("ep-1", i, 32 * i, "async")
        assert list(got.shape) == [32, 14] and list(got.channel_names) == list(sent.channel_names)
        np.testing.assert_array_equal(unpack_matrix(got.shape, got.actions), unpack_matrix(sent.shape, sent.actions))
        assert (got.observation_stamp.sec, got.observation_stamp.nanosec) == (sent.observation_stamp.sec,
                                                                               sent.observation_stamp.nanosec)
        assert got.control_period.nanosec == 20_000_000

    (echo,) = obs_out.wait_for(timeout=20, what="echoed observation")
    assert echo.action_index == 15 and list(echo.camera_names) == list(images)
    for name, img_msg in zip(echo.camera_names, echo.images):
        np.testing.assert_array_equal(image_msg_to_rgb(img_msg), images[name])
    assert echo.capture_stamps[1].nanosec == 995_000_000
    assert peer.alive()


def test_run_episode_goal_feedback_result_and_cancel(probe, launch):
    launch("lingbot_va_ros.testing.interface_peer")
    client = ActionClient(probe.node, RunEpisode, "/peer/run_episode")
    assert client.wait_for_server(timeout_sec=20), "RunEpisode server not discovered"

    # goal -> feedback -> result
    feedback = []
    goal_future = client.send_goal_async(RunEpisode.Goal(prompt="stack the blocks", max_chunks=4),
                                         feedback_callback=lambda fb: feedback.append(fb.feedback))
    handle = wait_until(lambda: goal_future.done() and goal_future.result(), 10, "goal response")
    assert handle.accepted
    result_future = handle.get_result_async()
    result = wait_until(lambda: result_future.done() and result_future.result(), 20, "result").result
    assert result.outcome == "completed" and result.chunks == 4
    wait_until(lambda: len(feedback) >= 1, 5, "feedback")
    assert [f.chunk_index for f in feedback] == sorted(f.chunk_index for f in feedback)

    # goal -> feedback -> cancel
    feedback.clear()
    goal_future = client.send_goal_async(RunEpisode.Goal(prompt="open the drawer", max_chunks=0),
                                         feedback_callback=lambda fb: feedback.append(fb.feedback))
    handle = wait_until(lambda: goal_future.done() and goal_future.result(), 10, "goal response")
    wait_until(lambda: len(feedback) >= 2, 10, "feedback before cancel")
    cancel_future = handle.cancel_goal_async()
    wait_until(cancel_future.done, 10, "cancel response")
    assert len(cancel_future.result().goals_canceling) == 1
    result_future = handle.get_result_async()
    result = wait_until(lambda: result_future.done() and result_future.result(), 10, "cancelled result")
    assert result.result.outcome == "cancelled"

    # invalid goal is rejected
    goal_future = client.send_goal_async(RunEpisode.Goal(prompt="   "))
    handle = wait_until(lambda: goal_future.done() and goal_future.result(), 10, "goal response")
    assert not handle.accepted
    client.destroy()
