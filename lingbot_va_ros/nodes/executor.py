"""Executor node: the thin ROS wrapper around the executor core (the last line of defence before motors).

Subscribes action chunks, the inference heartbeat and the e-stop; serves re-arm; publishes the command
echo, key-frame ticks, executed actions, the latched executor state and /diagnostics. All decisions are
made by :class:`lingbot_va_ros.executor.core.ExecutorCore` on the control thread of
:class:`lingbot_va_ros.executor.runtime.ExecutorRuntime`; callbacks here only convert and enqueue.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Header, String
from std_srvs.srv import Trigger

from lingbot_va_ros.common import qos, topics
from lingbot_va_ros.common.conversions import ns_to_stamp, pack_matrix
from lingbot_va_ros.common.registry import ARM_DRIVERS
from lingbot_va_ros.executor.action_space import build_action_spaces
from lingbot_va_ros.executor.arm_config import load_arm_config
from lingbot_va_ros.executor.chunks import ChunkData, ChunkPreparer, ValidationSettings
from lingbot_va_ros.executor.core import CoreConfig, ExecutorCore
from lingbot_va_ros.executor.drivers.base import ArmDriver
from lingbot_va_ros.executor.loop import TimingSettings
from lingbot_va_ros.executor.params import ExecutorParams
from lingbot_va_ros.executor.runtime import ExecutorRuntime, Output
from lingbot_va_ros.msg import ActionChunk, ActionTick, ExecutedActions
from lingbot_va_ros.nodes.runtime import node_options, run_node

NODE_NAME = "lingbot_va_executor"
_WARN_EVENTS = ("rejected", "LATCHED", "gap", "no chunk", "inference heartbeat stale")
# Heartbeats: best effort matches any publisher, and one lost beat is covered by the timeout.
HEARTBEAT_QOS = QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT, history=HistoryPolicy.KEEP_LAST)


class ExecutorNode(Node):
    def __init__(self) -> None:
        super().__init__(NODE_NAME, **node_options())
        self.params = p = ExecutorParams.from_node(self)
        sys.setswitchinterval(p.timing.gil_switch_interval)
        self.arm = arm = load_arm_config(p.arm)
        urdf_path = arm.resolve_urdf(p.urdf or None)   # None: the arm YAML gives every limit itself
        limits = arm.build_limits(str(urdf_path)) if urdf_path else arm.build_limits()
        rate = p.rate_hz or arm.rate_hz
        period = 1.0 / rate
        driver_cls = ARM_DRIVERS.load(arm.driver)
        if not (isinstance(driver_cls, type) and issubclass(driver_cls, ArmDriver)):
            raise TypeError(f"arm driver '{arm.driver}' resolves to {driver_cls!r}, not an ArmDriver subclass")
        self.driver: ArmDriver = driver_cls(self, arm.joints, arm.driver_params, period=period,
                                            grippers=arm.is_gripper())
        spaces = build_action_spaces(p.action_spaces, arm.joints, str(urdf_path) if urdf_path else None)
        v = p.validation
        preparer = ChunkPreparer(spaces, limits, period, ValidationSettings(
            max_rows=v.max_rows, period_tolerance=v.period_tolerance, limit_tolerance=v.limit_tolerance,
            gripper_limit_tolerance=v.gripper_limit_tolerance, check_row_jumps=v.check_row_jumps))
        w = p.watchdog
        core = ExecutorCore(CoreConfig(
            joint_names=tuple(arm.joints), period=period, actions_per_keyframe=p.actions_per_keyframe,
            seam_policy=p.seam.policy, crossfade_ticks=p.seam.crossfade_ticks, frozen_actions=p.seam.frozen_actions,
            max_bad_chunks=v.max_bad_chunks, heartbeat_timeout=w.heartbeat_timeout, state_timeout=w.state_timeout,
            gap_timeout=w.gap_timeout, stale_requires_rearm=w.stale_requires_rearm,
            state_range_tolerance=w.state_range_tolerance), limits)
        self.joint_names = list(arm.joints)

        self.command_pub = self.create_publisher(JointState, topics.COMMAND, qos.COMMAND)
        self.tick_pub = self.create_publisher(ActionTick, topics.ACTION_TICK, qos.RELIABLE_DEEP)
        self.executed_pub = self.create_publisher(ExecutedActions, topics.EXECUTED_ACTIONS, qos.RELIABLE_DEEP)
        self.state_pub = self.create_publisher(String, topics.EXECUTOR_STATE, qos.LATCHED)
        self.diag_pub = self.create_publisher(DiagnosticArray, topics.DIAGNOSTICS, qos.RELIABLE)

        self.runtime = ExecutorRuntime(
            core, self.driver, preparer, publish=self._publish, stamp_ns=lambda: self.get_clock().now().nanoseconds,
            timing=TimingSettings(spin_s=p.timing.spin_s, realtime_priority=p.timing.realtime_priority,
                                  cpu_affinity=tuple(p.timing.cpu_affinity)),
            overrun_warn_ticks=w.overrun_warn_ticks, overrun_fault_ticks=w.overrun_fault_ticks,
            status_period=p.diagnostics_period, alive=lambda: self.context.ok(),
            on_publish_error=lambda text: self.get_logger().error(text))

        chunks_group = MutuallyExclusiveCallbackGroup()   # chunks in arrival order, off the safety callbacks
        safety_group = ReentrantCallbackGroup()           # heartbeat / e-stop never wait behind IK
        self.create_subscription(ActionChunk, topics.ACTION_CHUNK, self._on_chunk, qos.RELIABLE_DEEP,
                                 callback_group=chunks_group)
        self.create_subscription(Header, topics.HEARTBEAT, self._on_heartbeat, HEARTBEAT_QOS,
                                 callback_group=safety_group)
        self.create_subscription(Bool, topics.E_STOP, self._on_e_stop, qos.RELIABLE, callback_group=safety_group)
        self.create_service(Trigger, topics.REARM, self._on_rearm, callback_group=ReentrantCallbackGroup())
        self.create_timer(p.diagnostics_period, self._on_diagnostics, callback_group=MutuallyExclusiveCallbackGroup())

        self._closed = False
        self.driver.start()
        self.runtime.start()
        lim = limits
        self.get_logger().info(
            f"executor ready: arm '{arm.source}' driver '{arm.driver}', {len(arm.joints)} joints at {rate:g} Hz, "
            f"URDF {urdf_path or '(limits from YAML)'}, seam '{p.seam.policy}', heartbeat timeout "
            f"{w.heartbeat_timeout:g} s, action spaces {p.action_spaces}; max step "
            f"{lim.max_step.min():.4f}..{lim.max_step.max():.4f}, velocity {lim.velocity.min():.3f}.."
            f"{lim.velocity.max():.3f}; control thread: {', '.join(self.runtime.loop.notes) or 'default scheduling'}")
        for note in self.runtime.loop.notes:
            if "refused" in note:
                self.get_logger().warning(f"control thread: {note}")

    # ------------------------------------------------------------------ callbacks (convert + enqueue only)
    def _on_chunk(self, msg: ActionChunk) -> None:
        self.runtime.submit_chunk(ChunkData.from_msg(msg))

    def _on_heartbeat(self, msg: Header) -> None:
        self.runtime.heartbeat(msg.frame_id)

    def _on_e_stop(self, msg: Bool) -> None:
        if msg.data:
            self.get_logger().warning("e-stop received: controlled stop, latched until /lingbot_va/rearm")
        self.runtime.e_stop(bool(msg.data))

    def _on_rearm(self, _request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        response.success, response.message = self.runtime.rearm()
        self._log("info" if response.success else "warn", f"re-arm: {response.message}")
        return response

    def _log(self, level: str, text: str) -> None:
        # One call site per severity: rclpy refuses a call site whose severity changes between calls.
        log = self.get_logger()
        if level == "error":
            log.error(text)
        elif level == "warn":
            log.warning(text)
        elif level == "info":
            log.info(text)
        else:
            log.debug(text)

    # ------------------------------------------------------------------ publisher thread
    def _publish(self, out: Output) -> None:
        if not self.context.ok():
            return
        res = out.result
        for level, text in out.logs:
            self._log(level, text)
        for text in res.events:
            self._log("warn" if text.startswith(_WARN_EVENTS) else "info", text)
        stamp = ns_to_stamp(out.stamp_ns)
        if res.command is not None:
            msg = JointState(name=self.joint_names, position=res.command.tolist(), velocity=res.velocity.tolist())
            msg.header.stamp = stamp
            self.command_pub.publish(msg)
        if res.tick is not None:
            tick = res.tick
            # The tick is stamped at the instant its action was commanded (this control tick).
            self.executed_pub.publish(self._executed_msg(tick, stamp))
            tmsg = ActionTick(episode_id=tick.episode_id, action_index=tick.action_index,
                              key_frame_index=tick.key_frame_index)
            tmsg.header.stamp = stamp
            self.tick_pub.publish(tmsg)
        if out.status is not None:
            self.state_pub.publish(String(data=json.dumps(out.status, sort_keys=True)))

    def _executed_msg(self, tick, stamp) -> ExecutedActions:
        import numpy as np

        rows = tick.rows
        first = rows[0].chunk
        blocks, mods = [], []
        # consecutive rows from the same chunk are converted together (ee: one FK batch)
        k = 0
        while k < len(rows):
            j = k
            while j < len(rows) and rows[j].chunk is rows[k].chunk:
                j += 1
            chunk = rows[k].chunk
            commanded = np.stack([r.command for r in rows[k:j]])
            modified = np.array([r.modified for r in rows[k:j]])
            block = chunk.report_rows(commanded, modified, np.array([r.row for r in rows[k:j]]))
            if chunk.channel_names != first.channel_names:  # report in the first chunk's channel order
                pos = {n: i for i, n in enumerate(chunk.channel_names)}
                block = block[:, [pos[n] for n in first.channel_names]]
            blocks.append(block)
            mods.extend(modified.tolist())
            k = j
        msg = ExecutedActions(episode_id=tick.episode_id, start_index=rows[0].index, action_space=first.action_space,
                              channel_names=list(first.channel_names), modified=mods)
        msg.header.stamp = stamp
        msg.shape, msg.actions = pack_matrix(np.concatenate(blocks, axis=0))
        return msg

    def _on_diagnostics(self) -> None:
        rt = self.runtime
        status = rt.status
        timing = rt.loop.stats.summary()
        level = DiagnosticStatus.OK
        waiting = status.get("state") in ("stopping", "holding") and bool(status.get("episode"))
        if status.get("latched"):
            level = DiagnosticStatus.ERROR
        elif waiting or timing.get("missed_deadlines"):
            level = DiagnosticStatus.WARN
        values = {"state": status.get("state", ""), "reason": status.get("reason", ""),
                  "episode": status.get("episode", ""), "next_index": status.get("next_index", 0),
                  "latched": json.dumps(status.get("latched", {})), "last_rejection": status.get("last_rejection", ""),
                  "heartbeat_age_s": status.get("heartbeat_age_s"), "tick_errors": rt.tick_errors,
                  "publish_errors": rt.publish_errors}
        values.update(status.get("counters", {}))
        values.update({f"rejected_{k}": n for k, n in status.get("rejections_by_category", {}).items()})
        values.update({f"timing_{k}": (round(v, 4) if isinstance(v, float) else v) for k, v in timing.items()})
        values.update({f"driver_{k}": v for k, v in self.driver.describe().items()})
        diag = DiagnosticArray(status=[DiagnosticStatus(
            level=level, name=f"{NODE_NAME}: executor", hardware_id=Path(self.arm.source).stem,
            message=f"{status.get('state', '')}: {status.get('reason', '')}"[:200],
            values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])])
        diag.header.stamp = self.get_clock().now().to_msg()
        self.diag_pub.publish(diag)

    def close(self) -> None:
        if getattr(self, "_closed", True):
            return
        self._closed = True
        self.runtime.stop()
        self.driver.stop()


def main(argv: list[str] | None = None) -> None:
    raise SystemExit(run_node(ExecutorNode, argv=argv))


if __name__ == "__main__":
    main()
