"""Loss functions of SparseDrive (docs/model-notes.md#backbone-and-neck; docs/training-losses.md), mmdet reduction
semantics.

mmdet's ``weight_reduce_loss``: with ``avg_factor`` the elementwise (weighted) loss is summed and divided by
``avg_factor + eps`` (eps = float32 machine epsilon); without it the loss is averaged over all elements.
Every function here takes unreduced inputs and returns a scalar already multiplied by its ``loss_weight``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import sigmoid_focal_loss as sigmoid_focal_loss_elementwise

__all__ = [
    "reduce_loss",
    "reduce_mean",
    "sigmoid_focal_loss",
    "gaussian_focal_loss",
    "l1_loss",
    "smooth_l1_loss",
    "sigmoid_cross_entropy",
    "SparseBox3DLossConfig",
    "sparse_box3d_loss",
    "sparse_line_loss",
    "dense_depth_loss",
    "normalize_map_points",
]

_EPS = torch.finfo(torch.float32).eps
AvgFactor = Union[float, Tensor]  # a count, possibly a (DDP-averaged) tensor

# Box state slots (docs/model-notes.md#box-encoding): x, y, z, ln l, ln w, ln h, sin, cos, vx, vy, vz.
X, Y, Z, SIN_YAW, COS_YAW = 0, 1, 2, 6, 7
CNS, YNS = 0, 1


def reduce_loss(loss: Tensor, weight: Optional[Tensor] = None, avg_factor: Optional[AvgFactor] = None) -> Tensor:
    """mmdet weight_reduce_loss with reduction='mean'."""
    if weight is not None:
        loss = loss * weight
    if avg_factor is None:
        return loss.mean()
    return loss.sum() / (avg_factor + _EPS)


def reduce_mean(value: Tensor) -> Tensor:
    """Average a tensor over all processes (mmdet reduce_mean); identity when not distributed."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return value
    value = value.clone()
    dist.all_reduce(value.div_(dist.get_world_size()), op=dist.ReduceOp.SUM)
    return value


def sigmoid_focal_loss(
    logits: Tensor,  # [M, C]
    labels: Tensor,  # [M] int, C = background
    weight: Optional[Tensor] = None,  # [M] per-row weight
    avg_factor: Optional[AvgFactor] = None,
    gamma: float = 2.0,
    alpha: float = 0.25,
    loss_weight: float = 1.0,
) -> Tensor:
    """mmdet FocalLoss(use_sigmoid=True): label == C means 'no class' (all-zero one-hot)."""
    if logits.dim() != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(
            f"focal loss expects logits [M, C] and labels [M], got {tuple(logits.shape)}, {tuple(labels.shape)}"
        )
    num_classes = logits.shape[1]
    target = F.one_hot(labels.long(), num_classes + 1)[:, :num_classes].to(logits.dtype)
    # torchvision's focal loss is the same formula as mmdet's; only the order of the three products differs
    # (1e-15 relative in float64, one float32 ulp), well inside the loss parity tolerance.
    loss = sigmoid_focal_loss_elementwise(logits, target, alpha=alpha, gamma=gamma, reduction="none")
    if weight is not None:
        weight = weight.reshape(-1, 1).to(loss.dtype)
    return loss_weight * reduce_loss(loss, weight, avg_factor)


def gaussian_focal_loss(
    prob: Tensor,
    target: Tensor,
    avg_factor: Optional[AvgFactor] = None,
    alpha: float = 2.0,
    gamma: float = 4.0,
    loss_weight: float = 1.0,
) -> Tensor:
    """mmdet GaussianFocalLoss on probabilities; positives are exactly target == 1."""
    eps = 1e-12
    pos = target.eq(1).to(prob.dtype)
    neg_weight = (1 - target).pow(gamma)
    pos_loss = -(prob + eps).log() * (1 - prob).pow(alpha) * pos
    neg_loss = -(1 - prob + eps).log() * prob.pow(alpha) * neg_weight
    return loss_weight * reduce_loss(pos_loss + neg_loss, None, avg_factor)


