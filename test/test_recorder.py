"""The recorder: outputs and inputs to an MCAP bag (types registered from msg/), frames rendered through TF.

The ROS-free core (viz.recording) is fed serialized messages built with rosbags; one ROS test runs the recorder
node as a child process and publishes the same bytes with rclpy.
"""
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from sparsedrive_ros.runtime.tf_buffer import matrix_to_quat
from sparsedrive_ros.viz.draw import DETECTION_COLORS
from sparsedrive_ros.viz.recording import (
    CAMERA_NAMES,
    FRAME_TOPICS,
    FrameAssembler,
    RecorderConfig,
    Recording,
    installed_type_hashes,
    package_typestore,
    render_bag,
    verify_type_hashes,
)

REPO = Path(__file__).resolve().parents[1]
T0 = 1_533_000_000 * 10**9 + 250_000_000  # ns
CAM_DT = 100_000_000  # the front camera exposed 0.1 s after the anchor stamp
EGO_SPEED = 20.0  # m/s along map +x: the car moves 2 m between the outputs' stamp and the camera's
K = np.array([[1000.0, 0, 800], [0, 1000, 450], [0, 0, 1]])
NUMPY_TYPES = {"uint8": np.uint8, "int8": np.int8, "uint16": np.uint16, "int16": np.int16, "uint32": np.uint32,
               "int32": np.int32, "uint64": np.uint64, "int64": np.int64, "float32": np.float32,
               "float64": np.float64, "bool": np.bool_, "byte": np.uint8, "char": np.uint8}


@pytest.fixture(scope="module")
def store():
    return package_typestore(REPO / "msg")


def build(store, typename, **values):
    """A rosbags message of `typename` with zero/empty defaults for every field not given."""
    _, fields = store.fielddefs[typename]
    kwargs = {}
    for name, (kind, detail) in fields:
        kwargs[name] = values.pop(name) if name in values else _default(store, kind.name, detail)
    if values:
        raise TypeError(f"{typename} has no fields {sorted(values)}")
    return store.types[typename](**kwargs)


def _default(store, kind, detail):
    if kind == "BASE":
        base = detail[0]
        return "" if base == "string" else (False if base == "bool" else NUMPY_TYPES[base](0).item())
    if kind == "NAME":
        return build(store, detail)
    (sub_kind, sub_detail), length = detail
    if sub_kind.name == "BASE" and sub_detail[0] in NUMPY_TYPES:
        return np.zeros(length if kind == "ARRAY" else 0, NUMPY_TYPES[sub_detail[0]])
    return [_default(store, sub_kind.name, sub_detail) for _ in range(length if kind == "ARRAY" else 0)]


