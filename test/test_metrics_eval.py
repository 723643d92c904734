"""Evaluation glue: lidar -> global box conversion and the original's attribute heuristic."""

import math

import numpy as np
import pytest

from sparsedrive_ros.training.evaluation import format_table, lidar_boxes_to_global, predicted_attribute


def test_lidar_boxes_to_global_rotates_position_yaw_and_velocity():
    t = np.eye(4)
    t[:2, :2] = [[0.0, -1.0], [1.0, 0.0]]  # lidar x -> global y (yaw +90°)
    t[:3, 3] = [100.0, 200.0, 1.0]
    lidar_to_ego = np.eye(4)
    lidar_to_ego[:3, 3] = [0.0, 3.0, 0.0]
    boxes = np.array([[1.0, 2.0, 0.5, 4.0, 2.0, 1.5, 0.3, 1.0, 0.0]])
    c, yaw, vel, dist = lidar_boxes_to_global(boxes, t, lidar_to_ego)
    np.testing.assert_allclose(c[0], [98.0, 201.0, 1.5])
    assert yaw[0] == pytest.approx(0.3 + math.pi / 2)
    np.testing.assert_allclose(vel[0], [0.0, 1.0], atol=1e-12)
    assert dist[0] == pytest.approx(math.hypot(1.0, 5.0))


@pytest.mark.parametrize("name,speed,expected", [
    ("car", 1.0, "vehicle.moving"), ("car", 0.1, "vehicle.parked"), ("bus", 0.0, "vehicle.stopped"),
    ("bicycle", 2.0, "cycle.with_rider"), ("pedestrian", 0.0, "pedestrian.standing"),
    ("pedestrian", 1.0, "pedestrian.moving"), ("barrier", 1.0, ""),
])
def test_predicted_attribute_heuristic(name, speed, expected):
    assert predicted_attribute(name, (speed, 0.0)) == expected


def test_format_table_lists_headline_metrics():
    res = {
        "detection": {"NDS": 0.5, "mAP": 0.4, "mATE": 0.6, "mASE": 0.3, "mAOE": 0.5, "mAVE": 0.4, "mAAE": 0.2},
        "map": {"mAP": 0.55, "class_AP": {"divider": 0.5}},
        "motion": {"car": {"min_ade": 0.6, "min_fde": 0.9, "miss_rate": 0.1, "EPA": 0.5}},
        "planning": {"L2": {"1s": 0.3, "avg": 0.6}, "obj_box_col": {"1s": 0.001, "avg": 0.002}},
    }
    table = format_table(res)
    assert "NDS" in table and "0.5000" in table and "collision avg (%)" in table and "0.2000" in table
