"""Small building blocks shared by the SparseDrive heads (docs/model-notes.md#attention-and-ffn,
#motion-and-planning-head).

Parameter names follow the original modules so that official checkpoints load with ``strict=True``.
"""

from __future__ import annotations

import math
from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "AsymmetricFFN",
    "MultiheadAttention",
    "Scale",
    "linear_relu_ln",
    "sine_position_embedding",
]


def linear_relu_ln(embed_dims: int, in_loops: int, out_loops: int, input_dims: Optional[int] = None) -> List[nn.Module]:
    """``out_loops`` x {``in_loops`` x [Linear, ReLU], LayerNorm}; the first Linear maps input_dims -> embed_dims.

    Returned as a list so callers can splice it into an ``nn.Sequential`` and keep the original indices.
    """
    dims = embed_dims if input_dims is None else input_dims
    layers: List[nn.Module] = []
    for _ in range(out_loops):
        for _ in range(in_loops):
            layers.append(nn.Linear(dims, embed_dims))
            layers.append(nn.ReLU(inplace=True))
            dims = embed_dims
        layers.append(nn.LayerNorm(embed_dims))
    return layers


class Scale(nn.Module):
    """Per-output learnable multiplier (mmcv ``Scale`` with a vector), parameter ``scale``."""

    def __init__(self, num_outputs: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(num_outputs))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale


class AsymmetricFFN(nn.Module):
    """Pre-norm FFN with a projected identity (docs/model-notes.md#attention-and-ffn).

    The identity is taken *after* the pre-norm and always goes through ``identity_fc`` (a Linear even when
    in_channels == embed_dims, because the original overwrote in_channels before that test).
    """

    def __init__(self, in_channels: int, embed_dims: int, feedforward_channels: int, ffn_drop: float = 0.1) -> None:
        super().__init__()
        self.pre_norm = nn.LayerNorm(in_channels)
        self.layers = nn.Sequential(
            nn.Sequential(nn.Linear(in_channels, feedforward_channels), nn.ReLU(inplace=True), nn.Dropout(ffn_drop)),
            nn.Linear(feedforward_channels, embed_dims),
            nn.Dropout(ffn_drop),
        )
        self.identity_fc = nn.Linear(in_channels, embed_dims)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pre_norm(x)
        return self.identity_fc(x) + self.layers(x)


class _AttentionCore(nn.Module):
    """Packed-projection attention with torch.nn.MultiheadAttention's parameter names.

    Replaces both flash-attn's FlashMHA (fp16 core in the original, docs/model-notes.md#attention-and-ffn) and torch
    MHA; the core is
    ``F.scaled_dot_product_attention`` in the parameters' dtype.
    """

    def __init__(self, embed_dims: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        if embed_dims % num_heads != 0:
            raise ValueError(f"embed_dims={embed_dims} must be divisible by num_heads={num_heads}")
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.dropout = dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dims, embed_dims))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * embed_dims))
        self.out_proj = nn.Linear(embed_dims, embed_dims)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def _heads(self, x: Tensor) -> Tensor:
        # [S, T, E] -> [S, heads, T, E / heads]
        return x.unflatten(-1, (self.num_heads, -1)).transpose(1, 2)

    def forward(self, query: Tensor, key: Tensor, value: Tensor, key_padding_mask: Optional[Tensor] = None,
                key_valid: Optional[Tensor] = None) -> Tensor:
        """query [S, Tq, E], key/value [S, Tk, E], key_padding_mask [S, Tk] (True = ignore) -> [S, Tq, E].

        With ``key_valid`` [S, Tk] bool, key/value are *packed* [K, E] rows of the valid positions only (K =
        key_valid.sum()); they are projected as such and every other position is masked out.
        """
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        b_q, b_k, b_v = self.in_proj_bias.chunk(3)
        q = self._heads(F.linear(query, w_q, b_q))
        if key_valid is None:
            k = self._heads(F.linear(key, w_k, b_k))
            v = self._heads(F.linear(value, w_v, b_v))
        else:
            k = self._heads(_unpack(F.linear(key, w_k, b_k), key_valid))
            v = self._heads(_unpack(F.linear(value, w_v, b_v), key_valid))
            key_padding_mask = ~key_valid
        attn_mask = None
        if key_padding_mask is not None:
            attn_mask = ~key_padding_mask[:, None, None, :]  # SDPA: True = attend
        dropout = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout)
        return self.out_proj(out.transpose(1, 2).flatten(-2))


