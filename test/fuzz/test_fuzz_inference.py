"""Property-based fuzzing of what the inference node accepts, over real DDS into its own process (tiny random
checkpoint): Observation (camera names / counts / order, encodings, sizes, truncated data, extreme indices,
unicode episode ids), ExecutedActions (shapes, NaN/inf, huge and empty arrays, channel names, action spaces,
extreme indices) and RunEpisode goals (unicode, empty, whitespace-only and 1 MB prompts, extreme
max_chunks / max_duration_s, odd episode ids), while an episode is running.

Properties: the node never crashes; every bad input is rejected with a reason (counted, last reason on
/diagnostics); goals end with an outcome and a reason; afterwards a valid initial observation still yields
a chunk computed from exactly that observation.
"""
from __future__ import annotations

import math
import time

import numpy as np
import pytest
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sensor_msgs.msg import Image

from lingbot_va_ros.common import qos, topics
from lingbot_va_ros.common.conversions import ns_to_stamp, rgb_to_image_msg
from lingbot_va_ros.model.embodiment import load_embodiment
from lingbot_va_ros.msg import ActionChunk, ActionTick, ExecutedActions, Observation
from lingbot_va_ros.testing.faults import EpisodeClient, diagnostic_statuses, diagnostic_values, free_ros_domain
from lingbot_va_ros.testing.ros_harness import wait_until

pytestmark = [pytest.mark.ros, pytest.mark.timeout(240)]

EMB = load_embodiment("demo_sim")
CAMS = list(EMB.camera_names)
SIZES = {c: EMB.image_sizes[c] for c in CAMS}
CHANNELS = list(EMB.channel_names)
EPISODE = "fuzz-ep"
text = st.one_of(st.text(max_size=12), st.sampled_from(["", " ", "é✓\U0001F916", "\x00", "x" * 400]))
FUZZ = settings(deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])


def _image(cam: str, h: int | None = None, w: int | None = None, encoding: str = "rgb8") -> Image:
    hh, ww = SIZES[cam]
    msg = rgb_to_image_msg(np.full((h or hh, w or ww, 3), 90, np.uint8), time.time_ns(), cam)
    msg.encoding = encoding
    return msg


def valid_observation(action_index: int = -1, episode: str = EPISODE, stamp_ns: int | None = None) -> Observation:
    stamp = time.time_ns() if stamp_ns is None else stamp_ns
    obs = Observation(episode_id=episode, action_index=action_index, key_frame_index=0, camera_names=CAMS,
                      images=[_image(c) for c in CAMS], capture_stamps=[ns_to_stamp(stamp)] * len(CAMS))
    obs.header.stamp = ns_to_stamp(stamp)
    return obs


@st.composite
def bad_observations(draw) -> Observation:
    """A valid initial observation with at least one defect (so the episode never starts from it)."""
    obs = valid_observation()
    defect = draw(st.sampled_from(["order", "missing", "extra", "names", "encoding", "size", "data", "index",
                                   "count", "empty"]))
    if defect == "order":
        obs.camera_names = list(reversed(CAMS))
    elif defect == "missing":
        k = draw(st.integers(0, len(CAMS) - 1))
        obs.camera_names = [c for i, c in enumerate(CAMS) if i != k]
        obs.images = [im for i, im in enumerate(obs.images) if i != k]
    elif defect == "extra":
        obs.camera_names = CAMS + [draw(text)]
        obs.images = list(obs.images) + [_image(CAMS[0])]
    elif defect == "names":
        obs.camera_names = draw(st.lists(text, min_size=len(CAMS), max_size=len(CAMS)).filter(lambda n: n != CAMS))
    elif defect == "encoding":
        k = draw(st.integers(0, len(CAMS) - 1))
        obs.images[k].encoding = draw(st.one_of(text, st.sampled_from(["bgr8", "mono8", "16UC1", "yuv422"])).filter(
            lambda e: e != "rgb8"))
    elif defect == "size":
        k = draw(st.integers(0, len(CAMS) - 1))
        h, w = SIZES[CAMS[k]]
        hh = draw(st.sampled_from([1, h - 8, h + 8, 2 * h]))
        obs.images[k] = _image(CAMS[k], hh, w)
    elif defect == "data":
        k = draw(st.integers(0, len(CAMS) - 1))
        obs.images[k].data = bytes(obs.images[k].data)[: draw(st.integers(0, 1000))]
        obs.images[k].height = draw(st.sampled_from([obs.images[k].height, 2**31 - 1]))
    elif defect == "index":
        obs.action_index = draw(st.sampled_from([-2, -2**63]))
    elif defect == "count":
        obs.images = list(obs.images)[:-1]
    else:
        obs.camera_names, obs.images, obs.capture_stamps = [], [], []
    return obs


