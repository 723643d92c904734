"""Generate a small, valid nuScenes (v1.0-mini schema) dataset from a synthetic 3-D world.

Writes the 13 tables, a map record with its mask PNG, a v1.3 map-expansion vector map, optional CAN bus, and
1600x900 JPEGs of six cameras at 12 Hz (sweeps + 2 Hz key frames) with the real nuScenes sensor names,
extrinsics, intrinsics and exposure offsets. Annotations are exact (the world is known).

>>> from sparsedrive_ros.data.synthetic import SyntheticConfig, generate_dataset
>>> ds = generate_dataset("/tmp/nusc_synth", SyntheticConfig(seconds=2.0))   # doctest: +SKIP
>>> ds.dataroot, ds.version, ds.scene_names                                   # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from sparsedrive_ros.data.nuscenes import CAMERA_ORDER, LIDAR_CHANNEL
from sparsedrive_ros.data.render import CameraModel, build_static_scene, render_camera
from sparsedrive_ros.data.synthetic_world import (
    CAMERA_CALIBRATION,
    CAMERA_PERIOD_US,
    EGO_LANE_D,
    LANE_WIDTH,
    LIDAR_CALIBRATION,
    LIDAR_PERIOD_US,
    ROAD_HALF_WIDTH,
    SAMPLE_PERIOD_US,
    SIDEWALK_WIDTH,
    ObjectSpec,
    Road,
    RoadShape,
    World,
)
from sparsedrive_ros.geometry import transform_from_quat, yaw_to_quat

Record = dict[str, Any]
BASE_TIME_US = 1_533_000_000_000_000  # 2018-07-31, the nuScenes era
# v1.0-mini scene names, val first: the official split helpers then treat generated scenes as mini_val/train.
MINI_SCENE_NAMES = ("scene-0103", "scene-0916", "scene-0061", "scene-0553", "scene-0655", "scene-0757",
                    "scene-0796", "scene-1077", "scene-1094", "scene-1100")
ATTRIBUTES = ("vehicle.moving", "vehicle.stopped", "vehicle.parked", "cycle.with_rider", "cycle.without_rider",
              "pedestrian.sitting_lying_down", "pedestrian.standing", "pedestrian.moving")
CATEGORIES = (
    "human.pedestrian.adult", "human.pedestrian.child", "human.pedestrian.wheelchair", "human.pedestrian.stroller",
    "human.pedestrian.personal_mobility", "human.pedestrian.police_officer", "human.pedestrian.construction_worker",
    "animal", "vehicle.car", "vehicle.motorcycle", "vehicle.bicycle", "vehicle.bus.bendy", "vehicle.bus.rigid",
    "vehicle.truck", "vehicle.construction", "vehicle.emergency.ambulance", "vehicle.emergency.police",
    "vehicle.trailer", "movable_object.barrier", "movable_object.trafficcone",
    "movable_object.pushable_pullable", "movable_object.debris", "static_object.bicycle_rack",
)
VISIBILITY_LEVELS = (("1", "v0-40"), ("2", "v40-60"), ("3", "v60-80"), ("4", "v80-100"))
ANNOTATION_RANGE_M = 75.0
LIDAR_POINTS_RANGE_M = 60.0
CROSSING_LENGTH_M = 4.0


@dataclass(frozen=True)
class SyntheticConfig:
    """What to generate. Defaults: one 3 s scene (7 key frames, 37 images per camera), road turning left."""

    seconds: float = 3.0  # scene length; key frames every 0.5 s
    seed: int = 0
    num_scenes: int = 1
    width: int = 1600
    height: int = 900
    noise: float = 0.0  # std of additive Gaussian pixel noise (0..255 scale)
    road: RoadShape | None = None  # None: scene k gets (left, straight, right)[(seed + k) % 3]
    curve_radius: float = 40.0
    turn_start: float = 4.0  # arc length (m) ahead of the ego start where the curve begins
    ego_speed: float = 7.0  # m/s
    extra_objects: int = 3  # parked cars in addition to the 16 objects covering all 10 classes
    jpeg_quality: int = 90
    can_bus: bool = True
    render_images: bool = True  # False: tables, maps and CAN bus only (fast; image files are not written)
    lidar_files: bool = True  # small LIDAR_TOP .pcd.bin files (ground points only) so path checks pass
    version: str = "v1.0-mini"
    location: str = "boston-seaport"

    def __post_init__(self) -> None:
        if self.seconds < 0.5:
            raise ValueError(f"seconds must be >= 0.5 (two key frames), got {self.seconds}")
        if not 1 <= self.num_scenes <= len(MINI_SCENE_NAMES):
            raise ValueError(f"num_scenes must be in 1..{len(MINI_SCENE_NAMES)}, got {self.num_scenes}")
        if self.width < 16 or self.height < 16:
            raise ValueError(f"image width x height must be at least 16x16, got {self.width}x{self.height}")
        if not 0 <= self.noise <= 100:
            raise ValueError(f"noise must be in [0, 100], got {self.noise}")
        if self.ego_speed < 0 or self.ego_speed > 30:
            raise ValueError(f"ego_speed must be in [0, 30] m/s, got {self.ego_speed}")

    @property
    def num_samples(self) -> int:
        return int(round(self.seconds * 2)) + 1


@dataclass(frozen=True)
class SyntheticDataset:
    dataroot: Path
    version: str
    scene_names: tuple[str, ...]
    location: str
    num_samples: int
    num_images: int
    worlds: tuple[World, ...] = field(repr=False)
    instance_colors: dict[str, tuple[int, int, int]] = field(repr=False, default_factory=dict)  # instance -> BGR
    seconds_rendering: float = 0.0  # rendering + JPEG encoding, excluding table writing


class _Tokens:
    """Deterministic 32-hex tokens, unique per (seed, kind, key)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._counter = 0

    def __call__(self, *key: object) -> str:
        return hashlib.md5(f"{self.seed}/{'/'.join(map(str, key))}".encode()).hexdigest()

    def fresh(self, kind: str) -> str:
        self._counter += 1
        return self(kind, self._counter)


