"""ROS-free SparseDrive network (pure PyTorch). Nothing under this package may import rclpy."""

from .config import DET_CLASS_NAMES, MAP_CLASS_NAMES, DetHeadConfig, MapHeadConfig, MotionPlanConfig
from .config import SparseDriveConfig
from .box3d import BoxDetections
from .point3d import MapElements
from .motion_decoders import MotionForecast, PlanningResult
from .sparsedrive import (FrameInputs, SparseDrive, SparseDriveOutput, SparseDriveState, SparseDriveStream,
                          build_sparsedrive, stage_config)

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
