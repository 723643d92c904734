"""Post-processing of the motion/planning head (docs/model-notes.md#post-processing, #planning-decoder,
#trajectories-command-and-ego-status)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List

import torch
from torch import Tensor

from .box3d import COS_YAW, LOG_SIZE, SIN_YAW, BoxDetections, decode_box
from .config import MotionPlanConfig

__all__ = [
    "MotionForecast",
    "PlanningResult",
    "SparseBox3DMotionDecoder",
    "HierarchicalPlanningDecoder",
    "check_collision",
]

# 7-value boxes of the collision check: x, y, z, l, w, h, yaw
BX, BY, BZ, BL, BW, BH, BYAW = range(7)


@dataclass
class MotionForecast:
    """Trajectories of the decoded detections (same order as :class:`BoxDetections`)."""

    trajs: Tensor         # [B, K, M, T, 2] absolute x, y (lidar frame) at 0.5 s steps
    traj_scores: Tensor   # [B, K, M] sigmoid mode scores
    history: Tensor       # [B, K, Q, 10] decoded boxes of the tracked history, oldest first, current frame
    period: Tensor        # [B, K] int64 tracked frames (1..Q)


@dataclass
class PlanningResult:
    """Ego plans (lidar frame: x right, y forward; cumulative metres at 0.5 s steps from the lidar origin)."""

    trajectories: Tensor      # [B, cmd, M, T, 2] every command x mode
    scores: Tensor            # [B, cmd, M] sigmoid scores; the selected command's after collision rescoring
    final: Tensor             # [B, T, 2] chosen trajectory
    command: Tensor           # [B] int64 command used (0 right, 1 left, 2 straight)
    mode: Tensor              # [B] int64 chosen mode of that command
    ego_status: Tensor        # [B, 10] predicted ego status (accel 3, rotation rate 3, velocity 3, steering)
    ego_period: Tensor        # [B] int64 frames of ego history
    ego_history: Tensor       # [B, Q, 10] decoded ego boxes of that history


class SparseBox3DMotionDecoder:
    """Trajectories for the detections chosen by :class:`SparseBox3DDecoder` (same top-k and order)."""

    def decode(self, det: BoxDetections, motion_cls: Tensor, motion_reg: Tensor, anchor_queue: List[Tensor],
               period: Tensor) -> MotionForecast:
        rows = torch.arange(det.index.shape[0], device=det.index.device)[:, None]
        index = det.index
        trajs = motion_reg[rows, index].cumsum(dim=-2) + det.boxes[:, :, None, None, :2]
        history = decode_box(torch.stack(anchor_queue, dim=2)[rows, index])
        return MotionForecast(trajs, motion_cls[rows, index].sigmoid(), history, period[rows, index])


class HierarchicalPlanningDecoder:
    """Pick the command's modes, penalise modes that collide with confident agents, take the best one."""

    def __init__(self, cfg: MotionPlanConfig) -> None:
        self.cfg = cfg

    def decode(self, plan_cls: Tensor, plan_reg: Tensor, plan_status: Tensor, ego_period: Tensor,
               ego_anchor_queue: List[Tensor], command: Tensor, det_cls_logits: Tensor, det_anchor: Tensor,
               motion_cls: Tensor, motion_reg: Tensor) -> PlanningResult:
        """plan_cls [B, 1, cmd*M], plan_reg [B, 1, cmd*M, T, 2], command [B] int64; det/motion last layer."""
        cfg = self.cfg
        batch = plan_cls.shape[0]
        logits = plan_cls.reshape(batch, cfg.num_commands, cfg.ego_fut_mode)
        trajs = plan_reg.reshape(batch, cfg.num_commands, cfg.ego_fut_mode, cfg.ego_fut_ts, 2).cumsum(dim=-2)
        rows = torch.arange(batch, device=plan_cls.device)
        cmd_logits = logits[rows, command]
        cmd_trajs = trajs[rows, command]
        if cfg.use_rescore:
            det_conf = det_cls_logits.sigmoid().max(dim=-1).values
            cmd_logits = self.rescore(cmd_logits, cmd_trajs, motion_cls.sigmoid(), motion_reg, det_anchor, det_conf)
        # Selects instead of index writes, so that the decoder is also a static graph (docs/static-graph.md).
        chosen = torch.nn.functional.one_hot(command, cfg.num_commands).bool()[..., None]  # [B, cmd, 1]
        logits = torch.where(chosen, cmd_logits[:, None], logits.detach())
        mode = cmd_logits.argmax(dim=-1)
        return PlanningResult(
            trajectories=trajs,
            scores=logits.sigmoid(),
            final=cmd_trajs[rows, mode],
            command=command,
            mode=mode,
            ego_status=plan_status[:, 0],
            ego_period=ego_period[:, 0],
            ego_history=decode_box(torch.stack(ego_anchor_queue, dim=2))[:, 0],
        )

    def rescore(self, plan_cls: Tensor, plan_traj: Tensor, motion_scores: Tensor, motion_reg: Tensor,
                det_anchor: Tensor, det_conf: Tensor) -> Tensor:
        """plan_cls [B, M], plan_traj [B, M, T, 2] cumulative; motion_scores [B, N, Mm], motion_reg
        [B, N, Mm, T_m, 2] displacements; det_anchor [B, N, 11]; det_conf [B, N]. Returns [B, M] logits."""
        cfg = self.cfg
        steps = cfg.ego_fut_ts
        ego_box = self._ego_boxes(plan_traj)  # [B, M, T+1, 7]
        agent_box = self._agent_boxes(motion_scores, motion_reg[..., :steps, :], det_anchor, det_conf)
        ego_box, agent_box = ego_box[..., 1:, :], agent_box[..., 1:, :]  # drop t = 0
        batch, num_ego_mode, ts, _ = ego_box.shape
        num_agent, num_motion_mode = agent_box.shape[1:3]
        # Flatten to (b, agent, motion mode, ego mode, t) rows.
        ego_rows = ego_box[:, None, None].expand(-1, num_agent, num_motion_mode, -1, -1, -1).reshape(-1, 7).clone()
        agent_rows = agent_box.unsqueeze(3).expand(-1, -1, -1, num_ego_mode, -1, -1).reshape(-1, 7)
        # Parity quirk (docs/model-notes.md#planning-decoder): the intended forward shift of every ego box indexes
        # *rows* 0 and 1 of
        # the flattened tensor with the values of row 6, so it only perturbs two boxes of agent 0.
        ego_rows[0] += cfg.rescore_offset * torch.cos(ego_rows[6])
        ego_rows[1] += cfg.rescore_offset * torch.sin(ego_rows[6])
        col = check_collision(ego_rows, agent_rows)
        col = col.reshape(batch, num_agent, num_motion_mode, num_ego_mode, ts).permute(0, 3, 1, 2, 4)
        col = col.flatten(2).any(dim=-1)  # [B, M]
        col = col & ~col.all(dim=-1, keepdim=True)  # every mode collides: leave the scores alone
        return plan_cls + col.to(plan_cls.dtype) * -999

    def _ego_boxes(self, plan_traj: Tensor) -> Tensor:
        """[B, M, T, 2] -> [B, M, T+1, 7] ego boxes (scaled size, yaw from the path)."""
        cfg = self.cfg
        traj = _prepend_origin(plan_traj)
        size = (traj.new_tensor(cfg.ego_size) * cfg.rescore_dim_scale).expand(traj.shape[:-1] + (3,))
        return _boxes(traj, size, _path_yaw(traj, math.pi / 2, cfg.rescore_static_dis_thresh))

    def _agent_boxes(self, motion_scores: Tensor, motion_reg: Tensor, det_anchor: Tensor, det_conf: Tensor) -> Tensor:
        """Top mode(s) of every agent as [B, N, k, T+1, 7] boxes; agents below the threshold moved to 1e6."""
        cfg = self.cfg
        traj = _prepend_origin(motion_reg.cumsum(-2)) + det_anchor[:, :, None, None, :2]  # [B, N, Mm, T+1, 2]
        _, mode = torch.topk(motion_scores, cfg.rescore_num_motion_mode, dim=-1)  # [B, N, k]
        index = mode[..., None, None].expand(-1, -1, -1, traj.shape[-2], 2)
        traj = torch.gather(traj, 2, index)
        size = det_anchor[..., None, None, LOG_SIZE].exp().expand(traj.shape[:-1] + (3,))
        box_yaw = torch.atan2(det_anchor[..., SIN_YAW], det_anchor[..., COS_YAW])
        box = _boxes(traj, size, _path_yaw(traj, box_yaw[..., None], cfg.rescore_static_dis_thresh))
        return torch.where((det_conf < cfg.rescore_score_thresh)[..., None, None, None], box.new_tensor(1e6), box)


