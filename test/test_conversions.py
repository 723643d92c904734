"""Pipeline results -> messages: fields, units, limits (no ROS graph needed)."""
import math

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy not installed: run `make setup`")
from visualization_msgs.msg import Marker  # noqa: E402

from sparsedrive_ros.ros import conversions as conv  # noqa: E402
from sparsedrive_ros.runtime.pipeline import MAP_GROUND_Z, PipelineResult  # noqa: E402


def result(k=120, m=30):
    rng = np.random.default_rng(0)
    boxes = rng.normal(size=(k, 10))
    boxes[:, 3:6] = np.abs(boxes[:, 3:6]) + 1
    traj_scores = rng.uniform(size=(k, 6))
    return PipelineResult(
        stamp_ns=1_700_000_000_123_456_789,
        temporal_reset=True,
        reset_reason="start",
        time_since_previous=0.0,
        boxes=boxes,
        scores=np.linspace(0.9, 0.1, k),
        cls_scores=np.full(k, 0.95),
        class_scores=rng.uniform(size=(k, 10)),
        labels=rng.integers(0, 10, k),
        instance_ids=np.arange(k) + 1000,
        map_polylines=rng.normal(size=(m, 20, 2)),
        map_scores=np.linspace(0.9, 0.1, m),
        map_labels=rng.integers(0, 3, m),
        trajs=rng.normal(size=(k, 6, 12, 2)),
        traj_scores=traj_scores,
        tracked_frames=np.full(k, 2),
        plan_trajectories=rng.normal(size=(3, 6, 6, 2)),
        plan_scores=np.array([[0.1] * 6, [0.2] * 6, [0.0, 0.5, 0.3, 0.0, 0.1, 0.1]]),
        plan_final=rng.normal(size=(6, 2)),
        plan_command=2,
        plan_mode=1,
        ego_status=np.arange(10.0),
    )


def test_detections_forecasts_and_threshold():
    r = result()
    keep = conv.detection_index(r, 0.5)
    assert np.all(r.scores[keep] >= 0.5) and len(keep) == np.sum(r.scores >= 0.5)
    det = conv.detections_msg(r, "LIDAR_TOP", 3, keep)
    assert det.header.stamp.sec == 1_700_000_000 and det.header.stamp.nanosec == 123_456_789
    d = det.detections[0]
    b = r.boxes[keep[0]]
    assert (d.center.x, d.size.x, d.yaw, d.velocity.y) == (b[0], b[3], b[6], b[8])
    assert math.isclose(2 * math.atan2(d.orientation.z, d.orientation.w), b[6], abs_tol=1e-12)
    assert d.instance_id == 1000 + keep[0] and d.tracked_frames == 2 and len(d.class_scores) == 10
    fc = conv.forecasts_msg(r, "LIDAR_TOP", 3, keep)
    assert len(fc.forecasts) == len(keep) and fc.forecasts[0].time_step.nanosec == 500_000_000
    paths = fc.forecasts[0].paths
    assert math.isclose(sum(p.confidence for p in paths), 1.0, rel_tol=1e-6)
    np.testing.assert_allclose(np.reshape(paths[2].xy, (-1, 2)), r.trajs[keep[0], 2], rtol=1e-6)


def test_map_plan_and_markers():
    r = result()
    mp = conv.map_msg(r, "LIDAR_TOP", 0, 0.5)
    assert len(mp.elements) == np.sum(r.map_scores >= 0.5) and mp.elements[0].points[0].z == MAP_GROUND_Z
    plan = conv.plan_msg(r, "LIDAR_TOP", 0, command_stale=False)
    assert len(plan.candidates) == 18 and plan.selected_mode == 1 and len(plan.trajectory) == 6
    collided = [(c.command, c.mode) for c in plan.candidates if c.collision]
    assert collided == [(2, 0), (2, 3)]  # zero scores of the active command only
    markers = conv.markers_msg(r, "LIDAR_TOP", np.arange(120), 0.0).markers
    assert markers[0].action == Marker.DELETEALL
    labels = [m for m in markers if m.ns == "ids"]
    assert len(labels) == conv.MAX_MARKED  # the strongest only
    box_points = sum(len(m.points) for m in markers if m.ns.startswith("boxes/"))
    assert box_points == 24 * conv.MAX_MARKED
    assert conv.path_msg(r, "LIDAR_TOP").poses[-1].pose.position.x == r.plan_final[-1, 0]
