"""ROS-free geometry: quaternions, rigid transforms and SparseDrive's projection matrices (float64 numpy)."""
from sparsedrive_ros.geometry.projection import (
    MODEL_IMAGE_WH,
    SOURCE_IMAGE_WH,
    TEST_CROP_TOP,
    TEST_RESIZE,
    Pose,
    image_transform_matrix,
    lidar_to_global,
    lidar_to_image,
    project_points,
    sensor_to_lidar,
    viewpad,
)
from sparsedrive_ros.geometry.transforms import (
    invert_transform,
    make_transform,
    quat_to_rot,
    quat_yaw,
    rot_to_quat,
    slerp_quat,
    transform_from_quat,
    transform_points,
    wrap_angle,
    yaw_to_quat,
)

__all__ = [
    "MODEL_IMAGE_WH", "SOURCE_IMAGE_WH", "TEST_CROP_TOP", "TEST_RESIZE", "Pose", "image_transform_matrix",
    "lidar_to_global", "lidar_to_image", "project_points", "sensor_to_lidar", "viewpad", "invert_transform",
    "make_transform", "quat_to_rot", "quat_yaw", "rot_to_quat", "slerp_quat", "transform_from_quat", "transform_points",
    "wrap_angle", "yaw_to_quat",
]
