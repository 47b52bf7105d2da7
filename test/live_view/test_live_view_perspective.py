"""The rqt perspective shows the live view's two image topics and plots fields that exist in their messages."""
from __future__ import annotations

import types

import pytest

from lingbot_va_ros.common import topics
from lingbot_va_ros.common.paths import config_path
from lingbot_va_ros.live_view.perspective import field_value, perspective_views, split_field_path
from lingbot_va_ros.msg import ActionChunk, PredictionError
from lingbot_va_ros.recording.params import DEFAULT_TOPICS

PERSPECTIVE = config_path("rqt", "lingbot_va.perspective")


def test_the_perspective_opens_both_live_views_and_the_prediction_error():
    views = perspective_views(PERSPECTIVE)
    images = [v.topics[0] for v in views if v.plugin == "rqt_image_view/ImageView"]
    assert images == [topics.PREDICTED_FRAMES, topics.PREDICTION_VS_REAL]
    plotted = [t for v in views if v.plugin == "rqt_plot/Plot" for t in v.topics]
    assert f"{topics.PREDICTION_ERROR}/latent_mse" in plotted
    assert any(v.plugin == "rqt_robot_monitor/RobotMonitor" for v in views)
    # everything it shows is recorded, so a bag can be rendered exactly as rqt shows it
    recorded = set(DEFAULT_TOPICS)
    for path in plotted:
        topic, _ = split_field_path(path, recorded)
        assert topic in recorded
    assert set(images) <= recorded


def test_plotted_fields_exist_in_their_messages():
    types_by_topic = {topics.PREDICTION_ERROR: PredictionError(latent_mse=0.5),
                      topics.ACTION_CHUNK: ActionChunk(inference_latency=0.25),
                      topics.COMMAND: types.SimpleNamespace(position=[1.0, 2.0, 3.0]),
                      topics.JOINT_STATES: types.SimpleNamespace(position=[1.0, 2.0, 3.0])}
    for view in perspective_views(PERSPECTIVE):
        if view.plugin != "rqt_plot/Plot":
            continue
        for path in view.topics:
            topic, fields = split_field_path(path, set(types_by_topic))
            assert isinstance(field_value(types_by_topic[topic], fields), float), path


def test_field_paths_are_split_at_the_longest_known_topic():
    assert split_field_path("/lingbot_va/command/position[2]", {"/lingbot_va/command", "/lingbot_va"}) == \
        ("/lingbot_va/command", ["position", 2])
    with pytest.raises(KeyError):
        split_field_path("/nowhere/x", {"/lingbot_va/command"})
