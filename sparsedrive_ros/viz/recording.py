"""ROS-free core of the recorder: serialized messages in, an MCAP rosbag2 and one PNG per model frame out.

The ROS node (ros/recorder.py) only subscribes with raw=True and hands (topic, bytes, receive stamp) here, so
this part runs and is tested without rclpy, and render_bag() renders a recorded bag again offline.

Output directory layout:
    <out_dir>/bag/            rosbag2 (MCAP, metadata version 8 so Humble can read it)
    <out_dir>/frames/frame_<frame_index>.png   camera overlays (3 x 2 mosaic) beside the bird's-eye view
    <out_dir>/frames/bev_<frame_index>.png     bird's-eye view alone
    <out_dir>/progress.json   counters, rewritten after every rendered frame (for tools that wait on the run)
"""
from __future__ import annotations

import bisect
import json
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import cv2
import numpy as np

from sparsedrive_ros.conventions import CAMERA_ORDER
from sparsedrive_ros.runtime.tf_buffer import TransformBuffer, TransformError

from .bev import BevView, render_bev
from .camera import camera_mosaic, render_camera_overlay
from .draw import draw_banner
from .messages import (
    ImageDecodeError,
    decode_compressed,
    frame_from_messages,
    intrinsics_from_camera_info,
    stamp_ns,
    transforms_from_tf,
)
from .scene import CameraView, FrameOutputs, GroundTruth

PACKAGE = "sparsedrive_ros"
RANDOM_BANNER = "RANDOM WEIGHTS (checkpoint: random): boxes, map, forecasts and plan are meaningless"
RANDOM_BANNER_SHORT = "RANDOM WEIGHTS: outputs are meaningless"
CAMERA_NAMES = CAMERA_ORDER
# The per-frame outputs a rendered frame is assembled from (all share header.stamp).
FRAME_TOPICS: Dict[str, Tuple[str, str]] = {
    "detections": ("/sparsedrive/detections", f"{PACKAGE}/msg/Detection3DArray"),
    "map": ("/sparsedrive/map", f"{PACKAGE}/msg/MapElementArray"),
    "forecasts": ("/sparsedrive/forecasts", f"{PACKAGE}/msg/MotionForecastArray"),
    "plan": ("/sparsedrive/plan", f"{PACKAGE}/msg/EgoPlan"),
    "frame_info": ("/sparsedrive/frame_info", f"{PACKAGE}/msg/FrameInfo"),
}
OTHER_OUTPUT_TOPICS: Dict[str, str] = {
    "/sparsedrive/markers": "visualization_msgs/msg/MarkerArray",
    "/sparsedrive/plan_path": "nav_msgs/msg/Path",
    "/diagnostics": "diagnostic_msgs/msg/DiagnosticArray",
}
TF_TYPE = "tf2_msgs/msg/TFMessage"
IMAGE_TYPE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
COMMAND_TYPE = "std_msgs/msg/UInt8"


@dataclass(frozen=True)
class RecorderConfig:
    out_dir: Path
    camera_names: Tuple[str, ...] = CAMERA_NAMES
    image_topic_format: str = "/{camera}/image_rect_compressed"
    camera_info_topic_format: str = "/{camera}/camera_info"
    command_topic: str = "/sparsedrive/command"  # std_msgs/UInt8 driving command, recorded as an input
    record_inputs: bool = True  # also write images, camera_info and TF into the bag (replayable, re-renderable)
    write_bag: bool = True  # False: render only (e.g. re-rendering a recorded bag)
    render: bool = True
    fixed_frame: str = "map"  # camera images at their own stamps are related to the outputs through this frame
    vehicle_frame: str = "base_link"  # the ground plane is z = 0 here
    image_tolerance_s: float = 0.1  # max |image stamp - wanted stamp| for an overlay
    image_history_s: float = 30.0  # how long images are kept waiting for their frame's outputs (ROS time)
    max_pending_frames: int = 3  # incomplete frames kept before the oldest is rendered with what it has
    draw_max_boxes: int = 60  # the best-scoring boxes drawn per frame (all are recorded)
    draw_max_map: int = 40  # the best-scoring map polylines drawn per frame
    draw_min_score: float = 0.0  # nothing below this score is drawn
    bev_view: BevView = BevView()
    # A nuScenes dataroot whose annotations are drawn beside the outputs (thin white boxes, the true ego path);
    # empty: outputs only. The replay launch file passes its dataroot.
    dataroot: str = ""
    version: str = "v1.0-mini"
    keep_frames: bool = False  # keep every assembled FrameOutputs in Recording.frames (behaviour checks)
    tile_size: Tuple[int, int] = (480, 270)

    def __post_init__(self):
        if not self.camera_names:
            raise ValueError("camera_names must not be empty")
        for fmt in (self.image_topic_format, self.camera_info_topic_format):
            if "{camera}" not in fmt:
                raise ValueError(f"topic format {fmt!r} must contain '{{camera}}'")
        if self.max_pending_frames < 1:
            raise ValueError(f"max_pending_frames must be >= 1, got {self.max_pending_frames}")

    def topics(self) -> Dict[str, str]:
        """Every topic the recorder subscribes: topic -> ROS type name."""
        topics = {topic: typename for topic, typename in FRAME_TOPICS.values()}
        topics.update(OTHER_OUTPUT_TOPICS)
        topics["/tf"] = TF_TYPE
        topics["/tf_static"] = TF_TYPE
        topics[self.command_topic] = COMMAND_TYPE
        for cam in self.camera_names:
            topics[self.image_topic_format.format(camera=cam)] = IMAGE_TYPE
            topics[self.camera_info_topic_format.format(camera=cam)] = CAMERA_INFO_TYPE
        return topics


