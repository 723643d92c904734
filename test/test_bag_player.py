"""Two-process test: the bag player (spawned) forwards a converted bag's raw CDR with the recorded stamps."""
import subprocess
import sys

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy not installed: run `make setup`")
from rosbags.rosbag2 import Reader  # noqa: E402
from test_replay_ros import check_collected, expected_stamps, run_and_collect  # noqa: E402

from sparsedrive_ros.data.synthetic import SyntheticConfig, generate_dataset  # noqa: E402
from sparsedrive_ros.tools.nuscenes_to_bag import TYPESTORE, convert  # noqa: E402

pytestmark = pytest.mark.ros


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_player_forwards_bag(tmp_path, ros_env, storage):
    ds = generate_dataset(tmp_path / "data", SyntheticConfig(seconds=1.0, width=320, height=180, seed=2))
    convert(ds.dataroot, tmp_path / "bag", storage=storage)
    _, cams, tf, commands = expected_stamps(ds.dataroot)
    cmd = [sys.executable, "-m", "sparsedrive_ros.tools.play_bag", str(tmp_path / "bag"),
           "--wait-for-subscribers", "20", "--rate", "2.0"]
    col, out = run_and_collect(cmd, ros_env)
    check_collected(col, cams, tf, commands)
    with Reader(tmp_path / "bag") as reader:
        conn = [c for c in reader.connections if c.topic == "/CAM_FRONT_RIGHT/image_rect_compressed"]
        _, stamp, raw = next(iter(reader.messages(connections=conn)))
    data, msg = col.image_bytes[("CAM_FRONT_RIGHT", stamp)]
    recorded = TYPESTORE.deserialize_cdr(bytes(raw), "sensor_msgs/msg/CompressedImage")
    assert msg.format == "jpeg" and data == bytes(recorded.data)


def test_player_rejects_missing_bag(tmp_path, ros_env):
    out = subprocess.run([sys.executable, "-m", "sparsedrive_ros.tools.play_bag", str(tmp_path / "nope")],
                         env=ros_env, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "metadata.yaml" in out.stderr + out.stdout