@st.composite
def executed_actions(draw) -> ExecutedActions:
    rows = draw(st.integers(1, 8))
    msg = ExecutedActions(episode_id=draw(st.sampled_from([EPISODE, EPISODE, "other"])), start_index=0,
                          action_space="joint", channel_names=CHANNELS)
    kind = draw(st.sampled_from(["values", "shape", "size", "names", "space", "index", "huge", "empty"]))
    vals = np.zeros((rows, len(CHANNELS)), np.float32)
    msg.shape, msg.actions = [rows, len(CHANNELS)], vals.reshape(-1).tolist()
    if kind == "values":
        vals[draw(st.integers(0, rows - 1)), draw(st.integers(0, len(CHANNELS) - 1))] = draw(
            st.sampled_from([math.nan, math.inf, -math.inf]))
        msg.actions = vals.reshape(-1).tolist()
    elif kind == "shape":
        msg.shape = draw(st.lists(st.integers(0, 2**32 - 1), max_size=4).filter(lambda s: s != [rows, len(CHANNELS)]))
    elif kind == "size":
        msg.actions = [0.0] * draw(st.integers(0, rows * len(CHANNELS) - 1))
    elif kind == "names":
        msg.channel_names = draw(st.lists(text, min_size=1, max_size=16))
    elif kind == "space":
        msg.action_space = draw(st.sampled_from(["ee_relative", "JOINT", "x"]))
    elif kind == "index":
        msg.start_index = draw(st.sampled_from([-1, -2**63]))
    elif kind == "huge":
        msg.shape, msg.actions = [2**20, len(CHANNELS)], np.zeros(2**20, np.float32)   # 4 MB, size mismatch
    else:
        msg.shape, msg.actions = [0, len(CHANNELS)], []
    return msg


@pytest.fixture(scope="module")
def inference(tmp_path_factory):
    """One inference process for the module (its start costs 15-40 s on a loaded 2-core host)."""
    from lingbot_va_ros.model.tiny_checkpoint import shared_tiny_checkpoint
    from lingbot_va_ros.testing.ros_harness import NodeProcess, RosProbe, apply_ros_env_to_this_process, ros_env

    tmp = tmp_path_factory.mktemp("fuzz_inference")
    params = {"lingbot_va_inference": {"ros__parameters": {
        "checkpoint": str(shared_tiny_checkpoint()), "embodiment": "demo_sim", "device": "cpu", "mode": "sync",
        "torch_threads": 1, "initial_observation_timeout_s": 30.0, "feedback_timeout_s": 1.0,
        "display": {"enabled": False}}}}
    path = tmp / "inference.yaml"
    path.write_text(yaml.safe_dump(params))
    with free_ros_domain() as domain:
        apply_ros_env_to_this_process(domain, str(tmp / "ros"))
        node = NodeProcess.module("lingbot_va_ros.nodes.inference", ros_env(domain, tmp / "ros"), tmp,
                                  params_file=path).start()
        probe = RosProbe(domain)
        client = EpisodeClient(probe)
        try:
            client.wait_server(180, alive=lambda: None if node.alive() else pytest.fail(node.output()[-3000:]))
            yield probe, node, client
        finally:
            probe.close()
            node.stop()
            assert not node.alive()


def _status(diags) -> dict[str, str]:
    s = diagnostic_statuses(diags, "lingbot_va/inference").get("lingbot_va/inference")
    return {} if s is None else diagnostic_values(s)