def _boxes(xy: Tensor, size: Tensor, yaw: Tensor) -> Tensor:
    """[..., 2] centres, [..., 3] sizes, [..., 1] yaw -> [..., 7] boxes (BX..BYAW) with z = 0."""
    return torch.cat([xy, torch.zeros_like(xy[..., :1]), size, yaw], dim=-1)


def _prepend_origin(traj: Tensor) -> Tensor:
    """[..., T, 2] -> [..., T+1, 2] with a zero first point."""
    return torch.cat([traj.new_zeros(traj.shape[:-2] + (1, 2)), traj], dim=-2)


def _path_yaw(traj: Tensor, start_yaw, static_dis_thresh: float) -> Tensor:
    """Yaw along a path [..., T, 2] -> [..., T, 1]: central differences, backward at the end, ``start_yaw`` at
    t = 0; paths shorter than ``static_dis_thresh`` keep the start yaw everywhere."""
    yaw = traj.new_zeros(traj.shape[:-1])
    yaw[..., 1:-1] = torch.atan2(traj[..., 2:, 1] - traj[..., :-2, 1], traj[..., 2:, 0] - traj[..., :-2, 0])
    yaw[..., -1] = torch.atan2(traj[..., -1, 1] - traj[..., -2, 1], traj[..., -1, 0] - traj[..., -2, 0])
    yaw[..., 0] = start_yaw
    static = torch.linalg.norm(traj[..., -1, :] - traj[..., 0, :], dim=-1) < static_dis_thresh
    yaw = torch.where(static[..., None], yaw[..., :1], yaw)
    return yaw[..., None]


