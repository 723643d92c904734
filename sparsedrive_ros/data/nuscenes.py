"""A nuScenes reader without the devkit: tables, scene/key-frame/camera-stream walks, model inputs and GT.

Everything here reproduces what SparseDrive's converter + test pipeline feed the model (docs/model-notes.md#frames,
#inputs-and-preprocessing).
Frames: ``lidar`` = LIDAR_TOP at the key-frame time (x right, y forward, z up) — the model's working frame;
``ego`` = base_link; ``global`` = map frame. Times: nuScenes Unix microseconds in the tables, float64 seconds
in the outputs.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from numpy.typing import NDArray

from sparsedrive_ros.conventions import CAMERA_ORDER, DETECTION_CLASSES, LIDAR_CHANNEL, MAP_CLASSES
from sparsedrive_ros.data.can_bus import CanBus
from sparsedrive_ros.data.map_expansion import MapRoi, VectorMap, extract_map_elements
from sparsedrive_ros.geometry import (
    image_transform_matrix,
    invert_transform,
    lidar_to_global,
    lidar_to_image,
    quat_to_rot,
    sensor_to_lidar,
    transform_from_quat,
    wrap_angle,
)

Record = dict[str, Any]
F64 = NDArray[np.float64]

TABLE_NAMES = (
    "category", "attribute", "visibility", "instance", "sensor", "calibrated_sensor", "ego_pose", "log",
    "scene", "sample", "sample_data", "sample_annotation", "map",
)
# nuScenes general category -> detection class (categories absent here are not detection targets).
CATEGORY_TO_DETECTION = {
    "movable_object.barrier": "barrier",
    "vehicle.bicycle": "bicycle",
    "vehicle.bus.bendy": "bus",
    "vehicle.bus.rigid": "bus",
    "vehicle.car": "car",
    "vehicle.construction": "construction_vehicle",
    "vehicle.motorcycle": "motorcycle",
    "human.pedestrian.adult": "pedestrian",
    "human.pedestrian.child": "pedestrian",
    "human.pedestrian.construction_worker": "pedestrian",
    "human.pedestrian.police_officer": "pedestrian",
    "movable_object.trafficcone": "traffic_cone",
    "vehicle.trailer": "trailer",
    "vehicle.truck": "truck",
}
COMMAND_RIGHT, COMMAND_LEFT, COMMAND_STRAIGHT = 0, 1, 2
AGENT_FUTURE_STEPS = 12  # 0.5 s each -> 6 s
EGO_FUTURE_STEPS = 6  # 0.5 s each -> 3 s
COMMAND_LATERAL_THRESHOLD_M = 2.0
MAX_VELOCITY_TIME_DIFF_S = 1.5  # devkit box_velocity default


def us_to_s(timestamp_us: int) -> float:
    return timestamp_us / 1e6


class NuScenes:
    """The 13 tables of ``<dataroot>/<version>/``, parsed once and indexed by token."""

    def __init__(self, dataroot: str | Path, version: str = "v1.0-mini") -> None:
        self.dataroot = Path(dataroot)
        self.version = version
        table_dir = self.dataroot / version
        if not table_dir.is_dir():
            raise ValueError(f"nuScenes table directory {str(table_dir)!r} does not exist")
        self.tables: dict[str, list[Record]] = {name: self._load_table(table_dir, name) for name in TABLE_NAMES}
        self._index = {name: {rec["token"]: rec for rec in recs} for name, recs in self.tables.items()}
        self._table_pos = {name: {rec["token"]: i for i, rec in enumerate(recs)} for name, recs in self.tables.items()}
        self._channel_of_calib = {
            cs["token"]: self.get("sensor", cs["sensor_token"])["channel"] for cs in self.tables["calibrated_sensor"]
        }
        self._key_data: dict[str, dict[str, str]] = {}
        for sd in self.tables["sample_data"]:
            if sd["is_key_frame"]:
                self._key_data.setdefault(sd["sample_token"], {})[self.channel(sd)] = sd["token"]
        self._anns: dict[str, list[str]] = {}
        for ann in self.tables["sample_annotation"]:
            self._anns.setdefault(ann["sample_token"], []).append(ann["token"])
        self._can_bus = CanBus(self.dataroot / "can_bus")
        self._maps: dict[str, VectorMap | None] = {}

    @staticmethod
    def _load_table(table_dir: Path, name: str) -> list[Record]:
        path = table_dir / f"{name}.json"
        if not path.is_file():
            raise ValueError(f"nuScenes table {str(path)!r} is missing (all 13 tables are required)")
        with path.open() as f:
            data = json.load(f)
        if not isinstance(data, list):
            raise ValueError(f"nuScenes table {str(path)!r} is not a JSON list")
        return data

    # --- records ---------------------------------------------------------------------------------------------
    def get(self, table: str, token: str) -> Record:
        try:
            return self._index[table][token]
        except KeyError:
            raise ValueError(f"no record {token!r} in nuScenes table {table!r}") from None

    def index_of(self, table: str, token: str) -> int:
        """Position in the table (the converter's ``nusc.getind``; used as instance id)."""
        return self._table_pos[table][token]

    def channel(self, sample_data: Record) -> str:
        return self._channel_of_calib[sample_data["calibrated_sensor_token"]]

    def key_sample_data(self, sample: Record, channel: str) -> Record:
        try:
            return self.get("sample_data", self._key_data[sample["token"]][channel])
        except KeyError:
            raise ValueError(f"sample {sample['token']!r} has no key frame for channel {channel!r}") from None

    def annotations(self, sample: Record) -> list[Record]:
        return [self.get("sample_annotation", t) for t in self._anns.get(sample["token"], [])]

    def sensor_to_ego(self, sample_data: Record) -> F64:
        cs = self.get("calibrated_sensor", sample_data["calibrated_sensor_token"])
        return transform_from_quat(cs["rotation"], cs["translation"])

    def ego_to_global(self, sample_data: Record) -> F64:
        pose = self.get("ego_pose", sample_data["ego_pose_token"])
        return transform_from_quat(pose["rotation"], pose["translation"])

    def intrinsic(self, sample_data: Record) -> F64:
        cs = self.get("calibrated_sensor", sample_data["calibrated_sensor_token"])
        k = np.asarray(cs["camera_intrinsic"], dtype=np.float64)
        if k.shape != (3, 3):
            raise ValueError(f"calibrated_sensor {cs['token']!r} has no 3x3 camera_intrinsic")
        return k

    def location(self, scene: Record) -> str:
        return self.get("log", scene["log_token"])["location"]

    # --- walks -----------------------------------------------------------------------------------------------
    @property
    def scenes(self) -> list[Record]:
        return self.tables["scene"]

    def scene(self, name_or_token: str) -> Record:
        for scene in self.scenes:
            if name_or_token in (scene["name"], scene["token"]):
                return scene
        names = [s["name"] for s in self.scenes]
        raise ValueError(f"no scene {name_or_token!r} in {self.version} (scenes: {names})")

    def scene_samples(self, scene: Record) -> list[Record]:
        """Key frames (2 Hz) of a scene in time order."""
        samples, token = [], scene["first_sample_token"]
        while token:
            sample = self.get("sample", token)
            samples.append(sample)
            token = sample["next"]
        return samples

    def channel_stream(self, scene: Record, channel: str) -> list[Record]:
        """All sample_data of one channel in the scene (key frames and sweeps, e.g. 12 Hz cameras) in time order."""
        first = self.key_sample_data(self.get("sample", scene["first_sample_token"]), channel)
        while first["prev"]:
            first = self.get("sample_data", first["prev"])
        stream, rec = [], first
        while True:
            stream.append(rec)
            if not rec["next"]:
                return stream
            rec = self.get("sample_data", rec["next"])

    def camera_events(self, scene: Record, channels: tuple[str, ...] = CAMERA_ORDER) -> list[tuple[int, str, Record]]:
        """(timestamp_us, channel, sample_data) of every camera image of the scene, merged in time order."""
        events = [(sd["timestamp"], ch, sd) for ch in channels for sd in self.channel_stream(scene, ch)]
        events.sort(key=lambda e: (e[0], channels.index(e[1])))
        return events

    def vector_map(self, location: str) -> VectorMap | None:
        if location not in self._maps:
            self._maps[location] = VectorMap.load(self.dataroot, location)
        return self._maps[location]

    def scene_of_sample(self, sample: Record) -> Record:
        return self.get("scene", sample["scene_token"])

    def iter_frames(self, scene: Record) -> Iterator["SampleInputs"]:
        for sample in self.scene_samples(scene):
            yield build_frame_inputs(self, sample)


@dataclass(frozen=True)
class SampleInputs:
    """The inputs of one nuScenes key frame (sample) as numpy arrays and image paths (the model's tensor
    container is :class:`sparsedrive_ros.model.FrameInputs`), exactly as the original test pipeline builds them
    (docs/model-notes.md#inputs-and-preprocessing).

    Per-camera arrays are in CAMERA_ORDER (FRONT, FRONT_RIGHT, FRONT_LEFT, BACK, BACK_LEFT, BACK_RIGHT).
    """

    sample_token: str
    scene_name: str
    location: str
    timestamp: float  # s, float64: the LIDAR_TOP key-frame (sample) time, the reference time
    camera_names: tuple[str, ...]
    image_paths: tuple[str, ...]  # absolute paths of the 1600x900 JPEGs
    camera_timestamps: F64  # [6] s, each camera's exposure time
    intrinsics: F64  # [6, 3, 3] K, 1600x900 pixels
    cam_to_ego: F64  # [6, 4, 4] calibrated_sensor, optical frame -> base_link
    sensor2lidar: F64  # [6, 4, 4] camera(t_cam) -> lidar(t_ref), through the global frame
    lidar2img: F64  # [6, 4, 4] lidar(t_ref) -> 1600x900 pixels
    projection_mat: F64  # [6, 4, 4] lidar(t_ref) -> 704x256 model-input pixels (= A · lidar2img)
    image_wh: F64  # [6, 2] = (704, 256)
    lidar_to_ego: F64  # [4, 4]
    ego_to_global: F64  # [4, 4] at the lidar time
    T_global: F64  # [4, 4] lidar -> global
    T_global_inv: F64  # [4, 4] global -> lidar
    command: int  # 0 right, 1 left, 2 straight (from the GT future ego path)
    ego_status: F64  # [10] CAN bus accel(3), rotation_rate(3), vel(3), steering; zeros when absent
    first_in_scene: bool


@dataclass(frozen=True)
class FrameGroundTruth:
    """Ground truth of one key frame in the lidar frame (converter info fields,
    docs/model-notes.md#inputs-and-preprocessing)."""

    boxes: F64  # [K, 7] x, y, z (geometric centre), l, w, h, yaw (ccw from +x, wrapped to [-pi, pi))
    velocities: F64  # [K, 2] m/s in the lidar frame (NaN when it cannot be computed)
    names: tuple[str, ...]  # detection class, or the raw category when it is not one of the 10
    labels: NDArray[np.int64]  # [K] index into DETECTION_CLASSES, -1 for other categories
    instance_tokens: tuple[str, ...]
    instance_ids: NDArray[np.int64]  # [K] position in the instance table
    num_lidar_pts: NDArray[np.int64]  # [K]
    num_radar_pts: NDArray[np.int64]  # [K]
    agent_fut_trajs: F64  # [K, 12, 2] per-step offsets (step 0 relative to the box centre), lidar frame
    agent_fut_masks: F64  # [K, 12]
    ego_fut_trajs: F64  # [6, 2] per-step offsets of the future lidar origin, lidar frame
    ego_fut_masks: F64  # [6]
    ego_fut_cmd: F64  # [3] one-hot (right, left, straight)
    map_polylines: dict[str, list[F64]] = field(default_factory=dict)  # class -> [M, 2] lidar-frame polylines

    @property
    def valid_flag(self) -> NDArray[np.bool_]:
        return (self.num_lidar_pts + self.num_radar_pts) > 0


def _camera_geometry(nusc: NuScenes, sample: Record, lidar_sd: Record) -> dict[str, Any]:
    lidar_to_ego = nusc.sensor_to_ego(lidar_sd)
    ego_to_global = nusc.ego_to_global(lidar_sd)
    a = image_transform_matrix()
    paths, stamps, ks, c2e, s2l, l2i = [], [], [], [], [], []
    for channel in CAMERA_ORDER:
        sd = nusc.key_sample_data(sample, channel)
        k = nusc.intrinsic(sd)
        cam_to_ego = nusc.sensor_to_ego(sd)
        sensor2lidar = sensor_to_lidar(cam_to_ego, nusc.ego_to_global(sd), ego_to_global, lidar_to_ego)
        paths.append(str(nusc.dataroot / sd["filename"]))
        stamps.append(us_to_s(sd["timestamp"]))
        ks.append(k)
        c2e.append(cam_to_ego)
        s2l.append(sensor2lidar)
        l2i.append(lidar_to_image(k, sensor2lidar))
    lidar2img = np.stack(l2i)
    return dict(
        image_paths=tuple(paths), camera_timestamps=np.asarray(stamps, dtype=np.float64), intrinsics=np.stack(ks),
        cam_to_ego=np.stack(c2e), sensor2lidar=np.stack(s2l), lidar2img=lidar2img,
        projection_mat=a[None] @ lidar2img, lidar_to_ego=lidar_to_ego, ego_to_global=ego_to_global,
    )


def lidar_pose_global(nusc: NuScenes, sample: Record) -> F64:
    """[4, 4] LIDAR_TOP -> global at the sample's key frame."""
    lidar_sd = nusc.key_sample_data(sample, LIDAR_CHANNEL)
    return lidar_to_global(nusc.sensor_to_ego(lidar_sd), nusc.ego_to_global(lidar_sd))


def ego_future(nusc: NuScenes, sample: Record) -> tuple[F64, F64, int]:
    """Future lidar origins of the next 6 samples in the current lidar frame.

    Returns ([6, 2] per-step offsets, [6] masks, command). Past the scene end the last pose repeats (offset 0,
    mask 0); the command thresholds the lateral x of the final (possibly repeated) position, like the original.
    """
    to_lidar = invert_transform(lidar_pose_global(nusc, sample))
    positions = np.zeros((EGO_FUTURE_STEPS + 1, 3))
    masks = np.zeros(EGO_FUTURE_STEPS + 1)
    current = sample
    for i in range(EGO_FUTURE_STEPS + 1):
        positions[i] = lidar_pose_global(nusc, current)[:3, 3]
        masks[i] = 1.0
        if not current["next"]:
            positions[i + 1:] = positions[i]
            break
        current = nusc.get("sample", current["next"])
    local = positions @ to_lidar[:3, :3].T + to_lidar[:3, 3]
    final_x = local[-1, 0]
    if final_x >= COMMAND_LATERAL_THRESHOLD_M:
        command = COMMAND_RIGHT
    elif final_x <= -COMMAND_LATERAL_THRESHOLD_M:
        command = COMMAND_LEFT
    else:
        command = COMMAND_STRAIGHT
    offsets = local[1:, :2] - local[:-1, :2]
    return offsets, masks[1:], command


def build_frame_inputs(nusc: NuScenes, sample: Record) -> SampleInputs:
    """Model inputs of one key frame (images are paths; load them with data.images.load_images)."""
    scene = nusc.scene_of_sample(sample)
    lidar_sd = nusc.key_sample_data(sample, LIDAR_CHANNEL)
    geo = _camera_geometry(nusc, sample, lidar_sd)
    t_global = lidar_to_global(geo["lidar_to_ego"], geo["ego_to_global"])
    _, _, command = ego_future(nusc, sample)
    return SampleInputs(
        sample_token=sample["token"],
        scene_name=scene["name"],
        location=nusc.location(scene),
        timestamp=us_to_s(sample["timestamp"]),
        camera_names=CAMERA_ORDER,
        image_wh=np.tile(np.asarray([704.0, 256.0]), (len(CAMERA_ORDER), 1)),
        T_global=t_global,
        T_global_inv=invert_transform(t_global),
        command=command,
        ego_status=nusc._can_bus.ego_status(scene["name"], sample["timestamp"]),
        first_in_scene=not sample["prev"],
        **geo,
    )


def box_velocity_global(nusc: NuScenes, ann: Record) -> F64:
    """[3] centred difference over prev/next annotations (devkit ``box_velocity``); NaN when unavailable."""
    has_prev, has_next = bool(ann["prev"]), bool(ann["next"])
    if not has_prev and not has_next:
        return np.full(3, np.nan)
    first = nusc.get("sample_annotation", ann["prev"]) if has_prev else ann
    last = nusc.get("sample_annotation", ann["next"]) if has_next else ann
    dt = us_to_s(nusc.get("sample", last["sample_token"])["timestamp"]) - us_to_s(
        nusc.get("sample", first["sample_token"])["timestamp"]
    )
    max_dt = MAX_VELOCITY_TIME_DIFF_S * (2.0 if has_prev and has_next else 1.0)
    if dt <= 0 or dt > max_dt:
        return np.full(3, np.nan)
    return (np.asarray(last["translation"]) - np.asarray(first["translation"])) / dt


def _box_in_lidar(ann: Record, global_to_lidar: F64) -> tuple[F64, float]:
    centre = global_to_lidar[:3, :3] @ np.asarray(ann["translation"], dtype=np.float64) + global_to_lidar[:3, 3]
    rot = global_to_lidar[:3, :3] @ quat_to_rot(ann["rotation"])
    return centre, float(np.arctan2(rot[1, 0], rot[0, 0]))


def _agent_future(nusc: NuScenes, ann: Record, centre: F64, global_to_lidar: F64) -> tuple[F64, F64]:
    offsets = np.zeros((AGENT_FUTURE_STEPS, 2))
    masks = np.zeros(AGENT_FUTURE_STEPS)
    current, prev_xy = ann, centre[:2]
    for j in range(AGENT_FUTURE_STEPS):
        if not current["next"]:
            break
        current = nusc.get("sample_annotation", current["next"])
        xy = (global_to_lidar[:3, :3] @ np.asarray(current["translation"]) + global_to_lidar[:3, 3])[:2]
        offsets[j] = xy - prev_xy
        masks[j] = 1.0
        prev_xy = xy
    return offsets, masks


def build_ground_truth(nusc: NuScenes, sample: Record, map_roi: MapRoi = MapRoi()) -> FrameGroundTruth:
    """Ground truth of one key frame in its lidar frame (all annotations; filter with ``labels``/``valid_flag``)."""
    t_global = lidar_pose_global(nusc, sample)
    to_lidar = invert_transform(t_global)
    anns = nusc.annotations(sample)
    k = len(anns)
    boxes, vels = np.zeros((k, 7)), np.zeros((k, 2))
    fut, fut_mask = np.zeros((k, AGENT_FUTURE_STEPS, 2)), np.zeros((k, AGENT_FUTURE_STEPS))
    names: list[str] = []
    labels = np.full(k, -1, dtype=np.int64)
    for i, ann in enumerate(anns):
        centre, yaw = _box_in_lidar(ann, to_lidar)
        width, length, height = ann["size"]
        boxes[i] = [*centre, length, width, height, float(wrap_angle(yaw))]
        vels[i] = (to_lidar[:3, :3] @ box_velocity_global(nusc, ann))[:2]
        fut[i], fut_mask[i] = _agent_future(nusc, ann, centre, to_lidar)
        category = nusc.get("category", nusc.get("instance", ann["instance_token"])["category_token"])["name"]
        name = str(CATEGORY_TO_DETECTION.get(category, category))
        names.append(name)
        if name in DETECTION_CLASSES:
            labels[i] = DETECTION_CLASSES.index(name)
    ego_offsets, ego_masks, command = ego_future(nusc, sample)
    cmd = np.zeros(3)
    cmd[command] = 1.0
    scene = nusc.scene_of_sample(sample)
    vmap = nusc.vector_map(nusc.location(scene))
    map_lines = (
        extract_map_elements(vmap, t_global[:2, 3], quat_yaw_of(t_global), map_roi)
        if vmap is not None else {name: [] for name in MAP_CLASSES}
    )
    return FrameGroundTruth(
        boxes=boxes, velocities=vels, names=tuple(names), labels=labels,
        instance_tokens=tuple(a["instance_token"] for a in anns),
        instance_ids=np.asarray([nusc.index_of("instance", a["instance_token"]) for a in anns], dtype=np.int64),
        num_lidar_pts=np.asarray([a["num_lidar_pts"] for a in anns], dtype=np.int64),
        num_radar_pts=np.asarray([a["num_radar_pts"] for a in anns], dtype=np.int64),
        agent_fut_trajs=fut, agent_fut_masks=fut_mask,
        ego_fut_trajs=ego_offsets, ego_fut_masks=ego_masks, ego_fut_cmd=cmd, map_polylines=map_lines,
    )


def quat_yaw_of(transform: F64) -> float:
    """Yaw of a [4, 4] transform's x-axis in its parent frame (devkit ``quaternion_yaw``)."""
    return float(np.arctan2(transform[1, 0], transform[0, 0]))


__all__ = [
    "CAMERA_ORDER", "DETECTION_CLASSES", "CATEGORY_TO_DETECTION", "LIDAR_CHANNEL", "TABLE_NAMES", "NuScenes",
    "SampleInputs", "FrameGroundTruth", "build_frame_inputs", "build_ground_truth", "ego_future",
    "box_velocity_global", "lidar_pose_global",
]
