"""The SparseDrive ROS 2 node: ROS I/O only. A camera frame travels:

  image callback -> CameraSynchronizer (runtime/sync.py, buffers undecoded messages)
  -> a queue of at most two frames -> worker thread: decode (with gpu_decode only the JPEG header: the pipeline
     decodes on its device), CameraInfo K, TF look-ups -> FrameRequest
  -> SparseDrivePipeline.process (runtime/pipeline.py: preprocessing, temporal state, the model)
  -> conversions.py -> publishers (custom messages, MarkerArray, Path) + /diagnostics.

Callbacks only buffer, so they never wait for the model; at most two decided frames wait for the worker, and
when the model falls behind the oldest waiting one is dropped (counted as `busy`). Outputs carry the reference
stamp (the anchor image stamp, or the lidar stamp with output_stamp: lidar) and the reference frame. The
contract (topics, frames, stamps, parameters, drop and reset policies, threads) is docs/node.md.

Two node classes share one core: SparseDriveNode (plain: configures and activates itself in the constructor)
and SparseDriveLifecycleNode (rclpy.lifecycle: configure validates the parameters and loads the model, activate
subscribes and publishes, deactivate and cleanup release them).

Threads: the executor runs callbacks and timers; one worker thread runs the model. Everything both sides touch
(the synchroniser, counters, the diagnostics window, the last result's numbers, the pending reset) is guarded by
`self._lock`; /diagnostics is computed from one snapshot taken under it. Parameters are one immutable
NodeParams object, replaced as a whole on a live change; the worker reads it once per frame.
"""
from __future__ import annotations

import struct
import threading
import time
from collections import Counter, deque
from typing import Any, Optional

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from nav_msgs.msg import Path
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.executors import ExternalShutdownException
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import UInt8
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray

from sparsedrive_ros.model.preprocess import JpegDecodeError
from sparsedrive_ros.msg import Detection3DArray, EgoPlan, FrameInfo, MapElementArray, MotionForecastArray
from sparsedrive_ros.ros import conversions as conv
from sparsedrive_ros.ros.node_config import (  # noqa: F401 (NUSCENES_CAMERAS re-exported)
    NUSCENES_CAMERAS,
    PARAMETERS,
    RUNTIME_PARAMETERS,
    CameraCalibration,
    NodeParams,
    StartupError,
    check_checkpoint_file,
    load_calibration_file,
    parse_values,
    unknown_parameter_names,
)
from sparsedrive_ros.ros.tf_source import make_tf_source
from sparsedrive_ros.runtime.pipeline import FrameRequest, SparseDrivePipeline
from sparsedrive_ros.runtime.sync import CameraStatus, CameraSynchronizer, SyncedFrame
from sparsedrive_ros.runtime.tf_buffer import TransformError

# Decided frames waiting for the worker. Two, not one: a single arrival can decide two frames at once (the first
# frame of a stream with the next anchor, the old timeline's last frame and the new one's first after a restart);
# beyond that the oldest waiting frame is dropped (busy), so a slow model always gets recent frames.
MAX_WAITING = 2
SIM_TIME_GAP = 600.0  # s; image stamps this far from the node's clock are another clock (a bag without sim time)


class FrameRejected(ValueError):
    """A frame that cannot be used because of one camera's input (corrupt image, wrong size, no CameraInfo)."""

    def __init__(self, camera: str, text: str):
        super().__init__(text)
        self.camera = camera


def build_pipeline(p: NodeParams, logger) -> SparseDrivePipeline:
    """The model wrapped in a pipeline. ``checkpoint``: empty = the bundled demo model (synthetic world only),
    ``random`` = seeded random weights, else a file (its metadata names the architecture; an official checkpoint
    gets the original's). Raises StartupError on a checkpoint that is missing, empty, truncated, not a
    checkpoint, or does not match the model (model/model_file.py)."""
    import torch

    from sparsedrive_ros.model.checkpoint import CheckpointMismatchError
    from sparsedrive_ros.model.model_file import load_model

    check_checkpoint_file(p.checkpoint)
    try:
        model, source = load_model(p.checkpoint, stage=p.stage, seed=p.seed)
    except FileNotFoundError as exc:
        raise StartupError(str(exc)) from None
    except CheckpointMismatchError as exc:
        raise StartupError(f"checkpoint {p.checkpoint} does not match the model: {exc}") from None
    except ValueError as exc:
        raise StartupError(str(exc)) from None
    except Exception as exc:  # EOFError, zip/pickle errors, ...: a truncated or foreign file
        raise StartupError(f"checkpoint {p.checkpoint} cannot be read (truncated or not a checkpoint): "
                           f"{type(exc).__name__}: {exc}") from None
    if source.random:
        logger.warning("checkpoint:=random: running with RANDOM weights (seed %d); outputs are meaningless. "
                       "Leave `checkpoint` empty for the demo model or pass sparsedrive_stage2.pth." % p.seed)
    elif source.kind == "demo":
        logger.info(f"no checkpoint given: using the bundled {source.describe()}; it was trained on the synthetic "
                    f"world only. Pass checkpoint:=sparsedrive_stage2.pth for the official model.")
    else:
        logger.info(f"loaded {source.describe()} (stage {source.config.stage}, input {source.config.image_hw})")
    if p.backbone_autocast:
        model.backbone_autocast = torch.bfloat16 if p.backbone_autocast == "bf16" else torch.float16
    return SparseDrivePipeline(model, p.pipeline_config(), model_label=source.describe(), random_weights=source.random)


