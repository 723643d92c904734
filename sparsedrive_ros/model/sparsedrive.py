"""SparseDrive: image encoder + det/map heads (+ motion/planning in stage 2), with explicit streaming state.

>>> model = build_sparsedrive(stage=2).eval()
>>> stream = SparseDriveStream(model)              # one per camera rig / bag
>>> out = stream.step(FrameInputs(images, projection_mat, image_wh, timestamp, T_global, T_global_inv, command))
>>> out.planning.final                             # [B, 6, 2] lidar frame
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor, nn

from .backbone import FPN, DenseDepthNet, ResNetTrunk
from .box3d import (
    BOX_DIMS,
    BoxDetections,
    SparseBox3DDecoder,
    SparseBox3DEncoder,
    SparseBox3DKeyPointsGenerator,
    SparseBox3DRefinementModule,
)
from .config import DetHeadConfig, MapHeadConfig, MotionPlanConfig, SparseDriveConfig
from .deformable_layer import DeformableFeatureAggregation
from .deformable_op import channels_last_feature_maps
from .instance_bank import InstanceBank, InstanceBankState
from .layers import MultiheadAttention
from .motion import InstanceQueueState, MotionPlanningHead, MotionPlanOutput
from .motion_decoders import HierarchicalPlanningDecoder, MotionForecast, PlanningResult, SparseBox3DMotionDecoder
from .point3d import (
    MapElements,
    SparsePoint3DDecoder,
    SparsePoint3DEncoder,
    SparsePoint3DKeyPointsGenerator,
    SparsePoint3DRefinementModule,
)
from .sparse4d_head import HeadOutput, Sparse4DHead, operation_order

__all__ = [
    "FrameInputs",
    "SparseDrive",
    "SparseDriveHead",
    "SparseDriveOutput",
    "SparseDriveState",
    "SparseDriveStream",
    "build_sparsedrive",
]


# ----------------------------------------------------------------------------------------------- inputs / state


@dataclass
class FrameInputs:
    """One synchronised frame of the six cameras (batch B, usually 1; camera order FRONT, FRONT_RIGHT,
    FRONT_LEFT, BACK, BACK_LEFT, BACK_RIGHT)."""

    images: Tensor          # [B, N_cam, 3, H, W] RGB normalised (x - mean) / std
    projection_mat: Tensor  # [B, N_cam, 4, 4] lidar -> pixels of the H x W network input
    image_wh: Tensor        # [B, N_cam, 2] (W, H)
    timestamp: Tensor       # [B] float64 seconds (keep float64, docs/model-notes.md#numeric-precision)
    T_global: Tensor        # [B, 4, 4] float64 lidar -> global
    T_global_inv: Tensor    # [B, 4, 4] float64 global -> lidar
    command: Tensor         # [B] int64 index (0 right, 1 left, 2 straight) or [B, 3] one-hot

    @classmethod
    def create(cls, images, projection_mat, timestamp, T_global, command=2, image_wh=None,
               T_global_inv=None) -> "FrameInputs":
        """Build a batch-of-one frame from numpy arrays / tensors / Python scalars.

        images [N_cam, 3, H, W] (or batched), projection_mat [N_cam, 4, 4], timestamp float seconds,
        T_global [4, 4] lidar -> global; command an int index or a one-hot [3]; image_wh defaults to (W, H)
        of the images; T_global_inv defaults to the float64 inverse of T_global.
        """
        images = torch.as_tensor(images)
        if images.dim() == 4:
            images = images[None]
        batch, num_cams, _, height, width = images.shape
        projection_mat = torch.as_tensor(projection_mat).reshape(batch, num_cams, 4, 4)
        if image_wh is None:
            image_wh = torch.tensor([float(width), float(height)]).expand(batch, num_cams, 2).clone()
        T_global = torch.as_tensor(T_global, dtype=torch.float64).reshape(batch, 4, 4)
        if T_global_inv is None:
            T_global_inv = torch.linalg.inv(T_global)
        command = torch.as_tensor(command)
        command = command.reshape(batch, -1) if command.dim() >= 1 and command.numel() == 3 * batch \
            else command.reshape(batch).long()
        return cls(images=images, projection_mat=projection_mat,
                   image_wh=torch.as_tensor(image_wh).reshape(batch, num_cams, 2),
                   timestamp=torch.as_tensor(timestamp, dtype=torch.float64).reshape(batch),
                   T_global=T_global,
                   T_global_inv=torch.as_tensor(T_global_inv, dtype=torch.float64).reshape(batch, 4, 4),
                   command=command)

    def validate(self, num_cams: int, image_hw: Sequence[int]) -> None:
        images = self.images
        if images.dim() != 5 or images.shape[1] != num_cams or images.shape[2] != 3 \
                or tuple(images.shape[3:]) != tuple(image_hw):
            raise ValueError(f"images must be [B, {num_cams}, 3, {image_hw[0]}, {image_hw[1]}], "
                             f"got {tuple(images.shape)}")
        batch = images.shape[0]
        expected = {"projection_mat": (batch, num_cams, 4, 4), "image_wh": (batch, num_cams, 2),
                    "timestamp": (batch,), "T_global": (batch, 4, 4), "T_global_inv": (batch, 4, 4)}
        for name, shape in expected.items():
            value = getattr(self, name)
            if tuple(value.shape) != shape:
                raise ValueError(f"{name} must have shape {shape}, got {tuple(value.shape)}")
        for name in ("timestamp", "T_global", "T_global_inv"):
            if getattr(self, name).dtype != torch.float64:
                raise ValueError(f"{name} must be float64 (docs/model-notes.md#numeric-precision), "
                                 f"got {getattr(self, name).dtype}")
        command_index(self.command, batch)

    def to(self, device: Union[str, torch.device], dtype: torch.dtype) -> "FrameInputs":
        """Float inputs to ``dtype``; timestamps and poses stay float64."""
        return FrameInputs(
            images=self.images.to(device=device, dtype=dtype),
            projection_mat=self.projection_mat.to(device=device, dtype=dtype),
            image_wh=self.image_wh.to(device=device, dtype=dtype),
            timestamp=self.timestamp.to(device=device, dtype=torch.float64),
            T_global=self.T_global.to(device=device, dtype=torch.float64),
            T_global_inv=self.T_global_inv.to(device=device, dtype=torch.float64),
            command=self.command.to(device=device),
        )


def command_index(command: Tensor, batch: int) -> Tensor:
    """[B] index or [B, 3] one-hot (argmax, as the original) -> [B] int64; ValueError on anything else."""
    if command.dim() == 2 and command.shape[0] == batch:
        return command.argmax(dim=-1)
    if command.dim() == 1 and command.shape[0] == batch and not command.is_floating_point():
        if ((command < 0) | (command > 2)).any():
            raise ValueError(f"command indices must be 0 (right), 1 (left) or 2 (straight), got {command.tolist()}")
        return command.long()
    raise ValueError(f"command must be [B={batch}] int64 or [B={batch}, 3] one-hot, got {tuple(command.shape)} "
                     f"{command.dtype}")


@dataclass
class SparseDriveState:
    """Temporal state of one stream: det bank, map bank, motion/planning queue. Never share between streams."""

    det: InstanceBankState = field(default_factory=InstanceBankState)
    map: InstanceBankState = field(default_factory=InstanceBankState)
    motion: InstanceQueueState = field(default_factory=InstanceQueueState)
    frames_seen: int = 0

    def reset(self) -> None:
        self.det.reset()
        self.map.reset()
        self.motion.reset()
        self.frames_seen = 0

    @property
    def last_timestamp(self) -> Optional[Tensor]:
        """[B] float64 seconds of the last frame that filled the det bank, None after a reset."""
        return self.det.timestamp


@dataclass
class SparseDriveOutput:
    """Decoded results of one frame (batch first). ``motion``/``planning`` are None for a stage-1 model."""

    detections: BoxDetections
    map: MapElements
    motion: Optional[MotionForecast]
    planning: Optional[PlanningResult]
    time_interval: Tensor                     # [B] seconds the det head used (0.5 = first frame / gap)
    temporal_valid: Optional[Tensor]          # [B] bool, history was merged (|dt| <= 2 s); None on a first frame
    raw: Optional[Dict[str, Tensor]] = None   # golden ``raw/...`` arrays when requested

    def golden_arrays(self, b: int = 0) -> Dict[str, np.ndarray]:
        """Sample ``b`` as the parity material's ``post/...`` (+ ``raw/...`` if present) numpy arrays."""
        return golden_arrays(self, b)


