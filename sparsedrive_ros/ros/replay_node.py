"""nuScenes replay node: publishes a dataroot (or a freshly generated synthetic scene) as ROS 2 topics.

Topics (defaults; data.replay_plan.TopicNames): ``/CAM_*/image_rect_compressed`` (sensor_msgs/CompressedImage,
the dataset's JPEG bytes) or, with ``image_transport:=raw``, ``/CAM_*/image_rect`` (sensor_msgs/Image, bgr8,
decoded once per frame); ``/CAM_*/camera_info``; ``/tf`` (map -> base_link at every camera and lidar stamp);
``/tf_static`` (base_link -> CAM_*, LIDAR_TOP; TRANSIENT_LOCAL); ``/sparsedrive/command`` (std_msgs/UInt8,
0 right / 1 left / 2 straight, TRANSIENT_LOCAL depth 1); ``/clock`` (rosgraph_msgs/Clock) for use_sim_time.
All stamps are dataset time. Looping jumps /clock backwards: consumers must reset temporal state.

    ros2 run sparsedrive_ros nuscenes_replay --ros-args -p dataroot:=/data/nuscenes -p rate:=0.5
    python -m sparsedrive_ros.tools.replay --dataroot /data/nuscenes --rate 0.5
"""
from __future__ import annotations

import array
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Quaternion, Transform, TransformStamped, Vector3
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header, UInt8
from tf2_msgs.msg import TFMessage

from sparsedrive_ros.data.nuscenes import CAMERA_ORDER, NuScenes
from sparsedrive_ros.data.pacing import Pacer
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
from sparsedrive_ros.data.synthetic import SyntheticConfig, generate_dataset
from sparsedrive_ros.ros.conversions import ns_to_stamp

SENSOR_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.VOLATILE)
TF_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE,
                    durability=DurabilityPolicy.VOLATILE)
LATCHED_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
CLOCK_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE,
                       durability=DurabilityPolicy.VOLATILE)

# name: (default, description). Types follow the defaults.
PARAMETERS: dict[str, tuple[Any, str]] = {
    "dataroot": ("", "nuScenes dataroot; empty: generate a synthetic scene into a temporary directory"),
    "version": ("v1.0-mini", "nuScenes version folder under the dataroot"),
    "scene": ("", "scene names to replay, comma-separated; empty: every scene"),
    "rate": (1.0, "playback speed factor, 1.0 = real time"),
    "loop": (False, "start again after the last scene (dataset time and /clock jump backwards)"),
    "image_transport": ("compressed", "compressed: CompressedImage jpeg; raw: Image bgr8"),
    "cameras": (list(CAMERA_ORDER), "camera channels to publish"),
    "publish_clock": (True, "publish /clock with the dataset time"),
    "clock_hz": (40.0, "/clock rate between messages"),
    "start_delay": (0.0, "seconds to wait before the first message"),
    "wait_for_subscribers": (0.0, "seconds to wait (at most) until every image topic has a subscriber"),
    "exit_when_done": (True, "shut down after the last message when not looping"),
    "synthetic_seconds": (2.0, "length of the generated synthetic scene"),
    "synthetic_seed": (0, "seed of the generated synthetic scene"),
    "synthetic_width": (1600, "image width of the generated synthetic scene"),
    "synthetic_height": (900, "image height of the generated synthetic scene"),
    "image_topic_compressed": (TopicNames.image_compressed, "compressed image topic, {camera} = channel"),
    "image_topic_raw": (TopicNames.image_raw, "raw image topic, {camera} = channel"),
    "camera_info_topic": (TopicNames.camera_info, "camera info topic, {camera} = channel"),
    "command_topic": (TopicNames.command, "driving command topic (std_msgs/UInt8)"),
}


def ros_time(stamp_us: int) -> Time:
    sec, nanosec = us_to_stamp(stamp_us)
    return Time(sec=sec, nanosec=nanosec)


def transform_msg(stamp_us: int, parent: str, child: str, rotation: tuple, translation: tuple) -> TransformStamped:
    x, y, z, w = quat_wxyz_to_xyzw(rotation)
    return TransformStamped(
        header=Header(stamp=ros_time(stamp_us), frame_id=parent),
        child_frame_id=child,
        transform=Transform(
            translation=Vector3(x=float(translation[0]), y=float(translation[1]), z=float(translation[2])),
            rotation=Quaternion(x=x, y=y, z=z, w=w),
        ),
    )


def camera_info_msg(frame: CameraFrame) -> CameraInfo:
    d, k, r, p = camera_info_arrays(frame)
    return CameraInfo(header=Header(stamp=ros_time(frame.stamp_us), frame_id=frame.channel), height=frame.height,
                      width=frame.width, distortion_model="plumb_bob", d=d.tolist(), k=k, r=r, p=p)


def compressed_msg(frame: CameraFrame) -> CompressedImage:
    data = Path(frame.path).read_bytes()
    return CompressedImage(header=Header(stamp=ros_time(frame.stamp_us), frame_id=frame.channel), format="jpeg",
                           data=array.array("B", data))


