"""Map-expansion helpers: polyline clipping, polygon-union boundaries (orientation, holes, cut edges)."""
import numpy as np
import pytest

from sparsedrive_ros.data import map_expansion as mx
from sparsedrive_ros.data.map_expansion import MapRoi, clip_polyline, polygon_union_lines, signed_area
from sparsedrive_ros.geometry.shapes import resample_polyline


def test_clip_polyline_splits_and_cuts():
    line = np.array([[-20.0, 0.0], [0.0, 0.0], [0.0, 40.0], [5.0, 40.0], [5.0, 10.0]])
    pieces = clip_polyline(line, 15.0, 30.0)
    assert len(pieces) == 2
    np.testing.assert_allclose(pieces[0], [[-15, 0], [0, 0], [0, 30]])
    np.testing.assert_allclose(pieces[1], [[5, 30], [5, 10]])
    assert clip_polyline(np.array([[20.0, 0.0], [25.0, 1.0]]), 15.0, 30.0) == []


def _rect(x0, y0, x1, y1):
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=float)


@pytest.mark.parametrize("use_shapely", [False, True])
def test_union_boundary_of_adjacent_rectangles(use_shapely):
    if use_shapely and not mx.HAVE_SHAPELY:
        pytest.skip("shapely not installed (optional)")
    # Two abutting road pieces (shared edge must vanish) with a hole; the road leaves the ROI top and bottom.
    polys = [(_rect(-7, -40, 7, 0), [_rect(-2, -10, 2, -5)]), (_rect(-7, 0, 7, 40), [])]
    lines = polygon_union_lines(polys, MapRoi(), use_shapely=use_shapely)
    assert len(lines) == 3  # left edge, right edge, hole ring
    hole = [ln for ln in lines if np.abs(ln[:, 0]).max() < 3][0]
    edges = [ln for ln in lines if np.abs(ln[:, 0]).max() > 3]
    tol = 0.06 if not use_shapely else 1e-9
    for edge in edges:
        np.testing.assert_allclose(np.abs(edge[:, 0]), 7.0, atol=tol)
        assert np.abs(edge[:, 1]).max() <= 29.8 + 1e-9 and np.ptp(edge[:, 1]) > 59.0
    # Exterior clockwise: the right edge (x = +7) runs towards -y; the hole is counter-clockwise.
    right = [e for e in edges if e[0, 0] > 0][0]
    assert right[-1, 1] < right[0, 1]
    np.testing.assert_allclose(hole[0], hole[-1])
    assert signed_area(hole[:-1]) > 0
    assert abs(abs(signed_area(hole[:-1])) - 20.0) < (1.5 if not use_shapely else 1e-9)  # raster: 18 m x ~5 cm


def test_union_orientation_inside_roi():
    lines = polygon_union_lines([(_rect(-3, -3, 3, 3)[::-1], [])], MapRoi())
    (ring,) = lines
    assert signed_area(ring[:-1]) < 0  # exteriors are clockwise whatever the input orientation
    assert abs(abs(signed_area(ring[:-1])) - 36.0) < 1.0


def test_resample_polyline():
    out = resample_polyline(np.array([[0.0, 0.0], [0.0, 10.0], [10.0, 10.0]]), 21)
    assert out.shape == (21, 2)
    np.testing.assert_allclose(out[10], [0.0, 10.0])
    np.testing.assert_allclose(np.linalg.norm(np.diff(out, axis=0), axis=1), 1.0)
