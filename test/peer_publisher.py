"""Child process of test_ros_environment.py: publishes a custom message and a 1600x900 image.

It waits (bounded) until the test's subscriptions have matched, publishes, then waits until the test
tells it to stop by closing stdin, so that no message is lost to an early exit.
"""
import sys
import time

import numpy as np
import rclpy
from sensor_msgs.msg import Image

from sparsedrive_ros.msg import Detection3D, Detection3DArray


def make_image(stamp_sec: int) -> Image:
    rows = np.arange(900, dtype=np.uint16)[:, None, None]
    cols = np.arange(1600, dtype=np.uint16)[None, :, None]
    chans = np.arange(3, dtype=np.uint16)[None, None, :]
    pixels = ((rows * 7 + cols * 3 + chans * 101) % 251).astype(np.uint8)  # [900, 1600, 3]
    msg = Image(height=900, width=1600, encoding="rgb8", is_bigendian=0, step=1600 * 3)
    msg.header.stamp.sec = stamp_sec
    msg.header.frame_id = "CAM_FRONT"
    msg.data = pixels.tobytes()
    return msg


def make_detections(stamp_sec: int) -> Detection3DArray:
    msg = Detection3DArray(frame_index=7, temporal_reset=True, class_names=["car", "pedestrian"])
    msg.header.stamp.sec = stamp_sec
    msg.header.frame_id = "LIDAR_TOP"
    det = Detection3D(instance_id=123456789012, label=1, score=0.75, class_score=0.8,
                      class_scores=[0.1, 0.8], yaw=-1.25, tracked_frames=3)
    det.center.x, det.center.y, det.center.z = 1.5, 20.25, -0.9
    det.size.x, det.size.y, det.size.z = 0.6, 0.7, 1.8
    det.velocity.y = 1.25
    msg.detections = [det]
    return msg


def main() -> int:
    rclpy.init()
    node = rclpy.create_node("sparsedrive_test_peer")
    det_pub = node.create_publisher(Detection3DArray, "/sd_test/detections", 10)
    img_pub = node.create_publisher(Image, "/sd_test/image", 10)
    deadline = time.monotonic() + 30.0
    while det_pub.get_subscription_count() < 1 or img_pub.get_subscription_count() < 1:
        if time.monotonic() > deadline:
            print("peer: subscribers never matched", file=sys.stderr)
            return 3
        rclpy.spin_once(node, timeout_sec=0.05)
    print("peer: matched", flush=True)
    for k in range(3):
        det_pub.publish(make_detections(100 + k))
        img_pub.publish(make_image(100 + k))
        rclpy.spin_once(node, timeout_sec=0.1)
    print("peer: published", flush=True)
    sys.stdin.read()  # the test closes stdin once it has what it needs
    node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
