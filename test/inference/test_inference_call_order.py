"""Call order of the real world model under each pipeline mode (in-process, no ROS).

``EpisodeRunner`` drives the real ``LingBotVABackend`` on a tiny random checkpoint while a simulated arm thread
executes the published chunks and feeds back model-sized key frames and the executed rows, like executor +
camera ingest do. The assertions read the world model's *own* ``call_log`` (one entry per transformer forward)
and its frame bookkeeping, so they check what the model really did, not what the pipeline believes it asked for:

- sync        = infer0, ground0, infer1, ground1, ...                                   (spec §6.1, Alg. 1)
- async       = infer0, imagine0, infer1, ground0, imagine1, infer2, ground1, ...       (spec §6.3, Alg. 2)
- async_naive = like async with keep (re-commit the chunk's own prediction) for imagine  (spec §6.2)
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np
import pytest

from lingbot_va_ros.inference.inputs import EpisodeInputs
from lingbot_va_ros.inference.pipeline import DeadlinePolicy, EpisodeLimits, EpisodeRunner

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

CHUNKS = 4
# forward stages of one world-model operation, in the order the world model runs them
OPS = {
    "infer": ("infer.video", "infer.video_commit", "infer.action", "infer.action_commit_reserved",
              "infer.action_commit"),
    "ground": ("ground.video", "ground.action"),
    "imagine": ("imagine.action_known", "imagine.video", "imagine.video_commit"),
    "keep": ("keep.video", "keep.action"),
}
STAGE_OP = {stage: op for op, stages in OPS.items() for stage in stages}


@pytest.fixture(scope="module")
def backend():
    from lingbot_va_ros.model.backend import LingBotVABackend
    from lingbot_va_ros.model.tiny_checkpoint import shared_tiny_checkpoint

    b = LingBotVABackend(shared_tiny_checkpoint(), embodiment="demo_sim", device="cpu", dtype="float32")
    yield b
    b.close()


@dataclass
class Trace:
    """What the world model did: its own forward log plus frame bookkeeping around each episode call."""

    call_log: list[str] = field(default_factory=list)                 # world_model.call_log after the episode
    forwards: list[tuple[str, int]] = field(default_factory=list)     # (stage, RoPE frame_start)
    # (op, frame_st_id before, next_frame before, frame_st_id after, next_frame after)
    ops: list[tuple[str, int, int, int, int]] = field(default_factory=list)
    grounded: list[tuple[int, np.ndarray]] = field(default_factory=list)   # backend.ground(start, rows)


def _instrument(backend, monkeypatch) -> Trace:
    """Wrap the world model's episode calls and forwards (instance attributes, undone by monkeypatch)."""
    wm, trace = backend.world_model, Trace()
    forward = wm._forward

    def _forward(x, timesteps, fs, *args, **kwargs):
        trace.forwards.append((args[2] if len(args) > 2 else kwargs.get("stage"), int(fs)))
        return forward(x, timesteps, fs, *args, **kwargs)

    monkeypatch.setattr(wm, "_forward", _forward)
    for name, op in (("infer", "infer"), ("ground", "ground"), ("imagine", "imagine"), ("keep_prediction", "keep")):
        original = getattr(wm, name)

        def wrapped(*args, _original=original, _op=op, **kwargs):
            before = (wm.frame_st_id, wm.next_frame)
            out = _original(*args, **kwargs)
            trace.ops.append((_op, *before, wm.frame_st_id, wm.next_frame))
            return out

        monkeypatch.setattr(wm, name, wrapped)
    ground = backend.ground

    def _ground(keyframes, executed, start_index):
        trace.grounded.append((int(start_index), np.array(executed, copy=True)))
        return ground(keyframes, executed, start_index)

    monkeypatch.setattr(backend, "ground", _ground)
    return trace