def check_collision(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Rough box overlap: a bottom corner of either box lies inside the other. [K, 7] x [K, 7] -> [K] bool."""
    return _corners_in_box(boxes1, boxes2) | _corners_in_box(boxes2, boxes1)


def _corners_in_box(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Whether any bottom corner of boxes2 lies inside boxes1 (in boxes1's frame, |x| <= l/2, |y| <= w/2)."""
    yaw1 = boxes1[:, BYAW]
    cos, sin = torch.cos(-yaw1), torch.sin(-yaw1)
    dx, dy = boxes2[:, BX] - boxes1[:, BX], boxes2[:, BY] - boxes1[:, BY]
    cx, cy = dx * cos - dy * sin, dx * sin + dy * cos  # centre of box 2 in box 1's frame
    yaw2 = boxes2[:, BYAW] - yaw1
    c2, s2 = torch.cos(yaw2), torch.sin(yaw2)
    half_l, half_w = boxes2[:, BL] * 0.5, boxes2[:, BW] * 0.5
    signs = boxes2.new_tensor([[-1.0, -1.0], [-1.0, 1.0], [1.0, 1.0], [1.0, -1.0]])  # bottom corners
    ox, oy = signs[:, 0] * half_l[:, None], signs[:, 1] * half_w[:, None]  # [K, 4]
    x = c2[:, None] * ox - s2[:, None] * oy + cx[:, None]
    y = s2[:, None] * ox + c2[:, None] * oy + cy[:, None]
    half_len, half_wid = boxes1[:, [BL]] / 2, boxes1[:, [BW]] / 2
    inside = (x <= half_len) & (x >= -half_len) & (y <= half_wid) & (y >= -half_wid)
    return inside.any(dim=-1)
