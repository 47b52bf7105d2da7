"""Simulated bimanual arm node: MuJoCo physics in real time, joint states out, joint position targets in,
and rendered RGB cameras; it stands in for the real arm + cameras (the executor's ``sim`` driver publishes
JointState targets on ``/sim_arm/joint_command``).

Threads: a physics thread steps the sim to the wall clock and publishes /joint_states each tick; a render
thread copies the state under the lock (microseconds) and renders outside it, so a slow frame delays only
the cameras, never physics. Cameras with no subscriber are not rendered, and while nothing moves the
last frame is re-sent with a new stamp instead of being rendered again. Stamps are the simulated instant
on the ROS clock: ``t0 + sim_time`` (re-anchored if physics had to skip ahead, see max_lag_s).
"""
from __future__ import annotations

import threading
import time

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image, JointState

from lingbot_va_ros.common import qos, topics
from lingbot_va_ros.common.conversions import ns_to_stamp, rgb_to_image_msg
from lingbot_va_ros.nodes.runtime import node_options, run_node
from lingbot_va_ros.sim.arm_sim import BimanualSim, CommandError
from lingbot_va_ros.sim.gl import RenderUnavailable
from lingbot_va_ros.sim.params import SimArmParams

# Largest qpos change (m or rad) still treated as "the scene did not move": far below a pixel
# (~2.5 mm on the table in the default head camera), so re-sending the previous frame is exact.
STILL_TOLERANCE = 1e-4


class RateCounter:
    def __init__(self) -> None:
        self.count = 0
        self.busy_s = 0.0
        self._t0 = time.monotonic()

    def add(self, busy_s: float = 0.0) -> None:
        self.count += 1
        self.busy_s += busy_s

    def take(self) -> tuple[float, float]:
        """(rate Hz, mean busy ms) since the last take."""
        now = time.monotonic()
        dt, n = max(now - self._t0, 1e-9), self.count
        out = (n / dt, 1000.0 * self.busy_s / n if n else 0.0)
        self.count, self.busy_s, self._t0 = 0, 0.0, now
        return out


