"""Build the MuJoCo model of the tabletop scene FROM the robot's URDF (no second robot model is maintained).

MuJoCo's own URDF importer reads the robot (links, inertials, joints, limits, damping/friction, mimic joints
become joint equalities); :func:`build_spec` then adds what a URDF cannot say, through ``mujoco.MjSpec``:

- the table, floor, lights and a few free objects (blocks, a bowl);
- position actuators on the 14 commanded joints (gains below, force limited to the URDF effort) and
  gravity compensation on the robot bodies, like the servo controllers of real arms;
- contact filtering: robot geoms touch the scene but not each other (no self-collision model);
- MuJoCo cameras on the URDF ``*_optical_frame`` links (MuJoCo cameras look along -z with y up, ROS
  optical frames along +z with y down: a 180 deg turn about x).

Geom groups: 0 scene, 1 robot visual, 3 robot collision (hidden from the cameras).
"""
from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lingbot_va_ros.sim.gl import ensure_gl_backend

ensure_gl_backend()
import mujoco  # noqa: E402  (after the GL backend is chosen)

from lingbot_va_ros.kinematics.bimanual import JOINT_NAMES  # noqa: E402
from lingbot_va_ros.kinematics.urdf_limits import default_urdf_path, read_urdf_joints  # noqa: E402
from lingbot_va_ros.sim.params import CAMERAS, SimArmParams  # noqa: E402

GROUP_SCENE, GROUP_ROBOT_VISUAL, GROUP_ROBOT_COLLISION = 0, 1, 3
# contype/conaffinity bits: a contact needs (type_a & aff_b) | (type_b & aff_a).
ROBOT_CONTYPE, ROBOT_CONAFFINITY = 2, 1      # robot-robot: 2&1 = 0, no contact
SCENE_CONTYPE, SCENE_CONAFFINITY = 1, 3      # scene-robot and scene-scene: contact

TABLE_TOP_Z = 0.0                            # base_link sits on the table top
TABLE_HEIGHT = 0.75
TABLE_X = (-0.20, 0.75)
TABLE_Y = (-0.70, 0.70)

# Servo gains per arm joint (joint1..6) and the gripper: about 80 rad/s bandwidth for the reflected
# inertia of each joint (armature below + links), near critical damping. Tracking lag ~kv/kp = 25 ms
# (0.016 rad at 0.9 rad/s), overshoot < 0.01 rad on a 0.5 rad step; gravity is compensated.
ARM_KP = (1200.0, 1200.0, 500.0, 80.0, 80.0, 40.0)
ARM_KV = (30.0, 30.0, 12.0, 2.0, 2.0, 0.9)
ARM_ARMATURE = (0.05, 0.05, 0.04, 0.01, 0.01, 0.005)
GRIPPER_KP, GRIPPER_KV, GRIPPER_ARMATURE = 800.0, 20.0, 0.02
# The fingers' end stops: MuJoCo's default limit constraint (time constant 0.02 s) let a finger slammed by a
# violently moving arm run up to 21 % of its range past the stop; a real gripper's stop is hard. 4 ms = two
# physics steps, the stiffest MuJoCo integrates stably.
GRIPPER_LIMIT_SOLREF = [0.004, 1.0]

BLOCK_COLORS = ((0.85, 0.15, 0.12, 1), (0.15, 0.65, 0.20, 1), (0.15, 0.30, 0.85, 1),
                (0.95, 0.80, 0.10, 1), (0.60, 0.20, 0.70, 1), (0.10, 0.70, 0.75, 1))
BLOCK_HALF = 0.02
BOWL_RADIUS, BOWL_WALL_H, BOWL_SEGMENTS = 0.065, 0.045, 14


@dataclass
class SceneObject:
    name: str
    body: str
    joint: str
    radius: float          # footprint radius used to keep objects apart when placing them
    half_height: float


