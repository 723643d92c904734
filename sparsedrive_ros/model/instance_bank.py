"""Temporal instance memory of the det and map heads (docs/model-notes.md#temporal-rules, #decoder-stack).

The module holds the learned parameters (``anchor``, ``instance_feature``); everything that persists between
frames lives in an explicit :class:`InstanceBankState` owned by the caller (one per stream).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple, Union

import torch
from torch import Tensor, nn

from .box3d import SparseBox3DKeyPointsGenerator
from .point3d import SparsePoint3DKeyPointsGenerator

__all__ = ["InstanceBank", "InstanceBankState", "BankFrame", "topk_gather"]

AnchorHandler = Union[SparseBox3DKeyPointsGenerator, SparsePoint3DKeyPointsGenerator]


def topk_gather(confidence: Tensor, k: int, *inputs: Tensor) -> Tuple[Tensor, list]:
    """Top-k (sorted, descending) of confidence [B, N] and the matching rows of each input [B, N, ...]."""
    values, index = torch.topk(confidence, k, dim=1)
    rows = torch.arange(confidence.shape[0], device=confidence.device)[:, None]
    return values, [x[rows, index] for x in inputs]


@dataclass
class InstanceBankState:
    """What one stream carries between frames for one head. ``None`` fields = nothing cached yet."""

    cached_feature: Optional[Tensor] = None   # [B, T, C] features of the carried instances
    cached_anchor: Optional[Tensor] = None    # [B, T, D] their anchors (frame of ``T_global``)
    confidence: Optional[Tensor] = None       # [B, T] fused sigmoid confidence of the carried instances
    temp_confidence: Optional[Tensor] = None  # [B, N] fused confidence of all instances of the last frame
    instance_id: Optional[Tensor] = None      # [B, N] ids of the carried instances at 0..T-1, -1 elsewhere
    prev_id: int = 0                          # next free tracking id
    mask: Optional[Tensor] = None             # [B] bool, this frame's |dt| <= max_time_interval
    timestamp: Optional[Tensor] = None        # [B] float64 seconds of the cached frame
    T_global: Optional[Tensor] = None         # [B, 4, 4] float64 lidar -> global of the cached frame

    def reset(self) -> None:
        self.cached_feature = self.cached_anchor = self.confidence = self.temp_confidence = None
        self.instance_id = self.mask = self.timestamp = self.T_global = None
        self.prev_id = 0

    @property
    def has_cache(self) -> bool:
        return self.cached_anchor is not None


@dataclass
class BankFrame:
    """Result of :meth:`InstanceBank.get` for one frame."""

    instance_feature: Tensor         # [B, N, C] learned initial features
    anchor: Tensor                   # [B, N, D] learned anchors
    temp_feature: Optional[Tensor]   # [B, T, C] carried features (also after a gap, model-notes#temporal-rules)
    temp_anchor: Optional[Tensor]    # [B, T, D] carried anchors moved into the current frame
    time_interval: Tensor            # [B] seconds used by the refinement (0.5 on first frame / gaps / dt = 0)
    # Static path only (model/static_frame.py): [B] bool, the fixed-shape cache holds a previous frame. None on
    # the eager path, where an empty cache is temp_feature = None.
    history: Optional[Tensor] = None


class InstanceBank(nn.Module):
    def __init__(self, num_anchor: int, embed_dims: int, anchor: Tensor, anchor_handler: AnchorHandler,
                 num_temp_instances: int = 0, default_time_interval: float = 0.5, confidence_decay: float = 0.6,
                 max_time_interval: float = 2.0, feat_grad: bool = True) -> None:
        super().__init__()
        if anchor.dim() == 3:  # map anchors [N, S, 2] are stored flat
            anchor = anchor.flatten(1)
        if anchor.shape[0] != num_anchor:
            raise ValueError(f"anchor has {anchor.shape[0]} rows, expected num_anchor={num_anchor}")
        self.num_anchor = num_anchor
        self.num_temp_instances = num_temp_instances
        self.default_time_interval = default_time_interval
        self.confidence_decay = confidence_decay
        self.max_time_interval = max_time_interval
        self.anchor = nn.Parameter(anchor.to(torch.float32).clone())
        self.instance_feature = nn.Parameter(torch.zeros(num_anchor, embed_dims), requires_grad=feat_grad)
        self.anchor_handler = anchor_handler

    def get(self, state: InstanceBankState, batch_size: int, timestamp: Tensor, T_global_inv: Tensor) -> BankFrame:
        """Tile the learned instances; move the cache (if any, same batch size) into the current frame.

        timestamp [B] float64 seconds, T_global_inv [B, 4, 4] float64 global -> lidar of this frame.
        """
        instance_feature = self.instance_feature[None].expand(batch_size, -1, -1)
        anchor = self.anchor[None].expand(batch_size, -1, -1)
        dtype = instance_feature.dtype
        cached, prev_time, prev_pose = state.cached_anchor, state.timestamp, state.T_global
        if cached is None or prev_time is None or prev_pose is None or cached.shape[0] != batch_size:
            state.reset()
            time_interval = instance_feature.new_full((batch_size,), self.default_time_interval)
            return BankFrame(instance_feature, anchor, None, None, time_interval)
        dt = (timestamp.to(torch.float64) - prev_time).to(dtype)  # float64 difference, then model dtype
        mask = dt.abs() <= self.max_time_interval
        T_temp2cur = torch.matmul(T_global_inv.to(torch.float64), prev_pose)  # float64, cast in projection
        state.mask = mask
        state.cached_anchor = self.anchor_handler.anchor_projection(cached, T_temp2cur, -dt)
        default = dt.new_tensor(self.default_time_interval)
        time_interval = torch.where((dt != 0) & mask, dt, default)
        return BankFrame(instance_feature, anchor, state.cached_feature, state.cached_anchor, time_interval)

    def update(self, state: InstanceBankState, instance_feature: Tensor, anchor: Tensor,
               cls_logits: Tensor) -> Tuple[Tensor, Tensor]:
        """After the first refine: [carried T ; top (N - T) current by max logit] where the gap is valid.

        The carried instances always occupy indices 0..T-1 (docs/model-notes.md#temporal-rules).
        """
        cached_feature, cached_anchor, mask = state.cached_feature, state.cached_anchor, state.mask
        if cached_feature is None or cached_anchor is None or mask is None or state.confidence is None:
            return instance_feature, anchor
        num_new = self.num_anchor - self.num_temp_instances
        _, (new_feature, new_anchor) = topk_gather(cls_logits.max(dim=-1).values, num_new, instance_feature, anchor)
        merged_feature = torch.cat([cached_feature, new_feature], dim=1)
        merged_anchor = torch.cat([cached_anchor, new_anchor], dim=1)
        valid = mask[:, None, None]
        instance_feature = torch.where(valid, merged_feature, instance_feature)
        anchor = torch.where(valid, merged_anchor, anchor)
        state.confidence = torch.where(mask[:, None], state.confidence, state.confidence.new_tensor(0))
        if state.instance_id is not None:
            state.instance_id = torch.where(mask[:, None], state.instance_id, state.instance_id.new_tensor(-1))
        return instance_feature, anchor

    def cache(self, state: InstanceBankState, instance_feature: Tensor, anchor: Tensor, cls_logits: Tensor,
              timestamp: Tensor, T_global: Tensor) -> None:
        """Keep the top-T instances by fused confidence max(prev * decay, now) for the next frame."""
        if self.num_temp_instances <= 0:
            return
        confidence = cls_logits.detach().max(dim=-1).values.sigmoid()
        if state.confidence is not None:
            num_temp = self.num_temp_instances
            fused = torch.maximum(state.confidence * self.confidence_decay, confidence[:, :num_temp])
            confidence = torch.cat([fused, confidence[:, num_temp:]], dim=1)
        state.temp_confidence = confidence
        state.confidence, (state.cached_feature, state.cached_anchor) = topk_gather(
            confidence, self.num_temp_instances, instance_feature.detach(), anchor.detach())
        state.timestamp = timestamp.to(torch.float64)
        state.T_global = T_global.to(torch.float64)

    def get_instance_id(self, state: InstanceBankState, cls_logits: Tensor) -> Tensor:
        """Ids for all N instances (threshold None, docs/model-notes.md#temporal-rules): carried ids kept, new
        consecutive ids elsewhere.

        Must run after :meth:`cache` (uses its fused confidence to pick the ids carried to the next frame).
        """
        confidence = cls_logits.detach().max(dim=-1).values.sigmoid()
        instance_id = torch.full(confidence.shape, -1, dtype=torch.long, device=confidence.device)
        if state.instance_id is not None and state.instance_id.shape[0] == instance_id.shape[0]:
            instance_id[:, : state.instance_id.shape[1]] = state.instance_id
        new = instance_id < 0  # row-major numbering, as torch.where(mask)
        num_new = int(new.sum())
        instance_id[new] = torch.arange(num_new, device=instance_id.device) + state.prev_id
        state.prev_id += num_new
        ranking = state.temp_confidence if state.temp_confidence is not None else confidence
        _, (carried,) = topk_gather(ranking, self.num_temp_instances, instance_id[..., None])
        state.instance_id = nn.functional.pad(carried[..., 0], (0, self.num_anchor - self.num_temp_instances),
                                              value=-1)
        return instance_id