def _hue_colors(n: int, rng: np.random.Generator) -> list[tuple[int, int, int]]:
    """n saturated BGR colours with evenly spaced hues (shuffled), far from the greys of the road."""
    hues = (np.arange(n) * 180.0 / n).astype(np.uint8)[rng.permutation(n)]
    hsv = np.stack([hues, np.full(n, 235, np.uint8), np.full(n, 225, np.uint8)], axis=1)[None]
    bgr = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0]
    return [(int(col[0]), int(col[1]), int(col[2])) for col in bgr]


def _object_specs(cfg: SyntheticConfig, rng: np.random.Generator) -> list[ObjectSpec]:
    v = cfg.ego_speed
    pi = float(np.pi)
    lane2 = -1.5 * LANE_WIDTH  # the ego direction's outer lane
    kerb = ROAD_HALF_WIDTH + 1.6  # parked on the sidewalk edge
    table = [
        # name, category, (w, l, h), s0, d, speed, yaw_offset, attribute
        ("car", "vehicle.car", (1.9, 4.6, 1.6), 14.0, lane2, v + 0.5, 0.0, "vehicle.moving"),
        ("car", "vehicle.car", (1.9, 4.4, 1.5), 45.0, LANE_WIDTH / 2, -8.0, pi, "vehicle.moving"),
        ("car", "vehicle.car", (1.8, 4.3, 1.5), -8.0, kerb, 0.0, 0.0, "vehicle.parked"),
        ("truck", "vehicle.truck", (2.5, 7.0, 3.0), 28.0, EGO_LANE_D, v, 0.0, "vehicle.moving"),
        ("bus", "vehicle.bus.rigid", (2.9, 11.0, 3.4), 42.0, 1.5 * LANE_WIDTH, -6.0, pi, "vehicle.moving"),
        ("construction_vehicle", "vehicle.construction", (2.8, 6.0, 3.2), 30.0, -kerb, 0.0, 0.0, "vehicle.parked"),
        ("trailer", "vehicle.trailer", (2.6, 10.0, 3.8), -24.0, kerb, 0.0, pi, "vehicle.parked"),
        ("barrier", "movable_object.barrier", (2.2, 0.5, 1.0), 9.0, -8.0, 0.0, pi / 2, None),
        ("barrier", "movable_object.barrier", (2.2, 0.5, 1.0), 11.8, -8.0, 0.0, pi / 2, None),
        ("motorcycle", "vehicle.motorcycle", (0.8, 2.1, 1.5), -14.0, lane2, v + 1.0, 0.0, "cycle.with_rider"),
        ("bicycle", "vehicle.bicycle", (0.6, 1.7, 1.3), 6.0, -ROAD_HALF_WIDTH + 0.8, 4.0, 0.0, "cycle.with_rider"),
        ("pedestrian", "human.pedestrian.adult", (0.7, 0.7, 1.75), 4.0, -ROAD_HALF_WIDTH - SIDEWALK_WIDTH + 0.7,
         1.3, 0.0, "pedestrian.moving"),
        ("pedestrian", "human.pedestrian.adult", (0.7, 0.7, 1.75), 20.0, ROAD_HALF_WIDTH + 1.0, -1.2, pi,
         "pedestrian.moving"),
        ("traffic_cone", "movable_object.trafficcone", (0.4, 0.4, 0.8), 16.0, -7.5, 0.0, 0.0, None),
        ("traffic_cone", "movable_object.trafficcone", (0.4, 0.4, 0.8), 18.0, -7.5, 0.0, 0.0, None),
        ("traffic_cone", "movable_object.trafficcone", (0.4, 0.4, 0.8), 20.0, -7.5, 0.0, 0.0, None),
    ]
    # Extra parked cars on the far sidewalk edge, spaced so that they never overlap.
    for i in range(cfg.extra_objects):
        table.append(("car", "vehicle.car", (1.8, 4.5, 1.5), 8.0 + 9.0 * i, kerb, 0.0, 0.0, "vehicle.parked"))
    colors = _hue_colors(len(table), rng)
    specs = []
    for (name, cat, wlh, s0, d, speed, yaw_off, attr), color in zip(table, colors):
        jitter = float(rng.uniform(-0.8, 0.8)) if speed != 0.0 or name == "pedestrian" else 0.0
        specs.append(ObjectSpec(name, cat, wlh, s0 + jitter, d, speed, yaw_off, color, attr))
    return specs


