"""The constant-velocity planning baseline of the evaluation (the training proof compares against it)."""
import numpy as np

from sparsedrive_ros.training.evaluation import _last_displacement


def pose(x, y, yaw):
    m = np.eye(4)
    m[:2, :2] = [[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]]
    m[:2, 3] = x, y
    return m


def test_last_displacement_is_expressed_in_the_current_lidar_frame():
    # The lidar frame's +y is forward. Heading north-east (yaw pi/4 of the frame's x axis = right side), the
    # ego moved 5 m along its own +y: in the current frame that is (0, 5) whatever the global heading.
    yaw = np.pi / 4
    forward = np.array([-np.sin(yaw), np.cos(yaw)])  # global direction of the frame's +y
    gts = {"a": (None, pose(10, 20, yaw)), "b": (None, pose(*(np.array([10, 20]) + 5 * forward), yaw))}
    np.testing.assert_allclose(_last_displacement(["a", "b"], 1, gts), [0.0, 5.0], atol=1e-12)
    np.testing.assert_allclose(_last_displacement(["a", "b"], 0, gts), [0.0, 0.0])


def test_first_frame_baseline_uses_the_can_bus_velocity():
    # A scene's first key frame has no past key frame: the baseline must use the ego velocity the model also
    # receives (CAN bus, ego frame: x forward), not a zero displacement. nuScenes' LIDAR_TOP is turned -90 deg
    # about z against base_link (lidar +y = ego +x), so 7 m/s forward is (0, 3.5) m per 0.5 s in the lidar frame.
    lidar_to_ego = pose(0.94, 0.0, -np.pi / 2)
    ego_status = np.zeros(10)
    ego_status[6:9] = [7.0, 0.0, 0.0]
    gts = {"a": (None, pose(10, 20, 0.3))}
    np.testing.assert_allclose(_last_displacement(["a"], 0, gts, ego_status, lidar_to_ego), [0.0, 3.5], atol=1e-12)
