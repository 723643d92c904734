"""nuScenes detection score (mAP, the five true-positive errors, NDS) of the "detection_cvpr_2019" protocol.

The protocol, as implemented here (docs/model-notes.md#evaluation):

1. Filtering: a box farther from the ego vehicle than its class range is dropped (GT and predictions); GT boxes
   without any lidar or radar point are dropped. A sample may hold at most 500 predictions.
2. Matching, per class and per centre-distance threshold (0.5, 1, 2, 4 m): predictions are visited from the
   highest score down; each takes the nearest GT box of its sample (2-D centre distance) that no earlier
   prediction took, and is a true positive when that distance is below the threshold.
3. Curve: precision and the visited prediction's score are read at 101 evenly spaced recall values (0 beyond the
   highest reached recall). Each TP error is the running mean over the true positives (in score order) and is
   read at the same 101 points through the score.
4. AP: mean over the recall points above 10 % of max(precision − 0.1, 0), rescaled by 1 / 0.9.
   TP error: mean over the recall points from 10 % up to the highest reached recall, taken at the 2 m threshold
   (1 when that range is empty). Orientation of barriers is compared modulo π; traffic cones have no
   orientation, velocity or attribute error and barriers no velocity or attribute error (NaN, left out of
   the means).
5. mAP is the mean AP over classes and thresholds; NDS = (5 · mAP + Σ_metrics (1 − min(1, mean error))) / 10.

Boxes are in one common frame (the official evaluation uses the global frame); ``ego_dist`` is the 2-D
distance from the ego vehicle used by the range filter. Not included: the bike-rack filter (it needs the map).
``test/test_metrics.py`` checks equality with the official devkit on random boxes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from sparsedrive_ros.conventions import DETECTION_CLASSES

__all__ = [
    "CLASS_RANGE",
    "DETECTION_CLASSES",
    "TP_METRICS",
    "DetBox",
    "DetectionConfig",
    "RecallCurve",
    "average_precision",
    "class_curve",
    "curve_from_ranking",
    "evaluate_detection",
    "keep_in_range",
    "mean_tp_error",
    "running_mean",
]

CLASS_RANGE = {
    "car": 50.0, "truck": 50.0, "bus": 50.0, "trailer": 50.0, "construction_vehicle": 50.0,
    "pedestrian": 40.0, "motorcycle": 40.0, "bicycle": 40.0, "traffic_cone": 30.0, "barrier": 30.0,
}
TP_METRICS = ("trans_err", "scale_err", "orient_err", "vel_err", "attr_err")
RECALL_POINTS = 101

# TP errors that a class does not define (NaN in the per-class table, skipped by the means).
_UNDEFINED = {"traffic_cone": ("orient_err", "vel_err", "attr_err"), "barrier": ("vel_err", "attr_err")}


@dataclass(frozen=True)
class DetectionConfig:
    class_range: dict[str, float] = field(default_factory=lambda: dict(CLASS_RANGE))
    dist_ths: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
    dist_th_tp: float = 2.0
    min_recall: float = 0.1
    min_precision: float = 0.1
    max_boxes_per_sample: int = 500
    mean_ap_weight: float = 5.0


@dataclass
class DetBox:
    """One box of the evaluation. ``size`` is (w, l, h) as nuScenes stores it; yaw about +z in the same frame."""

    sample_token: str
    translation: tuple[float, float, float]
    size: tuple[float, float, float]
    yaw: float
    velocity: tuple[float, float]
    name: str
    score: float = -1.0  # predictions only
    attribute: str = ""  # "" = unknown (GT) / none (prediction)
    ego_dist: float = 0.0
    num_pts: int = -1  # GT: lidar + radar points; boxes with 0 are ignored


@dataclass
class RecallCurve:
    """Precision, score and TP errors of one class at one threshold, sampled at ``RECALL_POINTS`` recalls."""

    recall: np.ndarray     # [R] 0 ... 1
    precision: np.ndarray  # [R]
    score: np.ndarray      # [R] score of the prediction that reached this recall; 0 beyond the last one
    errors: dict[str, np.ndarray]  # metric -> [R]

    @classmethod
    def empty(cls, metrics: Sequence[str] = TP_METRICS) -> "RecallCurve":
        """No true positive at all: zero precision, and every error at its maximum 1."""
        grid = np.linspace(0.0, 1.0, RECALL_POINTS)
        return cls(grid, np.zeros(RECALL_POINTS), np.zeros(RECALL_POINTS),
                   {m: np.ones(RECALL_POINTS) for m in metrics})

    def last_reached(self) -> int:
        """Index of the highest recall point that a prediction reached (0 if none)."""
        reached = np.flatnonzero(self.score)
        return int(reached[-1]) if reached.size else 0


# ------------------------------------------------------------------------------------------------- errors


def running_mean(values: np.ndarray) -> np.ndarray:
    """Mean of ``values[:k + 1]`` for every k, NaN entries skipped (0 before the first valid one). All-NaN input
    (e.g. attributes without GT attributes) gives ones: the error then counts as maximal."""
    values = np.asarray(values, dtype=np.float64)
    valid = ~np.isnan(values)
    if not valid.any():
        return np.ones(values.shape)
    totals = np.cumsum(np.where(valid, values, 0.0))
    counts = np.cumsum(valid)
    return np.divide(totals, counts, out=np.zeros_like(totals), where=counts > 0)


def _heading_error(gt_yaw: float, pred_yaw: float, period: float) -> float:
    """|gt − pred| folded into [0, π] for orientations that repeat every ``period`` (2π, or π for barriers)."""
    delta = math.fmod(gt_yaw - pred_yaw + period / 2, period)
    delta = (delta + period if delta < 0 else delta) - period / 2
    if delta > math.pi:
        delta -= 2 * math.pi
    return abs(delta)


def _aligned_iou(size_a: Sequence[float], size_b: Sequence[float]) -> float:
    """3-D IoU of two boxes with the same centre and heading (so only the sizes matter)."""
    a, b = np.asarray(size_a, np.float64), np.asarray(size_b, np.float64)
    if np.any(a <= 0) or np.any(b <= 0):
        raise ValueError(f"box sizes must be positive, got {tuple(size_a)} and {tuple(size_b)}")
    common = float(np.prod(np.minimum(a, b)))
    return common / (float(np.prod(a)) + float(np.prod(b)) - common)


def _pair_errors(gt: DetBox, pred: DetBox, period: float) -> tuple[float, ...]:
    """The five TP errors of one matched pair, in TP_METRICS order."""
    dx, dy = gt.translation[0] - pred.translation[0], gt.translation[1] - pred.translation[1]
    dvx, dvy = gt.velocity[0] - pred.velocity[0], gt.velocity[1] - pred.velocity[1]
    attr = math.nan if gt.attribute == "" else float(gt.attribute != pred.attribute)
    return (math.hypot(dx, dy), 1.0 - _aligned_iou(gt.size, pred.size), _heading_error(gt.yaw, pred.yaw, period),
            math.hypot(dvx, dvy), attr)


# ------------------------------------------------------------------------------------------------- curves


def curve_from_ranking(is_tp: np.ndarray, scores: np.ndarray, num_gt: int,
                       tp_errors: dict[str, np.ndarray]) -> RecallCurve:
    """Sample the curve of a ranking: ``is_tp`` / ``scores`` [N] for the visited predictions in descending score
    order, ``tp_errors`` metric -> [#TP] errors of the true positives in the same order."""
    is_tp = np.asarray(is_tp, bool)
    if num_gt == 0 or not is_tp.any():
        return RecallCurve.empty(tuple(tp_errors) or TP_METRICS)
    scores = np.asarray(scores, np.float64)
    hits = np.cumsum(is_tp).astype(np.float64)
    grid = np.linspace(0.0, 1.0, RECALL_POINTS)
    recall = hits / float(num_gt)
    precision = np.interp(grid, recall, hits / np.arange(1, len(is_tp) + 1), right=0)
    score_at = np.interp(grid, recall, scores, right=0)
    # np.interp wants increasing x: walk the (descending) scores backwards.
    tp_scores = scores[is_tp][::-1]
    errors = {m: np.interp(score_at[::-1], tp_scores, running_mean(v)[::-1])[::-1] for m, v in tp_errors.items()}
    return RecallCurve(grid, precision, score_at, errors)


def class_curve(gt_boxes: Sequence[DetBox], pred_boxes: Sequence[DetBox], class_name: str,
                threshold: float) -> RecallCurve:
    """Greedy matching of one class at one centre-distance threshold (protocol steps 2-3)."""
    centres: dict[str, np.ndarray] = {}
    gt_of_sample: dict[str, list[DetBox]] = {}
    for box in gt_boxes:
        if box.name == class_name:
            gt_of_sample.setdefault(box.sample_token, []).append(box)
    num_gt = sum(len(v) for v in gt_of_sample.values())
    for token, boxes in gt_of_sample.items():
        centres[token] = np.array([b.translation[:2] for b in boxes], np.float64)
    free = {token: np.ones(len(boxes), bool) for token, boxes in gt_of_sample.items()}

    preds = [b for b in pred_boxes if b.name == class_name]
    # Descending score; equal scores are visited last-given first (the reference's tie order).
    visit = np.argsort(np.array([p.score for p in preds], np.float64), kind="stable")[::-1]
    period = math.pi if class_name == "barrier" else 2 * math.pi
    is_tp = np.zeros(len(preds), bool)
    found: list[tuple[float, ...]] = []
    for rank, index in enumerate(visit):
        pred = preds[index]
        if pred.sample_token not in centres:
            continue
        dist = np.hypot(*(centres[pred.sample_token] - np.asarray(pred.translation[:2], np.float64)).T)
        dist[~free[pred.sample_token]] = np.inf
        nearest = int(np.argmin(dist))
        if dist[nearest] < threshold:
            free[pred.sample_token][nearest] = False
            is_tp[rank] = True
            found.append(_pair_errors(gt_of_sample[pred.sample_token][nearest], pred, period))
    errors = np.array(found, np.float64).reshape(-1, len(TP_METRICS))
    scores = np.array([preds[i].score for i in visit], np.float64)
    return curve_from_ranking(is_tp, scores, num_gt, {m: errors[:, k] for k, m in enumerate(TP_METRICS)})


def average_precision(curve: RecallCurve, min_recall: float = 0.1, min_precision: float = 0.1) -> float:
    above = curve.precision[round(100 * min_recall) + 1:]
    return float(np.mean(np.maximum(above - min_precision, 0.0))) / (1.0 - min_precision)


def mean_tp_error(curve: RecallCurve, metric: str, min_recall: float = 0.1) -> float:
    first, last = round(100 * min_recall) + 1, curve.last_reached()
    return 1.0 if last < first else float(np.mean(curve.errors[metric][first:last + 1]))


# ------------------------------------------------------------------------------------------------ protocol


def keep_in_range(boxes: Sequence[DetBox], cfg: DetectionConfig, is_gt: bool) -> list[DetBox]:
    """Protocol step 1: class range on the ego distance; GT boxes without points are dropped."""
    kept = []
    for box in boxes:
        limit = cfg.class_range.get(box.name)
        if limit is None:
            raise ValueError(f"unknown detection class {box.name!r}")
        if box.ego_dist <= limit and not (is_gt and box.num_pts == 0):
            kept.append(box)
    return kept


def evaluate_detection(gt_boxes: Sequence[DetBox], pred_boxes: Sequence[DetBox],
                       cfg: Optional[DetectionConfig] = None) -> dict:
    """mAP, per-class AP, TP errors and NDS. Returns a JSON-able dict."""
    cfg = cfg or DetectionConfig()
    per_sample: dict[str, int] = {}
    for box in pred_boxes:
        per_sample[box.sample_token] = per_sample.get(box.sample_token, 0) + 1
    crowded = {t: n for t, n in per_sample.items() if n > cfg.max_boxes_per_sample}
    if crowded:
        token, count = next(iter(crowded.items()))
        raise ValueError(f"sample {token!r} has {count} predictions, more than {cfg.max_boxes_per_sample}")
    gts, preds = keep_in_range(gt_boxes, cfg, True), keep_in_range(pred_boxes, cfg, False)

    label_aps: dict[str, dict[str, float]] = {}
    label_tp: dict[str, dict[str, float]] = {}
    for name in cfg.class_range:
        curves = {th: class_curve(gts, preds, name, th) for th in set(cfg.dist_ths) | {cfg.dist_th_tp}}
        label_aps[name] = {str(th): average_precision(curves[th], cfg.min_recall, cfg.min_precision)
                           for th in cfg.dist_ths}
        label_tp[name] = {m: math.nan if m in _UNDEFINED.get(name, ()) else
                          mean_tp_error(curves[cfg.dist_th_tp], m, cfg.min_recall) for m in TP_METRICS}

    mean_ap = float(np.mean([list(aps.values()) for aps in label_aps.values()]))
    mean_err = {m: float(np.nanmean([label_tp[c][m] for c in label_tp])) for m in TP_METRICS}
    tp_score = sum(1.0 - min(1.0, e) for e in mean_err.values())
    nds = (cfg.mean_ap_weight * mean_ap + tp_score) / (cfg.mean_ap_weight + len(TP_METRICS))
    return {
        "mAP": mean_ap, "NDS": float(nds),
        "mATE": mean_err["trans_err"], "mASE": mean_err["scale_err"], "mAOE": mean_err["orient_err"],
        "mAVE": mean_err["vel_err"], "mAAE": mean_err["attr_err"],
        "label_aps": label_aps, "label_tp_errors": label_tp,
    }
