"""ROS-free rendering: boxes, plan and forecasts land at the pixels geometry says they should."""
import numpy as np
import pytest

from sparsedrive_ros.geometry.shapes import box_corners
from sparsedrive_ros.viz import (
    BevView,
    Boxes,
    CameraView,
    FrameOutputs,
    MapElements,
    ObjectForecast,
    Plan,
    camera_mosaic,
    project,
    render_bev,
    render_camera_overlay,
)
from sparsedrive_ros.viz.draw import DETECTION_COLORS, MAP_COLORS, PLAN_COLOR

CAR = np.array(DETECTION_COLORS[0])
PEDESTRIAN = np.array(DETECTION_COLORS[8])
# LIDAR_TOP (x right, y forward, z up) -> camera optical frame (x right, y down, z forward), camera at the origin.
CAM_FROM_LIDAR = np.array([[1.0, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]])
K = np.array([[1000.0, 0, 800], [0, 1000, 450], [0, 0, 1]])


def near(image, u, v, color, radius=1, tol=40):
    """True if some pixel within `radius` of (u, v) has `color` (BGR, +-tol per channel)."""
    patch = image[v - radius:v + radius + 1, u - radius:u + radius + 1].reshape(-1, 3).astype(int)
    return bool(np.any(np.all(np.abs(patch - np.asarray(color)) <= tol, axis=1)))


def one_box(center, size, yaw, label=0, instance_id=7):
    return Boxes([center], [size], [yaw], [label], [0.9], [instance_id])


def test_box_corners_follow_heading_and_size():
    c = box_corners((1.0, 2.0, 3.0), (4.0, 2.0, 1.5), np.pi / 2)  # heading +y
    np.testing.assert_allclose(c[:2].mean(axis=0), (1.0, 4.0, 2.25), atol=1e-12)  # front edge, bottom
    np.testing.assert_allclose(c.min(axis=0), (0.0, 0.0, 2.25), atol=1e-12)
    np.testing.assert_allclose(c.max(axis=0), (2.0, 4.0, 3.75), atol=1e-12)


def test_bev_pixel_mapping():
    view = BevView(x_range=(-30, 30), y_range=(-20, 40), pixels_per_meter=10)
    assert view.size == (600, 600)
    np.testing.assert_allclose(view.to_pixels(np.array([[0.0, 0.0], [5.0, 10.0], [-30.0, 40.0]])),
                               [[300, 400], [350, 300], [0, 0]])
    with pytest.raises(ValueError, match="increasing"):
        BevView(x_range=(1, -1))


def test_bev_box_lands_at_expected_pixels():
    # A car 10 m ahead and 5 m right, 4 m long (along +x, yaw 0) and 2 m wide.
    frame = FrameOutputs(stamp_ns=1, boxes=one_box((5.0, 10.0, 0.0), (4.0, 2.0, 1.5), 0.0))
    image = render_bev(frame, BevView())  # 600 x 600, ego at (300, 300)
    # Footprint x in [3, 7] -> u in [330, 370]; y in [9, 11] -> v in [190, 210].
    assert near(image, 350, 190, CAR) and near(image, 350, 210, CAR)  # long edges
    assert near(image, 330, 200, CAR) and near(image, 370, 195, CAR)  # short edges
    assert not near(image, 340, 205, CAR, tol=20)  # inside the footprint, off the heading tick
    assert not near(image, 250, 200, CAR, tol=20)  # nothing where no box is


def test_bev_draws_map_plan_and_forecast():
    plan = Plan(trajectory=[(0.0, 2.5 * (k + 1), 0.0) for k in range(6)],
                candidates=np.zeros((0, 6, 3)), candidate_scores=[], candidate_commands=[], command=2)
    road_edge = MapElements([np.array([[-8.0, -20, 0], [-8.0, 20, 0]])], [2], [1.0])
    ped = one_box((10.0, 0.0, 0.0), (0.7, 0.7, 1.8), 0.0, label=8, instance_id=3)
    walk = ObjectForecast(3, 8, paths=[[(10.0, 2.0 * (k + 1), 0.0) for k in range(12)]], confidences=[1.0])
    frame = FrameOutputs(stamp_ns=1, boxes=ped, map=road_edge, forecasts=[walk], plan=plan)
    image = render_bev(frame)
    assert near(image, 220, 300, MAP_COLORS[2])  # x = -8 m -> u = 220
    assert near(image, 300, 150, PLAN_COLOR)  # plan point (0, 15) -> v = 150
    assert near(image, 400, 150, PEDESTRIAN)  # forecast through (10, 15)
    assert not near(image, 300, 450, PLAN_COLOR, radius=3, tol=30)  # nothing planned behind


