"""LingBotVABackend end to end on a tiny checkpoint: timeline, grounding inputs, async steps, validation."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lingbot_va_ros.inference.backend import ChunkPrediction, PolicyBackend
from lingbot_va_ros.model.actions import normalize_used
from lingbot_va_ros.model.backend import LingBotVABackend, NonFiniteActionsError
from lingbot_va_ros.model.loading import load_lingbot_va
from lingbot_va_ros.model.tiny_checkpoint import shared_tiny_checkpoint

FAST = {"num_inference_steps": 2, "action_num_inference_steps": 2}
# demo_sim's T-shape at 1/16 of the pixels (64x64 head, 32x32 wrists -> 6x4 latent canvas): the same code
# paths as the real geometry, which test_sync_episode_reset_predict_ground_predict runs, at a fraction of the cost
SMALL = {**FAST, "cameras": [{"name": "cam_high", "height": 64, "width": 64},
                             {"name": "cam_left_wrist", "height": 32, "width": 32},
                             {"name": "cam_right_wrist", "height": 32, "width": 32}]}


@pytest.fixture(scope="module")
def checkpoint():
    return shared_tiny_checkpoint()


@pytest.fixture(scope="module")
def components(checkpoint):
    return load_lingbot_va(checkpoint, "cpu", torch.float32)


@pytest.fixture
def backend(components):
    return LingBotVABackend(embodiment="demo_sim", components=components, seed=7, embodiment_overrides=SMALL)


@pytest.fixture
def full_size_backend(components):
    return LingBotVABackend(embodiment="demo_sim", components=components, seed=7, embodiment_overrides=FAST)


def keyframe(spec, seed: int = 0):
    rng = np.random.default_rng(seed)
    return {cam: rng.integers(0, 256, (*spec.image_sizes[cam], 3), dtype=np.uint8) for cam in spec.camera_names}


def keyframes(spec, n: int, seed: int = 0):
    return [keyframe(spec, seed + i) for i in range(n)]


def test_spec_follows_the_embodiment(full_size_backend):
    backend = full_size_backend
    spec = backend.spec
    assert isinstance(backend, PolicyBackend)
    assert spec.camera_names == ("cam_high", "cam_left_wrist", "cam_right_wrist")
    assert spec.image_sizes["cam_left_wrist"] == (128, 160)
    assert (spec.action_space, len(spec.channel_names)) == ("joint", 14)
    assert (spec.actions_per_chunk, spec.actions_per_keyframe, spec.keyframes_per_chunk) == (32, 4, 8)
    assert spec.control_hz == 30 and spec.has_video


def test_sync_episode_reset_predict_ground_predict(full_size_backend):
    backend = full_size_backend
    spec = backend.spec
    backend.reset("pick up the red block", keyframe(spec))
    assert backend.cache_fill() == 0.0
    p0 = backend.predict_chunk()
    assert (p0.chunk_index, p0.start_index, p0.actions.shape, p0.actions.dtype) == (0, 0, (16, 14), np.float32)
    assert np.isfinite(p0.actions).all() and {"video", "action"} <= set(p0.timings)
    backend.ground(keyframes(spec, 4, 1), p0.actions, p0.start_index)
    fill = backend.cache_fill()
    assert fill > 0
    p1 = backend.predict_chunk()
    assert (p1.chunk_index, p1.start_index, p1.actions.shape) == (1, 16, (32, 14))
    backend.ground(keyframes(spec, 8, 5), p1.actions, p1.start_index)
    assert backend.cache_fill() > fill
    p2 = backend.predict_chunk()
    assert (p2.chunk_index, p2.start_index) == (2, 48)
    assert backend.world_model.frame_st_id == 4


def test_ground_hands_the_world_model_latents_and_the_placeholder_chunk(backend, monkeypatch):
    spec, emb = backend.spec, backend.embodiment
    calls = []
    real_ground = backend.world_model.ground
    monkeypatch.setattr(backend.world_model, "ground",
                        lambda lat, act: (calls.append((lat.clone(), np.array(act))), real_ground(lat, act))[1])
    backend.reset("open the drawer", keyframe(spec))
    p0 = backend.predict_chunk()
    backend.ground(keyframes(spec, 4, 1), p0.actions, 0)
    latents, chunk = calls[0]
    assert latents.shape == (48, 1, 6, 4)                          # 4 key frames -> 1 latent (init prepended inside)
    assert chunk.shape == (14, 2, 16)
    np.testing.assert_array_equal(chunk[:, 1].T, p0.actions)      # frame 1 = the executed rows
    # frame 0 = the placeholder, which re-normalises to exactly the zeros the model pinned there
    frame0 = normalize_used(chunk[:, :1], emb.used_action_channel_ids, emb.q01, emb.q99)
    np.testing.assert_allclose(frame0, 0.0, atol=1e-6)
    p1 = backend.predict_chunk()
    backend.ground(keyframes(spec, 8, 5), p1.actions, p1.start_index)
    latents, chunk = calls[1]
    assert latents.shape == (48, 2, 6, 4)
    np.testing.assert_array_equal(chunk.transpose(1, 2, 0).reshape(32, 14), p1.actions)


def test_episodes_are_reproducible_from_the_seed(backend, components):
    spec = backend.spec
    backend.reset("stack the bowls", keyframe(spec))
    a = backend.predict_chunk().actions
    backend.reset("stack the bowls", keyframe(spec))
    b = backend.predict_chunk().actions
    np.testing.assert_array_equal(a, b)
    other = LingBotVABackend(embodiment="demo_sim", components=components, seed=8, embodiment_overrides=SMALL)
    other.reset("stack the bowls", keyframe(spec))
    assert not np.array_equal(a, other.predict_chunk().actions)


def test_async_fdm_flow(backend):
    spec = backend.spec
    backend.reset("hand over the block", keyframe(spec))
    p0 = backend.predict_chunk()
    backend.imagine(p0)
    p1 = backend.predict_chunk()
    assert p1.start_index == 16
    with pytest.raises(ValueError, match="not the chunk right after the grounded history"):
        backend.imagine(p1)
    backend.ground(keyframes(spec, 4, 1), p0.actions, p0.start_index)
    backend.imagine(p1)
    p2 = backend.predict_chunk()
    assert (p2.chunk_index, p2.start_index) == (2, 48)
    backend.ground(keyframes(spec, 8, 5), p1.actions, p1.start_index)
    assert np.isfinite(p2.actions).all()


def test_naive_async_flow(backend):
    spec = backend.spec
    backend.reset("shake the bottle", keyframe(spec))
    p0 = backend.predict_chunk()
    backend.keep_prediction(p0)
    p1 = backend.predict_chunk()
    backend.ground(keyframes(spec, 4, 1), p0.actions, 0)
    backend.keep_prediction(p1)
    p2 = backend.predict_chunk()
    assert p2.start_index == 48 and np.isfinite(p2.actions).all()


def test_display_latents_are_a_copy_with_the_action_index_each_frame_predicts(backend):
    spec, emb = backend.spec, backend.embodiment
    backend.reset("place the cup", keyframe(spec))
    p0 = backend.predict_chunk()
    shown = backend.display_latents(p0)
    f, a = emb.frame_chunk_size, emb.action_per_frame
    assert shown.latents.dtype == np.float16
    assert shown.latents.shape == (48, f, emb.latent_height, emb.latent_width)
    # chunk 0: frame 0 is the conditioning (initial) frame, frame 1 ends with the key frame after action 15
    assert shown.frame_action_indices == (-1, a - 1)
    np.testing.assert_allclose(shown.latents, p0.display_handle.latents.numpy(), atol=2e-2, rtol=1e-2)
    shown.latents[:] = 0                      # the caller owns its copy: the backend's prediction is untouched
    assert p0.display_handle.latents.abs().sum() > 0
    backend.ground(keyframes(spec, 4, 1), p0.actions, 0)
    p1 = backend.predict_chunk()
    assert backend.display_latents(p1).frame_action_indices == (16 + a - 1, 16 + 2 * a - 1)
    assert backend.display_latents(ChunkPrediction(0, 0, np.zeros((16, 14), np.float32))) is None


def test_grounding_measures_the_prediction_error_against_the_real_latents(backend):
    spec = backend.spec
    backend.reset("place the cup", keyframe(spec))
    p0 = backend.predict_chunk()
    assert backend.pop_prediction_errors() == []
    real = keyframes(spec, 4, 1)
    backend.ground(real, p0.actions, 0)
    (err,) = backend.pop_prediction_errors()
    assert backend.pop_prediction_errors() == []            # drained
    # the same number, computed independently: the real key frames through a fresh encoder primed like the
    # backend's (initial frame first), against the chunk's predicted frame 1
    from lingbot_va_ros.model.vae import ObservationEncoder

    encoder = ObservationEncoder(backend.components.vae, backend.embodiment.camera_layout)
    encoder.encode([keyframe(spec)])
    real_latents = encoder.encode(real)
    predicted = p0.display_handle.latents[:, 1:]
    assert (err.chunk_index, err.start_index, err.num_frames) == (0, 0, 1)
    assert err.latent_mse == pytest.approx(float((predicted - real_latents).pow(2).mean()), rel=1e-5)
    assert set(err.camera_mse) == set(spec.camera_names) and all(v > 0 for v in err.camera_mse.values())


def test_ee_relative_embodiment(components):
    backend = LingBotVABackend(embodiment="robotwin", components=components, embodiment_overrides=SMALL)
    assert backend.spec.action_space == "ee_relative" and len(backend.spec.channel_names) == 16
    backend.reset("press the stapler", keyframe(backend.spec))
    assert backend.predict_chunk().actions.shape == (16, 16)


def test_inputs_are_validated(backend):
    spec = backend.spec
    fresh = LingBotVABackend(embodiment="demo_sim", components=backend.components, embodiment_overrides=SMALL)
    with pytest.raises(RuntimeError, match="reset"):
        fresh.predict_chunk()
    good = keyframe(spec)
    with pytest.raises(ValueError, match="camera set"):
        backend.reset("x", {k: v for k, v in good.items() if k != "cam_high"})
    with pytest.raises(ValueError, match="expected 64x64"):
        backend.reset("x", {**good, "cam_high": np.zeros((48, 64, 3), np.uint8)})
    with pytest.raises(ValueError, match="prompt"):
        backend.reset(None, good)
    backend.reset("pick", good)
    with pytest.raises(ValueError, match="no predicted chunk"):
        backend.ground(keyframes(spec, 4), np.zeros((16, 14), np.float32), 0)
    p0 = backend.predict_chunk()
    rows = p0.actions
    with pytest.raises(ValueError, match="needs 4 key frames"):
        backend.ground(keyframes(spec, 8), rows, 0)
    with pytest.raises(ValueError, match="start_index 16"):
        backend.ground(keyframes(spec, 4), rows, 16)
    with pytest.raises(ValueError, match=r"must be \[16, 14\]"):
        backend.ground(keyframes(spec, 4), rows[:, :7], 0)
    with pytest.raises(ValueError, match="non-finite"):
        backend.ground(keyframes(spec, 4), np.where(np.arange(14) == 3, np.nan, rows), 0)
    with pytest.raises(ValueError, match="uint8"):
        backend.ground([{**good, "cam_left_wrist": good["cam_left_wrist"].astype(np.float32)}] * 4, rows, 0)
    with pytest.raises(ValueError, match="numpy array"):
        backend.ground(keyframes(spec, 4), rows.tolist(), 0)
    with pytest.raises(RuntimeError, match="neither grounded nor"):
        backend.predict_chunk()                                  # chunk 0 must be grounded/imagined first
    backend.ground(keyframes(spec, 4), rows, 0)                  # the failed calls changed nothing
    assert backend.predict_chunk().start_index == 16


def test_non_finite_model_output_is_refused(backend, monkeypatch):
    backend.reset("pick", keyframe(backend.spec))
    real_infer = backend.world_model.infer

    def broken(**kwargs):
        result = real_infer(**kwargs)
        result.actions[0, 1, 0] = float("nan")
        return result

    monkeypatch.setattr(backend.world_model, "infer", broken)
    with pytest.raises(NonFiniteActionsError, match="non-finite"):
        backend.predict_chunk()


def test_constructed_like_the_inference_node(checkpoint):
    from lingbot_va_ros.common.registry import POLICY_BACKENDS

    cls = POLICY_BACKENDS.load("lingbot_va")
    assert cls is LingBotVABackend
    backend = cls(checkpoint_dir=str(checkpoint), base_checkpoint_dir=None, embodiment="demo_sim", device="auto",
                  dtype="auto", attention_backend="auto", text_encoder_offload=True, seed=0)
    assert backend.dtype == (torch.bfloat16 if torch.cuda.is_available() else torch.float32)
    backend.close()
    with pytest.raises(ValueError, match="checkpoint_dir is required"):
        cls(checkpoint_dir="", embodiment="demo_sim")
    with pytest.raises(ValueError, match="attention_backend"):
        cls(checkpoint_dir=str(checkpoint), attention_backend="xformers")