@dataclass
class SceneLayout:
    """Names of what build_spec added, for the simulation to find by id after compiling."""

    urdf_path: Path
    joint_names: tuple[str, ...] = JOINT_NAMES
    mimic: dict[str, tuple[str, float, float]] = field(default_factory=dict)  # mimic -> (leader, mult, offset)
    objects: list[SceneObject] = field(default_factory=list)
    cameras: dict[str, str] = field(default_factory=dict)       # camera -> optical frame body
    velocity_limits: dict[str, float] = field(default_factory=dict)


def _urdf_for_mujoco(urdf_path: Path) -> str:
    """The URDF text with MuJoCo compiler options added in memory (the file stays plain URDF)."""
    root = ET.parse(urdf_path).getroot()
    ext = ET.Element("mujoco")
    # fusestatic=false keeps the camera and tool frames as bodies; discardvisual=false keeps the coloured
    # visual geoms (the collision geoms are then hidden from the cameras).
    ET.SubElement(ext, "compiler", {"fusestatic": "false", "discardvisual": "false", "balanceinertia": "true",
                                    "angle": "radian"})
    root.insert(0, ext)
    return ET.tostring(root, encoding="unicode")


def build_spec(params: SimArmParams | None = None,
               urdf_path: str | Path | None = None) -> tuple[mujoco.MjSpec, SceneLayout]:
    params = params or SimArmParams()
    urdf_path = Path(urdf_path or params.urdf or default_urdf_path())
    joints = read_urdf_joints(urdf_path)
    spec = mujoco.MjSpec.from_string(_urdf_for_mujoco(urdf_path))
    spec.modelname = "lingbot_bimanual_tabletop"
    layout = SceneLayout(urdf_path=urdf_path)

    missing = [n for n in JOINT_NAMES if n not in joints]
    if missing:
        raise ValueError(f"{urdf_path}: joints {missing} are missing (expected {list(JOINT_NAMES)})")

    # ---- physics options ----------------------------------------------------------------------------
    spec.option.timestep = 1.0 / params.physics_rate_hz
    # implicitfast integrates the actuators' damping implicitly: stable with stiff servos at 500 Hz
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    spec.option.cone = mujoco.mjtCone.mjCONE_ELLIPTIC
    spec.option.impratio = 5.0  # less slip for grasped objects

    # ---- robot: groups, contacts, gravity compensation, armature, actuators ---------------------------
    robot_bodies = [b for b in spec.bodies if b.name != "world"]
    for body in robot_bodies:
        body.gravcomp = 1.0
    for geom in spec.geoms:
        if geom.contype == 0 and geom.conaffinity == 0:
            geom.group = GROUP_ROBOT_VISUAL
        else:
            geom.group = GROUP_ROBOT_COLLISION
            geom.contype, geom.conaffinity = ROBOT_CONTYPE, ROBOT_CONAFFINITY
            geom.rgba = [0.5, 0.5, 0.5, 0.0]
            if "finger" in geom.parent.name:
                geom.friction = [1.5, 0.02, 0.002]
                geom.condim = 4
    for name, j in joints.items():
        if j.mimic is not None:
            layout.mimic[name] = (j.mimic, j.mimic_multiplier, j.mimic_offset)
    for name in JOINT_NAMES:
        j = joints[name]
        is_gripper = name.endswith("gripper")
        idx = int(name[-1]) - 1 if not is_gripper else -1
        kp = GRIPPER_KP if is_gripper else ARM_KP[idx]
        kv = GRIPPER_KV if is_gripper else ARM_KV[idx]
        joint = spec.joint(name)
        joint.armature = GRIPPER_ARMATURE if is_gripper else ARM_ARMATURE[idx]
        if is_gripper:
            joint.solref_limit = GRIPPER_LIMIT_SOLREF
        act = spec.add_actuator()
        act.name = name
        act.target = name
        act.trntype = mujoco.mjtTrn.mjTRN_JOINT
        act.set_to_position(kp=kp, kv=kv)
        act.ctrllimited = mujoco.mjtLimited.mjLIMITED_TRUE
        act.ctrlrange = [j.lower, j.upper]
        act.forcelimited = mujoco.mjtLimited.mjLIMITED_TRUE
        act.forcerange = [-j.effort, j.effort]
        layout.velocity_limits[name] = j.velocity
    for mimic in layout.mimic:
        spec.joint(mimic).armature = GRIPPER_ARMATURE
        spec.joint(mimic).solref_limit = GRIPPER_LIMIT_SOLREF

    # ---- cameras on the URDF optical frames ------------------------------------------------------------
    for cam in CAMERAS:
        frame = f"{cam}_optical_frame"
        body = spec.body(frame)
        if body is None:
            raise ValueError(f"{urdf_path}: link {frame!r} is missing (needed for camera {cam})")
        c = body.add_camera()
        c.name = cam
        c.quat = [0.0, 1.0, 0.0, 0.0]   # optical (+z forward, y down) -> MuJoCo (-z forward, y up)
        c.fovy = params.camera(cam).fovy_deg
        layout.cameras[cam] = frame

    _add_environment(spec, params)
    layout.objects = _add_objects(spec, params)
    return spec, layout


