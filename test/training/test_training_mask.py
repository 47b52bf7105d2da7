"""The §2.4 attention rules, pair by pair, and the FDM extension (lingbot_va_ros.training.mask)."""
from __future__ import annotations

import itertools

import pytest
import torch

from lingbot_va_ros.training.mask import ACTION, CLEAN, KNOWN, NOISY, VIDEO, SequenceLayout, allowed

BIG = 1000


def ok(q, k, window=BIG) -> bool:
    """q, k = (seq, frame_id, role)."""
    t = [torch.tensor(v) for v in (*q, *k)]
    return bool(allowed(*t, window))


def fid(chunk: int, modality: int) -> int:
    return 2 * chunk + modality


@pytest.mark.parametrize("c_q,c_k", list(itertools.product(range(3), range(3))))
def test_clean_to_clean_is_block_causal(c_q, c_k):
    # clean video c sees clean video <= c and clean actions < c
    assert ok((0, fid(c_q, VIDEO), CLEAN), (0, fid(c_k, VIDEO), CLEAN)) == (c_k <= c_q)
    assert ok((0, fid(c_q, VIDEO), CLEAN), (0, fid(c_k, ACTION), CLEAN)) == (c_k < c_q)
    # clean actions c see clean video <= c and clean actions <= c
    assert ok((0, fid(c_q, ACTION), CLEAN), (0, fid(c_k, VIDEO), CLEAN)) == (c_k <= c_q)
    assert ok((0, fid(c_q, ACTION), CLEAN), (0, fid(c_k, ACTION), CLEAN)) == (c_k <= c_q)


@pytest.mark.parametrize("c_q,c_k", list(itertools.product(range(3), range(3))))
def test_noisy_to_clean_is_strictly_earlier(c_q, c_k):
    # noisy video c sees clean video and actions of chunks < c only
    assert ok((0, fid(c_q, VIDEO), NOISY), (0, fid(c_k, VIDEO), CLEAN)) == (c_k < c_q)
    assert ok((0, fid(c_q, VIDEO), NOISY), (0, fid(c_k, ACTION), CLEAN)) == (c_k < c_q)
    # noisy actions c see the clean video of chunk c (inverse dynamics) and everything earlier
    assert ok((0, fid(c_q, ACTION), NOISY), (0, fid(c_k, VIDEO), CLEAN)) == (c_k <= c_q)
    assert ok((0, fid(c_q, ACTION), NOISY), (0, fid(c_k, ACTION), CLEAN)) == (c_k < c_q)


@pytest.mark.parametrize("c_q,c_k", list(itertools.product(range(3), range(3))))
def test_noisy_to_noisy_only_within_the_same_chunk_and_modality(c_q, c_k):
    for mq, mk in itertools.product((VIDEO, ACTION), repeat=2):
        assert ok((0, fid(c_q, mq), NOISY), (0, fid(c_k, mk), NOISY)) == (c_q == c_k and mq == mk)


@pytest.mark.parametrize("c_q,c_k", list(itertools.product(range(3), range(3))))
def test_clean_never_sees_noisy_or_known(c_q, c_k):
    for mq, mk in itertools.product((VIDEO, ACTION), repeat=2):
        assert not ok((0, fid(c_q, mq), CLEAN), (0, fid(c_k, mk), NOISY))
        assert not ok((0, fid(c_q, mq), CLEAN), (0, fid(c_k, ACTION), KNOWN))


@pytest.mark.parametrize("c_q,c_k", list(itertools.product(range(3), range(3))))
def test_fdm_known_actions(c_q, c_k):
    # noisy video c sees the known (executing) actions of chunk c only
    assert ok((0, fid(c_q, VIDEO), NOISY), (0, fid(c_k, ACTION), KNOWN)) == (c_q == c_k)
    # ... but never the clean (history) actions of its own chunk
    assert not ok((0, fid(c_q, VIDEO), NOISY), (0, fid(c_q, ACTION), CLEAN))
    # noisy actions never see known actions
    assert not ok((0, fid(c_q, ACTION), NOISY), (0, fid(c_k, ACTION), KNOWN))
    # known actions c see the history (clean video and actions of chunks < c) and themselves
    assert ok((0, fid(c_q, ACTION), KNOWN), (0, fid(c_k, VIDEO), CLEAN)) == (c_k < c_q)
    assert ok((0, fid(c_q, ACTION), KNOWN), (0, fid(c_k, ACTION), CLEAN)) == (c_k < c_q)
    assert ok((0, fid(c_q, ACTION), KNOWN), (0, fid(c_k, ACTION), KNOWN)) == (c_q == c_k)
    assert not ok((0, fid(c_q, ACTION), KNOWN), (0, fid(c_k, VIDEO), NOISY))


def test_sequence_and_window_limits():
    assert not ok((0, 0, CLEAN), (1, 0, CLEAN))                  # other sample
    assert ok((0, 10, CLEAN), (0, 6, CLEAN), window=4)           # |10 - 6| <= 4
    assert not ok((0, 10, CLEAN), (0, 5, CLEAN), window=4)
    assert ok((0, 9, NOISY), (0, 5, CLEAN), window=4) and not ok((0, 9, NOISY), (0, 4, CLEAN), window=4)


def test_layout_frame_ids_follow_chunk_size_and_the_dense_mask_is_the_predicate():
    layout = SequenceLayout()
    v = layout.add(VIDEO, NOISY, 0, 5, 2, chunk_size=2)         # frames 0..4, 2 tokens each
    a = layout.add(ACTION, CLEAN, 0, 5, 3, chunk_size=2)
    s, f, r = layout.ids()
    assert f[v[0]:v[1]].tolist() == [0, 0, 0, 0, 2, 2, 2, 2, 4, 4]
    assert f[a[0]:a[1]].tolist() == [1] * 6 + [3] * 6 + [5] * 3
    dense = layout.dense(window=BIG)
    for i in range(layout.num_tokens):
        for j in range(layout.num_tokens):
            assert bool(dense[i, j]) == ok((int(s[i]), int(f[i]), int(r[i])), (int(s[j]), int(f[j]), int(r[j])))
    with pytest.raises(ValueError):
        layout.add(VIDEO, CLEAN, 0, 1, 1, chunk_size=0)


def test_every_token_sees_at_least_itself():
    layout = SequenceLayout()
    for modality, role in [(VIDEO, NOISY), (VIDEO, CLEAN), (ACTION, NOISY), (ACTION, CLEAN), (ACTION, KNOWN)]:
        layout.add(modality, role, 0, 6, 2, chunk_size=3)
    assert bool(layout.dense(window=4).diagonal().all())
