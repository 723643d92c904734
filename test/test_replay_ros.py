"""Two-process tests: the replay node (spawned) publishes a synthetic scene; this process subscribes."""
import signal
import subprocess
import sys
from collections import defaultdict

import cv2
import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy not installed: run `make setup`")
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from ros_helpers import RosContext, spin_until  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, Image  # noqa: E402
from std_msgs.msg import UInt8  # noqa: E402
from tf2_msgs.msg import TFMessage  # noqa: E402

from sparsedrive_ros.data.nuscenes import CAMERA_ORDER, NuScenes, build_frame_inputs  # noqa: E402
from sparsedrive_ros.data.synthetic import SyntheticConfig, generate_dataset  # noqa: E402

pytestmark = pytest.mark.ros
RELIABLE = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE)
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
TIMEOUT_S = 60.0


def stamp_ns(header):
    return header.stamp.sec * 10**9 + header.stamp.nanosec


class Collector:
    """Subscribes to everything a replay/player publishes and records stamps (and raw image bytes)."""

    def __init__(self, node, raw_images=False):
        self.node = node
        self.images = defaultdict(list)
        self.infos = defaultdict(list)
        self.tf, self.tf_static, self.clock, self.command = [], [], [], []
        self.image_bytes = {}
        image_type = Image if raw_images else CompressedImage
        suffix = "image_rect" if raw_images else "image_rect_compressed"
        for cam in CAMERA_ORDER:
            node.create_subscription(image_type, f"/{cam}/{suffix}", self._image(cam), RELIABLE)
            node.create_subscription(CameraInfo, f"/{cam}/camera_info", self._info(cam), RELIABLE)
        node.create_subscription(TFMessage, "/tf", lambda m: self.tf.extend(m.transforms), RELIABLE)
        node.create_subscription(TFMessage, "/tf_static", lambda m: self.tf_static.extend(m.transforms), LATCHED)
        node.create_subscription(Clock, "/clock", lambda m: self.clock.append(m.clock.sec * 10**9 + m.clock.nanosec),
                                 RELIABLE)
        node.create_subscription(UInt8, "/sparsedrive/command", lambda m: self.command.append(m.data), RELIABLE)

    def _image(self, cam):
        def cb(msg):
            self.images[cam].append(stamp_ns(msg.header))
            self.image_bytes[(cam, stamp_ns(msg.header))] = (bytes(msg.data), msg)
        return cb

    def _info(self, cam):
        return lambda msg: self.infos[cam].append(stamp_ns(msg.header))


def expected_stamps(dataroot):
    nusc = NuScenes(dataroot)
    scene = nusc.scenes[0]
    cams = {c: [sd["timestamp"] * 1000 for sd in nusc.channel_stream(scene, c)] for c in CAMERA_ORDER}
    lidar = {sd["timestamp"] * 1000 for sd in nusc.channel_stream(scene, "LIDAR_TOP")}
    tf = sorted(lidar | {s for v in cams.values() for s in v})
    commands = [build_frame_inputs(nusc, s).command for s in nusc.scene_samples(scene)]
    return nusc, cams, tf, commands


def run_and_collect(cmd, env, raw_images=False, n_images=None):
    with RosContext() as ctx:
        node = rclpy.create_node("replay_test_listener", context=ctx)
        col = Collector(node, raw_images)
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            def finished():
                got_all = n_images is not None and all(len(col.images[c]) >= n_images for c in CAMERA_ORDER)
                return got_all or proc.poll() is not None
            spin_until(node, finished, TIMEOUT_S)
            spin_until(node, lambda: False, 0.5)  # drain what is in flight
            out, _ = proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
        node.destroy_node()
    assert proc.returncode == 0, out[-3000:]
    return col, out


def check_collected(col, cams, tf, commands):
    for cam in CAMERA_ORDER:
        assert col.images[cam] == cams[cam], cam
        assert col.infos[cam] == cams[cam], cam
    assert [stamp_ns(t.header) for t in col.tf] == tf
    assert {t.child_frame_id for t in col.tf_static} == {*CAMERA_ORDER, "LIDAR_TOP"}
    assert col.command == commands
    assert col.clock == sorted(col.clock) and col.clock[0] <= tf[0] and col.clock[-1] >= tf[-1]