# ----------------------------------------------------------------------------------------------- modules


class SparseDriveHead(nn.Module):
    """det_head + map_head (+ motion_plan_head): the ``head.`` prefix of the checkpoint."""

    def __init__(self, det_head: Sparse4DHead, map_head: Sparse4DHead,
                 motion_plan_head: Optional[MotionPlanningHead]) -> None:
        super().__init__()
        self.det_head = det_head
        self.map_head = map_head
        self.motion_plan_head = motion_plan_head


class SparseDrive(nn.Module):
    """The network. Parameter names match the original checkpoints (``img_backbone.``, ``img_neck.``,
    ``depth_branch.``, ``head.``) so ``load_state_dict(strict=True)`` works on the official weights."""

    def __init__(self, config: SparseDriveConfig) -> None:
        super().__init__()
        self.config = config
        self.img_backbone = ResNetTrunk(config.backbone_depth, config.backbone_width)
        self.img_neck = FPN(config.backbone_channels, config.embed_dims)
        self.depth_branch = DenseDepthNet(config.embed_dims, config.num_depth_layers)
        motion_plan = _build_motion_plan_head(config) if config.motion_plan is not None else None
        self.head = SparseDriveHead(_build_det_head(config), _build_map_head(config), motion_plan)
        self.det_decoder = SparseBox3DDecoder(config.det.num_output)
        self.map_decoder = SparsePoint3DDecoder()
        self.motion_decoder = SparseBox3DMotionDecoder()
        self.planning_decoder = (HierarchicalPlanningDecoder(config.motion_plan)
                                 if config.motion_plan is not None else None)
        self.backbone_autocast: Optional[torch.dtype] = None  # e.g. float16 on CUDA (model-notes#numeric-precision)

    def new_state(self) -> SparseDriveState:
        return SparseDriveState()

    def extract_feat(self, images: Tensor) -> List[Tensor]:
        """[B, N_cam, 3, H, W] -> 4 levels [B, N_cam, C, H/s, W/s], s = 4, 8, 16, 32 (model dtype)."""
        batch, num_cams = images.shape[:2]
        dtype = images.dtype
        context: Union[nullcontext, torch.autocast] = nullcontext()
        if self.backbone_autocast is not None:
            context = torch.autocast(images.device.type, dtype=self.backbone_autocast)
        x = images.flatten(0, 1)
        if dtype != torch.float64:
            # oneDNN / cuDNN convolutions run ~20-30 % faster channels-last, and the maps then already have the
            # channels-innermost layout the deformable aggregation gathers from. float64 keeps the reference path.
            x = x.contiguous(memory_format=torch.channels_last)
        with context:
            levels = self.img_neck(self.img_backbone(x))
        return [x.to(dtype).unflatten(0, (batch, num_cams)) for x in levels]

    def forward(self, inputs: FrameInputs, state: SparseDriveState, return_raw: bool = False) -> SparseDriveOutput:
        """Run one frame, reading and updating ``state`` (the original's time-gap rules apply inside).

        Args:
            inputs: the frame; float tensors are cast to the model's dtype and device here.
            state: from :meth:`new_state`; reset it (``state.reset()``) on a scene change or time jump.
            return_raw: also return the per-layer head outputs with the ``raw/...`` names of docs/parity.md#array-names.
        """
        param = self.img_backbone.conv1.weight
        inputs.validate(self.config.num_cams, self.config.image_hw)
        inputs = inputs.to(param.device, param.dtype)
        command = command_index(inputs.command, inputs.images.shape[0])
        feature_maps = channels_last_feature_maps(self.extract_feat(inputs.images))
        det, map_out, motion = self.forward_heads(feature_maps, inputs, state)
        state.frames_seen += 1
        return self.decode(det, map_out, motion, command, state.det.mask, return_raw)

    def forward_heads(self, feature_maps: Sequence[Tensor], inputs: FrameInputs,
                      state: SparseDriveState) -> tuple[HeadOutput, HeadOutput, Optional[MotionPlanOutput]]:
        """Head outputs before decoding (what a trainer's losses consume)."""
        frame = (inputs.projection_mat, inputs.image_wh, inputs.timestamp, inputs.T_global, inputs.T_global_inv)
        det = self.head.det_head(state.det, feature_maps, *frame)
        map_out = self.head.map_head(state.map, feature_maps, *frame)
        motion = None
        if self.head.motion_plan_head is not None:
            det_head = self.head.det_head
            front_coarsest = feature_maps[-1][:, 0]  # [B, C, H/32, W/32] camera 0 = FRONT (model-notes#orderings)
            motion = self.head.motion_plan_head(
                state.motion, det, map_out, front_coarsest, inputs.T_global, inputs.T_global_inv, state.det.mask,
                det_head.anchor_encoder, det_head.instance_bank.anchor_handler)
        return det, map_out, motion

    def decode(self, det: HeadOutput, map_out: HeadOutput, motion: Optional[MotionPlanOutput], command: Tensor,
               temporal_valid: Optional[Tensor], return_raw: bool = False) -> SparseDriveOutput:
        """Decoded detections, map, motion and plan; ``temporal_valid`` [B] bool (None on a first frame)."""
        quality, instance_id = det.quality[-1], det.instance_id
        if quality is None or instance_id is None:
            raise ValueError("the detection head must output quality and instance ids")
        detections = self.det_decoder.decode(det.classification[-1], det.prediction[-1], quality, instance_id)
        elements = self.map_decoder.decode(map_out.classification[-1], map_out.prediction[-1])
        forecast = planning = None
        if motion is not None:
            if self.planning_decoder is None:
                raise ValueError("a motion/planning output needs the planning decoder (stage 2)")
            forecast = self.motion_decoder.decode(detections, motion.motion_cls, motion.motion_reg,
                                                  motion.anchor_queue, motion.period)
            planning = self.planning_decoder.decode(
                motion.plan_cls, motion.plan_reg, motion.plan_status, motion.ego_period, motion.ego_anchor_queue,
                command, det.classification[-1], det.prediction[-1], motion.motion_cls, motion.motion_reg)
        raw = raw_arrays(det, map_out, motion) if return_raw else None
        return SparseDriveOutput(detections, elements, forecast, planning, det.time_interval, temporal_valid, raw)


