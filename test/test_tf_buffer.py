import numpy as np
import pytest

from sparsedrive_ros.runtime.tf_buffer import TransformBuffer, TransformError, matrix_to_quat, quat_to_matrix


def yaw_matrix(yaw, t=(0.0, 0.0, 0.0)):
    m = np.eye(4)
    c, s = np.cos(yaw), np.sin(yaw)
    m[:2, :2] = [[c, -s], [s, c]]
    m[:3, 3] = t
    return m


def test_quaternion_round_trip():
    rng = np.random.default_rng(0)
    for _ in range(50):
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        q = q if q[3] >= 0 else -q
        np.testing.assert_allclose(matrix_to_quat(quat_to_matrix(q)), q, atol=1e-12)


def test_chain_static_and_dynamic_interpolated():
    buf = TransformBuffer()
    # base_link moves along x at 10 m/s and turns 0.2 rad per second.
    buf.set_transform("map", "base_link", 0, yaw_matrix(0.0, (0, 0, 0)))
    buf.set_transform("map", "base_link", 1_000_000_000, yaw_matrix(0.2, (10, 0, 0)))
    buf.set_transform("base_link", "cam", 0, yaw_matrix(-np.pi / 2, (1.5, 0, 1.6)), static=True)
    t = 500_000_000
    m = buf.lookup("map", "cam", t)
    expected = yaw_matrix(0.1, (5, 0, 0)) @ yaw_matrix(-np.pi / 2, (1.5, 0, 1.6))
    np.testing.assert_allclose(m, expected, atol=1e-12)
    # The inverse direction and a sibling path through the common ancestor.
    np.testing.assert_allclose(buf.lookup("cam", "map", t), np.linalg.inv(expected), atol=1e-12)
    # Time travel: camera at t1 seen from base_link at t0.
    tt = buf.lookup_full("base_link", 0, "cam", 1_000_000_000, "map")
    np.testing.assert_allclose(tt, yaw_matrix(0.2, (10, 0, 0)) @ yaw_matrix(-np.pi / 2, (1.5, 0, 1.6)), atol=1e-12)


def test_errors_are_clear():
    buf = TransformBuffer()
    buf.set_transform("map", "base_link", 10, np.eye(4))
    buf.set_transform("map", "base_link", 20, np.eye(4))
    with pytest.raises(TransformError, match="unknown frame 'cam'"):
        buf.lookup("map", "cam", 15)
    with pytest.raises(TransformError, match="outside the buffered interval"):
        buf.lookup("map", "base_link", 30)
    buf.set_transform("odom", "other", 0, np.eye(4), static=True)
    with pytest.raises(TransformError, match="not connected"):
        buf.lookup("base_link", "other", 15)
    with pytest.raises(ValueError, match="finite"):
        buf.set_transform("map", "x", 0, np.full((4, 4), np.nan))


def test_clear_keeps_static_and_cache_is_bounded():
    buf = TransformBuffer(cache_seconds=1.0)
    buf.set_transform("base_link", "cam", 0, np.eye(4), static=True)
    for k in range(50):
        buf.set_transform("map", "base_link", k * 100_000_000, np.eye(4))
    with pytest.raises(TransformError):
        buf.lookup("map", "base_link", 0)  # older than the 1 s cache
    buf.lookup("map", "base_link", 4_500_000_000)
    buf.clear()
    assert buf.frames() == {"base_link", "cam"}
