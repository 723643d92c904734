"""The sparsedrive node's parameters: one table (name, default, runtime-changeable, description), their
validation, and the calibration-file fallback. No rclpy here, so every check runs before anything is built.

The table is the single source of truth: the node declares exactly these names, config/sparsedrive.param.yaml
lists exactly these names with the same defaults (a test checks it), and docs/node.md describes them.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import yaml

from sparsedrive_ros.conventions import CAMERA_ORDER
from sparsedrive_ros.runtime.pipeline import PipelineConfig
from sparsedrive_ros.runtime.sync import SyncConfig

NUSCENES_CAMERAS = list(CAMERA_ORDER)


@dataclass(frozen=True)
class Param:
    default: Any
    runtime: bool  # True: may change while the node runs (takes effect with the next frame)
    description: str


P = Param
PARAMETERS: dict[str, Param] = {
    # Inputs
    "camera_names": P(NUSCENES_CAMERAS, False, "camera names in the model's order; topics are "
                      "<camera_topic_prefix>/<name><suffix>"),
    "camera_topic_prefix": P("", False, "namespace in front of every camera topic, e.g. /sensing/camera; "
                             "empty = topics at the root (/CAM_FRONT/...)"),
    "image_transport": P("compressed", False, "compressed (sensor_msgs/CompressedImage) or raw (sensor_msgs/Image)"),
    "image_topic_suffix": P("", False, "image topic suffix; empty = /image_rect_compressed or /image_rect"),
    "camera_info_suffix": P("/camera_info", False, "CameraInfo topic suffix"),
    "command_topic": P("/sparsedrive/command", False, "std_msgs/UInt8 driving command: 0 right, 1 left, 2 straight"),
    "command_timeout": P(2.0, True, "s; an older command is stale and default_command is used"),
    "default_command": P(2, True, "command when none is fresh"),
    # Frames
    "reference_frame": P("LIDAR_TOP", False, "output frame; nuScenes lidar axes (x right, y forward, z up)"),
    "fixed_frame": P("map", False, "world-fixed frame used for ego motion between stamps"),
    "calibration_file": P("", False, "YAML with K and camera extrinsics, used for cameras without CameraInfo "
                          "or TF (see docs/node.md); empty = none"),
    # Synchronisation
    "anchor_camera": P("CAM_FRONT", False, "camera whose images open frames"),
    "max_camera_time_diff": P(0.08, True, "s, tolerance between the anchor stamp and other cameras"),
    "missing_camera_policy": P("skip", True, "skip | reuse_last | mask"),
    "max_reuse_age": P(1.0, True, "s, oldest image reuse_last may substitute"),
    "min_frame_interval": P(0.45, True, "s, throttle by stamp (the model was trained at 2 Hz)"),
    "max_buffered_images": P(48, True, "images buffered per camera at most (besides the 2 s stamp window)"),
    "tf_timeout": P(0.2, True, "s to wait for TF at a frame's stamps"),
    "output_stamp": P("anchor", False, "stamp of the outputs (the reference time): anchor (the anchor image "
                      "stamp) or lidar (the stamp of the lidar_topic message closest to the anchor)"),
    "lidar_topic": P("", False, "sensor_msgs/PointCloud2 topic whose stamps output_stamp: lidar uses "
                     "(only the header is read)"),
    # Temporal state
    "max_time_jump": P(2.0, True, "s, a larger forward time jump resets the temporal state"),
    "desync_reset_frames": P(3, True, "consecutive incomplete anchor frames that count as a desync (reset)"),
    # Model
    "checkpoint": P("", False, "checkpoint file (.pth mmcv/plain, training .pt or .safetensors); empty = the "
                             "bundled demo model (synthetic world only); 'random' = seeded random weights"),
    "stage": P(2, False, "1 (det + map) or 2 (+ motion and planning)"),
    "device": P("cpu", False, "torch device: cpu, cuda, cuda:N"),
    "dtype": P("float32", False, "float32 or float64"),
    "backbone_autocast": P("", False, "empty, bf16 or fp16: autocast for the image backbone"),
    "seed": P(0, False, "seed of the random weights (checkpoint: random)"),
    # Outputs
    "score_threshold": P(0.25, True, "publish detections with score >= this (0 = all)"),
    "map_score_threshold": P(0.3, True, "publish map elements with score >= this (0 = all)"),
    "skip_when_no_subscribers": P(True, True, "do not run the model while no output has a subscriber"),
    "dump_dir": P("", True, "debug: write every frame's model request to DIR/frame_<stamp>.npz; empty = off"),
    # Diagnostics
    "diag_window": P(10.0, True, "s of wall time the drop, latency and camera figures cover"),
    "diag_max_latency": P(6.0, True, "s; WARN when a frame takes longer (also while it is still running)"),
    "diag_max_latency_error": P(30.0, True, "s; ERROR when a frame is still running after this (watchdog)"),
    "diag_max_result_age": P(8.0, True, "s, WARN above this age of the newest result"),
    "diag_max_camera_skew": P(0.1, True, "s, WARN above this camera skew"),
    "diag_max_drop_rate": P(0.5, True, "WARN above this fraction of dropped frames in the window "
                            "(throttling excluded)"),
    "diag_camera_timeout": P(2.0, True, "s of wall time without an image after which a camera is stale"),
    "gpu_decode": P("auto", False, "auto, on or off: JPEG images decoded and preprocessed on the model's device "
                    "(torchvision decode_jpeg, nvjpeg on CUDA); auto = on for device cuda only"),
    "inference": P("auto", False, "auto, eager, static or compiled: the model's frame as eager PyTorch, as the "
                   "fixed-shape static graph, or that graph under torch.compile (CUDA graphs on CUDA; the first "
                   "frames compile for minutes); auto = compiled on cuda, eager on cpu"),
}
del P

RUNTIME_PARAMETERS = frozenset(n for n, p in PARAMETERS.items() if p.runtime)


class StartupError(Exception):
    """A reason the node cannot start (bad parameter, unreadable checkpoint, ...): one clear message, exit 2."""


@dataclass(frozen=True)
class CameraCalibration:
    width: int
    height: int
    k: np.ndarray                 # [3, 3]
    frame_id: str                 # TF frame of the camera
    parent_frame: str             # frame the extrinsic is given in (e.g. base_link)
    parent_from_camera: np.ndarray  # [4, 4] p_parent = T @ p_camera


@dataclass(frozen=True)
class NodeParams:
    camera_names: list
    camera_topic_prefix: str
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
    max_buffered_images: int
    tf_timeout: float
    output_stamp: str
    lidar_topic: str
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
    diag_window: float
    diag_max_latency: float
    diag_max_latency_error: float
    diag_max_result_age: float
    diag_max_camera_skew: float
    diag_max_drop_rate: float
    diag_camera_timeout: float
    gpu_decode: str
    inference: str

    def __post_init__(self):
        """Every check that needs no file and no model (so a bad value fails before anything is built)."""
        def need(ok: bool, text: str) -> None:
            if not ok:
                raise ValueError(text)

        need(len(self.camera_names) > 0 and all(isinstance(c, str) and c.strip("/") for c in self.camera_names),
             f"camera_names must be non-empty names, got {self.camera_names}")
        need(self.image_transport in ("compressed", "raw"),
             f"image_transport must be compressed or raw, got {self.image_transport!r}")
        need(self.default_command in (0, 1, 2), f"default_command must be 0, 1 or 2, got {self.default_command}")
        need(self.stage in (1, 2), f"stage must be 1 or 2, got {self.stage}")
        need(self.backbone_autocast in ("", "bf16", "fp16"),
             f"backbone_autocast must be empty, bf16 or fp16, got {self.backbone_autocast!r}")
        need(self.device == "cpu" or self.device.startswith("cuda"),
             f"device must be cpu, cuda or cuda:N, got {self.device!r}")
        need(
            self.output_stamp in ("anchor", "lidar"), f"output_stamp must be anchor or lidar, got {self.output_stamp!r}"
        )
        need(self.output_stamp != "lidar" or bool(self.lidar_topic), "output_stamp: lidar needs lidar_topic")
        need(bool(self.reference_frame) and bool(self.fixed_frame), "reference_frame and fixed_frame must be set")
        for name in ("command_timeout", "tf_timeout", "diag_window", "diag_max_latency", "diag_max_latency_error",
                     "diag_max_result_age", "diag_max_camera_skew", "diag_camera_timeout"):
            value = getattr(self, name)
            need(math.isfinite(value) and value > 0, f"{name} must be > 0, got {value}")
        need(self.diag_max_latency_error >= self.diag_max_latency,
             f"diag_max_latency_error ({self.diag_max_latency_error}) must be >= diag_max_latency "
             f"({self.diag_max_latency})")
        need(
            0.0 <= self.diag_max_drop_rate <= 1.0,
            f"diag_max_drop_rate must be in [0, 1], got {self.diag_max_drop_rate}",
        )
        for name in ("score_threshold", "map_score_threshold"):
            need(0.0 <= getattr(self, name) <= 1.0, f"{name} must be in [0, 1], got {getattr(self, name)}")
        need(self.desync_reset_frames >= 1, f"desync_reset_frames must be >= 1, got {self.desync_reset_frames}")
        self.sync_config()      # anchor among the cameras, no duplicates, tolerances >= 0, buffer size
        self.pipeline_config()  # dtype, max_time_jump

    def sync_config(self) -> SyncConfig:
        return SyncConfig(tuple(self.camera_names), self.anchor_camera, self.max_camera_time_diff,
                          self.missing_camera_policy, self.max_reuse_age, self.min_frame_interval,
                          max_buffered_images=self.max_buffered_images)

    def pipeline_config(self) -> PipelineConfig:
        return PipelineConfig(max_time_jump=self.max_time_jump, device=self.device, dtype=self.dtype,
                              gpu_decode=self.gpu_decode, inference=self.inference)

    def replace(self, **changes) -> "NodeParams":
        return dataclasses.replace(self, **changes)


def default_values() -> dict[str, Any]:
    return {name: p.default for name, p in PARAMETERS.items()}


def check_checkpoint_file(path: str) -> None:
    """Cheap checks before the model is built: the file exists and is not empty ("" = demo model, "random")."""
    if path in ("", "random"):
        return
    f = Path(path)
    if not f.is_file():
        raise StartupError(f"checkpoint {path} does not exist (or is not a file)")
    if f.stat().st_size == 0:
        raise StartupError(f"checkpoint {path} is empty (0 bytes)")


def _matrix(value: Any, shape: tuple[int, ...], what: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64).reshape(shape)
    except (TypeError, ValueError):
        raise StartupError(f"{what} must be {int(np.prod(shape))} numbers, got {value!r}") from None
    if not np.all(np.isfinite(arr)):
        raise StartupError(f"{what} contains NaN or inf")
    return arr


CALIBRATION_KEYS = {"width", "height", "K", "frame_id", "parent_frame", "translation", "rotation_xyzw"}


def load_calibration_file(path: str, camera_names) -> dict[str, CameraCalibration]:
    """The calibration fallback: per camera K (pixels of the received image) and the camera's pose in a parent
    frame. Layout (every camera optional, unknown keys refused)::

        cameras:
          CAM_FRONT:
            width: 1600
            height: 900
            K: [fx, 0, cx, 0, fy, cy, 0, 0, 1]
            frame_id: CAM_FRONT          # default: the camera name
            parent_frame: base_link
            translation: [x, y, z]       # m, camera origin in parent_frame
            rotation_xyzw: [x, y, z, w]  # camera orientation in parent_frame (optical axes: z forward)
    """
    from sparsedrive_ros.runtime.tf_buffer import quat_to_matrix

    if not path:
        return {}
    f = Path(path)
    if not f.is_file():
        raise StartupError(f"calibration_file {path} does not exist")
    try:
        doc = yaml.safe_load(f.read_text())
    except yaml.YAMLError as exc:
        raise StartupError(f"calibration_file {path} is not valid YAML: {exc}") from None
    if not isinstance(doc, dict) or set(doc) != {"cameras"} or not isinstance(doc["cameras"], dict):
        raise StartupError(f"calibration_file {path} must hold one mapping `cameras:`")
    known = {c.strip("/").split("/")[-1]: c for c in camera_names}
    out = {}
    for name, entry in doc["cameras"].items():
        where = f"calibration_file {path}: {name}"
        if name not in known:
            raise StartupError(f"{where} is not one of camera_names {list(camera_names)}")
        if not isinstance(entry, dict):
            raise StartupError(f"{where} must be a mapping")
        unknown = sorted(set(entry) - CALIBRATION_KEYS)
        missing = sorted({"width", "height", "K", "parent_frame", "translation", "rotation_xyzw"} - set(entry))
        if unknown or missing:
            raise StartupError(f"{where}: unknown keys {unknown}, missing keys {missing}")
        q = _matrix(entry["rotation_xyzw"], (4,), f"{where} rotation_xyzw")
        if np.linalg.norm(q) < 1e-9:
            raise StartupError(f"{where} rotation_xyzw is zero")
        t = np.eye(4)
        t[:3, :3] = quat_to_matrix(q / np.linalg.norm(q))
        t[:3, 3] = _matrix(entry["translation"], (3,), f"{where} translation")
        if not (isinstance(entry["width"], int) and isinstance(entry["height"], int)
                and entry["width"] > 0 and entry["height"] > 0):
            raise StartupError(f"{where} width and height must be positive integers")
        out[known[name]] = CameraCalibration(entry["width"], entry["height"], _matrix(entry["K"], (3, 3), f"{where} K"),
                                             str(entry.get("frame_id", name)), str(entry["parent_frame"]), t)
    return out


def unknown_parameter_names(given: set[str], extra_known: set[str] = frozenset()) -> list[str]:
    """Names set from outside (params file, -p, launch) that the node does not know. rclpy's own parameters
    (use_sim_time, start_type_description_service, qos_overrides.*) are allowed."""
    builtin = {"use_sim_time", "start_type_description_service"}
    return sorted(n for n in given if n not in PARAMETERS and n not in builtin and n not in extra_known
                  and not n.startswith("qos_overrides."))


def parse_values(values: dict[str, Any]) -> NodeParams:
    """Typed, validated parameters; StartupError with the reason otherwise."""
    try:
        return NodeParams(**{n: (list(v) if isinstance(PARAMETERS[n].default, list) else v) for n, v in values.items()})
    except (TypeError, ValueError) as exc:
        raise StartupError(str(exc)) from None


def optional_float(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.3f}"