class SparseDriveStream:
    """A model plus the temporal state of one stream: ``step()`` per frame, ``reset()`` on scene changes.

    ``step`` runs under ``torch.inference_mode``. ``max_time_gap`` (seconds, None = off) optionally resets the
    state when |dt| exceeds it or time goes backwards; the default (None) keeps the original's behaviour, in
    which a gap > 2 s only masks the history inside the model (docs/model-notes.md#temporal-rules).
    """

    def __init__(self, model: SparseDrive, max_time_gap: Optional[float] = None,
                 reset_on_backwards: bool = False) -> None:
        self.model = model
        self.state = model.new_state()
        self.max_time_gap = max_time_gap
        self.reset_on_backwards = reset_on_backwards

    def reset(self) -> None:
        self.state.reset()

    def step(self, inputs: FrameInputs, return_raw: bool = False) -> SparseDriveOutput:
        last = self.state.last_timestamp
        if last is not None:
            dt = inputs.timestamp.to(torch.float64).cpu() - last.cpu()
            if gap_needs_reset(dt, self.max_time_gap, self.reset_on_backwards):
                self.reset()
        with torch.inference_mode():
            return self.model(inputs, self.state, return_raw=return_raw)


def gap_needs_reset(dt: Tensor, max_time_gap: Optional[float], reset_on_backwards: bool) -> bool:
    """The streams' optional host-side reset rule: dt [B] float64 seconds since the last frame; True when any |dt|
    exceeds ``max_time_gap`` (None = never) or, with ``reset_on_backwards``, any dt < 0."""
    too_long = max_time_gap is not None and bool((dt.abs() > max_time_gap).any())
    return too_long or (reset_on_backwards and bool((dt < 0).any()))


