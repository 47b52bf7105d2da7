"""PredictedLatents payload: fp16 on the wire, validated when read back."""
from __future__ import annotations

import types

import numpy as np
import pytest

from lingbot_va_ros.common.conversions import MessageError
from lingbot_va_ros.live_view.latents import chunk_latents_from_msg, pack_latents, unpack_latents


def test_latents_round_trip_through_fp16():
    rng = np.random.default_rng(0)
    latents = rng.standard_normal((48, 2, 24, 20)).astype(np.float32)
    shape, dtype, data = pack_latents(latents)
    assert (shape, dtype, len(data)) == ([48, 2, 24, 20], "float16", latents.size * 2)   # 92 KB for demo_sim
    back = unpack_latents(shape, dtype, data, (31, 47))
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, latents, atol=4e-3, rtol=1e-3)        # fp16 rounding only


def test_a_message_becomes_chunk_latents_with_its_predicted_frames():
    shape, dtype, data = pack_latents(np.ones((48, 2, 6, 4), np.float32))
    msg = types.SimpleNamespace(episode_id="ep", chunk_index=0, start_index=0, camera_names=["a", "b", "c"],
                                shape=shape, dtype=dtype, data=data, frame_action_indices=[-1, 15],
                                header=types.SimpleNamespace(stamp=types.SimpleNamespace(sec=3, nanosec=5)))
    chunk = chunk_latents_from_msg(msg)
    assert (chunk.episode_id, chunk.chunk_index, chunk.stamp_ns, chunk.camera_names) == ("ep", 0, 3_000_000_005,
                                                                                        ("a", "b", "c"))
    assert chunk.predicted_frames() == [1]            # frame 0 of chunk 0 is the conditioning frame


@pytest.mark.parametrize("shape, dtype, nbytes, indices, match", [
    ([48, 2, 6, 4], "float32", 48 * 2 * 6 * 4 * 2, (1, 2), "dtype 'float32'"),
    ([48, 2, 6], "float16", 48 * 2 * 6 * 2, (1, 2), "4 positive sizes"),
    ([48, 2, 6, 4], "float16", 100, (1, 2), "needs 4608 bytes"),
    ([48, 2, 6, 4], "float16", 48 * 2 * 6 * 4 * 2, (1,), "1 frame_action_indices for 2 latent frames"),
    ([4096, 4096, 4, 4], "float16", 8, (1,), "exceed the limit"),
])
def test_malformed_latents_are_rejected_with_the_reason(shape, dtype, nbytes, indices, match):
    with pytest.raises(MessageError, match=match):
        unpack_latents(shape, dtype, bytes(nbytes), indices)


def test_non_finite_latents_are_rejected():
    bad = np.zeros((2, 1, 2, 2), np.float32)
    bad[0, 0, 1, 1] = np.inf
    shape, dtype, data = pack_latents(bad)
    with pytest.raises(MessageError, match="non-finite"):
        unpack_latents(shape, dtype, data, (5,))
