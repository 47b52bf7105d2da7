"""Self-attention KV cache with the official LingBot-VA semantics (spec §3), stored as a linear slab.

Official semantics, per layer: a pool of N_tot = (attn_window//2) * (video + action tokens per chunk) slots.
Every cached forward allocates slots for its tokens (free slots first; when too few, evict the entries with
the smallest id, oldest first, even through the middle of a group), writes K/V with a fresh id
(max live id + 1), attends over every live slot including its own, and - for update 0 - frees its slots
afterwards. ``clear_pred`` frees every ``is_pred`` slot, ``clear`` everything.

Why a slab reproduces it exactly: ids are max-live + 1, so sorting live entries by id is sorting them by
write time, and inside one write the allocator hands out slots in index order, so ties resolve in token
order (assuming a stable argsort over equal ids, as on the CPU where the reference fixture was recorded; the
reference calls ``torch.argsort`` without ``stable=True``, so on CUDA the *which tokens of a cut group*
detail is implementation-defined there). Eviction is therefore plain FIFO over tokens in write order. Attention is permutation-invariant over
keys (RoPE is applied before caching), so only the *set* of live entries matters, not slot positions.

Layout: per layer one preallocated K and one V slab [B, N_phys, H, D] (N_phys = N_tot + slack). Live entries
always occupy one contiguous range [start, end) in write order, so attention reads a view
``slab[:, start:end]`` - no gather and no copy per forward. New tokens are written at ``end``; eviction
advances ``start``; transient writes are undone by moving ``end`` back. The only copies happen on rare events:
when ``end`` runs into N_phys (the live range is moved to the front; with the default slack this is once per
few chunks), or when a clear removes entries from the middle of the range (never in the standard
sync/async flows: predicted entries are always the newest).

Metadata (id, is_pred, RoPE frame tag, phantom flag) is kept once on the CPU, shared by all layers, because
every layer sees the same sequence of writes.
"""
from __future__ import annotations

import math

import torch

from lingbot_va_ros.model.attention import attention

UPDATE_TRANSIENT = 0   # denoising step: attend, then release
UPDATE_PRED = 1        # commit of a prediction (is_pred): removed by clear_pred()
UPDATE_GT = 2          # ground-truth commit


