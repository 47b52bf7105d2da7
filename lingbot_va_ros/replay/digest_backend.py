"""A deterministic stand-in policy backend for replay dry runs and tests (no model, no GPU).

Each chunk is pseudo-random noise seeded by a digest of everything the backend was given: the seed, the
prompt, the initial observation, every grounded key frame and executed action, and the chunks held in the
cache by ``imagine``/``keep_prediction``. So it behaves like a seeded world model where it matters for
replay: identical inputs in the identical call order give bit-identical chunks, and any changed input, seed
or call order gives different ones. Its actions mean nothing.

    lingbot-va-replay BAG --backend lingbot_va_ros.replay.digest_backend:DigestBackend --embodiment demo_sim
"""
from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np

from lingbot_va_ros.inference.backend import BackendSpec, ChunkPrediction, KeyFrame, PolicyBackend


class DigestBackend(PolicyBackend):
    def __init__(self, embodiment: str = "demo_sim", seed: int = 0, spec: BackendSpec | None = None,
                 first_chunk_actions: int | None = None):
        if spec is None:
            from lingbot_va_ros.model.embodiment import load_embodiment

            emb = load_embodiment(embodiment)
            spec = BackendSpec(camera_names=emb.camera_names, image_sizes=emb.image_sizes,
                               action_space=emb.action_space, channel_names=tuple(emb.channel_names),
                               actions_per_chunk=emb.actions_per_chunk, actions_per_keyframe=emb.actions_per_keyframe,
                               keyframes_per_chunk=emb.keyframes_per_chunk, control_hz=emb.control_hz)
            first_chunk_actions = first_chunk_actions or emb.first_chunk_actions
        self._spec = spec
        self._first = first_chunk_actions or spec.actions_per_chunk
        self.seed = int(seed)
        self.calls: list[str] = []
        self._digest = b""
        self._pending = b""           # imagined / kept entries: used by the next prediction, dropped by ground
        self._next_chunk = 0
        self._next_start = 0

    @property
    def spec(self) -> BackendSpec:
        return self._spec

    def _mix(self, base: bytes, *parts: bytes) -> bytes:
        h = hashlib.sha256(base)
        for p in parts:
            h.update(len(p).to_bytes(8, "little"))
            h.update(p)
        return h.digest()

    def _frame_bytes(self, frame: KeyFrame) -> bytes:
        return b"".join(name.encode() + np.ascontiguousarray(frame[name]).tobytes() for name in self._spec.camera_names)

    def reset(self, prompt: str, initial_observation: KeyFrame) -> None:
        self.calls.append("reset")
        self._digest = self._mix(b"", str(self.seed).encode(), prompt.encode(), self._frame_bytes(initial_observation))
        self._pending = b""
        self._next_chunk = 0
        self._next_start = 0

    def predict_chunk(self) -> ChunkPrediction:
        rows = self._first if self._next_chunk == 0 else self._spec.actions_per_chunk
        key = self._mix(self._digest, self._pending, self._next_chunk.to_bytes(8, "little"))
        rng = np.random.default_rng(int.from_bytes(key[:8], "little"))
        actions = rng.uniform(-1.0, 1.0, (rows, len(self._spec.channel_names))).astype(np.float32)
        pred = ChunkPrediction(self._next_chunk, self._next_start, actions, timings={"digest": 0.0})
        self.calls.append(f"predict:{self._next_chunk}")
        self._next_chunk += 1
        self._next_start += rows
        return pred

    def ground(self, keyframes: Sequence[KeyFrame], executed_actions: np.ndarray, start_index: int) -> None:
        self.calls.append(f"ground@{start_index}")
        self._digest = self._mix(self._digest, start_index.to_bytes(8, "little", signed=True),
                                 np.ascontiguousarray(executed_actions, dtype=np.float32).tobytes(),
                                 *[self._frame_bytes(k) for k in keyframes])
        self._pending = b""

    def imagine(self, executing: ChunkPrediction) -> None:
        self.calls.append(f"imagine:{executing.chunk_index}")
        self._pending = self._mix(self._pending, b"imagine", executing.actions.tobytes())

    def keep_prediction(self, executing: ChunkPrediction) -> None:
        self.calls.append(f"keep:{executing.chunk_index}")
        self._pending = self._mix(self._pending, b"keep", executing.actions.tobytes())
