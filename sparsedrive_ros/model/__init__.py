"""ROS-free SparseDrive network (pure PyTorch). Nothing under this package may import rclpy.

Build / load / run (one stream = one temporal state)::

    model = build_sparsedrive(stage=2)                       # or build_sparsedrive(2, config=SparseDriveConfig(...))
    model.load_state_dict(load_checkpoint(path), strict=True)  # sparsedrive_ros.model.checkpoint
    model = model.to(device="cpu", dtype=torch.float32).eval()
    stream = SparseDriveStream(model)                        # holds model + SparseDriveState
    out = stream.step(FrameInputs.create(images, projection_mat, timestamp, T_global, command=2))
    out.detections.boxes   # [B, 300, 10] x, y, z, l, w, h, yaw, vx, vy, vz (lidar frame)
    out.planning.final     # [B, 6, 2] ego plan, lidar frame (x right, y forward), 0.5 s steps
    stream.reset()         # scene change / bag loop / time jump

Lower level: ``state = model.new_state(); out = model(frame, state, return_raw=True)``; ``out.raw`` holds the
parity material's ``raw/...`` arrays (docs/parity.md#array-names) and ``out.golden_arrays()`` the ``post/...`` ones.
Inside the model the
original's time rules apply (|dt| > 2 s masks the history, dt = 0 or a first frame uses 0.5 s, going back in
time by <= 2 s is accepted as the original does); ``SparseDriveStream(max_time_gap=..., reset_on_backwards=True)``
adds hard resets for robots.
"""

from .box3d import BoxDetections
from .config import DET_CLASS_NAMES, MAP_CLASS_NAMES, DetHeadConfig, MapHeadConfig, MotionPlanConfig, SparseDriveConfig
from .motion_decoders import MotionForecast, PlanningResult
from .point3d import MapElements
from .sparsedrive import (
    FrameInputs,
    SparseDrive,
    SparseDriveOutput,
    SparseDriveState,
    SparseDriveStream,
    build_sparsedrive,
    stage_config,
)

__all__ = [
    "DET_CLASS_NAMES",
    "MAP_CLASS_NAMES",
    "BoxDetections",
    "DetHeadConfig",
    "FrameInputs",
    "MapElements",
    "MapHeadConfig",
    "MotionForecast",
    "MotionPlanConfig",
    "PlanningResult",
    "SparseDrive",
    "SparseDriveConfig",
    "SparseDriveOutput",
    "SparseDriveState",
    "SparseDriveStream",
    "build_sparsedrive",
    "stage_config",
]
