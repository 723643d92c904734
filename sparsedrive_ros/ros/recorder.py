"""sparsedrive_recorder: records the SparseDrive outputs (and their inputs) to an MCAP rosbag2 and renders PNGs.

    ros2 run sparsedrive_ros sparsedrive_recorder --ros-args -p out_dir:=/tmp/rec -p use_sim_time:=true

Subscribes with raw=True (no deserialisation in rclpy) and hands the CDR bytes to viz.recording.Recording, which
writes them unchanged to <out_dir>/bag and renders <out_dir>/frames/frame_<index>.png (six camera overlays beside
a bird's-eye view) for every processed frame. Types are registered in rosbags from this package's msg/*.msg; their
RIHS01 hashes are checked against the ones rosidl computed at build time. SIGINT or SIGTERM closes the bag
cleanly (pending frames are rendered first).
"""
from __future__ import annotations

import importlib
import signal
import sys
from functools import partial
from pathlib import Path

import rclpy
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from sparsedrive_ros.viz.recording import (
    CAMERA_INFO_TYPE,
    CAMERA_NAMES,
    IMAGE_TYPE,
    RecorderConfig,
    Recording,
    installed_type_hashes,
    package_typestore,
    verify_type_hashes,
)

LATCHED_TOPICS = ("/tf_static",)

PARAMETERS = {
    "out_dir": ("", "directory for bag/, frames/ and progress.json (must be given; bag/ must not exist yet)"),
    "camera_names": (list(CAMERA_NAMES), "cameras whose images get overlays"),
    "image_topic_format": ("/{camera}/image_rect_compressed", "sensor_msgs/CompressedImage topic per camera"),
    "camera_info_topic_format": ("/{camera}/camera_info", "sensor_msgs/CameraInfo topic per camera"),
    "command_topic": ("/sparsedrive/command", "std_msgs/UInt8 driving command (recorded as an input)"),
    "record_inputs": (True, "also record images, camera_info and TF (the bag can then be replayed and re-rendered)"),
    "render": (True, "render PNG frames"),
    "fixed_frame": ("map", "frame through which outputs are moved to each camera's exposure time"),
    "vehicle_frame": ("base_link", "frame whose z = 0 is the ground (plan and forecasts are drawn on it)"),
    "image_tolerance": (0.1, "s, max difference between a camera stamp and the stamp an overlay wants"),
    "dataroot": ("", "nuScenes dataroot whose annotations are drawn beside the outputs; empty: outputs only"),
    "version": ("v1.0-mini", "nuScenes version folder of dataroot"),
}


def message_class(typename: str):
    """'pkg/msg/Name' -> the rclpy message class."""
    package, _, name = typename.split("/")
    return getattr(importlib.import_module(f"{package}.msg"), name)


def subscription_qos(typename: str, topic: str) -> QoSProfile:
    if topic in LATCHED_TOPICS:  # latched by every publisher: get what was sent before we joined
        return QoSProfile(depth=100, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.TRANSIENT_LOCAL)
    if typename in (IMAGE_TYPE, CAMERA_INFO_TYPE):  # best effort matches reliable and best-effort publishers
        return QoSProfile(depth=20, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.BEST_EFFORT)
    return QoSProfile(depth=100 if topic == "/tf" else 20, history=HistoryPolicy.KEEP_LAST,
                      reliability=ReliabilityPolicy.RELIABLE)


class SparseDriveRecorder(Node):
    def __init__(self, **kwargs):
        super().__init__("sparsedrive_recorder", **kwargs)
        for name, (default, description) in PARAMETERS.items():
            self.declare_parameter(name, default, ParameterDescriptor(description=description))
        value = lambda name: self.get_parameter(name).value  # noqa: E731
        out_dir = value("out_dir")
        if not out_dir:
            raise ValueError("parameter out_dir is empty: give the directory to record into (-p out_dir:=...)")
        config = RecorderConfig(
            out_dir=Path(out_dir),
            camera_names=tuple(value("camera_names")),
            image_topic_format=value("image_topic_format"),
            camera_info_topic_format=value("camera_info_topic_format"),
            command_topic=value("command_topic"),
            record_inputs=value("record_inputs"),
            render=value("render"),
            fixed_frame=value("fixed_frame"),
            vehicle_frame=value("vehicle_frame"),
            image_tolerance_s=float(value("image_tolerance")),
            dataroot=value("dataroot"),
            version=value("version"),
        )
        store = package_typestore()
        self._check_hashes(store)
        self.recording = Recording(config, store, log=self.get_logger().info)
        for topic, typename in config.topics().items():
            self.create_subscription(message_class(typename), topic, partial(self._on_message, topic),
                                     subscription_qos(typename, topic), raw=True)
        self.get_logger().info(f"recording {len(config.topics())} topics to {self.recording.bag_dir}, "
                               f"frames to {self.recording.frames_dir}")

    def _check_hashes(self, store) -> None:
        expected = installed_type_hashes()
        if not expected:
            self.get_logger().warning("no installed type hashes of sparsedrive_ros found; bag types unchecked")
            return
        bad = verify_type_hashes(store, expected)
        if bad:
            raise RuntimeError(f"msg/*.msg differ from the built messages for {bad}: rebuild them (make setup)")

    def _on_message(self, topic: str, raw: bytes) -> None:
        self.recording.handle(topic, raw, self.get_clock().now().nanoseconds)

    def close(self) -> None:
        self.recording.close()
        self.get_logger().info(f"closed {self.recording.bag_dir}: {sum(self.recording.bag.counts.values())} messages, "
                               f"{len(self.recording.rendered)} frames rendered")


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


def main(args=None) -> int:
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)  # a stop by SIGTERM still closes the bag
    rclpy.init(args=args)
    node = None
    try:
        node = SparseDriveRecorder()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (ValueError, RuntimeError, FileExistsError) as err:
        print(f"sparsedrive_recorder: error: {err}", file=sys.stderr)
        return 2
    finally:
        if node is not None:
            node.close()
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
