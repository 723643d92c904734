"""3-D box instances of the detection head (docs/model-notes.md#box-encoding, #box-refinement, #post-processing).

Box anchor layout (11 values, LIDAR_TOP frame, x right, y forward, z up):
``[x, y, z, ln l, ln w, ln h, sin yaw, cos yaw, vx, vy, vz]`` with l = extent along the heading
(docs/model-notes.md#box-encoding)
and sin *before* cos (docs/model-notes.md#box-encoding). Decoded boxes: ``[x, y, z, l, w, h, yaw, vx, vy, vz]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from .layers import Scale, linear_relu_ln

__all__ = [
    "BOX_DIMS",
    "BoxDetections",
    "SparseBox3DDecoder",
    "SparseBox3DEncoder",
    "SparseBox3DKeyPointsGenerator",
    "SparseBox3DRefinementModule",
    "decode_box",
]

X, Y, Z = 0, 1, 2
LOG_SIZE = slice(3, 6)  # ln(length, width, height)
SIN_YAW, COS_YAW = 6, 7
VEL = slice(8, 11)
BOX_DIMS = 11
CNS, YNS = 0, 1  # quality outputs: centerness, yawness logits


def decode_box(box: Tensor) -> Tensor:
    """[..., 11] anchor state -> [..., 10] = x, y, z, l, w, h, yaw, vx, vy, vz."""
    yaw = torch.atan2(box[..., SIN_YAW], box[..., COS_YAW])
    return torch.cat([box[..., :3], box[..., LOG_SIZE].exp(), yaw[..., None], box[..., VEL]], dim=-1)


class SparseBox3DKeyPointsGenerator(nn.Module):
    """Key points of a box: fixed offsets (scaled by the box size) + learnable ones inside the box.

    ``fix_scale`` is a non-trainable parameter so that the checkpoint's (re-initialised,
    docs/model-notes.md#checkpoint-tensors) values
    are loaded. Also the det instance bank's anchor handler (``anchor_projection``).
    """

    def __init__(self, embed_dims: int = 256, num_learnable_pts: int = 0,
                 fix_scale: Optional[Sequence[Sequence[float]]] = None) -> None:
        super().__init__()
        fix_scale = [[0.0, 0.0, 0.0]] if fix_scale is None else fix_scale
        self.fix_scale = nn.Parameter(torch.tensor(fix_scale, dtype=torch.float32), requires_grad=False)
        self.num_learnable_pts = num_learnable_pts
        self.num_pts = len(fix_scale) + num_learnable_pts
        if num_learnable_pts > 0:
            self.learnable_fc = nn.Linear(embed_dims, num_learnable_pts * 3)

    def forward(self, anchor: Tensor, instance_feature: Optional[Tensor] = None) -> Tensor:
        """anchor [B, N, 11], instance_feature [B, N, C] -> key points [B, N, P, 3] (lidar frame)."""
        size = anchor[..., None, LOG_SIZE].exp()  # [B, N, 1, 3]
        key_points = self.fix_scale * size
        if self.num_learnable_pts > 0 and instance_feature is not None:
            learnable = self.learnable_fc(instance_feature).unflatten(-1, (self.num_learnable_pts, 3))
            key_points = torch.cat([key_points, (learnable.sigmoid() - 0.5) * size], dim=-2)
        # Rotation about +z by the anchor's (unnormalised) cos/sin, written out instead of N*P 3x3 products.
        cos, sin = anchor[..., None, COS_YAW], anchor[..., None, SIN_YAW]
        x, y, z = key_points.unbind(-1)
        key_points = torch.stack([cos * x - sin * y, sin * x + cos * y, z], dim=-1)
        return key_points + anchor[..., None, :3]

    @staticmethod
    def anchor_projection(anchor: Tensor, T_src2dst: Tensor, time_interval: Optional[Tensor] = None) -> Tensor:
        """Move box anchors into another frame (docs/model-notes.md#temporal-rules).

        Args:
            anchor: [B, N, 11] in the source frame.
            T_src2dst: [B, 4, 4] source -> destination (any dtype; cast to the anchor's).
            time_interval: [B] seconds; the centre first moves by ``-velocity * time_interval`` (the bank
                passes ``-dt`` so the box moves forward by its velocity over dt). None = no time shift.

        Returns:
            [B, N, 11] in the destination frame: centre and velocity rotated, yaw rotated and written back in
            (sin, cos) order (SparseDrive's fix of Sparse4D v3's swap, docs/model-notes.md#box-encoding), sizes
            unchanged.
        """
        T = T_src2dst.to(dtype=anchor.dtype)[:, None]  # [B, 1, 4, 4]
        center = anchor[..., :3]
        vel = anchor[..., VEL]
        if time_interval is not None:
            center = center - vel * time_interval.to(anchor.dtype)[:, None, None]
        center = torch.matmul(T[..., :3, :3], center[..., None]).squeeze(-1) + T[..., :3, 3]
        cos_sin = torch.matmul(T[..., :2, :2], anchor[..., [COS_YAW, SIN_YAW], None]).squeeze(-1)
        vel = torch.matmul(T[..., :3, :3], vel[..., None]).squeeze(-1)
        return torch.cat([center, anchor[..., LOG_SIZE], cos_sin[..., [1, 0]], vel], dim=-1)


class SparseBox3DEncoder(nn.Module):
    """Anchor embedding: four branches (position, log size, sin/cos, velocity) of 4 x LRL each, concatenated."""

    def __init__(self, embed_dims: Tuple[int, int, int, int] = (128, 32, 32, 64), vel_dims: int = 3,
                 in_loops: int = 1, out_loops: int = 4) -> None:
        super().__init__()
        pos, size, yaw, vel = embed_dims
        self.pos_fc = nn.Sequential(*linear_relu_ln(pos, in_loops, out_loops, 3))
        self.size_fc = nn.Sequential(*linear_relu_ln(size, in_loops, out_loops, 3))
        self.yaw_fc = nn.Sequential(*linear_relu_ln(yaw, in_loops, out_loops, 2))
        self.vel_fc = nn.Sequential(*linear_relu_ln(vel, in_loops, out_loops, vel_dims))
        self.vel_dims = vel_dims

    def forward(self, box: Tensor) -> Tensor:
        """[..., 11] -> [..., sum(embed_dims)]."""
        return torch.cat([
            self.pos_fc(box[..., :3]),
            self.size_fc(box[..., LOG_SIZE]),
            self.yaw_fc(box[..., SIN_YAW:COS_YAW + 1]),
            self.vel_fc(box[..., VEL.start:VEL.start + self.vel_dims]),
        ], dim=-1)


class SparseBox3DRefinementModule(nn.Module):
    """Residual box refinement + classification + quality (centerness, yawness) (docs/model-notes.md#box-refinement)."""

    def __init__(self, embed_dims: int = 256, num_cls: int = 10, output_dim: int = BOX_DIMS) -> None:
        super().__init__()
        self.output_dim = output_dim
        self.layers = nn.Sequential(*linear_relu_ln(embed_dims, 2, 2), nn.Linear(embed_dims, output_dim),
                                    Scale(output_dim))
        self.cls_layers = nn.Sequential(*linear_relu_ln(embed_dims, 1, 2), nn.Linear(embed_dims, num_cls))
        self.quality_layers = nn.Sequential(*linear_relu_ln(embed_dims, 1, 2), nn.Linear(embed_dims, 2))

    def forward(self, instance_feature: Tensor, anchor: Tensor, anchor_embed: Tensor,
                time_interval: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """features [B, N, C], anchor [B, N, 11], time_interval [B] seconds.

        Returns refined anchor [B, N, 11], class logits [B, N, num_cls] (from the feature only),
        quality logits [B, N, 2] (from feature + embedding).
        """
        feature = instance_feature + anchor_embed
        delta = self.layers(feature)
        # sin/cos are refined residually and deliberately not re-normalised (as the original).
        state = delta[..., :VEL.start] + anchor[..., :VEL.start]
        # The network predicts a displacement over the frame interval.
        velocity = delta[..., VEL] / time_interval.to(delta.dtype)[:, None, None] + anchor[..., VEL]
        refined = torch.cat([state, velocity], dim=-1)
        return refined, self.cls_layers(instance_feature), self.quality_layers(feature)


@dataclass
class BoxDetections:
    """Top-k detections of one frame, batch first, sorted by ``scores`` (descending)."""

    boxes: Tensor         # [B, K, 10] x, y, z, l, w, h, yaw, vx, vy, vz (lidar frame)
    scores: Tensor        # [B, K] sigmoid(max class logit) * sigmoid(centerness)
    labels: Tensor        # [B, K] int64 class index (DET_CLASS_NAMES)
    cls_scores: Tensor    # [B, K] sigmoid(max class logit) of the same detection (aligned with boxes)
    instance_ids: Tensor  # [B, K] int64 tracking ids
    index: Tensor         # [B, K] int64 position of each detection among the N decoder instances


class SparseBox3DDecoder:
    """Top-k by max-class score, re-scored by centerness and re-sorted; no NMS, no threshold
    (docs/model-notes.md#post-processing)."""

    def __init__(self, num_output: int = 300) -> None:
        self.num_output = num_output

    def decode(self, cls_logits: Tensor, boxes: Tensor, quality: Tensor, instance_id: Tensor) -> BoxDetections:
        """Last-layer cls_logits [B, N, C], boxes [B, N, 11], quality [B, N, 2], instance_id [B, N]."""
        cls_scores, labels = cls_logits.sigmoid().max(dim=-1)  # [B, N]
        top_scores, index = cls_scores.topk(self.num_output, dim=1)
        centerness = torch.gather(quality[..., CNS], 1, index).sigmoid()
        scores, order = torch.sort(top_scores * centerness, dim=1, descending=True)
        index = torch.gather(index, 1, order)
        return BoxDetections(
            boxes=decode_box(_gather_rows(boxes, index)),
            scores=scores,
            labels=torch.gather(labels, 1, index),
            cls_scores=torch.gather(top_scores, 1, order),
            instance_ids=torch.gather(instance_id, 1, index),
            index=index,
        )


def _gather_rows(x: Tensor, index: Tensor) -> Tensor:
    """x [B, N, ...], index [B, K] -> [B, K, ...]."""
    return x[torch.arange(x.shape[0], device=x.device)[:, None], index]
