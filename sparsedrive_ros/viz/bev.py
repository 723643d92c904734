"""Bird's-eye view of one frame: map polylines by class, boxes with ids, forecasts, ego plan and candidates.

Image axes: forward (+y of LIDAR_TOP) is up, right (+x) is right, the ego at the image centre unless the view
ranges say otherwise.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import cv2
import numpy as np

from sparsedrive_ros.geometry.shapes import box_corners

from .draw import (
    CANDIDATE_COLOR,
    EGO_COLOR,
    EGO_SIZE_LW,
    GT_COLOR,
    GT_PATH_COLOR,
    PLAN_COLOR,
    darken,
    detection_color,
    fit_text,
    map_color,
    put_text,
    scale_color,
    text_width,
)
from .scene import FrameOutputs


@dataclass(frozen=True)
class BevView:
    """Which part of the reference frame's xy plane the image shows, at how many pixels per metre."""

    x_range: Tuple[float, float] = (-30.0, 30.0)  # m, right
    y_range: Tuple[float, float] = (-30.0, 30.0)  # m, forward
    pixels_per_meter: float = 10.0
    min_forecast_confidence: float = 0.1  # modes below are not drawn
    ring_spacing: float = 10.0  # m between range rings

    def __post_init__(self):
        if not (self.x_range[0] < self.x_range[1] and self.y_range[0] < self.y_range[1]):
            raise ValueError(f"BEV ranges must be increasing, got x {self.x_range}, y {self.y_range}")
        if self.pixels_per_meter <= 0:
            raise ValueError(f"pixels_per_meter must be positive, got {self.pixels_per_meter}")

    @property
    def size(self) -> Tuple[int, int]:
        """(width, height) in pixels."""
        return (int(round((self.x_range[1] - self.x_range[0]) * self.pixels_per_meter)),
                int(round((self.y_range[1] - self.y_range[0]) * self.pixels_per_meter)))

    def to_pixels(self, xy: np.ndarray) -> np.ndarray:
        """[N, >=2] reference-frame points (m) -> [N, 2] float pixel coordinates (u right, v down)."""
        xy = np.asarray(xy, dtype=np.float64)
        u = (xy[:, 0] - self.x_range[0]) * self.pixels_per_meter
        v = (self.y_range[1] - xy[:, 1]) * self.pixels_per_meter
        return np.stack([u, v], axis=1)


def _poly(image: np.ndarray, view: BevView, points: np.ndarray, color, thickness: int, closed: bool = False) -> None:
    if len(points) < 2:
        return
    pix = np.round(view.to_pixels(points) * 8).astype(np.int32)  # 3 fractional bits: sub-pixel accuracy
    cv2.polylines(image, [pix], closed, color, thickness, cv2.LINE_AA, shift=3)


def _draw_grid(image: np.ndarray, view: BevView) -> None:
    centre = view.to_pixels(np.zeros((1, 2)))[0]
    reach = max(abs(v) for v in (*view.x_range, *view.y_range)) * 1.5
    for r in np.arange(view.ring_spacing, reach, view.ring_spacing):
        cv2.circle(image, (int(round(centre[0])), int(round(centre[1]))), int(round(r * view.pixels_per_meter)),
                   (55, 55, 60), 1, cv2.LINE_AA)


def _draw_ego(image: np.ndarray, view: BevView) -> None:
    length, width = EGO_SIZE_LW
    corners = box_corners((0.0, 0.0, 0.0), (length, width, 1.5), np.pi / 2)[:4]  # heading +y
    _poly(image, view, corners, EGO_COLOR, 2, closed=True)


def _draw_map(image: np.ndarray, view: BevView, frame: FrameOutputs) -> None:
    for points, label, score in zip(frame.map.polylines, frame.map.labels, frame.map.scores):
        _poly(image, view, points, scale_color(map_color(label), 0.4 + 0.6 * float(score)), 2)


def _draw_boxes(image: np.ndarray, view: BevView, frame: FrameOutputs) -> None:
    b = frame.boxes
    for k in range(len(b)):
        corners = box_corners(b.centers[k], b.sizes[k], b.yaws[k])[:4]
        color = detection_color(b.labels[k])
        _poly(image, view, corners, color, 2, closed=True)
        front = (corners[0] + corners[1]) / 2
        _poly(image, view, np.stack([b.centers[k], front]), color, 1)  # heading tick
        u, v = view.to_pixels(b.centers[k][None])[0]
        put_text(image, str(int(b.ids[k])), (u + 4, v - 4), color, 0.35)


