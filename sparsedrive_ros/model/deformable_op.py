"""The deformable-aggregation op: parameter-free weighted sampling of multi-camera, multi-level feature maps
(pure PyTorch; the learned layer around it is :mod:`sparsedrive_ros.model.deformable_layer`).

Reproduces the semantics of SparseDrive's ``deformable_aggregation`` CUDA op
(docs/model-notes.md#deformable-aggregation):

    out[b, a, c] = sum_{cam, l, p} w[b, a, cam, l, p, c // (C / G)]
                   * valid(u, v) * bilinear(F_{cam, l}[b, c], u * W_l - 0.5, v * H_l - 0.5)

with ``valid(u, v) = 0 < u < 1 and 0 < v < 1`` (strict, in normalised image coordinates), bilinear interpolation
with zero padding (corners outside the map contribute 0), i.e. grid_sample(align_corners=False, padding zeros)
*after* masking samples outside the open unit square.

NaN or infinite sample locations contribute nothing (the CUDA kernel leaves them undefined; points behind a
camera or degenerate projections produce them) and receive zero gradient.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "channels_last_feature_maps",
    "deformable_aggregation",
    "deformable_aggregation_reference",
    "valid_sample_mask",
]


def valid_sample_mask(points: Tensor) -> Tensor:
    """[..., 2] normalised (u, v) -> [...] bool, True where 0 < u < 1 and 0 < v < 1 (False for NaN)."""
    u, v = points[..., 0], points[..., 1]
    return (u > 0) & (u < 1) & (v > 0) & (v < 1)


def _check_inputs(
    feature_maps: Sequence[Tensor], points: Tensor, weights: Tensor
) -> tuple[int, int, int, int, int, int]:
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



# Visible samples per chunk of the fast path: bounds the per-level index/weight lists (G x chunk x 4 entries).
DEFAULT_CHUNK_SIZE = 65536


def channels_last_feature_maps(feature_maps: Sequence[Tensor]) -> list[Tensor]:
    """Return the maps with the same logical shape [B, N_cam, C, H, W] but channels innermost in memory.

    The fast path gathers rows of a channels-last table; with maps already in this layout the table is a free
    view instead of a copy per call. Call it once per frame and pass the result to every aggregation layer.
    """
    return [fmap.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3) for fmap in feature_maps]


def _group_table(fmap: Tensor, groups: int, dtype: torch.dtype) -> Tensor:
    """[B, N_cam, C, H, W] -> [B*N_cam*H*W*G, C/G]: row r*G + g holds group g of pixel r (a view if channels-last)."""
    return fmap.to(dtype).permute(0, 1, 3, 4, 2).reshape(-1, fmap.shape[2] // groups)


def _bilinear_corners(points: Tensor, row_base: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
    """Corner pixels and bilinear weights of K samples on one level.

    Args:
        points: [K, 2] normalised (u, v), all strictly inside (0, 1).
        row_base: [K] first pixel of the sample's (batch, camera) map in the flattened level.

    Returns:
        rows [K, 4] int64 pixel rows (clamped in range), coef [K, 4] bilinear weights (0 for corners off the map).
    """
    x = points[:, 0] * width - 0.5  # pixel centres at integers, as grid_sample(align_corners=False)
    y = points[:, 1] * height - 0.5
    x0 = torch.floor(x).detach()
    y0 = torch.floor(y).detach()
    fx, fy = x - x0, y - y0
    xs = torch.stack([x0, x0 + 1, x0, x0 + 1], dim=-1)
    ys = torch.stack([y0, y0, y0 + 1, y0 + 1], dim=-1)
    coef = torch.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy], dim=-1)
    on_map = (xs >= 0) & (xs <= width - 1) & (ys >= 0) & (ys <= height - 1)
    rows = row_base[:, None] + ys.clamp(0, height - 1).long() * width + xs.clamp(0, width - 1).long()
    return rows, coef * on_map.to(coef.dtype)


def _aggregate_chunk(
    tables: list[Tensor],
    level_shapes: list[tuple[int, int]],
    points: Tensor,
    weights: Tensor,
    camera_index: Tensor,
    out_row: Tensor,
    num_rows: int,
) -> Tensor:
    """Weighted bilinear sums of K visible samples, grouped into their output rows.

    Each (group, output row) is one bag of F.embedding_bag: its entries are the 4 corners of every sample of that
    row, weighted by bilinear x group weight, read from the grouped table. Samples arrive sorted by output row,
    so with bags ordered group-major every bag is a contiguous run and no sort or scatter is needed.

    Args:
        tables: per level [B*N_cam*H*W*G, C/G] (see _group_table).
        points: [K, 2] normalised (u, v); weights: [K, L, G]; camera_index: [K] = b * N_cam + cam;
        out_row: [K] non-decreasing = b * A + a; num_rows: B * A.

    Returns:
        [G, num_rows, C/G].
    """
    num_samples, _, groups = weights.shape
    counts = torch.bincount(out_row, minlength=num_rows)  # [B*A]
    row_start = torch.cumsum(counts, dim=0) - counts
    group_ids = torch.arange(groups, device=points.device)
    offsets = ((group_ids[:, None] * num_samples + row_start[None]) * 4).reshape(-1)  # bag (g, row)
    total: Optional[Tensor] = None
    for level, (table, (height, width)) in enumerate(zip(tables, level_shapes)):
        pixels, coef = _bilinear_corners(points, camera_index * (height * width), height, width)  # [K, 4]
        entries = (pixels[None] * groups + group_ids[:, None, None]).reshape(-1)  # [G*K*4]
        entry_weights = (coef[None] * weights[:, level].T[..., None]).reshape(-1)  # [G*K*4]
        summed = F.embedding_bag(entries, table, offsets, mode="sum", per_sample_weights=entry_weights)
        total = summed if total is None else total + summed
    if total is None:
        raise ValueError("deformable aggregation needs at least one feature level")
    return total.view(groups, num_rows, -1)


def deformable_aggregation(
    feature_maps: Sequence[Tensor],
    points: Tensor,
    weights: Tensor,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> Tensor:
    """Deformable aggregation with the CUDA op's semantics, computed only on visible samples.

    A 3-D key point is visible (0 < u < 1, 0 < v < 1) in one or two of the six cameras, so only the valid
    (instance, camera, point) triples are used: per level, their 4 corner pixels, weighted by bilinear x group
    weight, are summed per (instance, group) by F.embedding_bag straight from channels-last feature rows. Work
    and memory scale with the number of visible samples, never with A x N_cam x L x P x C, and autograd saves only
    index and weight lists (no gathered features).

    Args:
        feature_maps: L tensors ``[B, N_cam, C, H_l, W_l]`` (any layout; channels-last avoids a copy per call,
            see :func:`channels_last_feature_maps`).
        points: ``[B, N_cam, A, P, 2]`` normalised (u, v) = (x / W_img, y / H_img). A sample counts only if
            0 < u < 1 and 0 < v < 1; NaN/inf points contribute 0 and get zero gradient.
        weights: ``[B, A, N_cam, L, P, G]`` after softmax; group g covers channels [g*C/G, (g+1)*C/G).
        chunk_size: visible samples processed at once (bounds temporary memory).

    Returns:
        ``[B, A, C]`` in the promoted dtype of the inputs (float16/bfloat16 are computed in float32, like the
        original op). Differentiable w.r.t. feature maps, points and weights. No atomics in the forward pass, so
        results are run-to-run identical on CPU and CUDA.

    >>> maps = [torch.randn(1, 6, 256, 64, 176), torch.randn(1, 6, 256, 32, 88)]
    >>> out = deformable_aggregation(maps, torch.rand(1, 6, 900, 13, 2), torch.rand(1, 900, 6, 2, 13, 8))
    >>> tuple(out.shape)
    (1, 900, 256)
    """
    batch, num_cams, channels, num_anchors, num_points, groups = _check_inputs(feature_maps, points, weights)
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    dtype = _compute_dtype(feature_maps, points, weights)
    # Visible samples in (b, a, cam, p) order: the samples of one instance are adjacent.
    valid = valid_sample_mask(points).permute(0, 2, 1, 3)  # [B, A, N_cam, P]
    b_idx, a_idx, cam_idx, p_idx = valid.nonzero(as_tuple=True)
    sample_points = points.to(dtype)[b_idx, cam_idx, a_idx, p_idx]  # [K, 2]
    sample_weights = weights.to(dtype)[b_idx, a_idx, cam_idx, :, p_idx]  # [K, L, G]
    camera_index = b_idx * num_cams + cam_idx  # [K]
    out_row = b_idx * num_anchors + a_idx  # [K], non-decreasing
    tables = [_group_table(fmap, groups, dtype) for fmap in feature_maps]
    level_shapes = [(int(fmap.shape[3]), int(fmap.shape[4])) for fmap in feature_maps]
    num_rows = batch * num_anchors
    out = sample_points.new_zeros(groups, num_rows, channels // groups)
    with torch.autocast(points.device.type, enabled=False):  # the original op always runs in float32 or wider
        for start in range(0, sample_points.shape[0], chunk_size):
            chunk = slice(start, start + chunk_size)
            out = out + _aggregate_chunk(
                tables, level_shapes, sample_points[chunk], sample_weights[chunk], camera_index[chunk],
                out_row[chunk], num_rows,
            )
    # [G, B*A, C/G] -> [B, A, C]
    return out.permute(1, 0, 2).reshape(batch, num_anchors, channels)
