"""Training augmentations of SparseDrive (docs/model-notes.md#training, #inputs-and-preprocessing, #backbone-and-neck).

Image-space only: every geometric change of an image is folded into its lidar->image projection, so the 3-D
ground truth never changes (BBoxRotation is configured with angle 0 in the original).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import cv2
import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

__all__ = [
    "AugConfig",
    "ImageAug",
    "sample_image_aug",
    "test_image_aug",
    "image_aug_matrix",
    "apply_image_aug",
    "photometric_distortion",
    "normalize_image",
    "grid_mask",
    "depth_maps",
]

IMG_MEAN = np.array([123.675, 116.28, 103.53], dtype=np.float32)  # RGB
IMG_STD = np.array([58.395, 57.12, 57.375], dtype=np.float32)
# The original's resize limits were chosen for 1600x900 -> 704x256, where the test-time factor is 0.44.
_ORIGINAL_TEST_RESIZE = 0.44


@dataclass(frozen=True)
class AugConfig:
    final_hw: tuple[int, int] = (256, 704)
    # Random resize relative to the test-time factor: (0.40, 0.47) / 0.44 reproduces the original exactly.
    resize_rel_lim: tuple[float, float] = (0.40 / _ORIGINAL_TEST_RESIZE, 0.47 / _ORIGINAL_TEST_RESIZE)
    bot_pct_lim: tuple[float, float] = (0.0, 0.0)
    rot_lim_deg: tuple[float, float] = (-5.4, 5.4)
    rand_flip: bool = True
    photometric: bool = True
    grid_mask_prob: float = 0.7
    depth_downsample: tuple[int, ...] = (4, 8, 16)
    max_depth: float = 60.0


@dataclass(frozen=True)
class ImageAug:
    """One augmentation draw; ``keep_consistent_seq_aug`` reuses it for a whole sub-sequence."""

    resize: float
    crop: tuple[int, int, int, int]  # (x0, y0, x1, y1) in resized pixels
    flip: bool
    rotate_deg: float


def _crop_for(resize: float, src_hw: tuple[int, int], cfg: AugConfig, bot_pct: float, crop_w_frac: float):
    height, width = src_hw
    fh, fw = cfg.final_hw
    new_w, new_h = int(width * resize), int(height * resize)
    crop_h = int((1 - bot_pct) * new_h) - fh
    crop_w = int(crop_w_frac * max(0, new_w - fw))
    return (crop_w, crop_h, crop_w + fw, crop_h + fh)


def test_image_aug(src_hw: tuple[int, int], cfg: AugConfig = AugConfig()) -> ImageAug:
    """Deterministic test transform: resize to cover the output, crop the bottom rows, centred horizontally."""
    resize = max(cfg.final_hw[0] / src_hw[0], cfg.final_hw[1] / src_hw[1])
    crop = _crop_for(resize, src_hw, cfg, float(np.mean(cfg.bot_pct_lim)), 0.5)
    return ImageAug(resize, crop, False, 0.0)


def sample_image_aug(rng: np.random.Generator, src_hw: tuple[int, int], cfg: AugConfig = AugConfig()) -> ImageAug:
    """Random resize, bottom crop at a random horizontal offset, flip and small rotation
    (docs/model-notes.md#inputs-and-preprocessing)."""
    base = max(cfg.final_hw[0] / src_hw[0], cfg.final_hw[1] / src_hw[1])
    resize = base * rng.uniform(*cfg.resize_rel_lim)
    bot_pct = rng.uniform(*cfg.bot_pct_lim)
    crop = _crop_for(resize, src_hw, cfg, bot_pct, rng.uniform(0, 1))
    flip = bool(cfg.rand_flip and rng.integers(2))
    return ImageAug(resize, crop, flip, float(rng.uniform(*cfg.rot_lim_deg)))


def image_aug_matrix(aug: ImageAug) -> NDArray[np.float64]:
    """[4, 4] acting on (u·d, v·d, d, 1): source pixels -> augmented pixels; new lidar2img = A @ lidar2img."""
    rot = np.eye(2) * aug.resize
    tran = -np.asarray(aug.crop[:2], dtype=np.float64)
    crop_w, crop_h = aug.crop[2] - aug.crop[0], aug.crop[3] - aug.crop[1]
    if aug.flip:
        flip = np.array([[-1.0, 0.0], [0.0, 1.0]])
        rot, tran = flip @ rot, flip @ tran + np.array([crop_w, 0.0])
    theta = aug.rotate_deg / 180 * np.pi
    # Counter-clockwise on screen (PIL Image.rotate) about the crop centre; image y points down.
    r = np.array([[np.cos(theta), np.sin(theta)], [-np.sin(theta), np.cos(theta)]])
    centre = np.array([crop_w, crop_h]) / 2
    rot, tran = r @ rot, r @ tran + (r @ -centre + centre)
    # The pixel translation multiplies the depth row: lidar2img yields (u·d, v·d, d, 1).
    mat = np.eye(4)
    mat[:2, :2], mat[:2, 2] = rot, tran
    return mat


def apply_image_aug(image: NDArray[np.uint8], aug: ImageAug, final_hw: tuple[int, int]) -> NDArray[np.float32]:
    """[H, W, 3] uint8 -> [fh, fw, 3] float32 warped by ``image_aug_matrix`` (zeros outside the source).

    Area-averaged downscale first (the original uses PIL's antialiased resize), then one bilinear warp for
    crop/flip/rotation.
    """
    height, width = image.shape[:2]
    new_w, new_h = int(width * aug.resize), int(height * aug.resize)
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
    rest = image_aug_matrix(ImageAug(1.0, aug.crop, aug.flip, aug.rotate_deg))
    out = cv2.warpAffine(
        resized.astype(np.float32), rest[:2, :3], (final_hw[1], final_hw[0]),
        flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0,
    )
    return np.asarray(out, dtype=np.float32)


def photometric_distortion(image: NDArray[np.float32], rng: np.random.Generator) -> NDArray[np.float32]:
    """mmdet PhotoMetricDistortion on a BGR float image in [0, 255] (each step with p = 0.5)."""
    img: NDArray[np.float32] = image.astype(np.float32, copy=True)
    if rng.integers(2):
        img += rng.uniform(-32, 32)
    contrast_first = bool(rng.integers(2))
    if contrast_first and rng.integers(2):
        img *= np.float32(rng.uniform(0.5, 1.5))
    hsv = np.asarray(cv2.cvtColor(img, cv2.COLOR_BGR2HSV), dtype=np.float32)
    if rng.integers(2):
        hsv[..., 1] *= rng.uniform(0.5, 1.5)
    if rng.integers(2):
        hsv[..., 0] = (hsv[..., 0] + rng.uniform(-18, 18)) % 360
    img = np.asarray(cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR), dtype=np.float32)
    if not contrast_first and rng.integers(2):
        img *= np.float32(rng.uniform(0.5, 1.5))
    if rng.integers(2):
        img = img[..., rng.permutation(3)]
    return np.ascontiguousarray(img)