def _scene_world(cfg: SyntheticConfig, k: int, t0_us: int) -> World:
    rng = np.random.default_rng([cfg.seed, k])
    shape = cfg.road or (RoadShape.LEFT, RoadShape.STRAIGHT, RoadShape.RIGHT)[(cfg.seed + k) % 3]
    origin = (600.0 + 700.0 * k, 1200.0 + float(rng.uniform(-50, 50)))
    heading = float(rng.uniform(-np.pi, np.pi))
    span = 12.0 * cfg.seconds
    road = Road(origin, heading, shape, cfg.curve_radius, cfg.turn_start, s_min=-160.0 - span, s_max=200.0 + span)
    return World(road, _object_specs(cfg, rng), cfg.ego_speed, t0_us)


class _DatasetWriter:
    """Accumulates the 13 tables and writes files under the dataroot."""

    def __init__(self, cfg: SyntheticConfig, root: Path) -> None:
        self.cfg, self.root = cfg, root
        self.tok = _Tokens(cfg.seed)
        self.tables: dict[str, list[Record]] = {n: [] for n in (
            "category", "attribute", "visibility", "instance", "sensor", "calibrated_sensor", "ego_pose", "log",
            "scene", "sample", "sample_data", "sample_annotation", "map")}
        self.logfile = "n015-2018-07-31-00-00-00+0000-synthetic"
        self.log_token = self.tok("log")
        self.instance_colors: dict[str, tuple[int, int, int]] = {}
        self._write_static_tables()

    def _write_static_tables(self) -> None:
        t = self.tables
        for i, name in enumerate(CATEGORIES):
            t["category"].append({"token": self.tok("category", name), "name": name,
                                  "description": f"synthetic {name}", "index": i})
        for name in ATTRIBUTES:
            t["attribute"].append({"token": self.tok("attribute", name), "name": name, "description": name})
        for token, level in VISIBILITY_LEVELS:
            t["visibility"].append({"token": token, "level": level, "description": f"visibility {level}"})
        for channel in (*CAMERA_ORDER, LIDAR_CHANNEL):
            t["sensor"].append({"token": self.tok("sensor", channel), "channel": channel,
                                "modality": "lidar" if channel == LIDAR_CHANNEL else "camera"})
        t["log"].append({"token": self.log_token, "logfile": self.logfile, "vehicle": "n015",
                         "date_captured": "2018-07-31", "location": self.cfg.location})
        map_token = self.tok("map")
        t["map"].append({"token": map_token, "log_tokens": [self.log_token], "category": "semantic_prior",
                         "filename": f"maps/{map_token}.png"})
        (self.root / "maps").mkdir(parents=True, exist_ok=True)
        mask = np.zeros((64, 64), np.uint8)
        mask[16:48, :] = 255
        cv2.imwrite(str(self.root / "maps" / f"{map_token}.png"), mask)

    def camera_models(self) -> dict[str, CameraModel]:
        sx, sy = self.cfg.width / 1600.0, self.cfg.height / 900.0
        models = {}
        for ch, (trans, rot, (f, cx, cy), _) in CAMERA_CALIBRATION.items():
            k = np.array([[f * sx, 0.0, cx * sx], [0.0, f * sy, cy * sy], [0.0, 0.0, 1.0]])
            models[ch] = CameraModel(k, transform_from_quat(rot, trans), self.cfg.width, self.cfg.height)
        return models

    def calibrated_sensors(self, scene_idx: int, cams: dict[str, CameraModel]) -> dict[str, str]:
        tokens = {}
        for ch in (*CAMERA_ORDER, LIDAR_CHANNEL):
            token = self.tok("calibrated_sensor", scene_idx, ch)
            trans: tuple[float, ...]
            rot: tuple[float, ...]
            if ch == LIDAR_CHANNEL:
                trans, rot, intrinsic = LIDAR_CALIBRATION[0], LIDAR_CALIBRATION[1], []
            else:
                trans, rot = CAMERA_CALIBRATION[ch][0], CAMERA_CALIBRATION[ch][1]
                intrinsic = cams[ch].intrinsic.tolist()
            rot_n = (np.asarray(rot) / np.linalg.norm(rot)).tolist()
            self.tables["calibrated_sensor"].append({
                "token": token, "sensor_token": self.tok("sensor", ch), "translation": list(trans),
                "rotation": rot_n, "camera_intrinsic": intrinsic})
            tokens[ch] = token
        return tokens

    def write_tables(self) -> None:
        table_dir = self.root / self.cfg.version
        table_dir.mkdir(parents=True, exist_ok=True)
        for name, records in self.tables.items():
            with (table_dir / f"{name}.json").open("w") as f:
                json.dump(records, f, indent=1)


