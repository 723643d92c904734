"""nuScenes reader on a generated dataset: walks, SparseDrive inputs (lidar2img), ground truth, map, images."""
import json

import numpy as np
import pytest

from sparsedrive_ros.data.images import ImageLoadError, load_image, load_images
from sparsedrive_ros.data.nuscenes import (
    CAMERA_ORDER,
    COMMAND_LEFT,
    COMMAND_STRAIGHT,
    DETECTION_CLASSES,
    TABLE_NAMES,
    NuScenes,
    build_frame_inputs,
    build_ground_truth,
)
from sparsedrive_ros.data.synthetic import SyntheticConfig, generate_dataset
from sparsedrive_ros.data.synthetic_world import (
    CAMERA_CALIBRATION,
    LIDAR_CALIBRATION,
    ROAD_HALF_WIDTH,
    RoadShape,
)
from sparsedrive_ros.geometry import project_points, quat_to_rot
from sparsedrive_ros.geometry.shapes import box_corners


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    # Left curve from the start with a tight radius, so even a 1.5 s scene yields a "left" command.
    cfg = SyntheticConfig(seconds=1.5, seed=3, road=RoadShape.LEFT, curve_radius=20.0, turn_start=0.0)
    return generate_dataset(tmp_path_factory.mktemp("nusc"), cfg)


@pytest.fixture(scope="module")
def nusc(dataset):
    return NuScenes(dataset.dataroot, dataset.version)


def _raw(dataset, table):
    return json.loads((dataset.dataroot / dataset.version / f"{table}.json").read_text())


def test_missing_table_is_named(tmp_path, dataset):
    target = tmp_path / "v1.0-mini"
    target.mkdir()
    for name in TABLE_NAMES:
        if name != "ego_pose":
            (target / f"{name}.json").write_text("[]")
    with pytest.raises(ValueError, match="ego_pose.json"):
        NuScenes(tmp_path, "v1.0-mini")
    with pytest.raises(ValueError, match="does not exist"):
        NuScenes(tmp_path, "v1.0-trainval")


def test_walks_key_frames_and_12hz_streams(nusc):
    scene = nusc.scene("scene-0103")
    samples = nusc.scene_samples(scene)
    assert len(samples) == 4
    assert np.all(np.diff([s["timestamp"] for s in samples]) == 500_000)
    for channel in CAMERA_ORDER:
        stream = nusc.channel_stream(scene, channel)
        stamps = np.array([sd["timestamp"] for sd in stream])
        assert len(stream) == 19
        assert np.all(np.abs(np.diff(stamps) - 1e6 / 12) <= 1)
        assert [i for i, sd in enumerate(stream) if sd["is_key_frame"]] == [0, 6, 12, 18]
        assert sum(sd["filename"].startswith("sweeps/") for sd in stream) == 15
    events = nusc.camera_events(scene)
    assert len(events) == 6 * 19
    assert all(a[0] <= b[0] for a, b in zip(events, events[1:]))
    with pytest.raises(ValueError, match="scene-9999"):
        nusc.scene("scene-9999")


def _independent_lidar2img(dataset, sample_token, channel):
    """Row-vector recipe of the original converter, straight from the JSON tables."""
    sds = {(sd["sample_token"], sd["calibrated_sensor_token"]): sd for sd in _raw(dataset, "sample_data")}
    calib = {c["token"]: c for c in _raw(dataset, "calibrated_sensor")}
    sensors = {s["token"]: s["channel"] for s in _raw(dataset, "sensor")}
    poses = {p["token"]: p for p in _raw(dataset, "ego_pose")}

    def key(ch):
        for (st, ct), sd in sds.items():
            if st == sample_token and sensors[calib[ct]["sensor_token"]] == ch and sd["is_key_frame"]:
                return sd, calib[ct], poses[sd["ego_pose_token"]]
        raise AssertionError(ch)

    cam_sd, cs_c, pose_c = key(channel)
    _, cs_l, pose_l = key("LIDAR_TOP")
    rs, ts = quat_to_rot(cs_c["rotation"]), np.array(cs_c["translation"])
    ers, ets = quat_to_rot(pose_c["rotation"]), np.array(pose_c["translation"])
    rl, tl = quat_to_rot(cs_l["rotation"]), np.array(cs_l["translation"])
    erl, etl = quat_to_rot(pose_l["rotation"]), np.array(pose_l["translation"])
    back = np.linalg.inv(erl).T @ np.linalg.inv(rl).T
    r = (rs.T @ ers.T) @ back
    t = (ts @ ers.T + ets) @ back - (etl @ back + tl @ np.linalg.inv(rl).T)
    l2c_r = np.linalg.inv(r.T)
    rt = np.eye(4)
    rt[:3, :3] = l2c_r.T
    rt[3, :3] = -(t @ l2c_r.T)
    pad = np.eye(4)
    pad[:3, :3] = np.array(cs_c["camera_intrinsic"])
    return pad @ rt.T, cam_sd["timestamp"]


