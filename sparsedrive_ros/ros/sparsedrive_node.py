"""The SparseDrive ROS 2 node: ROS I/O only. A camera frame travels:

  image callback -> CameraSynchronizer (runtime/sync.py, buffers undecoded messages)
  -> newest-frame slot -> worker thread: decode, CameraInfo K, TF look-ups -> FrameRequest
  -> SparseDrivePipeline.process (runtime/pipeline.py: preprocessing, temporal state, the model)
  -> conversions.py -> publishers (custom messages, MarkerArray, Path) + /diagnostics.

Callbacks only buffer, so they never wait for the model; when the model is busy the newest complete frame
replaces the waiting one (counted as `busy`). Outputs carry the anchor image stamp and the reference frame.
"""
from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Optional

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from nav_msgs.msg import Path
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.clock import Clock, ClockType
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import UInt8
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray

from sparsedrive_ros.conventions import CAMERA_ORDER
from sparsedrive_ros.msg import Detection3DArray, EgoPlan, FrameInfo, MapElementArray, MotionForecastArray
from sparsedrive_ros.ros import conversions as conv
from sparsedrive_ros.ros.tf_source import make_tf_source
from sparsedrive_ros.runtime.pipeline import FrameRequest, PipelineConfig, SparseDrivePipeline
from sparsedrive_ros.runtime.sync import CameraStatus, CameraSynchronizer, SyncConfig, SyncedFrame
from sparsedrive_ros.runtime.tf_buffer import TransformError

NUSCENES_CAMERAS = list(CAMERA_ORDER)

# name: (default, description). Types follow the defaults. Kept in one table so the YAML file, the declaration
# and the typed NodeParams below cannot drift apart.
PARAMETERS = {
    "camera_names": (NUSCENES_CAMERAS, "camera names in the model's order; topics are <name><suffix>"),
    "image_transport": ("compressed", "compressed (sensor_msgs/CompressedImage) or raw (sensor_msgs/Image)"),
    "image_topic_suffix": ("", "image topic suffix; empty = /image_rect_compressed or /image_rect"),
    "camera_info_suffix": ("/camera_info", "CameraInfo topic suffix"),
    "command_topic": ("/sparsedrive/command", "std_msgs/UInt8 driving command: 0 right, 1 left, 2 straight"),
    "command_timeout": (2.0, "s; older commands are stale and default_command is used"),
    "default_command": (2, "command when none is fresh"),
    "reference_frame": ("LIDAR_TOP", "output frame; nuScenes lidar axes (x right, y forward, z up)"),
    "fixed_frame": ("map", "world-fixed frame used for ego motion between stamps"),
    "calibration_file": ("", "YAML fallback for K and camera extrinsics (unused when TF and CameraInfo exist)"),
    "anchor_camera": ("CAM_FRONT", "camera whose images open frames"),
    "max_camera_time_diff": (0.08, "s, tolerance between the anchor stamp and other cameras"),
    "missing_camera_policy": ("skip", "skip | reuse_last | mask"),
    "max_reuse_age": (1.0, "s, oldest image reuse_last may substitute"),
    "min_frame_interval": (0.45, "s, throttle by stamp (the model was trained at 2 Hz)"),
    "tf_timeout": (0.2, "s to wait for TF at a frame's stamps"),
    "max_time_jump": (2.0, "s, a larger forward time jump resets the temporal state"),
    "desync_reset_frames": (3, "consecutive incomplete anchor frames that count as a desync (reset)"),
    "checkpoint": ("", "checkpoint file (.pth mmcv/plain or .safetensors); empty = seeded random weights"),
    "stage": (2, "1 (det + map) or 2 (+ motion and planning)"),
    "device": ("cpu", "torch device: cpu, cuda, cuda:N"),
    "dtype": ("float32", "float32 or float64"),
    "backbone_autocast": ("", "empty, bf16 or fp16: autocast for the image backbone"),
    "seed": (0, "seed of the random weights when no checkpoint is given"),
    "score_threshold": (0.25, "publish detections with score >= this (0 = all)"),
    "map_score_threshold": (0.3, "publish map elements with score >= this (0 = all)"),
    "skip_when_no_subscribers": (True, "do not run the model while no output has a subscriber"),
    "dump_dir": ("", "debug: write every frame's model request (images + calibration) to DIR/frame_<stamp>.npz"),
    "diag_max_latency": (6.0, "s, WARN above this per-frame processing time"),
    "diag_max_result_age": (8.0, "s, WARN above this age of the newest result"),
    "diag_max_camera_skew": (0.1, "s, WARN above this camera skew"),
    "diag_max_drop_rate": (0.5, "WARN above this fraction of dropped frames (throttling excluded)"),
}


