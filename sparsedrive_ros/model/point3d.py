"""Polyline instances of the map head (docs/model-notes.md#map-instances, #post-processing).

Map anchor layout: 20 (x, y) points in metres in the lidar frame, flattened ``[x0, y0, x1, y1, ...]`` (40).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Tuple

import torch
from torch import Tensor, nn

from .layers import Scale, linear_relu_ln

__all__ = [
    "MapElements",
    "SparsePoint3DDecoder",
    "SparsePoint3DEncoder",
    "SparsePoint3DKeyPointsGenerator",
    "SparsePoint3DRefinementModule",
]


class SparsePoint3DKeyPointsGenerator(nn.Module):
    """Key points around a polyline: per point, heights x learnable (unbounded, metres) xy offsets.

    With ``num_learnable_pts == 0`` it is only the map bank's anchor handler (no parameters).
    """

    def __init__(self, embed_dims: int = 256, num_sample: int = 20, num_learnable_pts: int = 0,
                 fix_height: Sequence[float] = (0.0,), ground_height: float = 0.0) -> None:
        super().__init__()
        self.num_sample = num_sample
        self.num_learnable_pts = num_learnable_pts
        self.fix_height: Tuple[float, ...] = tuple(float(h) for h in fix_height)
        self.ground_height = float(ground_height)
        self.num_pts = num_sample * len(self.fix_height) * num_learnable_pts
        if num_learnable_pts > 0:
            self.learnable_fc = nn.Linear(embed_dims, self.num_pts * 2)

    def forward(self, anchor: Tensor, instance_feature: Tensor) -> Tensor:
        """anchor [B, N, 2*S], instance_feature [B, N, C] -> key points [B, N, S*heights*learnable, 3].

        Order of the flattened point axis: polyline point, height, learnable index.
        """
        if self.num_learnable_pts <= 0:
            raise ValueError("SparsePoint3DKeyPointsGenerator needs num_learnable_pts > 0 to make key points")
        batch, num_anchor = anchor.shape[:2]
        base = anchor.view(batch, num_anchor, self.num_sample, 1, 1, 2)
        offset = self.learnable_fc(instance_feature).view(
            batch, num_anchor, self.num_sample, len(self.fix_height), self.num_learnable_pts, 2)
        xy = offset + base
        heights = anchor.new_tensor(self.fix_height)[:, None].expand(-1, self.num_learnable_pts)
        z = (self.ground_height + heights).expand(xy.shape[:-1])  # ground + fixed height, like the original
        return torch.cat([xy, z[..., None]], dim=-1).flatten(2, 4)

    def anchor_projection(self, anchor: Tensor, T_src2dst: Tensor, time_interval: Tensor | None = None) -> Tensor:
        """2-D rigid transform of every polyline point (no time term): [B, N, 2*S] -> [B, N, 2*S]."""
        batch, num_anchor = anchor.shape[:2]
        T = T_src2dst.to(dtype=anchor.dtype)[:, None]  # [B, 1, 4, 4]
        points = anchor.reshape(batch, num_anchor * self.num_sample, 2)
        points = torch.matmul(T[..., :2, :2], points[..., None]).squeeze(-1) + T[..., :2, 3]
        return points.reshape(batch, num_anchor, -1)


class SparsePoint3DEncoder(nn.Module):
    """Polyline embedding: 2 x LRL on the flattened points (metres)."""

    def __init__(self, embed_dims: int = 256, num_sample: int = 20) -> None:
        super().__init__()
        self.pos_fc = nn.Sequential(*linear_relu_ln(embed_dims, 1, 2, num_sample * 2))

    def forward(self, anchor: Tensor) -> Tensor:
        """[..., 2*S] -> [..., C]."""
        return self.pos_fc(anchor)


class SparsePoint3DRefinementModule(nn.Module):
    """Residual refinement of all polyline coordinates + class logits from the feature only."""

    def __init__(self, embed_dims: int = 256, num_sample: int = 20, num_cls: int = 3) -> None:
        super().__init__()
        output_dim = num_sample * 2
        self.layers = nn.Sequential(*linear_relu_ln(embed_dims, 2, 2), nn.Linear(embed_dims, output_dim),
                                    Scale(output_dim))
        self.cls_layers = nn.Sequential(*linear_relu_ln(embed_dims, 1, 2), nn.Linear(embed_dims, num_cls))

    def forward(self, instance_feature: Tensor, anchor: Tensor, anchor_embed: Tensor,
                time_interval: Tensor) -> Tuple[Tensor, Tensor, None]:
        """Returns refined polylines [B, N, 2*S], class logits [B, N, num_cls], no quality."""
        refined = self.layers(instance_feature + anchor_embed) + anchor
        return refined, self.cls_layers(instance_feature), None


@dataclass
class MapElements:
    """Top-k (instance, class) pairs of the map head, batch first, sorted by score (descending)."""

    polylines: Tensor  # [B, K, S, 2] x, y in metres (lidar frame)
    scores: Tensor     # [B, K] sigmoid(class logit)
    labels: Tensor     # [B, K] int64 (MAP_CLASS_NAMES)
    index: Tensor      # [B, K] int64 instance position among the N map instances


class SparsePoint3DDecoder:
    """Top-k over all (instance, class) pairs; one instance may appear with two classes
    (docs/model-notes.md#post-processing)."""

    def __init__(self, num_output: int | None = None) -> None:
        self.num_output = num_output

    def decode(self, cls_logits: Tensor, polylines: Tensor) -> MapElements:
        """Last-layer cls_logits [B, N, C], polylines [B, N, 2*S]."""
        batch, num_pred, num_cls = cls_logits.shape
        k = num_pred if self.num_output is None else self.num_output
        scores, flat_index = cls_logits.sigmoid().flatten(1).topk(k, dim=1)
        index = torch.div(flat_index, num_cls, rounding_mode="floor")
        points = polylines.reshape(batch, num_pred, -1, 2)
        picked = points[torch.arange(batch, device=points.device)[:, None], index]
        return MapElements(polylines=picked, scores=scores, labels=flat_index % num_cls, index=index)
