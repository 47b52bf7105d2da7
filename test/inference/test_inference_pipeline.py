"""The pipeline core: backend call order per mode, what is published before what, deadlines, aborts (no ROS).

The fake arm and backend run on real threads; every ordering the tests assert is made certain by gates (the arm
waits at a chunk's last row for the next chunk; the backend waits for the arm) rather than by sleeps racing each
other, so the assertions hold however slowly the host runs. Idle time and latency are benchmarks
(benchmarks/bench_closed_loop.py)."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from lingbot_va_ros.inference.backend import BackendSpec, ChunkPrediction, PolicyBackend
from lingbot_va_ros.inference.inputs import EpisodeInputs
from lingbot_va_ros.inference.pipeline import DeadlinePolicy, EpisodeLimits, EpisodeRunner
from lingbot_va_ros.testing.ros_harness import deadline_s, wait_until

pytestmark = pytest.mark.timeout(60)

SPEC = BackendSpec(camera_names=("cam",), image_sizes={"cam": (8, 8)}, action_space="joint",
                   channel_names=("a", "b"), actions_per_chunk=8, actions_per_keyframe=2, keyframes_per_chunk=4,
                   control_hz=200.0)


class ScriptedBackend(PolicyBackend):
    """Records the calls; chunk n's actions are all n so tests can see what was published. Predicting takes
    ``latency`` seconds. First chunk has 4 rows (as LingBot-VA's first chunk drops its conditioning frame)."""

    def __init__(self, latency: float = 0.005, bad_chunk: int = -1, before_predict=None):
        self.latency, self.bad_chunk = latency, bad_chunk
        self.before_predict = before_predict      # called with the chunk index before predicting it
        self.calls: list[str] = []
        self.next_chunk = 0
        self.next_start = 0

    @property
    def spec(self) -> BackendSpec:
        return SPEC

    def reset(self, prompt, initial_observation):
        self.calls.append("reset")
        self.next_chunk = self.next_start = 0

    def predict_chunk(self):
        if self.before_predict is not None:
            self.before_predict(self.next_chunk)
        time.sleep(self.latency)
        n = 4 if self.next_chunk == 0 else 8
        acts = np.full((n, 2), float(self.next_chunk), np.float32)
        if self.next_chunk == self.bad_chunk:
            acts[1, 1] = np.nan
        pred = ChunkPrediction(self.next_chunk, self.next_start, acts)
        self.calls.append(f"predict:{self.next_chunk}")
        self.next_chunk += 1
        self.next_start += n
        return pred

    def ground(self, keyframes, executed_actions, start_index):
        assert len(keyframes) == executed_actions.shape[0] // 2
        self.calls.append(f"ground@{start_index}")

    def imagine(self, executing):
        self.calls.append(f"imagine:{executing.chunk_index}")

    def keep_prediction(self, executing):
        self.calls.append(f"keep:{executing.chunk_index}")


class FakeArm:
    """Executes published chunks at the control rate and reports key frames + executed rows, like the
    executor + camera ingest pair; holds (reports nothing) when no chunk covers the next index.

    ``gate_until``: before the last row of chunk n (n < gate_until) the arm waits until chunk n+1 is published and
    records whether it came (``fed_before_end``): an async pipeline publishes it without chunk n's feedback."""

    def __init__(self, inputs: EpisodeInputs, period: float, stall_after: int | None = None, gate_until: int = 0):
        self.inputs, self.period, self.stall_after = inputs, period, stall_after
        self.gate_until = gate_until
        self.rows: dict[int, np.ndarray] = {}
        self.finish_time: dict[int, float] = {}
        self.chunk_rows: dict[int, tuple[int, int]] = {}
        self.publish_time: dict[int, float] = {}
        self.fed_before_end: dict[int, bool] = {}
        self.idle_ticks = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._published = threading.Condition(self._lock)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def publish(self, pub):
        p = pub.prediction
        with self._lock:
            self.publish_time[p.chunk_index] = time.monotonic()
            self.chunk_rows[p.chunk_index] = (p.start_index, p.actions.shape[0])
            for k, row in enumerate(p.actions):
                self.rows[p.start_index + k] = row
            self._published.notify_all()

    def wait_finished(self, chunk: int) -> None:
        wait_until(lambda: chunk in self.finish_time, 30, f"the arm finishing chunk {chunk}")

    def _gate(self, i: int) -> None:
        for c, (s, n) in list(self.chunk_rows.items()):
            if i == s + n - 1 and c < self.gate_until:
                with self._published:
                    fed = self._published.wait_for(lambda: c + 1 in self.publish_time or self._stop.is_set(),
                                                   timeout=deadline_s(10.0))
                self.fed_before_end[c] = bool(fed) and c + 1 in self.publish_time

    def _run(self):
        self.inputs.add_keyframe("ep", -1, 0, {"cam": np.zeros((8, 8, 3), np.uint8)})
        i = 0
        while not self._stop.is_set():
            time.sleep(self.period)
            with self._lock:
                row = self.rows.get(i)
            if row is None or (self.stall_after is not None and i >= self.stall_after):
                self.idle_ticks += 1
                continue
            self._gate(i)
            for c, (s, n) in list(self.chunk_rows.items()):   # executed: recorded before it is reported
                if i == s + n - 1:
                    self.finish_time[c] = time.monotonic()
            if (i + 1) % 2 == 0:
                self.inputs.add_keyframe("ep", i, i, {"cam": np.zeros((8, 8, 3), np.uint8)})
                self.inputs.add_executed("ep", i - 1, np.stack([self.rows[i - 1], row]))
            i += 1

    def stop(self):
        self._stop.set()
        with self._published:
            self._published.notify_all()
        self.thread.join(2)


def _run(mode, backend, max_chunks=5, stall_after=None, deadline=None, feedback_timeout=2.0, gate=False,
         on_arm=None):
    inputs = EpisodeInputs(SPEC)
    inputs.start("ep")
    arm = FakeArm(inputs, 1.0 / SPEC.control_hz, stall_after, gate_until=max_chunks - 1 if gate else 0)
    if on_arm is not None:
        on_arm(arm)
    runner = EpisodeRunner(backend, inputs, mode, arm.publish, limits=EpisodeLimits(max_chunks=max_chunks),
                           deadline=deadline or DeadlinePolicy(0), feedback_timeout=feedback_timeout)
    arm.thread.start()
    try:
        outcome = runner.run("do it")
    finally:
        arm.stop()
    return outcome, runner, arm


def test_sync_grounds_each_chunk_before_predicting_the_next():
    backend = ScriptedBackend()
    (outcome, reason), runner, _ = _run("sync", backend, max_chunks=4)
    assert outcome == "completed" and "max_chunks" in reason
    assert backend.calls == ["reset", "predict:0", "ground@0", "predict:1", "ground@4", "predict:2",
                             "ground@12", "predict:3"]


def test_async_follows_algorithm_2_and_publishes_before_the_current_chunk_ends():
    backend = ScriptedBackend(latency=0.005)
    (outcome, _), runner, arm = _run("async", backend, max_chunks=5, gate=True)
    assert outcome == "completed"
    assert backend.calls == ["reset", "predict:0", "imagine:0", "predict:1", "ground@0", "imagine:1", "predict:2",
                             "ground@4", "imagine:2", "predict:3", "ground@12", "imagine:3", "predict:4"]
    # chunk n+1 is published while chunk n is still executing (the arm waits at chunk n's last row; it never had to
    # give up waiting): the prediction does not need chunk n's feedback
    assert arm.fed_before_end == {0: True, 1: True, 2: True, 3: True}


def test_async_naive_keeps_predictions_instead_of_imagining():
    backend = ScriptedBackend()
    (outcome, _), _, _ = _run("async_naive", backend, max_chunks=3)
    assert outcome == "completed"
    assert backend.calls == ["reset", "predict:0", "keep:0", "predict:1", "ground@0", "keep:1", "predict:2"]


def test_async_keeps_the_arm_fed_while_sync_waits_for_the_chunks_end():
    """Why async removes the arm's idle time (measured in benchmarks/bench_closed_loop.py): async has the next
    chunk ready before the current one ends; sync computes it only after the current chunk's last action."""
    _, _, arm = _run("async", ScriptedBackend(latency=0.03), max_chunks=6, gate=True)
    assert arm.fed_before_end == {n: True for n in range(5)}
    _, _, arm = _run("sync", ScriptedBackend(latency=0.03), max_chunks=6)
    assert all(arm.finish_time[n] <= arm.publish_time[n + 1] for n in range(5)), (arm.finish_time, arm.publish_time)


def test_deadline_misses_fall_back_to_sync():
    # every prediction (from chunk 1 on) finishes only after the arm executed the chunk it should follow: a miss
    # for certain, whatever the host's speed
    holder = {}
    backend = ScriptedBackend(before_predict=lambda n: n >= 1 and holder["arm"].wait_finished(n - 1))
    (outcome, _), runner, _ = _run("async", backend, max_chunks=6, deadline=DeadlinePolicy(2),
                                   on_arm=lambda arm: holder.update(arm=arm))
    assert outcome == "completed"
    assert runner.stats.fell_back_to_sync and runner.stats.deadline_misses >= 2
    last_imagine = max(i for i, c in enumerate(backend.calls) if c.startswith("imagine"))
    after = [c.split("@")[0].split(":")[0] for c in backend.calls[last_imagine + 2:]]
    # sync from then on: the pending chunk is grounded, then ground/predict alternate
    assert after[:2] == ["ground", "ground"] and after[-4:] == ["ground", "predict", "ground", "predict"]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_completed_episode_returns_after_the_arm_executed_every_published_chunk(mode):
    inputs = EpisodeInputs(SPEC)
    inputs.start("ep")
    arm = FakeArm(inputs, 1.0 / SPEC.control_hz)
    runner = EpisodeRunner(ScriptedBackend(), inputs, mode, arm.publish, limits=EpisodeLimits(max_chunks=3),
                           deadline=DeadlinePolicy(0), feedback_timeout=2.0)
    arm.thread.start()
    try:
        outcome, reason = runner.run("x")
        returned = time.monotonic()
    finally:
        arm.stop()
    assert (outcome, reason) == ("completed", "reached max_chunks=3")
    assert set(arm.finish_time) == {0, 1, 2} and arm.finish_time[2] <= returned


def test_completion_without_the_last_chunks_feedback_says_so():
    # 4 + 8 rows are executed, the third chunk never is: completed, with the missing feedback named
    (outcome, reason), _, _ = _run("sync", ScriptedBackend(), max_chunks=3, stall_after=12, feedback_timeout=1.0)
    assert outcome == "completed" and reason.startswith("reached max_chunks=3")
    assert "did not report the last published actions (up to 19)" in reason


def test_stalled_feedback_aborts_with_a_reason_naming_the_missing_inputs():
    (outcome, reason), _, _ = _run("sync", ScriptedBackend(), max_chunks=0, stall_after=6, feedback_timeout=1.0)
    assert outcome == "aborted"
    assert "executor" in reason and "camera ingest" in reason


def test_non_finite_model_output_aborts_without_publishing():
    published = []
    inputs = EpisodeInputs(SPEC)
    inputs.start("ep")
    inputs.add_keyframe("ep", -1, 0, {"cam": np.zeros((8, 8, 3), np.uint8)})
    runner = EpisodeRunner(ScriptedBackend(bad_chunk=0), inputs, "sync", published.append)
    outcome, reason = runner.run("x")
    assert outcome == "aborted" and "invalid chunk 0" in reason and published == []


def test_cancel_and_missing_initial_observation():
    inputs = EpisodeInputs(SPEC)
    inputs.start("ep")
    runner = EpisodeRunner(ScriptedBackend(), inputs, "sync", lambda p: None, initial_timeout=0.2)
    assert runner.run("x")[0] == "aborted"
    runner = EpisodeRunner(ScriptedBackend(), inputs, "sync", lambda p: None, initial_timeout=5)
    threading.Timer(0.1, runner.cancel_event.set).start()
    assert runner.run("x") == ("cancelled", "cancel requested")


def test_inputs_reject_wrong_episode_shapes_and_non_finite():
    from lingbot_va_ros.inference.inputs import InputError, validate_keyframe

    inputs = EpisodeInputs(SPEC)
    inputs.start("ep")
    with pytest.raises(InputError, match="wrong episode"):
        inputs.add_executed("other", 0, np.zeros((2, 2), np.float32))
    with pytest.raises(InputError, match="bad shape"):
        inputs.add_executed("ep", 0, np.zeros((2, 3), np.float32))
    with pytest.raises(InputError, match="non-finite"):
        inputs.add_executed("ep", 0, np.array([[np.inf, 0]], np.float32))
    with pytest.raises(InputError, match="do not match"):
        validate_keyframe(SPEC, ["other"], [np.zeros((8, 8, 3), np.uint8)])
    with pytest.raises(InputError, match="expects 8x8"):
        validate_keyframe(SPEC, ["cam"], [np.zeros((8, 9, 3), np.uint8)])