def cache_capacity(attn_window: int, video_tokens_per_chunk: int, action_tokens_per_chunk: int) -> int:
    """Official N_tot: (attn_window // 2) chunks of video + action tokens."""
    return (attn_window // 2) * video_tokens_per_chunk + (attn_window // 2) * action_tokens_per_chunk


class SlabKVCache:
    """KV cache for all self-attention layers of one model (both CFG streams in the batch dim).

    Protocol used by the transformer for one cached forward of ``n`` tokens::

        cache.begin(n, update, frames, batch)   # allocate / evict once for all layers
        out_l = cache.attend(l, q, k, v)         # per layer: write K/V, attend over live entries
        cache.end_forward()                      # release the slots if update == 0
        (cache.abort() instead when the forward raised)
    """

    def __init__(
        self,
        num_layers: int,
        capacity: int,
        batch_size: int,
        num_heads: int,
        head_dim: int,
        *,
        device="cpu",
        dtype=torch.float32,
        slack: int | None = None,
    ):
        if capacity <= 0:
            raise ValueError("cache capacity must be positive")
        self.num_layers = num_layers
        self.capacity = int(capacity)
        self.batch_size = int(batch_size)
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.device = torch.device(device)
        self.dtype = dtype
        # Slack = room to append before the live range must be moved to the front. Default: a quarter of
        # the capacity (moves happen about every capacity/4 appended tokens; memory +25%).
        self.slack = int(slack) if slack is not None else max(64, math.ceil(self.capacity / 4))
        self.n_phys = self.capacity + self.slack
        shape = (self.batch_size, self.n_phys, num_heads, head_dim)
        self.k = [torch.empty(shape, device=self.device, dtype=dtype) for _ in range(num_layers)]
        self.v = [torch.empty(shape, device=self.device, dtype=dtype) for _ in range(num_layers)]
        self.ids = torch.full((self.n_phys,), -1, dtype=torch.int64)
        self.is_pred = torch.zeros(self.n_phys, dtype=torch.bool)
        self.frame = torch.zeros(self.n_phys, dtype=torch.float32)
        self.phantom = torch.zeros(self.n_phys, dtype=torch.bool)
        self.start = 0
        self.end = 0
        self._open: tuple[int, int, int, int] | None = None
        self.num_compactions = 0
        self.num_evicted = 0

    # ------------------------------------------------------------------ state
    @property
    def num_live(self) -> int:
        return self.end - self.start

    def fill(self) -> float:
        return self.num_live / self.capacity

    def live_frames(self) -> torch.Tensor:
        return self.frame[self.start:self.end].clone()

    def live_is_pred(self) -> torch.Tensor:
        return self.is_pred[self.start:self.end].clone()

    def live_phantom(self) -> torch.Tensor:
        return self.phantom[self.start:self.end].clone()

    def live_ids(self) -> torch.Tensor:
        return self.ids[self.start:self.end].clone()

    def live_kv(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Views [B, n_live, H, D] of the live entries of one layer (write order)."""
        return self.k[layer][:, self.start:self.end], self.v[layer][:, self.start:self.end]

    # ------------------------------------------------------------------ clears (rare events)
    def clear(self) -> None:
        self._check_closed()
        self.start = self.end = 0

    def clear_pred(self) -> int:
        """Drop every predicted entry (official ``clear_pred_cache``); returns how many were dropped."""
        self._check_closed()
        return self._remove(self.is_pred[self.start:self.end].clone())

    def clear_frames(self, lo: float, hi: float = math.inf, pred_only: bool = True) -> int:
        """Drop entries whose RoPE frame position is in [lo, hi) (only predicted ones by default)."""
        self._check_closed()
        f = self.frame[self.start:self.end]
        sel = (f >= lo) & (f < hi)
        if pred_only:
            sel &= self.is_pred[self.start:self.end]
        return self._remove(sel)

    def _remove(self, sel: torch.Tensor) -> int:
        n = int(sel.sum())
        if n == 0:
            return 0
        live = self.num_live
        keep = ~sel
        n_keep = live - n
        if n_keep == 0:
            self.start = self.end = 0
        elif not bool(keep[n_keep:].any()):          # removed entries form the newest suffix
            self.end = self.start + n_keep
        elif not bool(keep[:n].any()):               # ... or the oldest prefix
            self.start += n
        else:                                       # holes: move the kept entries to the front
            gidx = keep.nonzero().squeeze(-1) + self.start
            dev_idx = gidx.to(self.device)
            for layer in range(self.num_layers):
                for pool in (self.k, self.v):
                    kept = pool[layer].index_select(1, dev_idx)
                    pool[layer][:, :n_keep].copy_(kept)
            for meta in (self.ids, self.is_pred, self.frame, self.phantom):
                meta[:n_keep] = meta[gidx].clone()
            self.start, self.end = 0, n_keep
            self.num_compactions += 1
        return n

    def _compact_to_front(self) -> None:
        live = self.num_live
        s, e = self.start, self.end
        if s == 0:
            return
        overlap = s < live
        for layer in range(self.num_layers):
            for pool in (self.k, self.v):
                src = pool[layer][:, s:e]
                pool[layer][:, :live].copy_(src.clone() if overlap else src)
        for meta in (self.ids, self.is_pred, self.frame, self.phantom):
            meta[:live] = meta[s:e].clone()
        self.start, self.end = 0, live
        self.num_compactions += 1

    # ------------------------------------------------------------------ allocation
    def _allocate(self, n: int, update: int, frames: torch.Tensor, phantom: bool) -> tuple[int, int]:
        if n > self.capacity:
            raise RuntimeError(f"a forward of {n} tokens does not fit a KV cache of {self.capacity} slots")
        need = self.num_live + n - self.capacity
        if need > 0:  # official allocate_slots: evict the smallest ids (= oldest tokens) first
            self.start += need
            self.num_evicted += need
        if self.end + n > self.n_phys:
            self._compact_to_front()
        w0, w1 = self.end, self.end + n
        new_id = int(self.ids[self.end - 1]) + 1 if self.num_live > 0 else 0
        self.ids[w0:w1] = new_id
        self.is_pred[w0:w1] = update == UPDATE_PRED
        self.phantom[w0:w1] = phantom
        if frames.numel() != n:
            raise ValueError(f"frames has {frames.numel()} entries for {n} tokens")
        self.frame[w0:w1] = frames.detach().to("cpu", torch.float32).reshape(-1)
        self.end = w1
        return w0, w1

    def reserve(self, n: int, frames: torch.Tensor) -> None:
        """Account for a predicted commit of n tokens without computing it (skipped action commit).

        The slots are allocated (evicting exactly what the real commit would evict, so later cache contents
        stay bit-exact) and flagged as predicted *phantoms* without K/V. They must be removed (clear_pred /
        clear_frames) before the next attention, which ``begin`` enforces.
        """
        self._check_closed()
        self._allocate(n, UPDATE_PRED, frames, phantom=True)

    def has_phantoms(self) -> bool:
        return bool(self.phantom[self.start:self.end].any())

    # ------------------------------------------------------------------ forward protocol
    def begin(self, n: int, update: int, frames: torch.Tensor, batch: int | None = None) -> None:
        self._check_closed()
        batch = self.batch_size if batch is None else int(batch)
        if batch > self.batch_size:
            raise ValueError(f"batch {batch} exceeds the cache batch {self.batch_size}")
        if update != UPDATE_TRANSIENT and batch != self.batch_size:
            raise ValueError("persistent cache writes must cover every CFG stream")
        if self.has_phantoms():
            raise RuntimeError("KV cache holds reserved (skipped-commit) entries; clear them before attending")
        w0, w1 = self._allocate(n, update, frames, phantom=False)
        self._open = (w0, w1, update, batch)

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        w0, w1, _, b = self._open
        kp, vp = self.k[layer], self.v[layer]
        kp[:b, w0:w1] = k
        vp[:b, w0:w1] = v
        return attention(q, kp[:b, self.start:self.end], vp[:b, self.start:self.end])

    def end_forward(self) -> None:
        if self._open is None:
            return
        w0, _, update, _ = self._open
        self._open = None
        if update == UPDATE_TRANSIENT:
            self.end = w0

    def abort(self) -> None:
        """Close a forward that failed midway: its tokens are dropped whatever the update mode."""
        if self._open is not None:
            w0 = self._open[0]
            self._open = None
            self.end = max(w0, self.start)

    def _check_closed(self) -> None:
        if self._open is not None:
            raise RuntimeError("KV cache forward still open")
