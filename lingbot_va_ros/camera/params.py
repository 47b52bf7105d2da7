"""Parameter schema of the camera ingest node (one entry per model camera role).

ROS parameter spelling: ``camera_names`` lists the roles in the model's order; each role has a
``cameras.<role>.*`` group, and source-specific settings live under ``cameras.<role>.settings.*``
(validated by the source class itself, see :mod:`lingbot_va_ros.camera.sources`).
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from lingbot_va_ros.common.params import NodeParams, ParameterError, SubParams

STAMP_HEADER = "header"
STAMP_RECEIVE = "receive"


class CameraParams(SubParams):
    """One model camera role: where its frames come from and how they are aligned and sized."""

    source: str = Field("ros_image", min_length=1, description=(
        "camera source plugin: ros_image | ros_compressed | opencv, an entry point of group "
        "lingbot_va_ros.camera_sources, or 'package.module:Class'"))
    settings: dict[str, Any] = Field(default_factory=dict, description=(
        "source-specific settings (ros_image/ros_compressed: topic; opencv: device, rate_hz, loop, ...)"))
    height: int | None = Field(None, ge=8, le=4096, description=(
        "model input height of this camera in pixels (default: from the embodiment's cameras list)"))
    width: int | None = Field(None, ge=8, le=4096, description=(
        "model input width of this camera in pixels (default: from the embodiment's cameras list)"))
    stamp: Literal["header", "receive"] = Field(STAMP_HEADER, description=(
        "frame time: the message header stamp (default) or the node's clock when the message arrived "
        "(for drivers with unset or unsynchronised stamps); opencv sources always use the capture clock"))
    latency_offset: float = Field(0.0, ge=-1.0, le=1.0, description=(
        "seconds subtracted from the tick stamp before choosing this camera's frame (positive: the frame "
        "stamps run late against the control clock, e.g. stamps taken after exposure + transfer)"))
    max_age: float = Field(0.1, gt=0.0, le=10.0, description=(
        "largest allowed |chosen frame stamp - (tick stamp - latency_offset)| in seconds; beyond it the "
        "key frame is invalid and no Observation is published"))
    max_wait: float = Field(0.0, ge=0.0, le=1.0, description=(
        "seconds a tick may wait for a frame at or after its target time when every buffered frame is "
        "older (and the next frame could be nearer); 0 = use what is buffered"))
    buffer_size: int = Field(32, ge=2, le=1000, description=(
        "frames kept per camera (model-sized RGB); must cover max_age + latency_offset at the camera rate"))
    queue_size: int = Field(4, ge=1, le=64, description=(
        "frames waiting for decode + resize per camera; when full the oldest is dropped and counted"))


class CameraIngestParams(NodeParams):
    """camera_ingest: time-aligned multi-camera key frames in the model's layout, one per ActionTick."""

    embodiment: str = Field("", description=(
        "embodiment config name (config/embodiments/) or YAML path: supplies camera_names (model order) and "
        "each camera's model size; empty = give camera_names and cameras.<role>.height/width here"))
    camera_names: list[str] = Field(default_factory=list, max_length=8, description=(
        "model camera roles in the model's order (Observation.camera_names); empty = the embodiment's order"))
    cameras: dict[str, CameraParams] = Field(default_factory=dict, description=(
        "per camera role: source plugin, settings, model size, alignment and freshness (cameras.<role>.*)"))
    inflight_timeout: float = Field(0.05, ge=0.0, le=1.0, description=(
        "seconds a tick waits for frames that already arrived but are still being decoded/resized"))
    tick_queue_size: int = Field(16, ge=1, le=256, description=(
        "ticks waiting to be assembled; when full the oldest is dropped (counted, diagnostics ERROR)"))
    diagnostics_period: float = Field(1.0, gt=0.0, le=60.0, description=(
        "seconds between /diagnostics reports (per-camera rate, age, drops; ingest latency)"))
    timing_log: str = Field("", description=(
        "optional CSV path: one row per tick with the node's own timings (benchmarks); empty = off"))

    @model_validator(mode="after")
    def _cameras_match_names(self) -> "CameraIngestParams":
        names = self.camera_names
        if len(set(names)) != len(names):
            raise ValueError(f"camera_names repeat: {names}")
        if not names and not self.embodiment:
            raise ValueError("set either embodiment (camera order and sizes from its cameras list) or camera_names")
        if not self.cameras:
            raise ValueError("no cameras configured: add cameras.<role>.source / settings for every camera role")
        if names:
            missing = [n for n in names if n not in self.cameras]
            extra = [n for n in self.cameras if n not in names]
            if missing:
                raise ValueError(f"no cameras.<role> settings for {missing} (camera_names = {names})")
            if extra:
                raise ValueError(f"cameras {extra} are configured but not listed in camera_names = {names}")
        if not self.embodiment:
            unsized = [n for n, c in self.cameras.items() if c.height is None or c.width is None]
            if unsized:
                raise ValueError(f"cameras {unsized} need height and width (or set embodiment to take the sizes "
                                 "from its cameras list)")
        return self

    def resolved(self, embodiment_cameras: list[tuple[str, int, int]] | None = None) -> "CameraIngestParams":
        """These parameters with camera order and sizes filled in from the embodiment (loaded from
        ``embodiment`` unless ``embodiment_cameras`` = [(name, height, width), ...] is given).

        Explicit values must agree with the embodiment: the model was trained on exactly those sizes.
        """
        if not self.embodiment and embodiment_cameras is None:
            return self
        if embodiment_cameras is None:
            from lingbot_va_ros.model.embodiment import load_embodiment

            try:
                emb = load_embodiment(self.embodiment)
            except (OSError, ValueError) as exc:
                raise ParameterError(f"embodiment '{self.embodiment}': {exc}") from None
            embodiment_cameras = [(c.name, c.height, c.width) for c in emb.cameras]
        emb_names = [name for name, _, _ in embodiment_cameras]
        problems = []
        if self.camera_names and self.camera_names != emb_names:
            problems.append(f"camera_names {self.camera_names} differ from the embodiment's cameras {emb_names} "
                            "(leave camera_names empty to use the embodiment's order)")
        missing = [n for n in emb_names if n not in self.cameras]
        extra = [n for n in self.cameras if n not in emb_names]
        if missing:
            problems.append(f"no cameras.<role> source settings for the embodiment's cameras {missing}")
        if extra:
            problems.append(f"cameras {extra} are not cameras of the embodiment ({emb_names})")
        data = self.model_dump()
        for name, height, width in embodiment_cameras:
            cam = data["cameras"].get(name)
            if cam is None:
                continue
            for key, value in (("height", height), ("width", width)):
                if cam[key] is not None and cam[key] != value:
                    problems.append(f"cameras.{name}.{key} = {cam[key]} disagrees with the embodiment's "
                                    f"{height}x{width} (drop it to use the embodiment's size)")
                cam[key] = value
        if problems:
            raise ParameterError(f"camera_ingest parameters vs embodiment '{self.embodiment}':\n  - "
                                 + "\n  - ".join(problems))
        data["camera_names"] = emb_names
        return type(self).from_dict(data, source=f"embodiment {self.embodiment}")

    @classmethod
    def markdown_table(cls) -> str:
        """Node parameters, then the per-camera ones (``cameras.<role>.*``) and the built-in source settings.

        The base table cannot show defaults here: the schema has no valid all-default instance (it needs
        cameras), and it does not expand the per-camera dict.
        """
        from lingbot_va_ros.camera.sources import OpenCvSettings, RosTopicSettings

        def rows(model, prefix: str, note: str = "") -> list[str]:
            out = []
            for name, field in model.model_fields.items():
                if field.is_required():
                    default = "(required)"
                else:
                    default = field.default_factory() if field.default_factory is not None else field.default
                    default = "" if default is None else default
                text = f"{note}{field.description or ''}".replace("|", "\\|")  # keep the table intact
                out.append(f"| `{prefix}{name}` | `{default}` | {text} |")
            return out

        header = ["| parameter | default | description |", "|---|---|---|"]
        return "\n".join(header + rows(cls, "") + rows(CameraParams, "cameras.<role>.")
                         + rows(RosTopicSettings, "cameras.<role>.settings.", "ros_image, ros_compressed: ")
                         + rows(OpenCvSettings, "cameras.<role>.settings.", "opencv: "))

    def ordered_cameras(self) -> list[tuple[str, CameraParams]]:
        """(role, settings) in the model's order; needs resolved parameters (every size known)."""
        if not self.camera_names or any(c.height is None or c.width is None for c in self.cameras.values()):
            raise ParameterError("camera order or sizes unknown: call CameraIngestParams.resolved() first")
        return [(name, self.cameras[name]) for name in self.camera_names]
