"""SparseDrive's training objective: per-layer det and map losses, motion/planning, dense depth
(docs/training-losses.md).

The network's raw outputs arrive as a flat mapping with the parity-case names (docs/parity.md#array-names), e.g.
``raw/det/classification/{d}`` [B, 900, 10], ``raw/det/prediction/{d}`` [B, 900, 11],
``raw/det/quality/{d}`` [B, 900, 2], ``raw/map/classification/{d}`` [B, 100, 3],
``raw/map/prediction/{d}`` [B, 100, 40], ``raw/motion/classification/0`` [B, 900, 6],
``raw/motion/prediction/0`` [B, 900, 6, 12, 2], ``raw/planning/classification/0`` [B, 1, 18],
``raw/planning/prediction/0`` [B, 1, 18, 6, 2], ``raw/planning/status/0`` [B, 1, 10], and (training only)
``aux/depth/{l}`` [B*6, 1, h_l, w_l]. Ground truth is a :class:`GroundTruth` (lidar frame of the key frame).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from sparsedrive_ros.training import losses as L
from sparsedrive_ros.training import targets as T

__all__ = ["GroundTruth", "LossConfig", "SparseDriveCriterion", "layer_outputs"]


@dataclass
class GroundTruth:
    """Per-batch ground truth, lidar frame of each sample's key frame. Lists hold one entry per sample."""

    boxes: list[Tensor]  # B × [K, 9] x, y, z, l, w, h, yaw, vx, vy (z = box centre; NaN velocity allowed)
    labels: list[Tensor]  # B × [K] int64 detection class
    map_labels: list[Tensor]  # B × [M] int64 map class
    map_pts: list[Tensor]  # B × [M, 20, 2] metres (orderings are derived) or [M, R, 20, 2]
    agent_fut_trajs: Optional[list[Tensor]] = None  # B × [K, 12, 2] per-step offsets
    agent_fut_masks: Optional[list[Tensor]] = None  # B × [K, 12]
    ego_fut_trajs: Optional[Tensor] = None  # [B, 6, 2] per-step offsets
    ego_fut_masks: Optional[Tensor] = None  # [B, 6]
    ego_fut_cmd: Optional[Tensor] = None  # [B, 3] one-hot (right, left, straight)
    ego_status: Optional[Tensor] = None  # [B, 10]
    depth: Optional[list[Tensor]] = None  # per level [B*6, h_l, w_l], <= 0 = no lidar point

    @property
    def batch_size(self) -> int:
        return len(self.boxes)


