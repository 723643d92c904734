"""Typed configuration of the SparseDrive network.

Every default is the value of the original ``sparsedrive_small_stage{1,2}.py`` configuration
(docs/model-notes.md#configuration); the
builders in :mod:`sparsedrive_ros.model.sparsedrive` pick the stage. Sizes are configurable so that a reduced
("tiny") model can be trained with the same code; only the defaults load the official checkpoints.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional, Tuple

from sparsedrive_ros.conventions import DETECTION_CLASSES, MAP_CLASSES

__all__ = [
    "DET_CLASS_NAMES",
    "MAP_CLASS_NAMES",
    "DetHeadConfig",
    "MapHeadConfig",
    "MotionPlanConfig",
    "SparseDriveConfig",
    "model_config_from_dict",
]

DET_CLASS_NAMES: Tuple[str, ...] = DETECTION_CLASSES  # the model's names for the shared class orders
MAP_CLASS_NAMES: Tuple[str, ...] = MAP_CLASSES

# Fixed key points of the det deformable layers as configured; a trained checkpoint overwrites them
# (docs/model-notes.md#checkpoint-tensors).
DEFAULT_FIX_SCALE: Tuple[Tuple[float, float, float], ...] = (
    (0.0, 0.0, 0.0),
    (0.45, 0.0, 0.0), (-0.45, 0.0, 0.0),
    (0.0, 0.45, 0.0), (0.0, -0.45, 0.0),
    (0.0, 0.0, 0.45), (0.0, 0.0, -0.45),
)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass(frozen=True)
class DetHeadConfig:
    """Detection head (Sparse4D v3 style, docs/model-notes.md#configuration)."""

    num_anchor: int = 900
    num_temp_instances: int = 600
    num_decoder: int = 6
    num_single_frame_decoder: int = 1
    num_classes: int = 10
    num_groups: int = 8
    num_learnable_pts: int = 6
    fix_scale: Tuple[Tuple[float, float, float], ...] = DEFAULT_FIX_SCALE
    # Widths of the (position, size, yaw, velocity) branches of the anchor encoder; they sum to embed_dims.
    anchor_encoder_dims: Tuple[int, int, int, int] = (128, 32, 32, 64)
    ffn_dims: int = 1024
    decouple_attn: bool = True
    confidence_decay: float = 0.6
    default_time_interval: float = 0.5
    max_time_interval: float = 2.0
    num_output: int = 300
    dropout: float = 0.1
    dfa_attn_drop: float = 0.15

    def validate(self, embed_dims: int) -> None:
        _require(0 <= self.num_temp_instances < self.num_anchor,
                 f"det num_temp_instances={self.num_temp_instances} must be in [0, num_anchor={self.num_anchor})")
        _require(1 <= self.num_single_frame_decoder <= self.num_decoder,
                 f"det num_single_frame_decoder={self.num_single_frame_decoder} must be in [1, {self.num_decoder}]")
        _require(sum(self.anchor_encoder_dims) == embed_dims,
                 f"det anchor_encoder_dims={self.anchor_encoder_dims} must sum to embed_dims={embed_dims}")
        _require(embed_dims % self.num_groups == 0,
                 f"embed_dims={embed_dims} must be divisible by det num_groups={self.num_groups}")
        _require(all(len(p) == 3 for p in self.fix_scale), f"det fix_scale rows must have 3 values: {self.fix_scale}")
        _require(0 < self.num_output <= self.num_anchor,
                 f"det num_output={self.num_output} must be in (0, num_anchor={self.num_anchor}]")


@dataclass(frozen=True)
class MapHeadConfig:
    """Online vector-map head (docs/model-notes.md#configuration). ``num_temp_instances`` is 0 in stage 1 and 33 in
    stage 2."""

    num_anchor: int = 100
    num_temp_instances: int = 33
    num_decoder: int = 6
    num_single_frame_decoder: int = 1
    num_classes: int = 3
    num_sample: int = 20
    num_groups: int = 8
    num_learnable_pts: int = 3
    fix_height: Tuple[float, ...] = (0.0, 0.5, -0.5, 1.0, -1.0)
    ground_height: float = -1.84023
    ffn_dims: int = 1024
    decouple_attn: bool = False
    confidence_decay: float = 0.6
    default_time_interval: float = 0.5
    max_time_interval: float = 2.0
    dropout: float = 0.1
    dfa_attn_drop: float = 0.15

    def validate(self, embed_dims: int) -> None:
        _require(0 <= self.num_temp_instances < self.num_anchor,
                 f"map num_temp_instances={self.num_temp_instances} must be in [0, num_anchor={self.num_anchor})")
        _require(1 <= self.num_single_frame_decoder <= self.num_decoder,
                 f"map num_single_frame_decoder={self.num_single_frame_decoder} must be in [1, {self.num_decoder}]")
        _require(embed_dims % self.num_groups == 0,
                 f"embed_dims={embed_dims} must be divisible by map num_groups={self.num_groups}")
        _require(self.num_learnable_pts > 0, f"map num_learnable_pts must be > 0, got {self.num_learnable_pts}")


@dataclass(frozen=True)
class MotionPlanConfig:
    """Motion forecasting + planning head (stage 2 only,
    docs/model-notes.md#configuration, #motion-and-planning-head)."""

    fut_ts: int = 12
    fut_mode: int = 6
    ego_fut_ts: int = 6
    ego_fut_mode: int = 6
    num_commands: int = 3
    queue_length: int = 4
    tracking_threshold: float = 0.2
    num_det: int = 50
    num_map: int = 10
    num_blocks: int = 3
    ffn_dims: int = 512
    dropout: float = 0.1
    # Ego box (length along heading, width, height) in metres; also the ego anchor of the instance queue.
    ego_size: Tuple[float, float, float] = (4.08, 1.73, 1.56)
    # Planning rescore (HierarchicalPlanningDecoder.rescore defaults).
    use_rescore: bool = True
    rescore_score_thresh: float = 0.5
    rescore_static_dis_thresh: float = 0.5
    rescore_dim_scale: float = 1.1
    rescore_num_motion_mode: int = 1
    rescore_offset: float = 0.5

    def validate(self, det: DetHeadConfig) -> None:
        _require(self.queue_length >= 1, f"motion queue_length must be >= 1, got {self.queue_length}")
        _require(0 < self.num_det <= det.num_anchor, f"motion num_det={self.num_det} must be in (0, {det.num_anchor}]")
        _require(self.ego_fut_ts >= 2, f"ego_fut_ts must be >= 2 (yaw by differences), got {self.ego_fut_ts}")
        _require(self.ego_fut_ts <= self.fut_ts, f"ego_fut_ts={self.ego_fut_ts} must be <= fut_ts={self.fut_ts}")
        _require(self.num_blocks >= 1, f"motion num_blocks must be >= 1, got {self.num_blocks}")


@dataclass(frozen=True)
class SparseDriveConfig:
    """Whole network. ``motion_plan`` None = stage 1 (det + map only)."""

    backbone_depth: int = 50
    # Planes of the first ResNet stage (stage k has width * 2**(k-1)); 64 is torchvision's and the original's.
    backbone_width: int = 64
    embed_dims: int = 256
    num_cams: int = 6
    num_levels: int = 4
    image_hw: Tuple[int, int] = (256, 704)
    num_depth_layers: int = 3
    det: DetHeadConfig = field(default_factory=DetHeadConfig)
    map: MapHeadConfig = field(default_factory=MapHeadConfig)
    motion_plan: Optional[MotionPlanConfig] = field(default_factory=MotionPlanConfig)

    def __post_init__(self) -> None:
        _require(self.backbone_depth in (18, 34, 50, 101),
                 f"backbone_depth must be one of 18, 34, 50, 101, got {self.backbone_depth}")
        _require(self.backbone_width >= 8 and self.backbone_width % 8 == 0,
                 f"backbone_width must be a positive multiple of 8, got {self.backbone_width}")
        _require(self.num_levels == 4, f"num_levels must be 4 (FPN on ResNet stages C2..C5), got {self.num_levels}")
        height, width = self.image_hw
        _require(height % 64 == 0 and width % 64 == 0,
                 f"image_hw={self.image_hw} must be multiples of 64 (stride-32 map pooled by half its size)")
        _require(self.num_cams >= 1, f"num_cams must be >= 1, got {self.num_cams}")
        self.det.validate(self.embed_dims)
        self.map.validate(self.embed_dims)
        if self.motion_plan is not None:
            self.motion_plan.validate(self.det)

    @property
    def stage(self) -> int:
        return 1 if self.motion_plan is None else 2

    @property
    def backbone_channels(self) -> Tuple[int, int, int, int]:
        """Output channels of ResNet stages C2..C5."""
        expansion = 1 if self.backbone_depth in (18, 34) else 4
        return tuple(self.backbone_width * expansion * 2 ** i for i in range(4))

    @property
    def coarsest_map_hw(self) -> Tuple[int, int]:
        """Size of the stride-32 feature map (the ego feature encoder's input)."""
        return self.image_hw[0] // 32, self.image_hw[1] // 32


def _tuplify(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tuplify(v) for v in value)
    return value


def _build(cls, data: dict):
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields in checkpoint config: {sorted(unknown)}")
    return cls(**{k: _tuplify(v) for k, v in data.items()})


def model_config_from_dict(data: dict) -> SparseDriveConfig:
    """Inverse of ``dataclasses.asdict(SparseDriveConfig)`` (as stored in checkpoint ``meta['config']``)."""
    data = dict(data)
    det = _build(DetHeadConfig, data.pop("det"))
    mapc = _build(MapHeadConfig, data.pop("map"))
    motion = data.pop("motion_plan")
    motion = _build(MotionPlanConfig, motion) if motion is not None else None
    return SparseDriveConfig(**{k: _tuplify(v) for k, v in data.items()}, det=det, map=mapc, motion_plan=motion)
