"""The executor node in its own process over real DDS, with the mock arm driver."""
from __future__ import annotations

import json
import re
import time

import numpy as np
import pytest
import yaml
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, String
from std_srvs.srv import Trigger

from lingbot_va_ros.common import qos, topics
from lingbot_va_ros.common.conversions import pack_matrix, seconds_to_duration, stamp_to_ns, unpack_matrix
from lingbot_va_ros.executor.arm_config import BIMANUAL_JOINTS
from lingbot_va_ros.executor.testing import make_urdf
from lingbot_va_ros.msg import ActionChunk, ActionTick, ExecutedActions
from lingbot_va_ros.testing.peers import HeartbeatPeer
from lingbot_va_ros.testing.ros_harness import wait_until

pytestmark = [pytest.mark.ros, pytest.mark.timeout(90)]
HEARTBEAT_TIMEOUT = 0.5
ARM = [i for i in range(14) if i not in (6, 13)]


@pytest.fixture
def executor_params(tmp_path):
    urdf = tmp_path / "arm.urdf"
    urdf.write_text(make_urdf())
    arm = {"driver": "mock", "driver_params": {"lag_tau": 0.0}, "rate_hz": 50.0, "joints": list(BIMANUAL_JOINTS),
           "urdf": str(urdf),
           "limits": {"velocity_scale": 0.5,
                      "default": {"position_margin": 0.02, "max_acceleration": 4.0, "max_step": 0.03,
                                  "max_first_jump": 0.2, "tracking_tolerance": 0.5},
                      "joints": {"*gripper*": {"position_margin": 0.0005, "max_acceleration": 0.5,
                                               "max_step": 0.002, "max_first_jump": 0.02}}}}
    (tmp_path / "arm.yaml").write_text(yaml.safe_dump(arm))
    params = {"lingbot_va_executor": {"ros__parameters": {
        "arm": str(tmp_path / "arm.yaml"), "actions_per_keyframe": 4, "diagnostics_period": 0.5,
        "watchdog": {"heartbeat_timeout": HEARTBEAT_TIMEOUT, "gap_timeout": 0.1}}}}
    path = tmp_path / "executor.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


class Graph:
    """Probe-side endpoints of the executor's interface; the heartbeat (the inference stand-in) beats from its own
    process, so a busy test process can never make it lapse."""

    def __init__(self, probe, launch):
        self.probe = probe
        # a deep reliable queue: the test matches every tick to its command, and a loaded pytest process can
        # fall more than COMMAND's 5 samples behind the 50 Hz stream (keep-last would overwrite them)
        self.commands = probe.subscribe(JointState, topics.COMMAND, qos.RELIABLE_DEEP)
        self.ticks = probe.subscribe(ActionTick, topics.ACTION_TICK, qos.RELIABLE_DEEP)
        self.executed = probe.subscribe(ExecutedActions, topics.EXECUTED_ACTIONS, qos.RELIABLE_DEEP)
        self.states = probe.subscribe(String, topics.EXECUTOR_STATE, qos.LATCHED)
        self.joint_states = probe.subscribe(JointState, topics.JOINT_STATES, qos.SENSOR_DATA)
        self.chunk_pub = probe.publisher(ActionChunk, topics.ACTION_CHUNK, qos.RELIABLE_DEEP)
        self.estop_pub = probe.publisher(Bool, topics.E_STOP, qos.RELIABLE)
        self.rearm = probe.node.create_client(Trigger, topics.REARM)
        self.episode = "ep1"
        self.heartbeat = HeartbeatPeer(probe, launch, episodes=[self.episode])

    def ready(self):
        for pub in (self.chunk_pub, self.estop_pub):
            self.probe.wait_for_subscribers(pub, timeout=30)
        self.commands.wait_for(timeout=30, what="first command (executor initialised)")
        self.probe.wait_for_service(self.rearm, timeout=30)
        wait_until(lambda: self.state().get("heartbeat_episode") == self.episode, 10, "executor sees heartbeats",
                   on_timeout=lambda: str(self.state()))

    def state(self) -> dict:
        msgs = self.states.messages
        return json.loads(msgs[-1].data) if msgs else {}

    def q(self) -> np.ndarray:
        return np.array(self.commands.messages[-1].position)

    def send(self, rows, chunk_index, start):
        msg = ActionChunk(episode_id=self.episode, chunk_index=chunk_index, start_index=start, action_space="joint",
                          channel_names=list(BIMANUAL_JOINTS), mode="sync")
        msg.control_period = seconds_to_duration(0.02)
        msg.shape, msg.actions = pack_matrix(np.asarray(rows, dtype=np.float32))
        self.chunk_pub.publish(msg)

    def close(self):
        self.heartbeat.resume()


def ramp_from(q0, n, v=0.05, first=1):
    rows = np.repeat(np.asarray(q0, float)[None], n, axis=0)
    rows[:, ARM] += (np.arange(first, first + n) * v * 0.02)[:, None]
    return rows