def raw_msg(frame: CameraFrame) -> Image:
    image = cv2.imdecode(np.fromfile(frame.path, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"camera image {frame.path!r} is corrupt or missing")
    h, w = image.shape[:2]
    return Image(header=Header(stamp=ros_time(frame.stamp_us), frame_id=frame.channel), height=h, width=w,
                 encoding="bgr8", is_bigendian=0, step=w * 3, data=array.array("B", image.tobytes()))


@dataclass(frozen=True)
class ReplaySettings:
    """The node's parameters, validated."""

    dataroot: str
    version: str
    scenes: tuple[str, ...]
    rate: float
    loop: bool
    compressed: bool
    cameras: tuple[str, ...]
    publish_clock: bool
    clock_hz: float
    start_delay: float
    wait_for_subscribers: float
    exit_when_done: bool
    synthetic: SyntheticConfig
    topics: TopicNames

    @classmethod
    def from_values(cls, v: dict[str, Any]) -> "ReplaySettings":
        if v["image_transport"] not in ("compressed", "raw"):
            raise ValueError(f"image_transport must be 'compressed' or 'raw', got {v['image_transport']!r}")
        if not v["rate"] > 0:
            raise ValueError(f"rate must be > 0, got {v['rate']}")
        unknown = sorted(set(v["cameras"]) - set(CAMERA_ORDER))
        if unknown or not v["cameras"]:
            raise ValueError(f"cameras must be a non-empty subset of {list(CAMERA_ORDER)}, got {v['cameras']}")
        topics = TopicNames(image_compressed=v["image_topic_compressed"], image_raw=v["image_topic_raw"],
                            camera_info=v["camera_info_topic"], command=v["command_topic"])
        synthetic = SyntheticConfig(seconds=v["synthetic_seconds"], seed=v["synthetic_seed"],
                                    width=v["synthetic_width"], height=v["synthetic_height"])
        return cls(v["dataroot"], v["version"], tuple(s for s in v["scene"].split(",") if s), float(v["rate"]),
                   bool(v["loop"]), v["image_transport"] == "compressed", tuple(v["cameras"]),
                   bool(v["publish_clock"]), float(v["clock_hz"]), float(v["start_delay"]),
                   float(v["wait_for_subscribers"]), bool(v["exit_when_done"]), synthetic, topics)


def declare_parameters(node: Node, table: dict[str, tuple[Any, str]]) -> dict[str, Any]:
    values = {}
    for name, (default, description) in table.items():
        node.declare_parameter(name, default, ParameterDescriptor(description=description))
        values[name] = node.get_parameter(name).value
    return values


class ClockPublisher:
    """/clock from a player's pacing; monotonic within one pass."""

    def __init__(self, node: Node, topic: str = "/clock") -> None:
        self.pub = node.create_publisher(Clock, topic, CLOCK_QOS)

    def __call__(self, stamp_ns: int) -> None:
        self.pub.publish(Clock(clock=ns_to_stamp(stamp_ns)))


# Seconds to wait for subscribers of the optional topics once the image topics have theirs.
OPTIONAL_MATCH_GRACE_S = 2.0


def wait_for_subscribers(node: Node, publishers: list[Any], timeout: float, stop: threading.Event) -> bool:
    """Bounded wait until every publisher is matched (discovery takes 0.05-3 s)."""
    deadline = node.get_clock().now().nanoseconds + int(timeout * 1e9)
    while not stop.is_set():
        if all(p.get_subscription_count() > 0 for p in publishers):
            return True
        if node.get_clock().now().nanoseconds >= deadline:
            return False
        stop.wait(0.02)
    return False


class ReplayNode(Node):
    """Publishes nuScenes scenes in real time (or at ``rate``) from a background thread."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("nuscenes_replay", **kwargs)
        self.settings = ReplaySettings.from_values(declare_parameters(self, PARAMETERS))
        s = self.settings
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.nusc = self._open_dataset()
        scenes = [self.nusc.scene(n) for n in s.scenes] if s.scenes else list(self.nusc.scenes)
        self.plans = sorted((build_scene_plan(self.nusc, sc, s.cameras) for sc in scenes), key=lambda p: p.start_us)
        t = s.topics
        image_type = CompressedImage if s.compressed else Image
        self.image_pubs = {
            c: self.create_publisher(image_type, t.image(c, s.compressed), SENSOR_QOS) for c in s.cameras
        }
        self.info_pubs = {c: self.create_publisher(CameraInfo, t.info(c), SENSOR_QOS) for c in s.cameras}
        self.tf_pub = self.create_publisher(TFMessage, t.tf, TF_QOS)
        self.tf_static_pub = self.create_publisher(TFMessage, t.tf_static, LATCHED_QOS)
        self.command_pub = self.create_publisher(UInt8, t.command, LATCHED_QOS)
        self.clock = ClockPublisher(self, t.clock) if s.publish_clock else None
        self.stop = threading.Event()
        self.done = threading.Event()
        self.messages_published = 0
        self.error: BaseException | None = None
        self.pacer = Pacer(s.rate, tick=self.clock, tick_hz=s.clock_hz, stop=self.stop)
        self._thread = threading.Thread(target=self._run, name="nuscenes_replay", daemon=True)
        self.get_logger().info(
            f"replaying {len(self.plans)} scene(s) {[p.scene_name for p in self.plans]} from {self.nusc.dataroot} "
            f"at rate {s.rate} ({'compressed' if s.compressed else 'raw'} images)")
        self._thread.start()

    def _open_dataset(self) -> NuScenes:
        s = self.settings
        if s.dataroot:
            return NuScenes(s.dataroot, s.version)
        self._tmp = tempfile.TemporaryDirectory(prefix="sparsedrive_synthetic_")
        ds = generate_dataset(self._tmp.name, s.synthetic)
        self.get_logger().info(f"no dataroot given: generated a synthetic scene in {ds.dataroot}")
        return NuScenes(ds.dataroot, ds.version)

    def _publish_static(self, plan: ScenePlan) -> None:
        t = self.settings.topics
        self.tf_static_pub.publish(TFMessage(transforms=[
            transform_msg(plan.start_us, t.base_frame, st.child_frame, st.rotation, st.translation)
            for st in plan.static_transforms]))

    def _publish(self, event: Any) -> None:
        t = self.settings.topics
        if isinstance(event, PoseEvent):
            self.tf_pub.publish(TFMessage(transforms=[
                transform_msg(event.stamp_us, t.map_frame, t.base_frame, event.rotation, event.translation)]))
        elif isinstance(event, CommandEvent):
            self.command_pub.publish(UInt8(data=event.command))
        else:
            make: Callable[[CameraFrame], Any] = compressed_msg if self.settings.compressed else raw_msg
            self.image_pubs[event.channel].publish(make(event))
            self.info_pubs[event.channel].publish(camera_info_msg(event))
        self.messages_published += 1

    def _run(self) -> None:
        s = self.settings
        try:
            if s.wait_for_subscribers > 0:
                pubs = list(self.image_pubs.values())
                if not wait_for_subscribers(self, pubs, s.wait_for_subscribers, self.stop):
                    self.get_logger().warning("not every image topic has a subscriber; starting anyway")
                # The other topics are optional (nobody need listen to /clock), but a subscriber that exists
                # is discovered within moments of the image subscribers (same participant exchange): a short
                # grace keeps its first messages from being published before the match.
                others = [*self.info_pubs.values(), self.tf_pub, *([self.clock.pub] if self.clock else [])]
                wait_for_subscribers(self, others, min(OPTIONAL_MATCH_GRACE_S, s.wait_for_subscribers), self.stop)
            if s.start_delay > 0:
                self.stop.wait(s.start_delay)
            while not self.stop.is_set():
                for plan in self.plans:
                    self._play(plan)
                if not s.loop:
                    break
                self.get_logger().info("looping: dataset time jumps back to the first scene")
        except BaseException as exc:  # surfaced by main(); the thread must not die silently
            if rclpy.ok(context=self.context) and not self.stop.is_set():
                self.error = exc
                self.get_logger().error(f"replay failed: {exc}")
            # else: Ctrl-C / shutdown invalidated the publishers mid-publish; a normal end
        finally:
            self.done.set()
            if rclpy.ok(context=self.context):
                self.get_logger().info(f"replay finished: {self.messages_published} messages, "
                                       f"max lateness {self.pacer.max_lateness_s * 1e3:.1f} ms")

    def _play(self, plan: ScenePlan) -> None:
        self.pacer.restart(plan.start_us * 1000)
        self.pacer.wait_until(plan.start_us * 1000)
        self._publish_static(plan)
        for event in plan.events:
            if not self.pacer.wait_until(event.stamp_us * 1000):
                return
            self._publish(event)
        if self.clock is not None and plan.events:
            # Let time run on past the last message, so consumers that wait on the clock (the node's camera
            # synchroniser at the end of a stream) can finish their last frame.
            self.clock(plan.events[-1].stamp_us * 1000 + 1_000_000_000)

    def destroy_node(self) -> None:
        self.stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)
        super().destroy_node()
        if self._tmp is not None:
            self._tmp.cleanup()


def run_until_done(node: Any) -> int:
    """Spin ``node`` until its playback thread finishes (or forever when it loops); exit code 1 on error."""
    try:
        while rclpy.ok(context=node.context) and not (node.done.is_set() and node.settings.exit_when_done):
            rclpy.spin_once(node, timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        error = node.error
        node.destroy_node()
    return 1 if error is not None else 0


def main(args: list[str] | None = None, parameter_overrides: list[Any] | None = None) -> int:
    rclpy.init(args=args)
    try:
        node = ReplayNode(parameter_overrides=parameter_overrides or [])
        return run_until_done(node)
    finally:
        rclpy.try_shutdown()


if __name__ == "__main__":
    raise SystemExit(main())
