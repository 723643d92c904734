"""nuscenes_to_bag: every message reads back with dataset stamps; standard type hashes; v8 metadata."""
from collections import Counter

import numpy as np
import pytest
from rosbags.interfaces import QosDurability
from rosbags.rosbag2 import Reader

from sparsedrive_ros.data.nuscenes import CAMERA_ORDER, NuScenes, build_frame_inputs
from sparsedrive_ros.data.synthetic import SyntheticConfig, generate_dataset
from sparsedrive_ros.data.synthetic_world import RoadShape
from sparsedrive_ros.tools import nuscenes_to_bag
from sparsedrive_ros.tools.nuscenes_to_bag import TYPESTORE, convert


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    cfg = SyntheticConfig(seconds=1.0, width=160, height=90, road=RoadShape.LEFT, curve_radius=20.0, turn_start=0.0)
    return generate_dataset(tmp_path_factory.mktemp("nusc"), cfg)


def _read(bag):
    out = []
    with Reader(bag) as reader:
        conns = {c.id: c for c in reader.connections}
        for conn, stamp_ns, raw in reader.messages():
            out.append((conn.topic, conn.msgtype, stamp_ns, TYPESTORE.deserialize_cdr(raw, conn.msgtype)))
        return out, list(conns.values())


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_bag_round_trip(tmp_path, dataset, storage):
    summary = convert(dataset.dataroot, tmp_path / "bag", storage=storage)
    messages, connections = _read(tmp_path / "bag")
    nusc = NuScenes(dataset.dataroot)
    scene = nusc.scenes[0]
    # 12 Hz streams: 13 images per camera in 1 s (key frames + sweeps), each with a CameraInfo.
    counts = Counter(topic for topic, *_ in messages)
    assert counts == Counter(summary.messages)
    sd_by_file = {}
    for ch in CAMERA_ORDER:
        stream = nusc.channel_stream(scene, ch)
        assert counts[f"/{ch}/image_rect_compressed"] == counts[f"/{ch}/camera_info"] == len(stream) == 13
        sd_by_file.update({sd["timestamp"] * 1000: sd for sd in stream})
    assert counts["/tf_static"] == 1 and counts["/sparsedrive/command"] == 3
    lidar_stamps = {sd["timestamp"] for sd in nusc.channel_stream(scene, "LIDAR_TOP")}
    cam_stamps = {sd["timestamp"] for ch in CAMERA_ORDER for sd in nusc.channel_stream(scene, ch)}
    assert counts["/tf"] == len(lidar_stamps | cam_stamps)

    commands = []
    for topic, msgtype, stamp_ns, msg in messages:
        if hasattr(msg, "header"):
            assert msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec == stamp_ns
        if msgtype == "sensor_msgs/msg/CompressedImage":
            sd = sd_by_file[stamp_ns]
            assert msg.header.frame_id == topic.split("/")[1] and msg.format == "jpeg"
            assert bytes(msg.data) == (dataset.dataroot / sd["filename"]).read_bytes()
        elif msgtype == "sensor_msgs/msg/CameraInfo":
            sd = sd_by_file[stamp_ns]
            np.testing.assert_allclose(msg.k.reshape(3, 3), nusc.intrinsic(sd))
            assert (msg.width, msg.height) == (160, 90)
        elif topic == "/tf":
            (tf,) = msg.transforms
            assert (tf.header.frame_id, tf.child_frame_id) == ("map", "base_link")
            pose = [p for p in nusc.tables["ego_pose"] if p["timestamp"] * 1000 == stamp_ns][0]
            q = tf.transform.rotation
            np.testing.assert_allclose([q.w, q.x, q.y, q.z], pose["rotation"])
            assert tf.transform.translation.x == pose["translation"][0]
        elif topic == "/tf_static":
            children = {t.child_frame_id for t in msg.transforms}
            assert children == {*CAMERA_ORDER, "LIDAR_TOP"}
            front = [t for t in msg.transforms if t.child_frame_id == "CAM_FRONT"][0].transform.rotation
            np.testing.assert_allclose([front.x, front.y, front.z, front.w], [-0.5, 0.5, -0.5, 0.5], atol=0.01)
        elif topic == "/sparsedrive/command":
            commands.append((stamp_ns, msg.data))
    frames = [build_frame_inputs(nusc, s) for s in nusc.scene_samples(scene)]
    assert commands == [(int(round(f.timestamp * 1e6)) * 1000, f.command) for f in frames]
    stamps = [s for _, _, s, _ in messages]
    assert stamps == sorted(stamps) and stamps[0] == min(cam_stamps | lidar_stamps) * 1000

    for conn in connections:
        assert conn.digest == TYPESTORE.hash_rihs01(conn.msgtype)
        durability = conn.ext.offered_qos_profiles[0].durability
        assert durability == (QosDurability.TRANSIENT_LOCAL if conn.topic == "/tf_static" else QosDurability.VOLATILE)
    assert "version: 8" in (tmp_path / "bag" / "metadata.yaml").read_text()


def test_bad_arguments(tmp_path, dataset):
    with pytest.raises(ValueError, match="storage"):
        convert(dataset.dataroot, tmp_path / "b", storage="bag")
    (tmp_path / "exists").mkdir()
    with pytest.raises(ValueError, match="exists"):
        convert(dataset.dataroot, tmp_path / "exists")
    with pytest.raises(ValueError, match="scene-0001"):
        convert(dataset.dataroot, tmp_path / "c", scenes=["scene-0001"])


def test_cli(tmp_path, dataset, capsys):
    assert nuscenes_to_bag.main(["--dataroot", str(dataset.dataroot), "--out", str(tmp_path / "bag"),
                                 "--scene", "scene-0103", "--storage", "sqlite3"]) == 0
    assert "messages on 15 topics" in capsys.readouterr().out
    assert list((tmp_path / "bag").glob("*.db3"))