class SimArm:
    """Executes published chunks in index order, one action per ``period``; after every ``actions_per_keyframe``
    actions reports a model-sized key frame (distinct pixels each time) and the rows it executed. Holds when no
    chunk covers the next index, as the executor does."""

    def __init__(self, inputs: EpisodeInputs, period: float = 0.002):
        self.inputs, self.spec, self.period = inputs, inputs.spec, period
        self.rows: dict[int, np.ndarray] = {}
        self.published: list = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._rng = np.random.default_rng(7)
        self.thread = threading.Thread(target=self._run, daemon=True, name="sim_arm")

    def keyframe(self) -> dict[str, np.ndarray]:
        # coarse random blocks upsampled: image-like, different every key frame, exact model sizes
        out = {}
        for cam in self.spec.camera_names:
            h, w = self.spec.image_sizes[cam]
            coarse = self._rng.integers(0, 256, (h // 16, w // 16, 3), dtype=np.uint8)
            out[cam] = np.ascontiguousarray(coarse.repeat(16, 0).repeat(16, 1))
        return out

    def publish(self, pub) -> None:
        p = pub.prediction
        with self._lock:
            self.published.append(p)
            for k, row in enumerate(p.actions):
                self.rows[p.start_index + k] = row

    def _run(self) -> None:
        step = self.spec.actions_per_keyframe
        self.inputs.add_keyframe("ep", -1, 0, self.keyframe())
        i = 0
        while not self._stop.is_set():
            time.sleep(self.period)
            with self._lock:
                if i not in self.rows:
                    continue
                done = np.stack([self.rows[j] for j in range(i + 1 - step, i + 1)]) if (i + 1) % step == 0 else None
            if done is not None:
                self.inputs.add_keyframe("ep", i, time.monotonic_ns(), self.keyframe())
                self.inputs.add_executed("ep", i + 1 - step, done)
            i += 1

    def __enter__(self) -> "SimArm":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self.thread.join(2)


def _episode(backend, mode, monkeypatch):
    trace = _instrument(backend, monkeypatch)
    inputs = EpisodeInputs(backend.spec)
    inputs.start("ep")
    with SimArm(inputs) as arm:
        # DeadlinePolicy(0): a slow CI box must not switch an async episode to sync and change the order
        runner = EpisodeRunner(backend, inputs, mode, arm.publish, limits=EpisodeLimits(max_chunks=CHUNKS),
                               deadline=DeadlinePolicy(0), feedback_timeout=60.0)
        outcome = runner.run("pick up the red block and place it on the blue plate")
    trace.call_log = list(backend.world_model.call_log)
    assert outcome == ("completed", f"reached max_chunks={CHUNKS}"), outcome
    return trace, arm.published, runner


def _op_sequence(trace: Trace) -> list[str]:
    """The world model's call_log collapsed to operations: a new op starts when the op kind changes, or when an
    infer's video loop starts again after its action loop (two infers in a row)."""
    assert trace.call_log[0] == "reset"
    log = trace.call_log[1:]
    ops: list[str] = []
    prev = None
    for stage in log:
        op = STAGE_OP[stage]
        restart = op == "infer" and stage == "infer.video" and prev is not None and prev.startswith("infer.action")
        if not ops or ops[-1] != op or restart:
            ops.append(op)
        prev = stage
    return ops


def _numbered(ops: list[str]) -> list[str]:
    """infer/imagine/keep are numbered by the chunk they concern, ground by the chunk it grounds."""
    count: dict[str, int] = {}
    out = []
    for op in ops:
        out.append(f"{op}{count.get(op, 0)}")
        count[op] = count.get(op, 0) + 1
    return out


def _check_common(backend, trace: Trace, published) -> None:
    emb = backend.embodiment
    fcs = emb.frame_chunk_size
    # the world model's log agrees with the forwards the wrapper saw (a reserved action commit runs no forward)
    assert [s for s in trace.call_log[1:] if not s.endswith("_commit_reserved")] == [s for s, _ in trace.forwards]
    # chunk start indices tile the action timeline: first chunk drops its conditioning frame, then full chunks
    assert [p.chunk_index for p in published] == list(range(CHUNKS))
    starts = [p.start_index for p in published]
    sizes = [p.actions.shape[0] for p in published]
    assert sizes == [emb.first_chunk_actions] + [emb.actions_per_chunk] * (CHUNKS - 1)
    assert starts == [0] + list(np.cumsum(sizes)[:-1])
    assert all(np.isfinite(p.actions).all() and p.actions.shape[1] == emb.num_channels for p in published)
    # infer n predicts at latent frame n * F (absolute RoPE positions, identical in every mode)
    infers = [t for t in trace.ops if t[0] == "infer"]
    assert [t[2] for t in infers] == [n * fcs for n in range(CHUNKS)]
    # each forward of an infer runs at that infer's frame position
    fs_of_infer = []
    for stage, fs in trace.forwards:
        if stage == "infer.video" and (not fs_of_infer or fs_of_infer[-1] != fs):
            fs_of_infer.append(fs)
    assert fs_of_infer == [n * fcs for n in range(CHUNKS)]
    # ground n writes ground truth at frame n * F, after which frame_st_id = (n + 1) * F and the next infer
    # position returns to frame_st_id; the rows grounded are exactly those executed for chunk n
    grounds = [t for t in trace.ops if t[0] == "ground"]
    for n, (_op, st_before, _nf, st_after, nf_after) in enumerate(grounds):
        assert (st_before, st_after, nf_after) == (n * fcs, (n + 1) * fcs, (n + 1) * fcs), (n, grounds)
    ground_fs = [fs for stage, fs in trace.forwards if stage.startswith("ground.")]
    assert ground_fs == [n * fcs for n in range(len(grounds)) for _ in (0, 1)]
    for n, (start, rows) in enumerate(trace.grounded):
        assert start == published[n].start_index
        np.testing.assert_array_equal(rows, published[n].actions)
    # the cache never overflows its window in a short episode and still holds entries
    assert 0.0 < backend.cache_fill() <= 1.0


def test_sync_alternates_infer_and_ground(backend, monkeypatch):
    trace, published, runner = _episode(backend, "sync", monkeypatch)
    assert _numbered(_op_sequence(trace)) == ["infer0", "ground0", "infer1", "ground1", "infer2", "ground2",
                                              "infer3"]
    _check_common(backend, trace, published)
    # sync never writes predicted entries beyond the next infer: frame_st_id == next_frame before every infer
    infers = [t for t in trace.ops if t[0] == "infer"]
    assert all(st == nf for _op, st, nf, _a, _b in infers)
    assert runner.stats.calls == ["reset", "predict:0", "ground:0", "predict:1", "ground:1", "predict:2",
                                  "ground:2", "predict:3"]


def test_async_follows_algorithm_2(backend, monkeypatch):
    trace, published, runner = _episode(backend, "async", monkeypatch)
    assert _numbered(_op_sequence(trace)) == ["infer0", "imagine0", "infer1", "ground0", "imagine1", "infer2",
                                              "ground1", "imagine2", "infer3"]
    _check_common(backend, trace, published)
    fcs = backend.embodiment.frame_chunk_size
    # imagine n sits right after the grounded history (frame_st_id = n * F, forwards at that position) and
    # moves next_frame one chunk on, so infer n+1 runs at (n + 1) * F with chunk n only imagined
    imagines = [t for t in trace.ops if t[0] == "imagine"]
    assert [(st, st_a, nf_a) for _o, st, _nf, st_a, nf_a in imagines] == \
        [(n * fcs, n * fcs, (n + 1) * fcs) for n in range(CHUNKS - 1)]
    imagine_fs = sorted({fs for stage, fs in trace.forwards if stage.startswith("imagine.")})
    assert imagine_fs == [n * fcs for n in range(CHUNKS - 1)]
    # the model is one chunk behind reality: before infer n+1 (n >= 1) exactly chunks 0..n-1 are grounded
    infers = [t for t in trace.ops if t[0] == "infer"]
    assert [st for _o, st, _nf, _a, _b in infers] == [0, 0] + [(n - 1) * fcs for n in range(2, CHUNKS)]
    # and the pipeline's own record agrees: imagine n is given chunk n, the chunk executing meanwhile
    assert runner.stats.calls == ["reset", "predict:0", "imagine:0", "predict:1", "ground:0", "imagine:1",
                                  "predict:2", "ground:1", "imagine:2", "predict:3"]


def test_async_naive_keeps_the_prediction_instead_of_imagining(backend, monkeypatch):
    trace, published, runner = _episode(backend, "async_naive", monkeypatch)
    ops = _numbered(_op_sequence(trace))
    # keep re-commits chunk n's own predicted video/actions (none of them imagined, no FDM forward). Right after
    # infer0 the action entries are only reserved (skip_action_commit), so keep0 writes them as well.
    assert ops == ["infer0", "keep0", "infer1", "ground0", "keep1", "infer2", "ground1", "keep2", "infer3"]
    assert not any(stage.startswith("imagine.") for stage, _fs in trace.forwards)
    _check_common(backend, trace, published)
    fcs = backend.embodiment.frame_chunk_size
    keeps = [t for t in trace.ops if t[0] == "keep"]
    assert [(st, nf_a) for _o, st, _nf, _a, nf_a in keeps] == [(n * fcs, (n + 1) * fcs) for n in range(CHUNKS - 1)]
    keep_fs = sorted({fs for stage, fs in trace.forwards if stage.startswith("keep.")})
    assert keep_fs == [n * fcs for n in range(CHUNKS - 1)]
    assert runner.stats.calls == ["reset", "predict:0", "keep:0", "predict:1", "ground:0", "keep:1",
                                  "predict:2", "ground:1", "keep:2", "predict:3"]



def test_cancel_during_a_prediction_publishes_nothing_more(backend, monkeypatch):
    """A cancel that arrives while the model predicts: the finished prediction is dropped, nothing else runs."""
    inputs = EpisodeInputs(backend.spec)
    inputs.start("ep")
    with SimArm(inputs) as arm:
        runner = EpisodeRunner(backend, inputs, "async", arm.publish, limits=EpisodeLimits(max_chunks=CHUNKS),
                               deadline=DeadlinePolicy(0), feedback_timeout=60.0)
        predict = backend.predict_chunk

        def predict_then_cancel():
            pred = predict()
            if pred.chunk_index == 2:
                runner.cancel_event.set()   # as the node does when the action client cancels mid-call
            return pred

        monkeypatch.setattr(backend, "predict_chunk", predict_then_cancel)
        outcome = runner.run("stack the three bowls")
    assert outcome == ("cancelled", "cancel requested")
    assert [p.chunk_index for p in arm.published] == [0, 1]
    assert runner.stats.calls[-1] == "predict:2" and runner.stats.chunks == 2