def l1_loss(
    pred: Tensor, target: Tensor, weight: Optional[Tensor] = None, avg_factor: Optional[AvgFactor] = None,
    loss_weight: float = 1.0,
) -> Tensor:
    """mmdet L1Loss; an empty input gives a zero that keeps the graph."""
    if target.numel() == 0:
        return pred.sum() * 0
    return loss_weight * reduce_loss((pred - target).abs(), weight, avg_factor)


def smooth_l1_loss(
    pred: Tensor, target: Tensor, beta: float, weight: Optional[Tensor] = None,
    avg_factor: Optional[AvgFactor] = None, loss_weight: float = 1.0,
) -> Tensor:
    if target.numel() == 0:
        return pred.sum() * 0
    return loss_weight * reduce_loss(smooth_l1(pred - target, beta), weight, avg_factor)


def smooth_l1(diff: Tensor, beta: float) -> Tensor:
    diff = diff.abs()
    return torch.where(diff < beta, 0.5 * diff * diff / beta, diff - 0.5 * beta)


def sigmoid_cross_entropy(
    logits: Tensor, target: Tensor, avg_factor: Optional[AvgFactor] = None, loss_weight: float = 1.0,
    target_float32: bool = False,
) -> Tensor:
    """mmdet CrossEntropyLoss(use_sigmoid=True) with soft targets.

    ``target_float32`` reproduces the original: mmdet hands the BCE ``label.float()``, so with float64 logits the
    target is rounded to float32 and torch returns float32 element losses (summed in float32, then divided in
    float64 by the average factor). A no-op in a float32 run. See docs/training-losses.md.
    """
    # The original does not detach the (prediction-dependent) centerness target; neither do we.
    target = target.float() if target_float32 else target.to(logits.dtype)
    loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return loss_weight * reduce_loss(loss, None, avg_factor)


@dataclass(frozen=True)
class SparseBox3DLossConfig:
    box_weight: float = 0.25
    cns_weight: float = 1.0
    yns_weight: float = 1.0
    yns_alpha: float = 2.0
    yns_gamma: float = 4.0
    # Classes whose heading is symmetric (barrier = 5): the target yaw may be flipped by π.
    cls_allow_reverse: tuple[int, ...] = (5,)
    # Parity with the original: its centerness target passes through float32 inside mmdet's BCE even in a
    # float64 model (~1e-7 relative). False keeps the target in the model's dtype (docs/training-losses.md).
    cns_target_float32: bool = True


def _yaw_cosine(box_target: Tensor, box: Tensor) -> Tensor:
    return F.cosine_similarity(box_target[..., [SIN_YAW, COS_YAW]], box[..., [SIN_YAW, COS_YAW]], dim=-1)


def flip_reversible_yaw(box: Tensor, box_target: Tensor, cls_target: Tensor, classes: Sequence[int]) -> Tensor:
    """Negate (sin, cos) of the target where the class is heading-symmetric and the prediction points backwards."""
    if len(classes) == 0 or box_target.numel() == 0:
        return box_target
    reverse = (_yaw_cosine(box_target, box) < 0) & torch.isin(cls_target, cls_target.new_tensor(list(classes)))
    sincos = box_target[..., [SIN_YAW, COS_YAW]]
    box_target = box_target.clone()
    box_target[..., [SIN_YAW, COS_YAW]] = torch.where(reverse[..., None], -sincos, sincos)
    return box_target


