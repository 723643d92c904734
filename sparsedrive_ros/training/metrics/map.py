"""Vector-map AP by chamfer distance (docs/model-notes.md#evaluation, VectorEvaluate).

Polylines (lidar frame, metres) are resampled to 200 points equally spaced along their arc length; the
chamfer distance is the mean of the two directed mean nearest-point distances. Per class, predictions over
all samples are sorted by descending score; each is matched to its nearest GT (by chamfer) of the same
sample and is a true positive if that distance is within the threshold and the GT is not yet covered.
AP is the area under the monotone precision envelope; mAP is the mean of the class × threshold APs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from sparsedrive_ros.conventions import MAP_CLASSES
from sparsedrive_ros.geometry.shapes import resample_polyline

__all__ = ["MAP_CLASSES", "MapSample", "chamfer_distance", "average_precision", "evaluate_map"]



@dataclass
class MapSample:
    """Polylines of one sample: lists of [P_i, 2] arrays with labels (and scores for predictions)."""

    lines: list[np.ndarray]
    labels: np.ndarray  # [M] int
    scores: np.ndarray | None = None  # [M], predictions only


def chamfer_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Symmetric chamfer distance of two point sets [P, 2], [Q, 2]."""
    d = np.linalg.norm(a[:, None] - b[None], axis=-1)
    return 0.5 * (d.min(1).mean() + d.min(0).mean())


def average_precision(recalls: np.ndarray, precisions: np.ndarray) -> float:
    """Area under the monotone (non-increasing) precision envelope."""
    mrec = np.concatenate([[0.0], recalls, [1.0]])
    mpre = np.concatenate([[0.0], precisions, [0.0]])
    for i in range(len(mpre) - 1, 0, -1):
        mpre[i - 1] = max(mpre[i - 1], mpre[i])
    idx = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]))


def _class_tp(
    gts: Sequence[MapSample], preds: Sequence[MapSample], cls: int, thresholds: Sequence[float], num_pts: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """-> (scores [D], tp [T, D] for each threshold, number of GT)."""
    scores, tps, num_gt = [], [], 0
    for gt, pred in zip(gts, preds):
        gt_lines = [resample_polyline(line, num_pts) for line, c in zip(gt.lines, gt.labels) if c == cls]
        keep = [i for i, c in enumerate(pred.labels) if c == cls and len(pred.lines[i]) >= 2]
        num_gt += len(gt_lines)
        if not keep:
            continue
        det_lines = [resample_polyline(pred.lines[i], num_pts) for i in keep]
        det_scores = np.asarray(pred.scores, float)[keep]
        tp = np.zeros((len(thresholds), len(keep)))
        if gt_lines:
            cd = np.array([[chamfer_distance(d, g) for g in gt_lines] for d in det_lines])
            nearest, nearest_idx = cd.min(1), cd.argmin(1)
            for t, thr in enumerate(thresholds):
                covered = np.zeros(len(gt_lines), bool)
                for i in np.argsort(-det_scores, kind="stable"):
                    if nearest[i] <= thr and not covered[nearest_idx[i]]:
                        covered[nearest_idx[i]] = True
                        tp[t, i] = 1
        scores.append(det_scores)
        tps.append(tp)
    if not scores:
        return np.zeros(0), np.zeros((len(thresholds), 0)), num_gt
    return np.concatenate(scores), np.concatenate(tps, axis=1), num_gt


def evaluate_map(
    gts: Sequence[MapSample],
    preds: Sequence[MapSample],
    thresholds: Sequence[float] = (0.5, 1.0, 1.5),
    classes: Sequence[str] = MAP_CLASSES,
    num_pts: int = 200,
) -> dict:
    """Per-class AP at each threshold, class AP (mean over thresholds) and mAP."""
    if len(gts) != len(preds):
        raise ValueError(f"{len(gts)} GT samples but {len(preds)} prediction samples")
    aps: dict[str, dict[str, float]] = {}
    for cls, name in enumerate(classes):
        scores, tp, num_gt = _class_tp(gts, preds, cls, thresholds, num_pts)
        order = np.argsort(-scores, kind="stable")
        aps[name] = {}
        for t, thr in enumerate(thresholds):
            tp_c = np.cumsum(tp[t, order])
            fp_c = np.cumsum(1 - tp[t, order])
            recalls = tp_c / max(num_gt, 1)
            precisions = tp_c / np.maximum(tp_c + fp_c, np.finfo(np.float64).eps)
            aps[name][str(thr)] = average_precision(recalls, precisions) if num_gt else 0.0
    class_ap = {name: float(np.mean(list(v.values()))) for name, v in aps.items()}
    return {"mAP": float(np.mean([a for v in aps.values() for a in v.values()])), "class_AP": class_ap, "AP": aps}
