"""CAN-bus ego status (``<dataroot>/can_bus/<scene>_pose.json`` and ``_steeranglefeedback.json``).

The original's ego_status (10) = pose accel (3), rotation_rate (3), vel (3) in the vehicle frame (x forward,
y left) + steering angle, each taken from the message nearest to the sample time; zeros when absent.
It is a training target only: the model's forward pass does not read it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray


def _nearest(utimes: NDArray[np.int64], utime: int) -> int:
    i = int(np.searchsorted(utimes, utime))
    if i == len(utimes) or (i > 0 and utime - utimes[i - 1] < utimes[i] - utime):
        i -= 1
    return i


class CanBus:
    """Lazy per-scene reader of the two CAN-bus message streams SparseDrive uses."""

    def __init__(self, can_bus_dir: Path) -> None:
        self.root = Path(can_bus_dir)
        self._cache: dict[tuple[str, str], list[dict[str, Any]]] = {}

    def messages(self, scene_name: str, message: str) -> list[dict[str, Any]]:
        key = (scene_name, message)
        if key not in self._cache:
            path = self.root / f"{scene_name}_{message}.json"
            msgs: list[dict[str, Any]] = []
            if path.is_file():
                with path.open() as f:
                    msgs = json.load(f)
            self._cache[key] = sorted(msgs, key=lambda m: m["utime"])
        return self._cache[key]

    def ego_status(self, scene_name: str, utime: int) -> NDArray[np.float64]:
        """[10] accel(3), rotation_rate(3), vel(3), steering at the nearest messages; zeros when absent."""
        pose, steer = self.messages(scene_name, "pose"), self.messages(scene_name, "steeranglefeedback")
        status = np.zeros(10, dtype=np.float64)
        if not pose or not steer:
            return status
        p = pose[_nearest(np.asarray([m["utime"] for m in pose]), utime)]
        s = steer[_nearest(np.asarray([m["utime"] for m in steer]), utime)]
        status[0:3], status[3:6], status[6:9] = p["accel"], p["rotation_rate"], p["vel"]
        status[9] = s["value"]
        return status
