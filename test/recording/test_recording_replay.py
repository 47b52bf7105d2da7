"""Bag -> per-chunk replay inputs, and offline replay through a backend in the recorded call order: the same
seed reproduces the recorded chunks exactly (DigestBackend, and the real LingBot-VA backend on a tiny
checkpoint), another seed or order does not; lingbot-va-replay's exit codes."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest

from lingbot_va_ros.replay.cli import main as replay_main
from lingbot_va_ros.replay.digest_backend import DigestBackend
from lingbot_va_ros.replay.episode import chunk_inputs, infer_actions_per_keyframe, keyframe_indices, load_episode
from lingbot_va_ros.replay.runner import replay_episode
from lingbot_va_ros.replay.synthetic import EXECUTED_OFFSET, write_synthetic_episode

pytestmark = pytest.mark.timeout(120)

DIGEST = "lingbot_va_ros.replay.digest_backend:DigestBackend"


@pytest.fixture(scope="module")
def episodes(tmp_path_factory):
    d = tmp_path_factory.mktemp("episodes")
    meta = {"seed": 5, "embodiment": "demo_sim"}
    return {"sync": write_synthetic_episode(d / "sync", DigestBackend(seed=5), n_chunks=4, metadata=meta),
            "async": write_synthetic_episode(d / "async", DigestBackend(seed=5), n_chunks=4, mode="async",
                                             episode_id="ep-async", metadata=meta)}


def test_bag_to_per_chunk_replay_inputs(episodes):
    syn = episodes["sync"]
    ep = load_episode(syn.bag)
    assert (ep.episode_id, ep.prompt, ep.recorded_mode) == ("ep-synthetic", "stack the blocks", "sync")
    assert [c.start_index for c in ep.chunks] == [0, 16, 48, 80] and [c.rows for c in ep.chunks] == [16, 32, 32, 32]
    for recorded, predicted in zip(ep.chunks, syn.chunks):
        np.testing.assert_array_equal(recorded.actions, predicted)
    assert set(ep.initial_observation) == {"cam_high", "cam_left_wrist", "cam_right_wrist"}
    assert ep.initial_observation["cam_high"].shape == (256, 320, 3)
    from lingbot_va_ros.model.embodiment import load_embodiment

    period = 1.0 / load_embodiment("demo_sim").control_hz  # the synthetic episode runs at demo_sim's rate
    assert infer_actions_per_keyframe(ep) == 4 and ep.control_period_s == pytest.approx(period, rel=1e-6)
    plan = chunk_inputs(ep, 4)
    assert plan[0].keyframe_indices == (3, 7, 11, 15)
    assert plan[1].keyframe_indices == tuple(keyframe_indices(16, 32, 4)) == tuple(range(19, 48, 4))
    for ci, predicted in zip(plan, syn.chunks):
        assert ci.complete and len(ci.keyframes) == ci.chunk.rows // 4
        np.testing.assert_allclose(ci.executed, predicted + EXECUTED_OFFSET, atol=1e-6)
    # a recording that lost inputs says which
    del ep.keyframes[23]
    del ep.executed[50]
    broken = chunk_inputs(ep, 4)
    assert broken[1].missing_keyframes == (23,) and broken[2].missing_actions == (50,) and not broken[1].complete


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_same_seed_reproduces_every_recorded_chunk(episodes, mode):
    ep = load_episode(episodes[mode].bag)
    backend = DigestBackend(seed=5)
    result = replay_episode(ep, backend)
    assert result.mode == mode and result.outcome == "completed"
    assert result.passed(atol=0.0) and result.max_abs == 0.0 and len(result.comparisons) == 4
    if mode == "async":
        assert "imagine:0" in backend.calls and backend.calls.index("imagine:0") < backend.calls.index("predict:1")
    else:
        assert backend.calls[:4] == ["reset", "predict:0", "ground@0", "predict:1"]


def test_other_seed_or_call_order_is_detected(episodes):
    other_seed = replay_episode(load_episode(episodes["sync"].bag), DigestBackend(seed=6))
    assert not other_seed.passed(atol=1e-3) and other_seed.max_abs > 0.1
    wrong_order = replay_episode(load_episode(episodes["async"].bag), DigestBackend(seed=5), mode="sync")
    assert wrong_order.comparisons[0].max_abs == 0.0, "chunk 0 only depends on the initial observation"
    assert not wrong_order.passed(atol=1e-3)


def test_missing_grounding_inputs_abort_the_replay_with_the_reason(episodes):
    ep = load_episode(episodes["sync"].bag)
    del ep.keyframes[23]
    result = replay_episode(ep, DigestBackend(seed=5), feedback_timeout_s=0.2)
    assert result.outcome == "aborted" and "23" in result.reason
    assert not result.passed(atol=1.0) and len(result.comparisons) == 2


def test_replay_cli_exit_codes(episodes, tmp_path, capsys):
    bag = str(episodes["sync"].bag)
    out = tmp_path / "replay.json"
    assert replay_main([bag, "--backend", DIGEST, "--json", str(out)]) == 0   # seed 5 from the bag
    report = json.loads(out.read_text())
    assert report["passed"] and report["seed"] == 5 and len(report["chunks"]) == 4
    assert replay_main([bag, "--backend", DIGEST, "--seed", "6"]) == 1
    assert replay_main([bag, "--backend", DIGEST, "--max-chunks", "1", "--prompt", "other"]) == 1
    assert replay_main([bag, "--backend", DIGEST, "--embodiment", "franka"]) == 2
    assert replay_main([str(tmp_path / "nope")]) == 2
    capsys.readouterr()
    assert replay_main([bag, "--inspect"]) == 0
    text = capsys.readouterr().out
    assert "4 chunks" in text and "chunk   1: actions 16..47 (32 rows)" in text and "8 key frames: ok" in text


@pytest.mark.slow
def test_lingbot_va_backend_replays_bit_identically_with_the_same_seed(tmp_path):
    from lingbot_va_ros.model.backend import LingBotVABackend
    from lingbot_va_ros.model.loading import load_lingbot_va
    from lingbot_va_ros.model.tiny_checkpoint import make_tiny_checkpoint

    t0 = time.perf_counter()
    make_tiny_checkpoint(tmp_path / "ckpt")
    # the replay gets its own freshly loaded model, as a later regression run would
    live = LingBotVABackend(embodiment="demo_sim", seed=0, components=load_lingbot_va(tmp_path / "ckpt", "cpu"))
    write_synthetic_episode(tmp_path / "ep", live, n_chunks=2)
    live.close()
    replayed = replay_episode(load_episode(tmp_path / "ep"), LingBotVABackend(
        embodiment="demo_sim", seed=0, components=load_lingbot_va(tmp_path / "ckpt", "cpu")))
    assert replayed.passed(atol=0.0), [c.max_abs for c in replayed.comparisons]
    print(f"\nLingBot-VA tiny checkpoint: record + replay of 2 chunks in {time.perf_counter() - t0:.1f} s")
