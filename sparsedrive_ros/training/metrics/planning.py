"""Open-loop planning metrics (docs/model-notes.md#evaluation, planning_eval.py): L2 and collision rate at 1, 2, 3 s.

Only samples whose 6 GT steps are all valid count. Per step: L2 between predicted and GT cumulative
positions (lidar frame); collision of the ego box (4.084 × 1.85 m, yaw from the trajectory, centre moved
0.5 m forward along it) with the GT boxes of that future key frame expressed in the current lidar frame,
counted only where the GT trajectory itself does not collide. The value at horizon T is the mean over the
steps up to T ("average over previous horizons"); 'avg' is the mean of the 1 s, 2 s and 3 s values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from sparsedrive_ros.geometry.shapes import box_footprint

__all__ = ["PlanningSample", "trajectory_yaw", "boxes_overlap", "evaluate_planning"]

EGO_LENGTH, EGO_WIDTH = 4.084, 1.85


@dataclass
class PlanningSample:
    pred: np.ndarray  # [6, 2] cumulative positions, lidar frame
    gt: np.ndarray  # [6, 2] cumulative positions
    mask: np.ndarray  # [6]
    fut_boxes: Sequence[np.ndarray]  # 6 × [K_t, 7] (x, y, z, l, w, h, yaw) in the current lidar frame


def trajectory_yaw(traj: np.ndarray, static_dist: float = 0.5) -> np.ndarray:
    """Heading of each step from the previous position (the lidar origin before step 0); π/2 (forward)
    for a trajectory that moves less than ``static_dist`` in total."""
    traj = np.asarray(traj, float)
    if np.linalg.norm(traj[-1]) < static_dist:
        return np.full(len(traj), np.pi / 2)
    prev = np.concatenate([np.zeros((1, 2)), traj[:-1]])
    delta = traj - prev
    yaw = np.arctan2(delta[:, 1], delta[:, 0])
    # A step without motion keeps the previous heading.
    still = np.linalg.norm(delta, axis=1) < 1e-6
    for t in range(len(yaw)):
        if still[t]:
            yaw[t] = yaw[t - 1] if t else np.pi / 2
    return yaw


def boxes_overlap(a: np.ndarray, b: np.ndarray) -> bool:
    """Separating-axis test of two convex quadrilaterals [4, 2] (touching counts as overlap)."""
    for poly in (a, b):
        edges = np.roll(poly, -1, axis=0) - poly
        for nx, ny in np.stack([-edges[:, 1], edges[:, 0]], -1):
            pa, pb = a @ [nx, ny], b @ [nx, ny]
            if pa.max() < pb.min() or pb.max() < pa.min():
                return False
    return True


def _collides(traj: np.ndarray, fut_boxes: Sequence[np.ndarray], offset: float = 0.5) -> np.ndarray:
    yaw = trajectory_yaw(traj)
    out = np.zeros(len(traj), bool)
    for t, (pt, th) in enumerate(zip(traj, yaw)):
        cx, cy = pt[0] + offset * np.cos(th), pt[1] + offset * np.sin(th)
        ego = box_footprint(cx, cy, EGO_LENGTH, EGO_WIDTH, th)
        boxes = np.asarray(fut_boxes[t], float).reshape(-1, 7)
        out[t] = any(boxes_overlap(ego, box_footprint(b[0], b[1], b[3], b[4], b[6])) for b in boxes)
    return out


def evaluate_planning(
    samples: Sequence[PlanningSample], horizons_s: Sequence[int] = (1, 2, 3), dt: float = 0.5
) -> dict:
    """{'L2': {'1s', '2s', '3s', 'avg'}, 'obj_box_col': {...}, 'obj_col': {...}, 'num_samples'}."""
    l2, col, gt_col = [], [], []
    for s in samples:
        if not (np.asarray(s.mask) > 0).all():
            continue
        if len(s.fut_boxes) != len(s.gt):
            raise ValueError(f"need {len(s.gt)} future box sets, got {len(s.fut_boxes)}")
        l2.append(np.linalg.norm(np.asarray(s.pred) - np.asarray(s.gt), axis=-1))
        g = _collides(np.asarray(s.gt, float), s.fut_boxes)
        col.append(_collides(np.asarray(s.pred, float), s.fut_boxes) & ~g)
        gt_col.append(g)
    out: dict = {"num_samples": len(l2)}
    for name, values in (("L2", l2), ("obj_box_col", col), ("obj_col", gt_col)):
        per_step = np.mean(np.asarray(values, float), axis=0) if values else None
        res = {}
        for h in horizons_s:
            n = int(round(h / dt))
            res[f"{h}s"] = float(per_step[:n].mean()) if per_step is not None else float("nan")
        res["avg"] = float(np.mean([res[f"{h}s"] for h in horizons_s]))
        out[name] = res
    return out
