"""SparseDrive's camera projection matrices (docs/model-notes.md#inputs-and-preprocessing) and the lidar reference
frame.

Frames: ``lidar`` = LIDAR_TOP at the key-frame (reference) time, x right / y forward / z up; ``cam`` = optical
frame of one camera at its own exposure time (x right, y down, z forward); ``ego`` = base_link; ``global`` =
nuScenes map frame. All matrices are float64 and map column points ``p_to = M @ p_from``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from sparsedrive_ros.geometry.transforms import Array, invert_transform, transform_from_quat

# Test-time ResizeCropFlipImage of the released config: 1600x900 -> x0.44 -> 704x396 -> rows 140..395.
TEST_RESIZE = 0.44
TEST_CROP_TOP = 140
MODEL_IMAGE_WH = (704, 256)
SOURCE_IMAGE_WH = (1600, 900)


@dataclass(frozen=True)
class Pose:
    """A nuScenes (rotation [w, x, y, z], translation [3]) record: child -> parent."""

    rotation: tuple[float, float, float, float]
    translation: tuple[float, float, float]

    def matrix(self) -> Array:
        """[4, 4] child -> parent."""
        return transform_from_quat(self.rotation, self.translation)


def viewpad(intrinsic: ArrayLike) -> Array:
    """[3, 3] camera matrix K -> [4, 4] with K in the top-left block."""
    k = np.asarray(intrinsic, dtype=np.float64)
    if k.shape != (3, 3):
        raise ValueError(f"camera intrinsic must have shape (3, 3), got {k.shape}")
    pad = np.eye(4, dtype=np.float64)
    pad[:3, :3] = k
    return pad


def sensor_to_lidar(
    cam_to_ego: ArrayLike, ego_to_global_cam: ArrayLike, ego_to_global_lidar: ArrayLike, lidar_to_ego: ArrayLike
) -> Array:
    """[4, 4] camera(t_cam) -> lidar(t_ref) through ego(t_cam) -> global -> ego(t_ref).

    Each camera uses its own ego pose, so the result contains the ego motion between the exposure and the
    lidar key frame (the original's ``sensor2lidar_rotation/translation``,
    docs/model-notes.md#frames).
    """
    to_global = np.asarray(ego_to_global_cam, dtype=np.float64) @ np.asarray(cam_to_ego, dtype=np.float64)
    from_global = invert_transform(lidar_to_ego) @ invert_transform(ego_to_global_lidar)
    return from_global @ to_global


def lidar_to_image(intrinsic: ArrayLike, sensor2lidar: ArrayLike) -> Array:
    """[4, 4] lidar -> image pixels (homogeneous, depth in row 2) = viewpad(K) · [R_l2c | −R_l2c·t_s2l]."""
    s2l = np.asarray(sensor2lidar, dtype=np.float64)
    rot_l2c = np.linalg.inv(s2l[:3, :3])  # the original inverts the (orthonormal) rotation numerically
    lidar2cam = np.eye(4, dtype=np.float64)
    lidar2cam[:3, :3] = rot_l2c
    lidar2cam[:3, 3] = -rot_l2c @ s2l[:3, 3]
    return viewpad(intrinsic) @ lidar2cam


def image_transform_matrix(
    resize: float = TEST_RESIZE, crop_top: int = TEST_CROP_TOP, crop_left: int = 0
) -> Array:
    """[4, 4] A mapping source pixels to the resized + cropped image: projection_mat = A · lidar2img."""
    if resize <= 0:
        raise ValueError(f"resize must be positive, got {resize}")
    a = np.eye(4, dtype=np.float64)
    a[0, 0] = resize
    a[1, 1] = resize
    a[0, 2] = -float(crop_left)
    a[1, 2] = -float(crop_top)
    return a


def lidar_to_global(lidar_to_ego: ArrayLike, ego_to_global: ArrayLike) -> Array:
    """T_global: [4, 4] lidar(t_ref) -> global = ego2global(t_ref) · lidar2ego."""
    return np.asarray(ego_to_global, dtype=np.float64) @ np.asarray(lidar_to_ego, dtype=np.float64)


def project_points(proj: ArrayLike, points: ArrayLike, min_depth: float = 1e-5) -> tuple[Array, Array]:
    """Project [N, 3] points with a [4, 4] projection -> ([N, 2] pixels, [N] depth); depth clamped for the divide."""
    m = np.asarray(proj, dtype=np.float64)
    pts = np.asarray(points, dtype=np.float64)
    cam = pts @ m[:3, :3].T + m[:3, 3]
    depth = cam[:, 2]
    uv = cam[:, :2] / np.maximum(depth, min_depth)[:, None]
    return uv, depth
