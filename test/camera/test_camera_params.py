"""The parameter schema, embodiment resolution and every shipped camera_ingest YAML."""
from __future__ import annotations

from pathlib import Path

import pytest

from lingbot_va_ros.camera.params import CameraIngestParams, CameraParams
from lingbot_va_ros.common.params import ParameterError
from lingbot_va_ros.common.registry import CAMERA_SOURCES

NODE = "lingbot_va_camera_ingest"
CONFIG = Path(__file__).resolve().parents[2] / "config"
YAMLS = [CONFIG / "camera_ingest.yaml", CONFIG / "camera_ingest_sim.yaml",
         *sorted((CONFIG / "camera_ingest").glob("*.yaml"))]
T_SHAPE = [("cam_high", 256, 320), ("cam_left_wrist", 128, 160), ("cam_right_wrist", 128, 160)]


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.name)
def test_shipped_configs_validate_and_name_known_sources(path):
    params = CameraIngestParams.from_yaml(path, NODE).resolved()
    assert params.camera_names == ["cam_high", "cam_left_wrist", "cam_right_wrist"]
    for _name, cam in params.ordered_cameras():
        source_cls = CAMERA_SOURCES.load(cam.source)
        if cam.source != "opencv":  # opencv settings name devices that do not exist here
            source_cls.Settings.model_validate(cam.settings)
    assert "[]" not in path.read_text().split("ros__parameters", 1)[1].split("#")[0]  # rcl rejects empty lists


@pytest.mark.parametrize("name", ["camera_ingest.yaml", "camera_ingest_sim.yaml"])
def test_default_configs_give_the_t_shape_sizes(name):
    params = CameraIngestParams.from_yaml(CONFIG / name, NODE).resolved()
    assert [(n, c.height, c.width) for n, c in params.ordered_cameras()] == T_SHAPE


def test_franka_example_takes_the_franka_sizes():
    params = CameraIngestParams.from_yaml(CONFIG / "camera_ingest" / "franka_usb_cam.yaml", NODE).resolved()
    assert {(c.height, c.width) for _, c in params.ordered_cameras()} == {(224, 320)}


def _cams(**sizes):
    return {n: {"settings": {"topic": f"/{n}"}, **sizes.get(n, {})} for n, _, _ in T_SHAPE}


def test_embodiment_supplies_order_and_sizes():
    params = CameraIngestParams.from_dict({"embodiment": "x", "cameras": _cams()}).resolved(T_SHAPE)
    assert [(n, c.height, c.width) for n, c in params.ordered_cameras()] == T_SHAPE
    same = CameraIngestParams.from_dict({"embodiment": "x", "cameras": _cams(cam_high={"height": 256})})
    assert same.resolved(T_SHAPE).cameras["cam_high"].height == 256


@pytest.mark.parametrize("data,match", [
    ({"cameras": _cams(cam_high={"height": 240})}, r"cameras.cam_high.height = 240 disagrees .* 256x320"),
    ({"camera_names": ["cam_left_wrist", "cam_high", "cam_right_wrist"], "cameras": _cams()}, "differ from"),
    ({"cameras": {"cam_high": {"source": "ros_image"}, "cam_left_wrist": {"source": "ros_image"}}},
     r"source settings for the embodiment's cameras \['cam_right"),
    ({"cameras": {**_cams(), "cam_extra": {"source": "ros_image"}}}, r"\['cam_extra'\] are not cameras of the embodiment"),
])
def test_embodiment_conflicts_are_reported(data, match):
    with pytest.raises(ParameterError, match=match):
        CameraIngestParams.from_dict({"embodiment": "x", **data}).resolved(T_SHAPE)


def test_unknown_embodiment_is_a_parameter_error():
    with pytest.raises(ParameterError, match="embodiment 'no_such_robot'"):
        CameraIngestParams.from_dict({"embodiment": "no_such_robot", "cameras": _cams()}).resolved()


def test_unresolved_parameters_refuse_to_give_an_order():
    with pytest.raises(ParameterError, match="resolved"):
        CameraIngestParams.from_dict({"embodiment": "x", "cameras": _cams()}).ordered_cameras()


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
    ({"camera_names": ["a"], "cameras": {"a": {"height": 32}}}, r"cameras \['a'\] need height and width"),
    ({"cameras": {"a": {"height": 32, "width": 32}}}, "set either embodiment"),
    ({"camera_names": ["a"]}, "no cameras configured"),
    ({"camera_names": ["a"], "cameras": {"a": {"height": 4, "width": 32}}}, "cameras.a.height"),
    ({"camera_names": ["a"], "cameras": {"a": {"height": 32, "width": 32, "stamp": "exposure"}}}, "cameras.a.stamp"),
    ({"camera_names": ["a"], "cameras": {"a": {"height": 32, "width": 32, "max_age": 0}}}, "cameras.a.max_age"),
    ({"camera_names": ["a"], "cameras": {"a": {"height": 32, "width": 32, "max_wait": 5}}}, "cameras.a.max_wait"),
    ({"camera_names": ["a"], "cameras": {"a": {"height": 32, "width": 32, "fps": 30}}}, "cameras.a.fps"),
])
def test_bad_parameters_name_the_offending_entry(data, match):
    with pytest.raises(ParameterError, match=match):
        CameraIngestParams.from_dict(data)


def test_every_parameter_is_documented():
    assert all(CameraIngestParams.field_docs().values())
    assert all(f.description for f in CameraParams.model_fields.values())
