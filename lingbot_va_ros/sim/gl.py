"""Pick a headless OpenGL backend for MuJoCo before ``import mujoco`` (which reads MUJOCO_GL once).

Order: an explicit ``MUJOCO_GL`` wins; otherwise EGL (Mesa's llvmpipe renders on the CPU through EGL's
surfaceless platform, and a GPU driver is used where there is one), then OSMesa. Each candidate is probed in
a short-lived subprocess because a backend that fails can leave PyOpenGL bound to the wrong platform in
this process. The choice is written to ``MUJOCO_GL`` so child processes inherit it without probing.

Debian packages (bookworm): EGL needs libegl1 libegl-mesa0 libgbm1 libgl1-mesa-dri; OSMesa needs libosmesa6.
"""
from __future__ import annotations

import os
import subprocess
import sys

CANDIDATES = ("egl", "osmesa")
APT_HINT = "apt-get install libegl1 libegl-mesa0 libgbm1 libgl1-mesa-dri  (or libosmesa6 for MUJOCO_GL=osmesa)"

_PROBE = """
import mujoco
ctx = mujoco.GLContext(16, 16)
ctx.make_current()
ctx.free()
"""


class RenderUnavailable(RuntimeError):
    """No headless OpenGL backend works on this machine."""


def probe(backend: str, timeout: float = 30.0) -> tuple[bool, str]:
    env = dict(os.environ, MUJOCO_GL=backend)
    env.pop("PYOPENGL_PLATFORM", None)
    try:
        res = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True,
                             timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, f"{backend}: probe timed out after {timeout:.0f}s"
    tail = (res.stderr.strip().splitlines() or [""])[-1]
    return res.returncode == 0, f"{backend}: {'ok' if res.returncode == 0 else tail}"


def ensure_gl_backend() -> str:
    """Set MUJOCO_GL to a working headless backend (idempotent). Returns it, or '' when none works."""
    chosen = os.environ.get("MUJOCO_GL", "").strip().lower()
    if chosen:
        return chosen
    reasons = []
    for backend in CANDIDATES:
        ok, why = probe(backend)
        reasons.append(why)
        if ok:
            os.environ["MUJOCO_GL"] = backend
            return backend
    # Physics still works; rendering raises RenderUnavailable with these reasons.
    os.environ["LINGBOT_GL_PROBE"] = "; ".join(reasons)
    os.environ["MUJOCO_GL"] = "egl"
    return ""


def unavailable_message(exc: BaseException | None = None) -> str:
    reasons = os.environ.get("LINGBOT_GL_PROBE", "")
    return (f"headless rendering is unavailable (MUJOCO_GL={os.environ.get('MUJOCO_GL', '')!r}"
            f"{', probes: ' + reasons if reasons else ''}{', error: ' + repr(exc) if exc else ''}); "
            f"install the OpenGL libraries: {APT_HINT}")


def gl_context_class():
    """The GLContext class of the chosen backend. Imported explicitly (not via ``mujoco.GLContext``) so that
    rendering works even when something imported mujoco before MUJOCO_GL was set."""
    backend = ensure_gl_backend() or os.environ.get("MUJOCO_GL", "")
    try:
        if backend == "egl":
            from mujoco.egl import GLContext
        elif backend == "osmesa":
            from mujoco.osmesa import GLContext
        elif backend in ("glfw", "glx"):
            from mujoco.glfw import GLContext
        else:
            raise RenderUnavailable(unavailable_message())
    except ImportError as exc:
        raise RenderUnavailable(unavailable_message(exc)) from exc
    return GLContext
