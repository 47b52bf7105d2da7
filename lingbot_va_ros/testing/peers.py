"""Peer processes for node tests: the parties a test plays (the inference heartbeat, cameras) in their own
processes, so their timing never depends on the test process (GIL, hypothesis, numpy) being scheduled.

Run as ``python -m lingbot_va_ros.testing.peers heartbeat|cameras|mirror_arm ...`` (the tests' ``launch`` fixture does).
Each peer is steered through a latched JSON control topic and reports on a latched JSON status topic, so a test
waits for "the change is in effect" instead of sleeping. SIGSTOP / SIGCONT of a peer is the honest model of a
stalled party (the fault tests do the same to real nodes).

Test-side handles: :class:`HeartbeatPeer`, :class:`CameraPeer`.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from lingbot_va_ros.common import topics

PEER_NS = "/test_peer"
MAX_PEER_SECONDS = 900.0   # a peer whose test died never outlives this


def control_topic(name: str) -> str:
    return f"{PEER_NS}/{name}/control"


def status_topic(name: str) -> str:
    return f"{PEER_NS}/{name}/status"


def camera_level(counter: int) -> int:
    """Uniform pixel value encoding a frame counter: survives resizing and JPEG within a few LSB."""
    return 16 + (counter % 23) * 10


def camera_frame(counter: int, shape: tuple[int, int]) -> np.ndarray:
    rgb = np.zeros((*shape, 3), np.uint8)
    rgb[..., 0] = camera_level(counter)
    rgb[..., 1] = 90
    return rgb


# =========================================================================================== peer processes
def _spin(node: Any, seconds: float) -> None:
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    executor = SingleThreadedExecutor()
    executor.add_node(node)
    deadline = time.monotonic() + min(seconds, MAX_PEER_SECONDS)
    try:
        while rclpy.ok() and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


def _heartbeat_main(args: argparse.Namespace) -> int:
    """Beats ``Header(frame_id=episode)`` for each episode in the set, like the inference node (20 Hz)."""
    import rclpy
    from std_msgs.msg import Header, String

    from lingbot_va_ros.common import qos

    rclpy.init(args=None)
    node = rclpy.create_node(f"peer_{args.name}")
    pub = node.create_publisher(Header, args.topic, qos.RELIABLE)
    status_pub = node.create_publisher(String, status_topic(args.name), qos.LATCHED)
    st = {"episodes": list(args.episodes), "beats": 0, "since_change": 0, "request": 0}

    def publish_status() -> None:
        status_pub.publish(String(data=json.dumps(st)))

    def on_control(msg: Any) -> None:
        cmd = json.loads(msg.data)
        st["episodes"] = [str(e) for e in cmd.get("episodes", st["episodes"])]
        st["request"] = int(cmd.get("request", 0))
        st["since_change"] = 0
        publish_status()

    def beat() -> None:
        for episode in st["episodes"]:
            msg = Header(frame_id=episode)
            msg.stamp = node.get_clock().now().to_msg()
            pub.publish(msg)
        st["beats"] += 1
        st["since_change"] += 1
        if st["since_change"] <= 5 or st["beats"] % 10 == 0:
            publish_status()

    node.create_subscription(String, control_topic(args.name), on_control, qos.LATCHED)
    node.create_timer(1.0 / args.hz, beat)
    _spin(node, args.max_seconds)
    return 0


def _cameras_main(args: argparse.Namespace) -> int:
    """Fake cameras: frames whose pixels encode a counter, stamped at publication; every sent frame is appended
    to a JSON-lines log (role, stamp_ns, counter) the test reads, so it knows exactly what was published."""
    import cv2
    import rclpy
    from sensor_msgs.msg import CompressedImage, Image
    from std_msgs.msg import String

    from lingbot_va_ros.common import qos
    from lingbot_va_ros.common.conversions import ns_to_stamp, rgb_to_image_msg

    rclpy.init(args=None)
    node = rclpy.create_node(f"peer_{args.name}")
    log = open(args.log, "a", buffering=1)  # noqa: SIM115 - line-buffered for the whole run
    status_pub = node.create_publisher(String, status_topic(args.name), qos.LATCHED)
    cams: dict[str, dict[str, Any]] = {}
    st = {"stopped": [], "request": 0, "sent": {}}
    for spec in args.camera:
        role, rest = spec.split("=", 1)
        topic, rate, shape, kind = rest.rsplit(":", 3)
        h, w = (int(v) for v in shape.split("x"))
        msg_type = CompressedImage if kind == "jpeg" else Image
        profile = qos.SENSOR_DATA
        if args.reliable:
            from rclpy.qos import QoSProfile, ReliabilityPolicy

            profile = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        cams[role] = {"pub": node.create_publisher(msg_type, topic, profile), "shape": (h, w),
                      "kind": kind, "counter": 0}
        st["sent"][role] = 0

    def publish_status() -> None:
        status_pub.publish(String(data=json.dumps(st)))

    def publish_one(role: str) -> None:
        cam = cams[role]
        if role in st["stopped"]:
            return
        rgb = camera_frame(cam["counter"], cam["shape"])
        stamp = time.time_ns()
        if cam["kind"] == "jpeg":
            msg = CompressedImage(format="jpeg")
            msg.header.stamp = ns_to_stamp(stamp)
            msg.data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()
        elif cam["kind"] == "bgr8":
            msg = rgb_to_image_msg(rgb[:, :, ::-1].copy(), stamp)
            msg.encoding = "bgr8"
        else:
            msg = rgb_to_image_msg(rgb, stamp)
        log.write(json.dumps({"role": role, "stamp_ns": stamp, "counter": cam["counter"]}) + "\n")
        cam["counter"] += 1
        st["sent"][role] = cam["counter"]
        cam["pub"].publish(msg)

    def on_control(msg: Any) -> None:
        cmd = json.loads(msg.data)
        st["stopped"] = [str(r) for r in cmd.get("stopped", [])]
        st["request"] = int(cmd.get("request", 0))
        publish_status()

    for spec in args.camera:
        role, rest = spec.split("=", 1)
        rate = float(rest.rsplit(":", 3)[1])
        node.create_timer(1.0 / rate, lambda role=role: publish_one(role))
    node.create_timer(0.25, publish_status)
    node.create_subscription(String, control_topic(args.name), on_control, qos.LATCHED)
    try:
        _spin(node, args.max_seconds)
    finally:
        log.close()
    return 0


def _mirror_arm_main(args: argparse.Namespace) -> int:
    """A topic-driven arm that follows its commands exactly: each tick it reports the newest commanded position
    as its joint state (the contract of the executor's ``sim`` / ``joint_state_topic`` drivers)."""
    import rclpy
    from sensor_msgs.msg import JointState

    from lingbot_va_ros.common import qos

    rclpy.init(args=None)
    node = rclpy.create_node(f"peer_{args.name}")
    names = list(args.joints)
    q = [float(v) for v in args.initial]
    if len(q) != len(names):
        raise SystemExit(f"--initial has {len(q)} values for {len(names)} joints")
    state = {"q": q}
    pub = node.create_publisher(JointState, args.state_topic, qos.SENSOR_DATA)

    def on_command(msg: Any) -> None:
        if list(msg.name) == names and len(msg.position) == len(names):
            state["q"] = list(msg.position)

    def tick() -> None:
        msg = JointState(name=names, position=state["q"])
        msg.header.stamp = node.get_clock().now().to_msg()
        pub.publish(msg)

    node.create_subscription(JointState, args.command_topic, on_command, qos.COMMAND)
    node.create_timer(1.0 / args.hz, tick)
    _spin(node, args.max_seconds)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lingbot_va_ros.testing.peers", description=__doc__)
    sub = ap.add_subparsers(dest="peer", required=True)
    hb = sub.add_parser("heartbeat", help="the inference node's heartbeat")
    hb.add_argument("--name", default="heartbeat")
    hb.add_argument("--episodes", nargs="*", default=[""], help="episode ids each beat names (\"\" = idle)")
    hb.add_argument("--hz", type=float, default=20.0)
    hb.add_argument("--topic", default=topics.HEARTBEAT)
    hb.add_argument("--max-seconds", type=float, default=300.0)
    cams = sub.add_parser("cameras", help="fake cameras with counter-encoded frames")
    cams.add_argument("--name", default="cameras")
    cams.add_argument("--camera", action="append", required=True,
                      help="role=topic:rate_hz:HxW:kind (kind rgb8 | bgr8 | jpeg)")
    cams.add_argument("--log", required=True, help="JSON-lines file of every published frame")
    cams.add_argument("--reliable", action="store_true", help="reliable publishers (default: sensor-data QoS)")
    cams.add_argument("--max-seconds", type=float, default=300.0)
    arm = sub.add_parser("mirror_arm", help="an arm whose joint state is its newest command")
    arm.add_argument("--name", default="arm")
    arm.add_argument("--joints", nargs="+", required=True)
    arm.add_argument("--initial", nargs="+", required=True, help="initial positions, one per joint")
    arm.add_argument("--command-topic", required=True)
    arm.add_argument("--state-topic", default=topics.JOINT_STATES)
    arm.add_argument("--hz", type=float, default=100.0)
    arm.add_argument("--max-seconds", type=float, default=300.0)
    args = ap.parse_args(argv)
    return {"heartbeat": _heartbeat_main, "cameras": _cameras_main, "mirror_arm": _mirror_arm_main}[args.peer](args)


# ================================================================================================ test side
class _PeerHandle:
    """Control/status endpoints of one peer process (a ``NodeProcess`` started by the test's launcher)."""

    def __init__(self, probe: Any, proc: Any, name: str):
        from std_msgs.msg import String

        from lingbot_va_ros.common import qos

        self.probe, self.proc, self.name = probe, proc, name
        self._String = String
        self.control = probe.publisher(String, control_topic(name), qos.LATCHED)
        self.status_inbox = probe.subscribe(String, status_topic(name), qos.LATCHED)
        self._request = 0

    def status(self) -> dict:
        msgs = self.status_inbox.messages
        return json.loads(msgs[-1].data) if msgs else {}

    def wait_status(self, predicate: Callable[[dict], bool], timeout: float, what: str) -> dict:
        from lingbot_va_ros.testing.ros_harness import wait_until

        return wait_until(lambda: (s := self.status()) and predicate(s) and s, timeout, f"{self.name}: {what}",
                          on_timeout=lambda: f"last status {self.status()}; log:\n{self.proc.output()[-1500:]}")

    def _send(self, **cmd: Any) -> int:
        self._request += 1
        self.control.publish(self._String(data=json.dumps({**cmd, "request": self._request})))
        return self._request

    def pause(self) -> int:
        """SIGSTOP: the party stalls (no message leaves it). Returns the instant (time.time_ns)."""
        t = time.time_ns()
        self.proc.signal(signal.SIGSTOP)
        return t

    def resume(self) -> None:
        self.proc.signal(signal.SIGCONT)


class HeartbeatPeer(_PeerHandle):
    """The inference heartbeat in its own process: ``beat(*episodes)`` switches what the beats name."""

    MODULE = "lingbot_va_ros.testing.peers"

    def __init__(self, probe: Any, launch: Callable[..., Any], episodes: Sequence[str] = ("",), hz: float = 20.0,
                 name: str = "heartbeat", topic: str = topics.HEARTBEAT):
        proc = launch(self.MODULE, args=["heartbeat", "--name", name, "--hz", str(hz), "--topic", topic,
                                         "--episodes", *episodes], name=f"peer_{name}")
        super().__init__(probe, proc, name)
        self.wait_status(lambda s: s["since_change"] >= 3, 60, "beating")

    def beat(self, *episodes: str, timeout: float = 30.0) -> dict:
        """Beats name ``episodes`` from now on; returns once three such beats have been sent."""
        req = self._send(episodes=list(episodes))
        return self.wait_status(lambda s: s["request"] == req and s["since_change"] >= 3, timeout,
                                f"beating {list(episodes)}")


def mirror_arm_args(joints: Sequence[str], initial: Sequence[float], command_topic: str, hz: float = 100.0,
                    name: str = "arm") -> list[str]:
    """argv (after the module) of a mirror-arm peer."""
    return ["mirror_arm", "--name", name, "--hz", str(hz), "--command-topic", command_topic,
            "--joints", *joints, "--initial", *(repr(float(v)) for v in initial)]


class CameraPeer(_PeerHandle):
    """Fake cameras in their own process. ``cameras`` = {role: (topic, rate_hz, (h, w), kind)}."""

    MODULE = "lingbot_va_ros.testing.peers"

    def __init__(self, probe: Any, launch: Callable[..., Any],
                 cameras: dict[str, tuple[str, float, tuple[int, int], str]], log_path: str | os.PathLike,
                 name: str = "cameras", reliable: bool = False):
        self.log_path = Path(log_path)
        self.cameras = cameras
        argv = ["cameras", "--name", name, "--log", str(self.log_path)] + (["--reliable"] if reliable else [])
        for role, (topic, rate, (h, w), kind) in cameras.items():
            argv += ["--camera", f"{role}={topic}:{rate}:{h}x{w}:{kind}"]
        proc = launch(self.MODULE, args=argv, name=f"peer_{name}")
        super().__init__(probe, proc, name)

    def sent(self) -> dict[str, dict[int, int]]:
        """role -> {stamp_ns: counter} of every frame published so far."""
        out: dict[str, dict[int, int]] = {role: {} for role in self.cameras}
        if not self.log_path.exists():
            return out
        for line in self.log_path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue          # a line being written
            out[rec["role"]][int(rec["stamp_ns"])] = int(rec["counter"])
        return out

    def stop_cameras(self, *roles: str, timeout: float = 30.0) -> dict:
        req = self._send(stopped=list(roles))
        return self.wait_status(lambda s: s["request"] == req, timeout, f"cameras {list(roles)} stopped")


if __name__ == "__main__":
    sys.exit(main())