def header(store, stamp, frame_id):
    t = build(store, "builtin_interfaces/msg/Time", sec=stamp // 10**9, nanosec=stamp % 10**9)
    return build(store, "std_msgs/msg/Header", stamp=t, frame_id=frame_id)


def point(store, x, y, z, typename="geometry_msgs/msg/Point"):
    return build(store, typename, x=float(x), y=float(y), z=float(z))


def transform(store, parent, child, stamp, matrix):
    q = matrix_to_quat(matrix[:3, :3])
    tf = build(
        store,
        "geometry_msgs/msg/Transform",
        translation=point(store, *matrix[:3, 3], "geometry_msgs/msg/Vector3"),
        rotation=build(store, "geometry_msgs/msg/Quaternion", x=q[0], y=q[1], z=q[2], w=q[3]),
    )
    return build(store, "geometry_msgs/msg/TransformStamped", header=header(store, stamp, parent),
                 child_frame_id=child, transform=tf)


def rigid(rotation_columns, translation):
    m = np.eye(4)
    m[:3, :3] = np.array(rotation_columns, dtype=float).T
    m[:3, 3] = translation
    return m


# nuScenes-like rig: LIDAR_TOP (x right, y forward) 1.84 m above base_link (x forward, y left, z up, on the
# ground); CAM_FRONT optical frame (x right, y down, z forward) 1.7 m ahead, 1.5 m up.
BASE_FROM_LIDAR = rigid([(0, -1, 0), (1, 0, 0), (0, 0, 1)], (0.94, 0.0, 1.84))
BASE_FROM_CAM = rigid([(0, -1, 0), (0, 0, -1), (1, 0, 0)], (1.7, 0.0, 1.5))


def map_from_base(stamp):
    return rigid([(1, 0, 0), (0, 1, 0), (0, 0, 1)], (100.0 + EGO_SPEED * (stamp - T0) * 1e-9, 50.0, 0.0))


def input_messages(store):
    """(topic, typename, message) of the rig: TF, the front camera's info and one JPEG image."""
    tf_static = build(store, "tf2_msgs/msg/TFMessage", transforms=[
        transform(store, "base_link", "LIDAR_TOP", 0, BASE_FROM_LIDAR),
        transform(store, "base_link", "CAM_FRONT", 0, BASE_FROM_CAM)])
    tf = [build(store, "tf2_msgs/msg/TFMessage", transforms=[transform(store, "map", "base_link", t, map_from_base(t))])
          for t in (T0 - 500_000_000, T0, T0 + 500_000_000)]
    info = build(store, "sensor_msgs/msg/CameraInfo", header=header(store, T0 + CAM_DT, "CAM_FRONT"), height=900,
                 width=1600, k=K.reshape(-1).astype(np.float64))
    ok, jpeg = cv2.imencode(".jpg", np.full((900, 1600, 3), 70, np.uint8))
    image = build(store, "sensor_msgs/msg/CompressedImage", header=header(store, T0 + CAM_DT, "CAM_FRONT"),
                  format="jpeg", data=jpeg.reshape(-1))
    return ([("/tf_static", "tf2_msgs/msg/TFMessage", tf_static)]
            + [("/tf", "tf2_msgs/msg/TFMessage", m) for m in tf]
            + [("/sparsedrive/command", "std_msgs/msg/UInt8", build(store, "std_msgs/msg/UInt8", data=2)),
               ("/CAM_FRONT/camera_info", "sensor_msgs/msg/CameraInfo", info),
               ("/CAM_FRONT/image_rect_compressed", "sensor_msgs/msg/CompressedImage", image)])


def output_messages(store, stamp=T0, frame_index=5, box_y=20.0):
    """The five per-frame outputs with one car `box_y` m ahead of LIDAR_TOP, 1 m above the ground."""
    h = lambda: header(store, stamp, "LIDAR_TOP")  # noqa: E731
    det = build(store, "sparsedrive_ros/msg/Detection3D", instance_id=42, label=0, score=0.9, class_score=0.9,
                class_scores=np.array([0.9], np.float32), center=point(store, 0.0, box_y, -0.84),
                size=point(store, 4.0, 2.0, 2.0, "geometry_msgs/msg/Vector3"), yaw=np.pi / 2, tracked_frames=1)
    detections = build(store, "sparsedrive_ros/msg/Detection3DArray", header=h(), frame_index=frame_index,
                       class_names=["car"], detections=[det])
    element = build(store, "sparsedrive_ros/msg/MapElement", label=2, score=0.8,
                    points=[point(store, -5.0, y, -1.84) for y in (0.0, 10.0, 20.0)])
    map_msg = build(store, "sparsedrive_ros/msg/MapElementArray", header=h(), frame_index=frame_index,
                    class_names=["ped_crossing", "divider", "boundary"], elements=[element])
    path = build(store, "sparsedrive_ros/msg/PredictedPath", confidence=1.0,
                 xy=np.array([(0.0, box_y + k + 1.0) for k in range(12)], np.float32).ravel())
    fc = build(store, "sparsedrive_ros/msg/MotionForecast", instance_id=42, label=0, paths=[path])
    forecasts = build(store, "sparsedrive_ros/msg/MotionForecastArray", header=h(), frame_index=frame_index,
                      forecasts=[fc])
    plan = build(store, "sparsedrive_ros/msg/EgoPlan", header=h(), frame_index=frame_index, command=2,
                 trajectory=[point(store, 0.0, 2.0 * (k + 1), 0.0) for k in range(6)])
    stamps = [build(store, "builtin_interfaces/msg/Time", sec=(stamp + CAM_DT) // 10**9,
                    nanosec=(stamp + CAM_DT) % 10**9)]
    stamps += [build(store, "builtin_interfaces/msg/Time") for _ in CAMERA_NAMES[1:]]
    info = build(store, "sparsedrive_ros/msg/FrameInfo", header=h(), frame_index=frame_index,
                 camera_names=list(CAMERA_NAMES), camera_stamps=stamps,
                 camera_status=np.array([0, 2, 2, 2, 2, 2], np.uint8), model_latency=3.5, total_latency=3.7)
    msgs = {"detections": detections, "map": map_msg, "forecasts": forecasts, "plan": plan, "frame_info": info}
    return [(FRAME_TOPICS[kind][0], FRAME_TOPICS[kind][1], msg) for kind, msg in msgs.items()]


def serialize(store, items):
    return [(topic, typename, bytes(store.serialize_cdr(msg, typename))) for topic, typename, msg in items]


def car_near(image, u, v, radius=2):
    patch = image[v - radius:v + radius + 1, u - radius:u + radius + 1].reshape(-1, 3).astype(int)
    return bool(np.any(np.all(np.abs(patch - np.array(DETECTION_COLORS[0])) <= 50, axis=1)))


def read_bag(bag_dir, store):
    from rosbags.rosbag2 import Reader

    with Reader(bag_dir) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
        messages = {}
        for conn, _, raw in reader.messages():
            messages.setdefault(conn.topic, []).append(store.deserialize_cdr(raw, conn.msgtype))
    metadata = yaml.safe_load((Path(bag_dir) / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    return metadata, counts, messages


def test_package_types_match_the_built_messages(store):
    expected = installed_type_hashes()
    if not expected:
        pytest.skip("sparsedrive_ros messages are not built (make setup)")
    assert any(name.startswith("sparsedrive_ros/") for name in expected)
    assert verify_type_hashes(store, expected) == []
    bad = dict(expected, **{"sparsedrive_ros/msg/FrameInfo": "RIHS01_" + "0" * 64})
    assert verify_type_hashes(store, bad) == ["sparsedrive_ros/msg/FrameInfo"]


def test_recording_writes_bag_and_renders_outputs_through_tf(tmp_path, store):
    config = RecorderConfig(out_dir=tmp_path / "rec", tile_size=(1600, 900))  # full-resolution tiles
    rec = Recording(config, store, log=lambda line: None)
    for topic, _, raw in serialize(store, input_messages(store) + output_messages(store)):
        rec.handle(topic, raw, T0)
    rec.close()

    metadata, counts, messages = read_bag(tmp_path / "rec" / "bag", store)
    assert metadata["storage_identifier"] == "mcap" and metadata["version"] == 8
    for topic, _ in FRAME_TOPICS.values():
        assert counts[topic] == 1, topic
    assert counts["/tf"] == 3 and counts["/tf_static"] == 1 and counts["/CAM_FRONT/image_rect_compressed"] == 1
    assert messages["/sparsedrive/command"][0].data == 2
    latched = {t["topic_metadata"]["name"] for t in metadata["topics_with_message_count"]
               if "durability: 1" in t["topic_metadata"]["offered_qos_profiles"]}
    assert latched == {"/tf_static", "/sparsedrive/command"}  # players latch them again
    det = messages["/sparsedrive/detections"][0]
    assert det.detections[0].instance_id == 42 and det.detections[0].center.y == 20.0

    assert rec.render_errors == 0
    frame = cv2.imread(str(tmp_path / "rec" / "frames" / "frame_000005.png"))
    assert frame.shape[0] == 1800 and (tmp_path / "rec" / "frames" / "bev_000005.png").is_file()
    # The car (near face 18 m ahead of the lidar) seen from CAM_FRONT 0.1 s later, after the ego drove 2 m:
    # depth = 0.94 + 18 - 2 - 1.7 = 15.24 m; its bottom (ground) 1.5 m below the camera, its top 0.5 m above.
    depth = 0.94 + 18.0 - EGO_SPEED * CAM_DT * 1e-9 - 1.7
    u0 = 1600  # the front camera is the top-middle tile
    bottom, top, side = 450 + 1000 * 1.5 / depth, 450 - 1000 * 0.5 / depth, 1000 * 1.0 / depth
    assert car_near(frame, u0 + 800, round(bottom)) and car_near(frame, u0 + 800, round(top))
    assert car_near(frame, round(u0 + 800 - side), 450) and car_near(frame, round(u0 + 800 + side), 450)
    # Without the ego motion between the two stamps the bottom edge would be 11 px higher: not there (40 px
    # right of the centre, away from the forecast drawn from the box's centre).
    static_bottom = 450 + 1000 * 1.5 / (depth + 2.0)
    assert bottom - static_bottom > 10 and car_near(frame, u0 + 840, round(bottom), radius=1)
    assert not car_near(frame, u0 + 840, round(static_bottom), radius=1)
    # The bag holds everything needed to render the same picture again, offline.
    again = render_bag(tmp_path / "rec" / "bag", tmp_path / "again", tile_size=(1600, 900))
    assert [p.name for p in again] == ["frame_000005.png"] and not (tmp_path / "again" / "bag").exists()
    assert np.array_equal(cv2.imread(str(again[0])), frame)
    progress = json.loads((tmp_path / "rec" / "progress.json").read_text())
    assert progress["frames_rendered"] == 1 and progress["frames_received"] == 1 and progress["finished"]
    assert progress["last_frame_index"] == 5 and progress["last_total_latency"] == pytest.approx(3.7)


def test_record_inputs_off_keeps_images_out_of_the_bag(tmp_path, store):
    rec = Recording(RecorderConfig(out_dir=tmp_path, record_inputs=False, render=False), store, log=lambda s: None)
    for topic, _, raw in serialize(store, input_messages(store) + output_messages(store)):
        rec.handle(topic, raw, T0)
    rec.close()
    _, counts, _ = read_bag(tmp_path / "bag", store)
    assert set(counts) == {topic for topic, _ in FRAME_TOPICS.values()}
    assert not list((tmp_path / "frames").glob("*.png"))
    with pytest.raises(FileExistsError, match="already exists"):
        Recording(RecorderConfig(out_dir=tmp_path), store)


def test_assembler_hands_frames_on_in_stamp_order_complete_or_not(store):
    seen = []
    assembler = FrameAssembler(lambda f: seen.append((f.stamp_ns, sorted(f.messages))), max_pending=2)
    first = output_messages(store, stamp=T0, frame_index=1)
    second = output_messages(store, stamp=T0 + 500_000_000, frame_index=2)
    kind_of = {topic: kind for kind, (topic, _) in FRAME_TOPICS.items()}
    assembler.add(kind_of[first[0][0]], first[0][2])  # only the detections of frame 1 arrive
    for topic, _, msg in second:
        assembler.add(kind_of[topic], msg)
    assert seen == [(T0, ["detections"]), (T0 + 500_000_000, sorted(FRAME_TOPICS))]
    assembler.add(kind_of[first[1][0]], first[1][2])  # a late part of an already rendered frame is dropped
    assembler.flush()
    assert len(seen) == 2


@pytest.mark.ros
def test_recorder_node_records_published_bytes(tmp_path, ros_env, store):
    rclpy = pytest.importorskip("rclpy", reason="rclpy not installed: run `make setup`")
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from ros_helpers import RosContext, spin_until

    from sparsedrive_ros.ros.recorder import message_class

    out_dir = tmp_path / "rec"
    proc = subprocess.Popen([sys.executable, str(REPO / "nodes" / "sparsedrive_recorder"), "--ros-args",
                             "-p", f"out_dir:={out_dir}"], env=ros_env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    progress = out_dir / "progress.json"
    rendered = lambda: progress.is_file() and json.loads(progress.read_text())["frames_rendered"] >= 1  # noqa: E731
    try:
        with RosContext() as ctx:
            node = rclpy.create_node("recorder_test_publisher", context=ctx)
            items = serialize(store, input_messages(store) + output_messages(store))
            pubs = {}
            for topic, typename, _ in items:
                if topic not in pubs:
                    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
                    pubs[topic] = node.create_publisher(message_class(typename), topic, qos)
            matched = spin_until(node, lambda: all(p.get_subscription_count() > 0 for p in pubs.values()), 60.0)
            assert matched, "the recorder never subscribed"
            for topic, _, raw in items:  # inputs first, as in a live system
                pubs[topic].publish(raw)
                time.sleep(0.02)
            ok = spin_until(node, rendered, 60.0)
            node.destroy_node()
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert ok, out
    assert proc.returncode == 0, out
    _, counts, messages = read_bag(out_dir / "bag", store)
    assert counts["/sparsedrive/detections"] == 1 and counts["/sparsedrive/frame_info"] == 1
    assert messages["/sparsedrive/plan"][0].trajectory[5].y == 12.0
    assert (out_dir / "frames" / "frame_000005.png").is_file()
