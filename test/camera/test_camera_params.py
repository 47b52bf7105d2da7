"""The parameter schema and every shipped camera_ingest YAML."""
from __future__ import annotations

from pathlib import Path

import pytest

from lingbot_va_ros.camera.params import CameraIngestParams
from lingbot_va_ros.common.params import ParameterError
from lingbot_va_ros.common.registry import CAMERA_SOURCES

CONFIG = Path(__file__).resolve().parents[2] / "config"
YAMLS = [CONFIG / "camera_ingest.yaml", *sorted((CONFIG / "camera_ingest").glob("*.yaml"))]


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.name)
def test_shipped_configs_validate_and_name_known_sources(path):
    params = CameraIngestParams.from_yaml(path, "camera_ingest")
    assert params.camera_names == ["cam_high", "cam_left_wrist", "cam_right_wrist"]
    for name, cam in params.ordered_cameras():
        source_cls = CAMERA_SOURCES.load(cam.source)
        if cam.source != "opencv":  # opencv settings name devices that do not exist here
            source_cls.Settings.model_validate(cam.settings)


def test_default_config_is_the_robotwin_t_shape():
    params = CameraIngestParams.from_yaml(CONFIG / "camera_ingest.yaml", "camera_ingest")
    sizes = [(c.height, c.width) for _, c in params.ordered_cameras()]
    assert sizes == [(256, 320), (128, 160), (128, 160)]


def test_dotted_ros_parameter_names_work():
    params = CameraIngestParams.from_dict({
        "camera_names": ["cam_high"], "cameras.cam_high.height": 64, "cameras.cam_high.width": 96,
        "cameras.cam_high.settings.topic": "/x", "cameras.cam_high.latency_offset": 0.02})
    cam = params.cameras["cam_high"]
    assert (cam.height, cam.width, cam.settings, cam.latency_offset) == (64, 96, {"topic": "/x"}, 0.02)
    assert (cam.source, cam.stamp, cam.max_wait) == ("ros_image", "header", 0.0)


@pytest.mark.parametrize("data,match", [
    ({"camera_names": ["a", "b"], "cameras": {"a": {"height": 32, "width": 32}}}, r"no cameras.<role> settings for \['b'\]"),
    ({"camera_names": ["a"], "cameras": {"a": {"height": 32, "width": 32}, "z": {"height": 32, "width": 32}}},
     r"\['z'\] are configured but not listed"),
    ({"camera_names": ["a", "a"], "cameras": {"a": {"height": 32, "width": 32}}}, "repeat"),
    ({"camera_names": ["a"], "cameras": {"a": {"height": 32}}}, "cameras.a.width"),
    ({"camera_names": ["a"], "cameras": {"a": {"height": 32, "width": 32, "stamp": "exposure"}}}, "cameras.a.stamp"),
    ({"camera_names": ["a"], "cameras": {"a": {"height": 32, "width": 32, "max_age": 0}}}, "cameras.a.max_age"),
    ({"camera_names": ["a"], "cameras": {"a": {"height": 32, "width": 32, "max_wait": 5}}}, "cameras.a.max_wait"),
    ({"camera_names": ["a"], "cameras": {"a": {"height": 32, "width": 32, "fps": 30}}}, "cameras.a.fps"),
])
def test_bad_parameters_name_the_offending_entry(data, match):
    with pytest.raises(ParameterError, match=match):
        CameraIngestParams.from_dict(data)


def test_every_parameter_is_documented():
    docs = CameraIngestParams.field_docs()
    assert all(docs.values()), [k for k, v in docs.items() if not v]
    from lingbot_va_ros.camera.params import CameraParams

    assert all(f.description for f in CameraParams.model_fields.values())