def _add_environment(spec: mujoco.MjSpec, params: SimArmParams) -> None:
    widths = [params.camera(c).width for c in CAMERAS] + [640]
    heights = [params.camera(c).height for c in CAMERAS] + [480]
    spec.visual.global_.offwidth = max(widths)
    spec.visual.global_.offheight = max(heights)
    spec.visual.quality.offsamples = params.render.msaa_samples
    # Tessellation and floor grid set for the CPU rasteriser: MuJoCo's defaults cost ~2x per frame there.
    spec.visual.quality.shadowsize = params.render.shadow_size
    spec.visual.quality.numslices = 16
    spec.visual.quality.numstacks = 8
    spec.visual.headlight.ambient = [0.35, 0.35, 0.35]
    spec.visual.headlight.diffuse = [0.35, 0.35, 0.35]
    spec.visual.headlight.specular = [0.05, 0.05, 0.05]
    spec.visual.map.znear = 0.005

    sky = spec.add_texture()
    sky.name, sky.type = "sky", mujoco.mjtTexture.mjTEXTURE_SKYBOX
    sky.builtin = mujoco.mjtBuiltin.mjBUILTIN_GRADIENT
    sky.rgb1, sky.rgb2 = [0.75, 0.78, 0.82], [0.45, 0.48, 0.52]
    sky.width = sky.height = 64

    world = spec.worldbody
    floor = world.add_geom()
    floor.name, floor.type = "floor", mujoco.mjtGeom.mjGEOM_PLANE
    floor.size = [3.0, 3.0, 1.0]   # 3rd = render grid spacing: few quads
    floor.pos = [0.0, 0.0, TABLE_TOP_Z - TABLE_HEIGHT]
    floor.rgba = [0.27, 0.29, 0.32, 1.0]   # plain: a checker texture costs ~25% of a frame on llvmpipe
    _scene_geom(floor)

    cx, cy = (TABLE_X[0] + TABLE_X[1]) / 2, (TABLE_Y[0] + TABLE_Y[1]) / 2
    hx, hy = (TABLE_X[1] - TABLE_X[0]) / 2, (TABLE_Y[1] - TABLE_Y[0]) / 2
    top = world.add_geom()
    top.name, top.type = "table_top", mujoco.mjtGeom.mjGEOM_BOX
    top.size = [hx, hy, 0.02]
    top.pos = [cx, cy, TABLE_TOP_Z - 0.02]
    top.rgba = [0.62, 0.50, 0.38, 1.0]
    top.friction = [1.0, 0.01, 0.001]
    _scene_geom(top)
    for i, (sx, sy) in enumerate(((1, 1), (1, -1), (-1, 1), (-1, -1))):
        leg = world.add_geom()
        leg.name, leg.type = f"table_leg{i}", mujoco.mjtGeom.mjGEOM_BOX
        leg.size = [0.025, 0.025, (TABLE_HEIGHT - 0.04) / 2]
        leg.pos = [cx + sx * (hx - 0.05), cy + sy * (hy - 0.05), TABLE_TOP_Z - 0.04 - (TABLE_HEIGHT - 0.04) / 2]
        leg.rgba = [0.45, 0.36, 0.27, 1.0]
        leg.contype = leg.conaffinity = 0
        leg.group = GROUP_SCENE

    key = world.add_light()
    key.name, key.type = "key_light", mujoco.mjtLightType.mjLIGHT_DIRECTIONAL
    key.pos, key.dir = [0.6, 0.4, 2.0], [-0.25, -0.2, -1.0]
    key.diffuse, key.specular, key.ambient = [0.55, 0.55, 0.55], [0.1, 0.1, 0.1], [0.1, 0.1, 0.1]
    key.castshadow = params.render.shadows
    fill = world.add_light()
    fill.name, fill.type = "fill_light", mujoco.mjtLightType.mjLIGHT_DIRECTIONAL
    fill.pos, fill.dir = [-0.5, -0.6, 1.5], [0.3, 0.4, -1.0]
    fill.diffuse, fill.specular = [0.25, 0.25, 0.25], [0.0, 0.0, 0.0]
    fill.castshadow = False


