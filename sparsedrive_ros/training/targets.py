"""Training targets: Hungarian assignment for det and map, mode targets for motion and planning.

The original's SparseBox3DTarget, map assigner and costs, MotionTarget and PlanningTarget
(docs/training-losses.md). Everything is in the LIDAR_TOP frame of the key frame. Denoising is disabled in SparseDrive,
so only the plain assignment exists here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from sparsedrive_ros.training.losses import normalize_map_points, smooth_l1

__all__ = [
    "Assignment",
    "DetTargetConfig",
    "DetTargets",
    "encode_box_target",
    "det_focal_cost",
    "det_box_cost",
    "assign_det",
    "MapTargetConfig",
    "MapTargets",
    "polyline_permutations",
    "focal_loss_cost",
    "lines_l1_cost",
    "assign_map",
    "MotionTargets",
    "motion_targets",
    "PlanningTargets",
    "planning_targets",
]

NUM_DET_CLASSES = 10
NUM_MAP_CLASSES = 3
_LARGE_COST = 1e8


@dataclass(frozen=True)
class Assignment:
    """Matched (prediction index, ground-truth index) pairs of one sample, both int64 [P]."""

    pred_idx: Tensor
    gt_idx: Tensor


def _hungarian(cost: Tensor) -> Assignment:
    """scipy linear_sum_assignment on a [N, K] cost; NaN and -inf become 1e8 as in the original."""
    c = cost.detach().cpu().double().numpy()
    c = np.where(np.isnan(c) | np.isneginf(c), _LARGE_COST, c)
    rows, cols = linear_sum_assignment(c)
    return Assignment(torch.as_tensor(rows, dtype=torch.long), torch.as_tensor(cols, dtype=torch.long))


def _focal_cost(logits: Tensor, labels: Tensor, alpha: float, gamma: float, eps: float = 1e-12) -> Tensor:
    """[N, C] logits, [K] labels -> [N, K]: focal positive minus focal negative term at the GT class."""
    prob = logits.sigmoid()
    neg = -(1 - prob + eps).log() * (1 - alpha) * prob.pow(gamma)
    pos = -(prob + eps).log() * alpha * (1 - prob).pow(gamma)
    return (pos - neg)[:, labels.long()]


# ----------------------------------------------------------------------------------------------------------
# Detection
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DetTargetConfig:
    cls_weight: float = 2.0
    box_weight: float = 0.25
    alpha: float = 0.25
    gamma: float = 2.0
    # Cost weights on [x, y, z, ln l, ln w, ln h, sin, cos, vx, vy].
    reg_weights: tuple[float, ...] = (2.0, 2.0, 2.0, 0.5, 0.5, 0.5, 0.0, 0.0, 0.0, 0.0)
    # Per-class instance weights replacing the NaN mask: traffic cones (9) have no yaw.
    cls_wise_reg_weights: dict[int, tuple[float, ...]] = field(
        default_factory=lambda: {9: (2.0, 2.0, 2.0, 1.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0)}
    )
    num_classes: int = NUM_DET_CLASSES


@dataclass
class DetTargets:
    cls_target: Tensor  # [B, N] int64, num_classes = background
    box_target: Tensor  # [B, N, 10] encoded, zeros where unmatched (may hold NaN where GT is NaN)
    reg_weights: Tensor  # [B, N, 10] instance weights, zeros where unmatched
    assignments: list[Assignment]  # per sample


def encode_box_target(boxes: Tensor) -> Tensor:
    """[K, >=9] (x, y, z, l, w, h, yaw, vx, vy[, vz]) lidar frame -> [K, 10] regression target."""
    if boxes.dim() != 2 or boxes.shape[-1] < 9:
        raise ValueError(f"GT boxes must be [K, >=9] (x,y,z,l,w,h,yaw,vx,vy), got {tuple(boxes.shape)}")
    yaw = boxes[:, 6]
    return torch.cat(
        [boxes[:, :3], boxes[:, 3:6].log(), yaw.sin()[:, None], yaw.cos()[:, None], boxes[:, 7:9]], dim=-1
    )


def _instance_weights(target: Tensor, labels: Tensor, cfg: DetTargetConfig) -> Tensor:
    weights = (~target.isnan()).to(target.dtype)  # [K, 10]
    for cls, w in cfg.cls_wise_reg_weights.items():
        weights = torch.where((labels == cls)[:, None], weights.new_tensor(w), weights)
    return weights


def det_focal_cost(logits: Tensor, labels: Tensor, cfg: DetTargetConfig = DetTargetConfig()) -> Tensor:
    """[N, 10] logits, [K] labels -> [N, K] classification cost (× cls_weight)."""
    return cfg.cls_weight * _focal_cost(logits, labels, cfg.alpha, cfg.gamma)


def det_box_cost(
    box: Tensor, target: Tensor, instance_weights: Tensor, cfg: DetTargetConfig = DetTargetConfig()
) -> Tensor:
    """[N, 10] predictions, [K, 10] targets -> [N, K] weighted L1 cost.

    A NaN target (e.g. unknown velocity) makes its whole column NaN even where the weight is 0, so the
    original effectively never matches such a GT at cost < 1e8; kept for parity.
    """
    diff = (box[:, None] - target[None]).abs()  # [N, K, 10]
    return cfg.box_weight * (diff * instance_weights[None] * box.new_tensor(cfg.reg_weights)).sum(-1)


def assign_det(
    cls_logits: Tensor,  # [B, N, C]
    box_pred: Tensor,  # [B, N, 11] (or 10)
    gt_labels: Sequence[Tensor],  # B × [K]
    gt_boxes: Sequence[Tensor],  # B × [K, >=9] lidar frame
    cfg: DetTargetConfig = DetTargetConfig(),
) -> DetTargets:
    """SparseBox3DTarget.sample without denoising."""
    bsz, num_pred = cls_logits.shape[:2]
    if len(gt_labels) != bsz or len(gt_boxes) != bsz:
        raise ValueError(f"need {bsz} GT entries, got {len(gt_labels)} labels / {len(gt_boxes)} boxes")
    dims = len(cfg.reg_weights)
    cls_target = cls_logits.new_full((bsz, num_pred), cfg.num_classes, dtype=torch.long)
    box_target = box_pred.new_zeros(bsz, num_pred, dims)
    reg_weights = box_pred.new_zeros(bsz, num_pred, dims)
    assignments = []
    for b in range(bsz):
        labels = gt_labels[b].to(cls_logits.device).long()
        if labels.numel() == 0:
            assignments.append(Assignment(torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)))
            continue
        target = encode_box_target(gt_boxes[b].to(box_pred))
        weights = _instance_weights(target, labels, cfg)
        with torch.no_grad():
            cost = det_focal_cost(cls_logits[b], labels, cfg) + det_box_cost(
                box_pred[b, :, :dims], target, weights, cfg
            )
        match = _hungarian(cost)
        pred_idx, gt_idx = match.pred_idx.to(cls_logits.device), match.gt_idx.to(cls_logits.device)
        cls_target[b, pred_idx] = labels[gt_idx]
        box_target[b, pred_idx] = target[gt_idx]
        reg_weights[b, pred_idx] = weights[gt_idx]
        assignments.append(match)
    return DetTargets(cls_target, box_target, reg_weights, assignments)


# ----------------------------------------------------------------------------------------------------------
# Map
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MapTargetConfig:
    cls_weight: float = 1.0
    reg_weight: float = 10.0
    beta: float = 0.01
    alpha: float = 0.25
    gamma: float = 2.0
    num_sample: int = 20
    roi_size: tuple[float, float] = (30.0, 60.0)
    num_classes: int = NUM_MAP_CLASSES
    permute: bool = True


@dataclass
class MapTargets:
    cls_target: Tensor  # [B, N] int64, num_classes = background
    line_target: Tensor  # [B, N, 2*num_sample] metres, best permutation of the matched GT
    reg_weights: Tensor  # [B, N, 2*num_sample]
    assignments: list[Assignment]
    permutations: list[Tensor] = field(default_factory=list)  # per sample: chosen GT ordering of each match


# Padding of the unused orderings of an open polyline: far outside the ROI, so its cost never wins.
_PERMUTE_PAD = -10000.0


def polyline_permutations(points: Tensor) -> tuple[Tensor, Tensor]:
    """Equivalent orderings of polylines [K, P, 2] -> ([K, 2(P-1), P, 2], valid [K, 2(P-1)]).

    A closed polyline (first point == last point) has P-1 distinct points: every cyclic shift in both
    directions (shifts first, then reversed shifts) describes the same shape. An open one has only the
    forward and reversed orderings; the remaining slots are padding.
    """
    if points.dim() != 3 or points.shape[-1] != 2:
        raise ValueError(f"polylines must be [K, P, 2], got {tuple(points.shape)}")
    num, npts = points.shape[:2]
    nperm = 2 * (npts - 1)
    out = points.new_full((num, nperm, npts, 2), _PERMUTE_PAD)
    valid = torch.zeros(num, nperm, dtype=torch.bool, device=points.device)
    for k in range(num):
        pts = points[k]
        if torch.equal(pts[0], pts[-1]):
            ring = pts[:-1]
            orders = [ring.roll(s, 0) for s in range(npts - 1)] + [ring.flip(0).roll(s, 0) for s in range(npts - 1)]
            out[k] = torch.stack([torch.cat([o, o[:1]]) for o in orders])
            valid[k] = True
        else:
            out[k, 0], out[k, 1] = pts, pts.flip(0)
            valid[k, :2] = True
    return out, valid


def focal_loss_cost(logits: Tensor, labels: Tensor, cfg: MapTargetConfig = MapTargetConfig()) -> Tensor:
    """mmdet FocalLossCost: [N, C] logits, [K] labels -> [N, K]."""
    return cfg.cls_weight * _focal_cost(logits, labels, cfg.alpha, cfg.gamma)


def lines_l1_cost(
    lines: Tensor,  # [N, 2P] normalised
    gt_lines: Tensor,  # [K, R, 2P] normalised orderings
    cfg: MapTargetConfig = MapTargetConfig(),
) -> tuple[Tensor, Tensor]:
    """LinesL1Cost (docs/training-losses.md) -> (cost [N, K], best ordering index [N, K])."""
    num_gt, num_perm = gt_lines.shape[:2]
    flat = gt_lines.reshape(num_gt * num_perm, -1)
    dist = smooth_l1(lines[:, None] - flat[None], cfg.beta).sum(-1) / cfg.num_sample  # [N, K*R]
    dist = dist.view(lines.shape[0], num_gt, num_perm)
    if not cfg.permute:
        dist = dist[..., :1]
    cost, perm = dist.min(-1)
    return cfg.reg_weight * cost, perm


def _as_orderings(pts: Tensor, cfg: MapTargetConfig) -> Tensor:
    """GT [K, P, 2] polylines or precomputed orderings [K, R, P, 2] -> [K, R, 2P] metres."""
    if pts.dim() == 3:
        pts = polyline_permutations(pts)[0]
    if pts.dim() != 4 or pts.shape[-2:] != (cfg.num_sample, 2):
        raise ValueError(
            f"map GT must be [K, {cfg.num_sample}, 2] or [K, R, {cfg.num_sample}, 2], got {tuple(pts.shape)}"
        )
    return pts.flatten(-2)


def assign_map(
    cls_logits: Tensor,  # [B, N, 3]
    lines: Tensor,  # [B, N, 40] metres
    gt_labels: Sequence[Tensor],  # B × [K]
    gt_pts: Sequence[Tensor],  # B × [K, 20, 2] or [K, R, 20, 2] metres, lidar frame
    cfg: MapTargetConfig = MapTargetConfig(),
) -> MapTargets:
    """SparsePoint3DTarget.sample with HungarianLinesAssigner / MapQueriesCost."""
    bsz, num_pred = cls_logits.shape[:2]
    if len(gt_labels) != bsz or len(gt_pts) != bsz:
        raise ValueError(f"need {bsz} map GT entries, got {len(gt_labels)} labels / {len(gt_pts)} polylines")
    cls_target = cls_logits.new_full((bsz, num_pred), cfg.num_classes, dtype=torch.long)
    line_target = lines.new_zeros(bsz, num_pred, lines.shape[-1])
    reg_weights = lines.new_zeros(bsz, num_pred, lines.shape[-1])
    assignments, permutations = [], []
    for b in range(bsz):
        labels = gt_labels[b].to(cls_logits.device).long()
        if labels.numel() == 0:
            assignments.append(Assignment(torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)))
            permutations.append(torch.zeros(0, dtype=torch.long))
            continue
        orderings = _as_orderings(gt_pts[b].to(lines), cfg)  # [K, R, 40] metres
        with torch.no_grad():
            reg_cost, perm = lines_l1_cost(
                normalize_map_points(lines[b], cfg.roi_size), normalize_map_points(orderings, cfg.roi_size), cfg
            )
            cost = focal_loss_cost(cls_logits[b], labels, cfg) + reg_cost
        match = _hungarian(cost)
        pred_idx, gt_idx = match.pred_idx.to(lines.device), match.gt_idx.to(lines.device)
        best = perm[pred_idx, gt_idx]
        cls_target[b, pred_idx] = labels[gt_idx]
        line_target[b, pred_idx] = orderings[gt_idx, best]
        reg_weights[b, pred_idx] = 1.0
        assignments.append(match)
        permutations.append(best.cpu())
    return MapTargets(cls_target, line_target, reg_weights, assignments, permutations)


# ----------------------------------------------------------------------------------------------------------
# Motion and planning
# ----------------------------------------------------------------------------------------------------------


def _best_mode(pred: Tensor, gt: Tensor, mask: Tensor) -> Tensor:
    """pred [..., M, T, 2], gt [..., T, 2], mask [..., T] (offsets) -> mode [...] minimising the masked
    mean distance between cumulative positions."""
    dist = torch.linalg.norm(gt.cumsum(-2)[..., None, :, :] - pred.cumsum(-2), dim=-1)  # [..., M, T]
    dist = (dist * mask[..., None, :]).mean(-1)
    return dist.argmin(-1)


@dataclass
class MotionTargets:
    cls_target: Tensor  # [B, N] best mode index
    cls_weight: Tensor  # [B, N] 1 where matched with any valid future step
    best_reg: Tensor  # [B, N, T, 2] offsets of the best mode
    reg_target: Tensor  # [B, N, T, 2] GT offsets
    reg_weight: Tensor  # [B, N, T] step mask
    num_pos: Tensor  # scalar: number of matched agents


def motion_targets(
    reg_pred: Tensor,  # [B, N, M, T, 2] per-step offsets
    gt_trajs: Sequence[Tensor],  # B × [K, T, 2] offsets, lidar frame
    gt_masks: Sequence[Tensor],  # B × [K, T]
    assignments: Sequence[Assignment],  # last det layer's matching
) -> MotionTargets:
    """MotionTarget.sample (docs/training-losses.md)."""
    bsz, num, _, steps, _ = reg_pred.shape
    reg_target = reg_pred.new_zeros(bsz, num, steps, 2)
    reg_weight = reg_pred.new_zeros(bsz, num, steps)
    num_pos = reg_pred.new_zeros(())
    for b, match in enumerate(assignments):
        pred_idx, gt_idx = match.pred_idx.to(reg_pred.device), match.gt_idx.to(reg_pred.device)
        reg_target[b, pred_idx] = gt_trajs[b].to(reg_pred)[gt_idx]
        reg_weight[b, pred_idx] = gt_masks[b].to(reg_pred)[gt_idx]
        num_pos = num_pos + len(pred_idx)
    with torch.no_grad():
        mode = _best_mode(reg_pred, reg_target, reg_weight)  # [B, N]
    best_reg = torch.gather(
        reg_pred, 2, mode[:, :, None, None, None].expand(bsz, num, 1, steps, 2)
    ).squeeze(2)
    cls_weight = (reg_weight > 0).any(-1).to(reg_pred.dtype)
    return MotionTargets(mode, cls_weight, best_reg, reg_target, reg_weight, num_pos)


@dataclass
class PlanningTargets:
    cls: Tensor  # [B, M] logits of the command's modes
    cls_target: Tensor  # [B] best mode
    cls_weight: Tensor  # [B]
    best_reg: Tensor  # [B, T, 2] offsets
    reg_target: Tensor  # [B, T, 2] GT offsets
    reg_weight: Tensor  # [B, T]


def planning_targets(
    cls: Tensor,  # [B, 1, C*M] logits, command-major
    reg: Tensor,  # [B, 1, C*M, T, 2] offsets
    gt_trajs: Tensor,  # [B, T, 2] ego future offsets, lidar frame
    gt_masks: Tensor,  # [B, T]
    command: Tensor,  # [B, C] one-hot (0 right, 1 left, 2 straight)
    num_commands: int = 3,
) -> PlanningTargets:
    """PlanningTarget.sample (docs/training-losses.md): the GT command picks its modes, the best mode by L2."""
    bsz = cls.shape[0]
    if command.shape != (bsz, num_commands):
        raise ValueError(f"command must be [{bsz}, {num_commands}] one-hot, got {tuple(command.shape)}")
    steps = reg.shape[-2]
    cmd = command.argmax(-1)
    batch = torch.arange(bsz, device=cls.device)
    cls = cls.reshape(bsz, num_commands, -1)[batch, cmd]  # [B, M]
    reg = reg.reshape(bsz, num_commands, -1, steps, 2)[batch, cmd]  # [B, M, T, 2]
    gt_trajs, gt_masks = gt_trajs.to(reg), gt_masks.to(reg)
    with torch.no_grad():
        mode = _best_mode(reg, gt_trajs, gt_masks)  # [B]
    best_reg = reg[batch, mode]
    cls_weight = (gt_masks > 0).any(-1).to(reg.dtype)
    return PlanningTargets(cls, mode, cls_weight, best_reg, gt_trajs, gt_masks)