@dataclass(frozen=True)
class LossConfig:
    det_cls_weight: float = 2.0
    det_reg_weights: tuple[float, ...] = (2.0, 2.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
    det_box: L.SparseBox3DLossConfig = L.SparseBox3DLossConfig()
    det_target: T.DetTargetConfig = field(default_factory=T.DetTargetConfig)
    map_cls_weight: float = 1.0
    map_line_weight: float = 10.0
    map_target: T.MapTargetConfig = T.MapTargetConfig()
    cls_threshold_to_reg: float = 0.05
    focal_gamma: float = 2.0
    focal_alpha: float = 0.25
    motion_cls_weight: float = 0.2
    motion_reg_weight: float = 0.2
    plan_cls_weight: float = 0.5
    plan_reg_weight: float = 1.0
    plan_status_weight: float = 1.0
    depth_weight: float = 0.2
    max_depth: float = 60.0
    with_det: bool = True
    with_map: bool = True
    with_motion_plan: bool = True
    with_depth: bool = True


def layer_outputs(outputs: Mapping[str, Tensor], prefix: str) -> list[Tensor]:
    """All ``{prefix}/{i}`` entries ordered by i (e.g. prefix 'raw/det/classification')."""
    pattern = re.compile(re.escape(prefix) + r"/(\d+)$")
    found = {int(m.group(1)): v for k, v in outputs.items() if (m := pattern.match(k)) and v is not None}
    return [found[i] for i in sorted(found)]


def _num_pos(mask: Tensor, dtype: torch.dtype) -> Tensor:
    """Matched count averaged over processes, at least 1 (mmdet reduce_mean), in the predictions' dtype.

    The dtype matters: every average factor is used as ``avg_factor + float32 eps``, and only a float64 count
    keeps that eps (as the original's does in a float64 model; docs/training-losses.md).
    """
    return torch.clamp(L.reduce_mean(mask.sum().to(dtype)), min=1.0)


class SparseDriveCriterion:
    """Computes the dict of named losses; the total is the plain sum of its values."""

    def __init__(self, cfg: LossConfig = LossConfig()):
        self.cfg = cfg
        # The discrete decisions of the last call for sample 0 (matches, permutations, mode targets) under the
        # golden loss-file names, e.g. "match/det/3/pred_idx" (numpy arrays; see tools/loss_npz.py).
        self.last_decisions: dict[str, np.ndarray] = {}

    def __call__(self, outputs: Mapping[str, Tensor], gt: GroundTruth) -> dict[str, Tensor]:
        cfg = self.cfg
        self.last_decisions = {}
        losses: dict[str, Tensor] = {}
        last_det_match: Optional[list[T.Assignment]] = None
        if cfg.with_det:
            det, last_det_match = self.det_losses(outputs, gt)
            losses.update(det)
        if cfg.with_map:
            losses.update(self.map_losses(outputs, gt))
        if cfg.with_motion_plan and "raw/motion/prediction/0" in outputs:
            if last_det_match is None:
                raise ValueError("motion loss needs the det assignment: enable with_det")
            losses.update(self.motion_losses(outputs, gt, last_det_match))
            losses.update(self.planning_losses(outputs, gt))
        depth = layer_outputs(outputs, "aux/depth")
        if cfg.with_depth and depth and gt.depth is not None:
            losses["loss_dense_depth"] = L.dense_depth_loss(depth, gt.depth, cfg.max_depth, cfg.depth_weight)
        return losses

    def _record(self, prefix: str, **arrays: Tensor) -> None:
        for name, value in arrays.items():
            value = value.detach().cpu()
            self.last_decisions[f"{prefix}/{name}"] = (value.double() if value.is_floating_point()
                                                       else value.long()).numpy()

    # -- detection ------------------------------------------------------------------------------------------
    def det_losses(
        self, outputs: Mapping[str, Tensor], gt: GroundTruth
    ) -> tuple[dict[str, Tensor], list[T.Assignment]]:
        cfg = self.cfg
        cls_list = layer_outputs(outputs, "raw/det/classification")
        reg_list = layer_outputs(outputs, "raw/det/prediction")
        qt_list = layer_outputs(outputs, "raw/det/quality")
        if not cls_list or len(cls_list) != len(reg_list):
            raise ValueError(f"det outputs incomplete: {len(cls_list)} cls vs {len(reg_list)} prediction layers")
        out: dict[str, Tensor] = {}
        match: list[T.Assignment] = []
        for d, (cls, reg) in enumerate(zip(cls_list, reg_list)):
            qt = qt_list[d] if d < len(qt_list) else None
            tgt = T.assign_det(cls, reg, gt.labels, gt.boxes, cfg.det_target)
            match = tgt.assignments
            self._record(f"match/det/{d}", pred_idx=match[0].pred_idx, target_idx=match[0].gt_idx,
                         pred_conf=cls[0, match[0].pred_idx.to(cls.device)].max(-1).values.sigmoid())
            dims = len(cfg.det_reg_weights)
            reg = reg[..., :dims]
            mask = ~torch.all(tgt.box_target == 0, dim=-1)  # [B, N] matched
            num_pos = _num_pos(mask, reg.dtype)
            reg_mask = mask & (cls.max(-1).values.sigmoid() > cfg.cls_threshold_to_reg)
            out[f"det_loss_cls_{d}"] = L.sigmoid_focal_loss(
                cls.flatten(0, 1), tgt.cls_target.flatten(), None, num_pos,
                cfg.focal_gamma, cfg.focal_alpha, cfg.det_cls_weight,
            )
            weights = (tgt.reg_weights * reg.new_tensor(cfg.det_reg_weights))[reg_mask]
            box_target = tgt.box_target[reg_mask]
            box_target = torch.where(box_target.isnan(), box_target.new_zeros(()), box_target)
            terms = L.sparse_box3d_loss(
                reg[reg_mask], box_target, weights, num_pos,
                qt[reg_mask] if qt is not None else None, tgt.cls_target[reg_mask], cfg.det_box,
            )
            for name, value in terms.items():
                out[f"det_loss_{name}_{d}"] = value
        return out, match

    # -- map ------------------------------------------------------------------------------------------------
    def map_losses(self, outputs: Mapping[str, Tensor], gt: GroundTruth) -> dict[str, Tensor]:
        cfg = self.cfg
        cls_list = layer_outputs(outputs, "raw/map/classification")
        reg_list = layer_outputs(outputs, "raw/map/prediction")
        if not cls_list or len(cls_list) != len(reg_list):
            raise ValueError(f"map outputs incomplete: {len(cls_list)} cls vs {len(reg_list)} prediction layers")
        out: dict[str, Tensor] = {}
        tc = cfg.map_target
        for d, (cls, reg) in enumerate(zip(cls_list, reg_list)):
            tgt = T.assign_map(cls, reg, gt.map_labels, gt.map_pts, tc)
            self._record(f"match/map/{d}", pred_idx=tgt.assignments[0].pred_idx,
                         target_idx=tgt.assignments[0].gt_idx, permute_idx=tgt.permutations[0])
            mask = ~torch.all(tgt.line_target == 0, dim=-1)
            num_pos = _num_pos(mask, reg.dtype)
            reg_mask = mask & (cls.max(-1).values.sigmoid() > cfg.cls_threshold_to_reg)
            out[f"map_loss_cls_{d}"] = L.sigmoid_focal_loss(
                cls.flatten(0, 1), tgt.cls_target.flatten(), None, num_pos,
                cfg.focal_gamma, cfg.focal_alpha, cfg.map_cls_weight,
            )
            out[f"map_loss_line_{d}"] = L.sparse_line_loss(
                reg[reg_mask], tgt.line_target[reg_mask], tgt.reg_weights[reg_mask], num_pos,
                tc.num_sample, tc.roi_size, tc.beta, cfg.map_line_weight,
            )
        return out

    # -- motion and planning --------------------------------------------------------------------------------
    def motion_losses(
        self, outputs: Mapping[str, Tensor], gt: GroundTruth, match: Sequence[T.Assignment]
    ) -> dict[str, Tensor]:
        cfg = self.cfg
        if gt.agent_fut_trajs is None or gt.agent_fut_masks is None:
            raise ValueError("motion loss needs GroundTruth.agent_fut_trajs / agent_fut_masks")
        cls = outputs["raw/motion/classification/0"]  # [B, N, M]
        reg = outputs["raw/motion/prediction/0"]  # [B, N, M, T, 2]
        tgt = T.motion_targets(reg, gt.agent_fut_trajs, gt.agent_fut_masks, match)
        num_pos = torch.clamp(L.reduce_mean(tgt.num_pos.to(reg.dtype)), min=1.0)
        self._record("match/motion/0", mode_target=tgt.cls_target[0], num_pos=num_pos)
        steps = reg.shape[-2]
        cls_loss = L.sigmoid_focal_loss(
            cls.reshape(-1, cls.shape[-1]), tgt.cls_target.reshape(-1), tgt.cls_weight.reshape(-1), num_pos,
            cfg.focal_gamma, cfg.focal_alpha, cfg.motion_cls_weight,
        )
        # Motion regression compares cumulative positions (planning compares offsets).
        reg_loss = L.l1_loss(
            tgt.best_reg.reshape(-1, steps, 2).cumsum(-2), tgt.reg_target.reshape(-1, steps, 2).cumsum(-2),
            tgt.reg_weight.reshape(-1, steps, 1), num_pos, cfg.motion_reg_weight,
        )
        return {"motion_loss_cls_0": cls_loss, "motion_loss_reg_0": reg_loss}

    def planning_losses(self, outputs: Mapping[str, Tensor], gt: GroundTruth) -> dict[str, Tensor]:
        cfg = self.cfg
        if gt.ego_fut_trajs is None or gt.ego_fut_masks is None or gt.ego_fut_cmd is None or gt.ego_status is None:
            raise ValueError("planning loss needs GroundTruth.ego_fut_trajs/_masks/_cmd and ego_status")
        tgt = T.planning_targets(
            outputs["raw/planning/classification/0"], outputs["raw/planning/prediction/0"],
            gt.ego_fut_trajs, gt.ego_fut_masks, gt.ego_fut_cmd,
        )
        status = outputs["raw/planning/status/0"].squeeze(1)  # [B, 10]
        self._record("match/planning/0", cmd=gt.ego_fut_cmd[:1].argmax(-1), mode_target=tgt.cls_target[:1])
        return {
            "planning_loss_cls_0": L.sigmoid_focal_loss(
                tgt.cls, tgt.cls_target, tgt.cls_weight, None, cfg.focal_gamma, cfg.focal_alpha, cfg.plan_cls_weight
            ),
            "planning_loss_reg_0": L.l1_loss(
                tgt.best_reg, tgt.reg_target, tgt.reg_weight[..., None], None, cfg.plan_reg_weight
            ),
            "planning_loss_status_0": L.l1_loss(status, gt.ego_status.to(status), None, None, cfg.plan_status_weight),
        }
