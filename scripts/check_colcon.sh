#!/usr/bin/env bash
# Proves the package builds with colcon the way a ROS 2 user builds it: a fresh workspace with this checkout in
# src/, colcon from PyPI, and the ROS 2 prefix of .venv (the PyPI wheels) standing in for /opt/ros/<distro>.
# Usage: scripts/check_colcon.sh [WORKSPACE_DIR]   (after `make setup`)
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WS="${1:-$(mktemp -d)}"
python3 -m venv "$WS/colcon-venv"
"$WS/colcon-venv/bin/pip" install -q colcon-common-extensions
mkdir -p "$WS/src" && git clone -q "$REPO" "$WS/src/sparsedrive_ros"
. "$REPO/scripts/env.sh"
cd "$WS"
"$WS/colcon-venv/bin/colcon" build --cmake-args -DPython3_EXECUTABLE="$REPO/.venv/bin/python" -DBUILD_TESTING=OFF
. install/setup.bash
python -c "import sparsedrive_ros.msg, sparsedrive_ros.ros.sparsedrive_node; print('colcon install OK:', sparsedrive_ros.msg.__file__)"
ls install/sparsedrive_ros/lib/sparsedrive_ros install/sparsedrive_ros/share/sparsedrive_ros/launch
