"""Rigid-body helpers in float64 numpy.

Conventions (nuScenes): quaternions are [w, x, y, z] (Hamilton, active rotation); a 4x4 transform
``T_a_from_b`` maps homogeneous column points of frame b into frame a: ``p_a = T_a_from_b @ p_b``.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.spatial.transform import Rotation, Slerp

Array = NDArray[np.float64]


def _as_quat(q: ArrayLike) -> Array:
    quat = np.asarray(q, dtype=np.float64)
    if quat.shape != (4,):
        raise ValueError(f"quaternion must have shape (4,) [w, x, y, z], got {quat.shape}")
    norm = np.linalg.norm(quat)
    if not np.isfinite(norm) or norm < 1e-12:
        raise ValueError(f"quaternion {quat.tolist()} has no usable norm")
    return quat / norm


def quat_to_rot(q: ArrayLike) -> Array:
    """[w, x, y, z] (normalised here) -> [3, 3] rotation matrix."""
    return Rotation.from_quat(_as_quat(q), scalar_first=True).as_matrix()


def rot_to_quat(rot: ArrayLike) -> Array:
    """[3, 3] rotation matrix -> [w, x, y, z] with w >= 0."""
    m = np.asarray(rot, dtype=np.float64)
    if m.shape != (3, 3):
        raise ValueError(f"rotation must have shape (3, 3), got {m.shape}")
    return Rotation.from_matrix(m).as_quat(canonical=True, scalar_first=True)


def slerp_quat(q0: ArrayLike, q1: ArrayLike, t: float) -> Array:
    """Spherical interpolation of two [w, x, y, z] rotations (the shorter arc), t in [0, 1]."""
    rots = Rotation.from_quat(np.stack([_as_quat(q0), _as_quat(q1)]), scalar_first=True)
    return Slerp([0.0, 1.0], rots)([float(t)]).as_quat(scalar_first=True)[0]


def yaw_to_quat(yaw: float) -> Array:
    """Rotation by ``yaw`` radians about +z as [w, x, y, z]."""
    return np.array([np.cos(yaw / 2.0), 0.0, 0.0, np.sin(yaw / 2.0)], dtype=np.float64)


def quat_yaw(q: ArrayLike) -> float:
    """Yaw (rotation about +z, counter-clockwise from +x) of the rotated x-axis, as pyquaternion's yaw_pitch_roll[0]."""
    rot = quat_to_rot(q)
    return float(np.arctan2(rot[1, 0], rot[0, 0]))


def make_transform(rot: ArrayLike, trans: ArrayLike) -> Array:
    """[3, 3] rotation + [3] translation -> [4, 4] homogeneous transform."""
    r = np.asarray(rot, dtype=np.float64)
    t = np.asarray(trans, dtype=np.float64)
    if r.shape != (3, 3) or t.shape != (3,):
        raise ValueError(f"need rotation (3, 3) and translation (3,), got {r.shape} and {t.shape}")
    out = np.eye(4, dtype=np.float64)
    out[:3, :3] = r
    out[:3, 3] = t
    return out


def transform_from_quat(quat: ArrayLike, trans: Sequence[float] | ArrayLike) -> Array:
    """nuScenes (rotation [w, x, y, z], translation) record -> [4, 4] transform child -> parent."""
    return make_transform(quat_to_rot(quat), np.asarray(trans, dtype=np.float64))


def invert_transform(transform: ArrayLike) -> Array:
    """Exact rigid inverse [R^T | -R^T t] (no general matrix inversion, so no drift at 1e5 m)."""
    m = np.asarray(transform, dtype=np.float64)
    if m.shape != (4, 4):
        raise ValueError(f"transform must have shape (4, 4), got {m.shape}")
    rot_t = m[:3, :3].T
    return make_transform(rot_t, -rot_t @ m[:3, 3])


def transform_points(transform: ArrayLike, points: ArrayLike) -> Array:
    """Apply [4, 4] ``transform`` to [N, 3] points -> [N, 3]."""
    m = np.asarray(transform, dtype=np.float64)
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"points must have shape (N, 3), got {pts.shape}")
    return pts @ m[:3, :3].T + m[:3, 3]


def wrap_angle(angle: ArrayLike) -> NDArray[np.float64]:
    """Wrap angles to [-pi, pi)."""
    a = np.asarray(angle, dtype=np.float64)
    return (a + np.pi) % (2.0 * np.pi) - np.pi
