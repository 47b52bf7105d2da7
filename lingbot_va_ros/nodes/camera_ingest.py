"""camera_ingest node: one time-aligned, model-sized multi-camera Observation per ActionTick.

Subscribes ``/lingbot_va/action_tick`` (reliable) and each camera source (sensor-data QoS), publishes
``/lingbot_va/observation`` (reliable) and ``/diagnostics`` (per-camera rate/age/drops at ~1 Hz, and at once
at ERROR level whenever a tick is invalid: no Observation is published for it). See docs/camera_ingest.md.

Run: ``python -m lingbot_va_ros.nodes.camera_ingest --ros-args --params-file config/camera_ingest.yaml``
"""
from __future__ import annotations

import sys
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node

from lingbot_va_ros.camera.ingest import CameraIngest, HealthStatus, KeyFrameResult
from lingbot_va_ros.camera.params import CameraIngestParams
from lingbot_va_ros.camera.sources import CameraSource, SourceContext
from lingbot_va_ros.common import topics
from lingbot_va_ros.common.conversions import ns_to_stamp, rgb_to_image_msg, stamp_to_ns
from lingbot_va_ros.common.qos import RELIABLE, RELIABLE_DEEP
from lingbot_va_ros.common.registry import CAMERA_SOURCES, PluginError
from lingbot_va_ros.msg import ActionTick, Observation
from lingbot_va_ros.nodes.runtime import node_options, run_node

NODE_NAME = "lingbot_va_camera_ingest"


class CameraIngestNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__(NODE_NAME, **{**node_options(), **kwargs})
        self.params = CameraIngestParams.from_node(self).resolved()
        self._sources: dict[str, CameraSource] = {}
        self._timing_file = None
        log = self.get_logger()
        self.ingest = CameraIngest(self.params, self._on_key_frame, self._now_ns, log_error=log.error,
                                   describe_source=lambda name: self._sources[name].describe())
        context = SourceContext(node=self, now_ns=self._now_ns, log_info=log.info, log_warn=log.warning)
        for name, cam in self.params.ordered_cameras():
            try:
                source_cls = CAMERA_SOURCES.load(cam.source)
            except PluginError as exc:
                raise PluginError(f"cameras.{name}.source: {exc}") from None
            self._sources[name] = source_cls(name, cam, self.ingest.channels[name].submit, context)

        self._observation_pub = self.create_publisher(Observation, topics.OBSERVATION, RELIABLE_DEEP)
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, topics.DIAGNOSTICS, RELIABLE)
        if self.params.timing_log:
            self._timing_file = open(self.params.timing_log, "w", buffering=1)  # noqa: SIM115 - closed in close()
            self._timing_file.write("episode_id,action_index,key_frame_index,tick_stamp_ns,total_ms,work_ms,cpu_ms,"
                                    "waited_for_frames_ms,waited_inflight_ms,valid\n")
        self.ingest.start()
        for source in self._sources.values():
            source.start()
        # Ticks in their own group, so a tick never waits for the image callbacks' group to be free.
        self.create_subscription(ActionTick, topics.ACTION_TICK, self._on_tick, RELIABLE_DEEP,
                                 callback_group=MutuallyExclusiveCallbackGroup())
        self.create_timer(self.params.diagnostics_period, self._publish_health,
                          callback_group=MutuallyExclusiveCallbackGroup())
        log.info("camera ingest ready: " + "; ".join(
            f"{name} {cam.height}x{cam.width} <- {self._sources[name].describe()}"
            for name, cam in self.params.ordered_cameras()))

    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    # -- ticks -> observations ---------------------------------------------------------------------------
    def _on_tick(self, tick) -> None:
        received = time.monotonic_ns()
        self.ingest.on_tick(tick.episode_id, tick.action_index, tick.key_frame_index,
                            stamp_to_ns(tick.header.stamp), received)

    def _on_key_frame(self, result: KeyFrameResult) -> None:
        tick = result.tick
        if not result.valid:
            self.get_logger().error(
                f"no Observation for action_index {tick.action_index} (key frame {tick.key_frame_index}, episode "
                f"'{tick.episode_id}'): {result.reason()}", throttle_duration_sec=1.0)
            self._publish_health()
            self._log_timing(result, float("nan"), float("nan"), float("nan"))
            return
        msg = Observation(episode_id=tick.episode_id, action_index=tick.action_index,
                                key_frame_index=tick.key_frame_index,
                                camera_names=[c.camera for c in result.choices])
        msg.header.stamp = ns_to_stamp(tick.stamp_ns)
        msg.images = [rgb_to_image_msg(c.frame.rgb, c.frame.stamp_ns, c.camera) for c in result.choices]
        msg.capture_stamps = [ns_to_stamp(c.frame.stamp_ns) for c in result.choices]
        self._observation_pub.publish(msg)
        total, work, cpu = self.ingest.record_published(result, time.monotonic_ns())
        self._log_timing(result, total, work, cpu)

    def _log_timing(self, result: KeyFrameResult, total_ms: float, work_ms: float, cpu_ms: float) -> None:
        if self._timing_file is None:
            return
        t = result.tick
        self._timing_file.write(
            f"{t.episode_id},{t.action_index},{t.key_frame_index},{t.stamp_ns},{total_ms:.4f},{work_ms:.4f},{cpu_ms:.4f},"
            f"{result.waited_for_frames_ns / 1e6:.4f},{result.waited_inflight_ns / 1e6:.4f},{int(result.valid)}\n")

    # -- diagnostics -------------------------------------------------------------------------------------
    def _publish_health(self) -> None:
        """Called by the timer and, after an invalid tick, by the assembler thread (publish is thread-safe)."""
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        statuses: list[HealthStatus] = self.ingest.health(self.params.diagnostics_period)
        for s in statuses:
            array.status.append(DiagnosticStatus(
                level=bytes([s.level]), name=s.name, message=s.message, hardware_id=s.hardware_id,
                values=[KeyValue(key=k, value=v) for k, v in s.values.items()]))
        self._diagnostics_pub.publish(array)

    def close(self) -> None:
        for source in self._sources.values():
            try:
                source.stop()
            except Exception as exc:  # noqa: BLE001 - keep shutting the others down
                self.get_logger().warning(f"stopping source {source.describe()}: {exc}")
        self.ingest.stop()
        if self._timing_file is not None:
            self._timing_file.close()
            self._timing_file = None


def main(argv: list[str] | None = None) -> int:
    # Every callback only stamps and enqueues (decode, assembly and waiting run on the ingest's own threads),
    # so one executor thread suffices (nodes/runtime.py make_executor: why not a multi-threaded one).
    return run_node(CameraIngestNode, argv=argv)


if __name__ == "__main__":
    sys.exit(main())
