"""The training loop of ``lingbot-va-train`` (one process or torchrun + FSDP2).

Data order and randomness do not depend on the number of processes: optimizer step s consumes the global
samples n = s*B .. s*B + B - 1 (B = world size x gradient_accumulation_steps), rank r takes
n = s*B + r*accum + k, sample n is episode ``perm_epoch[n mod N]`` and all its random draws come from a
generator seeded by (seed, n). So ``torchrun --nproc_per_node 2`` with accumulation 1 and one process with
accumulation 2 train on the same samples with the same noise, and a resumed run continues exactly where the
checkpoint left off.
"""
from __future__ import annotations

import json
import logging
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import torch

from lingbot_va_ros.training import checkpoint as ckpt
from lingbot_va_ros.training.config import TrainingConfig
from lingbot_va_ros.training.distributed import (
    DistContext,
    compute_dtype,
    grad_norm_value,
    init_distributed,
    set_gradient_sync,
    shard_model,
)
from lingbot_va_ros.training.flow_matching import TrainingNoise
from lingbot_va_ros.training.sequence import build_sequence, draw_sample, forward_loss, sample_generator

logger = logging.getLogger(__name__)
LOG_FILE = "train_log.jsonl"
PARTS = ("latent_loss", "action_loss", "fdm_loss")


class TrainingError(RuntimeError):
    """Training cannot go on (missing setting, non-finite loss, ...); the message says why."""


class OutputExistsError(FileExistsError):
    """The output folder holds a previous run and neither --force nor --resume was given."""


@dataclass
class TrainingResult:
    output_dir: Path
    steps: int
    losses: list[float] = field(default_factory=list)
    log: list[dict] = field(default_factory=list)
    exported: Path | None = None


def warmup_constant(step: int, warmup_steps: int) -> float:
    """The reference LR factor: step / warmup during warm-up (0 at the first step), then 1."""
    return float(step) / float(max(1, warmup_steps)) if step < warmup_steps else 1.0


class EpochOrder:
    """Global sample n -> dataset index: a fresh seeded permutation per epoch."""

    def __init__(self, size: int, seed: int):
        self.size, self.seed, self._perms = size, seed, {}

    def __call__(self, n: int) -> int:
        epoch, pos = divmod(n, self.size)
        if epoch not in self._perms:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perms = {epoch: torch.randperm(self.size, generator=g)}
        return int(self._perms[epoch][pos])


def prepare_output(out: Path, force: bool, resume: bool, keep: Path | None, ctx: DistContext) -> None:
    """Refuse to overwrite a previous run without --force (the cache folder survives --force). Every rank
    checks (so all raise together); rank 0 deletes."""
    others = []
    if resume:
        if ckpt.latest_checkpoint(out / "checkpoints") is None:
            raise TrainingError(f"--resume: no complete checkpoint under {out / 'checkpoints'}")
    elif out.exists():
        others = [p for p in out.iterdir() if keep is None or p.resolve() != keep.resolve()]
        if others and not force:
            raise OutputExistsError(f"output folder {out} already holds a training run "
                                    f"({', '.join(sorted(p.name for p in others)[:6])}); pass --force to replace "
                                    f"it or --resume to continue it")
    ctx.barrier()
    if ctx.is_main:
        for p in others:
            if p.is_symlink() or p.is_file():
                p.unlink()
            else:
                shutil.rmtree(p)
        out.mkdir(parents=True, exist_ok=True)
    ctx.barrier()


