"""ROS-free timeline of what a nuScenes scene publishes: camera images + infos, TF, driving command.

Shared by the bag converter (rosbags messages) and the live replay node (rclpy messages), so that both write
the same topics, frames and stamps. Topic/frame defaults follow the foxglove ``nuscenes2bag`` style used by
existing community bags; all stamps are dataset time (never wall time).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

import numpy as np

from sparsedrive_ros.data.nuscenes import CAMERA_ORDER, LIDAR_CHANNEL, NuScenes, Record, ego_future


@dataclass(frozen=True)
class TopicNames:
    """Topic and frame names; ``{camera}`` is replaced by the channel (CAM_FRONT, ...)."""

    image_compressed: str = "/{camera}/image_rect_compressed"  # sensor_msgs/CompressedImage (jpeg)
    image_raw: str = "/{camera}/image_rect"  # sensor_msgs/Image (bgr8), replay node only
    camera_info: str = "/{camera}/camera_info"  # sensor_msgs/CameraInfo
    tf: str = "/tf"  # tf2_msgs/TFMessage: map -> base_link at every camera and lidar stamp
    tf_static: str = "/tf_static"  # base_link -> CAM_*, LIDAR_TOP (TRANSIENT_LOCAL)
    command: str = "/sparsedrive/command"  # std_msgs/UInt8: 0 right, 1 left, 2 straight (2 Hz key frames)
    clock: str = "/clock"  # rosgraph_msgs/Clock, players only
    map_frame: str = "map"
    base_frame: str = "base_link"

    def image(self, camera: str, compressed: bool = True) -> str:
        return (self.image_compressed if compressed else self.image_raw).format(camera=camera)

    def info(self, camera: str) -> str:
        return self.camera_info.format(camera=camera)


@dataclass(frozen=True)
class CameraFrame:
    stamp_us: int
    channel: str  # also the optical frame id
    path: str  # absolute JPEG path
    intrinsic: tuple[tuple[float, float, float], ...]  # 3x3 K
    width: int
    height: int
    is_key_frame: bool


@dataclass(frozen=True)
class PoseEvent:
    """base_link -> map (nuScenes ego_pose)."""

    stamp_us: int
    rotation: tuple[float, float, float, float]  # [w, x, y, z]
    translation: tuple[float, float, float]


@dataclass(frozen=True)
class CommandEvent:
    stamp_us: int
    command: int  # 0 right, 1 left, 2 straight


@dataclass(frozen=True)
class StaticTransform:
    """base_link -> sensor frame (calibrated_sensor, published unchanged: cameras are optical frames)."""

    child_frame: str
    rotation: tuple[float, float, float, float]  # [w, x, y, z]
    translation: tuple[float, float, float]


Event = Union[PoseEvent, CameraFrame, CommandEvent]
_KIND_ORDER = {PoseEvent: 0, CommandEvent: 1, CameraFrame: 2}  # at equal stamps: TF first, images last


@dataclass(frozen=True)
class ScenePlan:
    scene_name: str
    static_transforms: tuple[StaticTransform, ...]
    events: tuple[Event, ...] = field(repr=False)  # sorted by (stamp, kind)

    @property
    def start_us(self) -> int:
        return self.events[0].stamp_us

    @property
    def end_us(self) -> int:
        return self.events[-1].stamp_us

    def cameras(self) -> list[CameraFrame]:
        return [e for e in self.events if isinstance(e, CameraFrame)]


def us_to_stamp(stamp_us: int) -> tuple[int, int]:
    """Unix microseconds -> (sec, nanosec) exactly."""
    return int(stamp_us // 1_000_000), int(stamp_us % 1_000_000) * 1000


def _pose(nusc: NuScenes, sd: Record) -> PoseEvent:
    pose = nusc.get("ego_pose", sd["ego_pose_token"])
    return PoseEvent(sd["timestamp"], tuple(pose["rotation"]), tuple(pose["translation"]))


def build_scene_plan(nusc: NuScenes, scene: Record, channels: tuple[str, ...] = CAMERA_ORDER) -> ScenePlan:
    """Everything a scene publishes, in time order (cameras at ~12 Hz including sweeps)."""
    if not set(channels) <= set(CAMERA_ORDER):
        raise ValueError(f"unknown camera channels {sorted(set(channels) - set(CAMERA_ORDER))}")
    samples = nusc.scene_samples(scene)
    first = samples[0]
    statics = []
    for ch in (*channels, LIDAR_CHANNEL):
        cs = nusc.get("calibrated_sensor", nusc.key_sample_data(first, ch)["calibrated_sensor_token"])
        statics.append(StaticTransform(ch, tuple(cs["rotation"]), tuple(cs["translation"])))
    events: list[Event] = []
    pose_stamps: set[int] = set()
    for ch in channels:
        for sd in nusc.channel_stream(scene, ch):
            k = nusc.intrinsic(sd)
            events.append(CameraFrame(sd["timestamp"], ch, str(nusc.dataroot / sd["filename"]),
                                      tuple((float(r[0]), float(r[1]), float(r[2])) for r in k), int(sd["width"]),
                                      int(sd["height"]), bool(sd["is_key_frame"])))
            if sd["timestamp"] not in pose_stamps:
                pose_stamps.add(sd["timestamp"])
                events.append(_pose(nusc, sd))
    for sd in nusc.channel_stream(scene, LIDAR_CHANNEL):  # the reference frame's poses (20 Hz)
        if sd["timestamp"] not in pose_stamps:
            pose_stamps.add(sd["timestamp"])
            events.append(_pose(nusc, sd))
    for sample in samples:
        events.append(CommandEvent(sample["timestamp"], ego_future(nusc, sample)[2]))
    events.sort(key=lambda e: (e.stamp_us, _KIND_ORDER[type(e)]))
    return ScenePlan(scene["name"], tuple(statics), tuple(events))


def quat_wxyz_to_xyzw(q: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    return (float(q[1]), float(q[2]), float(q[3]), float(q[0]))


def camera_info_arrays(frame: CameraFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(d[5], k[9], r[9], p[12]) float64 for a rectified plumb_bob camera (D = 0, R = I, P = [K | 0])."""
    k = np.asarray(frame.intrinsic, dtype=np.float64)
    p = np.zeros((3, 4))
    p[:, :3] = k
    return np.zeros(5), k.ravel(), np.eye(3).ravel(), p.ravel()
