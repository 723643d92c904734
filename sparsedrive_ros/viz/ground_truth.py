"""Ground truth of a nuScenes dataroot in the frame of published outputs, for renders and behaviour checks.

Outputs are stamped with the anchor camera's time in the reference frame (LIDAR_TOP axes, docs/node.md);
annotations exist at the key frames' lidar time. A frame's annotations are the nearest key frame's within
``max_dt_s``, moved from that key frame's lidar frame through the global frame into the outputs' frame
(``ref_to_global``, from TF at the output stamp), so the ego motion between the two times (about 35 ms on
nuScenes, 0.25 m at 7 m/s) does not show up as an error.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from sparsedrive_ros.conventions import MAP_CLASSES
from sparsedrive_ros.data.nuscenes import NuScenes, build_frame_inputs, build_ground_truth
from sparsedrive_ros.runtime.pipeline import MAP_GROUND_Z

from .scene import Boxes, GroundTruth, MapElements


@dataclass(frozen=True)
class _KeyFrame:
    stamp_ns: int
    lidar_to_global: np.ndarray  # [4, 4]
    boxes: np.ndarray  # [K, 7] lidar frame, known classes only
    labels: np.ndarray  # [K]
    ids: np.ndarray  # [K] instance index
    polylines: list  # [P, 3] lidar frame
    map_labels: np.ndarray
    ego_path: np.ndarray  # [T, 3] future lidar origins (valid steps), lidar frame


class DatasetGroundTruth:
    """Every key frame's annotations of a dataroot, indexed by stamp."""

    def __init__(self, dataroot: str | Path, version: str = "v1.0-mini", max_dt_s: float = 0.1):
        self.max_dt_ns = int(max_dt_s * 1e9)
        nusc = NuScenes(dataroot, version)
        frames = []
        for scene in nusc.scenes:
            for sample in nusc.scene_samples(scene):
                frames.append(self._key_frame(nusc, sample))
        frames.sort(key=lambda f: f.stamp_ns)
        self._frames = frames
        self._stamps = [f.stamp_ns for f in frames]

    @staticmethod
    def _key_frame(nusc: NuScenes, sample) -> _KeyFrame:
        inputs = build_frame_inputs(nusc, sample)
        gt = build_ground_truth(nusc, sample)
        known = gt.labels >= 0
        polylines, map_labels = [], []
        for label, name in enumerate(MAP_CLASSES):
            for line in gt.map_polylines.get(name, []):
                polylines.append(np.concatenate([line, np.full((len(line), 1), MAP_GROUND_Z)], axis=1))
                map_labels.append(label)
        steps = np.cumsum(gt.ego_fut_trajs, axis=0)[gt.ego_fut_masks > 0]
        ego_path = np.concatenate([steps, np.full((len(steps), 1), MAP_GROUND_Z)], axis=1)
        return _KeyFrame(int(round(inputs.timestamp * 1e9)), inputs.T_global, gt.boxes[known], gt.labels[known],
                         gt.instance_ids[known], polylines, np.asarray(map_labels, np.int64), ego_path)

    def nearest(self, stamp_ns: int) -> Optional[_KeyFrame]:
        i = bisect.bisect_left(self._stamps, stamp_ns)
        best = min((j for j in (i - 1, i) if 0 <= j < len(self._stamps)),
                   key=lambda j: abs(self._stamps[j] - stamp_ns), default=None)
        if best is None or abs(self._stamps[best] - stamp_ns) > self.max_dt_ns:
            return None
        return self._frames[best]

    def in_frame(self, stamp_ns: int, ref_to_global: np.ndarray) -> Optional[GroundTruth]:
        """The annotations of the key frame nearest ``stamp_ns`` in the frame ``ref_to_global`` maps to global."""
        key = self.nearest(stamp_ns)
        if key is None:
            return None
        rel = np.linalg.inv(ref_to_global) @ key.lidar_to_global  # key-frame lidar -> outputs' frame

        def move(points: np.ndarray) -> np.ndarray:
            return points @ rel[:3, :3].T + rel[:3, 3]

        yaw = np.arctan2(rel[1, 0], rel[0, 0])
        b = key.boxes
        boxes = Boxes(move(b[:, :3]), b[:, 3:6], b[:, 6] + yaw, key.labels, np.ones(len(b)),
                      key.ids.astype(np.uint64))
        polylines = [move(p) for p in key.polylines]
        return GroundTruth(boxes, MapElements(polylines, key.map_labels, np.ones(len(polylines))),
                           move(key.ego_path), key.stamp_ns)
