"""The streaming pipeline the ROS node drives: one synchronised frame of camera images and calibration in,
typed numpy results out (ROS-free; the node only converts messages to and from these dataclasses).

Frames: the reference frame is the model's "lidar" frame (nuScenes LIDAR_TOP axes: x right, y forward, z up).
For a frame with anchor stamp t_a, camera i captured at t_i:
    cam_from_ref[i]   p_cam(t_i)  = cam_from_ref[i] @ p_ref(t_a)   (through the fixed frame: ego motion between
                                                                     t_i and t_a is compensated, as the original)
    ref_to_global     p_fixed     = ref_to_global @ p_ref(t_a)     (T_global of the original, float64)
    projection_mat[i] = A_i @ viewpad(K_i) @ cam_from_ref[i]       (A_i: resize + crop to the 704x256 input)
Temporal state: one SparseDriveStream per pipeline. It is reset on request, when time goes backwards, and when
time jumps forward by more than `max_time_jump` seconds; the result says so (`temporal_reset`, `reset_reason`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

import numpy as np
import torch

from sparsedrive_ros.geometry.projection import viewpad
from sparsedrive_ros.model.preprocess import (
    GPU_DECODE_MODES,
    ImageTransform,
    JpegDecodeError,
    JpegLike,
    decode_bgr,
    decode_on_device,
    inference_transform,
    jpeg_size,
    preprocess_image,
    preprocess_jpegs,
)
from sparsedrive_ros.model.sparsedrive import FrameInputs, SparseDrive, SparseDriveStream
from sparsedrive_ros.model.static_frame import StaticSparseDriveStream

MAP_GROUND_Z = -1.84023  # m, ground height in the nuScenes lidar frame (the map head's key-point height)


INFERENCE_PATHS = ("auto", "eager", "static", "compiled")


def inference_path(requested: str, device: torch.device) -> str:
    """The path ``auto`` stands for on ``device``: compiled on CUDA (launch-bound eager heads), eager on the CPU
    (the visible-sample aggregation does less work there than the dense static one)."""
    if requested != "auto":
        return requested
    return "compiled" if device.type == "cuda" else "eager"


@dataclass(frozen=True)
class PipelineConfig:
    max_time_jump: float = 2.0            # s; larger forward jumps reset the temporal state
    device: str = "cpu"
    dtype: str = "float32"                # float32 | float64
    fuse_batchnorm: bool = True           # fold the backbone's BatchNorms into its convolutions (inference)
    gpu_decode: str = "auto"              # JPEG bytes decoded + preprocessed on the device: auto (CUDA) | on | off
    # eager | static | compiled | auto: the eager frame, the fixed-shape static graph, or that graph under
    # torch.compile (CUDA graphs on CUDA); auto = compiled on CUDA, eager on the CPU, where eager is fastest
    # (docs/static-graph.md#choosing-a-path).
    inference: str = "auto"

    def __post_init__(self):
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype!r}")
        if self.max_time_jump <= 0:
            raise ValueError(f"max_time_jump must be > 0, got {self.max_time_jump}")
        if self.inference not in INFERENCE_PATHS:
            raise ValueError(f"inference must be one of {', '.join(INFERENCE_PATHS)}, got {self.inference!r}")
        if self.gpu_decode not in GPU_DECODE_MODES:
            raise ValueError(f"gpu_decode must be one of {', '.join(GPU_DECODE_MODES)}, got {self.gpu_decode!r}")


@dataclass
class FrameRequest:
    stamp_ns: int                          # anchor image stamp = reference time t_a
    images: Sequence[Optional[np.ndarray]]  # per camera (model order) BGR uint8 [H, W, 3]; None = masked
    intrinsics: np.ndarray                 # [N, 3, 3] K in pixels of each received image
    cam_from_ref: np.ndarray               # [N, 4, 4] float64, see module docstring
    ref_to_global: np.ndarray              # [4, 4] float64
    command: int                           # 0 turn right, 1 turn left, 2 straight
    # Per camera the undecoded JPEG bytes (uint8 [n] or bytes), or None. A camera with bytes may have None in
    # `images`; build_inputs decodes them on the device (config.gpu_decode) or, when that is off, with OpenCV.
    # A camera is masked when it has neither.
    jpeg: Optional[Sequence[Optional[JpegLike]]] = None

    def jpeg_of(self, i: int) -> Optional[JpegLike]:
        return None if self.jpeg is None else self.jpeg[i]

    def decoded_images(self) -> list[Optional[np.ndarray]]:
        """BGR uint8 images per camera (None = masked), decoding JPEG-only cameras with OpenCV (today's CPU
        decoder); raises JpegDecodeError naming the camera index of a JPEG that does not decode."""
        out = []
        for i, image in enumerate(self.images):
            data = self.jpeg_of(i)
            out.append(decode_bgr(data, i) if image is None and data is not None else image)
        return out


@dataclass
class PipelineResult:
    stamp_ns: int
    temporal_reset: bool
    reset_reason: str                      # "", "start", "time_backwards", "time_jump", "desync", "request"
    time_since_previous: float             # s (0 after a reset)
    # Detections, K = 300, sorted by score; reference frame.
    boxes: np.ndarray                      # [K, 10] x, y, z, l, w, h, yaw, vx, vy, vz
    scores: np.ndarray                     # [K]
    cls_scores: np.ndarray                 # [K] sigmoid(max class logit)
    class_scores: np.ndarray               # [K, 10] sigmoid of every class logit
    labels: np.ndarray                     # [K] int64
    instance_ids: np.ndarray               # [K] int64
    # Map, M = 100 (instance, class) pairs sorted by score.
    map_polylines: np.ndarray              # [M, 20, 2] x, y
    map_scores: np.ndarray                 # [M]
    map_labels: np.ndarray                 # [M] int64
    # Motion / planning (stage 2 only; None for stage 1).
    trajs: Optional[np.ndarray] = None     # [K, 6, 12, 2] absolute x, y at 0.5 s steps
    traj_scores: Optional[np.ndarray] = None  # [K, 6]
    tracked_frames: Optional[np.ndarray] = None  # [K] int64
    plan_trajectories: Optional[np.ndarray] = None  # [3, 6, 6, 2]
    plan_scores: Optional[np.ndarray] = None        # [3, 6]
    plan_final: Optional[np.ndarray] = None         # [6, 2]
    plan_command: int = 2
    plan_mode: int = 0
    ego_status: Optional[np.ndarray] = None         # [10]
    timings: dict[str, float] = field(default_factory=dict)  # s per stage


class StageTimer:
    """Times named model stages with forward hooks, so the model code stays free of instrumentation."""

    def __init__(self, model: SparseDrive, sync_cuda: bool):
        self.times: dict[str, float] = {}
        self._sync = sync_cuda
        self._start: dict[str, float] = {}
        head = model.head
        stages = {"backbone": model.img_backbone, "neck": model.img_neck, "det_head": head.det_head,
                  "map_head": head.map_head}
        if head.motion_plan_head is not None:
            stages["motion_plan"] = head.motion_plan_head
        for name, module in stages.items():
            module.register_forward_pre_hook(self._pre(name))
            module.register_forward_hook(self._post(name))

    def _now(self) -> float:
        if self._sync:
            torch.cuda.synchronize()
        return time.perf_counter()

    def _pre(self, name):
        def hook(module, args):
            self._start[name] = self._now()
        return hook

    def _post(self, name):
        def hook(module, args, output):
            self.times[name] = self.times.get(name, 0.0) + self._now() - self._start[name]
        return hook


class SparseDrivePipeline:
    """Owns the model's temporal stream; `process()` one synchronised frame at a time (not thread-safe)."""

    def __init__(self, model: SparseDrive, config: PipelineConfig = PipelineConfig(), model_label: str = "",
                 random_weights: bool = False):
        self.config = config
        # Provenance for every published frame (FrameInfo.model / random_weights) and for the renders' banner.
        self.model_label, self.random_weights = model_label, random_weights
        self.device = torch.device(config.device)
        self.dtype = torch.float64 if config.dtype == "float64" else torch.float32
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        if config.fuse_batchnorm:
            self.model.img_backbone.fuse_batchnorm()
        self.inference = inference_path(config.inference, self.device)
        self.stream: Union[SparseDriveStream, StaticSparseDriveStream]
        self._timer: Optional[StageTimer] = None
        if self.inference == "eager":
            self.stream = SparseDriveStream(self.model)
            # Per-stage times come from module hooks, which a compiled graph cannot call: eager only.
            self._timer = StageTimer(self.model, sync_cuda=self.device.type == "cuda")
        else:
            compile_mode = None
            if self.inference == "compiled":
                compile_mode = "reduce-overhead" if self.device.type == "cuda" else "default"
            self.stream = StaticSparseDriveStream(self.model, compile=compile_mode)
        self._last_stamp_ns: Optional[int] = None
        self._reset_request: Optional[str] = "start"

    def inference_status(self) -> tuple[str, str]:
        """(path in use, problem): the configured path, or "static" with the reason when compiling failed and the
        stream fell back to the uncompiled graph (docs/static-graph.md#choosing-a-path)."""
        error = getattr(self.stream, "compile_error", "")
        if error:
            return "static", f"torch.compile failed, running the static graph uncompiled: {error}"
        return self.inference, ""

    def request_reset(self, reason: str = "request") -> None:
        """Wipe the temporal state before the next frame (thread-safe: only sets a flag)."""
        self._reset_request = reason

    def _temporal_check(self, stamp_ns: int) -> tuple[str, float]:
        reason = self._reset_request or ""
        dt = 0.0 if self._last_stamp_ns is None else (stamp_ns - self._last_stamp_ns) * 1e-9
        if not reason and dt < 0:
            reason = "time_backwards"
        elif not reason and dt > self.config.max_time_jump:
            reason = "time_jump"
        if reason:
            self.stream.reset()
            self._reset_request = None
            dt = 0.0
        return reason, dt

    def build_inputs(self, req: FrameRequest) -> FrameInputs:
        """Preprocess images and build the projection matrices (the original's test pipeline)."""
        n = len(req.images)
        h, w = self.model.config.image_hw  # network input (256, 704) for the released models
        if req.intrinsics.shape != (n, 3, 3) or req.cam_from_ref.shape != (n, 4, 4):
            raise ValueError(f"need intrinsics [{n},3,3] and cam_from_ref [{n},4,4], got "
                             f"{req.intrinsics.shape} and {req.cam_from_ref.shape}")
        for name, arr in (("intrinsics", req.intrinsics), ("cam_from_ref", req.cam_from_ref),
                          ("ref_to_global", req.ref_to_global)):
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"{name} contains NaN or inf")
        if req.jpeg is not None and len(req.jpeg) != n:
            raise ValueError(f"need jpeg for {n} cameras, got {len(req.jpeg)}")
        present = [i for i in range(n) if req.images[i] is not None or req.jpeg_of(i) is not None]
        on_device = bool(present) and decode_on_device(self.config.gpu_decode, self.config.device) and all(
            req.jpeg_of(i) is not None for i in present)
        transforms: dict[int, ImageTransform] = {}
        if on_device:
            # Every present camera has its JPEG bytes: decode, resize, crop and normalise on the device (no CPU
            # round trip of the pixels; the decoder may differ from OpenCV's by a grey level, model/preprocess.py).
            images = torch.zeros(n, 3, h, w, dtype=torch.float32, device=self.device)
            jpegs = [j for j in map(req.jpeg_of, present) if j is not None]  # all present have bytes
            cam = present[0]
            try:
                for cam, data in zip(present, jpegs):
                    transforms[cam] = inference_transform(jpeg_size(data), (h, w))
                images[present] = preprocess_jpegs(jpegs, [transforms[i] for i in present], self.device)
            except JpegDecodeError as exc:  # name the camera (index in the request) whose JPEG is broken
                if exc.index is not None:
                    cam = present[exc.index]
                raise JpegDecodeError(str(exc), cam) from None
            decoded: Sequence[Optional[np.ndarray]] = [None] * n
        else:
            images = torch.zeros(n, 3, h, w, dtype=torch.float32)
            decoded = req.decoded_images() if req.jpeg is not None else req.images
        projection = np.zeros((n, 4, 4), dtype=np.float64)
        for i in present:
            # Cameras with neither image nor JPEG are masked: black input and an all-zero projection, so every key
            # point projects to (0, 0) with depth clamped to 1e-5 and fails the kernel's strict 0 < u, v < 1 test.
            # The original's test-time resize (Pillow bicubic) + bottom crop, and the matching projection update.
            image = decoded[i]
            if image is None:
                transform = transforms[i]
            else:
                transform = inference_transform(tuple(image.shape[:2]), (h, w))
                images[i] = preprocess_image(image, transform)
            projection[i] = transform.matrix() @ viewpad(req.intrinsics[i]) @ req.cam_from_ref[i]
        ref_to_global = np.asarray(req.ref_to_global, dtype=np.float64)
        return FrameInputs(
            images=images[None],
            projection_mat=torch.from_numpy(projection).float()[None],
            image_wh=torch.tensor([[w, h]] * n, dtype=torch.float32)[None],
            timestamp=torch.tensor([req.stamp_ns * 1e-9], dtype=torch.float64),
            T_global=torch.from_numpy(ref_to_global)[None],
            T_global_inv=torch.from_numpy(np.linalg.inv(ref_to_global))[None],
            command=torch.tensor([req.command], dtype=torch.int64),
        )

    def process(self, req: FrameRequest) -> PipelineResult:
        t0 = time.perf_counter()
        if req.command not in (0, 1, 2):
            raise ValueError(f"command must be 0 (right), 1 (left) or 2 (straight), got {req.command}")
        inputs = self.build_inputs(req)
        t1 = time.perf_counter()
        reason, dt = self._temporal_check(req.stamp_ns)
        if self._timer is not None:
            self._timer.times.clear()
        out = self.stream.step(inputs, return_raw=True)
        t2 = time.perf_counter()
        result = self._to_result(req.stamp_ns, reason, dt, out)
        self._last_stamp_ns = req.stamp_ns
        t3 = time.perf_counter()
        stages = self._timer.times if self._timer is not None else {}
        result.timings = {"preprocess": t1 - t0, **stages, "model": t2 - t1, "postprocess": t3 - t2}
        return result

    @staticmethod
    def _to_result(stamp_ns: int, reason: str, dt: float, out) -> PipelineResult:
        def np_(x):
            x = x.detach().cpu()
            return x.numpy().astype(np.float64) if x.is_floating_point() else x.numpy().astype(np.int64)

        det, mp = out.detections, out.map
        num_layers = sum(k.startswith("raw/det/classification/") for k in out.raw)
        last_cls = out.raw[f"raw/det/classification/{num_layers - 1}"]  # [1, N, 10] logits of the last layer
        class_scores = torch.gather(last_cls.sigmoid(), 1,
                                    det.index[..., None].expand(-1, -1, last_cls.shape[-1]))
        result = PipelineResult(
            stamp_ns=stamp_ns, temporal_reset=bool(reason), reset_reason=reason, time_since_previous=dt,
            boxes=np_(det.boxes[0]), scores=np_(det.scores[0]), cls_scores=np_(det.cls_scores[0]),
            class_scores=np_(class_scores[0]), labels=np_(det.labels[0]), instance_ids=np_(det.instance_ids[0]),
            map_polylines=np_(mp.polylines[0]), map_scores=np_(mp.scores[0]), map_labels=np_(mp.labels[0]),
        )
        if out.motion is not None:
            result.trajs = np_(out.motion.trajs[0])
            result.traj_scores = np_(out.motion.traj_scores[0])
            result.tracked_frames = np_(out.motion.period[0])
        if out.planning is not None:
            p = out.planning
            result.plan_trajectories = np_(p.trajectories[0])
            result.plan_scores = np_(p.scores[0])
            result.plan_final = np_(p.final[0])
            result.plan_command = int(p.command[0])
            result.plan_mode = int(p.mode[0])
            result.ego_status = np_(p.ego_status[0])
        return result
