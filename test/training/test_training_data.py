"""The training set: cached latents are the inference encoder's output for the §5.5 key-frame rows, the cache
is reused when nothing changed and re-encoded when pixels or encoders change, and bad datasets get clear
errors (no episodes, missing cameras, mismatched action channels, non-finite actions, too-short episodes)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from lingbot_va_ros.model.embodiment import load_embodiment
from lingbot_va_ros.model.loading import load_vae, resolve_checkpoint
from lingbot_va_ros.model.vae import ObservationEncoder
from lingbot_va_ros.training.data import DatasetProblem, Encoders, build_training_set
from lingbot_va_ros.training.latent_cache import LatentCache, encoder_fingerprint

from conftest import synthetic_episode

EMB = load_embodiment("demo_sim")


class CountingEncoders:
    def __init__(self, base):
        paths = resolve_checkpoint(base)
        self.calls = 0
        self.paths = paths

    def __call__(self):
        self.calls += 1
        return Encoders(self.paths.vae, self.paths.text_encoder, self.paths.tokenizer, EMB, torch.device("cpu"),
                        torch.float32)


def make_cache(base, root, fingerprint=None):
    paths = resolve_checkpoint(base)
    fp = fingerprint or encoder_fingerprint(paths.vae, paths.text_encoder, paths.tokenizer)
    return LatentCache(root, fp, {"layout": EMB.layout, "action_per_frame": EMB.action_per_frame}, torch.float32)


@pytest.fixture(scope="module")
def episodes():
    # one episode recorded at half the camera size: the cache must resize it like camera ingest does
    return [synthetic_episode(0, 33), synthetic_episode(1, 40, image_scale=2, task="open the drawer")]


def test_cached_latents_are_the_inference_encoding_of_the_keyframe_rows(episodes, tiny_base, tmp_path):
    from lingbot_va_ros.model.image_layout import resize_rgb_uint8

    factory = CountingEncoders(tiny_base)
    ts = build_training_set(episodes, EMB, make_cache(tiny_base, tmp_path), factory)
    assert factory.calls == 1 and ts.encoded == 2 and ts.reused == 0
    assert [s.num_frames for s in ts.samples] == [3, 3]                       # 1 + (33-1)//16, 1 + (40-1)//16
    vae = load_vae(resolve_checkpoint(tiny_base).vae)
    for ep, sample in zip(episodes, ts.samples):
        enc = ObservationEncoder(vae, EMB.camera_layout)       # the inference backend's encoder, fed as it is fed
        def kf(row):
            return {c.name: resize_rgb_uint8(ep.camera_frames[c.name][row], (c.height, c.width)) for c in EMB.cameras}
        first = enc.encode([kf(0)])                                          # reset: the initial observation
        chunk0 = enc.encode([kf(r) for r in (4, 8, 12, 16)])                 # after actions 3, 7, 11, 15
        chunk1 = enc.encode([kf(r) for r in (20, 24, 28, 32)])
        expected = torch.cat([first, chunk0, chunk1], dim=1)
        torch.testing.assert_close(sample.latents, expected, atol=0, rtol=0)
        assert sample.actions.shape == (30, 3, 16, 1)
        np.testing.assert_array_equal(sample.text.shape, (512, 32))
    assert not torch.equal(ts.samples[0].text, ts.samples[1].text)          # two prompts
    assert torch.all(ts.samples[0].empty_text[1:] == 0)                       # '' : zero-padded rows


def test_cache_reuse_and_staleness(episodes, tiny_base, tmp_path):
    factory = CountingEncoders(tiny_base)
    build_training_set(episodes, EMB, make_cache(tiny_base, tmp_path), factory)
    again = build_training_set(episodes, EMB, make_cache(tiny_base, tmp_path), factory)
    assert factory.calls == 1 and again.encoded == 0 and again.reused == 2     # nothing loaded, nothing encoded
    changed = dataclasses.replace(episodes[0], camera_frames={k: v.copy() for k, v in episodes[0].camera_frames.items()})
    changed.camera_frames["cam_high"][8, 10, 10] ^= 0xFF                       # one pixel of key-frame row 8
    ts = build_training_set([changed, episodes[1]], EMB, make_cache(tiny_base, tmp_path), factory)
    assert ts.encoded == 1 and ts.reused == 1
    unchanged_row = dataclasses.replace(changed, camera_frames={k: v.copy() for k, v in changed.camera_frames.items()})
    unchanged_row.camera_frames["cam_high"][9] = 0                             # row 9 is not a key frame
    assert build_training_set([unchanged_row, episodes[1]], EMB, make_cache(tiny_base, tmp_path), factory).encoded == 0
    other = make_cache(tiny_base, tmp_path, fingerprint={"vae": "another", "text_encoder": "x", "tokenizer": "y"})
    assert other.episode_status(1, "whatever", 3).startswith("stale")
    ts = build_training_set(episodes, EMB, other, factory)
    assert ts.encoded == 2


def test_clear_errors_for_bad_datasets(episodes, tiny_base, tmp_path):
    cache = make_cache(tiny_base, tmp_path)
    factory = CountingEncoders(tiny_base)
    with pytest.raises(DatasetProblem, match="no episodes"):
        build_training_set([], EMB, cache, factory)
    ep = episodes[0]
    no_wrist = dataclasses.replace(ep, camera_frames={"cam_high": ep.camera_frames["cam_high"]})
    with pytest.raises(DatasetProblem, match=r"missing cameras \['cam_left_wrist', 'cam_right_wrist'\]"):
        build_training_set([no_wrist], EMB, cache, factory)
    narrow = dataclasses.replace(ep, actions=ep.actions[:, :13], channel_names=ep.channel_names[:13])
    with pytest.raises(DatasetProblem, match="13 channels but embodiment 'demo_sim' has 14"):
        build_training_set([narrow], EMB, cache, factory)
    renamed = dataclasses.replace(ep, channel_names=tuple(f"c{i}" for i in range(14)))
    with pytest.raises(DatasetProblem, match="differ from embodiment"):
        build_training_set([renamed], EMB, cache, factory)
    wrong_space = dataclasses.replace(ep, action_space="ee_relative")
    with pytest.raises(DatasetProblem, match="'ee_relative' space"):
        build_training_set([wrong_space], EMB, cache, factory)
    nan = dataclasses.replace(ep, actions=ep.actions.copy())
    nan.actions[3, 2] = np.nan                                                # a reader that bypassed the checks
    with pytest.raises(DatasetProblem, match="1 non-finite"):
        build_training_set([nan], EMB, cache, factory)
    short = synthetic_episode(5, 12)
    with pytest.raises(DatasetProblem, match="no usable episodes: episode 5: 12 rows"):
        build_training_set([short], EMB, cache, factory)
    assert factory.calls == 0
