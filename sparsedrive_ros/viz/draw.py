"""Shared drawing pieces: class colours, box corners, text."""
from __future__ import annotations

from typing import Tuple

import cv2
import numpy as np

Color = Tuple[int, int, int]  # BGR

# Detection classes in DETECTION_CLASSES order: vehicles warm, vulnerable road users cold, static grey.
DETECTION_COLORS: Tuple[Color, ...] = (
    (60, 80, 255), (40, 140, 255), (0, 200, 255), (160, 60, 255), (100, 100, 220),
    (170, 170, 170), (255, 120, 40), (255, 200, 40), (80, 230, 60), (40, 255, 255),
)
MAP_COLORS: Tuple[Color, ...] = ((255, 140, 30), (0, 165, 255), (60, 200, 60))  # ped_crossing, divider, boundary
PLAN_COLOR: Color = (255, 0, 255)
CANDIDATE_COLOR: Color = (140, 110, 140)
EGO_COLOR: Color = (255, 255, 255)
GT_COLOR: Color = (235, 235, 235)  # ground truth: thin near-white lines, under the class-coloured predictions
GT_PATH_COLOR: Color = GT_COLOR  # the ground-truth future ego path (open circles): all ground truth is white
BANNER_COLOR: Color = (30, 30, 200)
EGO_SIZE_LW = (4.08, 1.85)  # m, the nuScenes data-collection car (length, width)


def detection_color(label: int) -> Color:
    return DETECTION_COLORS[int(label) % len(DETECTION_COLORS)]


def map_color(label: int) -> Color:
    return MAP_COLORS[int(label) % len(MAP_COLORS)]


BOX_EDGES = ((0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4), (0, 4), (1, 5), (2, 6), (3, 7))


def put_text(image: np.ndarray, text: str, origin: Tuple[int, int], color: Color = (255, 255, 255),
             scale: float = 0.45) -> None:
    """Readable on any background: a dark outline under the text."""
    org = (int(origin[0]), int(origin[1]))
    cv2.putText(image, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(image, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, color, 1, cv2.LINE_AA)


def scale_color(color: Color, factor: float) -> Color:
    r, g, b = (int(np.clip(c * factor, 0, 255)) for c in color)
    return r, g, b


def draw_banner(image: np.ndarray, text: str, height: int = 34) -> np.ndarray:
    """``image`` with a red band and ``text`` on top (a new array, ``height`` rows taller)."""
    band = np.zeros((height, image.shape[1], 3), np.uint8)
    band[:] = BANNER_COLOR
    put_text(band, text, (10, height - 11), (255, 255, 255), 0.7)
    return np.concatenate([band, image], axis=0)


def fit_text(text: str, max_chars: int) -> str:
    """``text`` cut to ``max_chars`` with an ellipsis, so that header lines never run off the image."""
    return text if len(text) <= max_chars else text[: max(0, max_chars - 3)] + "..."


def darken(image: np.ndarray, x0: int, y0: int, x1: int, y1: int, keep: float = 0.3) -> None:
    """Dim a rectangle in place so that text drawn over it stays readable over boxes and lines."""
    h, w = image.shape[:2]
    x0, x1, y0, y1 = max(0, x0), min(w, x1), max(0, y0), min(h, y1)
    if x1 > x0 and y1 > y0:
        image[y0:y1, x0:x1] = (image[y0:y1, x0:x1] * keep).astype(np.uint8)


def text_width(text: str, scale: float = 0.45) -> int:
    return int(cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0])