@dataclass(frozen=True)
class NodeParams:
    camera_names: list
    image_transport: str
    image_topic_suffix: str
    camera_info_suffix: str
    command_topic: str
    command_timeout: float
    default_command: int
    reference_frame: str
    fixed_frame: str
    calibration_file: str
    anchor_camera: str
    max_camera_time_diff: float
    missing_camera_policy: str
    max_reuse_age: float
    min_frame_interval: float
    tf_timeout: float
    max_time_jump: float
    desync_reset_frames: int
    checkpoint: str
    stage: int
    device: str
    dtype: str
    backbone_autocast: str
    seed: int
    score_threshold: float
    map_score_threshold: float
    skip_when_no_subscribers: bool
    dump_dir: str
    diag_max_latency: float
    diag_max_result_age: float
    diag_max_camera_skew: float
    diag_max_drop_rate: float

    def __post_init__(self):
        if self.image_transport not in ("compressed", "raw"):
            raise ValueError(f"image_transport must be compressed or raw, got {self.image_transport!r}")
        if self.default_command not in (0, 1, 2):
            raise ValueError(f"default_command must be 0, 1 or 2, got {self.default_command}")
        if self.stage not in (1, 2):
            raise ValueError(f"stage must be 1 or 2, got {self.stage}")
        if self.backbone_autocast not in ("", "bf16", "fp16"):
            raise ValueError(f"backbone_autocast must be empty, bf16 or fp16, got {self.backbone_autocast!r}")


def build_pipeline(p: NodeParams, logger) -> SparseDrivePipeline:
    """The model (checkpoint or seeded random weights) wrapped in a pipeline. Raises on a bad checkpoint."""
    import torch

    from sparsedrive_ros.model.checkpoint import check_state_dict, load_checkpoint
    from sparsedrive_ros.model.sparsedrive import build_sparsedrive

    torch.manual_seed(p.seed)
    model = build_sparsedrive(stage=p.stage)
    if p.checkpoint:
        state_dict = load_checkpoint(p.checkpoint)
        check_state_dict(state_dict, model)  # names every missing/unexpected key and shape conflict
        model.load_state_dict(state_dict, strict=True)
        logger.info(f"loaded checkpoint {p.checkpoint}")
    else:
        logger.warning("no checkpoint given: running with RANDOM weights (seed %d); outputs are meaningless. "
                       "Set the `checkpoint` parameter to sparsedrive_stage2.pth for real results." % p.seed)
    if p.backbone_autocast:
        model.backbone_autocast = torch.bfloat16 if p.backbone_autocast == "bf16" else torch.float16
    return SparseDrivePipeline(model, PipelineConfig(max_time_jump=p.max_time_jump, device=p.device, dtype=p.dtype))


def dump_request(request: FrameRequest, directory: str) -> None:
    """Save one model request for offline replay and regression checks (masked cameras as all-zero images)."""
    from pathlib import Path

    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    shape = next(im.shape for im in request.images if im is not None)
    images = np.stack([im if im is not None else np.zeros(shape, np.uint8) for im in request.images])
    np.savez_compressed(path / f"frame_{request.stamp_ns}.npz", stamp_ns=request.stamp_ns, images=images,
                        masked=np.array([im is None for im in request.images]), intrinsics=request.intrinsics,
                        cam_from_ref=request.cam_from_ref, ref_to_global=request.ref_to_global,
                        command=request.command)


