"""Process group, device and FSDP2 sharding for ``lingbot-va-train`` (torchrun or a single process).

Multi-process runs (WORLD_SIZE > 1, started by torchrun) shard the transformer with FSDP2: ``fully_shard``
on every ``WanTransformerBlock`` and then on the root (embedders, condition embedders, heads), as the
reference does per block. NCCL on CUDA, gloo on CPU (FSDP2 runs on CPU/gloo in torch 2.13; that is what the
2-process test uses). Mixed precision on CUDA: bf16 parameters for compute, fp32 gradient reduction, fp32
master weights (the sharded parameters and the optimizer states stay fp32). A single process trains the plain
module (no process group).
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def all_sum(self, values: list[float]) -> list[float]:
        if not self.distributed:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.comm_device)
        dist.all_reduce(t)
        return t.tolist()

    @property
    def comm_device(self) -> torch.device:
        return self.device if self.device.type == "cuda" else torch.device("cpu")


def init_distributed(device_setting: str = "auto") -> DistContext:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device_setting == "auto":
        device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(device_setting)
        if device.type == "cuda" and device.index is None:
            device = torch.device(f"cuda:{local_rank}")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                timeout=datetime.timedelta(minutes=30))
    return DistContext(rank, world, local_rank, device)


def shutdown(ctx: DistContext) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def compute_dtype(setting: str, device: torch.device) -> torch.dtype:
    if setting == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return torch.bfloat16 if setting == "bf16" else torch.float32


def shard_model(model: torch.nn.Module, ctx: DistContext, param_dtype: torch.dtype) -> torch.nn.Module:
    """FSDP2 per block + root; ``forward_train`` is registered so calling it gathers the root's shards."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard, register_fsdp_forward_method

    mesh = init_device_mesh(ctx.device.type, (ctx.world_size,))
    mp = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32)
    for block in model.blocks:
        fully_shard(block, mesh=mesh, mp_policy=mp)
    fully_shard(model, mesh=mesh, mp_policy=mp)
    register_fsdp_forward_method(model, "forward_train")
    return model


def set_gradient_sync(model: torch.nn.Module, enabled: bool) -> None:
    """FSDP2: skip the reduce-scatter on all but the last micro-batch of an accumulation."""
    fn = getattr(model, "set_requires_gradient_sync", None)
    if fn is not None:
        fn(enabled)


def grad_norm_value(norm) -> float:
    full = getattr(norm, "full_tensor", None)
    return float(full() if full is not None else norm)
