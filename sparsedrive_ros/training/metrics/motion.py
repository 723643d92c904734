"""Motion forecasting metrics, UniAD protocol (docs/model-notes.md#evaluation): minADE, minFDE, MR, EPA for cars and
pedestrians.

Predictions with score >= 0.2 are matched per class group (score order, nearest unmatched GT of the same
sample, 2-D centre distance < 2 m). For each match the six predicted modes (absolute lidar-frame positions)
are compared with the GT future on its valid steps. The TP metrics are cumulatively averaged in score order
and averaged over recall >= 0.1 (as the nuScenes TP errors); EPA = (#matches whose minFDE < 2 m − 0.5 #FP)/#GT.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from sparsedrive_ros.training.metrics.detection import curve_from_ranking, mean_tp_error

__all__ = ["MOTION_GROUPS", "MotionSample", "evaluate_motion"]

# Detection label -> motion class group (barrier 5 and traffic_cone 9 are not evaluated).
MOTION_GROUPS = {"car": (0, 1, 2, 3, 4, 6, 7), "pedestrian": (8,)}
_METRICS = ("min_ade", "min_fde", "miss_rate")


@dataclass
class MotionSample:
    """Agents of one sample in the lidar frame. Predictions carry scores and 6 modes; GT one future."""

    centers: np.ndarray  # [K, 2]
    labels: np.ndarray  # [K]
    trajs: np.ndarray  # pred [K, M, T, 2] / GT [K, T, 2], absolute positions
    scores: np.ndarray | None = None  # pred [K]
    masks: np.ndarray | None = None  # GT [K, T]


def _errors(pred_modes: np.ndarray, gt: np.ndarray, mask: np.ndarray, miss_th: float) -> tuple[float, float, float]:
    valid = mask > 0
    if not valid.any():
        return float("nan"), float("nan"), float("nan")
    dist = np.linalg.norm(pred_modes[:, valid] - gt[None, valid], axis=-1)  # [M, T_valid]
    return float(dist.mean(1).min()), float(dist[:, -1].min()), float(dist.max(1).min() > miss_th)


def _evaluate_group(
    gts: Sequence[MotionSample], preds: Sequence[MotionSample], labels: Sequence[int],
    score_th: float, match_th: float, miss_th: float,
) -> dict:
    entries = []  # (score, sample, pred index)
    num_gt = 0
    for s, (gt, pred) in enumerate(zip(gts, preds)):
        if pred.scores is None or gt.masks is None:
            raise ValueError(f"sample {s}: predictions need scores and ground truth needs masks")
        num_gt += int(np.isin(gt.labels, labels).sum())
        for idx in np.nonzero(np.isin(pred.labels, labels) & (pred.scores >= score_th))[0]:
            entries.append((float(pred.scores[idx]), s, int(idx)))
    entries.sort(key=lambda e: -e[0])
    taken: set[tuple[int, int]] = set()
    tp: list[int] = []
    conf: list[float] = []
    match_conf: list[float] = []
    errors: dict[str, list[float]] = {k: [] for k in _METRICS}
    hits = 0
    for score, s, i in entries:
        gt, pred = gts[s], preds[s]
        cand = [int(j) for j in np.nonzero(np.isin(gt.labels, labels))[0] if (s, int(j)) not in taken]
        dist = [np.linalg.norm(gt.centers[j] - pred.centers[i]) for j in cand]
        ok = bool(cand) and min(dist) < match_th
        tp.append(int(ok))
        conf.append(score)
        if not ok:
            continue
        j = cand[int(np.argmin(dist))]
        taken.add((s, j))
        masks = gt.masks if gt.masks is not None else np.ones(gt.trajs.shape[:2])
        ade, fde, miss = _errors(pred.trajs[i], gt.trajs[j], masks[j], miss_th)
        hits += int(fde < miss_th) if not np.isnan(fde) else 0
        for k, v in zip(_METRICS, (ade, fde, miss)):
            errors[k].append(v)
        match_conf.append(score)
    num_fp = len(tp) - sum(tp)
    out = {"EPA": (hits - 0.5 * num_fp) / num_gt if num_gt else 0.0, "num_gt": num_gt}
    if num_gt == 0 or not match_conf:
        out.update({k: 1.0 for k in _METRICS} if num_gt else {k: float("nan") for k in _METRICS})
        return out
    curve = curve_from_ranking(np.asarray(tp, bool), np.asarray(conf), num_gt,
                               {k: np.asarray(v, np.float64) for k, v in errors.items()})
    out.update({k: mean_tp_error(curve, k, 0.1) for k in _METRICS})
    return out


def evaluate_motion(
    gts: Sequence[MotionSample], preds: Sequence[MotionSample],
    score_th: float = 0.2, match_th: float = 2.0, miss_th: float = 2.0,
) -> dict:
    """{group: {min_ade, min_fde, miss_rate, EPA, num_gt}} for 'car' and 'pedestrian'."""
    if len(gts) != len(preds):
        raise ValueError(f"{len(gts)} GT samples but {len(preds)} prediction samples")
    return {
        name: _evaluate_group(gts, preds, labels, score_th, match_th, miss_th)
        for name, labels in MOTION_GROUPS.items()
    }