class Trainer:
    def __init__(self, cfg: TrainingConfig, *, force: bool = False, resume: bool = False,
                 episodes: Iterable | None = None):
        for name in ("base_checkpoint", "output_dir"):
            if not getattr(cfg, name):
                raise TrainingError(f"{name} is not set (config file or --{name.replace('_', '-')})")
        if episodes is None and not cfg.dataset:
            raise TrainingError("dataset is not set (config file or --dataset)")
        self.cfg, self.force, self.resume, self._episodes = cfg, force, resume, episodes

    # ------------------------------------------------------------------ setup
    def _setup(self) -> None:
        from lingbot_va_ros.model.embodiment import load_embodiment
        from lingbot_va_ros.model.loading import check_compatibility, resolve_checkpoint
        from lingbot_va_ros.training.data import Encoders, build_training_set
        from lingbot_va_ros.training.latent_cache import LatentCache, encoder_fingerprint

        cfg = self.cfg
        if cfg.torch_threads:
            torch.set_num_threads(cfg.torch_threads)
        self.ctx = ctx = init_distributed(cfg.device)
        if ctx.distributed and not cfg.fsdp:
            raise TrainingError("fsdp: false is only supported in a single process (WORLD_SIZE=1)")
        self.out = Path(cfg.output_dir).expanduser()
        cache_dir = cfg.resolved_cache_dir.expanduser()
        prepare_output(self.out, self.force, self.resume, cache_dir if cache_dir.parent == self.out else None, ctx)
        self.paths = resolve_checkpoint(cfg.base_checkpoint)
        check_compatibility(self.paths)
        self.emb = emb = load_embodiment(cfg.embodiment)
        episodes = self._episodes if self._episodes is not None else self._read_dataset()
        encode_dtype = compute_dtype("auto", ctx.device)
        layout = {"layout": emb.layout, "cameras": {c.name: [c.height, c.width] for c in emb.cameras},
                  "action_per_frame": emb.action_per_frame, "frame_chunk_size": emb.frame_chunk_size,
                  "encode_dtype": str(encode_dtype).replace("torch.", "")}
        cache = LatentCache(cache_dir, encoder_fingerprint(self.paths.vae, self.paths.text_encoder, self.paths.tokenizer),
                            layout, torch.bfloat16 if cfg.cache_dtype == "bfloat16" else torch.float32)
        enc_device = ctx.device if cfg.encode_device == "auto" else torch.device(cfg.encode_device)
        self.data = build_training_set(
            episodes, emb, cache,
            lambda: Encoders(self.paths.vae, self.paths.text_encoder, self.paths.tokenizer, emb, enc_device, encode_dtype),
            action_stats=cfg.action_stats, min_quantile_range=cfg.min_quantile_range,
            max_latent_frames=cfg.max_latent_frames, action_clip=cfg.action_clip, rank=ctx.rank,
            world_size=ctx.world_size, barrier=ctx.barrier)
        for note in self.data.skipped:
            logger.warning("skipped %s", note)
        if self.data.widened_channels:
            logger.warning("channels %s never moved in the dataset: q01..q99 widened to %g",
                           self.data.widened_channels, cfg.min_quantile_range)
        self.video_noise = TrainingNoise(cfg.snr_shift or emb.snr_shift, cfg.num_train_timesteps)
        self.action_noise = TrainingNoise(cfg.action_snr_shift or emb.action_snr_shift, cfg.num_train_timesteps)
        self.tokens_per_frame = emb.camera_layout.tokens_per_frame
        self.backend = cfg.attention if cfg.attention != "auto" else ("flex" if ctx.device.type == "cuda" else "dense")
        if self.backend == "flex" and ctx.device.type != "cuda":
            raise TrainingError("attention: flex needs CUDA for training (CPU flex attention has no backward); "
                                "use dense")
        self._setup_model()

    def _read_dataset(self):
        from lingbot_va_ros.dataset.lerobot_format import DatasetError, iter_lerobot_dataset, read_metadata

        try:
            meta = read_metadata(self.cfg.dataset)
        except (DatasetError, FileNotFoundError, OSError) as exc:
            raise TrainingError(f"cannot read the dataset {self.cfg.dataset}: {exc}") from exc
        if not meta.episodes:
            raise TrainingError(f"the dataset {self.cfg.dataset} has no episodes")
        if self.cfg.episodes:
            known = {int(e["episode_index"]) for e in meta.episodes}
            missing = sorted(set(self.cfg.episodes) - known)
            if missing:
                raise TrainingError(f"episodes {missing} are not in the dataset {self.cfg.dataset} "
                                    f"(it has {sorted(known)})")
        return iter_lerobot_dataset(self.cfg.dataset, self.cfg.episodes or None)

    def _setup_model(self) -> None:
        from lingbot_va_ros.model.transformer import WanTransformer3DModel

        cfg, ctx = self.cfg, self.ctx
        model = WanTransformer3DModel.from_pretrained(str(self.paths.transformer), torch_dtype=torch.float32)
        self.start_step = 0
        self._resume_state = None
        if self.resume:
            path = ckpt.latest_checkpoint(self.out / "checkpoints")
            self._resume_state = ckpt.read_checkpoint(path)
            model.load_state_dict(self._resume_state["model"], strict=True)
            self.start_step = int(self._resume_state["state"]["step"])
            if ctx.is_main:
                print(f"[train] resuming from {path} (step {self.start_step})", flush=True)
        model = model.float().to(ctx.device).train().requires_grad_(True)
        # never called (the text path always uses the video copy, spec §1.1 item 3): nothing to train
        model.condition_embedder_action.text_embedder.requires_grad_(False)
        if ctx.distributed:
            model = shard_model(model, ctx, compute_dtype(cfg.mixed_precision, ctx.device))
        elif compute_dtype(cfg.mixed_precision, ctx.device) != torch.float32:
            # single process on CUDA: bf16 autocast for compute, fp32 master weights
            self._autocast = torch.autocast("cuda", dtype=torch.bfloat16)
        self.model = model
        self.optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.learning_rate,
                                           betas=tuple(cfg.betas), eps=cfg.adam_eps, weight_decay=cfg.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: warmup_constant(s, cfg.warmup_steps))
        if self._resume_state is not None:
            ckpt.load_optimizer_state(model, self.optimizer, self._resume_state["optimizer"])
            self.scheduler.load_state_dict(self._resume_state["state"]["scheduler"])
            ckpt.restore_rng(self._resume_state["rng"])
            self._resume_state = None

    _autocast = None

    # ------------------------------------------------------------------ loop
    def run(self) -> TrainingResult:
        self._setup()
        cfg, ctx = self.cfg, self.ctx
        accum = cfg.gradient_accumulation_steps
        global_batch = ctx.world_size * accum
        order = EpochOrder(len(self.data.samples), cfg.seed)
        log_path = self.out / LOG_FILE
        history = self._resume_log(log_path)
        writer = self._tensorboard()
        bar = self._progress()
        result = TrainingResult(self.out, self.start_step, [h["loss"] for h in history], history)
        t_last = time.perf_counter()
        try:
            for step in range(self.start_step, cfg.num_steps):
                sums = self._step(step, order, accum, global_batch)
                entry = self._log_entry(step, sums, global_batch, time.perf_counter() - t_last)
                t_last = time.perf_counter()
                result.losses.append(entry["loss"])
                result.log.append(entry)
                result.steps = step + 1
                if ctx.is_main:
                    if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.num_steps:
                        with open(log_path, "a") as fh:
                            fh.write(json.dumps(entry) + "\n")
                        if writer is not None:
                            for k, v in entry.items():
                                if k not in ("step", "episodes") and isinstance(v, (int, float)):
                                    writer.add_scalar(f"train/{k}", v, step + 1)
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(loss=f"{entry['loss']:.4f}", lr=f"{entry['lr']:.1e}")
                if (step + 1) % cfg.save_every == 0 or step + 1 == cfg.num_steps:
                    self._save(step + 1)
            if not hasattr(self, "_final_state"):   # resumed a finished run: nothing was trained now
                self._final_state = ckpt.full_model_state(self.model)
            result.exported = self._export()
        finally:
            if bar is not None:
                bar.close()
            if writer is not None:
                writer.close()
            from lingbot_va_ros.training.distributed import shutdown

            shutdown(ctx)
        return result

    def _step(self, step: int, order: EpochOrder, accum: int, global_batch: int) -> list[float]:
        cfg, ctx = self.cfg, self.ctx
        # [loss, latent, latent_n, action, action_n, fdm, fdm_n, nonfinite]
        sums = [0.0] * 8
        episodes = []
        for k in range(accum):
            n = step * global_batch + ctx.rank * accum + k
            sample = self.data.samples[order(n)]
            episodes.append(sample.episode_index)
            draw = draw_sample(sample, cfg, self.video_noise, self.action_noise, sample_generator(cfg.seed, n))
            seq = build_sequence(sample, draw, cfg, self.video_noise, self.action_noise, self.tokens_per_frame,
                                 ctx.device)
            set_gradient_sync(self.model, k == accum - 1)
            if self._autocast is not None:
                with self._autocast:
                    loss, parts = forward_loss(self.model, seq, cfg, self.backend, ctx.device)
            else:
                loss, parts = forward_loss(self.model, seq, cfg, self.backend, ctx.device)
            if not math.isfinite(parts["loss"]):
                sums[7] += 1
            (loss / accum).backward()
            sums[0] += parts["loss"]
            for i, name in enumerate(PARTS):
                if name in parts:
                    sums[1 + 2 * i] += parts[name]
                    sums[2 + 2 * i] += 1
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self._last_norm = grad_norm_value(norm)
        self._last_episodes = episodes
        totals = ctx.all_sum(sums)
        if totals[7] > 0 or not math.isfinite(self._last_norm):
            raise TrainingError(f"non-finite loss or gradient at step {step + 1} (episodes {episodes} on rank "
                                f"{ctx.rank}, grad norm {self._last_norm}); stopping without saving this state. "
                                f"Check the dataset for outliers and lower the learning rate")
        self._lr = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return totals

    def _log_entry(self, step: int, sums: list[float], global_batch: int, seconds: float) -> dict:
        entry = {"step": step + 1, "loss": sums[0] / global_batch}
        for i, name in enumerate(PARTS):
            if sums[2 + 2 * i] > 0:
                entry[name] = sums[1 + 2 * i] / sums[2 + 2 * i]
        entry["fdm_fraction"] = sums[6] / global_batch
        entry.update(grad_norm=self._last_norm, lr=self._lr, samples=(step + 1) * global_batch, step_s=seconds)
        return entry

    # ------------------------------------------------------------------ io
    def _resume_log(self, path: Path) -> list[dict]:
        """On resume keep the log lines up to the checkpoint (an interrupted run may have logged past it)."""
        if not self.ctx.is_main:
            return []
        if not self.resume or not path.is_file():
            if path.exists():
                path.unlink()
            return []
        kept = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        kept = [e for e in kept if e["step"] <= self.start_step]
        path.write_text("".join(json.dumps(e) + "\n" for e in kept))
        return kept

    def _tensorboard(self):
        if not (self.cfg.tensorboard and self.ctx.is_main):
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            print("[train] tensorboard is not installed: losses go to train_log.jsonl only "
                  "(pip install tensorboard for TensorBoard logs)", flush=True)
            return None
        return SummaryWriter(str(self.out / "tensorboard"))

    def _progress(self):
        if not (self.cfg.progress_bar and self.ctx.is_main):
            return None
        from tqdm import tqdm

        return tqdm(total=self.cfg.num_steps, initial=self.start_step, desc="train", dynamic_ncols=True)

    def _save(self, step: int) -> None:
        model_state = ckpt.full_model_state(self.model)              # collective under FSDP
        optim_state = ckpt.full_optimizer_state(self.model, self.optimizer)
        if self.ctx.is_main:
            extra = {"world_size": self.ctx.world_size, "samples": step * self.ctx.world_size *
                     self.cfg.gradient_accumulation_steps, "config": self.cfg.model_dump(mode="json")}
            ckpt.save_checkpoint(self.out / "checkpoints", step, model_state, optim_state,
                                 self.scheduler.state_dict(), extra, self.cfg.keep_checkpoints)
        self._final_state = model_state
        self.ctx.barrier()

    def _export(self) -> Path | None:
        from lingbot_va_ros.training.export import export_transformer, link_base_components, write_embodiment

        if not self.ctx.is_main:
            self.ctx.barrier()
            return None
        cfg = self.cfg
        folder = export_transformer(self._final_state, dict(self.model.config), self.out / "transformer",
                                    cfg.export_dtype)
        linked = link_base_components(Path(cfg.base_checkpoint), self.out, cfg.link_base)
        emb = write_embodiment(self.emb, self.data.q01, self.data.q99, self.out / "embodiment.yaml",
                               f"post-trained on {cfg.dataset or 'in-memory episodes'}")
        summary = {"steps": cfg.num_steps, "episodes": self.data.episode_indices, "q01": self.data.q01,
                   "q99": self.data.q99, "widened_channels": self.data.widened_channels,
                   "skipped": self.data.skipped, "linked": linked, "embodiment": emb.name,
                   "base_checkpoint": str(cfg.base_checkpoint), "world_size": self.ctx.world_size,
                   "config": cfg.model_dump(mode="json")}
        (self.out / "training_summary.json").write_text(json.dumps(summary, indent=1) + "\n")
        self.ctx.barrier()
        return folder
