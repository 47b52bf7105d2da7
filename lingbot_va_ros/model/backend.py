"""LingBot-VA as a :class:`PolicyBackend`: prompt encoder + streaming VAE + world model, in pure PyTorch.

Timeline (shared with the executor): chunk 0 executes latent frames 1..F-1 ((F-1)*A actions, (F-1)*4 key
frames); every later chunk executes all F frames (F*A actions, F*4 key frames). Chunks are grounded in the
order they were predicted; in the asynchronous modes the next chunk is predicted before the previous one is
grounded, so the backend keeps the predicted-but-not-grounded chunks and checks every call against them.

Action rows are in the embodiment's action space as the model emits it: for ``ee_relative`` that is the
RoboTwin 16-d pose relative to the episode's initial EEF pose (convert with
``lingbot_va_ros.model.actions.relative_to_absolute_eef`` where the robot is commanded) and ``ground``
expects the executed rows back in the same space.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from lingbot_va_ros.inference.backend import (BackendSpec, ChunkPrediction, DisplayLatents, KeyFrame, PolicyBackend,
                                              PredictionError)
from lingbot_va_ros.model.actions import chunk_to_rows, placeholder_action, rows_to_chunk
from lingbot_va_ros.model.embodiment import EmbodimentConfig, load_embodiment
from lingbot_va_ros.model.loading import LingBotVAComponents, load_lingbot_va
from lingbot_va_ros.model.prediction_error import frame_action_indices, latent_mse
from lingbot_va_ros.model.vae import ObservationEncoder

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
           "float16": torch.float16, "fp16": torch.float16}


class NonFiniteActionsError(RuntimeError):
    """The model produced NaN/Inf actions; nothing from this chunk may be executed."""


def resolve_device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    return dev


def resolve_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be 'auto' or one of {sorted(_DTYPES)}, got {dtype!r}")
    return _DTYPES[dtype]


def resolve_offload(offload: bool | str, device: torch.device) -> str:
    """The node's boolean maps to "move" (text encoder on the GPU only while encoding) or "none"."""
    if isinstance(offload, bool):
        return "move" if offload and device.type != "cpu" else "none"
    return offload


@dataclass
class _Handle:
    """Backend-private part of a ChunkPrediction (for display and naive async)."""

    chunk_index: int
    latents: torch.Tensor            # [z, F, H, W] predicted video latents (normalised)


