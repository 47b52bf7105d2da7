"""Offscreen RGB rendering of the sim's cameras from a state snapshot (headless: EGL or OSMesa, see gl.py).

One GL context and one MuJoCo render context serve all cameras (each drawn into the corner of the shared
offscreen buffer at its own size). A renderer owns its own MjData, filled from a snapshot's qpos, so
rendering never touches the physics state and can run on another thread while physics steps. OpenGL
contexts are bound to a thread: create and use a CameraRenderer on one thread.
"""
from __future__ import annotations

import math

import numpy as np

from lingbot_va_ros.sim.gl import RenderUnavailable, ensure_gl_backend, gl_context_class, unavailable_message

ensure_gl_backend()
import mujoco  # noqa: E402

from lingbot_va_ros.sim.scene import GROUP_ROBOT_COLLISION  # noqa: E402


def camera_intrinsics(model: mujoco.MjModel, camera: str, width: int,
                      height: int) -> tuple[float, float, float, float]:
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
        self._sizes = dict(cameras)
        self._ids = {}
        for name in self._sizes:
            cid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, name)
            if cid < 0:
                raise KeyError(f"no camera {name!r} in the model")
            self._ids[name] = cid
        max_h = max((h for h, _ in self._sizes.values()), default=1)
        max_w = max((w for _, w in self._sizes.values()), default=1)
        if max_w > model.vis.global_.offwidth or max_h > model.vis.global_.offheight:
            raise ValueError(f"camera size {max_w}x{max_h} exceeds the model's offscreen buffer "
                             f"{model.vis.global_.offwidth}x{model.vis.global_.offheight}")
        self._ctx = self._con = None
        try:
            self._ctx = gl_context_class()(max_w, max_h)
            self._ctx.make_current()
            self._con = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_100)
            mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self._con)
        except RenderUnavailable:
            self.close()
            raise
        except Exception as exc:  # noqa: BLE001 - any GL failure means the same thing to the user
            self.close()
            raise RenderUnavailable(unavailable_message(exc)) from exc
        self._data = mujoco.MjData(model)
        self._scene = mujoco.MjvScene(model, maxgeom=1000)
        self._scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = shadows
        self._scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
        self._option = mujoco.MjvOption()
        self._option.geomgroup[GROUP_ROBOT_COLLISION] = 0
        self._camera = mujoco.MjvCamera()
        self._camera.type = mujoco.mjtCamera.mjCAMERA_FIXED

    @property
    def cameras(self) -> list[str]:
        return list(self._sizes)

    def render(self, qpos: np.ndarray, cameras: list[str] | None = None) -> dict[str, np.ndarray]:
        """HxWx3 uint8 RGB per camera (default: all) for the generalized positions ``qpos``."""
        if self._con is None:
            raise RuntimeError("renderer is closed")
        m, d = self.model, self._data
        d.qpos[:] = qpos
        mujoco.mj_kinematics(m, d)   # body, geom and camera poses; no dynamics needed to draw
        mujoco.mj_camlight(m, d)
        self._ctx.make_current()
        out = {}
        for name in self._sizes if cameras is None else cameras:
            h, w = self._sizes[name]
            self._camera.fixedcamid = self._ids[name]
            mujoco.mjv_updateScene(m, d, self._option, None, self._camera, mujoco.mjtCatBit.mjCAT_ALL, self._scene)
            rect = mujoco.MjrRect(0, 0, w, h)
            mujoco.mjr_render(rect, self._scene, self._con)
            buf = np.empty((h, w, 3), dtype=np.uint8)
            mujoco.mjr_readPixels(buf, None, rect, self._con)
            out[name] = np.ascontiguousarray(buf[::-1])   # OpenGL rows run bottom-up
        return out

    def close(self) -> None:
        if self._con is not None:
            self._con.free()
            self._con = None
        if self._ctx is not None:
            self._ctx.free()
            self._ctx = None

    def __enter__(self) -> "CameraRenderer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
