"""Convert a nuScenes dataroot (real or synthetic) to a rosbag2 (MCAP or SQLite3), metadata version 8.

    python -m sparsedrive_ros.tools.nuscenes_to_bag --dataroot DIR --out BAG [--version v1.0-mini]
        [--storage mcap|sqlite3] [--scene NAME ...]

Topics (foxglove nuscenes2bag style; see data.replay_plan.TopicNames): /CAM_*/image_rect_compressed
(sensor_msgs/CompressedImage, the JPEG bytes unchanged), /CAM_*/camera_info, /tf (map -> base_link at every
camera and lidar stamp), /tf_static (base_link -> CAM_*, LIDAR_TOP; offered TRANSIENT_LOCAL), and
/sparsedrive/command (std_msgs/UInt8, 0 right / 1 left / 2 straight, at key frames). Stamps = dataset time.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from sparsedrive_ros.data.nuscenes import CAMERA_ORDER, NuScenes
from sparsedrive_ros.data.replay_plan import (
    CameraFrame,
    CommandEvent,
    PoseEvent,
    ScenePlan,
    TopicNames,
    build_scene_plan,
    camera_info_arrays,
    quat_wxyz_to_xyzw,
    us_to_stamp,
)

TYPESTORE = get_typestore(Stores.ROS2_KILTED)
BAG_VERSION = 8  # readable by Humble/Iron (rosbag2 metadata v8); Jazzy+ also read it
_INFINITE = QosTime(sec=2147483647, nsec=4294967295)


def _qos(durability: QosDurability) -> Qos:
    return Qos(history=QosHistory.KEEP_LAST, depth=1, reliability=QosReliability.RELIABLE, durability=durability,
               deadline=_INFINITE, lifespan=_INFINITE, liveliness=QosLiveliness.AUTOMATIC,
               liveliness_lease_duration=_INFINITE, avoid_ros_namespace_conventions=False)


STATIC_QOS = _qos(QosDurability.TRANSIENT_LOCAL)
DEFAULT_QOS = _qos(QosDurability.VOLATILE)


def _t(name: str) -> Any:
    return TYPESTORE.types[name]


def _header(stamp_us: int, frame_id: str) -> Any:
    sec, nsec = us_to_stamp(stamp_us)
    return _t("std_msgs/msg/Header")(stamp=_t("builtin_interfaces/msg/Time")(sec=sec, nanosec=nsec), frame_id=frame_id)


def _transform(stamp_us: int, parent: str, child: str, rotation: tuple, translation: tuple) -> Any:
    x, y, z, w = quat_wxyz_to_xyzw(rotation)
    return _t("geometry_msgs/msg/TransformStamped")(
        header=_header(stamp_us, parent), child_frame_id=child,
        transform=_t("geometry_msgs/msg/Transform")(
            translation=_t("geometry_msgs/msg/Vector3")(x=float(translation[0]), y=float(translation[1]),
                                                        z=float(translation[2])),
            rotation=_t("geometry_msgs/msg/Quaternion")(x=x, y=y, z=z, w=w)))


def tf_message(transforms: list[Any]) -> Any:
    return _t("tf2_msgs/msg/TFMessage")(transforms=transforms)


def compressed_image(frame: CameraFrame) -> Any:
    data = np.fromfile(frame.path, dtype=np.uint8)  # JPEG bytes unchanged
    return _t("sensor_msgs/msg/CompressedImage")(header=_header(frame.stamp_us, frame.channel), format="jpeg",
                                                 data=data)


def camera_info(frame: CameraFrame) -> Any:
    d, k, r, p = camera_info_arrays(frame)
    roi = _t("sensor_msgs/msg/RegionOfInterest")(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return _t("sensor_msgs/msg/CameraInfo")(header=_header(frame.stamp_us, frame.channel), height=frame.height,
                                            width=frame.width, distortion_model="plumb_bob", d=d, k=k, r=r, p=p,
                                            binning_x=0, binning_y=0, roi=roi)


@dataclass(frozen=True)
class BagSummary:
    path: Path
    messages: dict[str, int]  # topic -> count
    start_us: int
    end_us: int
    seconds: float


class _BagWriter:
    def __init__(self, writer: Writer, topics: TopicNames) -> None:
        self.writer, self.topics = writer, topics
        self.connections: dict[str, Any] = {}
        self.counts: dict[str, int] = {}

    def write(self, topic: str, msgtype: str, msg: Any, stamp_us: int, qos: Qos = DEFAULT_QOS) -> None:
        if topic not in self.connections:
            self.connections[topic] = self.writer.add_connection(topic, msgtype, typestore=TYPESTORE,
                                                                 offered_qos_profiles=[qos])
        self.writer.write(self.connections[topic], stamp_us * 1000, TYPESTORE.serialize_cdr(msg, msgtype))
        self.counts[topic] = self.counts.get(topic, 0) + 1

    def write_plan(self, plan: ScenePlan) -> None:
        t = self.topics
        statics = [_transform(plan.start_us, t.base_frame, s.child_frame, s.rotation, s.translation)
                   for s in plan.static_transforms]
        self.write(t.tf_static, "tf2_msgs/msg/TFMessage", tf_message(statics), plan.start_us, STATIC_QOS)
        for event in plan.events:
            if isinstance(event, PoseEvent):
                tf = _transform(event.stamp_us, t.map_frame, t.base_frame, event.rotation, event.translation)
                self.write(t.tf, "tf2_msgs/msg/TFMessage", tf_message([tf]), event.stamp_us)
            elif isinstance(event, CommandEvent):
                self.write(
                    t.command, "std_msgs/msg/UInt8", _t("std_msgs/msg/UInt8")(data=event.command), event.stamp_us
                )
            else:
                self.write(t.image(event.channel), "sensor_msgs/msg/CompressedImage", compressed_image(event),
                           event.stamp_us)
                self.write(t.info(event.channel), "sensor_msgs/msg/CameraInfo", camera_info(event), event.stamp_us)



def convert(dataroot: str | Path, out: str | Path, version: str = "v1.0-mini", storage: str = "mcap",
            scenes: list[str] | None = None, channels: tuple[str, ...] = CAMERA_ORDER,
            topics: TopicNames = TopicNames()) -> BagSummary:
    """Write the selected scenes (default: all) of a nuScenes dataroot to a new bag directory ``out``."""
    plugins = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
    if storage not in plugins:
        raise ValueError(f"storage must be one of {sorted(plugins)}, got {storage!r}")
    out_path = Path(out)
    if out_path.exists():
        raise ValueError(f"bag output {str(out_path)!r} already exists")
    start = time.perf_counter()
    nusc = NuScenes(dataroot, version)
    selected = [nusc.scene(name) for name in scenes] if scenes else list(nusc.scenes)
    plans = sorted((build_scene_plan(nusc, s, channels) for s in selected), key=lambda p: p.start_us)
    writer = Writer(out_path, version=BAG_VERSION, storage_plugin=plugins[storage])
    writer.open()
    try:
        bag = _BagWriter(writer, topics)
        for plan in plans:
            bag.write_plan(plan)
    finally:
        writer.close()
    return BagSummary(out_path, bag.counts, plans[0].start_us, plans[-1].end_us, time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataroot", required=True)
    p.add_argument("--out", required=True, help="bag directory to create")
    p.add_argument("--version", default="v1.0-mini")
    p.add_argument("--storage", choices=["mcap", "sqlite3"], default="mcap")
    p.add_argument("--scene", action="append", help="scene name (repeatable); default: all scenes")
    args = p.parse_args(argv)
    summary = convert(args.dataroot, args.out, args.version, args.storage, args.scene)
    total = sum(summary.messages.values())
    print(f"wrote {summary.path}: {total} messages on {len(summary.messages)} topics, "
          f"{(summary.end_us - summary.start_us) / 1e6:.2f} s of data in {summary.seconds:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
