"""The learned deformable-aggregation layer (``DeformableFeatureAggregation``, an ``nn.Module``): key points,
camera embedding, per-sample weights and the output projection (docs/model-notes.md#deformable-aggregation).
The parameter-free sampling op it calls lives in :mod:`sparsedrive_ros.model.deformable_op`.

Feature maps stay a per-level list ``[B, N_cam, C, H_l, W_l]`` (no packed (B, 89760, C) format,
docs/model-notes.md#deformable-aggregation);
the sampling itself is :func:`sparsedrive_ros.model.deformable_op.deformable_aggregation`.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .box3d import SparseBox3DKeyPointsGenerator
from .deformable_op import deformable_aggregation
from .layers import linear_relu_ln
from .point3d import SparsePoint3DKeyPointsGenerator

__all__ = ["DeformableFeatureAggregation", "project_points"]

KeyPointsGenerator = Union[SparseBox3DKeyPointsGenerator, SparsePoint3DKeyPointsGenerator]


def project_points(key_points: Tensor, projection_mat: Tensor, image_wh: Tensor) -> Tensor:
    """Lidar-frame key points -> normalised image coordinates per camera.

    Args:
        key_points: [B, N, P, 3] lidar frame.
        projection_mat: [B, N_cam, 4, 4] lidar -> image pixels of the network input.
        image_wh: [B, N_cam, 2] (W, H) of the network input.

    Returns:
        [B, N_cam, N, P, 2] (u / W, v / H); depth clamped at 1e-5 so points behind a camera land far outside.
    """
    batch, num_anchor, num_pts = key_points.shape[:3]
    homogeneous = torch.cat([key_points, torch.ones_like(key_points[..., :1])], dim=-1).flatten(1, 2)
    # One batched GEMM per camera instead of N*P tiny 4x4 products: [B, 1, N*P, 4] @ [B, cam, 4, 3].
    points = torch.matmul(homogeneous[:, None], projection_mat[:, :, :3].transpose(-1, -2))
    points = points.unflatten(2, (num_anchor, num_pts))  # [B, cam, N, P, 3]
    points = points[..., :2] / torch.clamp(points[..., 2:3], min=1e-5)
    return points / image_wh[:, :, None, None]


class DeformableFeatureAggregation(nn.Module):
    """Key points -> per-camera projections -> weighted bilinear sampling -> output_proj, ``cat`` residual."""

    def __init__(self, kps_generator: KeyPointsGenerator, embed_dims: int = 256, num_groups: int = 8,
                 num_levels: int = 4, num_cams: int = 6, attn_drop: float = 0.15) -> None:
        super().__init__()
        self.embed_dims = embed_dims
        self.num_groups = num_groups
        self.num_levels = num_levels
        self.num_cams = num_cams
        self.attn_drop = attn_drop
        self.kps_generator = kps_generator
        self.num_pts = kps_generator.num_pts
        self.output_proj = nn.Linear(embed_dims, embed_dims)
        self.camera_encoder = nn.Sequential(*linear_relu_ln(embed_dims, 1, 2, 12))
        self.weights_fc = nn.Linear(embed_dims, num_groups * num_levels * self.num_pts)

    def forward(self, instance_feature: Tensor, anchor: Tensor, anchor_embed: Tensor,
                feature_maps: Sequence[Tensor], projection_mat: Tensor, image_wh: Tensor,
                aggregation: Optional[Callable[..., Tensor]] = None) -> Tensor:
        """instance_feature / anchor_embed [B, N, C], anchor [B, N, D], feature_maps L x [B, N_cam, C, h, w],
        projection_mat [B, N_cam, 4, 4], image_wh [B, N_cam, 2] -> [B, N, 2C] = cat(aggregated, feature).

        ``aggregation`` (feature_maps, points, weights) -> [B, N, C] defaults to the visible-sample op; the static
        path passes the fixed-shape dense one (docs/static-graph.md)."""
        key_points = self.kps_generator(anchor, instance_feature)  # [B, N, P, 3]
        weights = self._weights(instance_feature, anchor_embed, projection_mat)  # [B, N, cam, L, P, G]
        points = project_points(key_points, projection_mat, image_wh)  # [B, cam, N, P, 2]
        op = deformable_aggregation if aggregation is None else aggregation
        features = op(feature_maps, points, weights)  # [B, N, C]
        return torch.cat([self.output_proj(features), instance_feature], dim=-1)

    def _weights(self, instance_feature: Tensor, anchor_embed: Tensor, projection_mat: Tensor) -> Tensor:
        """One softmax per group over cameras x levels x points jointly (docs/model-notes.md#deformable-aggregation)
        -> [B, N, cam, L, P, G]."""
        batch, num_anchor = instance_feature.shape[:2]
        # The camera embedding reads the raw first three rows of the pixel-unit projection matrix.
        camera_embed = self.camera_encoder(projection_mat[:, :, :3].reshape(batch, self.num_cams, 12))
        # weights_fc is affine, so fc(f + e + cam) = fc(f + e) + W cam: N + cam rows instead of N x cam.
        logits = (self.weights_fc(instance_feature + anchor_embed)[:, :, None]
                  + F.linear(camera_embed, self.weights_fc.weight)[:, None])  # [B, N, cam, L*P*G]
        logits = logits.reshape(batch, num_anchor, -1, self.num_groups)
        weights = logits.softmax(dim=-2).reshape(
            batch, num_anchor, self.num_cams, self.num_levels, self.num_pts, self.num_groups)
        if self.training and self.attn_drop > 0:
            keep = torch.rand(batch, num_anchor, self.num_cams, 1, self.num_pts, 1,
                              device=weights.device, dtype=weights.dtype) > self.attn_drop
            weights = weights * keep.to(weights.dtype) / (1 - self.attn_drop)
        return weights