def package_msg_dirs() -> List[Path]:
    """Where this package's .msg files are: the source tree, then the ament install."""
    dirs = [Path(__file__).resolve().parents[2] / "msg"]
    for prefix in filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)):
        dirs.append(Path(prefix, "share", PACKAGE, "msg"))
    return [d for d in dirs if d.is_dir() and any(d.glob("*.msg"))]


def package_typestore(msg_dir: Optional[Path] = None):
    """rosbags Kilted typestore plus this package's messages, registered from the .msg text."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    if msg_dir is None:
        found = package_msg_dirs()
        if not found:
            raise FileNotFoundError(f"no msg/*.msg of {PACKAGE} found (source tree or AMENT_PREFIX_PATH)")
        msg_dir = found[0]
    store = get_typestore(Stores.ROS2_KILTED)
    types: Dict[str, Any] = {}
    for path in sorted(Path(msg_dir).glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"{PACKAGE}/msg/{path.stem}"))
    store.register(types)
    return store


def installed_type_hashes() -> Dict[str, str]:
    """RIHS01 hashes rosidl computed at build time (share/<pkg>/msg/*.json), by type name."""
    hashes: Dict[str, str] = {}
    for prefix in filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)):
        for path in sorted(Path(prefix, "share", PACKAGE, "msg").glob("*.json")):
            for entry in json.loads(path.read_text()).get("type_hashes", []):
                hashes.setdefault(entry["type_name"], entry["hash_string"])
    return hashes


def verify_type_hashes(store, expected: Mapping[str, str]) -> List[str]:
    """Type names of this package whose rosbags hash differs from `expected` (empty list: all match)."""
    return sorted(name for name, value in expected.items()
                  if name.startswith(f"{PACKAGE}/") and name in store.types and store.hash_rihs01(name) != value)


class BagWriter:
    """rosbag2 MCAP writer of already-serialized CDR messages; one connection per topic, made on first use."""

    def __init__(self, path: Path, store, latched_topics: Sequence[str] = ("/tf_static",)):
        from rosbags.rosbag2 import StoragePlugin, Writer

        if Path(path).exists():
            raise FileExistsError(f"bag directory {str(path)!r} already exists; choose another out_dir")
        self._store = store
        self._latched = set(latched_topics)
        self._writer = Writer(Path(path), version=8, storage_plugin=StoragePlugin.MCAP)
        self._writer.open()
        self._connections: Dict[str, Any] = {}
        self.counts: Dict[str, int] = defaultdict(int)

    def _qos(self, topic: str):
        from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

        durability = QosDurability.TRANSIENT_LOCAL if topic in self._latched else QosDurability.VOLATILE
        zero = QosTime(0, 0)
        return [Qos(QosHistory.KEEP_LAST, 1, QosReliability.RELIABLE, durability, zero, zero,
                    QosLiveliness.AUTOMATIC, zero, False)]

    def write(self, topic: str, typename: str, stamp: int, raw: bytes) -> None:
        conn = self._connections.get(topic)
        if conn is None:
            conn = self._connections[topic] = self._writer.add_connection(
                topic, typename, typestore=self._store, offered_qos_profiles=self._qos(topic))
        self._writer.write(conn, stamp, raw)
        self.counts[topic] += 1

    def close(self) -> None:
        self._writer.close()


@dataclass
class PendingFrame:
    stamp_ns: int
    messages: Dict[str, Any] = field(default_factory=dict)  # kind -> deserialized message

    @property
    def complete(self) -> bool:
        return all(kind in self.messages for kind in FRAME_TOPICS)


class FrameAssembler:
    """Groups the five per-frame outputs by header stamp and hands each frame on once, oldest first."""

    def __init__(self, on_frame: Callable[[PendingFrame], None], max_pending: int = 3):
        self._on_frame = on_frame
        self._max_pending = max_pending
        self._pending: Dict[int, PendingFrame] = {}
        self._done_stamps: List[int] = []  # bounded, to drop late duplicates

    def add(self, kind: str, msg) -> None:
        stamp = stamp_ns(msg.header)
        if stamp in self._done_stamps:
            return
        frame = self._pending.setdefault(stamp, PendingFrame(stamp))
        frame.messages[kind] = msg
        if frame.complete:
            # Older frames still incomplete will not complete any more (outputs arrive in stamp order).
            for older in sorted(s for s in self._pending if s <= stamp):
                self._emit(older)
        while len(self._pending) > self._max_pending:
            self._emit(min(self._pending))

    def flush(self) -> None:
        for stamp in sorted(self._pending):
            self._emit(stamp)

    def _emit(self, stamp: int) -> None:
        frame = self._pending.pop(stamp)
        self._done_stamps = (self._done_stamps + [stamp])[-64:]
        self._on_frame(frame)


class ImageCache:
    """Recent serialized images per camera, by stamp (decoded only when a frame is rendered)."""

    def __init__(self, history_ns: int):
        self._history_ns = history_ns
        self._stamps: Dict[str, List[int]] = defaultdict(list)
        self._raw: Dict[str, List[bytes]] = defaultdict(list)

    def add(self, camera: str, stamp: int, raw: bytes) -> None:
        stamps, raws = self._stamps[camera], self._raw[camera]
        i = bisect.bisect_left(stamps, stamp)
        stamps.insert(i, stamp)
        raws.insert(i, raw)
        cut = bisect.bisect_left(stamps, stamps[-1] - self._history_ns)
        del stamps[:cut], raws[:cut]

    def closest(self, camera: str, stamp: int, tolerance_ns: int) -> Optional[Tuple[int, bytes]]:
        stamps = self._stamps.get(camera, [])
        if not stamps:
            return None
        i = bisect.bisect_left(stamps, stamp)
        best = min((j for j in (i - 1, i) if 0 <= j < len(stamps)), key=lambda j: abs(stamps[j] - stamp))
        if abs(stamps[best] - stamp) > tolerance_ns:
            return None
        return stamps[best], self._raw[camera][best]


class Recording:
    """Feed every received message to `handle`; call `close` at the end (renders what is still pending)."""

    def __init__(self, config: RecorderConfig, store=None, log: Callable[[str], None] = print):
        self.config = config
        self.log = log
        self.store = store if store is not None else package_typestore()
        self.topics = config.topics()
        out = Path(config.out_dir)
        self.frames_dir = out / "frames"
        self.frames_dir.mkdir(parents=True, exist_ok=True)
        self.bag_dir = out / "bag"
        self.tf = TransformBuffer(cache_seconds=config.image_history_s)
        self.images = ImageCache(int(config.image_history_s * 1e9))
        self.intrinsics: Dict[str, np.ndarray] = {}
        self.camera_of_topic = {config.image_topic_format.format(camera=c): c for c in config.camera_names}
        self.camera_of_info = {config.camera_info_topic_format.format(camera=c): c for c in config.camera_names}
        self.bag = BagWriter(self.bag_dir, self.store, latched_topics=("/tf_static", config.command_topic)) \
            if config.write_bag else None
        self.input_topics = (set(self.camera_of_topic) | set(self.camera_of_info)
                             | {"/tf", "/tf_static", config.command_topic})
        self.assembler = FrameAssembler(self._on_frame, config.max_pending_frames)
        self.rendered: List[Path] = []
        self.frames: List[FrameOutputs] = []
        self.ground_truth = None
        if config.dataroot:
            from .ground_truth import DatasetGroundTruth  # reads the whole dataroot's tables: only when asked

            self.ground_truth = DatasetGroundTruth(config.dataroot, config.version)
        self.render_errors = 0
        self._progress: Dict[str, Any] = {"frames_received": 0, "frames_rendered": 0, "last_frame_index": None,
                          "last_output_wall": None, "last_input_wall": None, "messages": {}}
        self._progress_written = 0.0

    def handle(self, topic: str, raw: bytes, stamp: int) -> None:
        """One serialized message received on `topic` at ROS time `stamp` (ns)."""
        typename = self.topics.get(topic)
        if typename is None:
            raise ValueError(f"recorder got a message on unknown topic {topic!r}")
        is_input = topic in self.input_topics
        if self.bag is not None and (not is_input or self.config.record_inputs):
            self.bag.write(topic, typename, stamp, raw)
        now = time.time()
        if is_input:
            self._progress["last_input_wall"] = now
        elif topic != "/diagnostics":  # diagnostics keep coming on wall time after the last model result
            self._progress["last_output_wall"] = now
        if now - self._progress_written > 1.0:
            self._write_progress()
        if topic in self.camera_of_topic:
            header_stamp = stamp_ns(self.store.deserialize_cdr(raw, typename).header)
            self.images.add(self.camera_of_topic[topic], header_stamp, raw)
        elif topic in self.camera_of_info:
            k, _ = intrinsics_from_camera_info(self.store.deserialize_cdr(raw, typename))
            self.intrinsics[self.camera_of_info[topic]] = k
        elif topic in ("/tf", "/tf_static"):
            for parent, child, t, matrix in transforms_from_tf(self.store.deserialize_cdr(raw, typename)):
                self.tf.set_transform(parent, child, t, matrix, static=topic == "/tf_static")
        else:
            kind = next((k for k, (t, _) in FRAME_TOPICS.items() if t == topic), None)
            if kind is not None:
                self.assembler.add(kind, self.store.deserialize_cdr(raw, typename))

    def close(self) -> None:
        self.assembler.flush()
        if self.bag is not None:
            self.bag.close()
        self._write_progress(finished=True)

    # Rendering -------------------------------------------------------------------------------------------------

    def _on_frame(self, frame: PendingFrame) -> None:
        m = frame.messages
        self._progress["frames_received"] += 1
        if m.get("frame_info") is not None:  # lets a waiting tool size its idle timeout to the model's speed
            self._progress["last_total_latency"] = float(m["frame_info"].total_latency)
            self._progress["last_frame_index"] = int(m["frame_info"].frame_index)
        if self.config.render or self.config.keep_frames:
            self._render(frame)
        self._write_progress()

    def _render(self, frame: PendingFrame) -> None:
        m = frame.messages
        try:
            outputs = frame_from_messages(m.get("detections"), m.get("map"), m.get("forecasts"), m.get("plan"),
                                          m.get("frame_info"))
            outputs.ground_truth = self._ground_truth(outputs)
            if self.config.keep_frames:
                self.frames.append(outputs)
            if not self.config.render:
                return
            total = (len(outputs.boxes), len(outputs.map.polylines))
            outputs = outputs.strongest(self.config.draw_max_boxes, self.config.draw_max_map,
                                        self.config.draw_min_score)
            outputs.info["drawn"] = (f"{len(outputs.boxes)} of {total[0]} boxes, "
                                     f"{len(outputs.map.polylines)} of {total[1]} map elements")
            bev = render_bev(outputs, self.config.bev_view)
            overlays = self._camera_overlays(outputs, m.get("frame_info"))
            mosaic = camera_mosaic(overlays, self.config.tile_size)
            height = mosaic.shape[0]
            bev_small = cv2.resize(bev, (int(bev.shape[1] * height / bev.shape[0]), height),
                                   interpolation=cv2.INTER_AREA)
            path = self.frames_dir / f"frame_{outputs.frame_index:06d}.png"
            combined = np.concatenate([mosaic, bev_small], axis=1)
            if outputs.random_weights:
                combined, bev = draw_banner(combined, RANDOM_BANNER), draw_banner(bev, RANDOM_BANNER_SHORT)
            cv2.imwrite(str(path), combined)
            cv2.imwrite(str(self.frames_dir / f"bev_{outputs.frame_index:06d}.png"), bev)
        except Exception as err:  # noqa: BLE001 -- one bad frame must not end a recording
            self.render_errors += 1
            self.log(f"could not render the frame at {frame.stamp_ns * 1e-9:.3f} s: {type(err).__name__}: {err}")
            return
        self.rendered.append(path)
        missing = sorted(set(FRAME_TOPICS) - set(m))
        self.log(f"rendered {path.name} ({len(overlays)}/{len(self.config.camera_names)} cameras"
                 f"{', missing ' + ', '.join(missing) if missing else ''})")
        self._progress["frames_rendered"] = len(self.rendered)

    def _ground_truth(self, outputs: FrameOutputs) -> Optional[GroundTruth]:
        if self.ground_truth is None:
            return None
        try:
            ref_to_global = self.tf.lookup(self.config.fixed_frame, outputs.frame_id, outputs.stamp_ns)
        except TransformError:
            return None
        return self.ground_truth.in_frame(outputs.stamp_ns, ref_to_global)

    def _camera_stamps(self, frame_info, default: int) -> Dict[str, int]:
        stamps = {c: default for c in self.config.camera_names}
        if frame_info is not None:
            for name, t in zip(frame_info.camera_names, frame_info.camera_stamps):
                if name in stamps and (t.sec or t.nanosec):
                    stamps[name] = stamp_ns(t)
        return stamps

    def _ground_z(self, reference: str, stamp: int) -> float:
        try:
            return -float(self.tf.lookup(self.config.vehicle_frame, reference, stamp)[2, 3])
        except TransformError:
            return -1.84  # LIDAR_TOP height on the nuScenes car

    def _camera_from_reference(self, camera_frame: str, camera_stamp: int, reference: str, stamp: int) -> np.ndarray:
        try:  # the car moved between the outputs' stamp and this camera's exposure: go through the fixed frame
            return self.tf.lookup_full(camera_frame, camera_stamp, reference, stamp, self.config.fixed_frame)
        except TransformError:
            return self.tf.lookup(camera_frame, reference, stamp)

    def _camera_overlays(self, outputs, frame_info) -> Dict[str, np.ndarray]:
        tolerance = int(self.config.image_tolerance_s * 1e9)
        ground_z = self._ground_z(outputs.frame_id, outputs.stamp_ns)
        overlays = {}
        for camera, wanted in self._camera_stamps(frame_info, outputs.stamp_ns).items():
            found = self.images.closest(camera, wanted, tolerance)
            if found is None or camera not in self.intrinsics:
                continue
            msg = self.store.deserialize_cdr(found[1], IMAGE_TYPE)
            try:
                image = decode_compressed(msg)
            except ImageDecodeError:
                continue
            try:
                cam_from_ref = self._camera_from_reference(msg.header.frame_id or camera, found[0],
                                                           outputs.frame_id, outputs.stamp_ns)
            except TransformError as err:
                self.log(f"{camera}: no transform to draw outputs into it ({err})")
                overlays[camera] = image
                continue
            view = CameraView(camera, image, self.intrinsics[camera], cam_from_ref)
            overlays[camera] = render_camera_overlay(outputs, view, ground_z=ground_z)
        return overlays

    def _write_progress(self, finished: bool = False) -> None:
        self._progress["messages"] = dict(self.bag.counts) if self.bag is not None else {}
        self._progress["render_errors"] = self.render_errors
        self._progress["finished"] = finished
        path = Path(self.config.out_dir) / "progress.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._progress, indent=1))
        tmp.replace(path)
        self._progress_written = time.time()


def render_bag(bag_dir: Path, out_dir: Path, **config) -> List[Path]:
    """Renders the frames of a bag recorded by the recorder (or any bag with the same topics) into out_dir/frames."""
    recording = Recording(RecorderConfig(out_dir=Path(out_dir), write_bag=False, **config), log=lambda line: None)
    feed_bag(bag_dir, recording)
    return recording.rendered


def feed_bag(bag_dir: Path, recording: Recording) -> None:
    """Hand every message of a recorded bag on the recording's topics to ``recording``, then close it."""
    from rosbags.rosbag2 import Reader

    with Reader(Path(bag_dir)) as reader:
        for conn, stamp, raw in reader.messages():
            if conn.topic in recording.topics:
                recording.handle(conn.topic, bytes(raw), stamp)
    recording.close()