def dump_request(request: FrameRequest, directory: str) -> None:
    """Save one model request for offline replay and regression checks (masked cameras as all-zero images)."""
    from pathlib import Path as FsPath

    path = FsPath(directory)
    path.mkdir(parents=True, exist_ok=True)
    decoded = request.decoded_images()  # JPEG-only cameras (device decoding) decoded here with OpenCV
    shape = next(im.shape for im in decoded if im is not None)
    images = np.stack([im if im is not None else np.zeros(shape, np.uint8) for im in decoded])
    np.savez_compressed(path / f"frame_{request.stamp_ns}.npz", stamp_ns=request.stamp_ns, images=images,
                        masked=np.array([im is None for im in decoded]), intrinsics=request.intrinsics,
                        cam_from_ref=request.cam_from_ref, ref_to_global=request.ref_to_global,
                        command=request.command)


def camera_topics(p: NodeParams, camera: str) -> tuple[str, str]:
    """(image topic, CameraInfo topic) of one camera."""
    suffix = p.image_topic_suffix or ("/image_rect_compressed" if p.image_transport == "compressed" else "/image_rect")
    if camera.startswith("/"):
        base = camera
    else:
        base = f"{p.camera_topic_prefix.rstrip('/')}/{camera}"
        if not base.startswith("/") and not p.camera_topic_prefix:
            base = "/" + base
    return base + suffix, base + p.camera_info_suffix


def header_stamp_ns(serialized: bytes) -> int:
    """Header stamp of a serialized message that starts with std_msgs/Header (CDR: 4-byte encapsulation, then
    int32 sec and uint32 nanosec), read without deserialising the rest (a point cloud is megabytes)."""
    little = serialized[1] in (1, 3)
    sec, nanosec = struct.unpack("<iI" if little else ">iI", serialized[4:12])
    return sec * 1_000_000_000 + nanosec


