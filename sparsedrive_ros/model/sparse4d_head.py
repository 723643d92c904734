"""Sparse4DHead: the decoder stack shared by the detection and the map head (docs/model-notes.md#decoder-stack,
#orderings).

The op list (``operation_order``) fixes the index of every layer, and those indices are part of the checkpoint
keys (``head.det_head.layers.{i}``), so the order below must stay the original's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from .box3d import SparseBox3DEncoder, SparseBox3DRefinementModule
from .instance_bank import InstanceBank, InstanceBankState
from .layers import AsymmetricFFN
from .point3d import SparsePoint3DEncoder, SparsePoint3DRefinementModule

__all__ = ["HeadOutput", "Sparse4DHead", "operation_order"]

AnchorEncoder = Union[SparseBox3DEncoder, SparsePoint3DEncoder]
Refinement = Union[SparseBox3DRefinementModule, SparsePoint3DRefinementModule]


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

    def forward(self, state: InstanceBankState, feature_maps: Sequence[Tensor], projection_mat: Tensor,
                image_wh: Tensor, timestamp: Tensor, T_global: Tensor, T_global_inv: Tensor) -> HeadOutput:
        """feature_maps L x [B, N_cam, C, h, w]; projection_mat [B, N_cam, 4, 4]; image_wh [B, N_cam, 2];
        timestamp [B] float64; T_global / T_global_inv [B, 4, 4] float64. Updates ``state`` in place."""
        batch = feature_maps[0].shape[0]
        bank = self.instance_bank.get(state, batch, timestamp, T_global_inv)
        instance_feature, anchor = bank.instance_feature, bank.anchor
        temp_feature = bank.temp_feature
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
                instance_feature = self.graph_model(i, instance_feature, temp_feature, temp_feature,
                                                    query_pos=anchor_embed, key_pos=temp_anchor_embed)
            elif op == "gnn":
                instance_feature = self.graph_model(i, instance_feature, value=instance_feature,
                                                    query_pos=anchor_embed)
            elif op in ("norm", "ffn"):
                instance_feature = layer(instance_feature)
            elif op == "deformable":
                instance_feature = layer(instance_feature, anchor, anchor_embed, feature_maps, projection_mat,
                                         image_wh)
            else:  # refine
                anchor, cls, qt = layer(instance_feature, anchor, anchor_embed, bank.time_interval)
                prediction.append(anchor)
                classification.append(cls)
                quality.append(qt)
                if len(prediction) == self.num_single_frame_decoder:
                    instance_feature, anchor = self.instance_bank.update(state, instance_feature, anchor, cls)
                anchor_embed = self.anchor_encoder(anchor)
                if len(prediction) > self.num_single_frame_decoder and temp_anchor_embed is not None:
                    # Later temporal layers key on the *current* refined anchors of the carried instances
                    # (docs/model-notes.md#decoder-stack).
                    temp_anchor_embed = anchor_embed[:, :num_temp]
        if cls is None:
            raise ValueError(f"operation order {self.operation_order} has no refine layer")
        self.instance_bank.cache(state, instance_feature, anchor, cls, timestamp, T_global)
        instance_id = self.instance_bank.get_instance_id(state, cls) if self.with_instance_id else None
        return HeadOutput(classification, prediction, quality, instance_feature, anchor_embed, instance_id,
                          bank.time_interval)