def sparse_box3d_loss(
    box: Tensor,  # [M, 10] matched predictions (first 10 state dims)
    box_target: Tensor,  # [M, 10] encoded GT (NaN already replaced by 0)
    weight: Tensor,  # [M, 10]
    avg_factor: AvgFactor,
    quality: Optional[Tensor],  # [M, 2] centerness / yawness logits
    cls_target: Tensor,  # [M]
    cfg: SparseBox3DLossConfig = SparseBox3DLossConfig(),
) -> dict[str, Tensor]:
    """L1 box + centerness BCE + yawness Gaussian focal (docs/training-losses.md); keys 'box', 'cns', 'yns'."""
    box_target = flip_reversible_yaw(box, box_target, cls_target, cfg.cls_allow_reverse)
    out = {"box": l1_loss(box, box_target, weight, avg_factor, cfg.box_weight)}
    if quality is None:
        return out
    cns_target = torch.exp(-torch.norm(box_target[..., [X, Y, Z]] - box[..., [X, Y, Z]], p=2, dim=-1))
    out["cns"] = sigmoid_cross_entropy(quality[..., CNS], cns_target, avg_factor, cfg.cns_weight,
                                       target_float32=cfg.cns_target_float32)
    yns_target = (_yaw_cosine(box_target, box) > 0).to(box.dtype)
    out["yns"] = gaussian_focal_loss(
        quality[..., YNS].sigmoid(), yns_target, avg_factor, cfg.yns_alpha, cfg.yns_gamma, cfg.yns_weight
    )
    return out


def normalize_map_points(points: Tensor, roi_size: tuple[float, float] = (30.0, 60.0)) -> Tensor:
    """[..., 2k] interleaved (x, y) metres in the lidar frame -> [0, 1] over the map ROI (docs/training-losses.md)."""
    shape = points.shape
    pts = points.reshape(*shape[:-1], shape[-1] // 2, 2)
    origin = pts.new_tensor([roi_size[0] / 2, roi_size[1] / 2])
    size = pts.new_tensor(roi_size) + 1e-5
    return ((pts + origin) / size).reshape(shape)


def sparse_line_loss(
    line: Tensor,  # [M, 40] metres
    line_target: Tensor,  # [M, 40] metres, best permutation of the matched GT
    weight: Tensor,  # [M, 40]
    avg_factor: AvgFactor,
    num_sample: int = 20,
    roi_size: tuple[float, float] = (30.0, 60.0),
    beta: float = 0.01,
    loss_weight: float = 10.0,
) -> Tensor:
    """SparseLineLoss / LinesL1Loss (docs/training-losses.md): smooth-L1 on normalised points, / avg_factor / points."""
    if line.numel() == 0:
        return line.sum() * 0
    pred = normalize_map_points(line, roi_size)
    target = normalize_map_points(line_target, roi_size)
    loss = smooth_l1_loss(pred, target, beta, weight, avg_factor, 1.0)
    return loss_weight * loss / num_sample


def dense_depth_loss(
    depth_preds: Sequence[Tensor],  # per level [B*6, 1, h, w]
    gt_depths: Sequence[Tensor],  # per level [B*6, h, w], <= 0 means no lidar point
    max_depth: float = 60.0,
    loss_weight: float = 0.2,
) -> Tensor:
    """DenseDepthNet.loss (docs/model-notes.md#backbone-and-neck): L1 on pixels with a lidar point, / (valid ·
    levels) per level."""
    if len(depth_preds) != len(gt_depths):
        raise ValueError(f"depth levels differ: {len(depth_preds)} predictions, {len(gt_depths)} targets")
    total = depth_preds[0].new_zeros((), dtype=torch.promote_types(depth_preds[0].dtype, torch.float32))
    for pred, gt in zip(depth_preds, gt_depths):
        pred = pred.permute(0, 2, 3, 1).reshape(-1)
        gt = gt.reshape(-1).to(pred.dtype)
        if pred.numel() != gt.numel():
            raise ValueError(f"depth map sizes differ: {pred.numel()} vs {gt.numel()}")
        valid = (gt > 0) & ~torch.isnan(pred)
        pred, gt = pred[valid], gt[valid]
        if pred.dtype in (torch.float16, torch.bfloat16):  # the original sums in float32 outside autocast
            pred, gt = pred.float(), gt.float()
        # In the prediction's dtype: a float64 model keeps float64 (the original computes the same there).
        error = (pred.clamp(0.0, max_depth) - gt).abs().sum()
        total = total + error / max(1.0, int(valid.sum()) * len(depth_preds)) * loss_weight
    return total