class _SparseDriveCore:
    """Everything the plain and the lifecycle node share. Relies on the rclpy Node API of the concrete class."""

    def _init_core(self, pipeline: Optional[SparseDrivePipeline]) -> None:
        self._injected_pipeline = pipeline
        self.pipeline: Optional[SparseDrivePipeline] = None
        self.params: Optional[NodeParams] = None
        self.sync: Optional[CameraSynchronizer] = None
        self.tf = None
        self._lock = threading.RLock()
        self.counters: Counter[str] = Counter()
        self._entities: list = []  # subscriptions, timers, services created by activate
        self._outputs: dict[str, Any] = {}
        self._worker: Optional[threading.Thread] = None
        self._waiting: deque = deque()  # decided frames for the worker, oldest first, at most MAX_WAITING
        self._slot_cv = threading.Condition()
        self._stop = False
        self._active = False
        self._reset_state()
        self._declare()

    def _reset_state(self) -> None:
        self._camera_info: dict[str, CameraInfo] = {}
        self._calibration: dict[str, CameraCalibration] = {}
        self._command: Optional[tuple[int, int]] = None  # (value, receipt time ns)
        self._lidar_stamps: deque = deque(maxlen=64)
        self._frame_index = 0
        self._incomplete_seen = 0
        self._pending_reset = ""
        self._last: dict = {}  # newest frame's numbers for /diagnostics
        self._last_error = ""
        self._events: deque = deque(maxlen=20_000)  # (wall ns, key, count) for the sliding window
        self._sync_seen: Counter[str] = Counter()
        self._camera_seen: dict[str, int] = {}  # camera -> wall ns of its newest image
        self._clock_gap: Optional[float] = None  # s, node clock minus the newest image stamp
        self._busy_since: Optional[int] = None  # wall ns when the worker started the frame it is on
        self._activated_at = time.monotonic_ns()

    # ------------------------------------------------------------------------------------------- parameters

    def _declare(self) -> None:
        for name, spec in PARAMETERS.items():
            text = spec.description + ("" if spec.runtime else " (read-only while the node runs)")
            try:
                self.declare_parameter(name, spec.default, ParameterDescriptor(description=text))
            except Exception as exc:  # a value of the wrong type in the params file
                raise StartupError(f"parameter {name}: {exc}") from None
        self.add_on_set_parameters_callback(self._on_set_parameters)

    def _read_params(self) -> NodeParams:
        unknown = unknown_parameter_names(set(self._parameter_overrides), self._extra_parameters())
        if unknown:
            raise StartupError(f"unknown parameter{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)} "
                               f"(the node's parameters are listed in config/sparsedrive.param.yaml)")
        return parse_values({n: self.get_parameter(n).value for n in PARAMETERS})

    def _extra_parameters(self) -> set[str]:
        return set()

    def _on_set_parameters(self, changes) -> SetParametersResult:
        values = {}
        for param in changes:
            if param.name not in PARAMETERS:
                continue  # use_sim_time and rclpy's own
            if self.params is not None and param.name not in RUNTIME_PARAMETERS:
                return SetParametersResult(successful=False, reason=(
                    f"{param.name} is read-only while the node runs: it is used when the node starts "
                    f"(restart the node, or deactivate + cleanup + configure the lifecycle node, to change it)"))
            values[param.name] = param.value
        if not values or self.params is None:
            return SetParametersResult(successful=True)
        try:
            new = parse_values({**vars(self.params), **values})
        except StartupError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        with self._lock:
            self.params = new
            if self.sync is not None:
                self.sync.reconfigure(new.sync_config())
        if self.pipeline is not None:
            self.pipeline.config = new.pipeline_config()
        self.get_logger().info("parameters changed: " + ", ".join(f"{k}={v!r}" for k, v in values.items()))
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------------------------------------- lifecycle

    def _configure(self) -> None:
        """Validate every parameter, read the calibration file, build the model. Raises StartupError."""
        p = self._read_params()
        calibration = load_calibration_file(p.calibration_file, p.camera_names)
        check_checkpoint_file(p.checkpoint)
        if self._injected_pipeline is not None:
            pipeline = self._injected_pipeline
            pipeline.config = p.pipeline_config()
            pipeline.request_reset("start")  # a new configuration starts a new temporal state
        else:
            pipeline = build_pipeline(p, self.get_logger())
        with self._lock:
            self._reset_state()
            self.pipeline = pipeline
            self._calibration = calibration
            self.sync = CameraSynchronizer(p.sync_config())
            self.params = p

    def _activate(self) -> None:
        p = self.params
        if self.tf is None:
            self.tf = make_tf_source(self)
            for cal in self._calibration.values():
                self.tf.add_fallback_static(cal.parent_frame, cal.frame_id, cal.parent_from_camera)
        msg_type = CompressedImage if p.image_transport == "compressed" else Image
        for cam in p.camera_names:
            image_topic, info_topic = camera_topics(p, cam)
            self._entities.append(self.create_subscription(
                msg_type, image_topic, lambda m, c=cam: self._on_image(c, m), qos_profile_sensor_data))
            self._entities.append(self.create_subscription(
                CameraInfo, info_topic, lambda m, c=cam: self._camera_info.__setitem__(c, m), qos_profile_sensor_data))
        self._entities.append(self.create_subscription(UInt8, p.command_topic, self._on_command, 10))
        if p.lidar_topic:
            self._entities.append(self.create_subscription(PointCloud2, p.lidar_topic, self._on_lidar,
                                                           qos_profile_sensor_data, raw=True))
        for name, typ in (("detections", Detection3DArray), ("map", MapElementArray),
                          ("forecasts", MotionForecastArray), ("plan", EgoPlan), ("frame_info", FrameInfo),
                          ("markers", MarkerArray), ("plan_path", Path)):
            self._outputs[name] = self.create_publisher(typ, f"~/{name}", 10)
        self._outputs["diagnostics"] = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._entities.append(self.create_service(Trigger, "~/reset", self._on_reset))
        # Wall-clock (steady) timers: under sim time a paused or slow replay must not stop diagnostics or the
        # flush. The flush itself compares ROS time (sim or system, like the stamps) with the pending anchors.
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self._entities.append(self.create_timer(1.0, self._publish_diagnostics, clock=steady))
        self._entities.append(self.create_timer(0.1, self._flush_sync, clock=steady))
        with self._slot_cv:
            self._stop = False
            self._waiting.clear()
        self._activated_at = time.monotonic_ns()
        self._worker = threading.Thread(target=self._work, name="sparsedrive-worker", daemon=True)
        self._worker.start()
        self._active = True
        self.get_logger().info(f"sparsedrive active: {len(p.camera_names)} cameras ({p.image_transport}, e.g. "
                               f"{camera_topics(p, p.camera_names[0])[0]}), reference frame {p.reference_frame}, "
                               f"device {p.device}, inference {self.pipeline.inference}, TF via {self.tf.name}")

    def _deactivate(self) -> None:
        self._active = False
        with self._slot_cv:
            self._stop = True
            self._slot_cv.notify()
        if self._worker is not None:
            self._worker.join(timeout=60)
            self._worker = None
        for entity in self._entities:
            self._destroy_entity(entity)
        for pub in self._outputs.values():
            self.destroy_publisher(pub)
        self._entities, self._outputs = [], {}

    def _destroy_entity(self, entity) -> None:
        for destroy in (self.destroy_subscription, self.destroy_timer, self.destroy_service):
            try:
                if destroy(entity):
                    return
            except (TypeError, AttributeError):
                continue

    def _cleanup(self) -> None:
        with self._lock:
            self.pipeline = None
            self.sync = None
            self.params = None
            self._reset_state()

    def _release_all(self) -> None:
        """Safe at any point, also on a half-built node (a failed start)."""
        if getattr(self, "_slot_cv", None) is None:
            return
        if getattr(self, "_active", False) or getattr(self, "_worker", None) is not None:
            self._deactivate()

    # ------------------------------------------------------------------------------------------- inputs

    def _on_command(self, msg: UInt8) -> None:
        if msg.data not in (0, 1, 2):
            with self._lock:
                self.counters["bad_command"] += 1
            self.get_logger().warning(f"ignoring driving command {msg.data} (expected 0, 1 or 2)")
            return
        self._command = (int(msg.data), self.get_clock().now().nanoseconds)

    def _on_lidar(self, serialized: bytes) -> None:
        try:
            stamp = header_stamp_ns(serialized)
        except (struct.error, IndexError):
            return
        with self._lock:
            self._lidar_stamps.append(stamp)

    def _on_image(self, camera: str, msg) -> None:
        stamp, wall = conv.stamp_to_ns(msg.header.stamp), time.monotonic_ns()
        ros_now = self.get_clock().now().nanoseconds
        with self._lock:
            if self.sync is None:
                return
            self._camera_seen[camera] = wall
            self._clock_gap = (ros_now - stamp) * 1e-9
            frames = self.sync.add(camera, stamp, msg, received_ns=wall)
            self._note_sync(frames, wall)
        self._offer(frames)

    def _flush_sync(self) -> None:
        wall = time.monotonic_ns()
        with self._lock:
            if self.sync is None:
                return
            frames = self.sync.flush(self.get_clock().now().nanoseconds, wall)
            self._note_sync(frames, wall)
        self._offer(frames)

    def _note_sync(self, frames: list, wall: int) -> None:
        """Under the lock: windowed copies of the synchroniser's counters, and desync detection."""
        for key, value in self.sync.counters.items():
            delta = value - self._sync_seen[key]
            if delta:
                self._events.append((wall, key, delta))
                self._sync_seen[key] = value
        incomplete = self.sync.counters["incomplete"]
        if incomplete - self._incomplete_seen >= self.params.desync_reset_frames and not self._pending_reset:
            self._pending_reset = "desync"
        if frames:
            self._incomplete_seen = incomplete

    def _record(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counters[key] += n
            self._events.append((time.monotonic_ns(), key, n))

    def _offer(self, frames: list) -> None:
        for frame in frames:
            with self._slot_cv:
                if len(self._waiting) >= MAX_WAITING:
                    dropped = self._waiting.popleft()
                    self._record("busy")  # the model did not take it in time
                    if dropped.reset_reason and not self._waiting[0].reset_reason:
                        self._waiting[0].reset_reason = dropped.reset_reason  # the reset must not get lost
                self._waiting.append(frame)
                self._slot_cv.notify()

    def _carry_reset(self, frame: SyncedFrame) -> None:
        """A dropped frame's reset reason moves on to the next frame that is processed."""
        if frame.reset_reason:
            with self._lock:
                self._pending_reset = frame.reset_reason

    def _on_reset(self, request, response):
        with self._lock:
            self._pending_reset = "request"
        response.success, response.message = True, "temporal state will be reset before the next frame"
        return response

    def _current_command(self, p: NodeParams) -> tuple[int, bool]:
        command = self._command
        if command is None:
            return p.default_command, True
        value, received = command
        age = (self.get_clock().now().nanoseconds - received) * 1e-9
        if age > p.command_timeout:
            return p.default_command, True
        return value, False

    # ------------------------------------------------------------------------------------------- worker

    def _work(self) -> None:
        while True:
            with self._slot_cv:
                while not self._waiting and not self._stop:
                    self._slot_cv.wait(timeout=0.5)
                if self._stop:
                    return
                frame = self._waiting.popleft()
            with self._lock:
                self._busy_since = time.monotonic_ns()
            try:
                self._process(frame)
            except Exception as exc:  # keep the node alive; the reason goes to the log and /diagnostics
                self._carry_reset(frame)
                self._record("error")
                with self._lock:
                    self._last_error = f"{type(exc).__name__}: {exc}"
                self.get_logger().error(f"frame {frame.anchor_stamp_ns * 1e-9:.3f} failed: {self._last_error}")
            finally:
                with self._lock:
                    self._busy_since = None

    def idle(self) -> bool:
        """No frame waiting and none in progress."""
        with self._slot_cv:
            waiting = bool(self._waiting)
        with self._lock:
            return not waiting and self._busy_since is None

    def _outputs_wanted(self, p: NodeParams) -> bool:
        if not p.skip_when_no_subscribers:
            return True
        return any(pub.get_subscription_count() for name, pub in self._outputs.items() if name != "diagnostics")

    def _wait_for_tf(self, timeout: float, fn, *args):
        deadline = time.monotonic() + timeout
        while True:
            try:
                return fn(*args)
            except TransformError:
                if time.monotonic() >= deadline or self._stop:
                    raise
                time.sleep(0.02)

    def _reference_stamp(self, p: NodeParams, frame: SyncedFrame) -> int:
        if p.output_stamp != "lidar":
            return frame.anchor_stamp_ns
        with self._lock:
            stamps = list(self._lidar_stamps)
        tol = int(p.max_camera_time_diff * 1e9)
        best = min(stamps, key=lambda s: abs(s - frame.anchor_stamp_ns), default=None)
        if best is None or abs(best - frame.anchor_stamp_ns) > tol:
            raise FrameRejected("lidar", f"no {p.lidar_topic} stamp within {p.max_camera_time_diff} s of the anchor "
                                         f"{frame.anchor_stamp_ns * 1e-9:.3f}")
        return best

    def build_request(self, frame: SyncedFrame, p: Optional[NodeParams] = None) -> FrameRequest:
        """Decode images and look up calibration for one synchronised frame (raises ValueError/TransformError)."""
        p = p or self.params
        ref_ns = self._reference_stamp(p, frame)
        images, jpegs, intrinsics, cam_from_ref = [], [], [], []
        jpeg_bytes = conv.jpeg_on_device(self.pipeline.config)  # JPEGs go undecoded to the pipeline's device
        for cam, msg, stamp, status in zip(p.camera_names, frame.payloads, frame.stamps_ns, frame.status):
            if status is CameraStatus.MASKED:
                images.append(None)
                jpegs.append(None)
                intrinsics.append(np.eye(3))
                cam_from_ref.append(np.eye(4))
                continue
            try:
                image, jpeg, (width, height) = conv.image_input(msg, p.image_transport == "compressed", jpeg_bytes)
            except ValueError as exc:
                raise FrameRejected(cam, f"{cam}: {exc}") from None
            info, fallback = self._camera_info.get(cam), self._calibration.get(cam)
            if info is not None:
                k, size, info_frame = np.asarray(info.k, dtype=np.float64).reshape(3, 3), (info.width, info.height), \
                    info.header.frame_id
                source = "CameraInfo"
            elif fallback is not None:
                k, size, info_frame, source = fallback.k, (fallback.width, fallback.height), fallback.frame_id, \
                    "calibration_file"
            else:
                raise FrameRejected(cam, f"no CameraInfo received for {cam} (and no calibration_file entry)")
            if (width, height) != size:
                raise FrameRejected(cam, f"{cam} image is {width}x{height} but its {source} says "
                                         f"{size[0]}x{size[1]}")
            cam_frame = msg.header.frame_id or info_frame
            images.append(image)
            jpegs.append(jpeg)
            intrinsics.append(k)
            cam_from_ref.append(self._wait_for_tf(p.tf_timeout, self.tf.lookup_full, cam_frame, stamp,
                                                  p.reference_frame, ref_ns, p.fixed_frame))
        ref_to_global = self._wait_for_tf(p.tf_timeout, self.tf.lookup, p.fixed_frame, p.reference_frame, ref_ns)
        command, stale = self._current_command(p)
        with self._lock:
            self._last["command_stale"] = stale
        return FrameRequest(ref_ns, images, np.stack(intrinsics), np.stack(cam_from_ref), ref_to_global, command,
                            jpeg=jpegs if any(j is not None for j in jpegs) else None)

    def _process(self, frame: SyncedFrame) -> None:
        p = self.params  # one consistent set for the whole frame
        if not self._outputs_wanted(p):
            self._carry_reset(frame)
            self._record("no_subscribers")
            return
        t0 = time.perf_counter()
        try:
            request = self.build_request(frame, p)
        except TransformError as exc:
            self._drop(frame, "missing_tf", f"TF: {exc}")
            return
        except ValueError as exc:  # corrupt image, wrong size, missing CameraInfo, NaN calibration
            if isinstance(exc, FrameRejected):
                self._record(f"rejected:{exc.camera}")
            self._drop(frame, "invalid", str(exc))
            return
        with self._lock:
            reason = frame.reset_reason or self._pending_reset
            self._pending_reset = ""
        if reason:
            self.pipeline.request_reset(reason)
        if p.dump_dir:
            dump_request(request, p.dump_dir)
        t1 = time.perf_counter()
        try:
            result = self.pipeline.process(request)
        except Exception as exc:
            if reason:
                with self._lock:
                    self._pending_reset = self._pending_reset or reason
            if isinstance(exc, JpegDecodeError) and exc.index is not None:  # device decoding: the camera's input
                cam = p.camera_names[exc.index]
                self._record(f"rejected:{cam}")
                self._drop(frame, "invalid", f"{cam}: {exc}")
                return
            raise
        self._publish(p, frame, result, time.perf_counter() - t0, t1 - t0)

    def _drop(self, frame: SyncedFrame, key: str, text: str) -> None:
        self._carry_reset(frame)
        self._record(key)
        with self._lock:
            self._last_error = text
        self.get_logger().warning(f"dropping frame {frame.anchor_stamp_ns * 1e-9:.3f}: {text}",
                                  throttle_duration_sec=5.0)

    # ------------------------------------------------------------------------------------------- outputs

    def _publish(self, p: NodeParams, frame: SyncedFrame, result, elapsed: float, decode_time: float) -> None:
        ref, k = p.reference_frame, self._frame_index
        if result.temporal_reset:
            self.get_logger().info(f"temporal state reset ({result.reset_reason}) at {result.stamp_ns * 1e-9:.3f}")
        keep = conv.detection_index(result, p.score_threshold)
        t_pub = time.perf_counter()
        with self._lock:
            stale = self._last.get("command_stale", True)
        pubs = self._outputs
        # Building messages is most of the node's own cost: only for topics somebody listens to.
        outputs = ((pubs["detections"], lambda: conv.detections_msg(result, ref, k, keep)),
                   (pubs["map"], lambda: conv.map_msg(result, ref, k, p.map_score_threshold)),
                   (pubs["forecasts"], lambda: conv.forecasts_msg(result, ref, k, keep)),
                   (pubs["plan"], lambda: conv.plan_msg(result, ref, k, stale)),
                   (pubs["plan_path"], lambda: conv.path_msg(result, ref)),
                   (pubs["markers"], lambda: conv.markers_msg(result, ref, keep, p.map_score_threshold)))
        for publisher, build in outputs:
            if publisher.get_subscription_count():
                msg = build()
                if msg is not None:  # plan and path are None for a stage-1 model
                    publisher.publish(msg)
        timings = {"decode_calibration": decode_time, **result.timings, "publish": time.perf_counter() - t_pub}
        total = elapsed + timings["publish"]
        info = self._frame_info(p, frame, result, timings, total, stale)
        pubs["frame_info"].publish(info)
        with self._lock:
            self._frame_index += 1
            self._events.append((time.monotonic_ns(), "processed", 1))
            self._events.append((time.monotonic_ns(), "latency", total))
            self._last.update(latency=total, model_latency=info.model_latency, skew=info.max_camera_skew,
                              stamp_ns=result.stamp_ns, timings=timings)

    def _frame_info(self, p: NodeParams, frame: SyncedFrame, result, timings: dict, total: float,
                    stale: bool) -> FrameInfo:
        msg = FrameInfo(frame_index=self._frame_index, model=str(getattr(self.pipeline, "model_label", "")),
                        random_weights=bool(getattr(self.pipeline, "random_weights", False)),
                        camera_names=list(p.camera_names),
                        camera_status=[int(s) for s in frame.status], max_camera_skew=float(frame.max_skew),
                        temporal_reset=result.temporal_reset, reset_reason=result.reset_reason,
                        time_since_previous=result.time_since_previous, command=result.plan_command,
                        command_stale=bool(stale), stage_names=list(timings),
                        stage_latency=[float(v) for v in timings.values()],
                        model_latency=float(result.timings.get("model", 0.0)), total_latency=float(total))
        msg.header.stamp, msg.header.frame_id = conv.ns_to_stamp(result.stamp_ns), p.reference_frame
        msg.camera_stamps = [conv.ns_to_stamp(s or 0) for s in frame.stamps_ns]
        msg.result_age = float((self.get_clock().now().nanoseconds - result.stamp_ns) * 1e-9)
        with self._lock:
            c = self.counters
            msg.frames_dropped_sync = self.sync.counters["incomplete"]
            msg.frames_dropped_busy = c["busy"]
            msg.frames_dropped_invalid = c["invalid"] + c["missing_tf"] + c["error"]
        return msg

    # ------------------------------------------------------------------------------------------- diagnostics

    def _snapshot(self) -> dict:
        """Everything /diagnostics needs, copied under the lock (so it is one consistent state)."""
        now = time.monotonic_ns()
        p = self.params
        with self._lock:
            horizon = now - int(p.diag_window * 1e9)
            while self._events and self._events[0][0] < horizon:
                self._events.popleft()
            window: Counter[str] = Counter()
            latencies = []
            for _, key, n in self._events:
                if key == "latency":
                    latencies.append(n)
                else:
                    window[key] += n
            return dict(now=now, params=p, window=window, latencies=latencies, last=dict(self._last),
                        last_error=self._last_error, frames=self._frame_index, totals=Counter(self.counters),
                        sync_totals=Counter(self.sync.counters) if self.sync else Counter(),
                        camera_seen=dict(self._camera_seen), clock_gap=self._clock_gap,
                        busy_since=self._busy_since, activated_at=self._activated_at,
                        ros_now=self.get_clock().now().nanoseconds,
                        use_sim_time=bool(self.get_parameter("use_sim_time").value))

    def camera_states(self, snap: Optional[dict] = None) -> dict[str, tuple[str, str]]:
        """camera -> (waiting | active | stale | rejected, why) over the diagnostics window."""
        s = snap or self._snapshot()
        p, w = s["params"], s["window"]
        out = {}
        for cam in p.camera_names:
            seen = s["camera_seen"].get(cam)
            silent = None if seen is None else (s["now"] - seen) * 1e-9
            if w[f"rejected:{cam}"]:
                out[cam] = ("rejected", f"{w[f'rejected:{cam}']} frames rejected for its input ({s['last_error']})")
            elif seen is None:
                out[cam] = ("waiting", "no image received yet")
            elif silent > p.diag_camera_timeout:
                out[cam] = ("stale", f"no image for {silent:.1f} s")
            elif w[f"stale:{cam}"] or w[f"missing:{cam}"]:
                out[cam] = ("stale", f"{w[f'stale:{cam}']} images too old, missing in {w[f'missing:{cam}']} frames")
            else:
                out[cam] = ("active", "")
        return out

    def diagnostics(self) -> DiagnosticStatus:
        """The pipeline's status over the last diag_window seconds against the diag_* thresholds."""
        return self.diagnostics_array()[0]

    def diagnostics_array(self) -> list[DiagnosticStatus]:
        s = self._snapshot()
        p, w, last = s["params"], s["window"], s["last"]
        problems, level = [], DiagnosticStatus.OK

        def warn(text: str, lvl=DiagnosticStatus.WARN) -> None:
            nonlocal level
            problems.append(text)
            level = max(level, lvl)

        dropped = sum(w[k] for k in ("incomplete", "busy", "invalid", "missing_tf", "error"))
        attempts = w["emitted"] + w["incomplete"]
        drop_rate = dropped / attempts if attempts else 0.0
        if s["busy_since"] is not None:
            running = (s["now"] - s["busy_since"]) * 1e-9
            if running > p.diag_max_latency_error:
                warn(f"watchdog: a frame has been processing for {running:.1f} s > {p.diag_max_latency_error}",
                     DiagnosticStatus.ERROR)
            elif running > p.diag_max_latency:
                warn(f"watchdog: a frame has been processing for {running:.1f} s > {p.diag_max_latency}")
        worst = max(s["latencies"], default=None)
        if worst is not None and worst > p.diag_max_latency:
            warn(f"latency {worst:.2f} s > {p.diag_max_latency}")
        gap = s["clock_gap"]
        other_clock = gap is not None and abs(gap) > SIM_TIME_GAP
        if other_clock and not s["use_sim_time"]:
            warn(f"image stamps are {gap:.0f} s {'behind' if gap > 0 else 'ahead of'} this node's clock and "
                 f"use_sim_time is false: replaying a bag? start the node with use_sim_time:=true and play the bag "
                 f"with /clock")
        elif s["use_sim_time"] and s["ros_now"] == 0:
            warn("use_sim_time is true but no /clock has been received")
        stamp = last.get("stamp_ns")
        age = (s["ros_now"] - stamp) * 1e-9 if stamp is not None else None
        if age is not None and not other_clock and age > p.diag_max_result_age:
            warn(f"result age {age:.1f} s > {p.diag_max_result_age}")
        if w["processed"] and last.get("skew", 0.0) > p.diag_max_camera_skew:
            warn(f"camera skew {last['skew']:.3f} s > {p.diag_max_camera_skew}")
        if drop_rate > p.diag_max_drop_rate:
            warn(f"drop rate {drop_rate:.2f} > {p.diag_max_drop_rate}")
        cameras = self.camera_states(s)
        bad = {c: st for c, (st, _) in cameras.items() if st != "active"}
        if bad:
            warn("cameras " + ", ".join(f"{c} {st}" for c, st in bad.items()))
        missing = sorted(k.split(":", 1)[1] for k, v in w.items() if k.startswith("missing:") and v)
        if missing:
            warn(f"cameras missing in some frames: {', '.join(missing)}")
        if w["missing_tf"]:
            warn(f"{w['missing_tf']} frames without TF")
        if w["invalid"]:
            warn(f"{w['invalid']} invalid frames")
        if w["error"]:
            warn(f"{w['error']} failed frames")
        inference, inference_problem = self.pipeline.inference_status() if self.pipeline else ("n/a", "")
        if inference_problem:
            warn(inference_problem)
        if stamp is None and attempts == 0:
            problems.append("no camera frames yet")
        values = {"frames_published": s["frames"], "window_s": p.diag_window, "drop_rate": f"{drop_rate:.3f}",
                  "frames_in_window": w["processed"], "max_latency_in_window": f"{worst:.3f}" if worst else "n/a",
                  "result_age": f"{age:.3f}" if age is not None else "n/a",
                  "camera_skew": f"{last.get('skew', 0.0):.4f}", "last_error": s["last_error"],
                  "clock_gap_s": f"{gap:.3f}" if gap is not None else "n/a", "inference": inference,
                  **{f"latency/{k}": f"{v:.4f}" for k, v in last.get("timings", {}).items()},
                  **{f"window/{k}": str(v) for k, v in sorted(w.items()) if v},
                  **{f"total/{k}": str(v) for k, v in sorted((s["sync_totals"] + s["totals"]).items())}}
        hw = p.device
        out = [DiagnosticStatus(level=level, name="sparsedrive: pipeline", hardware_id=hw,
                                message="; ".join(problems) or "OK",
                                values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])]
        for cam, (state, why) in cameras.items():
            lvl = DiagnosticStatus.OK if state == "active" else DiagnosticStatus.WARN
            seen = s["camera_seen"].get(cam)
            out.append(DiagnosticStatus(level=lvl, name=f"sparsedrive: camera {cam}", hardware_id=hw,
                                        message=state + (f": {why}" if why else ""), values=[
                                            KeyValue(key="state", value=state),
                                            KeyValue(key="last_image_age_s", value="n/a" if seen is None else
                                                     f"{(s['now'] - seen) * 1e-9:.2f}"),
                                            KeyValue(key="missing_in_window", value=str(w[f"missing:{cam}"])),
                                            KeyValue(key="stale_in_window", value=str(w[f"stale:{cam}"])),
                                            KeyValue(key="rejected_in_window", value=str(w[f"rejected:{cam}"]))]))
        return out

    def _publish_diagnostics(self) -> None:
        if self.params is None:
            return
        msg = DiagnosticArray(status=self.diagnostics_array())
        msg.header.stamp = self.get_clock().now().to_msg()
        self._outputs["diagnostics"].publish(msg)


