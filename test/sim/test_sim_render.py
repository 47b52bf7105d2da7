"""Headless rendering of the three cameras (EGL or OSMesa on the CPU; see lingbot_va_ros/sim/gl.py for the
Debian packages). No skip: on a machine set up by scripts/setup_env.sh rendering must work."""
from __future__ import annotations

import numpy as np
import pytest

from lingbot_va_ros.sim.arm_sim import BimanualSim
from lingbot_va_ros.sim.params import CAMERAS, SimArmParams
from lingbot_va_ros.sim.render import CameraRenderer, camera_intrinsics

SIZES = {"cam_high": (240, 320), "cam_left_wrist": (120, 160), "cam_right_wrist": (96, 128)}


@pytest.fixture(scope="module")
def sim():
    return BimanualSim(SimArmParams.from_dict({"cam_right_wrist": {"width": 128, "height": 96}}))


@pytest.fixture(scope="module")
def renderer(sim):
    with CameraRenderer(sim.model, SIZES) as r:
        yield r


def test_renders_each_camera_at_its_size(sim, renderer):
    images = renderer.render(sim.snapshot().qpos)
    assert list(images) == list(CAMERAS)
    for cam, img in images.items():
        assert img.shape == (*SIZES[cam], 3) and img.dtype == np.uint8
        assert img.std() > 15, f"{cam} is blank"
        assert len(np.unique(img.reshape(-1, 3), axis=0)) > 10, f"{cam} has almost no distinct colours"
    # the table (warm wood colour) fills the lower middle of the head view
    h, w = SIZES["cam_high"]
    patch = images["cam_high"][h // 2:, w // 3: 2 * w // 3].reshape(-1, 3).astype(int)
    assert np.mean(patch[:, 0] > patch[:, 2] + 20) > 0.5


def test_images_change_when_the_arm_moves(sim, renderer):
    sim.reset()
    before = renderer.render(sim.snapshot().qpos)
    sim.set_targets(["left_joint1", "left_joint2", "left_joint5"], [0.6, 0.4, 0.3])
    sim.step(int(1.0 / sim.timestep))
    after = renderer.render(sim.snapshot().qpos)
    diff = {c: np.abs(after[c].astype(int) - before[c].astype(int)).mean() for c in CAMERAS}
    assert diff["cam_high"] > 1.0 and diff["cam_left_wrist"] > 5.0, diff
    assert diff["cam_right_wrist"] < 0.5, diff          # the right arm did not move
    subset = renderer.render(sim.snapshot().qpos, ["cam_left_wrist"])
    np.testing.assert_array_equal(subset["cam_left_wrist"], after["cam_left_wrist"])


def test_intrinsics_follow_the_field_of_view(sim):
    fx, fy, cx, cy = camera_intrinsics(sim.model, "cam_high", 320, 240)
    assert fx == fy and (cx, cy) == (159.5, 119.5)
    assert 2 * np.degrees(np.arctan(120 / fy)) == pytest.approx(55.0)
