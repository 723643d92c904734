"""A six-camera nuScenes rig published over ROS for node tests: TF, CameraInfo and JPEG images.

Calibration is the synthetic world's (real nuScenes values). The ego drives along +x of `map` at `speed` m/s.
Images are fixed random textures per camera (encoded once), so tests are fast and deterministic.
"""
from __future__ import annotations

import cv2
import numpy as np
from geometry_msgs.msg import TransformStamped
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage
from tf2_msgs.msg import TFMessage

from sparsedrive_ros.data.synthetic_world import CAMERA_CALIBRATION, LIDAR_CALIBRATION
from sparsedrive_ros.ros.conversions import ns_to_stamp

CAMERAS = ["CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_FRONT_LEFT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_BACK_RIGHT"]
# Firing offsets after CAM_FRONT within one cycle (ms), as in nuScenes.
OFFSETS_MS = {"CAM_FRONT": 0.0, "CAM_FRONT_RIGHT": 8.0, "CAM_FRONT_LEFT": -8.0, "CAM_BACK": 25.0,
              "CAM_BACK_LEFT": 35.0, "CAM_BACK_RIGHT": 15.0}


def _tf(parent: str, child: str, stamp_ns: int, translation, quat_wxyz) -> TransformStamped:
    t = TransformStamped()
    t.header.stamp, t.header.frame_id, t.child_frame_id = ns_to_stamp(stamp_ns), parent, child
    t.transform.translation.x, t.transform.translation.y, t.transform.translation.z = map(float, translation)
    w, x, y, z = map(float, quat_wxyz)
    t.transform.rotation.x, t.transform.rotation.y, t.transform.rotation.z, t.transform.rotation.w = x, y, z, w
    return t


class FakeRig:
    def __init__(self, node: Node, speed: float = 5.0, seed: int = 0, prefix: str = "", camera_tf: bool = True):
        """`prefix`: namespace of the camera topics; `camera_tf`: publish base_link -> camera static transforms."""
        self.node, self.speed = node, speed
        latched = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.pub_tf = node.create_publisher(TFMessage, "/tf", 100)
        self.pub_static = node.create_publisher(TFMessage, "/tf_static", latched)
        self.pub_img = {c: node.create_publisher(CompressedImage, f"{prefix}/{c}/image_rect_compressed", 10)
                        for c in CAMERAS}
        self.pub_info = {c: node.create_publisher(CameraInfo, f"{prefix}/{c}/camera_info", 10) for c in CAMERAS}
        rng = np.random.default_rng(seed)
        self.jpeg = {}
        for c in CAMERAS:
            small = rng.integers(0, 255, (45, 80, 3), dtype=np.uint8)
            image = cv2.resize(small, (1600, 900), interpolation=cv2.INTER_LINEAR)
            self.jpeg[c] = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes()
        static = [_tf("base_link", c, 0, CAMERA_CALIBRATION[c][0], CAMERA_CALIBRATION[c][1])
                  for c in CAMERAS if camera_tf]
        static.append(_tf("base_link", "LIDAR_TOP", 0, *LIDAR_CALIBRATION))
        self.pub_static.publish(TFMessage(transforms=static))

    def camera_info(self, camera: str, stamp_ns: int, width: int = 1600, height: int = 900) -> CameraInfo:
        f, cx, cy = CAMERA_CALIBRATION[camera][2]
        info = CameraInfo(width=width, height=height, distortion_model="plumb_bob")
        info.header.stamp, info.header.frame_id = ns_to_stamp(stamp_ns), camera
        info.k = [f, 0.0, cx, 0.0, f, cy, 0.0, 0.0, 1.0]
        info.p = [f, 0.0, cx, 0.0, 0.0, f, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
        return info

    def ego_tf(self, stamp_ns: int) -> TransformStamped:
        x = self.speed * stamp_ns * 1e-9
        return _tf("map", "base_link", stamp_ns, (x, 0.0, 0.0), (1.0, 0.0, 0.0, 0.0))

    def publish_cycle(self, anchor_ns: int, skip=(), corrupt=(), image_bytes: dict | None = None,
                      tf: bool = True, camera_info: bool = True) -> None:
        """One 12 Hz camera cycle around `anchor_ns` (CAM_FRONT's stamp)."""
        stamps = {c: anchor_ns + int(OFFSETS_MS[c] * 1e6) for c in CAMERAS}
        if tf:
            lo, hi = min(stamps.values()), max(stamps.values())
            self.pub_tf.publish(TFMessage(transforms=[self.ego_tf(lo - 50_000_000), self.ego_tf(hi + 50_000_000)]))
        for c in sorted(CAMERAS, key=stamps.get):
            if c in skip:
                continue
            if camera_info:
                self.pub_info[c].publish(self.camera_info(c, stamps[c]))
            msg = CompressedImage(format="jpeg")
            msg.header.stamp, msg.header.frame_id = ns_to_stamp(stamps[c]), c
            data = (image_bytes or {}).get(c, self.jpeg[c])
            msg.data = b"\xff\xd8 this is not a jpeg" if c in corrupt else data
            self.pub_img[c].publish(msg)
