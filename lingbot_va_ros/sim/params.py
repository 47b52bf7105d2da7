"""Parameters of the simulated bimanual arm (node ``sim_arm``); also the config of the pure simulation classes."""
from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from lingbot_va_ros.common.params import NodeParams, SubParams

CAMERAS = ("cam_high", "cam_left_wrist", "cam_right_wrist")

# Ready pose: forearms pitched down, grippers pointing at the table ~0.12 m above it, half open.
HOME_POSITIONS = [0.0, 0.0, 0.6, 0.0, 0.97, 0.0, 0.02,
                  0.0, 0.0, 0.6, 0.0, 0.97, 0.0, 0.02]


class CameraParams(SubParams):
    enabled: bool = Field(True, description="render and publish this camera")
    width: int = Field(640, ge=16, le=1920, description="image width (px)")
    height: int = Field(480, ge=16, le=1080, description="image height (px)")
    fovy_deg: float = Field(58.0, gt=5.0, lt=170.0, description="vertical field of view (deg)")


class ObjectParams(SubParams):
    num_blocks: int = Field(3, ge=0, le=6, description="4 cm cubes on the table (red, green, blue, ...)")
    bowl: bool = Field(True, description="put a bowl on the table")
    randomize: bool = Field(True, description="place objects from `seed` (false: a fixed row layout)")
    region_x: list[float] = Field([0.20, 0.45], description="x range (m, base frame) objects are placed in")
    region_y: list[float] = Field([-0.25, 0.25], description="y range (m, base frame) objects are placed in")

    @field_validator("region_x", "region_y")
    @classmethod
    def _range(cls, v: list[float]) -> list[float]:
        if len(v) != 2 or not v[0] < v[1]:
            raise ValueError("must be [min, max] with min < max")
        return v


class RenderParams(SubParams):
    shadows: bool = Field(False, description="shadow mapping (doubles the render cost on the CPU rasteriser)")
    msaa_samples: int = Field(0, ge=0, le=8, description="multisample anti-aliasing; 0 is cheapest on CPU")
    shadow_size: int = Field(1024, ge=128, le=8192, description="shadow map resolution (px)")


class SimArmParams(NodeParams):
    urdf: str = Field("", description="robot URDF; empty = the package's urdf/bimanual_arm.urdf")
    seed: int = Field(0, ge=0, description="seeds object placement (same seed -> same scene)")
    physics_rate_hz: float = Field(500.0, ge=100.0, le=2000.0, description="physics step rate (sim time)")
    joint_state_rate_hz: float = Field(100.0, gt=0.0, le=1000.0,
                                       description="/joint_states rate; also the physics thread's wake-up rate")
    camera_rate_hz: float = Field(30.0, ge=0.0, le=120.0, description="render + publish rate; 0 = no cameras")
    # Sizes: RoboTwin's head camera is 320x240; wrists at the model's half size. Render cost on the CPU
    # rasteriser is ~4 ms + ~0.05 us/px per camera (docs/simulation.md), so larger images cost real CPU.
    cam_high: CameraParams = Field(CameraParams(width=320, height=240, fovy_deg=55.0),
                                   description="head camera")
    cam_left_wrist: CameraParams = Field(CameraParams(width=160, height=120, fovy_deg=70.0),
                                         description="left wrist camera")
    cam_right_wrist: CameraParams = Field(CameraParams(width=160, height=120, fovy_deg=70.0),
                                          description="right wrist camera")
    render: RenderParams = Field(RenderParams(), description="render quality knobs")
    objects: ObjectParams = Field(ObjectParams(), description="tabletop objects")
    initial_positions: list[float] = Field(HOME_POSITIONS,
                                           description="14 start joints [left_joint1..6, left_gripper, right_...]")
    command_topic: str = Field("/sim_arm/joint_command", description="sensor_msgs/JointState position targets")
    joint_states_topic: str = Field("/joint_states", description="sensor_msgs/JointState of the 14 joints")
    image_topic_prefix: str = Field("/sim_arm", description="images on <prefix>/<camera>/image_raw")
    publish_camera_info: bool = Field(True, description="also <prefix>/<camera>/camera_info")
    max_lag_s: float = Field(0.1, gt=0.0, description="when physics falls further behind the wall clock, it "
                             "skips ahead (the time base is re-anchored) instead of catching up")
    render_without_subscribers: bool = Field(False, description="render cameras nobody subscribes to "
                                             "(normally skipped to save CPU)")
    stats_period_s: float = Field(10.0, ge=0.0, description="log achieved rates every N s (0 = never)")

    @field_validator("initial_positions")
    @classmethod
    def _q14(cls, v: list[float]) -> list[float]:
        if len(v) != 14:
            raise ValueError(f"needs 14 values, got {len(v)}")
        return v

    @model_validator(mode="after")
    def _rates(self) -> "SimArmParams":
        if self.joint_state_rate_hz > self.physics_rate_hz:
            raise ValueError("joint_state_rate_hz cannot exceed physics_rate_hz")
        return self

    def camera(self, name: str) -> CameraParams:
        return getattr(self, name)

    def enabled_cameras(self) -> list[str]:
        if self.camera_rate_hz <= 0:
            return []
        return [c for c in CAMERAS if self.camera(c).enabled]