def _unpack(rows: Tensor, valid: Tensor) -> Tensor:
    """[K, E] rows of the True positions of valid [S, T] -> [S, T, E] with zeros elsewhere."""
    out = rows.new_zeros(valid.shape + rows.shape[-1:])
    out[valid] = rows
    return out


class MultiheadAttention(nn.Module):
    """mmcv-style batch-first attention block with positional inputs and a residual
    (docs/model-notes.md#attention-and-ffn).

    ``key`` defaults to ``query`` and ``value`` to ``key`` (both *before* positions are added); ``key_pos``
    defaults to ``query_pos`` when the shapes match; returns ``query + dropout(attention)``.
    The sub-module is called ``attn`` so that keys read ``layers.{i}.attn.in_proj_weight``.
    """

    def __init__(self, embed_dims: int, num_heads: int = 8, dropout: float = 0.1) -> None:
        super().__init__()
        self.attn = _AttentionCore(embed_dims, num_heads, dropout)
        self.proj_drop = nn.Dropout(dropout)

    def forward(
        self,
        query: Tensor,
        key: Optional[Tensor] = None,
        value: Optional[Tensor] = None,
        query_pos: Optional[Tensor] = None,
        key_pos: Optional[Tensor] = None,
        key_padding_mask: Optional[Tensor] = None,
    ) -> Tensor:
        """query [S, Tq, E], key/value [S, Tk, E] -> [S, Tq, E]; key_padding_mask [S, Tk], True = padded."""
        key = query if key is None else key
        value = key if value is None else value
        identity = query
        if key_pos is None and query_pos is not None and query_pos.shape == key.shape:
            key_pos = query_pos
        if query_pos is not None:
            query = query + query_pos
        if key_pos is not None:
            key = key + key_pos
        out = self.attn(query, key, value, key_padding_mask)
        return identity + self.proj_drop(out)

    def forward_packed(self, query: Tensor, key: Tensor, value: Tensor, key_valid: Tensor) -> Tensor:
        """Attention over ragged keys: query [S, Tq, E]; key/value packed [K, E] rows of the True positions of
        key_valid [S, Tk] (no positional inputs: callers concatenate them). Returns query + attention."""
        return query + self.proj_drop(self.attn(query, key, value, key_valid=key_valid))


def sine_position_embedding(pos: Tensor, hidden_dim: int = 256) -> Tensor:
    """DAB-DETR sine embedding of (x, y) in metres: [..., 2] -> [..., hidden_dim] = cat(PE_y, PE_x).

    The frequency table is built in float32 whatever the input dtype, exactly like the original; a float64
    table shifts the arguments by ~1e-5 rad at 50 m (docs/model-notes.md#numeric-precision).
    """
    half = hidden_dim // 2
    dim_t = torch.arange(half, dtype=torch.float32, device=pos.device)
    dim_t = 10000 ** (2 * (dim_t // 2) / half)  # float32 on purpose
    x_embed = pos[..., 0] * (2 * math.pi)
    y_embed = pos[..., 1] * (2 * math.pi)
    pos_x = x_embed[..., None] / dim_t
    pos_y = y_embed[..., None] / dim_t
    pos_x = torch.stack((pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()), dim=-1).flatten(-2)
    pos_y = torch.stack((pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()), dim=-1).flatten(-2)
    return torch.cat((pos_y, pos_x), dim=-1)


def mlp_blocks(sizes: Sequence[int]) -> List[nn.Module]:
    """[Linear, ReLU] between consecutive sizes, no activation after the last Linear."""
    layers: List[nn.Module] = []
    for i, (d_in, d_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(d_in, d_out))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU(inplace=True))
    return layers