# ----------------------------------------------------------------------------------------------- builders


def build_sparsedrive(stage: int = 2, config: Optional[SparseDriveConfig] = None) -> SparseDrive:
    """The original ``sparsedrive_small_stage{stage}`` network (or ``config`` when given; ``stage`` must agree).

    Stage 1 = det + map with no map temporal instances; stage 2 adds 33 map temporal instances and the
    motion/planning head. Weights are random until a checkpoint is loaded.
    """
    if stage not in (1, 2):
        raise ValueError(f"stage must be 1 or 2, got {stage}")
    if config is None:
        config = stage_config(stage)
    elif config.stage != stage:
        raise ValueError(f"config is a stage-{config.stage} configuration but stage={stage} was requested")
    return SparseDrive(config)


def stage_config(stage: int, **overrides) -> SparseDriveConfig:
    """Default configuration of a stage; ``overrides`` replace top-level fields (e.g. backbone_depth=18)."""
    base: Dict[str, Any]
    if stage == 1:
        base = dict(map=MapHeadConfig(num_temp_instances=0), motion_plan=None)
    elif stage == 2:
        base = dict(map=MapHeadConfig(), motion_plan=MotionPlanConfig())
    else:
        raise ValueError(f"stage must be 1 or 2, got {stage}")
    base.update(overrides)
    return SparseDriveConfig(**base)