def _draw_forecasts(image: np.ndarray, view: BevView, frame: FrameOutputs) -> None:
    centers = {int(i): c for i, c in zip(frame.boxes.ids, frame.boxes.centers)}
    for fc in frame.forecasts:
        color = detection_color(fc.label)
        start = centers.get(int(fc.instance_id))
        for path, conf in zip(fc.paths, fc.confidences):
            if conf < view.min_forecast_confidence:
                continue
            points = path if start is None else np.concatenate([start[None], path])
            _poly(image, view, points, scale_color(color, 0.5 + 0.5 * float(conf)), 1)


def _draw_plan(image: np.ndarray, view: BevView, frame: FrameOutputs) -> None:
    plan = frame.plan
    if plan is None:
        return
    origin = np.zeros((1, 3))
    for cand, cmd in zip(plan.candidates, plan.candidate_commands):
        if cmd == plan.command:
            _poly(image, view, np.concatenate([origin, cand]), CANDIDATE_COLOR, 1)
    traj = np.concatenate([origin, plan.trajectory])
    _poly(image, view, traj, PLAN_COLOR, 3)
    for p in view.to_pixels(plan.trajectory):
        cv2.circle(image, (int(round(p[0])), int(round(p[1]))), 3, PLAN_COLOR, -1, cv2.LINE_AA)


def _draw_ground_truth(image: np.ndarray, view: BevView, frame: FrameOutputs) -> None:
    gt = frame.ground_truth
    if gt is None:
        return
    for points in gt.map.polylines:
        _poly(image, view, points, scale_color(GT_COLOR, 0.55), 1)
    b = gt.boxes
    for k in range(len(b)):
        _poly(image, view, box_corners(b.centers[k], b.sizes[k], b.yaws[k])[:4], GT_COLOR, 1, closed=True)
    for p in view.to_pixels(gt.ego_path):
        cv2.circle(image, (int(round(p[0])), int(round(p[1]))), 4, GT_PATH_COLOR, 1, cv2.LINE_AA)


def _draw_legend(image: np.ndarray, frame: FrameOutputs) -> None:
    entries = [("prediction (colour = class)", (60, 80, 255)), ("plan", (255, 0, 255))]
    if frame.ground_truth is not None:
        entries += [("ground truth: boxes, lanes, ego path (circles)", GT_COLOR)]
    v = image.shape[0] - 10 - 18 * (len(entries) - 1)
    darken(image, 0, v - 16, 44 + max(text_width(t, 0.4) for t, _ in entries), image.shape[0])
    for text, color in entries:
        cv2.line(image, (8, v - 4), (30, v - 4), color, 2, cv2.LINE_AA)
        put_text(image, text, (36, v), (220, 220, 220), 0.4)
        v += 18


def render_bev(frame: FrameOutputs, view: BevView = BevView()) -> np.ndarray:
    """[H, W, 3] uint8 BGR bird's-eye view of `frame` (reference-frame xy; z is ignored)."""
    width, height = view.size
    image = np.full((height, width, 3), 24, dtype=np.uint8)
    _draw_grid(image, view)
    _draw_ground_truth(image, view, frame)
    _draw_map(image, view, frame)
    _draw_plan(image, view, frame)
    _draw_forecasts(image, view, frame)
    _draw_boxes(image, view, frame)
    _draw_ego(image, view)
    lines = [f"frame {frame.frame_index}  t={frame.stamp_ns * 1e-9:.3f} s  {frame.frame_id}",
             f"{len(frame.boxes)} boxes  {len(frame.map.polylines)} map  {len(frame.forecasts)} forecasts"]
    if frame.model:
        lines.append(f"model: {frame.model}")
    lines += [f"{k}: {v}" for k, v in frame.info.items()]
    max_chars = int(width / 7.5)  # FONT_HERSHEY_SIMPLEX at scale 0.45 is under 7.5 px per character
    lines = [fit_text(line, max_chars) for line in lines]
    darken(image, 0, 0, 16 + max(text_width(line) for line in lines), 10 + 18 * len(lines))
    for i, line in enumerate(lines):
        put_text(image, line, (8, 18 + 18 * i))
    _draw_legend(image, frame)
    return image
