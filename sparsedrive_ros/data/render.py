"""Flat-shaded rasteriser for the synthetic world: projected convex polygons, painter's order (cv2).

Each object is one flat colour so that tests can check projections pixel-wise. Cost: a few ms per 1600x900
camera frame (the JPEG encode dominates).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
from numpy.typing import NDArray

from sparsedrive_ros.data.synthetic_world import BOX_FACES, ROAD_HALF_WIDTH, SIDEWALK_WIDTH, Road, World
from sparsedrive_ros.geometry import invert_transform
from sparsedrive_ros.geometry.shapes import box_corners

F64 = NDArray[np.float64]
NEAR_M = 0.3
MAX_RANGE_M = 150.0
SUBPIXEL_SHIFT = 3
SKY_BGR = (228, 214, 196)
GROUND_BGR = (104, 112, 108)
ASPHALT_BGR = (72, 72, 72)
SIDEWALK_BGR = (150, 150, 146)
WHITE_BGR = (235, 235, 235)
YELLOW_BGR = (40, 190, 225)


@dataclass(frozen=True)
class CameraModel:
    intrinsic: F64  # [3, 3] for (width, height)
    cam_to_ego: F64  # [4, 4] optical frame -> base_link
    width: int
    height: int


@dataclass(frozen=True)
class StaticScene:
    """Ground-level quads in global coordinates, already in drawing order."""

    quads: F64  # [P, 4, 3]
    colors: NDArray[np.uint8]  # [P, 3] BGR


def _strip(road: Road, s_lo: float, s_hi: float, d_lo: float, d_hi: float, step: float) -> F64:
    s = np.arange(s_lo, s_hi, step)
    s_next = np.minimum(s + step, s_hi)
    quads = np.stack([road.point(s, d_lo), road.point(s_next, d_lo), road.point(s_next, d_hi), road.point(s, d_hi)], 1)
    return np.concatenate([quads, np.zeros(quads.shape[:2] + (1,))], axis=2)  # [P, 4, 3], z = 0


def build_static_scene(road: Road, s_lo: float, s_hi: float, crossings: list[tuple[float, float]]) -> StaticScene:
    """Road surface, sidewalks, lane markings and zebra crossings between arc lengths s_lo..s_hi."""
    half, walk = ROAD_HALF_WIDTH, ROAD_HALF_WIDTH + SIDEWALK_WIDTH
    layers: list[tuple[F64, tuple[int, int, int]]] = [
        (_strip(road, s_lo, s_hi, -walk, -half, 2.0), SIDEWALK_BGR),
        (_strip(road, s_lo, s_hi, half, walk, 2.0), SIDEWALK_BGR),
        (_strip(road, s_lo, s_hi, -half, half, 2.0), ASPHALT_BGR),
    ]
    for d in (-half + 0.25, half - 0.25):  # solid edge lines
        layers.append((_strip(road, s_lo, s_hi, d - 0.075, d + 0.075, 2.0), WHITE_BGR))
    for d in (-0.12, 0.12):  # double yellow centre line (road divider)
        layers.append((_strip(road, s_lo, s_hi, d - 0.05, d + 0.05, 2.0), YELLOW_BGR))
    for d in (-3.5, 3.5):  # dashed lane dividers: 3 m dash every 9 m
        dashes = [_strip(road, s, s + 3.0, d - 0.075, d + 0.075, 3.0) for s in np.arange(s_lo, s_hi - 3.0, 9.0)]
        layers.append((np.concatenate(dashes), WHITE_BGR))
    for s_start, length in crossings:  # zebra stripes across the road
        stripes = [
            _strip(road, s_start, s_start + length, d, d + 0.5, length) for d in np.arange(-half + 0.5, half - 0.5, 1.0)
        ]
        layers.append((np.concatenate(stripes), WHITE_BGR))
    quads = np.concatenate([q for q, _ in layers])
    colors = np.concatenate([np.tile(np.asarray(c, np.uint8), (len(q), 1)) for q, c in layers])
    return StaticScene(quads, colors)


def _clip_near(poly: F64) -> F64:
    """Sutherland-Hodgman clip of a camera-frame polygon [N, 3] to z >= NEAR_M."""
    out = []
    n = len(poly)
    for i in range(n):
        a, b = poly[i], poly[(i + 1) % n]
        a_in, b_in = a[2] >= NEAR_M, b[2] >= NEAR_M
        if a_in:
            out.append(a)
        if a_in != b_in:
            t = (NEAR_M - a[2]) / (b[2] - a[2])
            out.append(a + t * (b - a))
    return np.asarray(out).reshape(-1, 3)


def _draw_polygons(image: NDArray[np.uint8], cam_polys: F64, colors: NDArray[np.uint8], k: F64) -> None:
    """Fill camera-frame polygons [P, V, 3] in order (painter's algorithm)."""
    if len(cam_polys) == 0:
        return
    z = cam_polys[..., 2]
    keep = z.max(axis=1) >= NEAR_M
    cam_polys, z = cam_polys[keep], z[keep]
    color_list = colors[keep].tolist()
    h, w = image.shape[:2]
    scale = float(1 << SUBPIXEL_SHIFT)
    needs_clip = z.min(axis=1) < NEAR_M
    # Project everything at once; polygons crossing the near plane are redone after clipping.
    uv = (cam_polys[..., :2] / np.maximum(z, NEAR_M)[..., None]) @ k[:2, :2].T + k[:2, 2]
    lo, hi = uv.min(axis=1), uv.max(axis=1)
    inside = (hi[:, 0] >= 0) & (hi[:, 1] >= 0) & (lo[:, 0] < w) & (lo[:, 1] < h)
    pts_all = np.round(np.clip(uv, -1e5, 1e5) * scale).astype(np.int32)
    for i in np.flatnonzero(inside | needs_clip):
        pts = pts_all[i]
        if needs_clip[i]:
            poly = _clip_near(cam_polys[i])
            if len(poly) < 3:
                continue
            uv_i = (poly[:, :2] / poly[:, 2:3]) @ k[:2, :2].T + k[:2, 2]
            if uv_i[:, 0].max() < 0 or uv_i[:, 1].max() < 0 or uv_i[:, 0].min() >= w or uv_i[:, 1].min() >= h:
                continue
            pts = np.round(np.clip(uv_i, -1e5, 1e5) * scale).astype(np.int32)
        # Pixel centres sit at integer coordinates in cv2 and in the pinhole model alike.
        cv2.fillConvexPoly(image, pts, color_list[i], lineType=cv2.LINE_8, shift=SUBPIXEL_SHIFT)


@lru_cache(maxsize=4)
def _sky(height: int, width: int) -> NDArray[np.uint8]:
    # cv2.merge of constant planes: numpy's broadcast fill of a 3-channel image is ~15x slower.
    return np.asarray(cv2.merge([np.full((height, width), c, np.uint8) for c in SKY_BGR]), np.uint8)


def render_camera(world: World, static: StaticScene, camera: CameraModel, t_us: int
) -> NDArray[np.uint8]:
    """[H, W, 3] BGR image of ``camera`` at time ``t_us`` (ego and objects posed at t_us)."""
    cam_to_global = world.ego_to_global(t_us) @ camera.cam_to_ego
    to_cam = invert_transform(cam_to_global)
    image = _sky(camera.height, camera.width).copy()
    origin = cam_to_global[:3, 3]
    ground = np.array([[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]], dtype=np.float64) * [400, 400, 0]
    ground[:, :2] += origin[:2]
    near = np.linalg.norm(static.quads[:, 0, :2] - origin[:2], axis=1) < MAX_RANGE_M
    polys = np.concatenate([ground[None], static.quads[near]])
    colors = np.concatenate([np.asarray([GROUND_BGR], np.uint8), static.colors[near]])
    _draw_polygons(image, polys @ to_cam[:3, :3].T + to_cam[:3, 3], colors, camera.intrinsic)

    boxes, box_colors, dists = [], [], []
    for obj in world.objects:
        centre, yaw = world.object_pose(obj, t_us)
        dist = float(np.linalg.norm(centre[:2] - origin[:2]))
        if dist > MAX_RANGE_M:
            continue
        boxes.append(
            box_corners(centre, (obj.size_wlh[1], obj.size_wlh[0], obj.size_wlh[2]), yaw)[BOX_FACES]
        )  # [6, 4, 3]
        box_colors.append(obj.color_bgr)
        dists.append(dist)
    for i in np.argsort(dists)[::-1]:  # far to near
        faces = boxes[i] @ to_cam[:3, :3].T + to_cam[:3, 3]
        _draw_polygons(image, faces, np.tile(np.asarray(box_colors[i], np.uint8), (6, 1)), camera.intrinsic)
    return image