def normalize_image(image_bgr: NDArray[np.float32]) -> NDArray[np.float32]:
    """BGR [H, W, 3] 0..255 -> RGB normalised [3, H, W]."""
    rgb = image_bgr[..., ::-1]
    return np.ascontiguousarray(((rgb - IMG_MEAN) / IMG_STD).transpose(2, 0, 1), dtype=np.float32)


def grid_mask(images: Tensor, rng: np.random.Generator, prob: float = 0.7, ratio: float = 0.5) -> Tensor:
    """GridMask (mode 1, no rotation): one mask for every image/channel of the batch [..., H, W].

    On a canvas 1.5 times the image, horizontal and vertical bands ``band`` pixels wide repeat every ``period``
    pixels from a random offset; the bands are kept and the squares between them zeroed; the image-sized centre
    of the canvas is the mask. Random draws, in order: apply?, period, row offset, column offset.
    """
    if prob <= 0 or rng.uniform() > prob:
        return images
    height, width = images.shape[-2:]
    canvas_h, canvas_w = int(1.5 * height), int(1.5 * width)
    period = int(rng.integers(2, height))
    band = min(max(int(period * ratio + 0.5), 1), period - 1)
    row_offset, col_offset = int(rng.integers(period)), int(rng.integers(period))
    rows = _in_bands(canvas_h, period, band, row_offset)  # [canvas_h] bool
    cols = _in_bands(canvas_w, period, band, col_offset)  # [canvas_w] bool
    top, left = (canvas_h - height) // 2, (canvas_w - width) // 2
    keep = rows[top:top + height, None] | cols[None, left:left + width]  # [H, W]
    return images * torch.from_numpy(keep.astype(np.float32)).to(images)


def _in_bands(size: int, period: int, band: int, offset: int) -> NDArray[np.bool_]:
    """Which of ``size`` pixels lie in one of the ``size // period`` bands [offset + k·period, + band)."""
    shifted = np.arange(size) - offset
    return (shifted >= 0) & (shifted // period < size // period) & (shifted % period < band)


def depth_maps(
    points: NDArray[np.float32],  # [P, 3] lidar frame
    lidar2img: NDArray[np.float64],  # [N_cam, 4, 4] augmented projection
    image_hw: tuple[int, int],
    downsample: Sequence[int] = (4, 8, 16),
    max_depth: float = 60.0,
) -> list[NDArray[np.float32]]:
    """MultiScaleDepthMapGenerator: per level [N_cam, H/s, W/s] depth in metres, -1 where no point."""
    height, width = image_hw
    homo = np.concatenate([points[:, :3], np.ones((len(points), 1))], axis=1).astype(np.float64)
    levels: list[list[NDArray[np.float32]]] = [[] for _ in downsample]
    for proj in lidar2img:
        pix = homo @ proj.T  # [P, 4]
        depth = pix[:, 2]
        keep = depth >= 0.1
        uv = np.round(pix[keep, :2] / depth[keep, None])
        d = depth[keep]
        inside = (uv[:, 0] >= 0) & (uv[:, 0] < width) & (uv[:, 1] >= 0) & (uv[:, 1] < height)
        uv, d = uv[inside], d[inside]
        order = np.argsort(d)[::-1]  # far first, so nearer points overwrite
        uv, d = uv[order], np.clip(d[order], 0.1, max_depth)
        for li, s in enumerate(downsample):
            dmap = np.full((height // s, width // s), -1.0, np.float32)
            u = (uv[:, 0] // s).astype(int)
            v = (uv[:, 1] // s).astype(int)
            dmap[v, u] = d
            levels[li].append(dmap)
    return [np.stack(level) for level in levels]


def load_lidar_points(path: str) -> Optional[NDArray[np.float32]]:
    """nuScenes .pcd.bin (5 float32 per point) -> [P, 3]; None when the file is absent."""
    try:
        raw = np.fromfile(path, dtype=np.float32)
    except (FileNotFoundError, OSError):
        return None
    if raw.size % 5:
        raise ValueError(f"lidar file {path!r} does not hold 5 floats per point ({raw.size} floats)")
    return raw.reshape(-1, 5)[:, :3]