def _build_det_head(config: SparseDriveConfig) -> Sparse4DHead:
    cfg: DetHeadConfig = config.det
    dims = config.embed_dims
    attn_dims = dims * 2 if cfg.decouple_attn else dims
    bank = InstanceBank(cfg.num_anchor, dims, default_det_anchor(cfg.num_anchor), SparseBox3DKeyPointsGenerator(),
                        cfg.num_temp_instances, cfg.default_time_interval, cfg.confidence_decay,
                        cfg.max_time_interval, feat_grad=False)
    return Sparse4DHead(
        bank, SparseBox3DEncoder(cfg.anchor_encoder_dims),
        operation_order(cfg.num_decoder, cfg.num_single_frame_decoder, drop_first_self_attention=True),
        make_attention=lambda: MultiheadAttention(attn_dims, cfg.num_groups, cfg.dropout),
        make_deformable=lambda: DeformableFeatureAggregation(
            SparseBox3DKeyPointsGenerator(dims, cfg.num_learnable_pts, cfg.fix_scale), dims, cfg.num_groups,
            config.num_levels, config.num_cams, cfg.dfa_attn_drop),
        make_refine=lambda: SparseBox3DRefinementModule(dims, cfg.num_classes, BOX_DIMS),
        embed_dims=dims, ffn_dims=cfg.ffn_dims, num_single_frame_decoder=cfg.num_single_frame_decoder,
        decouple_attn=cfg.decouple_attn, dropout=cfg.dropout, with_instance_id=True)


def _build_map_head(config: SparseDriveConfig) -> Sparse4DHead:
    cfg: MapHeadConfig = config.map
    dims = config.embed_dims
    attn_dims = dims * 2 if cfg.decouple_attn else dims
    bank = InstanceBank(cfg.num_anchor, dims, default_map_anchor(cfg.num_anchor, cfg.num_sample),
                        SparsePoint3DKeyPointsGenerator(num_sample=cfg.num_sample), cfg.num_temp_instances,
                        cfg.default_time_interval, cfg.confidence_decay, cfg.max_time_interval, feat_grad=True)
    nn.init.xavier_uniform_(bank.instance_feature)
    return Sparse4DHead(
        bank, SparsePoint3DEncoder(dims, cfg.num_sample),
        operation_order(cfg.num_decoder, cfg.num_single_frame_decoder, drop_first_self_attention=False),
        make_attention=lambda: MultiheadAttention(attn_dims, cfg.num_groups, cfg.dropout),
        make_deformable=lambda: DeformableFeatureAggregation(
            SparsePoint3DKeyPointsGenerator(dims, cfg.num_sample, cfg.num_learnable_pts, cfg.fix_height,
                                            cfg.ground_height),
            dims, cfg.num_groups, config.num_levels, config.num_cams, cfg.dfa_attn_drop),
        make_refine=lambda: SparsePoint3DRefinementModule(dims, cfg.num_sample, cfg.num_classes),
        embed_dims=dims, ffn_dims=cfg.ffn_dims, num_single_frame_decoder=cfg.num_single_frame_decoder,
        decouple_attn=cfg.decouple_attn, dropout=cfg.dropout, with_instance_id=False)


def _build_motion_plan_head(config: SparseDriveConfig) -> MotionPlanningHead:
    if config.motion_plan is None:
        raise ValueError("a stage-1 configuration has no motion/planning head")
    return MotionPlanningHead(config.motion_plan, config.embed_dims, config.det.num_classes,
                              config.coarsest_map_hw)


def default_det_anchor(num_anchor: int, radius: float = 55.0) -> Tensor:
    """Stand-in det anchors for a model built without a checkpoint: a seeded uniform disc of centres with the
    k-means files' constant tail (ln size 1, sin 1, cos 0, velocity 0; docs/model-notes.md#anchors)."""
    gen = torch.Generator().manual_seed(0)
    r = radius * torch.rand(num_anchor, generator=gen).sqrt()
    theta = 2 * torch.pi * torch.rand(num_anchor, generator=gen)
    z = torch.rand(num_anchor, generator=gen) * 3.0 - 2.5
    tail = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]).expand(num_anchor, -1)
    return torch.cat([torch.stack([r * theta.cos(), r * theta.sin(), z], dim=-1), tail], dim=-1)


