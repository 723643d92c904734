"""Motion forecasting and planning head with its instance queue (docs/model-notes.md#motion-and-planning-head,
#trajectories-command-and-ego-status, #temporal-rules).

The queue's learned parts (ego feature encoder, ego anchor) are in :class:`InstanceQueue`; the memory that
persists between frames is an explicit :class:`InstanceQueueState`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Protocol, Sequence, Tuple, TypeVar, cast

import torch
from torch import Tensor, nn

from .box3d import COS_YAW, SIN_YAW, SparseBox3DEncoder, SparseBox3DKeyPointsGenerator
from .config import MotionPlanConfig
from .instance_bank import topk_gather
from .layers import AsymmetricFFN, MultiheadAttention, linear_relu_ln, mlp_blocks, sine_position_embedding
from .sparse4d_head import HeadOutput

_T = TypeVar("_T")


def _required(value: Optional[_T], what: str) -> _T:
    """A stream-state field that the current branch has established (narrows Optional for the type checker)."""
    if value is None:
        raise RuntimeError(f"{what} is missing from the motion/planning stream state")
    return value

__all__ = [
    "InstanceQueue",
    "InstanceQueueState",
    "MotionPlanOutput",
    "MotionPlanningHead",
    "MotionPlanningRefinementModule",
    "motion_operation_order",
]

VY = 9  # ego anchor slot that receives the previous predicted forward speed
        # (docs/model-notes.md#trajectories-command-and-ego-status)
EGO_SPEED = 6  # index of the forward speed in the 10-d ego status


def motion_operation_order(num_blocks: int) -> List[str]:
    block = ["temp_gnn", "gnn", "norm", "cross_gnn", "norm", "ffn", "norm"]
    return block * num_blocks + ["refine"]


@dataclass
class InstanceQueueState:
    """Motion/planning memory of one stream (at most ``queue_length`` frames, oldest first)."""

    T_global: Optional[Tensor] = None          # [B, 4, 4] float64 lidar -> global of the last frame
    prev_instance_id: Optional[Tensor] = None  # [B, N] det ids of the last frame
    prev_confidence: Optional[Tensor] = None   # [B, N] det confidence of the last frame
    period: Optional[Tensor] = None            # [B, N] int64 tracked frames per det instance
    instance_feature_queue: List[Tensor] = field(default_factory=list)  # Q x [B, N, C]
    anchor_queue: List[Tensor] = field(default_factory=list)            # Q x [B, N, 11] current frame
    prev_ego_status: Optional[Tensor] = None   # [B, 1, 10] last predicted ego status
    ego_period: Optional[Tensor] = None        # [B, 1] int64
    ego_feature_queue: List[Tensor] = field(default_factory=list)       # Q x [B, 1, C]
    ego_anchor_queue: List[Tensor] = field(default_factory=list)        # Q x [B, 1, 11] current frame

    def reset(self) -> None:
        self.T_global = self.prev_instance_id = self.prev_confidence = self.period = None
        self.prev_ego_status = self.ego_period = None
        self.instance_feature_queue, self.anchor_queue = [], []
        self.ego_feature_queue, self.ego_anchor_queue = [], []


@dataclass
class QueueFrame:
    ego_feature: Tensor    # [B, 1, C]
    ego_anchor: Tensor     # [B, 1, 11]
    temp_feature: Tensor   # [B, N+1, Q, C] agents then ego
    temp_anchor: Tensor    # [B, N+1, Q, 11]
    temp_mask: Tensor      # [B, N+1, Q] True = padding (older than the tracked period)
    # True on the static path: Q is always queue_length and the temporal attention masks the padding instead of
    # packing the tracked entries (docs/static-graph.md).
    padded: bool = False


class QueueOps(Protocol):
    """The motion head's memory: :class:`InstanceQueue` (eager, lists that grow to Q) or the fixed-shape
    ``StaticQueue`` of model/static_frame.py."""

    def get(self, state, det: HeadOutput, front_coarsest_map: Tensor, T_global_inv: Tensor, mask: Optional[Tensor],
            anchor_handler: SparseBox3DKeyPointsGenerator) -> QueueFrame: ...

    def cache(self, state, det: HeadOutput, ego_feature: Tensor, ego_status: Tensor, T_global: Tensor) -> None: ...

    def history(self, state) -> Tuple[Tensor, List[Tensor], Tensor, List[Tensor]]: ...


class InstanceQueue(nn.Module):
    def __init__(self, embed_dims: int = 256, queue_length: int = 4, tracking_threshold: float = 0.2,
                 feature_map_hw: Tuple[int, int] = (8, 22), ego_size: Sequence[float] = (4.08, 1.73, 1.56)) -> None:
        super().__init__()
        self.queue_length = queue_length
        self.tracking_threshold = tracking_threshold
        # The pool kernel is half the stride-32 map, so the output is 1 x 1
        # (docs/model-notes.md#motion-and-planning-head).
        kernel = (feature_map_hw[0] // 2, feature_map_hw[1] // 2)
        self.ego_feature_encoder = nn.Sequential(
            nn.Conv2d(embed_dims, embed_dims, 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(embed_dims),
            nn.Conv2d(embed_dims, embed_dims, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(embed_dims),
            nn.ReLU(),
            nn.AvgPool2d(kernel),
        )
        length, width, height = ego_size
        ego_anchor = torch.tensor([[0.0, 0.5, -1.84 + height / 2, length, width, height, 1.0, 0.0, 0.0, 0.0, 0.0]],
                                  dtype=torch.float64)
        ego_anchor[:, 3:6] = ego_anchor[:, 3:6].log()
        self.ego_anchor = nn.Parameter(ego_anchor.float(), requires_grad=False)

    def get(self, state: InstanceQueueState, det: HeadOutput, front_coarsest_map: Tensor, T_global_inv: Tensor,
            mask: Optional[Tensor], anchor_handler: SparseBox3DKeyPointsGenerator) -> QueueFrame:
        """Move the history into the current frame, match agents by id, append this frame
        (docs/model-notes.md#motion-and-planning-head)."""
        batch = det.instance_feature.shape[0]
        if state.period is not None and state.period.shape[0] == batch:
            T_temp2cur = torch.matmul(T_global_inv.to(torch.float64), _required(state.T_global, "T_global"))
            state.anchor_queue = [anchor_handler.anchor_projection(a, T_temp2cur) for a in state.anchor_queue]
            state.ego_anchor_queue = [anchor_handler.anchor_projection(a, T_temp2cur) for a in state.ego_anchor_queue]
        else:
            state.reset()
        self._prepare_motion(state, det)
        ego_feature, ego_anchor = self._prepare_planning(state, front_coarsest_map, mask, batch)
        temp_feature = torch.cat([torch.stack(state.instance_feature_queue, dim=2),
                                  torch.stack(state.ego_feature_queue, dim=2)], dim=1)
        temp_anchor = torch.cat([torch.stack(state.anchor_queue, dim=2),
                                 torch.stack(state.ego_anchor_queue, dim=2)], dim=1)
        period = torch.cat([_required(state.period, "period"), _required(state.ego_period, "ego_period")],
                           dim=1)  # [B, N+1]
        queue_len = len(state.anchor_queue)
        age = torch.arange(queue_len, 0, -1, device=period.device)  # oldest entry has age Q, newest 1
        temp_mask = age[None, None] > period[..., None]
        return QueueFrame(ego_feature, ego_anchor, temp_feature, temp_anchor, temp_mask)

    def _prepare_motion(self, state: InstanceQueueState, det: HeadOutput) -> None:
        feature, anchor = det.instance_feature, det.prediction[-1]
        if state.period is None:
            state.period = torch.zeros(feature.shape[:2], dtype=torch.long, device=feature.device)
        else:
            # Agent history follows the instance id, only from instances that were confident
            # (docs/model-notes.md#temporal-rules).
            ids = _required(det.instance_id, "instance_id")
            match = ids[..., None] == _required(state.prev_instance_id, "prev_instance_id")[:, None]  # [B, N, N_prev]
            if self.tracking_threshold > 0:
                match = match & (_required(state.prev_confidence, "prev_confidence") > self.tracking_threshold)[:, None]
            matched = match.any(dim=-1)  # ids are unique, so at most one match per row
            source = match.to(torch.uint8).argmax(dim=-1)  # [B, N]
            state.instance_feature_queue = [_regather(x, source, matched) for x in state.instance_feature_queue]
            state.anchor_queue = [_regather(x, source, matched) for x in state.anchor_queue]
            state.period = torch.where(matched, torch.gather(state.period, 1, source), 0)
        state.instance_feature_queue.append(feature.detach())
        state.anchor_queue.append(anchor.detach())
        state.period = state.period + 1
        if len(state.instance_feature_queue) > self.queue_length:
            state.instance_feature_queue.pop(0)
            state.anchor_queue.pop(0)
        state.period = state.period.clamp(0, self.queue_length)

    def _prepare_planning(self, state: InstanceQueueState, front_coarsest_map: Tensor, mask: Optional[Tensor],
                          batch: int) -> Tuple[Tensor, Tensor]:
        """Ego instance: feature from the front camera's stride-32 map, anchor with the last predicted speed."""
        ego_feature = self.ego_feature_encoder(front_coarsest_map).flatten(1)[:, None]  # [B, 1, C]
        ego_anchor = self.ego_anchor[None].expand(batch, -1, -1).clone()  # [B, 1, 11]
        valid = mask if mask is not None else torch.zeros(batch, dtype=torch.bool, device=ego_feature.device)
        if state.prev_ego_status is not None:
            status = torch.where(valid[:, None, None], state.prev_ego_status, state.prev_ego_status.new_tensor(0))
            ego_anchor[..., VY] = status[..., EGO_SPEED]
        if state.ego_period is None:
            state.ego_period = torch.zeros(batch, 1, dtype=torch.long, device=ego_feature.device)
        else:
            state.ego_period = torch.where(valid[:, None], state.ego_period, 0)
        state.ego_feature_queue.append(ego_feature.detach())
        state.ego_anchor_queue.append(ego_anchor.detach())
        state.ego_period = state.ego_period + 1
        if len(state.ego_feature_queue) > self.queue_length:
            state.ego_feature_queue.pop(0)
            state.ego_anchor_queue.pop(0)
        state.ego_period = state.ego_period.clamp(0, self.queue_length)
        return ego_feature, ego_anchor

    @staticmethod
    def cache(state: InstanceQueueState, det: HeadOutput, ego_feature: Tensor, ego_status: Tensor,
              T_global: Tensor) -> None:
        """After the head: remember ids/confidences for matching, the ego status and the refined ego feature."""
        state.T_global = T_global.to(torch.float64)
        state.prev_confidence = det.classification[-1].detach().sigmoid().max(dim=-1).values
        state.prev_instance_id = det.instance_id
        state.prev_ego_status = ego_status.detach()
        state.ego_feature_queue[-1] = ego_feature.detach()

    @staticmethod
    def history(state: InstanceQueueState) -> Tuple[Tensor, List[Tensor], Tensor, List[Tensor]]:
        """period [B, N], agent anchor queue, ego_period [B, 1], ego anchor queue (oldest first)."""
        return (_required(state.period, "period"), list(state.anchor_queue),
                _required(state.ego_period, "ego_period"), list(state.ego_anchor_queue))


def _regather(x: Tensor, source: Tensor, matched: Tensor) -> Tensor:
    """x [B, N_prev, D] -> [B, N, D]: row source[b, i] where matched, zeros elsewhere."""
    rows = x[torch.arange(x.shape[0], device=x.device)[:, None], source]
    return torch.where(matched[..., None], rows, rows.new_tensor(0))


class MotionPlanningRefinementModule(nn.Module):
    """Mode scores and per-step displacements for agents and ego, plus the 10-d ego status
    (docs/model-notes.md#motion-and-planning-head)."""

    def __init__(self, embed_dims: int = 256, fut_ts: int = 12, fut_mode: int = 6, ego_fut_ts: int = 6,
                 ego_fut_mode: int = 6, num_commands: int = 3) -> None:
        super().__init__()
        self.fut_ts, self.fut_mode = fut_ts, fut_mode
        self.ego_fut_ts, self.ego_fut_mode, self.num_commands = ego_fut_ts, ego_fut_mode, num_commands
        hidden = [embed_dims, embed_dims, embed_dims]
        self.motion_cls_branch = nn.Sequential(*linear_relu_ln(embed_dims, 1, 2), nn.Linear(embed_dims, 1))
        self.motion_reg_branch = nn.Sequential(*mlp_blocks(hidden + [fut_ts * 2]))
        self.plan_cls_branch = nn.Sequential(*linear_relu_ln(embed_dims, 1, 2), nn.Linear(embed_dims, 1))
        self.plan_reg_branch = nn.Sequential(*mlp_blocks(hidden + [ego_fut_ts * 2]))
        self.plan_status_branch = nn.Sequential(*mlp_blocks(hidden + [10]))

    def forward(self, motion_query: Tensor, plan_query: Tensor, ego_feature: Tensor,
                ego_anchor_embed: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """motion_query [B, N, M, C], plan_query [B, 1, cmd*M_ego, C], ego feature/embedding [B, 1, C].

        Returns motion_cls [B, N, M], motion_reg [B, N, M, T, 2], plan_cls [B, 1, cmd*M_ego],
        plan_reg [B, 1, cmd*M_ego, T_ego, 2], plan_status [B, 1, 10]. Regressions are per-step displacements.
        """
        batch, num_anchor = motion_query.shape[:2]
        motion_cls = self.motion_cls_branch(motion_query).squeeze(-1)
        motion_reg = self.motion_reg_branch(motion_query).reshape(batch, num_anchor, self.fut_mode, self.fut_ts, 2)
        plan_cls = self.plan_cls_branch(plan_query).squeeze(-1)
        plan_reg = self.plan_reg_branch(plan_query).reshape(
            batch, 1, self.num_commands * self.ego_fut_mode, self.ego_fut_ts, 2)
        plan_status = self.plan_status_branch(ego_feature + ego_anchor_embed)
        return motion_cls, motion_reg, plan_cls, plan_reg, plan_status


@dataclass
class MotionPlanOutput:
    """Raw outputs of the motion/planning head for one frame (batch first)."""

    motion_cls: Tensor               # [B, N, M] logits
    motion_reg: Tensor               # [B, N, M, T, 2] per-step displacements
    period: Tensor                   # [B, N] int64 tracked frames
    anchor_queue: List[Tensor]       # Q x [B, N, 11] agent history (current frame), oldest first
    plan_cls: Tensor                 # [B, 1, cmd*M_ego] logits before rescoring
    plan_reg: Tensor                 # [B, 1, cmd*M_ego, T_ego, 2] per-step displacements
    plan_status: Tensor              # [B, 1, 10] predicted ego status
    ego_period: Tensor               # [B, 1] int64
    ego_anchor_queue: List[Tensor]   # Q x [B, 1, 11]


class MotionPlanningHead(nn.Module):
    def __init__(self, cfg: MotionPlanConfig, embed_dims: int, num_det_classes: int,
                 feature_map_hw: Tuple[int, int], motion_anchor: Optional[Tensor] = None,
                 plan_anchor: Optional[Tensor] = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed_dims = embed_dims
        self.operation_order = motion_operation_order(cfg.num_blocks)
        self.instance_queue = InstanceQueue(embed_dims, cfg.queue_length, cfg.tracking_threshold, feature_map_hw,
                                            cfg.ego_size)
        factories = {
            "temp_gnn": lambda: MultiheadAttention(embed_dims * 2, 8, cfg.dropout),
            "gnn": lambda: MultiheadAttention(embed_dims * 2, 8, cfg.dropout),
            "cross_gnn": lambda: MultiheadAttention(embed_dims, 8, cfg.dropout),
            "norm": lambda: nn.LayerNorm(embed_dims),
            "ffn": lambda: AsymmetricFFN(embed_dims, embed_dims, cfg.ffn_dims, cfg.dropout),
            "refine": lambda: MotionPlanningRefinementModule(embed_dims, cfg.fut_ts, cfg.fut_mode, cfg.ego_fut_ts,
                                                             cfg.ego_fut_mode, cfg.num_commands),
        }
        self.layers = nn.ModuleList([factories[op]() for op in self.operation_order])
        self.fc_before = nn.Linear(embed_dims, embed_dims * 2, bias=False)
        self.fc_after = nn.Linear(embed_dims * 2, embed_dims, bias=False)
        if motion_anchor is None:
            motion_anchor = default_motion_anchor(num_det_classes, cfg.fut_mode, cfg.fut_ts)
        if plan_anchor is None:
            plan_anchor = default_plan_anchor(cfg.num_commands, cfg.ego_fut_mode, cfg.ego_fut_ts)
        self.motion_anchor = nn.Parameter(motion_anchor.float(), requires_grad=False)  # [cls, M, T, 2] agent frame
        self.plan_anchor = nn.Parameter(plan_anchor.float(), requires_grad=False)  # [cmd, M_ego, T_ego, 2] lidar
        self.motion_anchor_encoder = nn.Sequential(*linear_relu_ln(embed_dims, 1, 1), nn.Linear(embed_dims, embed_dims))
        self.plan_anchor_encoder = nn.Sequential(*linear_relu_ln(embed_dims, 1, 1), nn.Linear(embed_dims, embed_dims))

    def graph_model(self, index: int, query: Tensor, key: Tensor, value: Tensor, query_pos: Tensor,
                    key_pos: Tensor, key_padding_mask: Optional[Tensor] = None) -> Tensor:
        """Decoupled attention (padding mask: True = ignore). temp_gnn uses the packed :meth:`temporal_attention`."""
        query = torch.cat([query, query_pos], dim=-1)
        key = torch.cat([key, key_pos], dim=-1)
        out = self.layers[index](query, key, self.fc_before(value), key_padding_mask=key_padding_mask)
        return self.fc_after(out)

    def temporal_attention(self, index: int, query: Tensor, query_pos: Tensor, history: Tensor,
                           history_embed: Tensor, valid: Tensor) -> Tensor:
        """Decoupled per-instance attention over the own history, as graph_model with the padding mask but with
        keys/values only for the valid (tracked) entries, since most instances have a short history.

        query / query_pos [S, 1, C]; history / history_embed [K, C] packed valid entries of valid [S, Q].
        """
        key = torch.cat([history, history_embed], dim=-1)
        out = cast(MultiheadAttention, self.layers[index]).forward_packed(torch.cat([query, query_pos], dim=-1), key,
                                                self.fc_before(history), valid)
        return self.fc_after(out)

    def agent_mode_anchors(self, det_cls_scores: Tensor, det_anchor: Tensor) -> Tensor:
        """Class-specific agent-frame anchors rotated by each box's yaw: [B, N, M, T, 2] (no translation)."""
        anchors = self.motion_anchor[det_cls_scores.argmax(dim=-1)]  # [B, N, M, T, 2]
        box = det_anchor.detach()
        yaw = torch.atan2(box[..., SIN_YAW], box[..., COS_YAW])
        cos, sin = torch.cos(yaw)[:, :, None, None], torch.sin(yaw)[:, :, None, None]
        x, y = anchors[..., 0], anchors[..., 1]
        return torch.stack([x * cos - y * sin, x * sin + y * cos], dim=-1)

    def forward(self, state, det: HeadOutput, map_out: HeadOutput, front_coarsest_map: Tensor,
                T_global: Tensor, T_global_inv: Tensor, det_bank_mask: Optional[Tensor],
                anchor_encoder: SparseBox3DEncoder, anchor_handler: SparseBox3DKeyPointsGenerator,
                queue_ops: Optional[QueueOps] = None) -> MotionPlanOutput:
        """front_coarsest_map [B, C, h, w] = camera 0, stride-32 FPN level. Updates ``state`` in place.

        ``state`` belongs to ``queue_ops``: an :class:`InstanceQueueState` for the module's own queue (default),
        a ``StaticQueueState`` for the static path's ``StaticQueue``."""
        cfg = self.cfg
        ops: QueueOps = self.instance_queue if queue_ops is None else queue_ops
        det_cls_scores = det.classification[-1].sigmoid()  # [B, N, cls]
        det_anchor = det.prediction[-1]
        feature, anchor_embed = det.instance_feature, det.anchor_embed
        num_anchor = feature.shape[1]
        _, (feature_sel, embed_sel) = topk_gather(det_cls_scores.max(dim=-1).values, cfg.num_det, feature,
                                                  anchor_embed)
        map_conf = map_out.classification[-1].sigmoid().max(dim=-1).values
        _, (map_feature_sel, map_embed_sel) = topk_gather(map_conf, cfg.num_map, map_out.instance_feature,
                                                          map_out.anchor_embed)
        queue = ops.get(state, det, front_coarsest_map, T_global_inv, det_bank_mask, anchor_handler)
        ego_embed = anchor_encoder(queue.ego_anchor)  # [B, 1, C]
        temp_padding = queue.temp_mask.flatten(0, 1)  # [B*(N+1), Q] True = not tracked
        if queue.padded:
            history = queue.temp_feature.flatten(0, 1)  # [B*(N+1), Q, C]
            history_embed = anchor_encoder(queue.temp_anchor.flatten(0, 1))
        else:  # packed: only the tracked entries [K, C]
            history = queue.temp_feature.flatten(0, 1)[~temp_padding]
            history_embed = anchor_encoder(queue.temp_anchor.flatten(0, 1)[~temp_padding])
        motion_query_init = self.motion_anchor_encoder(
            sine_position_embedding(self.agent_mode_anchors(det_cls_scores, det_anchor)[..., -1, :], self.embed_dims))
        plan_anchor = self.plan_anchor[None].expand(feature.shape[0], -1, -1, -1, -1)
        plan_query_init = self.plan_anchor_encoder(sine_position_embedding(plan_anchor[..., -1, :], self.embed_dims))
        plan_query_init = plan_query_init.flatten(1, 2)[:, None]  # [B, 1, cmd*M_ego, C]

        feature_sel = torch.cat([feature_sel, queue.ego_feature], dim=1)  # [B, num_det+1, C]
        embed_sel = torch.cat([embed_sel, ego_embed], dim=1)
        feature = torch.cat([feature, queue.ego_feature], dim=1)  # [B, N+1, C]
        anchor_embed = torch.cat([anchor_embed, ego_embed], dim=1)
        outputs = None
        for i, op in enumerate(self.operation_order):
            layer = self.layers[i]
            if op == "temp_gnn":  # per instance: 1 query over its own <= Q history entries
                query, query_pos = feature.flatten(0, 1)[:, None], anchor_embed.flatten(0, 1)[:, None]
                if queue.padded:
                    out = self.graph_model(i, query, history, history, query_pos, history_embed,
                                           key_padding_mask=temp_padding)
                else:
                    out = self.temporal_attention(i, query, query_pos, history, history_embed, ~temp_padding)
                feature = out.reshape(feature.shape)
            elif op == "gnn":
                feature = self.graph_model(i, feature, feature_sel, feature_sel, anchor_embed, embed_sel)
            elif op in ("norm", "ffn"):
                feature = layer(feature)
            elif op == "cross_gnn":  # values are the raw map features (docs/model-notes.md#attention-and-ffn)
                feature = layer(feature, key=map_feature_sel, query_pos=anchor_embed, key_pos=map_embed_sel)
            else:  # refine
                query = feature + anchor_embed
                motion_query = motion_query_init + query[:, :num_anchor, None]
                plan_query = plan_query_init + query[:, num_anchor:, None]
                outputs = layer(motion_query, plan_query, feature[:, num_anchor:], anchor_embed[:, num_anchor:])
        motion_cls, motion_reg, plan_cls, plan_reg, plan_status = _required(outputs, "refine output")
        ops.cache(state, det, feature[:, num_anchor:], plan_status, T_global)
        period, anchor_queue, ego_period, ego_anchor_queue = ops.history(state)
        return MotionPlanOutput(motion_cls, motion_reg, period, anchor_queue, plan_cls, plan_reg, plan_status,
                                ego_period, ego_anchor_queue)


def default_motion_anchor(num_classes: int, num_modes: int, num_steps: int) -> Tensor:
    """Stand-in agent anchors for a model built without a checkpoint: straight paths along the heading (+x of
    the agent frame) at speeds 0..10 m/s; training replaces them with k-means anchors (docs/model-notes.md#anchors)."""
    speeds = torch.linspace(0.0, 10.0, num_modes)
    t = torch.arange(1, num_steps + 1, dtype=torch.float32) * 0.5
    path = torch.stack([speeds[:, None] * t, torch.zeros(num_modes, num_steps)], dim=-1)  # [M, T, 2]
    return path[None].repeat(num_classes, 1, 1, 1)


def default_plan_anchor(num_commands: int, num_modes: int, num_steps: int) -> Tensor:
    """Stand-in ego anchors: forward (+y) paths at speeds 0..10 m/s bending right / left / straight."""
    speeds = torch.linspace(0.0, 10.0, num_modes)
    t = torch.arange(1, num_steps + 1, dtype=torch.float32) * 0.5
    forward = speeds[:, None] * t  # [M, T]
    lateral = (t / t[-1]) ** 2 * 4.0
    bends = torch.tensor([1.0, -1.0, 0.0])[:num_commands]
    x = bends[:, None, None] * lateral[None, None] * (speeds[None, :, None] > 0)
    y = forward[None].expand(num_commands, -1, -1)
    return torch.stack([x, y], dim=-1)
