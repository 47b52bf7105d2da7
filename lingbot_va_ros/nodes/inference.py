"""Inference node: owns the policy backend (model + KV cache), serves RunEpisode, publishes action chunks.

Threads: ROS callbacks only validate and store inputs; one model worker thread runs each episode
(``EpisodeRunner``). For the live view the worker only copies each chunk's predicted latents into a
PredictedLatents message; the live-view node (another process) decodes them, so watching costs the control path
nothing.
"""
from __future__ import annotations

import inspect
import json
import math
import queue
import sys
import threading
import time
import uuid

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from std_msgs.msg import Header
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from lingbot_va_ros.action import RunEpisode
from lingbot_va_ros.common import qos, topics
from lingbot_va_ros.common.conversions import (MessageError, image_msg_to_rgb, ns_to_stamp, pack_matrix,
                                               seconds_to_duration, unpack_matrix)
from lingbot_va_ros.common.registry import POLICY_BACKENDS
from lingbot_va_ros.inference.backend import PolicyBackend
from lingbot_va_ros.inference.inputs import EpisodeInputs, InputError, StaleInput, validate_keyframe
from lingbot_va_ros.inference.params import InferenceParams
from lingbot_va_ros.inference.pipeline import DeadlinePolicy, EpisodeLimits, EpisodeRunner, PublishedChunk
from lingbot_va_ros.live_view.latents import pack_latents
from lingbot_va_ros.msg import ActionChunk, ActionTick, ExecutedActions, Observation, PredictedLatents, PredictionError
from lingbot_va_ros.nodes.runtime import node_options, run_node


def build_backend(params: InferenceParams) -> PolicyBackend:
    """Instantiate the configured backend, passing only the options its constructor takes."""
    cls = POLICY_BACKENDS.load(params.backend)
    offered = {"checkpoint_dir": params.checkpoint, "base_checkpoint_dir": params.base_checkpoint or None,
               "embodiment": params.embodiment, "device": params.device, "dtype": params.dtype,
               "attention_backend": params.attention_backend, "text_encoder_offload": params.text_encoder_offload,
               "seed": params.seed}
    accepted = inspect.signature(cls).parameters
    kwargs = {k: v for k, v in offered.items() if k in accepted and v is not None}
    return cls(**kwargs)


