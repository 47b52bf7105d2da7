"""Offscreen RGB rendering of the sim's cameras from a state snapshot (headless: EGL or OSMesa, see gl.py).

A renderer owns its own MjData, filled from a :class:`SimSnapshot`, so rendering never touches the physics
state and can run on another thread while physics steps. OpenGL contexts belong to the thread that made
them: create and use a CameraRenderer on one thread.
"""
from __future__ import annotations

import math

import numpy as np

from lingbot_va_ros.sim.gl import RenderUnavailable, ensure_gl_backend, unavailable_message

ensure_gl_backend()
import mujoco  # noqa: E402

from lingbot_va_ros.sim.scene import GROUP_ROBOT_COLLISION  # noqa: E402


def camera_intrinsics(model: mujoco.MjModel, camera: str, width: int, height: int) -> tuple[float, float, float, float]:
    """(fx, fy, cx, cy) in pixels of a MuJoCo pinhole camera (fovy is vertical, pixels square)."""
    cid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, camera)
    if cid < 0:
        raise KeyError(f"no camera {camera!r}")
    f = 0.5 * height / math.tan(math.radians(float(model.cam_fovy[cid])) / 2)
    return f, f, (width - 1) / 2.0, (height - 1) / 2.0


class CameraRenderer:
    def __init__(self, model: mujoco.MjModel, cameras: dict[str, tuple[int, int]], shadows: bool = True):
        """``cameras``: name -> (height, width)."""
        self.model = model
        self._data = mujoco.MjData(model)
        self._option = mujoco.MjvOption()
        self._option.geomgroup[GROUP_ROBOT_COLLISION] = 0
        self._renderers: dict[str, mujoco.Renderer] = {}
        try:
            for name, (h, w) in cameras.items():
                if mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, name) < 0:
                    raise KeyError(f"no camera {name!r} in the model")
                r = mujoco.Renderer(model, height=h, width=w)
                r.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = shadows
                r.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
                self._renderers[name] = r
        except KeyError:
            self.close()
            raise
        except Exception as exc:  # noqa: BLE001 - any GL failure means the same thing to the user
            self.close()
            raise RenderUnavailable(unavailable_message(exc)) from exc

    @property
    def cameras(self) -> list[str]:
        return list(self._renderers)

    def render(self, qpos: np.ndarray, cameras: list[str] | None = None) -> dict[str, np.ndarray]:
        """HxWx3 uint8 RGB per camera (default: all) for the generalized positions ``qpos``."""
        d = self._data
        d.qpos[:] = qpos
        mujoco.mj_kinematics(self.model, d)   # body, geom and camera poses; no dynamics needed to draw
        mujoco.mj_camlight(self.model, d)
        out = {}
        for name in self._renderers if cameras is None else cameras:
            r = self._renderers[name]
            r.update_scene(d, camera=name, scene_option=self._option)
            out[name] = r.render()
        return out

    def close(self) -> None:
        for r in self._renderers.values():
            r.close()
        self._renderers.clear()

    def __enter__(self) -> "CameraRenderer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
