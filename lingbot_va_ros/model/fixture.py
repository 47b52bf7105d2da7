"""Reference-episode fixtures: reader, recorder and replay (format of test/fixtures/README.md).

A fixture directory holds
- ``transformer/``: config.json + safetensors (official names),
- ``episode.json``: ``format``, ``dtype``, the server ``config``, ``latent_shape_per_frame`` [C, H, W] and
  the ordered ``calls`` (reset / infer / ground; this module also understands ``imagine``, which only
  fixtures recorded here can contain), each naming its tensors,
- ``episode.safetensors``: every named tensor, float32.

Only safetensors and JSON are read (no pickle).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

FORMAT = "lingbot-va reference episode v1"
OUTPUT_FIELDS = ("latents", "actions_normalized", "actions")


class FixtureError(ValueError):
    """The fixture directory is malformed."""


@dataclass
class Fixture:
    root: Path
    meta: dict
    tensors: dict[str, torch.Tensor]

    @property
    def config(self) -> dict:
        return self.meta["config"]

    @property
    def latent_shape_per_frame(self) -> list[int]:
        return list(self.meta["latent_shape_per_frame"])

    @property
    def calls(self) -> list[dict]:
        return self.meta["calls"]

    @property
    def transformer_dir(self) -> Path:
        return self.root / "transformer"

    def tensor(self, name: str) -> torch.Tensor:
        return self.tensors[name]


_TENSOR_KEYS = {
    "reset": ("prompt_embeds", "negative_prompt_embeds"),
    "infer": ("video_noise", "action_noise", "init_latent") + OUTPUT_FIELDS,
    "ground": ("obs_latents", "executed_actions"),
    "imagine": ("executing_actions", "video_noise", "latents"),
}


def load_fixture(root) -> Fixture:
    root = Path(root)
    ep, st = root / "episode.json", root / "episode.safetensors"
    for p in (ep, st, root / "transformer" / "config.json"):
        if not p.is_file():
            raise FixtureError(f"{root}: missing {p.relative_to(root)}")
    with open(ep) as fh:
        meta = json.load(fh)
    if meta.get("format") != FORMAT:
        raise FixtureError(f"{ep}: format {meta.get('format')!r}, expected {FORMAT!r}")
    for key in ("config", "latent_shape_per_frame", "calls"):
        if key not in meta:
            raise FixtureError(f"{ep}: no {key!r}")
    tensors = load_file(str(st))
    for i, call in enumerate(meta["calls"]):
        kind = call.get("call")
        if kind not in _TENSOR_KEYS:
            raise FixtureError(f"{ep}: call {i} has unknown type {kind!r}")
        for k in _TENSOR_KEYS[kind]:
            if call.get(k) is not None and call[k] not in tensors:
                raise FixtureError(f"{ep}: call {i} ({kind}) names tensor {call[k]!r}, absent from episode.safetensors")
    return Fixture(root, meta, tensors)


# ------------------------------------------------------------------------------------------ recording
def _cpu32(x) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(x)
    return t.detach().to("cpu", torch.float32).clone().contiguous()


class FixtureRecorder:
    """Collects calls and tensors in the fixture format; ``save`` writes the directory."""

    def __init__(self, server_config: dict, latent_shape_per_frame):
        self.config = json.loads(json.dumps(server_config))  # deep copy, JSON-clean
        self.latent_shape_per_frame = [int(v) for v in latent_shape_per_frame]
        self.calls: list[dict] = []
        self.tensors: dict[str, torch.Tensor] = {}
        self._n = {"infer": 0, "ground": 0, "imagine": 0}

    def _put(self, name: str, value) -> str:
        self.tensors[name] = _cpu32(value)
        return name

    def reset(self, prompt_embeds, negative_prompt_embeds) -> None:
        self.calls.append({
            "call": "reset",
            "prompt_embeds": self._put("reset.prompt_embeds", prompt_embeds),
            "negative_prompt_embeds": self._put("reset.negative_prompt_embeds", negative_prompt_embeds),
        })

    def infer(self, frame_start: int, video_noise, action_noise, latents, actions_normalized, actions, init_latent=None) -> None:
        i = self._n["infer"]
        self._n["infer"] += 1
        call = {
            "call": "infer",
            "frame_start": int(frame_start),
            "video_noise": self._put(f"c{i}.video_noise", video_noise),
            "action_noise": self._put(f"c{i}.action_noise", action_noise),
            "latents": self._put(f"c{i}.latents", latents),
            "actions_normalized": self._put(f"c{i}.actions_normalized", actions_normalized),
            "actions": self._put(f"c{i}.actions", actions),
        }
        if init_latent is not None:
            call["init_latent"] = self._put(f"c{i}.init_latent", init_latent)
        self.calls.append(call)

    def ground(self, obs_latents, executed_actions, prepends_init_latent: bool) -> None:
        i = self._n["ground"]
        self._n["ground"] += 1
        self.calls.append({
            "call": "ground",
            "obs_latents": self._put(f"g{i}.obs_latents", obs_latents),
            "executed_actions": self._put(f"g{i}.executed_actions", executed_actions),
            "prepends_init_latent": bool(prepends_init_latent),
        })

    def imagine(self, frame_start: int, executing_actions, video_noise, latents) -> None:
        i = self._n["imagine"]
        self._n["imagine"] += 1
        self.calls.append({
            "call": "imagine",
            "frame_start": int(frame_start),
            "executing_actions": self._put(f"m{i}.executing_actions", executing_actions),
            "video_noise": self._put(f"m{i}.video_noise", video_noise),
            "latents": self._put(f"m{i}.latents", latents),
        })

    def save(self, out_dir, transformer=None) -> Path:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": FORMAT,
            "dtype": "float32",
            "config": self.config,
            "latent_shape_per_frame": self.latent_shape_per_frame,
            "calls": self.calls,
        }
        with open(out / "episode.json", "w") as fh:
            json.dump(meta, fh, indent=1)
        save_file(self.tensors, str(out / "episode.safetensors"))
        if transformer is not None:
            transformer.save_pretrained(str(out / "transformer"), safe_serialization=True)
        return out


def _result_fields(result) -> tuple[Any, Any, Any]:
    if isinstance(result, tuple):
        return result[0], result[1], result[2]
    return result.latents, result.actions_normalized, result.actions


def record_episode(
    driver,
    out_dir,
    server_config: dict,
    latent_shape_per_frame,
    *,
    transformer=None,
    num_chunks: int = 3,
    seed: int = 0,
    prompt_len: int = 8,
    text_dim: int | None = None,
    imagine: bool = False,
) -> Path:
    """Drive ``driver`` (anything with the world-model API: reset / infer / ground, plus ``frame_st_id``,
    ``next_frame`` if it has one, and ``imagine`` when ``imagine=True``) through one closed-loop episode
    with seeded inputs, recording every input and output. Executed actions fed back are the commanded
    chunk, as the reference clients do. ``num_chunks`` chunks are grounded. With ``imagine``: cold start
    (infer, imagine, infer), then ground(n-1) -> imagine(n) -> infer(n+1)."""
    c, h, w = (int(v) for v in latent_shape_per_frame)
    cfg = server_config
    f, a = int(cfg["frame_chunk_size"]), int(cfg["action_per_frame"])
    action_dim = int(cfg.get("action_dim", 30))
    if text_dim is None:
        text_dim = transformer.config.text_dim if transformer is not None else 32
    g = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=g)

    rec = FixtureRecorder(cfg, latent_shape_per_frame)
    prompt = randn(prompt_len, text_dim)
    prompt[prompt_len * 3 // 4:] = 0  # zero-padded rows, as the real 512-row embeddings
    negative = torch.zeros(prompt_len, text_dim)
    negative[:1] = randn(1, text_dim)
    driver.reset(prompt, negative)
    rec.reset(prompt, negative)

    def next_frame():
        return int(getattr(driver, "next_frame", driver.frame_st_id))

    def do_infer(first: bool):
        fs = next_frame()
        init = randn(c, 1, h, w) if first else None
        vn, an = randn(c, f, h, w), randn(action_dim, f, a, 1)
        out = _result_fields(driver.infer(init, vn, an))
        rec.infer(fs, vn, an, *out, init_latent=init)
        return out

    def do_ground(commanded):
        first = int(driver.frame_st_id) == 0
        obs = randn(c, f - 1 if first else f, h, w)
        driver.ground(obs, commanded)
        rec.ground(obs, commanded, prepends_init_latent=first)

    def do_imagine(executing):
        fs = int(driver.frame_st_id)
        vn = randn(c, f, h, w)
        lat = driver.imagine(executing, video_noise=vn)
        rec.imagine(fs, executing, vn, lat)

    out = do_infer(first=True)
    if not imagine:
        for n in range(num_chunks):
            do_ground(out[2])
            if n + 1 < num_chunks:
                out = do_infer(first=False)
    else:
        executing = out[2]
        do_imagine(executing)
        nxt = do_infer(first=False)
        for _ in range(num_chunks - 1):
            do_ground(executing)
            executing = nxt[2]
            do_imagine(executing)
            nxt = do_infer(first=False)
        do_ground(executing)
    return rec.save(out_dir, transformer)


# ------------------------------------------------------------------------------------------ replay
@dataclass
class ReplayRow:
    index: int
    call: str
    frame: int | None
    output: str
    max_abs_err: float | None
    ok: bool
    note: str = ""


@dataclass
class ReplayReport:
    atol: float
    rows: list[ReplayRow] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.rows) and all(r.ok for r in self.rows)

    @property
    def max_abs_err(self) -> float:
        errs = [r.max_abs_err for r in self.rows if r.max_abs_err is not None]
        return max(errs) if errs else float("nan")

    def max_by_output(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for r in self.rows:
            if r.max_abs_err is not None:
                out[r.output] = max(out.get(r.output, 0.0), r.max_abs_err)
        return out

    def format(self) -> str:
        lines = [f"{'#':>3}  {'call':<8} {'frame':>5}  {'output':<20} {'max_abs_err':>12}  status"]
        for r in self.rows:
            err = "-" if r.max_abs_err is None else f"{r.max_abs_err:.3e}"
            frame = "-" if r.frame is None else str(r.frame)
            status = "ok" if r.ok else "FAIL"
            lines.append(f"{r.index:>3}  {r.call:<8} {frame:>5}  {r.output:<20} {err:>12}  {status}{('  ' + r.note) if r.note else ''}")
        per = ", ".join(f"{k} {v:.3e}" for k, v in self.max_by_output().items())
        lines.append(f"max abs error per output: {per or '-'} (atol {self.atol:g})")
        lines.append("RESULT: " + ("PASS" if self.ok else "FAIL"))
        return "\n".join(lines)


def _compare(report: ReplayReport, idx: int, call: str, frame, name: str, got, want) -> None:
    got = _cpu32(got)
    if tuple(got.shape) != tuple(want.shape):
        report.rows.append(ReplayRow(idx, call, frame, name, None, False, f"shape {tuple(got.shape)} != recorded {tuple(want.shape)}"))
        return
    err = float((got - want).abs().max()) if want.numel() else 0.0
    finite = bool(torch.isfinite(got).all())
    ok = finite and err <= report.atol
    report.rows.append(ReplayRow(idx, call, frame, name, err, ok, "" if finite else "non-finite output"))


def replay_fixture(fixture: Fixture | str | os.PathLike, atol: float = 1e-4, *, device="cpu", transformer=None, **world_model_kwargs) -> ReplayReport:
    """Drive ``LingBotVAWorldModel`` through the recorded calls with the recorded noises (float32) and
    compare every output. Frame bookkeeping mismatches are reported as failures too."""
    from lingbot_va_ros.model.transformer import load_transformer
    from lingbot_va_ros.model.world_model import LingBotVAWorldModel, WorldModelConfig

    fx = fixture if isinstance(fixture, Fixture) else load_fixture(fixture)
    model = transformer if transformer is not None else load_transformer(str(fx.transformer_dir), device, torch.float32)
    cfg = WorldModelConfig.from_server_config(fx.config, fx.latent_shape_per_frame)
    wm = LingBotVAWorldModel(model, cfg, device=device, dtype=torch.float32, **world_model_kwargs)
    rep = ReplayReport(atol=atol)
    T = fx.tensor
    for idx, call in enumerate(fx.calls):
        kind = call["call"]
        if kind == "reset":
            wm.reset(T(call["prompt_embeds"]), T(call["negative_prompt_embeds"]))
        elif kind == "infer":
            fs = int(call["frame_start"])
            if wm.next_frame != fs:
                rep.rows.append(ReplayRow(idx, kind, fs, "frame_start", None, False, f"model would predict at frame {wm.next_frame}"))
            init = T(call["init_latent"]) if call.get("init_latent") else None
            r = wm.infer(init, T(call["video_noise"]), T(call["action_noise"]))
            for name in OUTPUT_FIELDS:
                _compare(rep, idx, kind, fs, name, getattr(r, name), T(call[name]))
        elif kind == "ground":
            fs = wm.frame_st_id
            if bool(call.get("prepends_init_latent", fs == 0)) != (fs == 0):
                rep.rows.append(ReplayRow(idx, kind, fs, "prepends_init_latent", None, False, "recorded flag disagrees with frame position"))
            wm.ground(T(call["obs_latents"]), T(call["executed_actions"]))
        elif kind == "imagine":
            fs = int(call["frame_start"])
            if wm.frame_st_id != fs:
                rep.rows.append(ReplayRow(idx, kind, fs, "frame_start", None, False, f"model would imagine at frame {wm.frame_st_id}"))
            lat = wm.imagine(T(call["executing_actions"]), video_noise=T(call["video_noise"]))
            _compare(rep, idx, kind, fs, "latents", lat, T(call["latents"]))
    return rep