def default_map_anchor(num_anchor: int, num_sample: int) -> Tensor:
    """Stand-in map anchors: 8 m segments along +y at seeded centres in the 30 x 60 m ROI ([N, S, 2])."""
    gen = torch.Generator().manual_seed(1)
    cx = torch.rand(num_anchor, generator=gen) * 30.0 - 15.0
    cy = torch.rand(num_anchor, generator=gen) * 60.0 - 30.0
    offsets = torch.linspace(-4.0, 4.0, num_sample)
    return torch.stack([cx[:, None].expand(-1, num_sample), cy[:, None] + offsets], dim=-1)


# ----------------------------------------------------------------------------------------------- golden export


def raw_arrays(det: HeadOutput, map_out: HeadOutput, motion: Optional[MotionPlanOutput]) -> Dict[str, Tensor]:
    """Head outputs under the ``raw/...`` names of docs/parity.md#array-names (batch dimension kept)."""
    raw: Dict[str, Tensor] = {}
    for name, out in (("det", det), ("map", map_out)):
        for i, x in enumerate(out.classification):
            raw[f"raw/{name}/classification/{i}"] = x
        for i, x in enumerate(out.prediction):
            raw[f"raw/{name}/prediction/{i}"] = x
        for i, q in enumerate(out.quality):
            if q is not None:
                raw[f"raw/{name}/quality/{i}"] = q
        raw[f"raw/{name}/instance_feature"] = out.instance_feature
        raw[f"raw/{name}/anchor_embed"] = out.anchor_embed
    if det.instance_id is not None:
        raw["raw/det/instance_id"] = det.instance_id
    if motion is not None:
        raw["raw/motion/classification/0"] = motion.motion_cls
        raw["raw/motion/prediction/0"] = motion.motion_reg
        raw["raw/motion/period"] = motion.period
        for i, x in enumerate(motion.anchor_queue):
            raw[f"raw/motion/anchor_queue/{i}"] = x
        raw["raw/planning/classification/0"] = motion.plan_cls
        raw["raw/planning/prediction/0"] = motion.plan_reg
        raw["raw/planning/status/0"] = motion.plan_status
        raw["raw/planning/period"] = motion.ego_period
        for i, x in enumerate(motion.ego_anchor_queue):
            raw[f"raw/planning/anchor_queue/{i}"] = x
    return raw


def _np(x: Tensor) -> np.ndarray:
    x = x.detach().cpu()
    return x.to(torch.float64).numpy() if x.is_floating_point() else x.numpy().astype(np.int64)


def golden_arrays(out: SparseDriveOutput, b: int = 0) -> Dict[str, np.ndarray]:
    """One sample of ``out`` as the golden ``post/...`` and ``raw/...`` arrays (floats float64, ints int64)."""
    det = out.detections
    arrays = {
        "post/boxes_3d": det.boxes[b], "post/scores_3d": det.scores[b], "post/labels_3d": det.labels[b],
        # Parity quirk: the original emits cls_scores in top-k order, not re-sorted with the boxes.
        "post/cls_scores": torch.sort(det.cls_scores[b], descending=True).values,
        "post/instance_ids": det.instance_ids[b],
        "post/vectors": out.map.polylines[b], "post/scores": out.map.scores[b], "post/labels": out.map.labels[b],
    }
    if out.motion is not None:
        arrays.update({"post/trajs_3d": out.motion.trajs[b], "post/trajs_score": out.motion.traj_scores[b],
                       "post/anchor_queue": out.motion.history[b], "post/period": out.motion.period[b]})
    if out.planning is not None:
        plan = out.planning
        arrays.update({"post/planning_score": plan.scores[b], "post/planning": plan.trajectories[b],
                       "post/final_planning": plan.final[b], "post/ego_period": plan.ego_period[b:b + 1],
                       "post/ego_anchor_queue": plan.ego_history[b:b + 1]})
    if out.raw is not None:
        arrays.update({k: v[b:b + 1] for k, v in out.raw.items()})
    return {k: _np(v) for k, v in arrays.items()}
