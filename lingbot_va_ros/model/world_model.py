"""Latent-space episode logic of LingBot-VA: the server's ``_reset`` / ``_infer`` / ``_compute_kv_cache``
(spec §5.2-5.4) plus the paper's asynchronous steps (spec §6), on top of ``WanTransformer3DModel`` and the
slab KV cache. No VAE, no text encoder, no rclpy: inputs are latents and prompt embeddings.

Frame bookkeeping (all RoPE frame positions are absolute):
- ``frame_st_id``: latent frames grounded so far (ground truth in the cache). ``ground`` always writes at
  ``frame_st_id`` and then advances it.
- ``next_frame``: where the next ``infer`` predicts. Equal to ``frame_st_id`` in the synchronous loop;
  ``imagine`` / ``keep_prediction`` put the executing chunk in the cache as predicted entries at
  ``frame_st_id`` and move ``next_frame`` one chunk further, so async mode (ground(n-1) -> imagine(n) ->
  infer(n+1)) uses the same frame ids as sync mode. ``ground`` drops every predicted entry (clear_pred)
  and resets ``next_frame`` to the new ``frame_st_id``.

Numerics follow the reference exactly in float32. The sampling state (latents / actions) is kept in float32
on every dtype and cast to the model dtype at each forward (the reference keeps it in the model dtype).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from lingbot_va_ros.model.kv_cache import (
    UPDATE_GT,
    UPDATE_PRED,
    UPDATE_TRANSIENT,
    SlabKVCache,
    cache_capacity,
)
from lingbot_va_ros.model.scheduler import FlowMatchScheduler
from lingbot_va_ros.model.transformer import WanTransformer3DModel

__all__ = ["WorldModelConfig", "InferResult", "LingBotVAWorldModel", "NORM_EPS"]

NORM_EPS = 1e-6  # quantile (de)normalisation epsilon of the reference


def _latent_geometry(cfg: dict) -> tuple[int, int]:
    """Latent (H, W) of the tiled canvas from a server config (spec §2.2)."""
    if "latent_height" in cfg and "latent_width" in cfg:
        return int(cfg["latent_height"]), int(cfg["latent_width"])
    h, w = int(cfg["height"]), int(cfg["width"])
    if cfg.get("env_type") == "robotwin_tshape":
        return (h // 16) * 3 // 2, w // 16
    return h // 16, (w // 16) * len(cfg["obs_cam_keys"])


@dataclass
class WorldModelConfig:
    attn_window: int
    frame_chunk_size: int
    action_per_frame: int
    latent_height: int
    latent_width: int
    num_inference_steps: int
    action_num_inference_steps: int
    video_exec_step: int
    snr_shift: float
    action_snr_shift: float
    guidance_scale: float
    action_guidance_scale: float
    used_action_channel_ids: list[int]
    q01: list[float]
    q99: list[float]
    action_dim: int = 30
    latent_channels: int = 48
    patch_size: tuple[int, int, int] = (1, 2, 2)
    # None: derived from used_action_channel_ids (unused channels read the appended zero channel)
    inverse_used_action_channel_ids: list[int] | None = None

    @classmethod
    def from_server_config(cls, cfg: dict, latent_shape_per_frame=None) -> "WorldModelConfig":
        """From the official server config dict (as in a fixture's ``config`` or an embodiment YAML).
        ``latent_shape_per_frame`` = [C, H, W]; when None it is derived from height/width/cameras."""
        if latent_shape_per_frame is not None:
            c, h, w = (int(v) for v in latent_shape_per_frame)
        else:
            c = int(cfg.get("latent_channels", 48))
            h, w = _latent_geometry(cfg)
        method = cfg.get("action_norm_method", "quantiles")
        if method != "quantiles":
            raise NotImplementedError(f"action_norm_method {method!r} (only 'quantiles' exists in the reference)")
        stats = cfg.get("norm_stat", cfg)
        return cls(
            attn_window=int(cfg["attn_window"]),
            frame_chunk_size=int(cfg["frame_chunk_size"]),
            action_per_frame=int(cfg["action_per_frame"]),
            latent_height=h,
            latent_width=w,
            num_inference_steps=int(cfg["num_inference_steps"]),
            action_num_inference_steps=int(cfg["action_num_inference_steps"]),
            video_exec_step=int(cfg.get("video_exec_step", -1)),
            snr_shift=float(cfg["snr_shift"]),
            action_snr_shift=float(cfg["action_snr_shift"]),
            guidance_scale=float(cfg["guidance_scale"]),
            action_guidance_scale=float(cfg["action_guidance_scale"]),
            used_action_channel_ids=[int(i) for i in cfg["used_action_channel_ids"]],
            q01=[float(v) for v in stats["q01"]],
            q99=[float(v) for v in stats["q99"]],
            action_dim=int(cfg.get("action_dim", 30)),
            latent_channels=c,
            patch_size=tuple(int(p) for p in cfg.get("patch_size", (1, 2, 2))),
            inverse_used_action_channel_ids=(
                [int(i) for i in cfg["inverse_used_action_channel_ids"]]
                if cfg.get("inverse_used_action_channel_ids") is not None
                else None
            ),
        )

    # derived quantities
    @property
    def use_cfg(self) -> bool:
        return self.guidance_scale > 1 or self.action_guidance_scale > 1

    @property
    def cfg_batch(self) -> int:
        return 2 if self.use_cfg else 1

    @property
    def video_tokens_per_frame(self) -> int:
        pt, ph, pw = self.patch_size
        return (self.latent_height // ph) * (self.latent_width // pw) // pt

    @property
    def video_tokens_per_chunk(self) -> int:
        return self.frame_chunk_size * self.video_tokens_per_frame

    @property
    def action_tokens_per_chunk(self) -> int:
        return self.frame_chunk_size * self.action_per_frame

    @property
    def cache_capacity(self) -> int:
        return cache_capacity(self.attn_window, self.video_tokens_per_chunk, self.action_tokens_per_chunk)

    def inverse_channel_ids(self) -> list[int]:
        if self.inverse_used_action_channel_ids is not None:
            return list(self.inverse_used_action_channel_ids)
        used = self.used_action_channel_ids
        inv = [len(used)] * self.action_dim
        for pos, ch in enumerate(used):
            inv[ch] = pos
        return inv


@dataclass
class InferResult:
    latents: torch.Tensor              # [C, F, H, W] float32, final (returned) video latents
    actions_normalized: torch.Tensor   # [action_dim, F, A, 1] float32, unused channels zero
    actions: torch.Tensor              # [C_used, F, A] float32 CPU, de-normalised (what the server returns)
    frame_start: int = 0               # RoPE frame position of latent frame 0 of this chunk
    # what the video commit pass wrote (== latents at t = 0 unless video_exec_step partial denoising)
    commit_latents: torch.Tensor | None = None   # [C, F, H, W]
    commit_timesteps: torch.Tensor | None = None  # [F]
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def actions_np(self) -> np.ndarray:
        return self.actions.numpy()


def _as_tensor(x) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))


class LingBotVAWorldModel:
    """One episode of LingBot-VA in latent space. Not thread-safe: drive it from one thread.

    Options (defaults = the reference behaviour):
    - ``skip_action_commit``: do not run the action loop's final commit forward (its entries are always
      cleared by the next ground in server mode). The slots it would take are still reserved, so cache
      eviction - and therefore every later output - stays bit-exact. ``keep_prediction`` writes the
      real entries if the chunk is kept (naive async).
    - ``skip_unused_uncond_steps``: in denoising steps whose guidance scale is <= 1 (e.g. RoboTwin's action
      loop) run only the conditional stream; commits still write both streams. Exact up to kernel batching.
    """

    def __init__(
        self,
        transformer: WanTransformer3DModel,
        config: WorldModelConfig,
        device="cpu",
        dtype: torch.dtype = torch.float32,
        *,
        skip_action_commit: bool = False,
        skip_unused_uncond_steps: bool = False,
        cache_factory: Callable[..., object] | None = None,
        cache_slack: int | None = None,
    ):
        self.transformer = transformer
        self.cfg = config
        self.device = torch.device(device)
        self.dtype = dtype
        self.skip_action_commit = skip_action_commit
        self.skip_unused_uncond_steps = skip_unused_uncond_steps
        self._cache_factory = cache_factory or SlabKVCache
        tc = config
        if config.patch_size != tuple(transformer.patch_size):
            raise ValueError(f"config patch_size {config.patch_size} != transformer {transformer.patch_size}")
        self._cache_slack = cache_slack if cache_slack is not None else 4 * (tc.video_tokens_per_chunk + tc.action_tokens_per_chunk)
        self.video_scheduler = FlowMatchScheduler(tc.snr_shift)
        self.action_scheduler = FlowMatchScheduler(tc.action_snr_shift)
        mask = torch.zeros(tc.action_dim, dtype=torch.bool)
        mask[tc.used_action_channel_ids] = True
        self.action_mask = mask.to(self.device)
        # multiplicative form of the mask: x * 0 like the reference's in-place ``*= 0``, without the
        # boolean-index nonzero() that would synchronise the device before every action forward
        self._action_keep = mask.to(self.device, torch.float32).view(1, -1, 1, 1, 1)
        self._q01 = torch.tensor(tc.q01, dtype=torch.float32).reshape(-1, 1, 1)
        self._q99 = torch.tensor(tc.q99, dtype=torch.float32).reshape(-1, 1, 1)
        self._inv_ids = torch.tensor(tc.inverse_channel_ids(), dtype=torch.long)
        self.cache = None
        self.text = None
        self.init_latent: torch.Tensor | None = None
        self.frame_st_id = 0
        self._next_frame = 0
        self.call_log: list[str] = []

    # ------------------------------------------------------------------ public state
    @property
    def next_frame(self) -> int:
        return self._next_frame

    @property
    def batch_cfg(self) -> int:
        return self.cfg.cfg_batch

    def cache_fill(self) -> float:
        return 0.0 if self.cache is None else float(self.cache.fill())

    # ------------------------------------------------------------------ action (de)normalisation
    def normalize_actions(self, executed) -> torch.Tensor:
        """[C_used, F, A] physical -> [action_dim, F, A, 1] normalised (server ``preprocess_action``):
        append a zero channel, gather through the inverse ids, quantile-normalise, no clipping."""
        a = _as_tensor(executed).to("cpu", torch.float32)
        if a.dim() != 3 or a.shape[0] != len(self.cfg.used_action_channel_ids):
            raise ValueError(f"executed actions must be [C_used={len(self.cfg.used_action_channel_ids)}, F, A], got {tuple(a.shape)}")
        a = torch.cat([a, a.new_zeros(1, *a.shape[1:])])[self._inv_ids]
        a = (a - self._q01) / (self._q99 - self._q01 + NORM_EPS) * 2.0 - 1.0
        return a.unsqueeze(-1)

    def denormalize_actions(self, actions_normalized: torch.Tensor) -> torch.Tensor:
        """[action_dim, F, A, 1] -> [C_used, F, A] float32 CPU (server ``postprocess_action``)."""
        a = actions_normalized[..., 0].detach().to("cpu", torch.float32)
        a = (a + 1) / 2 * (self._q99 - self._q01 + NORM_EPS) + self._q01
        return a[self.cfg.used_action_channel_ids].contiguous()

    # ------------------------------------------------------------------ episode API
    @torch.no_grad()
    def reset(self, prompt_embeds: torch.Tensor, negative_prompt_embeds: torch.Tensor | None = None) -> None:
        """Start an episode: empty cache, frame ids at 0, text K/V precomputed for [cond, uncond]."""
        tc = self.cfg
        self.call_log = ["reset"]
        self.frame_st_id = 0
        self._next_frame = 0
        self.init_latent = None
        rows = [prompt_embeds]
        if tc.use_cfg:
            if negative_prompt_embeds is None:
                raise ValueError("CFG is on: negative_prompt_embeds (the '' prompt) is required")
            if negative_prompt_embeds.shape != prompt_embeds.shape:
                raise ValueError(f"prompt {tuple(prompt_embeds.shape)} and negative {tuple(negative_prompt_embeds.shape)} embeddings differ in shape")
            rows.append(negative_prompt_embeds)
        text = torch.stack([r.reshape(r.shape[-2], r.shape[-1]) for r in rows]).to(self.device)
        self.text = self.transformer.prepare_text(text)
        m = self.transformer
        if self.cache is None or getattr(self.cache, "capacity", None) != tc.cache_capacity:
            self.cache = None  # free the old slab before allocating a new one
            self.cache = self._cache_factory(
                len(m.blocks), tc.cache_capacity, self.batch_cfg, m.num_attention_heads, m.attention_head_dim,
                device=self.device, dtype=self.dtype, slack=self._cache_slack,
            )
        else:
            self.cache.clear()

    @torch.no_grad()
    def infer(self, init_latent=None, video_noise=None, action_noise=None, generator: torch.Generator | None = None) -> InferResult:
        """Predict the chunk at ``next_frame``: video loop, then the action loop (inverse dynamics).
        The first chunk (position 0) needs ``init_latent`` [C, 1, H, W]; later chunks ignore it."""
        self._require_reset()
        tc = self.cfg
        fs = self._next_frame
        first = fs == 0
        pin = None
        if first:
            if init_latent is None and self.init_latent is None:
                raise ValueError("the first chunk needs init_latent [C, 1, H, W]")
            if init_latent is not None:
                self.init_latent = _as_tensor(init_latent).to(self.device, torch.float32).reshape(
                    1, tc.latent_channels, 1, tc.latent_height, tc.latent_width)
            pin = self.init_latent
        # Stale predictions at or after this position (a retried infer) - none in the standard flows.
        self.cache.clear_frames(fs, math.inf, pred_only=True)
        latents = self._noise(video_noise, (tc.latent_channels, tc.frame_chunk_size, tc.latent_height, tc.latent_width), generator)
        actions = self._noise(action_noise, (tc.action_dim, tc.frame_chunk_size, tc.action_per_frame, 1), generator)
        timings = {}
        t0 = self._now()
        latents, commit_x, commit_t = self._video_loop(latents, fs, pin, "infer")
        t1 = self._now()
        actions = self._action_loop(actions, fs, first, "infer")
        t2 = self._now()
        timings["video"], timings["action"] = t1 - t0, t2 - t1
        return InferResult(
            latents=latents[0],
            actions_normalized=actions[0],
            actions=self.denormalize_actions(actions[0]),
            frame_start=fs,
            commit_latents=commit_x[0],
            commit_timesteps=commit_t,
            timings=timings,
        )

    @torch.no_grad()
    def ground(self, obs_latents, executed_actions) -> None:
        """Replace every predicted entry by ground truth at ``frame_st_id`` (server ``_compute_kv_cache``).
        obs_latents [C, n, H, W] (first chunk: n = F-1, ``init_latent`` is prepended); executed_actions
        [C_used, F, A] physical (the commanded chunk in the reference clients)."""
        self._require_reset()
        tc = self.cfg
        t0 = self._now()
        self.cache.clear_pred()
        fs = self.frame_st_id
        video = None
        if obs_latents is not None and _as_tensor(obs_latents).numel() > 0:
            video = _as_tensor(obs_latents).to(self.device, torch.float32).reshape(
                1, tc.latent_channels, -1, tc.latent_height, tc.latent_width)
        if fs == 0:
            if self.init_latent is None:
                raise ValueError("ground() on the first chunk needs the init_latent given to infer()")
            video = self.init_latent if video is None else torch.cat([self.init_latent, video], dim=2)
        if video is None:
            raise ValueError("ground() needs observation latents")
        acts = self._mask_actions(self.normalize_actions(executed_actions).unsqueeze(0).to(self.device))
        f = video.shape[2]
        self._forward(video, torch.zeros(f, device=self.device), fs, False, UPDATE_GT, "ground.video", output=False)
        self._forward(acts, torch.zeros(acts.shape[2], device=self.device), fs, True, UPDATE_GT, "ground.action", output=False)
        self.frame_st_id = fs + f
        self._next_frame = self.frame_st_id
        self._last_ground_s = self._now() - t0

    @torch.no_grad()
    def imagine(self, executing_actions, video_noise=None, generator: torch.Generator | None = None) -> torch.Tensor:
        """FDM step of the paper's async pipeline (Alg. 2, spec §6.3 b-d) for the chunk being executed.

        The executing chunk sits right after the grounded history (``frame_st_id``). Its actions are written
        as predicted known tokens (t = 0) at those frame positions, then that chunk's video is denoised
        with them in the cache (first chunk: frame 0 pinned to init_latent) and committed as predicted.
        The next ``infer`` then predicts the following chunk. ``ground`` removes all of it.
        Returns the imagined latents [C, F, H, W].
        """
        self._require_reset()
        tc = self.cfg
        fs = self.frame_st_id
        pin = None
        if fs == 0:
            if self.init_latent is None:
                raise ValueError("imagine() on the first chunk needs the init_latent given to infer()")
            pin = self.init_latent
        self.cache.clear_frames(fs, math.inf, pred_only=True)  # the stale forecast of this chunk
        acts = self._mask_actions(self.normalize_actions(executing_actions).unsqueeze(0).to(self.device))
        self._forward(acts, torch.zeros(acts.shape[2], device=self.device), fs, True, UPDATE_PRED, "imagine.action_known", output=False)
        latents = self._noise(video_noise, (tc.latent_channels, tc.frame_chunk_size, tc.latent_height, tc.latent_width), generator)
        latents, _, _ = self._video_loop(latents, fs, pin, "imagine")
        self._next_frame = fs + tc.frame_chunk_size
        return latents[0]

    @torch.no_grad()
    def keep_prediction(self, result: InferResult) -> None:
        """Naive async (spec §6.2): make sure the predicted video + actions of ``result`` (the chunk now being
        executed) are in the cache as predicted entries, and predict after it next. A no-op right after
        ``infer``; after a ``ground`` (which drops predictions) the entries are written again exactly as the
        infer commit passes wrote them."""
        self._require_reset()
        tc = self.cfg
        fs = int(result.frame_start)
        lo, hi = fs, fs + tc.frame_chunk_size
        frames, pred = self.cache.live_frames(), self.cache.live_is_pred()
        phantom = self.cache.live_phantom() if hasattr(self.cache, "live_phantom") else torch.zeros_like(pred)
        sel = (frames >= lo) & (frames < hi) & pred
        complete = int((sel & ~phantom).sum()) == tc.video_tokens_per_chunk + tc.action_tokens_per_chunk
        if not complete:
            self.cache.clear_frames(lo, math.inf, pred_only=True)
            x = (result.commit_latents if result.commit_latents is not None else result.latents)
            t = result.commit_timesteps if result.commit_timesteps is not None else torch.zeros(tc.frame_chunk_size)
            x = x.to(self.device, torch.float32).unsqueeze(0)
            self._forward(x, t, fs, False, UPDATE_PRED, "keep.video", output=False)
            # the action commit runs at the padded t = 0 (frame 0 of the first chunk is 0 anyway)
            a = self._mask_actions(result.actions_normalized.to(self.device, torch.float32).unsqueeze(0).clone())
            self._forward(a, torch.zeros(tc.frame_chunk_size, device=self.device), fs, True, UPDATE_PRED, "keep.action", output=False)
        self._next_frame = hi

    # ------------------------------------------------------------------ loops
    def _video_loop(self, latents: torch.Tensor, fs: int, pin: torch.Tensor | None, stage: str):
        tc = self.cfg
        f = tc.frame_chunk_size
        ts = self.video_scheduler.loop_timesteps(tc.num_inference_steps, tc.video_exec_step)
        partial = tc.video_exec_step != -1
        rope = self.transformer.video_rope(f, tc.latent_height, tc.latent_width, fs)  # once per loop
        steps_b = 1 if (self.skip_unused_uncond_steps and tc.guidance_scale <= 1) else self.batch_cfg
        commit_x = commit_t = None
        for i, t in enumerate(ts):
            last = i == len(ts) - 1
            if pin is not None:
                latents[:, :, 0:1] = pin
            tv = torch.full((f,), float(t), dtype=torch.float32, device=self.device)  # no H2D copy per step
            if pin is not None:
                tv[0] = 0.0
            if last:
                commit_x, commit_t = latents.clone(), tv.clone()
            need_out = (not last) or partial
            b = self.batch_cfg if last else steps_b
            out = self._forward(latents, tv, fs, False, UPDATE_PRED if last else UPDATE_TRANSIENT,
                                f"{stage}.video_commit" if last else f"{stage}.video", output=need_out, rope=rope, batch=b)
            if need_out:
                v = self._guide(out, tc.guidance_scale)
                latents = self.video_scheduler.step(v, t, latents)
            if pin is not None:
                latents[:, :, 0:1] = pin
        return latents, commit_x, commit_t

    def _action_loop(self, actions: torch.Tensor, fs: int, first: bool, stage: str) -> torch.Tensor:
        tc = self.cfg
        f = tc.frame_chunk_size
        ts = self.action_scheduler.loop_timesteps(tc.action_num_inference_steps)
        rope = self.transformer.action_rope(f, tc.action_per_frame, fs)
        steps_b = 1 if (self.skip_unused_uncond_steps and tc.action_guidance_scale <= 1) else self.batch_cfg
        for i, t in enumerate(ts):
            last = i == len(ts) - 1
            if first:
                actions[:, :, 0:1] = 0.0  # frame 0 = conditioning frame: zero actions (normalised space)
            actions = self._mask_actions(actions)
            ta = torch.full((f,), float(t), dtype=torch.float32, device=self.device)
            if first:
                ta[0] = 0.0
            if last:
                if self.skip_action_commit:
                    frames = self.transformer.token_frames(True, f, tc.action_per_frame, fs)
                    self.cache.reserve(frames.numel(), frames)
                    self.call_log.append(f"{stage}.action_commit_reserved")
                else:
                    self._forward(actions, ta, fs, True, UPDATE_PRED, f"{stage}.action_commit", output=False, rope=rope)
            else:
                out = self._forward(actions, ta, fs, True, UPDATE_TRANSIENT, f"{stage}.action", rope=rope, batch=steps_b)
                v = self._guide(out, tc.action_guidance_scale)
                actions = self.action_scheduler.step(v, t, actions)
            if first:
                actions[:, :, 0:1] = 0.0
        return self._mask_actions(actions)

    # ------------------------------------------------------------------ helpers
    def _forward(self, x, timesteps, fs, action_mode, update, stage, *, output=True, rope=None, batch=None):
        """One transformer forward over the CFG streams (x is the single-stream state, float32)."""
        b = self.batch_cfg if batch is None else batch
        xin = x.to(self.dtype)
        if b > 1:
            xin = xin.expand(b, *xin.shape[1:])
        self.call_log.append(stage)
        return self.transformer(
            xin, timesteps, self.text, action_mode=action_mode, frame_start=fs, rope=rope,
            kv_cache=self.cache, update_cache=update, compute_output=output,
        )

    @staticmethod
    def _guide(out: torch.Tensor, scale: float) -> torch.Tensor:
        """CFG combine v_u + g (v_c - v_u) with batch [cond, uncond]; g <= 1: conditional only."""
        out = out.float()
        if scale > 1:
            return out[1:2] + scale * (out[0:1] - out[1:2])
        return out[0:1]

    def _mask_actions(self, a: torch.Tensor) -> torch.Tensor:
        return a.mul_(self._action_keep)  # unused channels are zeroed before every action forward

    def _noise(self, given, shape, generator) -> torch.Tensor:
        if given is not None:
            t = _as_tensor(given).to(self.device, torch.float32)
            return t.reshape(1, *shape).clone()
        if generator is not None:
            return torch.randn((1, *shape), generator=generator, device=generator.device).to(self.device, torch.float32)
        return torch.randn((1, *shape), device=self.device)

    def _now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def _require_reset(self) -> None:
        if self.cache is None or self.text is None:
            raise RuntimeError("call reset(prompt_embeds, negative_prompt_embeds) first")