def test_replay_dataroot_compressed(tmp_path, ros_env):
    ds = generate_dataset(tmp_path, SyntheticConfig(seconds=1.0, width=320, height=180))
    nusc, cams, tf, commands = expected_stamps(ds.dataroot)
    cmd = [sys.executable, "-m", "sparsedrive_ros.tools.replay", "--dataroot", str(ds.dataroot),
           "--wait-for-subscribers", "20", "--rate", "2.0"]
    col, _ = run_and_collect(cmd, ros_env)
    check_collected(col, cams, tf, commands)
    # JPEG bytes unchanged.
    sd = nusc.channel_stream(nusc.scenes[0], "CAM_BACK")[3]
    data, msg = col.image_bytes[("CAM_BACK", sd["timestamp"] * 1000)]
    assert data == (ds.dataroot / sd["filename"]).read_bytes() and msg.format == "jpeg"


def test_replay_default_synthetic_raw(tmp_path, ros_env):
    """No dataroot: the node generates the scene itself; raw bgr8 images on /CAM_*/image_rect."""
    # Same config as the node's parameters below -> same tables (generation is deterministic).
    ref = generate_dataset(tmp_path, SyntheticConfig(seconds=1.0, width=320, height=180, seed=4))
    nusc, cams, tf, commands = expected_stamps(ref.dataroot)
    cmd = [sys.executable, "-m", "sparsedrive_ros.tools.replay", "--seconds", "1", "--width", "320", "--height",
           "180", "--seed", "4", "--raw", "--wait-for-subscribers", "20", "--rate", "2.0"]
    col, out = run_and_collect(cmd, ros_env, raw_images=True)
    assert "generated a synthetic scene" in out
    check_collected(col, cams, tf, commands)
    data, msg = col.image_bytes[("CAM_FRONT", cams["CAM_FRONT"][0])]
    assert (msg.width, msg.height, msg.encoding, msg.step) == (320, 180, "bgr8", 960)
    image = np.frombuffer(data, np.uint8).reshape(180, 320, 3)
    first = nusc.channel_stream(nusc.scenes[0], "CAM_FRONT")[0]
    np.testing.assert_array_equal(image, cv2.imread(str(ref.dataroot / first["filename"])))  # decoded, BGR


def test_replay_rejects_bad_parameters(ros_env):
    cmd = [sys.executable, "-m", "sparsedrive_ros.tools.replay", "--rate", "0", "--seconds", "0.5",
           "--width", "64", "--height", "36"]
    out = subprocess.run(cmd, env=ros_env, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "rate must be > 0" in out.stderr + out.stdout


def test_replay_loop_and_scene_selection(tmp_path, ros_env):
    """--scene picks one of two scenes; --loop starts it again (stamps repeat); SIGINT ends it cleanly."""
    ds = generate_dataset(tmp_path, SyntheticConfig(seconds=0.5, width=64, height=36, num_scenes=2))
    nusc = NuScenes(ds.dataroot)
    wanted = [sd["timestamp"] * 1000 for sd in nusc.channel_stream(nusc.scene("scene-0916"), "CAM_FRONT")]
    cmd = [sys.executable, "-m", "sparsedrive_ros.tools.replay", "--dataroot", str(ds.dataroot), "--scene",
           "scene-0916", "--loop", "--wait-for-subscribers", "20", "--rate", "2.0"]
    with RosContext() as ctx:
        node = rclpy.create_node("replay_loop_listener", context=ctx)
        col = Collector(node)
        proc = subprocess.Popen(cmd, env=ros_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            spin_until(node, lambda: len(col.images["CAM_FRONT"]) >= 3 * len(wanted) or proc.poll() is not None,
                       TIMEOUT_S)
            proc.send_signal(signal.SIGINT)
            out, _ = proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
        node.destroy_node()
    got = col.images["CAM_FRONT"]
    assert got[:3 * len(wanted)] == wanted * 3, out[-2000:]
    assert proc.returncode == 0, out[-2000:]