def _sensor_times(cfg: SyntheticConfig, t0_us: int) -> dict[str, list[tuple[int, bool, int]]]:
    """channel -> [(timestamp_us, is_key_frame, sample index it belongs to)]: 12 Hz cameras, 20 Hz lidar."""
    n = cfg.num_samples
    out: dict[str, list[tuple[int, bool, int]]] = {}
    for ch in CAMERA_ORDER:
        offset = CAMERA_CALIBRATION[ch][3] * 1000.0
        out[ch] = [(int(round(t0_us + offset + j * CAMERA_PERIOD_US)), j % 6 == 0, -(-j // 6))
                   for j in range(6 * (n - 1) + 1)]
    out[LIDAR_CHANNEL] = [(t0_us + j * LIDAR_PERIOD_US, j % 10 == 0, -(-j // 10)) for j in range(10 * (n - 1) + 1)]
    return out


def _ground_points() -> NDArray[np.float32]:
    """[N, 5] LIDAR_TOP points (x, y, z, intensity, ring) on the ground around the car; a file placeholder."""
    ang = np.linspace(0, 2 * np.pi, 360, endpoint=False)
    rings = np.arange(4.0, 40.0, 3.0)
    r, a = np.meshgrid(rings, ang)
    x, y = (r * np.cos(a)).ravel(), (r * np.sin(a)).ravel()
    z = np.full_like(x, -LIDAR_CALIBRATION[0][2])
    ring = np.tile(np.arange(len(rings)), len(ang)).astype(np.float64)
    return np.stack([x, y, z, np.full_like(x, 10.0), ring], axis=1).astype(np.float32)


def _write_scene(w: _DatasetWriter, k: int, world: World) -> tuple[int, float]:
    cfg, tok, t = w.cfg, w.tok, w.tables
    scene_name = MINI_SCENE_NAMES[k]
    scene_token = tok("scene", k)
    sample_tokens = [tok("sample", k, i) for i in range(cfg.num_samples)]
    t0 = world.t0_us
    for i, st in enumerate(sample_tokens):
        t["sample"].append({"token": st, "timestamp": t0 + i * SAMPLE_PERIOD_US, "scene_token": scene_token,
                            "prev": sample_tokens[i - 1] if i > 0 else "",
                            "next": sample_tokens[i + 1] if i + 1 < len(sample_tokens) else ""})
    t["scene"].append({"token": scene_token, "log_token": w.log_token, "nbr_samples": cfg.num_samples,
                       "first_sample_token": sample_tokens[0], "last_sample_token": sample_tokens[-1],
                       "name": scene_name, "description": f"synthetic {world.road.shape.value} road, seed {cfg.seed}"})
    cams = w.camera_models()
    calib = w.calibrated_sensors(k, cams)
    s_lo, s_hi = -60.0, world.ego_s(t0 + cfg.num_samples * SAMPLE_PERIOD_US) + 110.0
    static = build_static_scene(world.road, s_lo, s_hi, crossings=_crossings(world))
    noise_rng = np.random.default_rng([cfg.seed, k, 7])
    noise_bank = (noise_rng.normal(0.0, cfg.noise, (cfg.height + 64, cfg.width + 64, 3)).astype(np.float32)
                  if cfg.noise > 0 else None)
    points = _ground_points()
    num_images, render_s = 0, 0.0
    for ch, times in _sensor_times(cfg, t0).items():
        folder_tokens = [tok("sample_data", k, ch, j) for j in range(len(times))]
        for j, (ts, key, sample_idx) in enumerate(times):
            folder = "samples" if key else "sweeps"
            ext = "pcd.bin" if ch == LIDAR_CHANNEL else "jpg"
            filename = f"{folder}/{ch}/{w.logfile}__{ch}__{ts}.{ext}"
            path = w.root / filename
            path.parent.mkdir(parents=True, exist_ok=True)
            if ch == LIDAR_CHANNEL:
                if cfg.lidar_files:
                    points.tofile(path)
            elif cfg.render_images:
                start = time.perf_counter()
                image = render_camera(world, static, cams[ch], ts)
                if noise_bank is not None:
                    oy, ox = noise_rng.integers(0, 64, 2)
                    noisy = image + noise_bank[oy:oy + cfg.height, ox:ox + cfg.width]
                    image = np.clip(noisy, 0, 255).astype(np.uint8)
                ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, cfg.jpeg_quality])
                if not ok:
                    raise RuntimeError(f"JPEG encoding failed for {filename}")
                buf.tofile(path)
                render_s += time.perf_counter() - start
                num_images += 1
            pose_token = tok("ego_pose", k, ch, j)
            rot, trans = world.ego_pose_record(ts)
            t["ego_pose"].append({"token": pose_token, "timestamp": ts, "rotation": rot, "translation": trans})
            t["sample_data"].append({
                "token": folder_tokens[j], "sample_token": sample_tokens[sample_idx], "ego_pose_token": pose_token,
                "calibrated_sensor_token": calib[ch], "timestamp": ts,
                "fileformat": "pcd" if ch == LIDAR_CHANNEL else "jpg", "is_key_frame": key,
                "height": 0 if ch == LIDAR_CHANNEL else cfg.height, "width": 0 if ch == LIDAR_CHANNEL else cfg.width,
                "filename": filename, "prev": folder_tokens[j - 1] if j > 0 else "",
                "next": folder_tokens[j + 1] if j + 1 < len(times) else ""})
    _write_annotations(w, k, world, sample_tokens)
    if cfg.can_bus:
        _write_can_bus(w.root / "can_bus", scene_name, world, t0, cfg.num_samples)
    return num_images, render_s


def _crossings(world: World) -> list[tuple[float, float]]:
    """(s_start, length) of the zebra crossings: one ahead of the ego start, one behind."""
    return [(32.0, CROSSING_LENGTH_M), (-30.0, CROSSING_LENGTH_M)]


def _num_lidar_pts(dist: float, wlh: tuple[float, float, float]) -> int:
    if dist > LIDAR_POINTS_RANGE_M:
        return 0
    return int(np.clip(3000.0 * wlh[1] * wlh[2] / max(dist, 2.0) ** 2, 1, 5000))


def _write_annotations(w: _DatasetWriter, k: int, world: World, sample_tokens: list[str]) -> None:
    t, tok = w.tables, w.tok
    times = [world.t0_us + i * SAMPLE_PERIOD_US for i in range(len(sample_tokens))]
    for o, obj in enumerate(world.objects):
        lidar_xy = [world.ego_to_global(ts) @ np.r_[LIDAR_CALIBRATION[0], 1.0] for ts in times]
        dists = [float(np.linalg.norm(world.object_pose(obj, ts)[0][:2] - p[:2])) for ts, p in zip(times, lidar_xy)]
        in_range = [i for i, dist in enumerate(dists) if dist <= ANNOTATION_RANGE_M]
        if not in_range:
            continue
        idx = list(range(in_range[0], in_range[-1] + 1))
        inst = tok("instance", k, o)
        ann_tokens = [tok("sample_annotation", k, o, i) for i in idx]
        for n, i in enumerate(idx):
            centre, yaw = world.object_pose(obj, times[i])
            pts = _num_lidar_pts(dists[i], obj.size_wlh)
            t["sample_annotation"].append({
                "token": ann_tokens[n], "sample_token": sample_tokens[i], "instance_token": inst,
                "visibility_token": "4" if pts > 0 else "1",
                "attribute_tokens": [tok("attribute", obj.attribute)] if obj.attribute else [],
                "translation": centre.tolist(), "size": list(obj.size_wlh), "rotation": yaw_to_quat(yaw).tolist(),
                "prev": ann_tokens[n - 1] if n > 0 else "", "next": ann_tokens[n + 1] if n + 1 < len(idx) else "",
                "num_lidar_pts": pts, "num_radar_pts": 0})
        w.instance_colors[inst] = obj.color_bgr
        t["instance"].append({"token": inst, "category_token": tok("category", obj.category),
                              "nbr_annotations": len(idx), "first_annotation_token": ann_tokens[0],
                              "last_annotation_token": ann_tokens[-1]})


def _write_can_bus(folder: Path, scene_name: str, world: World, t0: int, num_samples: int) -> None:
    """``pose`` at 50 Hz and ``steeranglefeedback`` at 100 Hz over the scene (vehicle frame: x fwd, y left)."""
    folder.mkdir(parents=True, exist_ok=True)
    end = t0 + (num_samples - 1) * SAMPLE_PERIOD_US
    v = world.ego_speed
    pose, steer = [], []
    for ts in range(t0 - 1_000_000, end + 1_000_000, 20_000):
        s = world.ego_s(ts)
        kappa = float(np.interp(s, world.road.s, world.road.kappa))
        rot, trans = world.ego_pose_record(ts)
        pose.append({"utime": ts, "pos": trans, "orientation": rot, "vel": [v, 0.0, 0.0],
                     "accel": [0.0, v * v * kappa, 9.81], "rotation_rate": [0.0, 0.0, v * kappa]})
        steer.append({"utime": ts, "value": float(np.arctan(2.8 * kappa) * 15.0)})
        steer.append({"utime": ts + 10_000, "value": float(np.arctan(2.8 * kappa) * 15.0)})
    for name, msgs in (("pose", pose), ("steeranglefeedback", steer)):
        with (folder / f"{scene_name}_{name}.json").open("w") as f:
            json.dump(msgs, f)


def generate_dataset(out_dir: str | Path, config: SyntheticConfig = SyntheticConfig()) -> SyntheticDataset:
    """Write a synthetic nuScenes dataroot to ``out_dir`` (created; existing files are overwritten)."""
    from sparsedrive_ros.data.synthetic_map import write_map_expansion  # local: keeps imports one-way

    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    writer = _DatasetWriter(config, root)
    worlds, num_images, render_s = [], 0, 0.0
    for k in range(config.num_scenes):
        world = _scene_world(config, k, BASE_TIME_US + config.seed * 1_000_000 + k * 3_600_000_000)
        n, secs = _write_scene(writer, k, world)
        worlds.append(world)
        num_images += n
        render_s += secs
    writer.write_tables()
    write_map_expansion(root, config.location, worlds, [_crossings(wd) for wd in worlds], writer.tok, config.seconds)
    return SyntheticDataset(root, config.version, tuple(MINI_SCENE_NAMES[:config.num_scenes]), config.location,
                            config.num_samples * config.num_scenes, num_images, tuple(worlds),
                            writer.instance_colors, render_s)
