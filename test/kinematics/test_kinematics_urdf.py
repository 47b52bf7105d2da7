"""urdf/bimanual_arm.urdf is a valid, complete robot description (what robot_state_publisher, the sim and
the kinematics rely on) and load_joint_limits reads it."""
from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from lingbot_va_ros.kinematics import JOINT_NAMES, JointLimits, default_urdf_path, load_joint_limits
from lingbot_va_ros.kinematics.urdf_limits import UrdfError, chain_to, read_urdf_joints, read_urdf_links

URDF = default_urdf_path()
FRAMES = ["base_link", "left_ee", "right_ee", "cam_high", "cam_left_wrist", "cam_right_wrist",
          "cam_high_optical_frame", "cam_left_wrist_optical_frame", "cam_right_wrist_optical_frame"]


@pytest.fixture(scope="module")
def root():
    return ET.parse(URDF).getroot()


def test_tree_is_well_formed(root):
    links = [el.attrib["name"] for el in root.findall("link")]
    joints = root.findall("joint")
    assert len(set(links)) == len(links), "duplicate link names"
    assert len({j.attrib["name"] for j in joints}) == len(joints), "duplicate joint names"
    children = [j.find("child").attrib["link"] for j in joints]
    for j in joints:
        assert j.find("parent").attrib["link"] in links, j.attrib["name"]
        assert j.find("child").attrib["link"] in links, j.attrib["name"]
    assert len(set(children)) == len(children), "a link has two parent joints"
    roots = [name for name in links if name not in children]
    assert roots == ["base_link"], f"expected the single root base_link, got {roots}"
    # every link reachable from the root (a tree: n links, n-1 joints, no cycles)
    assert len(joints) == len(links) - 1
    for frame in FRAMES:
        assert frame in links
    assert not root.findall(".//mesh"), "primitive geometry only"


def test_joints_have_limits_dynamics_and_inertia(root):
    links = {el.attrib["name"]: el for el in root.findall("link")}
    joints = read_urdf_joints(URDF)
    for name in JOINT_NAMES:
        j = joints[name]
        assert j.type == ("prismatic" if name.endswith("gripper") else "revolute"), name
        assert j.lower < j.upper and 0 < j.velocity < 10 and 0 < j.effort < 200, name
        link = links[j.child]
        mass = float(link.find("inertial/mass").attrib["value"])
        assert 0.01 <= mass <= 5, (name, mass)
        inertia = link.find("inertial/inertia").attrib
        assert all(float(inertia[k]) > 0 for k in ("ixx", "iyy", "izz")), name
        assert link.find("collision") is not None and link.find("visual") is not None, name
    for side in ("left", "right"):
        grip, mimic = joints[f"{side}_gripper"], joints[f"{side}_gripper_mimic"]
        assert (grip.lower, grip.upper) == (0.0, 0.04)
        assert mimic.mimic == f"{side}_gripper" and mimic.mimic_multiplier == 1.0
        assert np.dot(grip.axis, mimic.axis) == pytest.approx(-1.0), "fingers move in opposite directions"


def test_arms_are_identical_and_0p6_m_apart():
    joints = read_urdf_joints(URDF)
    for i in range(1, 7):
        left, right = joints[f"left_joint{i}"], joints[f"right_joint{i}"]
        assert (left.lower, left.upper, left.velocity, left.effort, left.axis, left.origin_xyz) == \
               (right.lower, right.upper, right.velocity, right.effort, right.axis, right.origin_xyz)
    ly, ry = joints["left_mount_joint"].origin_xyz[1], joints["right_mount_joint"].origin_xyz[1]
    assert ly - ry == pytest.approx(0.6)
    # reach: shoulder (joint2) to tool centre point, arm stretched, is Piper-like (~0.6 m)
    chain = chain_to(joints, "left_ee", "base_link")
    after_shoulder = chain[[j.name for j in chain].index("left_joint2") + 1:]
    reach = sum(np.linalg.norm(j.origin_xyz) for j in after_shoulder)
    assert 0.55 < reach < 0.75


def test_optical_frames_follow_rep103():
    joints = read_urdf_joints(URDF)
    for cam in ("cam_high", "cam_left_wrist", "cam_right_wrist"):
        j = joints[f"{cam}_optical_joint"]
        assert j.parent == cam
        assert j.origin_rpy == pytest.approx((-math.pi / 2, 0.0, -math.pi / 2), abs=1e-8)


def test_load_joint_limits_contract():
    limits = load_joint_limits(URDF)
    assert list(limits) == list(JOINT_NAMES)          # actuated joints only, URDF order, no mimic
    lo, hi, vel = limits["left_joint2"]
    assert (lo, hi) == (-1.0, 2.0) and vel > 0
    jl = JointLimits.from_urdf(URDF, JOINT_NAMES)
    assert jl.as_dict() == limits
    q = np.zeros(14)
    q[1] = 5.0
    assert jl.violations(q) == ["left_joint2=5.0000 outside [-1.0000, 2.0000]"]
    assert jl.clip(q)[1] == 2.0
    with pytest.raises(UrdfError, match="no movable joint"):
        JointLimits.from_urdf(URDF, ["left_joint9"])
    assert "left_link6" in read_urdf_links(URDF)


def test_bad_urdf_is_reported(tmp_path):
    bad = tmp_path / "bad.urdf"
    bad.write_text('<robot name="r"><link name="a"/><link name="b"/>'
                   '<joint name="j" type="revolute"><parent link="a"/><child link="b"/></joint></robot>')
    with pytest.raises(UrdfError, match="joint 'j': a revolute joint needs <limit"):
        load_joint_limits(bad)
