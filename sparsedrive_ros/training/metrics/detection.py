"""nuScenes detection metrics (mAP, TP errors, NDS) following the "detection_cvpr_2019" protocol.

Written from the protocol description: per class and distance threshold, predictions are sorted by score
and greedily matched to the nearest unmatched GT of the same sample by 2-D centre distance (< threshold);
precision is interpolated on 101 recall points; AP integrates precision above 10 % recall and 10 % precision;
TP errors (translation, scale, orientation, velocity, attribute) use the 2 m matches, are cumulatively averaged
along the score order and averaged over the recall range [0.1, max recall]. NDS = (5·mAP + Σ(1 − min(1, err))) / 10.

Boxes are given in one common frame (the official evaluation uses the global frame); ``ego_dist`` is the 2-D
distance from the ego vehicle used for the class range filter. Not reproduced: the bike-rack filter (needs the
map) — pass already-filtered GT if it matters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from sparsedrive_ros.conventions import DETECTION_CLASSES

__all__ = [
    "DETECTION_CLASSES",
    "CLASS_RANGE",
    "DetectionConfig",
    "DetBox",
    "DetectionMetricCurve",
    "center_distance",
    "scale_iou",
    "yaw_diff",
    "accumulate",
    "calc_ap",
    "calc_tp",
    "evaluate_detection",
]

CLASS_RANGE = {
    "car": 50.0, "truck": 50.0, "bus": 50.0, "trailer": 50.0, "construction_vehicle": 50.0,
    "pedestrian": 40.0, "motorcycle": 40.0, "bicycle": 40.0, "traffic_cone": 30.0, "barrier": 30.0,
}
TP_METRICS = ("trans_err", "scale_err", "orient_err", "vel_err", "attr_err")


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


def center_distance(a: DetBox, b: DetBox) -> float:
    return float(np.hypot(a.translation[0] - b.translation[0], a.translation[1] - b.translation[1]))


def velocity_l2(a: DetBox, b: DetBox) -> float:
    return float(np.linalg.norm(np.asarray(a.velocity, float) - np.asarray(b.velocity, float)))


def angle_diff(x: float, y: float, period: float) -> float:
    diff = (x - y + period / 2) % period - period / 2
    if diff > np.pi:
        diff = diff - 2 * np.pi
    return diff


def yaw_diff(gt: DetBox, pred: DetBox, period: float = 2 * np.pi) -> float:
    return abs(angle_diff(gt.yaw, pred.yaw, period))


def scale_iou(a: DetBox, b: DetBox) -> float:
    """IoU of the two boxes after aligning centres and headings (sizes only)."""
    sa, sb = np.asarray(a.size, float), np.asarray(b.size, float)
    if (sa <= 0).any() or (sb <= 0).any():
        raise ValueError(f"box sizes must be positive, got {a.size} and {b.size}")
    inter = float(np.prod(np.minimum(sa, sb)))
    return inter / (float(np.prod(sa)) + float(np.prod(sb)) - inter)


def attr_acc(gt: DetBox, pred: DetBox) -> float:
    return float("nan") if gt.attribute == "" else float(gt.attribute == pred.attribute)


def cummean(x: np.ndarray) -> np.ndarray:
    """Cumulative mean ignoring NaN; 0 where nothing valid yet; all ones when every value is NaN
    (e.g. attribute error without GT attributes: the metric then counts as maximal error)."""
    if np.isnan(x).all():
        return np.ones(len(x))
    sums = np.nancumsum(x.astype(float))
    counts = np.cumsum(~np.isnan(x))
    return np.divide(sums, counts, out=np.zeros_like(sums), where=counts != 0)


@dataclass
class DetectionMetricCurve:
    """Per (class, threshold) data on the 101-point recall grid."""

    recall: np.ndarray
    precision: np.ndarray
    confidence: np.ndarray
    errors: dict[str, np.ndarray]

    @classmethod
    def no_predictions(cls, nelem: int = 101) -> "DetectionMetricCurve":
        return cls(
            np.linspace(0, 1, nelem), np.zeros(nelem), np.zeros(nelem), {k: np.ones(nelem) for k in TP_METRICS}
        )

    @property
    def max_recall_ind(self) -> int:
        nonzero = np.nonzero(self.confidence)[0]
        return int(nonzero[-1]) if len(nonzero) else 0


def _group(boxes: Sequence[DetBox]) -> dict[str, list[DetBox]]:
    out: dict[str, list[DetBox]] = {}
    for box in boxes:
        out.setdefault(box.sample_token, []).append(box)
    return out


def accumulate(
    gt_boxes: Sequence[DetBox], pred_boxes: Sequence[DetBox], class_name: str, dist_th: float, nelem: int = 101
) -> DetectionMetricCurve:
    """Greedy score-ordered matching of one class at one centre-distance threshold."""
    gts = [b for b in gt_boxes if b.name == class_name]
    npos = len(gts)
    if npos == 0:
        return DetectionMetricCurve.no_predictions(nelem)
    preds = [b for b in pred_boxes if b.name == class_name]
    # Descending score; ties keep the later box first, as a reversed ascending (score, index) sort does.
    order = [i for _, i in sorted((p.score, i) for i, p in enumerate(preds))][::-1]
    gt_by_sample = _group(gts)
    taken: set[tuple[str, int]] = set()
    tp, fp, conf = [], [], []
    match: dict[str, list[float]] = {k: [] for k in TP_METRICS + ("conf",)}
    period = np.pi if class_name == "barrier" else 2 * np.pi
    for i in order:
        pred = preds[i]
        best_dist, best_idx = np.inf, -1
        for j, gt in enumerate(gt_by_sample.get(pred.sample_token, [])):
            if (pred.sample_token, j) in taken:
                continue
            dist = center_distance(gt, pred)
            if dist < best_dist:
                best_dist, best_idx = dist, j
        is_match = best_dist < dist_th
        tp.append(int(is_match))
        fp.append(int(not is_match))
        conf.append(pred.score)
        if is_match:
            taken.add((pred.sample_token, best_idx))
            gt = gt_by_sample[pred.sample_token][best_idx]
            match["trans_err"].append(center_distance(gt, pred))
            match["vel_err"].append(velocity_l2(gt, pred))
            match["scale_err"].append(1 - scale_iou(gt, pred))
            match["orient_err"].append(yaw_diff(gt, pred, period))
            match["attr_err"].append(1 - attr_acc(gt, pred))
            match["conf"].append(pred.score)
    if len(match["trans_err"]) == 0:
        return DetectionMetricCurve.no_predictions(nelem)
    tp_c = np.cumsum(tp).astype(float)
    fp_c = np.cumsum(fp).astype(float)
    prec = tp_c / (fp_c + tp_c)
    rec = tp_c / float(npos)
    rec_interp = np.linspace(0, 1, nelem)
    prec = np.interp(rec_interp, rec, prec, right=0)
    conf_i = np.interp(rec_interp, rec, np.asarray(conf, float), right=0)
    match_conf = np.asarray(match["conf"], float)
    errors = {}
    for key in TP_METRICS:
        tmp = cummean(np.asarray(match[key], float))
        errors[key] = np.interp(conf_i[::-1], match_conf[::-1], tmp[::-1])[::-1]
    return DetectionMetricCurve(rec_interp, prec, conf_i, errors)


def calc_ap(curve: DetectionMetricCurve, min_recall: float, min_precision: float) -> float:
    prec = np.copy(curve.precision)[round(100 * min_recall) + 1:]
    prec = np.clip(prec - min_precision, 0.0, None)
    return float(np.mean(prec)) / (1.0 - min_precision)


def calc_tp(curve: DetectionMetricCurve, min_recall: float, metric: str) -> float:
    first = round(100 * min_recall) + 1
    last = curve.max_recall_ind
    if last < first:
        return 1.0
    return float(np.mean(curve.errors[metric][first:last + 1]))


def filter_boxes(boxes: Sequence[DetBox], cfg: DetectionConfig, is_gt: bool) -> list[DetBox]:
    """Class range filter on ego distance; GT without lidar/radar points is dropped."""
    out = []
    for box in boxes:
        if box.name not in cfg.class_range:
            raise ValueError(f"unknown detection class {box.name!r}")
        if box.ego_dist > cfg.class_range[box.name]:
            continue
        if is_gt and box.num_pts == 0:
            continue
        out.append(box)
    return out


def _cap_per_sample(preds: Sequence[DetBox], cap: int) -> None:
    for token, boxes in _group(preds).items():
        if len(boxes) > cap:
            raise ValueError(f"sample {token!r} has {len(boxes)} predictions, more than {cap}")


def evaluate_detection(
    gt_boxes: Sequence[DetBox], pred_boxes: Sequence[DetBox], cfg: Optional[DetectionConfig] = None
) -> dict:
    """mAP, per-class AP, TP errors and NDS. Returns a JSON-able dict."""
    cfg = cfg or DetectionConfig()
    _cap_per_sample(pred_boxes, cfg.max_boxes_per_sample)
    gts = filter_boxes(gt_boxes, cfg, True)
    preds = filter_boxes(pred_boxes, cfg, False)
    classes = list(cfg.class_range)
    label_aps: dict[str, dict[float, float]] = {}
    label_tp: dict[str, dict[str, float]] = {}
    for cls in classes:
        curves = {th: accumulate(gts, preds, cls, th) for th in cfg.dist_ths}
        label_aps[cls] = {th: calc_ap(c, cfg.min_recall, cfg.min_precision) for th, c in curves.items()}
        tp_curve = curves[cfg.dist_th_tp] if cfg.dist_th_tp in curves else accumulate(gts, preds, cls, cfg.dist_th_tp)
        label_tp[cls] = {}
        for metric in TP_METRICS:
            undefined = (cls == "traffic_cone" and metric in ("attr_err", "vel_err", "orient_err")) or (
                cls == "barrier" and metric in ("attr_err", "vel_err")
            )
            label_tp[cls][metric] = float("nan") if undefined else calc_tp(tp_curve, cfg.min_recall, metric)
    mean_ap = float(np.mean([np.mean(list(v.values())) for v in label_aps.values()]))
    tp_errors = {m: float(np.nanmean([label_tp[c][m] for c in classes])) for m in TP_METRICS}
    tp_scores = {m: max(0.0, 1.0 - tp_errors[m]) for m in TP_METRICS}
    nds = (cfg.mean_ap_weight * mean_ap + sum(tp_scores.values())) / (cfg.mean_ap_weight + len(tp_scores))
    return {
        "mAP": mean_ap,
        "NDS": float(nds),
        "mATE": tp_errors["trans_err"],
        "mASE": tp_errors["scale_err"],
        "mAOE": tp_errors["orient_err"],
        "mAVE": tp_errors["vel_err"],
        "mAAE": tp_errors["attr_err"],
        "label_aps": {c: {str(k): v for k, v in d.items()} for c, d in label_aps.items()},
        "label_tp_errors": label_tp,
    }
