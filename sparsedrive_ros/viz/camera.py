"""Outputs drawn into the camera images: 3-D boxes, forecasts and the ego plan projected with K and TF.

Plan and forecasts are planar (the model predicts xy): they are drawn on the ground, `ground_z` in the reference
frame (about -1.84 m below LIDAR_TOP on the nuScenes car), forecasts at the bottom of their object's box.
Segments are clipped at `near` metres in front of the camera before projection, so lines that pass behind the
camera are cut where they leave the view frustum's near plane instead of wrapping around.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import cv2
import numpy as np

from sparsedrive_ros.geometry.shapes import box_corners

from .draw import BOX_EDGES, GT_COLOR, GT_PATH_COLOR, PLAN_COLOR, detection_color, map_color, put_text, scale_color
from .scene import CameraView, FrameOutputs

NEAR_M = 0.2


def to_camera(points_ref: np.ndarray, view: CameraView) -> np.ndarray:
    """[N, 3] reference-frame points -> [N, 3] camera optical-frame points."""
    pts = np.asarray(points_ref, dtype=np.float64).reshape(-1, 3)
    return pts @ view.cam_from_ref[:3, :3].T + view.cam_from_ref[:3, 3]


def project(points_ref: np.ndarray, view: CameraView) -> Tuple[np.ndarray, np.ndarray]:
    """[N, 3] reference-frame points -> (uv [N, 2] pixels, depth [N] m along the optical axis).

    Points at or behind the camera get NaN pixels (check depth > 0 before use).
    """
    cam = to_camera(points_ref, view)
    depth = cam[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uvw = cam @ view.intrinsics.T
        uv = uvw[:, :2] / uvw[:, 2:3]
    uv[depth <= 0] = np.nan
    return uv, depth


def _clip_segment(a: np.ndarray, b: np.ndarray, near: float) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """Clips a camera-frame segment to z >= near; None if wholly behind."""
    if a[2] < near and b[2] < near:
        return None
    if a[2] < near:
        a = a + (b - a) * (near - a[2]) / (b[2] - a[2])
    elif b[2] < near:
        b = b + (a - b) * (near - b[2]) / (a[2] - b[2])
    return a, b


def draw_segments(image: np.ndarray, view: CameraView, points_ref: np.ndarray, pairs: Sequence[Tuple[int, int]],
                  color, thickness: int) -> int:
    """Draws reference-frame segments (index pairs into points_ref); returns how many were visible."""
    cam = to_camera(points_ref, view)
    drawn = 0
    height, width = image.shape[:2]
    for i, j in pairs:
        clipped = _clip_segment(cam[i], cam[j], NEAR_M)
        if clipped is None:
            continue
        uvw = np.stack(clipped) @ view.intrinsics.T
        uv = uvw[:, :2] / uvw[:, 2:3]
        # cv2 drawing coordinates must fit in int; clip far-off endpoints to a large box around the image.
        ok, p, q = cv2.clipLine((-width, -height, 3 * width, 3 * height),
                                tuple(np.round(uv[0]).astype(int).clip(-2**20, 2**20).tolist()),
                                tuple(np.round(uv[1]).astype(int).clip(-2**20, 2**20).tolist()))
        if ok:
            cv2.line(image, p, q, color, thickness, cv2.LINE_AA)
            drawn += 1
    return drawn


def _chain(n: int) -> Sequence[Tuple[int, int]]:
    return [(k, k + 1) for k in range(n - 1)]


def _on_ground(points: np.ndarray, z: float) -> np.ndarray:
    out = np.array(points, dtype=np.float64, copy=True)
    out[:, 2] = z
    return out


def render_camera_overlay(frame: FrameOutputs, view: CameraView, ground_z: float = -1.84,
                          min_forecast_confidence: float = 0.1, draw_map: bool = True) -> np.ndarray:
    """A copy of the camera image with the frame's outputs drawn in."""
    image = view.image.copy()
    gt = frame.ground_truth
    if gt is not None:  # thin near-white ground truth first, the class-coloured predictions over it
        for k in range(len(gt.boxes)):
            corners = box_corners(gt.boxes.centers[k], gt.boxes.sizes[k], gt.boxes.yaws[k])
            draw_segments(image, view, corners, BOX_EDGES, GT_COLOR, 1)
        if len(gt.ego_path):
            path = _on_ground(np.concatenate([np.zeros((1, 3)), gt.ego_path]), ground_z)
            draw_segments(image, view, path, _chain(len(path)), GT_PATH_COLOR, 1)
    if draw_map:
        for points, label in zip(frame.map.polylines, frame.map.labels):
            draw_segments(image, view, points, _chain(len(points)), scale_color(map_color(label), 0.8), 1)
    if frame.plan is not None:
        traj = _on_ground(np.concatenate([np.zeros((1, 3)), frame.plan.trajectory]), ground_z)
        draw_segments(image, view, traj, _chain(len(traj)), PLAN_COLOR, 3)
    boxes = frame.boxes
    bottoms: Dict[int, Tuple[np.ndarray, float]] = {}
    for k in range(len(boxes)):
        corners = box_corners(boxes.centers[k], boxes.sizes[k], boxes.yaws[k])
        color = detection_color(boxes.labels[k])
        if draw_segments(image, view, corners, BOX_EDGES, color, 2):
            uv, depth = project(corners[4:5], view)  # label at the top front-left corner
            if depth[0] > NEAR_M and np.all(np.isfinite(uv)):
                put_text(image, f"{int(boxes.ids[k])}", (uv[0, 0], uv[0, 1] - 4), color, 0.5)
        bottoms[int(boxes.ids[k])] = (boxes.centers[k], boxes.centers[k][2] - boxes.sizes[k][2] / 2)
    for fc in frame.forecasts:
        start, z = bottoms.get(int(fc.instance_id), (None, ground_z))
        for path, conf in zip(fc.paths, fc.confidences):
            if conf < min_forecast_confidence:
                continue
            points = path if start is None else np.concatenate([start[None], path])
            points = _on_ground(points, z)
            draw_segments(image, view, points, _chain(len(points)), scale_color(detection_color(fc.label), 0.9), 1)
    return image


# nuScenes devkit layout: front row left to right, back row seen from behind the car.
MOSAIC_LAYOUT = (("CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT"), ("CAM_BACK_LEFT", "CAM_BACK", "CAM_BACK_RIGHT"))


def camera_mosaic(images: Dict[str, np.ndarray], tile_size: Tuple[int, int] = (480, 270),
                  layout: Sequence[Sequence[str]] = MOSAIC_LAYOUT) -> np.ndarray:
    """Tiles camera images (missing ones black with their name) into one [rows*h, cols*w, 3] image."""
    tw, th = tile_size
    rows = []
    for names in layout:
        tiles = []
        for name in names:
            img = images.get(name)
            if img is None:
                tile = np.zeros((th, tw, 3), np.uint8)
                put_text(tile, f"{name}: no image", (8, 22), (160, 160, 160), 0.6)
            else:
                tile = np.asarray(cv2.resize(img, (tw, th), interpolation=cv2.INTER_AREA), np.uint8)
                put_text(tile, name, (8, 22), (255, 255, 255), 0.6)
            tiles.append(tile)
        rows.append(np.concatenate(tiles, axis=1))
    return np.concatenate(rows, axis=0)