def test_fuzzed_observations_executed_actions_and_goals_are_rejected_with_reasons(inference):
    probe, node, client = inference
    obs_pub = probe.publisher(Observation, topics.OBSERVATION, qos.RELIABLE_DEEP)
    ex_pub = probe.publisher(ExecutedActions, topics.EXECUTED_ACTIONS, qos.RELIABLE_DEEP)
    chunks = probe.subscribe(ActionChunk, topics.ACTION_CHUNK, qos.RELIABLE_DEEP)
    ticks = probe.subscribe(ActionTick, topics.ACTION_TICK, qos.RELIABLE_DEEP)
    diags = probe.subscribe(DiagnosticArray, topics.DIAGNOSTICS, qos.RELIABLE_DEEP)
    for pub in (obs_pub, ex_pub):
        probe.wait_for_subscribers(pub, timeout=60)

    # an episode is running, waiting for its initial observation (the node asks with tick -1)
    running = client.send("fuzz the inputs", max_chunks=1, episode_id=EPISODE)
    assert running.accepted
    ticks.wait_for(lambda t: t.episode_id == EPISODE and t.action_index == -1, timeout=30, what="initial tick")
    sent = {"obs": 0, "ex": 0}

    @settings(FUZZ, max_examples=60)
    @given(st.one_of(bad_observations(), executed_actions()))
    def burst(msg):
        if isinstance(msg, Observation):
            obs_pub.publish(msg)
            sent["obs"] += 1
        else:
            ex_pub.publish(msg)
            sent["ex"] += 1
        time.sleep(0.01)

    burst()
    assert node.alive(), node.output()[-3000:]
    # every bad observation rejected and counted, with a reason; the episode is still waiting (none was used)
    wait_until(lambda: int(_status(diags).get("observations_rejected", "0")) >= sent["obs"], 20,
               f"{sent['obs']} observations rejected", on_timeout=lambda: str(_status(diags)))
    assert _status(diags).get("last_rejected_input")
    assert not running.done() and not [c for c in chunks.messages if c.episode_id == EPISODE]

    # a second goal while one runs is refused with a reason
    second = client.send("another", max_chunks=1)
    res = second.result(30)
    assert res.outcome == "rejected" and "one at a time" in res.reason, res

    # the valid initial observation: exactly one chunk, computed from it, and the episode completes
    stamp = time.time_ns()
    obs_pub.publish(valid_observation(-1, EPISODE, stamp))
    res = running.result(120)
    assert res.outcome == "completed", (res.outcome, res.reason)
    got = [c for c in chunks.messages if c.episode_id == EPISODE]
    assert len(got) == 1 and got[0].observation_action_index == -1
    assert got[0].observation_stamp.sec * 1_000_000_000 + got[0].observation_stamp.nanosec == stamp
    assert np.isfinite(np.asarray(got[0].actions)).all()

    # fuzzed goals: each one ends (rejected / cancelled / aborted / completed) with a reason; never a crash
    goals = st.tuples(
        st.one_of(text, st.just("a" * 1_000_000), st.text(min_size=1, max_size=200)),
        st.sampled_from([0, 1, 2**32 - 1]),
        st.sampled_from([0.0, 1e-9, 0.5, 1e30, math.inf]),
        st.one_of(st.just(""), text))

    @settings(FUZZ, max_examples=10)
    @given(goals)
    def goal_burst(goal):
        prompt, max_chunks, max_duration, episode_id = goal
        h = client.send(prompt, max_chunks=max_chunks, max_duration_s=max_duration, episode_id=episode_id)
        if not h.accepted:
            return
        # ROS strings end at the first NUL (rosidl's C strings): "\x00..." reaches the node as ""
        if not prompt.split("\x00", 1)[0].strip():
            r = h.result(30)
            assert r.outcome == "rejected" and r.reason == "empty prompt", r
            return
        wait_until(lambda: h.done() or any(t.action_index == -1 and t.episode_id == (episode_id or t.episode_id)
                                           for t in ticks.messages[-3:]), 30, "the goal running")
        h.cancel()
        r = h.result(30)
        assert r.outcome in ("cancelled", "aborted", "completed") and r.reason, r

    goal_burst()
    assert node.alive(), node.output()[-3000:]

    # and it still serves: a unicode, long prompt with a valid observation yields a chunk
    ticks.clear()
    h = client.send("ramasse le cube rouge ✓ " * 400, max_chunks=1, episode_id="after-fuzz")
    ticks.wait_for(lambda t: t.episode_id == "after-fuzz", timeout=30, what="initial tick of the last goal")
    obs_pub.publish(valid_observation(-1, "after-fuzz"))
    res = h.result(120)
    assert res.outcome == "completed", (res.outcome, res.reason)
    assert node.alive()


def test_goals_with_non_finite_or_negative_limits_are_rejected_with_a_reason(inference):
    _probe, _node, client = inference
    for bad in (math.nan, -1.0):
        h = client.send("pick", max_chunks=0, max_duration_s=bad)
        try:
            r = wait_until(lambda: h.done() and h.result(1), 5, f"max_duration_s={bad} refused at once")
        finally:
            h.cancel()
        assert r.outcome == "rejected" and "max_duration_s" in r.reason, r
