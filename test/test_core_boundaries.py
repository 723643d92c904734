"""The ROS-free core stays ROS-free: importing every module under the core folders loads no ROS package
(docs/architecture.md#tiers)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORE = ("model", "data", "geometry", "training", "runtime", "viz")
ROS_PACKAGES = ("rclpy", "rosidl_runtime_py", "rcl_interfaces", "builtin_interfaces", "std_msgs", "sensor_msgs",
                "geometry_msgs", "nav_msgs", "visualization_msgs", "diagnostic_msgs", "tf2_ros", "tf2_msgs",
                "launch", "launch_ros")


def core_modules() -> list[str]:
    package = REPO / "sparsedrive_ros"
    names = ["sparsedrive_ros.conventions"]
    for folder in CORE:
        for path in sorted((package / folder).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_core_module_list_is_complete() -> None:
    names = core_modules()
    assert "sparsedrive_ros.model.sparsedrive" in names and "sparsedrive_ros.runtime.pipeline" in names
    assert len(names) > 50


def test_core_imports_no_ros_package() -> None:
    code = ("import importlib, sys\n"
            f"for name in {core_modules()!r}:\n"
            "    importlib.import_module(name)\n"
            f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {ROS_PACKAGES!r}"
            " or m.startswith('sparsedrive_ros.msg') or m.startswith('sparsedrive_ros.ros'))\n"
            "print(bad)\n"
            "sys.exit(1 if bad else 0)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