def test_chunk_to_commands_ticks_executed_actions_then_hold_on_heartbeat_loss(probe, launch, executor_params):
    node = launch("lingbot_va_ros.nodes.executor", params_file=executor_params)
    g = Graph(probe, launch)
    try:
        g.ready()
        q0 = g.q()
        rows = ramp_from(q0, 16)
        g.send(rows, chunk_index=0, start=0)
        ticks = g.ticks.wait_for(count=4, timeout=10, what="4 key-frame ticks")
        assert [(t.episode_id, t.action_index, t.key_frame_index) for t in ticks[:4]] == [
            ("ep1", 3, 1), ("ep1", 7, 2), ("ep1", 11, 3), ("ep1", 15, 4)]
        executed = g.executed.wait_for(count=4, timeout=10, what="4 ExecutedActions")
        assert [e.start_index for e in executed[:4]] == [0, 4, 8, 12]
        got = np.concatenate([unpack_matrix(e.shape, e.actions) for e in executed[:4]])
        modified = np.concatenate([list(e.modified) for e in executed[:4]])
        assert all(list(e.channel_names) == list(BIMANUAL_JOINTS) and e.action_space == "joint" for e in executed)
        # the first actions ease in from rest (crossfade from the held command) and say so; the rest are the
        # chunk's own values, bit for bit
        assert modified[0] and not modified[8:].any()
        np.testing.assert_array_equal(got[~modified], rows.astype(np.float32)[~modified])
        for tick, ex in zip(ticks[:4], executed[:4]):
            assert ex.header.stamp == tick.header.stamp
        assert g.joint_states.wait_for(timeout=5, what="mock /joint_states")[0].name[0] == "left_joint1"

        # a long chunk, then the inference process goes silent: the chunk is cut mid-way and the arm holds
        g.send(ramp_from(rows[-1], 300, first=1), chunk_index=1, start=16)
        g.ticks.wait_for(count=20, timeout=10, what="ticks of the long chunk")
        # each tick is stamped at the instant its action was commanded: the command with that stamp carries the
        # executed action. (The command topic is keep-last 5, as a driver wants it: a reader that falls behind on a
        # loaded host may miss some, so the check runs on every tick so far whose command was received.)
        by_stamp = {(c.header.stamp.sec, c.header.stamp.nanosec): c for c in list(g.commands.messages)}
        executed_by_stamp = {(e.header.stamp.sec, e.header.stamp.nanosec): e for e in list(g.executed.messages)}
        matched = 0
        for tick in list(g.ticks.messages):
            key = (tick.header.stamp.sec, tick.header.stamp.nanosec)
            if key in by_stamp and key in executed_by_stamp:
                ex = executed_by_stamp[key]
                np.testing.assert_allclose(by_stamp[key].position, unpack_matrix(ex.shape, ex.actions)[-1], atol=1e-6)
                matched += 1
        assert matched >= 2, (matched, len(g.ticks.messages), len(g.commands.messages))
        g.heartbeat.pause()                       # the inference process stalls: no beat leaves it
        stale = wait_until(lambda: (s := g.state()).get("reason") == "inference heartbeat stale" and s, 5,
                           "executor reports the stale heartbeat", on_timeout=lambda: str(g.state()))
        # never early: the executor cut when the newest beat was older than the timeout (its own clock; how soon
        # after that it reacts is a benchmark: benchmarks/bench_faults.py, docs/benchmarks/faults.md)
        cut = re.search(r"inference heartbeat stale \(([0-9.]+) s old, timeout ([0-9.]+) s\)", node.output())
        assert cut and float(cut.group(1)) >= float(cut.group(2)) == HEARTBEAT_TIMEOUT, node.output()[-2000:]
        assert stale["counters"]["watchdog_cuts"] == 1 and stale["next_index"] < 16 + 300
        wait_until(lambda: g.state().get("state") == "holding", 5, "decelerated to hold")
        # from then on (stamps on the executor's clock: ticks and commands still in flight to this process on a
        # loaded host are from before), the command is constant and no key-frame tick is sent
        t_hold = time.time_ns()
        after = g.commands.wait_for(lambda c: stamp_to_ns(c.header.stamp) > t_hold, count=10, timeout=10,
                                    what="commands while holding")
        held = np.array([c.position for c in after])
        assert np.all(held == held[0])
        assert not [t for t in list(g.ticks.messages) if stamp_to_ns(t.header.stamp) > t_hold]
        assert node.alive()
    finally:
        g.close()


def test_e_stop_latches_until_the_rearm_service(probe, launch, executor_params):
    node = launch("lingbot_va_ros.nodes.executor", params_file=executor_params)
    g = Graph(probe, launch)
    try:
        g.ready()
        rows = ramp_from(g.q(), 400, v=0.2)
        g.send(rows, chunk_index=0, start=0)
        g.ticks.wait_for(count=3, timeout=10, what="executing")
        g.estop_pub.publish(Bool(data=True))
        wait_until(lambda: g.state().get("state") == "estop", 5, "estop state", on_timeout=lambda: str(g.state()))
        g.estop_pub.publish(Bool(data=False))      # releasing the topic does not clear the latch
        wait_until(lambda: not g.state().get("moving", True), 5, "controlled stop finished")
        n_ticks = len(g.ticks.messages)
        nxt = g.state()["next_index"]
        g.send(ramp_from(g.q(), 50), chunk_index=1, start=nxt)   # dropped while latched
        wait_until(lambda: g.state()["counters"]["chunks_dropped_latched"] >= 1, 5, "chunk dropped while latched")
        assert g.state()["state"] == "estop" and len(g.ticks.messages) == n_ticks

        resp = g.probe.call(g.rearm, Trigger.Request(), timeout=10)
        assert resp.success, resp.message
        wait_until(lambda: g.state().get("state") == "holding", 5, "re-armed, holding")
        g.send(ramp_from(g.q(), 40), chunk_index=2, start=nxt)
        g.ticks.wait_for(count=n_ticks + 3, timeout=10, what="ticks after re-arm")
        assert g.state()["counters"]["e_stops"] == 1 and g.state()["counters"]["rearms"] == 1
        assert node.alive()
    finally:
        g.close()
