"""The environment is real: rclpy, Fast DDS, this package's messages, across two processes."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy not installed: run `make setup`")
from peer_publisher import make_image  # noqa: E402
from ros_helpers import RosContext, spin_until  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from sparsedrive_ros.msg import Detection3DArray  # noqa: E402

pytestmark = pytest.mark.ros
HERE = Path(__file__).resolve().parent


def test_messages_import_from_source_tree_and_install():
    import sparsedrive_ros
    import sparsedrive_ros.msg as msg

    # The package spans the source tree (Python code) and the install prefix (generated messages).
    roots = {Path(p).resolve() for p in sparsedrive_ros.__path__}
    assert HERE.parent / "sparsedrive_ros" in roots
    assert Path(msg.__file__).resolve().parent.parent in roots
    for name in ("FrameInfo", "Detection3D", "Detection3DArray", "MapElementArray", "MotionForecastArray",
                 "EgoPlan", "PlanCandidate", "PredictedPath"):
        assert hasattr(msg, name), name


def test_custom_message_and_large_image_cross_processes(ros_env):
    received_det, received_img = [], []
    peer = subprocess.Popen([sys.executable, str(HERE / "peer_publisher.py")], env=ros_env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with RosContext() as ctx:
            node = rclpy.create_node("sparsedrive_test_listener", context=ctx)
            node.create_subscription(Detection3DArray, "/sd_test/detections", received_det.append, 10)
            node.create_subscription(Image, "/sd_test/image", received_img.append, 10)
            ok = spin_until(node, lambda: len(received_det) >= 3 and len(received_img) >= 3, timeout=60.0)
            node.destroy_node()
    finally:
        out, err = peer.communicate(input="", timeout=30)
    assert ok, f"received {len(received_det)} detections, {len(received_img)} images; peer: {out} {err}"
    assert peer.returncode == 0, err

    det = received_det[0]
    assert det.header.frame_id == "LIDAR_TOP" and det.header.stamp.sec == 100
    assert det.frame_index == 7 and det.temporal_reset and list(det.class_names) == ["car", "pedestrian"]
    d = det.detections[0]
    assert d.instance_id == 123456789012 and d.label == 1 and d.tracked_frames == 3
    assert (d.center.x, d.center.y, d.size.z, d.yaw) == (1.5, 20.25, 1.8, -1.25)
    np.testing.assert_allclose(d.class_scores, [0.1, 0.8], rtol=1e-7)

    stamps = sorted(m.header.stamp.sec for m in received_img)
    assert stamps == [100, 101, 102]
    img = received_img[0]
    assert (img.height, img.width, img.encoding, img.step) == (900, 1600, "rgb8", 4800)
    expected = np.frombuffer(bytes(make_image(100).data), np.uint8)
    got = np.frombuffer(bytes(img.data), np.uint8)
    assert got.size == 1600 * 900 * 3
    assert np.array_equal(got, expected)


def test_model_core_imports_no_rclpy():
    code = (
        "import sys; import sparsedrive_ros.model, sparsedrive_ros.data, sparsedrive_ros.geometry, "
        "sparsedrive_ros.training; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('rclpy', 'rosidl_runtime_py', 'rcl_interfaces')); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=HERE.parent, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