def test_projection_matches_pinhole_model():
    view = CameraView("CAM_FRONT", np.zeros((900, 1600, 3), np.uint8), K, CAM_FROM_LIDAR)
    uv, depth = project(np.array([[0.0, 20.0, 0.0], [2.0, 20.0, 1.0], [0.0, -5.0, 0.0]]), view)
    np.testing.assert_allclose(uv[:2], [[800, 450], [900, 400]])
    np.testing.assert_allclose(depth, [20, 20, -5])
    assert np.all(np.isnan(uv[2]))  # behind the camera


def test_camera_overlay_box_edges_at_projected_pixels():
    view = CameraView("CAM_FRONT", np.zeros((900, 1600, 3), np.uint8), K, CAM_FROM_LIDAR)
    # 4 m long along +y (yaw pi/2), 2 m wide, 2 m high, centred 20 m ahead: near face at y = 18 m.
    frame = FrameOutputs(stamp_ns=1, boxes=one_box((0.0, 20.0, 0.0), (4.0, 2.0, 2.0), np.pi / 2))
    image = render_camera_overlay(frame, view)
    f = 1000 / 18  # px per metre at the near face
    assert near(image, 800, round(450 + f), CAR)  # bottom edge of the near face
    assert near(image, 800, round(450 - f), CAR)  # top edge
    assert near(image, round(800 - f), 450, CAR) and near(image, round(800 + f), 450, CAR)  # vertical edges
    assert not near(image, 800, 450, CAR, radius=5)  # the box's centre is empty
    assert not near(image, 400, 700, CAR, radius=5)


def test_camera_overlay_plan_on_the_ground_and_clipping_behind_camera():
    view = CameraView("CAM_FRONT", np.zeros((900, 1600, 3), np.uint8), K, CAM_FROM_LIDAR)
    # The plan starts at the ego origin (behind the image plane's near limit) and runs 15 m ahead.
    plan = Plan(trajectory=[(0.0, 2.5 * (k + 1), 0.0) for k in range(6)], candidates=np.zeros((0, 6, 3)),
                candidate_scores=[], candidate_commands=[], command=2)
    image = render_camera_overlay(FrameOutputs(stamp_ns=1, plan=plan), view, ground_z=-2.0)
    v10 = round(450 + 1000 * 2.0 / 10.0)  # ground point 10 m ahead, 2 m below the camera
    assert near(image, 800, v10, PLAN_COLOR)
    assert not near(image, 800, 300, PLAN_COLOR, radius=5)  # above the horizon: nothing


def test_camera_mosaic_layout_and_missing_camera():
    front = np.full((900, 1600, 3), 200, np.uint8)
    mosaic = camera_mosaic({"CAM_FRONT": front}, tile_size=(160, 90))
    assert mosaic.shape == (180, 480, 3)
    assert np.all(mosaic[45, 240] == 200)  # front is the top middle tile
    assert mosaic[135, 240].max() < 200  # back camera missing: dark tile


def test_bad_inputs_raise_value_errors():
    with pytest.raises(ValueError, match="centers"):
        Boxes(np.zeros((2, 2)), np.zeros((2, 3)), [0, 0], [0, 0], [0, 0], [0, 0])
    with pytest.raises(ValueError, match="labels has 1"):
        Boxes(np.zeros((2, 3)), np.zeros((2, 3)), [0, 0], [0], [0, 0], [0, 0])
    with pytest.raises(ValueError, match="intrinsics"):
        CameraView("c", np.zeros((4, 4, 3), np.uint8), np.eye(4), np.eye(4))


def test_strongest_keeps_best_boxes_their_forecasts_and_best_map():
    boxes = Boxes(np.arange(12).reshape(4, 3), np.ones((4, 3)), [0, 0, 0, 0], [0, 1, 2, 3], [0.2, 0.9, 0.5, 0.7],
                  [10, 11, 12, 13])
    forecasts = [ObjectForecast(i, 0, np.zeros((1, 2, 3)), [1.0]) for i in (10, 11, 12, 13)]
    lines = MapElements([np.full((2, 3), k, float) for k in range(3)], [0, 1, 2], [0.1, 0.8, 0.4])
    frame = FrameOutputs(stamp_ns=1, boxes=boxes, forecasts=forecasts, map=lines)
    top = frame.strongest(max_boxes=2, max_map=5, min_score=0.3)
    assert top.boxes.ids.tolist() == [11, 13] and top.boxes.scores.tolist() == [0.9, 0.7]
    np.testing.assert_array_equal(top.boxes.centers, [[3, 4, 5], [9, 10, 11]])
    assert [f.instance_id for f in top.forecasts] == [11, 13]
    assert top.map.labels.tolist() == [1, 2] and top.map.polylines[0][0, 0] == 1
    assert len(frame.boxes) == 4  # the original is untouched


def test_viz_and_launch_runner_import_no_rclpy():
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys; import sparsedrive_ros.viz, sparsedrive_ros.viz.recording, sparsedrive_ros.launch_runner; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('rclpy', 'launch', 'launch_ros')); "
            "print(bad); sys.exit(1 if bad else 0)")
    repo = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