def _scene_geom(geom) -> None:
    geom.group = GROUP_SCENE
    geom.contype, geom.conaffinity = SCENE_CONTYPE, SCENE_CONAFFINITY


def _add_objects(spec: mujoco.MjSpec, params: SimArmParams) -> list[SceneObject]:
    objects: list[SceneObject] = []
    for i in range(params.objects.num_blocks):
        name = f"block{i}"
        body = spec.worldbody.add_body()
        body.name = name
        fj = body.add_freejoint()
        fj.name = f"{name}_free"
        g = body.add_geom()
        g.name, g.type = f"{name}_geom", mujoco.mjtGeom.mjGEOM_BOX
        g.size = [BLOCK_HALF] * 3
        g.mass = 0.05
        g.rgba = list(BLOCK_COLORS[i % len(BLOCK_COLORS)])
        g.friction = [1.2, 0.01, 0.001]
        g.condim = 4
        _scene_geom(g)
        objects.append(SceneObject(name, name, fj.name, BLOCK_HALF * math.sqrt(2), BLOCK_HALF))
    if params.objects.bowl:
        body = spec.worldbody.add_body()
        body.name = "bowl"
        fj = body.add_freejoint()
        fj.name = "bowl_free"
        color = [0.92, 0.92, 0.88, 1.0]
        base = body.add_geom()
        base.name, base.type = "bowl_base", mujoco.mjtGeom.mjGEOM_CYLINDER
        base.size = [BOWL_RADIUS * 0.8, 0.004, 0]
        base.pos = [0, 0, -BOWL_WALL_H / 2 + 0.004]
        base.mass, base.rgba = 0.06, color
        _scene_geom(base)
        # a ring of slightly outward-tilted wall segments: a hollow bowl out of primitives
        seg_half = math.pi * BOWL_RADIUS / BOWL_SEGMENTS * 1.05
        for k in range(BOWL_SEGMENTS):
            a = 2 * math.pi * k / BOWL_SEGMENTS
            w = body.add_geom()
            w.name, w.type = f"bowl_wall{k}", mujoco.mjtGeom.mjGEOM_BOX
            w.size = [0.004, seg_half, BOWL_WALL_H / 2]
            # walls start just above the base's underside: only the base touches the table (fewer contacts)
            w.pos = [BOWL_RADIUS * math.cos(a), BOWL_RADIUS * math.sin(a), 0.004]
            tilt = 0.25
            # yaw a about z, then tilt outward about the segment's tangent axis
            qz = np.array([math.cos(a / 2), 0, 0, math.sin(a / 2)])
            qy = np.array([math.cos(tilt / 2), 0, math.sin(tilt / 2), 0])
            q = np.empty(4)
            mujoco.mju_mulQuat(q, qz, qy)
            w.quat = q.tolist()
            w.mass, w.rgba = 0.01, color
            _scene_geom(w)
        objects.append(SceneObject("bowl", "bowl", fj.name, BOWL_RADIUS + 0.02, BOWL_WALL_H / 2))
    return objects


def build_model(params: SimArmParams | None = None,
                urdf_path: str | Path | None = None) -> tuple[mujoco.MjModel, SceneLayout]:
    spec, layout = build_spec(params, urdf_path)
    return spec.compile(), layout
