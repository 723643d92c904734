"""Multi-camera, multi-level deformable feature aggregation (pure PyTorch).

Reproduces the semantics of SparseDrive's ``deformable_aggregation`` CUDA op (spec §4.14, §6.1, pitfall P12):

    out[b, a, c] = sum_{cam, l, p} w[b, a, cam, l, p, c // (C / G)]
                   * valid(u, v) * bilinear(F_{cam, l}[b, c], u * W_l - 0.5, v * H_l - 0.5)

with ``valid(u, v) = 0 < u < 1 and 0 < v < 1`` (strict, in normalised image coordinates), bilinear interpolation
with zero padding (corners outside the map contribute 0), i.e. grid_sample(align_corners=False, padding zeros)
*after* masking samples outside the open unit square.

NaN or infinite sample locations contribute nothing (the CUDA kernel leaves them undefined; points behind a
camera or degenerate projections produce them) and receive zero gradient.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["deformable_aggregation", "deformable_aggregation_reference", "valid_sample_mask"]


def valid_sample_mask(points: Tensor) -> Tensor:
    """[..., 2] normalised (u, v) -> [...] bool, True where 0 < u < 1 and 0 < v < 1 (False for NaN)."""
    u, v = points[..., 0], points[..., 1]
    return (u > 0) & (u < 1) & (v > 0) & (v < 1)


def _check_inputs(feature_maps: Sequence[Tensor], points: Tensor, weights: Tensor) -> tuple[int, int, int, int, int, int]:
    if len(feature_maps) == 0:
        raise ValueError("feature_maps must hold at least one level, got an empty sequence")
    first = feature_maps[0]
    if first.dim() != 5:
        raise ValueError(f"feature_maps[0] must be [B, N_cam, C, H, W], got shape {tuple(first.shape)}")
    batch, num_cams, channels = first.shape[:3]
    for level, fmap in enumerate(feature_maps):
        if fmap.dim() != 5 or tuple(fmap.shape[:3]) != (batch, num_cams, channels):
            raise ValueError(
                f"feature_maps[{level}] has shape {tuple(fmap.shape)}, expected [{batch}, {num_cams}, {channels}, H, W]"
            )
    if points.dim() != 5 or points.shape[-1] != 2 or tuple(points.shape[:2]) != (batch, num_cams):
        raise ValueError(f"points must be [B={batch}, N_cam={num_cams}, A, P, 2], got shape {tuple(points.shape)}")
    num_anchors, num_points = points.shape[2], points.shape[3]
    num_levels = len(feature_maps)
    if weights.dim() != 6 or tuple(weights.shape[:5]) != (batch, num_anchors, num_cams, num_levels, num_points):
        raise ValueError(
            f"weights must be [B={batch}, A={num_anchors}, N_cam={num_cams}, L={num_levels}, P={num_points}, G], "
            f"got shape {tuple(weights.shape)}"
        )
    groups = weights.shape[-1]
    if groups == 0 or channels % groups != 0:
        raise ValueError(f"channels C={channels} must be divisible by the number of groups G={groups}")
    return batch, num_cams, channels, num_anchors, num_points, groups


def _compute_dtype(feature_maps: Sequence[Tensor], points: Tensor, weights: Tensor) -> torch.dtype:
    dtype = torch.promote_types(points.dtype, weights.dtype)
    for fmap in feature_maps:
        dtype = torch.promote_types(dtype, fmap.dtype)
    if not dtype.is_floating_point:
        raise ValueError(f"deformable_aggregation needs floating-point inputs, got {dtype}")
    # The original op runs in float32 even under autocast; half types only widen to float32.
    if dtype in (torch.float16, torch.bfloat16):
        dtype = torch.float32
    return dtype


def deformable_aggregation_reference(feature_maps: Sequence[Tensor], points: Tensor, weights: Tensor) -> Tensor:
    """Straightforward grid_sample implementation (test oracle; materialises every sample).

    Args:
        feature_maps: L tensors ``[B, N_cam, C, H_l, W_l]``.
        points: ``[B, N_cam, A, P, 2]`` normalised (u, v) = (x / W_img, y / H_img).
        weights: ``[B, A, N_cam, L, P, G]`` (after softmax); group g covers channels [g*C/G, (g+1)*C/G).

    Returns:
        ``[B, A, C]``.
    """
    batch, num_cams, channels, num_anchors, num_points, groups = _check_inputs(feature_maps, points, weights)
    dtype = _compute_dtype(feature_maps, points, weights)
    points = points.to(dtype)
    weights = weights.to(dtype)
    valid = valid_sample_mask(points)  # [B, N_cam, A, P]
    # Invalid (incl. NaN) points are moved to a harmless location; their samples are zeroed by the mask below.
    safe_points = torch.where(valid[..., None], points, torch.full_like(points, 0.5))
    grid = (2 * safe_points - 1).flatten(0, 1)  # [B*N_cam, A, P, 2] in [-1, 1]
    mask = valid.to(dtype)[:, :, None]  # [B, N_cam, 1, A, P]
    out = points.new_zeros(batch, num_anchors, groups, channels // groups)
    for level, fmap in enumerate(feature_maps):
        flat = fmap.to(dtype).flatten(0, 1)  # [B*N_cam, C, H, W]
        sampled = F.grid_sample(flat, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        sampled = sampled.view(batch, num_cams, groups, channels // groups, num_anchors, num_points) * mask[:, :, None]
        level_weights = weights[:, :, :, level]  # [B, A, N_cam, P, G]
        out = out + torch.einsum("bngdap,banpg->bagd", sampled, level_weights)
    return out.reshape(batch, num_anchors, channels)


def deformable_aggregation(feature_maps: Sequence[Tensor], points: Tensor, weights: Tensor) -> Tensor:
    """Deformable aggregation with the CUDA op's semantics; see the module docstring and the reference."""
    return deformable_aggregation_reference(feature_maps, points, weights)
