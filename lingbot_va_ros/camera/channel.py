"""One camera role: a bounded queue of raw frames, a decode+resize worker thread and the frame ring.

Sources call :meth:`CameraChannel.submit` from their callback or capture thread; that only appends to a
bounded deque (oldest dropped and counted when full), so a slow decode never stalls the ROS executor.
The worker decodes and resizes to the model size (cv2 releases the GIL, so cameras decode in parallel)
and pushes the frame into the ring under the ingest's shared condition, waking a tick that waits for it.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

from lingbot_va_ros.camera.alignment import estimate_period_ns
from lingbot_va_ros.camera.frames import Frame, FrameRing, RawFrame, RepeatedStamp
from lingbot_va_ros.camera.params import CameraParams
from lingbot_va_ros.camera.stats import LatencyStats, RateMeter, name_os_thread


@dataclass
class ChannelCounters:
    received: int = 0          # frames handed over by the source
    decoded: int = 0           # frames that reached the ring
    dropped_queue: int = 0     # decode queue full: oldest raw frame discarded
    decode_errors: int = 0     # undecodable / unsupported frames
    stamp_repeats: int = 0     # frames whose stamp equals the previous one (dropped)
    stamp_backwards: int = 0   # frames older than the previous one (ring restarted)
    invalid_ticks: int = 0     # ticks this camera made invalid

    @property
    def drops(self) -> int:
        return self.dropped_queue + self.decode_errors + self.stamp_repeats


class CameraChannel:
    def __init__(self, name: str, params: CameraParams, cond: threading.Condition):
        self.name = name
        self.params = params
        self.size = (params.height, params.width)
        self.ring = FrameRing(params.buffer_size)   # guarded by ``cond``
        self.counters = ChannelCounters()
        self.rate = RateMeter()
        self.decode_ms = LatencyStats(512)
        self.last_error = ""
        self.last_problem = ""                      # reason of the last tick this camera made invalid
        self.last_problem_mono_ns = 0
        self._cond = cond                           # shared with the assembler (frames + counters)
        self._pending_faults: list[str] = []        # stamp faults since the last tick, guarded by ``cond``
        self._queue: deque[tuple[int, RawFrame]] = deque()
        self._queue_cond = threading.Condition()
        self.enqueued = 0                           # raw frames accepted (guarded by ``cond``)
        self.completed = 0                          # raw frames finished: stored, rejected or dropped
        self._pending: dict[int, int] = {}          # sequence number -> stamp of frames not finished yet
        self._running = False
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        self._running = True
        self._thread = threading.Thread(target=self._work, name=f"ingest_{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        with self._queue_cond:
            self._running = False
            self._queue_cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    # -- producer side (source callbacks / capture threads) ---------------------------------------------
    def submit(self, raw: RawFrame) -> None:
        self.rate.add(raw.receive_ns)
        with self._cond:
            seq = self.enqueued
            self.enqueued += 1
            self.counters.received += 1
            self._pending[seq] = raw.stamp_ns
        dropped = None
        with self._queue_cond:
            if len(self._queue) >= self.params.queue_size:
                dropped, _ = self._queue.popleft()
            self._queue.append((seq, raw))
            self._queue_cond.notify()
        if dropped is not None:
            with self._cond:
                self.counters.dropped_queue += 1
                self._finish(dropped)

    # -- worker ------------------------------------------------------------------------------------
    def _work(self) -> None:
        name_os_thread(f"ingest_{self.name}")
        while True:
            with self._queue_cond:
                while self._running and not self._queue:
                    self._queue_cond.wait()
                if not self._running:
                    return
                seq, raw = self._queue.popleft()
            self.process(raw, seq)

    def _finish(self, seq: int | None) -> None:
        """Caller holds ``cond``."""
        if seq is not None:
            self._pending.pop(seq, None)
        self.completed += 1
        self._cond.notify_all()

    def process(self, raw: RawFrame, seq: int | None = None) -> None:
        """Decode + resize one raw frame and store it (the worker's step; tests call it directly)."""
        started = time.perf_counter()
        frame = None
        try:
            rgb = raw.decode(raw.payload, self.size)
            if rgb.shape != (self.size[0], self.size[1], 3):
                raise ValueError(f"decoder returned shape {rgb.shape}, expected {self.size[0]}x{self.size[1]}x3")
            rgb.flags.writeable = False
            frame = Frame(raw.stamp_ns, raw.receive_ns, rgb)
            error = ""
        except Exception as exc:  # noqa: BLE001 - any bad frame is counted and reported, never fatal
            error = f"{type(exc).__name__}: {exc}"
        self.decode_ms.add((time.perf_counter() - started) * 1e3)
        with self._cond:
            if frame is None:
                self.counters.decode_errors += 1
                self.last_error = error
            else:
                fault = self.ring.push(frame)
                if fault is None:
                    self.counters.decoded += 1
                else:
                    self._pending_faults.append(fault)
                    self.last_error = fault
                    if isinstance(fault, RepeatedStamp):
                        self.counters.stamp_repeats += 1
                    else:
                        self.counters.stamp_backwards += 1
                        self.counters.decoded += 1
            self._finish(seq)

    # -- consumer side (assembler; caller holds ``cond``) --------------------------------------------
    def pending_could_be_nearer(self, before_seq: int, target_ns: int) -> bool:
        """Whether a frame submitted before ``before_seq`` and still decoding is nearer to ``target_ns`` than
        every frame in the ring (then it is the right one and worth waiting for)."""
        best = self.ring.nearest(target_ns)
        best_dist = abs(best.stamp_ns - target_ns) if best is not None else None
        return any(seq < before_seq and (best_dist is None or abs(stamp - target_ns) < best_dist)
                   for seq, stamp in self._pending.items())

    def take_faults(self) -> list[str]:
        faults, self._pending_faults = self._pending_faults, []
        return faults

    def period_ns(self) -> int | None:
        return estimate_period_ns(self.ring.stamps())

    def queue_length(self) -> int:
        with self._queue_cond:
            return len(self._queue)
