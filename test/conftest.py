"""Shared pytest set-up: markers, and a ROS 2 environment that keeps test traffic on this machine.

ROS variables are set here as well as in scripts/env.sh so that a bare `pytest` inside the venv behaves like
`make test`. Each pytest session gets its own ROS_DOMAIN_ID so parallel runs on one machine don't cross.
"""
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(REPO / "config" / "fastdds_profile.xml"))
os.environ.setdefault("FASTRTPS_DEFAULT_PROFILES_FILE", str(REPO / "config" / "fastdds_profile.xml"))
os.environ.setdefault("AMENT_PREFIX_PATH", sys.prefix)
# Domain ids 1..100 are safe on every platform; derive one from the pid unless the caller pinned it.
if "SPARSEDRIVE_TEST_DOMAIN_PINNED" not in os.environ:
    os.environ["ROS_DOMAIN_ID"] = str(1 + os.getpid() % 100)
if not Path(sys.prefix, ".sparsedrive-system-ros").exists():
    os.environ.pop("RMW_IMPLEMENTATION", None)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than a minute on 2 CPU cores (still run by CI)")
    config.addinivalue_line("markers", "ros: needs rclpy and the built messages")


@pytest.fixture
def ros_env():
    """Environment for child processes that must join this session's ROS graph."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    return env