class InferenceNode(Node):
    def __init__(self) -> None:
        super().__init__("lingbot_va_inference", **node_options())
        self.params = InferenceParams.from_node(self)
        if self.params.torch_threads:
            import torch

            torch.set_num_threads(self.params.torch_threads)
        t = time.perf_counter()
        self.backend = build_backend(self.params)  # fails start-up with the exact problem
        self.spec = self.backend.spec
        self.get_logger().info(f"backend '{self.params.backend}' ready in {time.perf_counter() - t:.1f}s: "
                               f"cameras {list(self.spec.camera_names)}, {len(self.spec.channel_names)} channels "
                               f"({self.spec.action_space}), mode {self.params.mode}")
        self.inputs = EpisodeInputs(self.spec)
        self._runner: EpisodeRunner | None = None
        self._episode_id = ""
        self._beat_episode = ""    # the heartbeat's frame_id: the running episode, "" while idle
        self._busy = threading.Lock()
        self._latent_mse: list[tuple[int, float]] = []      # (chunk, latent MSE) of the running episode
        self._jobs: queue.Queue = queue.Queue()
        self._counters = {"observations": 0, "observations_rejected": 0, "executed_rejected": 0,
                          "late_inputs_ignored": 0}
        self._last_reject = ""

        io = ReentrantCallbackGroup()
        self.chunk_pub = self.create_publisher(ActionChunk, topics.ACTION_CHUNK, qos.RELIABLE_DEEP)
        self.tick_pub = self.create_publisher(ActionTick, topics.ACTION_TICK, qos.RELIABLE_DEEP)
        self.heartbeat_pub = self.create_publisher(Header, topics.HEARTBEAT, qos.RELIABLE)
        self.latents_pub = (self.create_publisher(PredictedLatents, topics.PREDICTED_LATENTS, qos.RELIABLE)
                            if self.params.display.enabled and self.spec.has_video else None)
        self.error_pub = self.create_publisher(PredictionError, topics.PREDICTION_ERROR, qos.RELIABLE_DEEP)
        self.traj_pub = self.create_publisher(JointTrajectory, topics.PREDICTED_TRAJECTORY, qos.RELIABLE)
        self.diag_pub = self.create_publisher(DiagnosticArray, topics.DIAGNOSTICS, qos.RELIABLE)
        self.create_subscription(Observation, topics.OBSERVATION, self._on_observation, qos.RELIABLE_DEEP,
                                 callback_group=io)
        self.create_subscription(ExecutedActions, topics.EXECUTED_ACTIONS, self._on_executed, qos.RELIABLE_DEEP,
                                 callback_group=io)
        self.create_timer(1.0 / self.params.diagnostics_hz, self._diagnostics, callback_group=io)
        self._server = ActionServer(self, RunEpisode, topics.RUN_EPISODE, execute_callback=self._execute,
                                    goal_callback=lambda _g: GoalResponse.ACCEPT,
                                    cancel_callback=lambda _g: CancelResponse.ACCEPT,
                                    callback_group=ReentrantCallbackGroup())
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._worker_loop, name="model_worker", daemon=True)
        self._worker.start()
        # The heartbeat has its own thread, not an executor timer: a timer waits behind the executor's other
        # callbacks (368 KB observations) and lapsed past the executor's watchdog on a loaded host while the node
        # was healthy. A short GIL switch interval lets it in while the model thread runs Python code.
        sys.setswitchinterval(0.001)
        self._beat = threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True)
        self._beat.start()

    # -- inputs (never block on the model) ---------------------------------------------------------------
    def _reject(self, counter: str, reason: str) -> None:
        self._counters[counter] += 1
        self._last_reject = reason
        self.get_logger().warning(f"rejected input: {reason}", throttle_duration_sec=1.0)

    def _on_observation(self, msg: Observation) -> None:
        try:
            if len(msg.images) != len(msg.camera_names):
                raise InputError(f"{len(msg.images)} images for {len(msg.camera_names)} camera names")
            images = []
            for name, img in zip(msg.camera_names, msg.images):
                if img.encoding != "rgb8":
                    raise InputError(f"camera {name}: encoding '{img.encoding}', observations must be rgb8")
                images.append(image_msg_to_rgb(img))
            frame = validate_keyframe(self.spec, list(msg.camera_names), images)
            stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            self.inputs.add_keyframe(msg.episode_id, int(msg.action_index), stamp, frame)
            self._counters["observations"] += 1
        except StaleInput:
            self._counters["late_inputs_ignored"] += 1   # the tail of an ended episode: expected, not bad input
        except (InputError, MessageError) as exc:
            self._reject("observations_rejected", f"observation {msg.episode_id}#{msg.action_index}: {exc}")

    def _on_executed(self, msg: ExecutedActions) -> None:
        try:
            if list(msg.channel_names) and list(msg.channel_names) != list(self.spec.channel_names):
                raise InputError(f"channels {list(msg.channel_names)} do not match the model's")
            if msg.action_space and msg.action_space != self.spec.action_space:
                raise InputError(f"action space '{msg.action_space}', the model uses '{self.spec.action_space}'")
            rows = unpack_matrix(msg.shape, msg.actions, what="executed actions")
            self.inputs.add_executed(msg.episode_id, int(msg.start_index), rows)
        except StaleInput:
            self._counters["late_inputs_ignored"] += 1
        except (InputError, MessageError) as exc:
            self._reject("executed_rejected", f"executed actions {msg.episode_id}@{msg.start_index}: {exc}")

    # -- RunEpisode ----------------------------------------------------------------------------------------
    def _execute(self, handle) -> RunEpisode.Result:
        goal: RunEpisode.Goal = handle.request
        result = RunEpisode.Result(recording_path=self.params.recording_dir)
        if not goal.prompt.strip():
            handle.abort()
            result.outcome, result.reason = "rejected", "empty prompt"
            return result
        if math.isnan(goal.max_duration_s) or goal.max_duration_s < 0:
            # NaN would silently mean "no limit" and a negative value "already reached" (inf is a valid no-limit)
            handle.abort()
            result.outcome = "rejected"
            result.reason = f"max_duration_s must be >= 0 (0 = no limit), got {goal.max_duration_s}"
            return result
        if not self._busy.acquire(blocking=False):
            handle.abort()
            result.outcome, result.reason = "rejected", f"episode '{self._episode_id}' is running; one at a time"
            return result
        try:
            episode_id = goal.episode_id or f"ep-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
            self._episode_id = episode_id
            self._latent_mse = []
            result.episode_id = episode_id
            runner = EpisodeRunner(
                self.backend, self.inputs, self.params.mode, self._publish_chunk,
                on_feedback=lambda stats, pub, state: handle.publish_feedback(RunEpisode.Feedback(
                    chunk_index=pub.prediction.chunk_index, latency_s=float(pub.latency_s), state=state,
                    cache_fill=float(self.backend.cache_fill()),
                    mode="sync" if stats.fell_back_to_sync else stats.mode,
                    deadline_misses=stats.deadline_misses)),
                limits=EpisodeLimits(goal.max_chunks, goal.max_duration_s),
                deadline=DeadlinePolicy(self.params.fallback_to_sync_after),
                initial_timeout=self.params.initial_observation_timeout_s,
                feedback_timeout=self.params.feedback_timeout_s)
            self.inputs.start(episode_id)
            self._runner = runner
            missing = self._wait_for_executor(handle)
            if handle.is_cancel_requested:
                handle.canceled()
                result.outcome, result.reason = "cancelled", "cancel requested"
                return result
            if missing:
                handle.abort()
                result.outcome, result.reason = "aborted", missing
                return result
            self._beat_episode = episode_id
            done = threading.Event()
            outcome: list[tuple[str, str]] = []
            self._jobs.put((runner, goal.prompt, outcome, done))
            t0 = time.monotonic()
            next_tick = 0.0
            while not done.wait(0.05):
                if handle.is_cancel_requested:
                    runner.cancel_event.set()
                    self._beat_episode = ""   # the arm stops now, not after the model call in flight
                # ask camera ingest for the initial key frame until it arrives (robust to discovery timing)
                if runner.stats.calls == [] and runner.state == "waiting_observation" and time.monotonic() >= next_tick:
                    self._publish_initial_tick(episode_id)
                    next_tick = time.monotonic() + 0.5
            result.outcome, result.reason = outcome[0]
            result.chunks = runner.stats.chunks
            result.duration_s = float(time.monotonic() - t0)
            self.get_logger().info(f"episode {episode_id}: {result.outcome} ({result.reason}); {result.chunks} chunks, "
                                   f"{runner.stats.deadline_misses} deadline misses, calls {runner.stats.calls[:12]}")
            if result.outcome == "cancelled":
                handle.canceled()
            elif result.outcome == "completed":
                handle.succeed()
            else:
                handle.abort()
            return result
        finally:
            self._beat_episode = ""    # the executor reads the idle beat as this episode's end: it stops at once
            self.inputs.stop()
            self._busy.release()

    def _wait_for_executor(self, handle) -> str:
        """Chunks are volatile: one published before an executor subscribes is lost (a just-restarted executor
        is still being discovered). Wait for a subscriber (or a cancel), bounded by the initial-observation
        timeout; returns why not, "" otherwise."""
        deadline = time.monotonic() + self.params.initial_observation_timeout_s
        while self.chunk_pub.get_subscription_count() == 0 and not handle.is_cancel_requested:
            if time.monotonic() > deadline:
                return (f"no executor subscribed to {self.chunk_pub.topic_name} within "
                        f"{self.params.initial_observation_timeout_s:.1f}s (is the executor running?)")
            time.sleep(0.05)
        return ""

    def _worker_loop(self) -> None:
        while not self._stop.is_set():
            try:
                runner, prompt, outcome, done = self._jobs.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                outcome.append(runner.run(prompt))  # every episode model call runs on this thread
            finally:
                done.set()

    def _publish_initial_tick(self, episode_id: str) -> None:
        msg = ActionTick(episode_id=episode_id, action_index=-1, key_frame_index=0)
        msg.header.stamp = self.get_clock().now().to_msg()
        self.tick_pub.publish(msg)

    def _publish_chunk(self, pub: PublishedChunk) -> None:
        pred = pub.prediction
        msg = ActionChunk(episode_id=self._episode_id, chunk_index=pred.chunk_index, start_index=pred.start_index,
                          action_space=self.spec.action_space, channel_names=list(self.spec.channel_names),
                          observation_action_index=pub.observation_action_index,
                          inference_latency=float(pub.latency_s),
                          mode="sync" if self._runner and self._runner.stats.fell_back_to_sync else self.params.mode)
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.control_period = seconds_to_duration(1.0 / self.spec.control_hz)
        msg.observation_stamp = ns_to_stamp(pub.observation_stamp_ns)
        msg.shape, msg.actions = pack_matrix(pred.actions)
        self.chunk_pub.publish(msg)
        if self.latents_pub is not None:
            self._publish_latents(pred, msg.header)
        self._publish_prediction_errors()
        if self.params.display.publish_trajectory:
            traj = JointTrajectory(joint_names=list(self.spec.channel_names))
            traj.header.stamp = msg.header.stamp
            period = 1.0 / self.spec.control_hz
            traj.points = [JointTrajectoryPoint(positions=row.astype(float).tolist(),
                                                time_from_start=seconds_to_duration((k + 1) * period))
                           for k, row in enumerate(pred.actions)]
            self.traj_pub.publish(traj)

    # -- live view: copies only (the live-view node decodes) -------------------------------------------------
    def _publish_latents(self, pred, header) -> None:
        display = self.backend.display_latents(pred)
        if display is None:
            return
        msg = PredictedLatents(header=header, episode_id=self._episode_id, chunk_index=pred.chunk_index,
                               start_index=pred.start_index, camera_names=list(self.spec.camera_names),
                               frame_action_indices=[int(k) for k in display.frame_action_indices])
        msg.shape, msg.dtype, msg.data = pack_latents(display.latents)
        self.latents_pub.publish(msg)

    def _publish_prediction_errors(self) -> None:
        """Chunks grounded since the last chunk: how far their predicted video was from the real key frames."""
        for err in self.backend.pop_prediction_errors():
            msg = PredictionError(episode_id=self._episode_id, chunk_index=err.chunk_index,
                                  start_index=err.start_index, num_frames=err.num_frames,
                                  latent_mse=float(err.latent_mse), camera_names=list(err.camera_mse),
                                  camera_latent_mse=[float(v) for v in err.camera_mse.values()])
            msg.header.stamp = self.get_clock().now().to_msg()
            self.error_pub.publish(msg)
            self._latent_mse = self._latent_mse + [(err.chunk_index, float(err.latent_mse))]

    # -- liveliness and diagnostics ------------------------------------------------------------------------
    def _heartbeat_loop(self) -> None:
        period = 1.0 / self.params.heartbeat_hz
        due = time.monotonic()
        while not self._stop.is_set():
            try:
                self._heartbeat()
            except Exception:  # noqa: BLE001 - shutting down: the publisher may already be destroyed
                if self._stop.is_set():
                    break
                raise
            due = max(due + period, time.monotonic())
            self._stop.wait(due - time.monotonic())

    def _heartbeat(self) -> None:
        msg = Header(frame_id=self._beat_episode)
        msg.stamp = self.get_clock().now().to_msg()
        self.heartbeat_pub.publish(msg)

    def _diagnostics(self) -> None:
        runner = self._runner
        values = {"backend": self.params.backend, "mode": self.params.mode,
                  "episode": self._episode_id if self._busy.locked() else "", **{k: str(v) for k, v in self._counters.items()},
                  "last_rejected_input": self._last_reject}
        level = DiagnosticStatus.OK
        if runner is not None:
            s = runner.stats
            values.update({"state": runner.state, "chunks": str(s.chunks), "deadline_misses": str(s.deadline_misses),
                           "fell_back_to_sync": str(s.fell_back_to_sync), "cache_fill": f"{self.backend.cache_fill():.3f}"})
            # snapshot: the worker and live-view threads add stages meanwhile (iterating the live dict raised
            # "dictionary changed size during iteration" in this timer, which took the whole node down)
            for stage, secs in list(s.stage_seconds.items()):
                values[f"latency_{stage}_median_ms"] = f"{1e3 * float(np.median(secs[-20:])):.1f}"
            if s.deadline_misses:
                level = DiagnosticStatus.WARN
        errors = self._latent_mse
        if errors:
            values.update({"prediction_latent_mse_last": f"{errors[-1][1]:.4f}",
                           "prediction_latent_mse_chunk": str(errors[-1][0]),
                           "prediction_latent_mse_median": f"{float(np.median([e for _, e in errors])):.4f}"})
        try:
            import torch

            if torch.cuda.is_available():
                values["gpu_memory_allocated_mb"] = f"{torch.cuda.memory_allocated() / 2**20:.0f}"
                values["gpu_memory_peak_mb"] = f"{torch.cuda.max_memory_allocated() / 2**20:.0f}"
        except ImportError:
            pass
        status = DiagnosticStatus(level=level, name="lingbot_va/inference", hardware_id="model",
                                  message=json.dumps({"state": values.get("state", "idle")}),
                                  values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
        arr = DiagnosticArray(status=[status])
        arr.header.stamp = self.get_clock().now().to_msg()
        self.diag_pub.publish(arr)

    def close(self) -> None:
        self._stop.set()
        if self._runner is not None:
            self._runner.cancel_event.set()
        self.backend.close()


def main(argv: list[str] | None = None) -> None:
    # multi-threaded: the RunEpisode execute callback blocks for the whole episode while observations, executed
    # actions and cancels keep arriving
    raise SystemExit(run_node(InferenceNode, num_threads=6, argv=argv))


if __name__ == "__main__":
    main()
