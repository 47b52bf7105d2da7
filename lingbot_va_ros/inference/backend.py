"""The narrow policy-backend interface the inference node drives (no rclpy here).

A backend owns a world-action model and its episode state (for LingBot-VA: the KV cache, the streaming
VAE caches, the prompt embeddings). The inference node only ever calls these methods, from one worker
thread, so another world-action model plugs in by implementing this class and naming it in YAML
(``backend: my_pkg.module:MyBackend`` or an entry point in group ``lingbot_va_ros.policy_backends``).

Timeline conventions (shared with the executor and camera ingest):
- Global action index i counts executable actions from 0 within an episode.
- A key frame is captured after every ``spec.actions_per_keyframe`` executed actions; the key frame that
  follows action i has ``action_index = i``; the initial observation has ``action_index = -1``.
- Chunk n covers actions [start_index, start_index + num_actions). Chunks tile the timeline without gaps.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

# One key frame: camera name -> HxWx3 uint8 RGB image at the backend's expected size for that camera.
KeyFrame = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class BackendSpec:
    """What the ROS side needs to know to feed and interpret a backend."""

    camera_names: tuple[str, ...]                 # model camera order
    image_sizes: Mapping[str, tuple[int, int]]    # camera -> (height, width) the backend expects
    action_space: str                             # "joint" | "ee_relative"
    channel_names: tuple[str, ...]                # one per action column
    actions_per_chunk: int                        # executable actions in a regular (non-first) chunk
    actions_per_keyframe: int                     # executed actions between two key frames
    keyframes_per_chunk: int                      # key frames a regular chunk produces
    control_hz: float                             # rate the actions are meant to be executed at
    has_video: bool = True                        # False: the backend predicts no frames to display


@dataclass
class ChunkPrediction:
    """One predicted chunk: only executable rows (the first chunk's conditioning frame is already dropped)."""

    chunk_index: int
    start_index: int                              # global index of actions[0]
    actions: np.ndarray                           # float32 [num_actions, num_channels], finite
    timings: dict[str, float] = field(default_factory=dict)   # stage -> seconds (video, action, ...)
    display_handle: object | None = None          # backend-private data for display_latents


@dataclass(frozen=True)
class DisplayLatents:
    """A chunk's predicted video as the model holds it, for a live view to decode elsewhere."""

    latents: np.ndarray                           # float16 [z, frames, H, W] normalised latents on the camera canvas
    frame_action_indices: tuple[int, ...]         # per frame: action index of the last key frame it predicts
                                                  # (-1: a conditioning frame, not a prediction)


@dataclass(frozen=True)
class PredictionError:
    """How far one grounded chunk's predicted video was from the real key frames (normalised latent space)."""

    chunk_index: int
    start_index: int
    num_frames: int                               # latent frames compared
    latent_mse: float                             # over every camera and frame
    camera_mse: Mapping[str, float]               # per camera


class PolicyBackend(abc.ABC):
    """Interface of a chunked world-action policy. Implementations must be usable from one thread."""

    @property
    @abc.abstractmethod
    def spec(self) -> BackendSpec: ...

    @abc.abstractmethod
    def reset(self, prompt: str, initial_observation: KeyFrame) -> None:
        """Start an episode: encode the prompt once, clear every cache, take the initial key frame."""

    @abc.abstractmethod
    def predict_chunk(self) -> ChunkPrediction:
        """Predict the next chunk (video first, then actions) after everything the cache holds."""

    @abc.abstractmethod
    def ground(self, keyframes: Sequence[KeyFrame], executed_actions: np.ndarray, start_index: int) -> None:
        """Commit the real key frames and the actions really executed for one whole chunk.

        Replaces every predicted/imagined cache entry with ground truth (clear, then commit at the same
        positions). ``executed_actions`` is [num_actions, num_channels] for the chunk starting at
        ``start_index``; ``keyframes`` are the ``keyframes_per_chunk`` key frames captured while it ran.
        """

    def imagine(self, executing: ChunkPrediction) -> None:
        """FDM step of the asynchronous pipeline: put the executing chunk's actions in the cache as known
        tokens and imagine the frames they will produce, so the next prediction is grounded on them.
        Entries written here are discarded by the next ``ground``."""
        raise NotImplementedError(f"{type(self).__name__} has no forward-dynamics (FDM) step")

    def keep_prediction(self, executing: ChunkPrediction) -> None:
        """Naive-async step: keep the executing chunk's own predicted video/actions in the cache so the next
        prediction continues from them (the paper's ablation). Discarded by the next ``ground``."""
        raise NotImplementedError(f"{type(self).__name__} does not support naive async")

    def display_latents(self, prediction: ChunkPrediction) -> DisplayLatents | None:
        """The chunk's predicted video latents for the live view (None: the backend predicts no video).

        Called on the worker thread right after ``predict_chunk``: it must only copy (no decoding), so the live
        view costs the control path nothing; decoding happens in the live-view process."""
        return None

    def pop_prediction_errors(self) -> list[PredictionError]:
        """Prediction errors of the chunks grounded since the last call (oldest first); [] when not measured."""
        return []

    def cache_fill(self) -> float:
        """Fraction of the model's context/cache in use (0 when the backend has none)."""
        return 0.0

    def close(self) -> None:
        """Release devices and memory."""
