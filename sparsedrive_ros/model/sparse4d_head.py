"""Sparse4DHead: the decoder stack shared by the detection and the map head (docs/model-notes.md#decoder-stack,
#orderings).

The op list (``operation_order``) fixes the index of every layer, and those indices are part of the checkpoint
keys (``head.det_head.layers.{i}``), so the order below must stay the original's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Protocol, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .box3d import SparseBox3DEncoder, SparseBox3DRefinementModule
from .instance_bank import BankFrame, InstanceBank
from .layers import AsymmetricFFN
from .point3d import SparsePoint3DEncoder, SparsePoint3DRefinementModule

__all__ = ["HeadOutput", "Sparse4DHead", "operation_order"]

AnchorEncoder = Union[SparseBox3DEncoder, SparsePoint3DEncoder]
Refinement = Union[SparseBox3DRefinementModule, SparsePoint3DRefinementModule]


class BankOps(Protocol):
    """What the decoder stack asks of the temporal memory: :class:`InstanceBank` itself (eager, state with
    ``None`` fields) or the fixed-shape ``StaticBank`` of model/static_frame.py (docs/static-graph.md)."""

    num_temp_instances: int

    def get(self, state, batch_size: int, timestamp: Tensor, T_global_inv: Tensor) -> BankFrame: ...

    def update(self, state, instance_feature: Tensor, anchor: Tensor, cls_logits: Tensor) -> Tuple[Tensor, Tensor]: ...

    def cache(self, state, instance_feature: Tensor, anchor: Tensor, cls_logits: Tensor, timestamp: Tensor,
              T_global: Tensor) -> None: ...

    def get_instance_id(self, state, cls_logits: Tensor) -> Tensor: ...


def operation_order(num_decoder: int, num_single_frame_decoder: int, drop_first_self_attention: bool) -> List[str]:
    """Op list: single-frame decoders without temporal attention, then temporal decoders.

    The det config slices off the first ("gnn", "norm") of the list (39 ops), the map config keeps it (41 ops).
    """
    single = ["gnn", "norm", "deformable", "ffn", "norm", "refine"]
    temporal = ["temp_gnn", "gnn", "norm", "deformable", "ffn", "norm", "refine"]
    ops = single * num_single_frame_decoder + temporal * (num_decoder - num_single_frame_decoder)
    return ops[2:] if drop_first_self_attention else ops


@dataclass
class HeadOutput:
    """Per-layer outputs of one Sparse4DHead for one frame (batch first)."""

    classification: List[Tensor]      # num_decoder x [B, N, num_cls] logits
    prediction: List[Tensor]          # num_decoder x [B, N, D] anchors after each refine
    quality: List[Optional[Tensor]]   # num_decoder x [B, N, 2] (det) or None (map)
    instance_feature: Tensor          # [B, N, C] last layer
    anchor_embed: Tensor              # [B, N, C] embedding of the final anchors
    instance_id: Optional[Tensor]     # [B, N] int64 (det only)
    time_interval: Tensor             # [B] seconds used by this frame's refinement


class Sparse4DHead(nn.Module):
    def __init__(self, instance_bank: InstanceBank, anchor_encoder: AnchorEncoder, ops: Sequence[str],
                 make_attention: Callable[[], nn.Module], make_deformable: Callable[[], nn.Module],
                 make_refine: Callable[[], nn.Module], embed_dims: int, ffn_dims: int,
                 num_single_frame_decoder: int, decouple_attn: bool, dropout: float, with_instance_id: bool) -> None:
        """``make_*`` are zero-argument factories building one fresh layer of that kind."""
        super().__init__()
        self.operation_order = list(ops)
        self.num_single_frame_decoder = num_single_frame_decoder
        self.decouple_attn = decouple_attn
        self.with_instance_id = with_instance_id
        self.instance_bank = instance_bank
        self.anchor_encoder = anchor_encoder
        attn_dims = embed_dims * 2 if decouple_attn else embed_dims
        factories = {
            "temp_gnn": make_attention,
            "gnn": make_attention,
            "norm": lambda: nn.LayerNorm(embed_dims),
            "ffn": lambda: AsymmetricFFN(embed_dims * 2, embed_dims, ffn_dims, dropout),
            "deformable": make_deformable,
            "refine": make_refine,
        }
        unknown = sorted(set(self.operation_order) - set(factories))
        if unknown:
            raise ValueError(f"unsupported ops in operation_order: {unknown}")
        self.layers = nn.ModuleList([factories[op]() for op in self.operation_order])
        self.fc_before: nn.Module = nn.Linear(embed_dims, attn_dims, bias=False) if decouple_attn else nn.Identity()
        self.fc_after: nn.Module = nn.Linear(attn_dims, embed_dims, bias=False) if decouple_attn else nn.Identity()

    def graph_model(self, index: int, query: Tensor, key: Optional[Tensor] = None, value: Optional[Tensor] = None,
                    query_pos: Optional[Tensor] = None, key_pos: Optional[Tensor] = None) -> Tensor:
        """Attention layer ``index`` (docs/model-notes.md#decoder-stack, #attention-and-ffn).

        Decoupled: positions are concatenated (512-d), the residual lives in 512-d and fc_after projects back;
        ``value`` goes through fc_before only when passed (so the first-frame det temp_gnn attends over the raw
        [feature, embedding] concatenation, docs/model-notes.md#temporal-rules).
        """
        if self.decouple_attn:
            if query_pos is None:
                raise ValueError("decoupled attention needs query_pos")
            query = torch.cat([query, query_pos], dim=-1)
            if key is not None:
                if key_pos is None:
                    raise ValueError("decoupled attention needs key_pos with a key")
                key = torch.cat([key, key_pos], dim=-1)
            query_pos = key_pos = None
        if value is not None:
            value = self.fc_before(value)
        return self.fc_after(self.layers[index](query, key, value, query_pos=query_pos, key_pos=key_pos))

    def temporal_graph_model(self, index: int, instance_feature: Tensor, anchor_embed: Tensor, bank: BankFrame,
                             temp_anchor_embed: Optional[Tensor]) -> Tensor:
        """The ``temp_gnn`` layer: attention from the current instances to the carried ones.

        Eager: with no carried instances (first frame) it is self-attention (docs/model-notes.md#temporal-rules).
        Static (``bank.history`` set): both cases in one fixed-shape attention over N key slots: with history the
        T carried instances then N - T masked zero rows, without history the instances themselves (what the
        eager first frame attends to), picked per sample by a tensor select (docs/static-graph.md).
        """
        temp_feature = bank.temp_feature
        if bank.history is None or temp_feature is None or temp_anchor_embed is None:
            return self.graph_model(index, instance_feature, temp_feature, temp_feature,
                                    query_pos=anchor_embed, key_pos=temp_anchor_embed)
        num, num_temp = instance_feature.shape[1], temp_feature.shape[1]

        def pad(x: Tensor) -> Tensor:
            return F.pad(x, (0, 0, 0, num - num_temp))

        history = bank.history[:, None, None]
        key = torch.where(history, pad(temp_feature), instance_feature)
        key_embed = torch.where(history, pad(temp_anchor_embed), anchor_embed)
        query: Tensor = instance_feature
        query_pos: Optional[Tensor] = anchor_embed
        key_pos: Optional[Tensor] = key_embed
        # Eager first frame: the value is the key before positions (decoupled: the raw [feature, embedding]
        # concatenation, not passed through fc_before).
        if self.decouple_attn:
            query = torch.cat([instance_feature, anchor_embed], dim=-1)
            key = torch.cat([key, key_embed], dim=-1)
            query_pos = key_pos = None
            value = torch.where(history, pad(self.fc_before(temp_feature)), query)
        else:
            value = torch.where(history, pad(self.fc_before(temp_feature)), instance_feature)
        slots = torch.arange(num, device=instance_feature.device)
        padding = bank.history[:, None] & (slots >= num_temp)[None]  # [B, N] True = ignore
        return self.fc_after(self.layers[index](query, key, value, query_pos=query_pos, key_pos=key_pos,
                                                key_padding_mask=padding))

    def forward(self, state, feature_maps: Sequence[Tensor], projection_mat: Tensor,
                image_wh: Tensor, timestamp: Tensor, T_global: Tensor, T_global_inv: Tensor,
                bank_ops: Optional[BankOps] = None, aggregation: Optional[Callable[..., Tensor]] = None) -> HeadOutput:
        """feature_maps L x [B, N_cam, C, h, w]; projection_mat [B, N_cam, 4, 4]; image_wh [B, N_cam, 2];
        timestamp [B] float64; T_global / T_global_inv [B, 4, 4] float64. Updates ``state`` in place.

        ``state`` belongs to ``bank_ops``: an :class:`InstanceBankState` for the module's own bank (default), a
        ``StaticBankState`` for the static path's ``StaticBank``. ``aggregation`` replaces the deformable layers'
        sampling op (the static path's dense one, model/deformable_op.py)."""
        batch = feature_maps[0].shape[0]
        ops: BankOps = self.instance_bank if bank_ops is None else bank_ops
        bank = ops.get(state, batch, timestamp, T_global_inv)
        instance_feature, anchor = bank.instance_feature, bank.anchor
        anchor_embed = self.anchor_encoder(anchor)
        temp_anchor_embed = self.anchor_encoder(bank.temp_anchor) if bank.temp_anchor is not None else None
        num_temp = self.instance_bank.num_temp_instances
        prediction: List[Tensor] = []
        classification: List[Tensor] = []
        quality: List[Optional[Tensor]] = []
        cls = None
        for i, op in enumerate(self.operation_order):
            layer = self.layers[i]
            if op == "temp_gnn":
                instance_feature = self.temporal_graph_model(i, instance_feature, anchor_embed, bank,
                                                             temp_anchor_embed)
            elif op == "gnn":
                instance_feature = self.graph_model(i, instance_feature, value=instance_feature,
                                                    query_pos=anchor_embed)
            elif op in ("norm", "ffn"):
                instance_feature = layer(instance_feature)
            elif op == "deformable":
                instance_feature = layer(instance_feature, anchor, anchor_embed, feature_maps, projection_mat,
                                         image_wh, aggregation=aggregation)
            else:  # refine
                anchor, cls, qt = layer(instance_feature, anchor, anchor_embed, bank.time_interval)
                prediction.append(anchor)
                classification.append(cls)
                quality.append(qt)
                if len(prediction) == self.num_single_frame_decoder:
                    instance_feature, anchor = ops.update(state, instance_feature, anchor, cls)
                anchor_embed = self.anchor_encoder(anchor)
                if len(prediction) > self.num_single_frame_decoder and temp_anchor_embed is not None:
                    # Later temporal layers key on the *current* refined anchors of the carried instances
                    # (docs/model-notes.md#decoder-stack).
                    temp_anchor_embed = anchor_embed[:, :num_temp]
        if cls is None:
            raise ValueError(f"operation order {self.operation_order} has no refine layer")
        ops.cache(state, instance_feature, anchor, cls, timestamp, T_global)
        instance_id = ops.get_instance_id(state, cls) if self.with_instance_id else None
        return HeadOutput(classification, prediction, quality, instance_feature, anchor_embed, instance_id,
                          bank.time_interval)