class SimArmNode(Node):
    def __init__(self) -> None:
        super().__init__("sim_arm", **node_options())
        self.params = p = SimArmParams.from_node(self)
        t = time.perf_counter()
        self.sim = BimanualSim(p)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.cameras = p.enabled_cameras()
        self.get_logger().info(
            f"sim ready in {time.perf_counter() - t:.1f}s from {self.sim.layout.urdf_path}: "
            f"physics {p.physics_rate_hz:g} Hz, joint states {p.joint_state_rate_hz:g} Hz, cameras {self.cameras} "
            f"at {p.camera_rate_hz:g} Hz, objects {list(self.sim.object_positions())} (seed {p.seed})")

        self.joint_pub = self.create_publisher(JointState, p.joint_states_topic or topics.JOINT_STATES,
                                               qos.SENSOR_DATA)
        self.image_pubs = {c: self.create_publisher(Image, f"{p.image_topic_prefix}/{c}/image_raw", qos.SENSOR_DATA)
                           for c in self.cameras}
        self.info_pubs = ({c: self.create_publisher(CameraInfo, f"{p.image_topic_prefix}/{c}/camera_info",
                                                    qos.SENSOR_DATA) for c in self.cameras}
                          if p.publish_camera_info else {})
        self.create_subscription(JointState, p.command_topic, self._on_command, qos.COMMAND)

        # ROS time of sim time 0; grows by the time skipped when physics cannot keep up.
        self._time_base_ns = self.get_clock().now().nanoseconds
        self._joint_rate, self._frame_rate = RateCounter(), RateCounter()
        self.commands_accepted = 0
        self.commands_rejected = 0
        self._reject_logged: dict[str, float] = {}
        self.skipped_s = 0.0
        self.frames_reused = 0
        self._threads = [threading.Thread(target=self._physics_loop, name="sim_physics", daemon=True)]
        if self.cameras:
            self._threads.append(threading.Thread(target=self._render_loop, name="sim_render", daemon=True))
        for th in self._threads:
            th.start()
        if p.stats_period_s > 0:
            self.create_timer(p.stats_period_s, self._log_stats)

    # ---- commands ---------------------------------------------------------------------------------------
    def _on_command(self, msg: JointState) -> None:
        if len(msg.position) != len(msg.name):
            self._reject(f"{len(msg.name)} names but {len(msg.position)} positions")
            return
        try:
            with self._lock:
                clipped = self.sim.set_targets(list(msg.name), list(msg.position))
        except CommandError as exc:
            self._reject(str(exc))
            return
        self.commands_accepted += 1
        if clipped:
            self.get_logger().warning(f"joint command clipped to the joint limits for {clipped}",
                                      throttle_duration_sec=2.0)

    def _reject(self, reason: str) -> None:
        # Throttled per reason: a driver stuck sending NaN at 50 Hz logs once a second, yet a different
        # problem in between is still reported.
        self.commands_rejected += 1
        now = time.monotonic()
        if now - self._reject_logged.get(reason, -1e9) >= 1.0:
            if len(self._reject_logged) > 100:
                self._reject_logged.clear()
            self._reject_logged[reason] = now
            self.get_logger().warning(f"rejected joint command ({self.commands_rejected} so far): {reason}")

    # ---- physics ----------------------------------------------------------------------------------------
    def _physics_loop(self) -> None:
        p, sim = self.params, self.sim
        period = 1.0 / p.joint_state_rate_hz
        dt = sim.timestep
        max_steps = max(1, int(p.max_lag_s / dt))
        msg = JointState()
        msg.name = list(sim.joint_names)
        t0 = time.monotonic()
        next_tick = t0
        while not self._stop.is_set():
            next_tick += period
            delay = next_tick - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                break
            if time.monotonic() - next_tick > p.max_lag_s:  # stalled too long: skip ahead, do not replay
                next_tick = time.monotonic()
            begin = time.perf_counter()
            with self._lock:
                # Step to this tick's scheduled instant (not to "now"): after a short stall the missed ticks
                # follow back to back, each one period of sim time apart, so the rate and spacing hold.
                due = round((next_tick - t0 - self.skipped_s) / dt) - sim.steps
                if due > max_steps:           # too far behind: skip sim time, keep the stamps honest
                    self.skipped_s += (due - max_steps) * dt
                    self._time_base_ns += int(round((due - max_steps) * dt * 1e9))
                    due = max_steps
                if due <= 0:                  # no new state: nothing to publish (stamps strictly increase)
                    continue
                sim.step(due)
                q, v, e = sim.joint_positions(), sim.joint_velocities(), sim.joint_efforts()
                stamp_ns = self._time_base_ns + int(round(sim.time * 1e9))
            msg.header.stamp = ns_to_stamp(stamp_ns)
            msg.position, msg.velocity, msg.effort = q.tolist(), v.tolist(), e.tolist()
            if not self._publish(self.joint_pub, msg):
                break
            self._joint_rate.add(time.perf_counter() - begin)

    # ---- cameras ----------------------------------------------------------------------------------------
    def _camera_infos(self) -> dict[str, CameraInfo]:
        from lingbot_va_ros.sim.render import camera_intrinsics

        infos = {}
        for cam in self.cameras:
            c = self.params.camera(cam)
            fx, fy, cx, cy = camera_intrinsics(self.sim.model, cam, c.width, c.height)
            info = CameraInfo()
            info.header.frame_id = self.sim.layout.cameras[cam]
            info.width, info.height = c.width, c.height
            info.distortion_model = "plumb_bob"
            info.d = [0.0] * 5
            info.k = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
            info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
            info.p = [fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
            infos[cam] = info
        return infos

    def _render_loop(self) -> None:
        from lingbot_va_ros.sim.render import CameraRenderer

        p = self.params
        sizes = {c: (p.camera(c).height, p.camera(c).width) for c in self.cameras}
        try:  # GL contexts belong to the thread that creates them
            renderer = CameraRenderer(self.sim.model, sizes, shadows=p.render.shadows)
        except RenderUnavailable as exc:
            self.get_logger().error(f"cameras disabled: {exc}")
            return
        infos = self._camera_infos()
        period = 1.0 / p.camera_rate_hz
        next_tick = time.monotonic()
        last_qpos, last_images, last_stamp_ns = None, {}, -1
        try:
            while not self._stop.is_set():
                next_tick += period
                delay = next_tick - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    break
                if time.monotonic() - next_tick > period:  # slower than the rate: drop frames, do not queue
                    next_tick = time.monotonic()
                wanted = [c for c in self.cameras if p.render_without_subscribers
                          or self.image_pubs[c].get_subscription_count() > 0
                          or (c in self.info_pubs and self.info_pubs[c].get_subscription_count() > 0)]
                if not wanted:
                    continue
                begin = time.perf_counter()
                with self._lock:
                    snap = self.sim.snapshot()
                    stamp_ns = self._time_base_ns + int(round(snap.time * 1e9))
                if stamp_ns <= last_stamp_ns:  # physics has not advanced (stalled): no new frame to show
                    continue
                last_stamp_ns = stamp_ns
                if (last_qpos is not None and all(c in last_images for c in wanted)
                        and np.max(np.abs(snap.qpos - last_qpos)) < STILL_TOLERANCE):
                    images = {c: last_images[c] for c in wanted}   # nothing moved: same pixels, new stamp
                    self.frames_reused += 1
                else:
                    images = renderer.render(snap.qpos, wanted)
                    last_qpos, last_images = snap.qpos, images
                stamp = ns_to_stamp(stamp_ns)
                ok = True
                for cam, rgb in images.items():
                    ok &= self._publish(self.image_pubs[cam],
                                        rgb_to_image_msg(rgb, stamp_ns, self.sim.layout.cameras[cam]))
                    if cam in infos:
                        infos[cam].header.stamp = stamp
                        ok &= self._publish(self.info_pubs[cam], infos[cam])
                if not ok:
                    break
                self._frame_rate.add(time.perf_counter() - begin)
        except Exception as exc:  # noqa: BLE001 - a GL failure stops the cameras, never physics
            self.get_logger().error(f"camera thread stopped: {type(exc).__name__}: {exc}")
        finally:
            renderer.close()

    def _publish(self, pub, msg) -> bool:
        """Publish from a worker thread; False once the context is gone (shutdown races close())."""
        try:
            pub.publish(msg)
            return True
        except Exception as exc:  # noqa: BLE001 - rclpy raises RCLError / RuntimeError on a dead context
            if self._stop.is_set() or not self.context.ok():
                return False
            self.get_logger().error(f"publish on {pub.topic_name} failed: {exc}", throttle_duration_sec=5.0)
            return True

    # ---- lifecycle ----------------------------------------------------------------------------------------
    def _log_stats(self) -> None:
        js_hz, js_ms = self._joint_rate.take()
        cam_hz, cam_ms = self._frame_rate.take()
        self.get_logger().info(
            f"joint_states {js_hz:.1f} Hz ({js_ms:.2f} ms/tick), camera sets {cam_hz:.1f} Hz "
            f"({cam_ms:.1f} ms/set, {self.frames_reused} reused unchanged), sim time {self.sim.time:.1f}s, "
            f"skipped {self.skipped_s:.2f}s, commands {self.commands_accepted} accepted / "
            f"{self.commands_rejected} rejected")

    def close(self) -> None:
        self._stop.set()
        for th in self._threads:
            th.join(timeout=5.0)


def main(argv: list[str] | None = None) -> None:
    raise SystemExit(run_node(SimArmNode, argv=argv))


if __name__ == "__main__":
    main()
