"""Geometry: quaternion round trips, rigid inverses, and the original's lidar2img recipe."""
import numpy as np
import pytest

from sparsedrive_ros.geometry import (
    image_transform_matrix,
    invert_transform,
    lidar_to_image,
    make_transform,
    quat_to_rot,
    quat_yaw,
    rot_to_quat,
    sensor_to_lidar,
    transform_from_quat,
    wrap_angle,
    yaw_to_quat,
)


def _random_quat(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    return q if q[0] >= 0 else -q


def test_quat_round_trip_and_orthonormal():
    rng = np.random.default_rng(0)
    for _ in range(200):
        q = _random_quat(rng)
        rot = quat_to_rot(q)
        np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(rot) == pytest.approx(1.0)
        np.testing.assert_allclose(rot_to_quat(rot), q, atol=1e-12)


def test_quat_matches_axis_angle():
    # 90 degrees about +z: x -> y.
    rot = quat_to_rot([np.cos(np.pi / 4), 0, 0, np.sin(np.pi / 4)])
    np.testing.assert_allclose(rot @ [1, 0, 0], [0, 1, 0], atol=1e-12)
    assert quat_yaw(yaw_to_quat(2.5)) == pytest.approx(2.5)
    assert quat_yaw(yaw_to_quat(-3.0)) == pytest.approx(-3.0)


def test_nuscenes_cam_front_quaternion_is_optical_frame():
    # nuScenes CAM_FRONT: optical z (forward) ~ ego +x, optical x (right) ~ ego -y.
    rot = quat_to_rot([0.4998015430569128, -0.5030316162024876, 0.4997798114386805, -0.49737083824542755])
    np.testing.assert_allclose(rot[:, 2], [1, 0, 0], atol=0.02)
    np.testing.assert_allclose(rot[:, 0], [0, -1, 0], atol=0.02)


def test_invert_transform_exact_at_map_scale():
    rng = np.random.default_rng(1)
    t = make_transform(quat_to_rot(_random_quat(rng)), [1.2e5, -3.4e4, 5.0])
    np.testing.assert_allclose(invert_transform(t) @ t, np.eye(4), atol=1e-9)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="quaternion"):
        quat_to_rot([1, 0, 0])
    with pytest.raises(ValueError, match="norm"):
        quat_to_rot([0, 0, 0, 0])
    with pytest.raises(ValueError, match="resize"):
        image_transform_matrix(resize=0.0)


def test_wrap_angle_range():
    a = wrap_angle(np.array([np.pi, -np.pi, 3 * np.pi + 0.1, -0.2]))
    np.testing.assert_allclose(a, [-np.pi, -np.pi, -np.pi + 0.1, -0.2], atol=1e-12)


def _converter_style_lidar2img(cs_cam, pose_cam, cs_lidar, pose_lidar, k):
    """Row-vector recipe of the original converter (obtain_sensor2top) + get_data_info, written independently."""
    l2e_r_s, l2e_t_s = quat_to_rot(cs_cam[0]), np.asarray(cs_cam[1])
    e2g_r_s, e2g_t_s = quat_to_rot(pose_cam[0]), np.asarray(pose_cam[1])
    l2e_r, l2e_t = quat_to_rot(cs_lidar[0]), np.asarray(cs_lidar[1])
    e2g_r, e2g_t = quat_to_rot(pose_lidar[0]), np.asarray(pose_lidar[1])
    back = np.linalg.inv(e2g_r).T @ np.linalg.inv(l2e_r).T
    r = (l2e_r_s.T @ e2g_r_s.T) @ back
    t = (l2e_t_s @ e2g_r_s.T + e2g_t_s) @ back
    t -= e2g_t @ back + l2e_t @ np.linalg.inv(l2e_r).T
    s2l_rot, s2l_t = r.T, t
    lidar2cam_r = np.linalg.inv(s2l_rot)
    lidar2cam_t = s2l_t @ lidar2cam_r.T
    rt = np.eye(4)
    rt[:3, :3] = lidar2cam_r.T
    rt[3, :3] = -lidar2cam_t
    pad = np.eye(4)
    pad[:3, :3] = k
    return pad @ rt.T


def test_lidar2img_matches_converter_recipe():
    rng = np.random.default_rng(2)
    k = np.array([[1266.4, 0, 816.3], [0, 1266.4, 491.5], [0, 0, 1]])
    for _ in range(20):
        cs_cam = (_random_quat(rng), rng.normal(size=3))
        cs_lidar = (_random_quat(rng), rng.normal(size=3))
        pose_cam = (_random_quat(rng), rng.normal(size=3) * 1000)
        pose_lidar = (_random_quat(rng), np.asarray(pose_cam[1]) + rng.normal(size=3))
        s2l = sensor_to_lidar(
            transform_from_quat(*cs_cam), transform_from_quat(*pose_cam),
            transform_from_quat(*pose_lidar), transform_from_quat(*cs_lidar),
        )
        ours = lidar_to_image(k, s2l)
        ref = _converter_style_lidar2img(cs_cam, pose_cam, cs_lidar, pose_lidar, k)
        np.testing.assert_allclose(ours, ref, atol=1e-6, rtol=1e-9)


def test_image_transform_maps_corners():
    a = image_transform_matrix()
    # Source pixel (1600, 900) -> (704, 396 - 140 = 256); (0, 318.18) -> row 0.
    np.testing.assert_allclose(a @ [1600 * 5, 900 * 5, 5, 1], [704 * 5, 256 * 5, 5, 1], atol=1e-9)
    np.testing.assert_allclose((a @ [0, 140 / 0.44, 1, 1])[1], 0.0, atol=1e-9)
