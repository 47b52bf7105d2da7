"""Write a synthetic but protocol-exact episode bag, as the recorder would have recorded it (tests, docs demos).

A backend is driven by the live :class:`EpisodeRunner`; an instant "arm" answers every published chunk with
its key frames (seeded noise images) and executed rows (the chunk plus a small offset, so grounding really
uses the executed values), and a simulated clock stamps everything: each chunk takes ``latencies[n]`` to
infer, its actions take ``rows x period`` to execute, and in sync mode the arm idles during inference. The
messages are serialized by rclpy and written through the recorder's own bag writer.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from lingbot_va_ros.common import topics
from lingbot_va_ros.inference.backend import PolicyBackend
from lingbot_va_ros.inference.inputs import EpisodeInputs
from lingbot_va_ros.inference.pipeline import DeadlinePolicy, EpisodeLimits, EpisodeRunner, PublishedChunk
from lingbot_va_ros.recording.bag_writer import CrashSafeBagWriter
from lingbot_va_ros.recording.custom_data import encode_custom_data
from lingbot_va_ros.recording.types import TypeCatalog, trim_cdr

EXECUTED_OFFSET = 0.01
T0_NS = 1_700_000_000_000_000_000


@dataclass
class SyntheticEpisode:
    bag: Path
    episode_id: str
    chunks: list[np.ndarray]
    idle_s: float                 # total arm idle the simulated clock produced


def _images(spec, rng) -> dict[str, np.ndarray]:
    return {n: rng.integers(0, 256, (*spec.image_sizes[n], 3), dtype=np.uint8) for n in spec.camera_names}


def write_synthetic_episode(bag: str | Path, backend: PolicyBackend, *, prompt: str = "stack the blocks",
                            episode_id: str = "ep-synthetic", n_chunks: int = 4, mode: str = "sync",
                            latencies_s: Sequence[float] = (0.3,), image_seed: int = 0,
                            with_live_view: bool = True, metadata: dict | None = None,
                            catalog: TypeCatalog | None = None) -> SyntheticEpisode:
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import Image, JointState

    from lingbot_va_ros.common.conversions import ns_to_stamp, pack_matrix, rgb_to_image_msg, seconds_to_duration
    from lingbot_va_ros.live_view.compose import compose_side_by_side, pixel_mse
    from lingbot_va_ros.msg import (ActionChunk, ActionTick, ExecutedActions, Observation, PredictedFrameInfo,
                                    PredictionError)

    spec = backend.spec
    period_ns = int(round(1e9 / spec.control_hz))
    rng = np.random.default_rng(image_seed)
    live_rng = np.random.default_rng(image_seed + 1)
    latency = itertools.cycle(latencies_s)
    events: list[tuple[int, str, object]] = []
    state = {"arm_free_ns": T0_NS, "clock_ns": T0_NS, "idle_ns": 0, "kf": 0, "last_start": 0}
    inputs = EpisodeInputs(spec)
    inputs.start(episode_id)
    chunks: list[np.ndarray] = []

    def observation(index: int, stamp_ns: int, images: dict[str, np.ndarray]) -> Observation:
        msg = Observation(episode_id=episode_id, action_index=index, key_frame_index=state["kf"],
                          camera_names=list(images))
        msg.header.stamp = ns_to_stamp(stamp_ns)
        msg.images = [rgb_to_image_msg(img, stamp_ns, name) for name, img in images.items()]
        msg.capture_stamps = [ns_to_stamp(stamp_ns)] * len(images)
        state["kf"] += 1
        return msg

    initial = _images(spec, rng)
    tick = ActionTick(episode_id=episode_id, action_index=-1, key_frame_index=0)
    tick.header.stamp = ns_to_stamp(T0_NS)
    events += [(T0_NS, topics.ACTION_TICK, tick),
               (T0_NS + 1_000_000, topics.OBSERVATION, observation(-1, T0_NS, initial))]
    inputs.add_keyframe(episode_id, -1, T0_NS, initial)

    def execute(pub: PublishedChunk) -> None:
        pred = pub.prediction
        publish_ns = state["clock_ns"] + int(next(latency) * 1e9)
        chunk = ActionChunk(episode_id=episode_id, chunk_index=pred.chunk_index, start_index=pred.start_index,
                            action_space=spec.action_space, channel_names=list(spec.channel_names),
                            observation_action_index=pub.observation_action_index,
                            inference_latency=(publish_ns - state["clock_ns"]) / 1e9, mode=mode)
        chunk.header.stamp = ns_to_stamp(publish_ns)
        chunk.control_period = seconds_to_duration(period_ns / 1e9)
        chunk.observation_stamp = ns_to_stamp(pub.observation_stamp_ns)
        chunk.shape, chunk.actions = pack_matrix(pred.actions)
        events.append((publish_ns, topics.ACTION_CHUNK, chunk))
        chunks.append(pred.actions.copy())
        end_index = pred.start_index + pred.actions.shape[0] - 1
        # the live view's "prediction" of the chunk's last key frame (own generator: the episode's images unchanged)
        predicted = _images(spec, live_rng)
        if with_live_view:
            view = rng.integers(0, 256, (48, 128, 3), dtype=np.uint8)
            image = rgb_to_image_msg(view, publish_ns, "live")
            events.append((publish_ns + 2_000_000, topics.PREDICTED_FRAMES, image))
            events.append((publish_ns + 2_000_000, topics.PREDICTED_FRAMES_INFO, PredictedFrameInfo(
                header=image.header, episode_id=episode_id, chunk_index=pred.chunk_index, action_index=end_index,
                real_action_index=pub.observation_action_index, chunk_stamp=chunk.header.stamp, decode_latency=0.001,
                publish_delay=0.002, decoder="synthetic", pixel_mse=-1.0)))
            if pred.chunk_index > 0:           # the previous chunk was grounded before this one was predicted
                error = PredictionError(episode_id=episode_id, chunk_index=pred.chunk_index - 1,
                                        start_index=state["last_start"], num_frames=1,
                                        latent_mse=1.0 + 0.25 * pred.chunk_index,
                                        camera_names=list(spec.camera_names),
                                        camera_latent_mse=[1.0 + 0.25 * pred.chunk_index] * len(spec.camera_names))
                error.header.stamp = chunk.header.stamp
                events.append((publish_ns + 1_000_000, topics.PREDICTION_ERROR, error))
        state["last_start"] = pred.start_index
        # the arm starts the chunk when it has it and has finished the previous one
        start_ns = max(publish_ns, state["arm_free_ns"])
        if pred.chunk_index > 0:
            state["idle_ns"] += start_ns - state["arm_free_ns"]
        executed = pred.actions + np.float32(EXECUTED_OFFSET)
        for k in range(pred.actions.shape[0]):
            index = pred.start_index + k
            t = start_ns + (k + 1) * period_ns
            cmd = JointState(name=list(spec.channel_names), position=executed[k].astype(float).tolist())
            cmd.header.stamp = ns_to_stamp(t)
            events.append((t, topics.COMMAND, cmd))
            if (k + 1) % spec.actions_per_keyframe == 0:
                tick = ActionTick(episode_id=episode_id, action_index=index, key_frame_index=state["kf"])
                tick.header.stamp = ns_to_stamp(t)
                images = _images(spec, rng)
                events.extend([(t, topics.ACTION_TICK, tick),
                               (t + 1_000_000, topics.OBSERVATION, observation(index, t, images))])
                inputs.add_keyframe(episode_id, index, t, images)
                if with_live_view and index == end_index:      # the chunk's prediction meets what happened
                    cams = list(spec.camera_names)
                    mse = pixel_mse(predicted, images, cams)
                    pair = rgb_to_image_msg(compose_side_by_side(images, predicted, cams, f"real @{index}",
                                                                 f"predicted by chunk {pred.chunk_index}"),
                                            t + 3_000_000, "live")
                    events.extend([(t + 3_000_000, topics.PREDICTION_VS_REAL, pair),
                               (t + 3_000_000, topics.PREDICTION_VS_REAL_INFO, PredictedFrameInfo(
                                   header=pair.header, episode_id=episode_id, chunk_index=pred.chunk_index,
                                   action_index=index, real_action_index=index, chunk_stamp=chunk.header.stamp,
                                   decode_latency=0.001, publish_delay=(t + 3_000_000 - publish_ns) / 1e9,
                                   decoder="synthetic", pixel_mse=mse))])
        end_ns = start_ns + pred.actions.shape[0] * period_ns
        done = ExecutedActions(episode_id=episode_id, start_index=pred.start_index, action_space=spec.action_space,
                               channel_names=list(spec.channel_names), modified=[False] * pred.actions.shape[0])
        done.header.stamp = ns_to_stamp(end_ns)
        done.shape, done.actions = pack_matrix(executed)
        events.append((end_ns + 500_000, topics.EXECUTED_ACTIONS, done))
        inputs.add_executed(episode_id, pred.start_index, executed)
        state["arm_free_ns"] = end_ns
        # sync: the next inference starts after this chunk is executed and grounded; async: right away
        state["clock_ns"] = end_ns if mode == "sync" else publish_ns

    runner = EpisodeRunner(backend, inputs, mode, execute, limits=EpisodeLimits(max_chunks=n_chunks),
                           deadline=DeadlinePolicy(0), initial_timeout=1.0, feedback_timeout=1.0)
    outcome, reason = runner.run(prompt)
    if outcome != "completed":
        raise RuntimeError(f"synthetic episode failed: {outcome} ({reason})")
    diag = DiagnosticArray()
    diag.header.stamp = ns_to_stamp(T0_NS)
    events.append((T0_NS, topics.DIAGNOSTICS, diag))

    catalog = catalog or TypeCatalog()
    types = {topics.OBSERVATION: Observation, topics.ACTION_CHUNK: ActionChunk, topics.ACTION_TICK: ActionTick,
             topics.EXECUTED_ACTIONS: ExecutedActions, topics.COMMAND: JointState, topics.PREDICTED_FRAMES: Image,
             topics.DIAGNOSTICS: DiagnosticArray}
    if with_live_view:
        types.update({topics.PREDICTED_FRAMES_INFO: PredictedFrameInfo, topics.PREDICTION_VS_REAL: Image,
                      topics.PREDICTION_VS_REAL_INFO: PredictedFrameInfo, topics.PREDICTION_ERROR: PredictionError})
    custom = {"episode_id": episode_id, "prompt": prompt, "pipeline_mode": mode, "recording_mode": "episodes",
              "outcome": "completed", **(metadata or {})}
    writer = CrashSafeBagWriter(bag, encode_custom_data(custom)).open()
    for topic, cls in types.items():
        writer.add_topic(topic, catalog.definition(_type_name(cls)))
    names = {topic: _type_name(cls) for topic, cls in types.items()}
    for t, topic, msg in sorted(events, key=lambda e: e[0]):
        writer.write(topic, t, trim_cdr(catalog.typestore, names[topic], serialize_message(msg)))
    writer.close()
    return SyntheticEpisode(Path(bag), episode_id, chunks, state["idle_ns"] / 1e9)


def _type_name(cls) -> str:
    module = cls.__module__.split(".")
    return f"{module[0]}/{module[1]}/{cls.__name__}"
