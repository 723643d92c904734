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