class SparseDriveNode(Node):
    def __init__(self, pipeline: Optional[SparseDrivePipeline] = None, **node_kwargs):
        super().__init__("sparsedrive", **node_kwargs)
        for name, (default, description) in PARAMETERS.items():
            self.declare_parameter(name, default, ParameterDescriptor(description=description))
        self.params = p = NodeParams(**{n: self.get_parameter(n).value for n in PARAMETERS})
        self.pipeline = pipeline if pipeline is not None else build_pipeline(p, self.get_logger())
        self.sync = CameraSynchronizer(SyncConfig(
            tuple(p.camera_names), p.anchor_camera, p.max_camera_time_diff, p.missing_camera_policy,
            p.max_reuse_age, p.min_frame_interval))
        self.tf = make_tf_source(self)
        self.counters: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._camera_info: dict[str, CameraInfo] = {}
        self._command: Optional[tuple[int, int]] = None  # (value, receipt time ns)
        self._frame_index = 0
        self._incomplete_seen = 0
        self._pending_desync = False
        self._last: dict = {}  # newest frame's numbers for /diagnostics
        self._last_error = ""

        self._subscribe(p)
        self.pub_detections = self.create_publisher(Detection3DArray, "~/detections", 10)
        self.pub_map = self.create_publisher(MapElementArray, "~/map", 10)
        self.pub_forecasts = self.create_publisher(MotionForecastArray, "~/forecasts", 10)
        self.pub_plan = self.create_publisher(EgoPlan, "~/plan", 10)
        self.pub_info = self.create_publisher(FrameInfo, "~/frame_info", 10)
        self.pub_markers = self.create_publisher(MarkerArray, "~/markers", 10)
        self.pub_path = self.create_publisher(Path, "~/plan_path", 10)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_service(Trigger, "~/reset", self._on_reset)
        self.create_timer(1.0, self._publish_diagnostics)
        # Wall-clock timer: under sim time a slow replay would stretch a ROS-time period; the flush itself compares
        # the ROS time (sim or system, like the stamps) with the pending anchors.
        self.create_timer(0.1, self._flush_sync, clock=Clock(clock_type=ClockType.STEADY_TIME))

        self._slot: Optional[SyncedFrame] = None
        self._slot_cv = threading.Condition()
        self._stop = False
        self._worker = threading.Thread(target=self._work, name="sparsedrive-worker", daemon=True)
        self._worker.start()
        self.get_logger().info(f"sparsedrive ready: {len(p.camera_names)} cameras ({p.image_transport}), "
                               f"reference frame {p.reference_frame}, device {p.device}, TF via {self.tf.name}")

    # ------------------------------------------------------------------------------------------- inputs

    def _subscribe(self, p: NodeParams) -> None:
        msg_type = CompressedImage if p.image_transport == "compressed" else Image
        suffix = p.image_topic_suffix or ("/image_rect_compressed" if msg_type is CompressedImage else "/image_rect")
        for cam in p.camera_names:
            self.create_subscription(msg_type, f"{cam}{suffix}" if cam.startswith("/") else f"/{cam}{suffix}",
                                     lambda m, c=cam: self._on_image(c, m), qos_profile_sensor_data)
            self.create_subscription(CameraInfo, f"/{cam.lstrip('/')}{p.camera_info_suffix}",
                                     lambda m, c=cam: self._camera_info.__setitem__(c, m), qos_profile_sensor_data)
        self.create_subscription(UInt8, p.command_topic, self._on_command, 10)

    def _on_command(self, msg: UInt8) -> None:
        if msg.data not in (0, 1, 2):
            self.counters["bad_command"] += 1
            self.get_logger().warning(f"ignoring driving command {msg.data} (expected 0, 1 or 2)")
            return
        self._command = (int(msg.data), self.get_clock().now().nanoseconds)

    def _on_image(self, camera: str, msg) -> None:
        with self._lock:
            frames = self.sync.add(camera, conv.stamp_to_ns(msg.header.stamp), msg)
            incomplete = self.sync.counters["incomplete"]
            if incomplete - self._incomplete_seen >= self.params.desync_reset_frames:
                self._pending_desync = True
            if frames:
                self._incomplete_seen = incomplete
        self._offer(frames)

    def _flush_sync(self) -> None:
        with self._lock:
            frames = self.sync.flush(self.get_clock().now().nanoseconds)
        self._offer(frames)

    def _offer(self, frames: list) -> None:
        for frame in frames:
            with self._slot_cv:
                if self._slot is not None:
                    self.counters["busy"] += 1  # the model did not take the previous frame in time
                self._slot = frame
                self._slot_cv.notify()

    def _on_reset(self, request, response):
        self.pipeline.request_reset("request")
        response.success, response.message = True, "temporal state will be reset before the next frame"
        return response

    def _current_command(self) -> tuple[int, bool]:
        if self._command is None:
            return self.params.default_command, True
        value, received = self._command
        age = (self.get_clock().now().nanoseconds - received) * 1e-9
        if age > self.params.command_timeout:
            return self.params.default_command, True
        return value, False

    # ------------------------------------------------------------------------------------------- worker

    def _work(self) -> None:
        while True:
            with self._slot_cv:
                while self._slot is None and not self._stop:
                    self._slot_cv.wait(timeout=0.5)
                if self._stop:
                    return
                frame, self._slot = self._slot, None
            try:
                self._process(frame)
            except Exception as exc:  # keep the node alive; the reason goes to the log and /diagnostics
                self.counters["error"] += 1
                self._last_error = f"{type(exc).__name__}: {exc}"
                self.get_logger().error(f"frame {frame.anchor_stamp_ns * 1e-9:.3f} failed: {self._last_error}")

    def _outputs_wanted(self) -> bool:
        pubs = (self.pub_detections, self.pub_map, self.pub_forecasts, self.pub_plan, self.pub_info,
                self.pub_markers, self.pub_path)
        return not self.params.skip_when_no_subscribers or any(p.get_subscription_count() for p in pubs)

    def _wait_for_tf(self, fn, *args):
        deadline = time.monotonic() + self.params.tf_timeout
        while True:
            try:
                return fn(*args)
            except TransformError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.02)

    def build_request(self, frame: SyncedFrame) -> FrameRequest:
        """Decode images and look up calibration for one synchronised frame (raises ValueError/TransformError)."""
        p = self.params
        images, intrinsics, cam_from_ref = [], [], []
        for cam, msg, stamp, status in zip(p.camera_names, frame.payloads, frame.stamps_ns, frame.status):
            if status is CameraStatus.MASKED:
                images.append(None)
                intrinsics.append(np.eye(3))
                cam_from_ref.append(np.eye(4))
                continue
            image = conv.decode_compressed(msg) if p.image_transport == "compressed" else conv.decode_raw(msg)
            info = self._camera_info.get(cam)
            if info is None:
                raise ValueError(f"no CameraInfo received for {cam}")
            if (image.shape[1], image.shape[0]) != (info.width, info.height):
                raise ValueError(f"{cam} image is {image.shape[1]}x{image.shape[0]} but its CameraInfo says "
                                 f"{info.width}x{info.height}")
            cam_frame = msg.header.frame_id or info.header.frame_id
            images.append(image)
            intrinsics.append(np.asarray(info.k, dtype=np.float64).reshape(3, 3))
            cam_from_ref.append(self._wait_for_tf(self.tf.lookup_full, cam_frame, stamp, p.reference_frame,
                                                  frame.anchor_stamp_ns, p.fixed_frame))
        ref_to_global = self._wait_for_tf(self.tf.lookup, p.fixed_frame, p.reference_frame, frame.anchor_stamp_ns)
        command, stale = self._current_command()
        self._last["command_stale"] = stale
        return FrameRequest(frame.anchor_stamp_ns, images, np.stack(intrinsics), np.stack(cam_from_ref),
                            ref_to_global, command)

    def _process(self, frame: SyncedFrame) -> None:
        if not self._outputs_wanted():
            self.counters["no_subscribers"] += 1
            return
        t0 = time.perf_counter()
        try:
            request = self.build_request(frame)
        except TransformError as exc:
            self.counters["missing_tf"] += 1
            self._last_error = f"TF: {exc}"
            self.get_logger().warning(f"dropping frame {frame.anchor_stamp_ns * 1e-9:.3f}: {exc}",
                                      throttle_duration_sec=5.0)
            return
        except ValueError as exc:  # corrupt image, wrong size, missing CameraInfo, NaN calibration
            self.counters["invalid"] += 1
            self._last_error = str(exc)
            self.get_logger().warning(f"dropping frame {frame.anchor_stamp_ns * 1e-9:.3f}: {exc}",
                                      throttle_duration_sec=5.0)
            return
        with self._lock:
            desync, self._pending_desync = self._pending_desync, False
        if desync:
            self.pipeline.request_reset("desync")
        if self.params.dump_dir:
            dump_request(request, self.params.dump_dir)
        t1 = time.perf_counter()
        result = self.pipeline.process(request)
        self._publish(frame, result, time.perf_counter() - t0, t1 - t0)

    # ------------------------------------------------------------------------------------------- outputs

    def _publish(self, frame: SyncedFrame, result, elapsed: float, decode_time: float) -> None:
        p = self.params
        ref, k = p.reference_frame, self._frame_index
        if result.temporal_reset:
            self.get_logger().info(f"temporal state reset ({result.reset_reason}) at {result.stamp_ns * 1e-9:.3f}")
        keep = conv.detection_index(result, p.score_threshold)
        t_pub = time.perf_counter()
        stale = self._last.get("command_stale", True)
        # Building messages is most of the node's own cost: only for topics somebody listens to.
        outputs = ((self.pub_detections, lambda: conv.detections_msg(result, ref, k, keep)),
                   (self.pub_map, lambda: conv.map_msg(result, ref, k, p.map_score_threshold)),
                   (self.pub_forecasts, lambda: conv.forecasts_msg(result, ref, k, keep)),
                   (self.pub_plan, lambda: conv.plan_msg(result, ref, k, stale)),
                   (self.pub_path, lambda: conv.path_msg(result, ref)),
                   (self.pub_markers, lambda: conv.markers_msg(result, ref, keep, p.map_score_threshold)))
        for publisher, build in outputs:
            if publisher.get_subscription_count():
                msg = build()
                if msg is not None:  # plan and path are None for a stage-1 model
                    publisher.publish(msg)
        timings = {"decode_calibration": decode_time, **result.timings, "publish": time.perf_counter() - t_pub}
        info = self._frame_info(frame, result, timings, elapsed + timings["publish"])
        self.pub_info.publish(info)
        self._frame_index += 1
        self._last.update(latency=info.total_latency, model_latency=info.model_latency, skew=info.max_camera_skew,
                          stamp_ns=result.stamp_ns, timings=timings)

    def _frame_info(self, frame: SyncedFrame, result, timings: dict, total: float) -> FrameInfo:
        p = self.params
        msg = FrameInfo(frame_index=self._frame_index, camera_names=list(p.camera_names),
                        camera_status=[int(s) for s in frame.status], max_camera_skew=float(frame.max_skew),
                        temporal_reset=result.temporal_reset, reset_reason=result.reset_reason,
                        time_since_previous=result.time_since_previous, command=result.plan_command,
                        command_stale=bool(self._last.get("command_stale", True)),
                        stage_names=list(timings), stage_latency=[float(v) for v in timings.values()],
                        model_latency=float(result.timings.get("model", 0.0)), total_latency=float(total))
        msg.header.stamp, msg.header.frame_id = conv.ns_to_stamp(result.stamp_ns), p.reference_frame
        msg.camera_stamps = [conv.ns_to_stamp(s or 0) for s in frame.stamps_ns]
        msg.result_age = float((self.get_clock().now().nanoseconds - result.stamp_ns) * 1e-9)
        msg.frames_dropped_sync = self.sync.counters["incomplete"]
        msg.frames_dropped_busy = self.counters["busy"]
        msg.frames_dropped_invalid = self.counters["invalid"] + self.counters["missing_tf"] + self.counters["error"]
        return msg

    def diagnostics(self) -> DiagnosticStatus:
        """One DiagnosticStatus summarising health against the diag_* thresholds."""
        p, c, s = self.params, self.counters, self.sync.counters
        dropped = s["incomplete"] + c["busy"] + c["invalid"] + c["missing_tf"] + c["error"]
        attempts = s["emitted"] + s["incomplete"]
        drop_rate = dropped / attempts if attempts else 0.0
        problems = []
        latency = self._last.get("latency")
        if latency is not None and latency > p.diag_max_latency:
            problems.append(f"latency {latency:.2f} s > {p.diag_max_latency}")
        stamp = self._last.get("stamp_ns")
        age = (self.get_clock().now().nanoseconds - stamp) * 1e-9 if stamp is not None else None
        if age is not None and age > p.diag_max_result_age:
            problems.append(f"result age {age:.1f} s > {p.diag_max_result_age}")
        if self._last.get("skew", 0.0) > p.diag_max_camera_skew:
            problems.append(f"camera skew {self._last['skew']:.3f} s > {p.diag_max_camera_skew}")
        if drop_rate > p.diag_max_drop_rate:
            problems.append(f"drop rate {drop_rate:.2f} > {p.diag_max_drop_rate}")
        missing = sorted(k.split(":", 1)[1] for k in s if k.startswith("missing:"))
        if missing:
            problems.append(f"cameras missing in some frames: {', '.join(missing)}")
        if c["missing_tf"]:
            problems.append(f"{c['missing_tf']} frames without TF")
        if c["invalid"]:
            problems.append(f"{c['invalid']} invalid frames")
        if c["error"]:
            problems.append(f"{c['error']} failed frames")
        level = DiagnosticStatus.WARN if problems else DiagnosticStatus.OK
        if stamp is None and attempts == 0:
            problems.append("no camera frames yet")
        values = {"frames_published": self._frame_index, "drop_rate": f"{drop_rate:.3f}",
                  "result_age": f"{age:.3f}" if age is not None else "n/a",
                  "camera_skew": f"{self._last.get('skew', 0.0):.4f}", "last_error": self._last_error,
                  **{f"latency/{k}": f"{v:.4f}" for k, v in self._last.get("timings", {}).items()},
                  **{f"sync/{k}": str(v) for k, v in s.items()}, **{f"dropped/{k}": str(v) for k, v in c.items()}}
        return DiagnosticStatus(level=level, name="sparsedrive: pipeline", hardware_id=p.device,
                                message="; ".join(problems) or "OK",
                                values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])

    def _publish_diagnostics(self) -> None:
        msg = DiagnosticArray(status=[self.diagnostics()])
        msg.header.stamp = self.get_clock().now().to_msg()
        self.pub_diag.publish(msg)

    def destroy_node(self):
        with self._slot_cv:
            self._stop = True
            self._slot_cv.notify()
        self._worker.join(timeout=30)
        return super().destroy_node()


def main(args=None) -> int:
    rclpy.init(args=args)
    node = None
    try:
        node = SparseDriveNode()
    except (ValueError, OSError) as exc:  # bad parameter, missing or mismatching checkpoint: fail at start
        rclpy.logging.get_logger("sparsedrive").fatal(f"cannot start: {exc}")
        rclpy.try_shutdown()
        return 2
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
