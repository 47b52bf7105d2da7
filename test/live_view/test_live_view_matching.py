"""Newest-wins decoding slot, and pairing predicted key frame k with real key frame k."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from lingbot_va_ros.live_view.matching import KeyFrame, LatestSlot, Prediction, PredictionMatcher

IMG = {"cam": np.zeros((2, 2, 3), np.uint8)}


def test_the_slot_holds_only_the_newest_item():
    slot: LatestSlot[int] = LatestSlot()
    assert slot.take(timeout=0.0) is None
    for chunk in range(3):
        slot.put(chunk)
    assert (slot.take(timeout=0.0), slot.replaced) == (2, 2)     # chunks 0 and 1 were never decoded
    assert slot.take(timeout=0.0) is None


def test_take_wakes_up_when_an_item_arrives():
    slot: LatestSlot[str] = LatestSlot()
    got = []
    taker = threading.Thread(target=lambda: got.append(slot.take(timeout=60.0)))
    taker.start()
    slot.put("latents")
    taker.join(60.0)
    assert got == ["latents"]


def test_a_prediction_pairs_with_its_real_key_frame_in_either_order():
    m = PredictionMatcher()
    assert m.add_prediction(Prediction("ep", 1, 31, IMG)) == []        # predicted first (the usual order)
    (pair,) = m.add_keyframe(KeyFrame("ep", 31, IMG, 7))
    assert (pair.prediction.chunk_index, pair.real.action_index, pair.real.stamp_ns) == (1, 31, 7)
    assert m.add_keyframe(KeyFrame("ep", 47, IMG)) == []               # real first (a slow decoder)
    (pair,) = m.add_prediction(Prediction("ep", 1, 47, IMG))
    assert pair.real.action_index == 47
    assert m.add_keyframe(KeyFrame("ep", 31, IMG)) == []               # a repeated key frame pairs once only
    assert (m.paired, m.pending) == (2, 0)


def test_the_newest_key_frame_is_the_highest_action_index_of_the_episode():
    m = PredictionMatcher()
    assert m.latest_keyframe("ep") is None
    for k in (3, 11, 7):
        m.add_keyframe(KeyFrame("ep", k, IMG))
    assert m.latest_keyframe("ep").action_index == 11
    assert m.latest_keyframe("other") is None


def test_a_new_episode_forgets_the_previous_one():
    m = PredictionMatcher()
    m.add_prediction(Prediction("ep1", 3, 111, IMG))
    m.add_keyframe(KeyFrame("ep1", 99, IMG))
    assert m.add_keyframe(KeyFrame("ep2", 111, IMG)) == []              # same index, other episode: no pair
    assert m.latest_keyframe("ep1") is None and m.dropped_predictions == 1


def test_both_stores_are_bounded():
    m = PredictionMatcher(max_keyframes=2, max_pending=2)
    for k in (3, 7, 11):
        m.add_keyframe(KeyFrame("ep", k, IMG))
    assert m.add_prediction(Prediction("ep", 0, 3, IMG)) == []          # key frame 3 was dropped
    m.add_prediction(Prediction("ep", 1, 100, IMG))
    m.add_prediction(Prediction("ep", 2, 200, IMG))                    # evicts the oldest waiting (index 3)
    assert (m.pending, m.dropped_predictions) == (2, 1)
    assert m.add_keyframe(KeyFrame("ep", 3, IMG)) == []
    with pytest.raises(ValueError):
        PredictionMatcher(max_keyframes=0)