def test_lidar2img_matches_independent_derivation(dataset, nusc):
    a = np.array([[0.44, 0, 0, 0], [0, 0.44, -140, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    for sample in nusc.scene_samples(nusc.scenes[0])[::3]:
        frame = build_frame_inputs(nusc, sample)
        assert frame.camera_names == CAMERA_ORDER
        assert frame.timestamp == sample["timestamp"] / 1e6
        for c, channel in enumerate(CAMERA_ORDER):
            ref, cam_us = _independent_lidar2img(dataset, sample["token"], channel)
            np.testing.assert_allclose(frame.lidar2img[c], ref, atol=1e-6, rtol=0)
            np.testing.assert_allclose(frame.projection_mat[c], a @ ref, atol=1e-6, rtol=0)
            # Exposure offsets of a real nuScenes sample, relative to the lidar key frame.
            assert (cam_us - sample["timestamp"]) / 1000 == pytest.approx(CAMERA_CALIBRATION[channel][3], abs=0.01)
        np.testing.assert_array_equal(frame.image_wh, np.tile([704.0, 256.0], (6, 1)))
        np.testing.assert_allclose(frame.T_global @ frame.T_global_inv, np.eye(4), atol=1e-9)


def _unoccluded(frame, gt, cam, i, uv, depth):
    for j in range(len(gt.boxes)):
        if j == i or depth[j] >= depth[i]:
            continue
        b = gt.boxes[j]
        cuv, cd = project_points(frame.lidar2img[cam], box_corners(b[:3], b[3:6], b[6]))
        if (
            (cd > 0).all()
            and cuv[:, 0].min() <= uv[i, 0] <= cuv[:, 0].max()
            and cuv[:, 1].min() <= uv[i, 1] <= cuv[:, 1].max()
        ):
            return False
    return True


def test_projected_box_centres_hit_object_colour(dataset, nusc):
    hits, total = 0, 0
    for sample in nusc.scene_samples(nusc.scenes[0])[::2]:
        frame, gt = build_frame_inputs(nusc, sample), build_ground_truth(nusc, sample)
        images = load_images(frame.image_paths)
        for cam in range(6):
            uv, depth = project_points(frame.lidar2img[cam], gt.boxes[:, :3])
            for i in range(len(gt.boxes)):
                u, v = np.round(uv[i]).astype(int)
                if (
                    depth[i] < 1.0
                    or not (0 <= u < 1600 and 0 <= v < 900)
                    or not _unoccluded(frame, gt, cam, i, uv, depth)
                ):
                    continue
                colour = np.array(dataset.instance_colors[gt.instance_tokens[i]])
                total += 1
                hits += int(np.abs(images[cam, v, u].astype(int) - colour).max() < 30)
    assert total >= 20
    print("projection hits", hits, total)
    assert hits / total >= 0.95, (hits, total)


def _world_in_lidar(world, t_us, xyz):
    lidar_to_ego = np.eye(4)
    lidar_to_ego[:3, :3] = quat_to_rot(LIDAR_CALIBRATION[1])
    lidar_to_ego[:3, 3] = LIDAR_CALIBRATION[0]
    to_lidar = np.linalg.inv(world.ego_to_global(t_us) @ lidar_to_ego)
    return np.asarray(xyz) @ to_lidar[:3, :3].T + to_lidar[:3, 3]


def test_ground_truth_boxes_velocities_futures(dataset, nusc):
    world = dataset.worlds[0]
    by_colour = {o.color_bgr: o for o in world.objects}
    samples = nusc.scene_samples(nusc.scenes[0])
    sample = samples[1]
    gt = build_ground_truth(nusc, sample)
    assert set(n for n in gt.names) == set(DETECTION_CLASSES)
    assert np.all(gt.labels >= 0) and np.all(gt.valid_flag[np.linalg.norm(gt.boxes[:, :2], axis=1) < 50])
    for i, token in enumerate(gt.instance_tokens):
        obj = by_colour[dataset.instance_colors[token]]
        centre, _ = world.object_pose(obj, sample["timestamp"])
        np.testing.assert_allclose(
            gt.boxes[i, :3], _world_in_lidar(world, sample["timestamp"], centre[None])[0], atol=1e-6
        )
        np.testing.assert_allclose(gt.boxes[i, 3:6], [obj.size_wlh[1], obj.size_wlh[0], obj.size_wlh[2]])
        # Centred difference over +-0.5 s of the world trajectory, rotated into the lidar frame.
        p0 = world.object_pose(obj, samples[0]["timestamp"])[0]
        p2 = world.object_pose(obj, samples[2]["timestamp"])[0]
        vel = (p2 - p0) / 1.0
        rot = np.linalg.inv(world.ego_to_global(sample["timestamp"])[:3, :3] @ quat_to_rot(LIDAR_CALIBRATION[1]))
        np.testing.assert_allclose(gt.velocities[i], (rot @ vel)[:2], atol=1e-6)
        # Futures: cumulative offsets from the box centre reach the world positions of the next samples.
        n_future = len(samples) - 2
        np.testing.assert_array_equal(gt.agent_fut_masks[i], [1.0] * n_future + [0.0] * (12 - n_future))
        future = [world.object_pose(obj, s["timestamp"])[0] for s in samples[2:]]
        expected = _world_in_lidar(world, sample["timestamp"], np.array(future))[:, :2]
        np.testing.assert_allclose(
            gt.boxes[i, :2] + np.cumsum(gt.agent_fut_trajs[i, :n_future], axis=0), expected, atol=1e-6
        )


def test_ego_future_and_command(dataset, nusc, tmp_path):
    samples = nusc.scene_samples(nusc.scenes[0])
    gt0 = build_ground_truth(nusc, samples[0])
    np.testing.assert_array_equal(gt0.ego_fut_masks, [1, 1, 1, 0, 0, 0])
    path = np.cumsum(gt0.ego_fut_trajs, axis=0)
    world = dataset.worlds[0]
    lidar_origin = np.r_[LIDAR_CALIBRATION[0], 1.0]
    expected = _world_in_lidar(
        world,
        samples[0]["timestamp"],
        np.array([(world.ego_to_global(s["timestamp"]) @ lidar_origin)[:3] for s in samples[1:]]),
    )
    np.testing.assert_allclose(path[:3], expected[:, :2], atol=1e-6)
    np.testing.assert_allclose(path[3:], np.repeat(path[2:3], 3, axis=0), atol=1e-9)  # repeated, masked
    assert path[-1, 0] <= -2.0 and build_frame_inputs(nusc, samples[0]).command == COMMAND_LEFT
    np.testing.assert_array_equal(gt0.ego_fut_cmd, [0, 1, 0])
    straight = generate_dataset(tmp_path, SyntheticConfig(seconds=1.0, road=RoadShape.STRAIGHT, render_images=False))
    nusc_s = NuScenes(straight.dataroot, straight.version)
    first = nusc_s.scene_samples(nusc_s.scenes[0])[0]
    frame = build_frame_inputs(nusc_s, first)
    assert frame.command == COMMAND_STRAIGHT
    # CAN bus: forward speed of the ego in the vehicle frame.
    assert frame.ego_status[6] == pytest.approx(7.0)


def _road_coords(world, xy):
    """Global xy -> (s, |d|) by nearest centreline sample."""
    road = world.road
    out = []
    for p in xy:
        dist = np.hypot(road.x - p[0], road.y - p[1])
        i = int(np.argmin(dist))
        out.append((road.s[i], dist[i]))
    return np.array(out)


def test_map_ground_truth_lies_on_road_elements(dataset, nusc):
    world = dataset.worlds[0]
    sample = nusc.scene_samples(nusc.scenes[0])[1]
    frame, gt = build_frame_inputs(nusc, sample), build_ground_truth(nusc, sample)
    lines = gt.map_polylines
    assert lines["boundary"] and lines["divider"] and lines["ped_crossing"]

    def to_global(pts):
        return (np.c_[pts, np.zeros(len(pts))] @ frame.T_global[:3, :3].T + frame.T_global[:3, 3])[:, :2]

    for line in lines["boundary"]:
        assert np.all(np.abs(line[:, 0]) <= 14.8 + 1e-6) and np.all(np.abs(line[:, 1]) <= 29.8 + 1e-6)
        d = _road_coords(world, to_global(line))[:, 1]
        np.testing.assert_allclose(d, ROAD_HALF_WIDTH, atol=0.12)  # raster union: ~5 cm cells + lidar tilt
    for line in lines["divider"]:
        d = _road_coords(world, to_global(line))[:, 1]
        assert np.all(np.min(np.abs(d[:, None] - np.array([0.0, 3.5])[None]), axis=1) < 0.08)
    for line in lines["ped_crossing"]:
        s = _road_coords(world, to_global(line))[:, 0]
        assert np.all((s > 31.5) & (s < 36.5)) or np.all((s > -30.5) & (s < -25.5))


def test_image_loader_errors(tmp_path, dataset, nusc):
    frame = build_frame_inputs(nusc, nusc.scene_samples(nusc.scenes[0])[0])
    assert load_image(frame.image_paths[0]).shape == (900, 1600, 3)
    with pytest.raises(ImageLoadError, match="does not exist"):
        load_image(tmp_path / "missing.jpg")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(ImageLoadError, match="corrupt"):
        load_image(bad)