class SparseDriveNode(_SparseDriveCore, Node):
    """The plain node: validates, builds the model and starts in the constructor (raises StartupError)."""

    def __init__(self, pipeline: Optional[SparseDrivePipeline] = None, **node_kwargs):
        Node.__init__(self, "sparsedrive", **node_kwargs)
        try:
            self._init_core(pipeline)
            self._configure()
            self._activate()
        except BaseException as exc:
            self.destroy_node()
            if isinstance(exc, StartupError) or not isinstance(exc, Exception):
                raise
            raise StartupError(f"{type(exc).__name__}: {exc}") from None

    # Older attribute names used by tests and tools.
    @property
    def pub_info(self):
        return self._outputs["frame_info"]

    def destroy_node(self):
        self._release_all()
        return Node.destroy_node(self)


class SparseDriveLifecycleNode(_SparseDriveCore, LifecycleNode):
    """The managed node (rclpy.lifecycle): unconfigured -> configure (validate every parameter, read the
    calibration file, load the checkpoint) -> inactive -> activate (subscribe, publish, start the worker) ->
    active; deactivate and cleanup release them again. A failed configure leaves it unconfigured with the
    reason in the log. With `autostart` it walks configure + activate by itself."""

    def __init__(self, pipeline: Optional[SparseDrivePipeline] = None, **node_kwargs):
        LifecycleNode.__init__(self, "sparsedrive", **node_kwargs)
        self.declare_parameter("autostart", False, ParameterDescriptor(
            description="lifecycle node only: configure and activate at start (as a lifecycle manager would)"))
        self._init_core(pipeline)
        self.configure_error = ""

    def _extra_parameters(self) -> set[str]:
        return {"autostart"}

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._configure()
        except Exception as exc:
            self.configure_error = str(exc) if isinstance(exc, StartupError) else f"{type(exc).__name__}: {exc}"
            self.get_logger().error(f"configure failed: {self.configure_error}")
            self._cleanup()
            return TransitionCallbackReturn.FAILURE
        self.configure_error = ""
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._activate()
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._deactivate()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._cleanup()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release_all()
        self._cleanup()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release_all()
        self._cleanup()
        return TransitionCallbackReturn.SUCCESS

    def destroy_node(self):
        self._release_all()
        return LifecycleNode.destroy_node(self)


def _fatal(exc: BaseException) -> int:
    text = str(exc) if isinstance(exc, StartupError) else f"{type(exc).__name__}: {exc}"
    rclpy.logging.get_logger("sparsedrive").fatal(f"cannot start: {text}")
    rclpy.try_shutdown()
    return 2


def _spin(node) -> int:
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def main(args=None) -> int:
    """The plain node. Exit 2 with one message when it cannot start (bad or unknown parameter, bad checkpoint)."""
    rclpy.init(args=args)
    try:
        node = SparseDriveNode()
    except Exception as exc:
        return _fatal(exc)
    return _spin(node)


def lifecycle_main(args=None) -> int:
    """The lifecycle node. With autostart:=true a failed configure exits 2 like the plain node."""
    rclpy.init(args=args)
    try:
        node = SparseDriveLifecycleNode()
        if node.get_parameter("autostart").value:
            if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                node.destroy_node()
                return _fatal(StartupError(node.configure_error))
            node.trigger_activate()
    except Exception as exc:
        return _fatal(exc)
    return _spin(node)
