"""Polylines and boxes as point arrays (float64 numpy): the one implementation that data, metrics, training
targets and renderers share."""
from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["box_corners", "box_footprint", "resample_polyline"]

F64 = NDArray[np.float64]


def resample_polyline(points: ArrayLike, num: int) -> F64:
    """[P, 2] -> [num, 2] points spaced evenly along the arc length, both end points kept.

    A polyline of zero length (one point, or all points equal) becomes ``num`` copies of its first point. A
    closed polyline (first point == last point) stays exactly closed.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[0] < 1:
        raise ValueError(f"a polyline is a [P, D] array with P >= 1, got shape {pts.shape}")
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
    if arc[-1] <= 0.0:
        return np.repeat(pts[:1], num, axis=0)
    where = np.linspace(0.0, arc[-1], num)
    out = np.stack([np.interp(where, arc, pts[:, d]) for d in range(pts.shape[1])], axis=1)
    if np.array_equal(pts[0], pts[-1]):
        out[-1] = out[0]
    return out


def box_corners(center: ArrayLike, size: ArrayLike, yaw: float) -> F64:
    """[8, 3] corners of a box: ``size`` = (length along the heading, width, height), ``yaw`` about +z from +x.

    Bottom face 0-3 then top face 4-7, each going front-left, front-right, rear-right, rear-left; so 0-1 is
    the front edge and every face is a convex cycle.
    """
    length, width, height = (float(s) for s in np.asarray(size, dtype=np.float64).reshape(3))
    foot = box_footprint(0.0, 0.0, length, width, yaw)  # [4, 2]
    z = np.array([-0.5, 0.5]) * height
    corners = np.concatenate([np.column_stack([foot, np.full(4, z[0])]), np.column_stack([foot, np.full(4, z[1])])])
    return corners + np.asarray(center, dtype=np.float64)[None, :3]


def box_footprint(x: float, y: float, length: float, width: float, yaw: float) -> F64:
    """[4, 2] corners of a rotated rectangle centred at (x, y), in the order of :func:`box_corners`."""
    along = np.array([0.5, 0.5, -0.5, -0.5]) * length
    across = np.array([0.5, -0.5, -0.5, 0.5]) * width
    c, s = np.cos(yaw), np.sin(yaw)
    return np.stack([x + c * along - s * across, y + s * along + c * across], axis=1)