class LingBotVABackend(PolicyBackend):
    """Chunked closed-loop LingBot-VA policy; all calls from one thread."""

    def __init__(self, checkpoint_dir: str | Path | None = None, embodiment: str | Path | EmbodimentConfig = "demo_sim",
                 device: str | torch.device = "auto", dtype: str | torch.dtype = "auto",
                 text_encoder_offload: bool | str = False, seed: int = 0, *,
                 base_checkpoint_dir: str | Path | None = None, attention_backend: str = "auto",
                 embodiment_overrides: Mapping | None = None, components: LingBotVAComponents | None = None,
                 skip_action_commit: bool = True, skip_unused_uncond_steps: bool = True,
                 negative_prompt: str = ""):
        from lingbot_va_ros.model.world_model import LingBotVAWorldModel, WorldModelConfig

        self.embodiment = load_embodiment(embodiment, **dict(embodiment_overrides or {}))
        _set_attention_backend(attention_backend)
        self._owns_components = components is None        # close() releases only what this backend loaded
        if components is None:
            if checkpoint_dir is None or str(checkpoint_dir) == "":
                raise ValueError("checkpoint_dir is required (an official LingBot-VA folder, or a tiny one made with "
                                 "lingbot-va-make-tiny-checkpoint)")
            device_ = resolve_device(device)
            components = load_lingbot_va(checkpoint_dir, device_, resolve_dtype(dtype, device_),
                                         base_dir=base_checkpoint_dir or None,
                                         text_encoder_offload=resolve_offload(text_encoder_offload, device_))
        self.components = components
        self.device, self.dtype = components.device, components.dtype
        self.seed = int(seed)
        self.negative_prompt = negative_prompt
        emb = self.embodiment
        z_dim = int(components.vae.config.z_dim)
        wm_config = WorldModelConfig(**emb.world_model_kwargs(), latent_channels=z_dim)
        self.world_model = LingBotVAWorldModel(components.transformer, wm_config, self.device, self.dtype,
                                               skip_action_commit=skip_action_commit,
                                               skip_unused_uncond_steps=skip_unused_uncond_steps)
        self.observations = ObservationEncoder(components.vae, emb.camera_layout)
        self._placeholder = placeholder_action(emb.used_action_channel_ids, emb.q01, emb.q99)
        self._spec = BackendSpec(
            camera_names=emb.camera_names, image_sizes=emb.image_sizes, action_space=emb.action_space,
            channel_names=tuple(emb.channel_names), actions_per_chunk=emb.actions_per_chunk,
            actions_per_keyframe=emb.actions_per_keyframe, keyframes_per_chunk=emb.keyframes_per_chunk,
            control_hz=emb.control_hz, has_video=True)
        self._generator = torch.Generator(device="cpu")
        self._episode_active = False
        self._init_latent: torch.Tensor | None = None
        self._predicted: dict[int, ChunkPrediction] = {}     # predicted, not yet grounded
        self._results: dict[int, object] = {}                 # chunk index -> world_model.InferResult
        self._next_chunk = 0
        self._grounded_chunks = 0
        self._errors: deque[PredictionError] = deque(maxlen=64)   # drained by the node after each chunk
        self.last_timings: dict[str, float] = {}

    # ---- PolicyBackend ----------------------------------------------------------------------------
    @property
    def spec(self) -> BackendSpec:
        return self._spec

    def reset(self, prompt: str, initial_observation: KeyFrame) -> None:
        if not isinstance(prompt, str):
            raise ValueError(f"prompt must be a string, got {type(prompt).__name__}")
        self.observations.check_keyframes([initial_observation])
        t0 = time.perf_counter()
        prompt_embeds, negative_embeds = self.components.prompt_encoder.encode_pair(prompt, self.negative_prompt)
        t1 = time.perf_counter()
        self.world_model.reset(prompt_embeds, negative_embeds)
        self.observations.reset()
        self._generator.manual_seed(self.seed)         # every episode reproducible from the seed
        self._predicted.clear()
        self._results.clear()
        self._next_chunk = 0
        self._grounded_chunks = 0
        self._errors.clear()
        self._init_latent = self.observations.encode([initial_observation])      # [z, 1, H, W]
        self._episode_active = True
        self.last_timings = {"text_encode": t1 - t0, "vae_encode": time.perf_counter() - t1}

    def predict_chunk(self) -> ChunkPrediction:
        self._require_episode()
        index = self._next_chunk
        first = index == 0
        expected_frame = index * self.embodiment.frame_chunk_size
        if self.world_model.next_frame != expected_frame:
            raise RuntimeError(f"predict_chunk: chunk {index - 1} is neither grounded nor in the cache as a "
                               f"prediction (call ground, imagine or keep_prediction for it first)")
        result = self.world_model.infer(init_latent=self._init_latent if first else None, generator=self._generator)
        chunk = result.actions.detach().cpu().numpy().astype(np.float32)             # [C_used, F, A]
        rows = chunk_to_rows(chunk, first_chunk=first)
        if not np.isfinite(rows).all():
            raise NonFiniteActionsError(f"chunk {index}: the model produced non-finite actions "
                                        f"({int((~np.isfinite(rows)).sum())} values); refusing to return them")
        prediction = ChunkPrediction(
            chunk_index=index, start_index=self._chunk_start(index), actions=rows,
            timings={k: float(v) for k, v in result.timings.items()},
            display_handle=_Handle(index, result.latents.detach().to("cpu", torch.float32)))
        self._predicted[index] = prediction
        self._results[index] = result
        self._next_chunk += 1
        return prediction

    def ground(self, keyframes: Sequence[KeyFrame], executed_actions: np.ndarray, start_index: int) -> None:
        self._require_episode()
        index = self._grounded_chunks
        if index >= self._next_chunk:
            raise ValueError(f"ground(start_index={start_index}): no predicted chunk is waiting to be grounded "
                             f"(predict_chunk first)")
        expected_start = self._chunk_start(index)
        if int(start_index) != expected_start:
            raise ValueError(f"ground: start_index {start_index} does not match the next chunk to ground "
                             f"(chunk {index} starts at action {expected_start}); chunks are grounded in order")
        first = index == 0
        emb = self.embodiment
        want_frames = emb.first_chunk_keyframes if first else emb.keyframes_per_chunk
        if isinstance(keyframes, (str, bytes, Mapping)) or not isinstance(keyframes, Sequence):
            raise ValueError(f"ground: keyframes must be a sequence of {want_frames} key frames, "
                             f"got {type(keyframes).__name__}")
        if len(keyframes) != want_frames:
            raise ValueError(f"ground: chunk {index} needs {want_frames} key frames (4 per executed latent frame), "
                             f"got {len(keyframes)}")
        executed_chunk = self._executed_to_chunk(executed_actions, first, f"ground (chunk {index})")
        self.observations.check_keyframes(keyframes)
        t0 = time.perf_counter()
        obs_latents = self.observations.encode(list(keyframes))                      # [z, n, H, W]
        t1 = time.perf_counter()
        self.world_model.ground(obs_latents, executed_chunk)
        self.last_timings = {"vae_encode": t1 - t0, "ground": time.perf_counter() - t1}
        self._record_prediction_error(index, obs_latents)
        self._predicted.pop(index, None)
        self._results.pop(index, None)
        self._grounded_chunks += 1

    def imagine(self, executing: ChunkPrediction) -> None:
        self._require_episode()
        self._check_executing(executing, "imagine")
        first = executing.chunk_index == 0
        actions = self._executed_to_chunk(executing.actions, first, f"imagine (chunk {executing.chunk_index})")
        t0 = time.perf_counter()
        self.world_model.imagine(actions, generator=self._generator)
        self.last_timings = {"imagine": time.perf_counter() - t0}

    def keep_prediction(self, executing: ChunkPrediction) -> None:
        self._require_episode()
        self._check_executing(executing, "keep_prediction")
        result = self._results.get(executing.chunk_index)
        if result is None:
            raise ValueError(f"keep_prediction: chunk {executing.chunk_index} was not predicted in this episode")
        self.world_model.keep_prediction(result)

    def display_latents(self, prediction: ChunkPrediction) -> DisplayLatents | None:
        handle = prediction.display_handle
        if not isinstance(handle, _Handle):
            return None
        latents = handle.latents.to(torch.float16).numpy()                        # a copy; [z, F, H, W]
        indices = frame_action_indices(handle.chunk_index, prediction.start_index, latents.shape[1],
                                       self.embodiment.action_per_frame)
        return DisplayLatents(latents, indices)

    def pop_prediction_errors(self) -> list[PredictionError]:
        errors = []
        while self._errors:
            errors.append(self._errors.popleft())
        return errors

    def cache_fill(self) -> float:
        return self.world_model.cache_fill()

    def close(self) -> None:
        self._episode_active = False
        self._predicted.clear()
        self._results.clear()
        if self._owns_components:
            self.components.close()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    # ---- helpers ----------------------------------------------------------------------------------
    def _record_prediction_error(self, index: int, real: torch.Tensor) -> None:
        """The grounded chunk's predicted latents against the real key frames' latents (same frames)."""
        prediction = self._predicted.get(index)
        handle = prediction.display_handle if prediction is not None else None
        if not isinstance(handle, _Handle):
            return
        first = 1 if index == 0 else 0        # chunk 0's frame 0 is the (real) conditioning frame
        predicted = handle.latents[:, first:]
        mse, per_camera = latent_mse(predicted, real, self.observations.layout)
        self._errors.append(PredictionError(index, prediction.start_index, int(predicted.shape[1]), mse, per_camera))

    def _chunk_start(self, index: int) -> int:
        emb = self.embodiment
        return 0 if index == 0 else emb.first_chunk_actions + (index - 1) * emb.actions_per_chunk

    def _require_episode(self) -> None:
        if not self._episode_active:
            raise RuntimeError("no episode: call reset(prompt, initial_observation) first")

    def _check_executing(self, executing: ChunkPrediction, what: str) -> None:
        if not isinstance(executing, ChunkPrediction):
            raise ValueError(f"{what}: expected a ChunkPrediction, got {type(executing).__name__}")
        if executing.chunk_index != self._grounded_chunks:
            raise ValueError(f"{what}: chunk {executing.chunk_index} is not the chunk right after the grounded "
                             f"history (chunk {self._grounded_chunks} is)")
        if executing.chunk_index >= self._next_chunk:
            raise ValueError(f"{what}: chunk {executing.chunk_index} has not been predicted yet")

    def _executed_to_chunk(self, rows: np.ndarray, first: bool, what: str) -> np.ndarray:
        emb = self.embodiment
        if not isinstance(rows, np.ndarray):
            raise ValueError(f"{what}: executed actions must be a numpy array, got {type(rows).__name__}")
        if rows.dtype.kind not in "fiu":
            raise ValueError(f"{what}: executed actions must be numeric, got dtype {rows.dtype}")
        want_rows = emb.first_chunk_actions if first else emb.actions_per_chunk
        if rows.shape != (want_rows, emb.num_channels):
            raise ValueError(f"{what}: executed actions must be [{want_rows}, {emb.num_channels}] "
                             f"(rows x channels {list(emb.channel_names)}), got {list(rows.shape)}")
        if not np.isfinite(rows).all():
            raise ValueError(f"{what}: executed actions contain non-finite values")
        return rows_to_chunk(rows.astype(np.float32), emb.frame_chunk_size, emb.action_per_frame, first,
                             self._placeholder)


def _set_attention_backend(name: str) -> None:
    from lingbot_va_ros.model import attention

    if name == "flash_attn":
        if not attention.flash_attn_available():
            raise ValueError("attention_backend 'flash_attn' requested but flash-attn is not installed "
                             "(use 'auto' or 'sdpa')")
        attention.set_attention_backend("auto")
    elif name in ("auto", "sdpa"):
        attention.set_attention_backend(name)
    else:
        raise ValueError(f"attention_backend must be 'auto', 'sdpa' or 'flash_attn', got {name!r}")
