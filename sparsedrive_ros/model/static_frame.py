"""One frame as a static graph: fixed shapes, no host synchronisation, temporal state in and out as tensors
(docs/static-graph.md).

The eager path (:class:`~sparsedrive_ros.model.sparsedrive.SparseDriveStream`) keeps Python ``None`` for an empty
memory, grows the motion queue from 1 to Q entries, packs the tracked history with boolean indexing and gathers
only the visible deformable samples (``nonzero``). Each of those makes shapes depend on the data or forces the
host to wait for the device. This module runs the same model, with the same parameters, as one fixed-shape
computation:

* the memory is a flat ``dict`` of tensors with fixed shapes (:func:`empty_state`; names and shapes:
  :func:`state_spec`); an empty memory is zeros plus ``history = False``, so the first frame and every later
  one are the same graph (the eager first-frame rules become tensor selects, see
  ``Sparse4DHead.temporal_graph_model``);
* the motion queue always has Q slots; slots older than an instance's tracked period are masked in attention
  exactly as the eager path masks them;
* the deformable aggregation is the dense grid-sample op (every camera, masked), instead of the visible-sample
  gather;
* new tracking ids are numbered with a cumulative sum instead of boolean-mask writes.

The frame function (:class:`StaticHeads` / :class:`StaticFrame`) is pure: ``(inputs, state) -> (outputs, state)``.
That is what ``torch.compile(fullgraph=True)``, CUDA-graph capture and the ONNX export need.
:class:`StaticSparseDriveStream` wraps it with the host-side bookkeeping (frames since reset, time-gap rules
decided from host stamps, the variable-length queue views of the eager output). :meth:`StaticHeads.relative_step`
is the same frame with float32 time and pose differences instead of float64 stamps and poses (TensorRT).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from .box3d import BoxDetections, SparseBox3DKeyPointsGenerator
from .deformable_op import deformable_aggregation_reference
from .instance_bank import BankFrame, InstanceBank, topk_gather
from .motion import EGO_SPEED, VY, InstanceQueue, QueueFrame
from .motion_decoders import MotionForecast, PlanningResult
from .point3d import MapElements
from .sparse4d_head import HeadOutput
from .sparsedrive import FrameInputs, SparseDrive, SparseDriveOutput, command_index, gap_needs_reset

__all__ = [
    "StaticFrame",
    "StaticHeads",
    "StaticSparseDriveStream",
    "empty_state",
    "output_from_static",
    "state_spec",
]

State = Dict[str, Tensor]


def state_spec(model: SparseDrive, batch: int = 1,
               relative_time: bool = False) -> Dict[str, Tuple[Tuple[int, ...], str]]:
    """Name -> (shape, kind) of every state tensor; kind is "float" (model dtype), "float64", "int64" or "bool".

    Frames: anchors and queues are in the lidar frame of the previous frame (the frame that wrote them).
    ``relative_time``: the state of :meth:`StaticHeads.relative_step`, without the previous stamp and pose (the
    caller keeps those and passes the differences; docs/static-graph.md#tensorrt).
    """
    cfg = model.config
    dims = cfg.embed_dims
    det, mp = cfg.det, cfg.map
    spec: Dict[str, Tuple[Tuple[int, ...], str]] = {
        "history": ((batch,), "bool"),                      # a previous frame is cached
        "prev_timestamp": ((batch,), "float64"),            # s
        "prev_T_global": ((batch, 4, 4), "float64"),        # lidar -> global of that frame
        "det_feature": ((batch, det.num_temp_instances, dims), "float"),
        "det_anchor": ((batch, det.num_temp_instances, 11), "float"),
        "det_confidence": ((batch, det.num_temp_instances), "float"),
        "det_instance_id": ((batch, det.num_anchor), "int64"),  # carried ids at 0..T-1, -1 elsewhere
        "next_id": ((1,), "int64"),                         # next free tracking id (shared by the batch)
        "map_feature": ((batch, mp.num_temp_instances, dims), "float"),
        "map_anchor": ((batch, mp.num_temp_instances, mp.num_sample * 2), "float"),
        "map_confidence": ((batch, mp.num_temp_instances), "float"),
    }
    if relative_time:
        del spec["prev_timestamp"], spec["prev_T_global"]
    if cfg.motion_plan is not None:
        q, n = cfg.motion_plan.queue_length, det.num_anchor
        spec.update({
            "agent_prev_id": ((batch, n), "int64"),
            "agent_prev_confidence": ((batch, n), "float"),
            "agent_period": ((batch, n), "int64"),
            "agent_feature_queue": ((batch, n, q, dims), "float"),   # oldest slot first
            "agent_anchor_queue": ((batch, n, q, 11), "float"),
            "ego_prev_status": ((batch, 1, 10), "float"),
            "ego_period": ((batch, 1), "int64"),
            "ego_feature_queue": ((batch, 1, q, dims), "float"),
            "ego_anchor_queue": ((batch, 1, q, 11), "float"),
        })
    return spec


def empty_state(model: SparseDrive, batch: int = 1, device: Optional[torch.device] = None,
                dtype: Optional[torch.dtype] = None, relative_time: bool = False) -> State:
    """The state of a stream that has seen no frame: zeros, ``history`` False, ids -1, identity pose."""
    param = model.img_backbone.conv1.weight
    device = param.device if device is None else device
    dtype = param.dtype if dtype is None else dtype
    kinds = {"float": dtype, "float64": torch.float64, "int64": torch.long, "bool": torch.bool}
    state = {name: torch.zeros(shape, dtype=kinds[kind], device=device)
             for name, (shape, kind) in state_spec(model, batch, relative_time).items()}
    for name in ("det_instance_id", "agent_prev_id"):
        if name in state:
            state[name].fill_(-1)
    if "prev_T_global" in state:
        state["prev_T_global"].copy_(torch.eye(4, dtype=torch.float64))
    return state


# ----------------------------------------------------------------------------------------------- memory ops


@dataclass
class StaticBankState:
    """One head's fixed-shape memory during a frame (views into the flat state; fields are replaced, never
    written in place)."""

    feature: Tensor                          # [B, T, C]
    anchor: Tensor                           # [B, T, D]
    confidence: Tensor                       # [B, T]
    instance_id: Optional[Tensor]            # [B, N] int64 (det only)
    next_id: Optional[Tensor]                # [1] int64 (det only)
    history: Tensor                          # [B] bool
    dt: Tensor                               # [B] s since the cached frame (float64 or model dtype)
    T_prev2cur: Tensor                       # [B, 4, 4] cached frame's lidar -> this frame's lidar
    mask: Optional[Tensor] = None            # [B] bool, set by get: history and |dt| <= max_time_interval
    temp_confidence: Optional[Tensor] = None  # [B, N], set by cache


class StaticBank:
    """The :class:`InstanceBank` rules on a :class:`StaticBankState` (docs/static-graph.md#instance-bank).

    The eager rules read "no cache" from ``None``; here it is ``history = False``, and every rule is written
    so that zeros in the empty memory give the eager first-frame result: no merge (mask False), confidence
    fusion with 0 (max(0, c) = c), all ids new (carried ids are -1).
    """

    def __init__(self, bank: InstanceBank) -> None:
        self.bank = bank
        self.num_temp_instances = bank.num_temp_instances

    def get(self, state: StaticBankState, batch_size: int, timestamp: Tensor, T_global_inv: Tensor) -> BankFrame:
        """Like InstanceBank.get, with the time and pose change read from ``state`` (the frame's ``timestamp``
        and ``T_global_inv`` arguments are unused: StaticHeads computed the differences once for all heads)."""
        bank = self.bank
        instance_feature = bank.instance_feature[None].expand(batch_size, -1, -1)
        anchor = bank.anchor[None].expand(batch_size, -1, -1)
        dtype = instance_feature.dtype
        history = state.history if self.num_temp_instances > 0 else torch.zeros_like(state.history)
        # The float64 difference cast to the model dtype, as eager; 0 without history so nothing moves by a huge dt.
        dt = torch.where(history, state.dt.to(dtype), 0.0)
        mask = history & (dt.abs() <= bank.max_time_interval)
        state.mask = mask
        state.anchor = bank.anchor_handler.anchor_projection(state.anchor, state.T_prev2cur, -dt)
        time_interval = torch.where((dt != 0) & mask, dt, dt.new_tensor(bank.default_time_interval))
        return BankFrame(instance_feature, anchor, state.feature, state.anchor, time_interval, history)

    def update(self, state: StaticBankState, instance_feature: Tensor, anchor: Tensor,
               cls_logits: Tensor) -> Tuple[Tensor, Tensor]:
        if self.num_temp_instances <= 0 or state.mask is None:
            return instance_feature, anchor
        num_new = self.bank.num_anchor - self.num_temp_instances
        _, (new_feature, new_anchor) = topk_gather(cls_logits.max(dim=-1).values, num_new, instance_feature, anchor)
        valid = state.mask[:, None, None]
        instance_feature = torch.where(valid, torch.cat([state.feature, new_feature], dim=1), instance_feature)
        anchor = torch.where(valid, torch.cat([state.anchor, new_anchor], dim=1), anchor)
        state.confidence = torch.where(state.mask[:, None], state.confidence, 0.0)
        if state.instance_id is not None:
            state.instance_id = torch.where(state.mask[:, None], state.instance_id, -1)
        return instance_feature, anchor

    def cache(self, state: StaticBankState, instance_feature: Tensor, anchor: Tensor, cls_logits: Tensor,
              timestamp: Tensor, T_global: Tensor) -> None:
        if self.num_temp_instances <= 0:
            return
        num_temp = self.num_temp_instances
        confidence = cls_logits.detach().max(dim=-1).values.sigmoid()
        fused = torch.maximum(state.confidence * self.bank.confidence_decay, confidence[:, :num_temp])
        confidence = torch.cat([fused, confidence[:, num_temp:]], dim=1)
        state.temp_confidence = confidence
        state.confidence, (state.feature, state.anchor) = topk_gather(
            confidence, num_temp, instance_feature.detach(), anchor.detach())

    def get_instance_id(self, state: StaticBankState, cls_logits: Tensor) -> Tensor:
        if state.instance_id is None or state.next_id is None:
            raise ValueError("the static det bank state needs instance_id and next_id")
        instance_id = state.instance_id
        new = instance_id < 0
        # Row-major numbering of the new instances across the batch, as the eager boolean-mask write.
        rank = new.flatten().long().cumsum(0).view_as(new) - 1
        instance_id = torch.where(new, rank + state.next_id, instance_id)
        state.next_id = state.next_id + new.sum()
        ranking = state.temp_confidence
        if ranking is None:
            ranking = cls_logits.detach().max(dim=-1).values.sigmoid()
        _, (carried,) = topk_gather(ranking, self.num_temp_instances, instance_id[..., None])
        state.instance_id = nn.functional.pad(carried[..., 0], (0, self.bank.num_anchor - self.num_temp_instances),
                                              value=-1)
        return instance_id


@dataclass
class StaticQueueState:
    """The motion/planning memory during a frame (Q slots, oldest first; fields replaced, never written)."""

    history: Tensor               # [B] bool
    T_prev2cur: Tensor            # [B, 4, 4] previous lidar -> current lidar
    prev_instance_id: Tensor      # [B, N] int64
    prev_confidence: Tensor       # [B, N]
    period: Tensor                # [B, N] int64
    feature_queue: Tensor         # [B, N, Q, C]
    anchor_queue: Tensor          # [B, N, Q, 11]
    prev_ego_status: Tensor       # [B, 1, 10]
    ego_period: Tensor            # [B, 1] int64
    ego_feature_queue: Tensor     # [B, 1, Q, C]
    ego_anchor_queue: Tensor      # [B, 1, Q, 11]


def _push(queue: Tensor, entry: Tensor) -> Tensor:
    """[B, N, Q, D] + [B, N, D] -> drop the oldest slot, append ``entry`` as the newest."""
    return torch.cat([queue[:, :, 1:], entry[:, :, None]], dim=2)


class StaticQueue:
    """The :class:`InstanceQueue` rules on a :class:`StaticQueueState` (docs/static-graph.md#motion-queue)."""

    def __init__(self, queue: InstanceQueue) -> None:
        self.queue = queue
        self.queue_length = queue.queue_length

    def get(self, state: StaticQueueState, det: HeadOutput, front_coarsest_map: Tensor, T_global_inv: Tensor,
            mask: Optional[Tensor], anchor_handler: SparseBox3DKeyPointsGenerator) -> QueueFrame:
        batch, num = det.instance_feature.shape[:2]
        q = self.queue_length
        # Padding slots hold zeros; moving them keeps them finite, and attention never reads them.
        T_prev2cur = state.T_prev2cur
        anchor_queue = anchor_handler.anchor_projection(state.anchor_queue.flatten(1, 2), T_prev2cur).unflatten(
            1, (num, q))
        ego_anchor_queue = anchor_handler.anchor_projection(state.ego_anchor_queue.flatten(1, 2), T_prev2cur)
        ego_anchor_queue = ego_anchor_queue.unflatten(1, (1, q))

        # Agents: history follows the instance id of confident instances (docs/model-notes.md#temporal-rules).
        # The empty memory has ids -1, which no detection carries, so nothing matches on a first frame.
        ids = det.instance_id
        if ids is None:
            raise ValueError("the motion queue needs the detection instance ids")
        match = ids[..., None] == state.prev_instance_id[:, None]  # [B, N, N_prev]
        if self.queue.tracking_threshold > 0:
            match = match & (state.prev_confidence > self.queue.tracking_threshold)[:, None]
        matched = match.any(dim=-1)
        source = match.to(torch.int32).argmax(dim=-1)  # first match; ids are unique
        rows = torch.arange(batch, device=ids.device)[:, None]
        keep = matched[..., None, None]
        feature_queue = torch.where(keep, state.feature_queue[rows, source], 0.0)
        anchor_queue = torch.where(keep, anchor_queue[rows, source], 0.0)
        period = torch.where(matched, torch.gather(state.period, 1, source), 0)
        state.feature_queue = _push(feature_queue, det.instance_feature.detach())
        state.anchor_queue = _push(anchor_queue, det.prediction[-1].detach())
        state.period = (period + 1).clamp(0, q)

        # Ego: feature from the front camera's coarsest map, anchor with the last predicted speed.
        valid = mask if mask is not None else torch.zeros_like(state.history)
        ego_feature = self.queue.ego_feature_encoder(front_coarsest_map).flatten(1)[:, None]  # [B, 1, C]
        ego_anchor = self.queue.ego_anchor[None].expand(batch, -1, -1)  # [B, 1, 11]
        speed = torch.where(valid[:, None], state.prev_ego_status[..., EGO_SPEED], 0.0)  # [B, 1]
        ego_anchor = torch.cat([ego_anchor[..., :VY], speed[..., None], ego_anchor[..., VY + 1:]], dim=-1)
        ego_period = torch.where(valid[:, None], state.ego_period, 0)
        state.ego_feature_queue = _push(state.ego_feature_queue, ego_feature.detach())
        state.ego_anchor_queue = _push(ego_anchor_queue, ego_anchor.detach())
        state.ego_period = (ego_period + 1).clamp(0, q)

        temp_feature = torch.cat([state.feature_queue, state.ego_feature_queue], dim=1)  # [B, N+1, Q, C]
        temp_anchor = torch.cat([state.anchor_queue, state.ego_anchor_queue], dim=1)
        period_all = torch.cat([state.period, state.ego_period], dim=1)  # [B, N+1]
        age = torch.arange(q, 0, -1, device=period_all.device)  # oldest slot has age Q, newest 1
        temp_mask = age[None, None] > period_all[..., None]
        return QueueFrame(ego_feature, ego_anchor, temp_feature, temp_anchor, temp_mask, padded=True)

    @staticmethod
    def cache(state: StaticQueueState, det: HeadOutput, ego_feature: Tensor, ego_status: Tensor,
              T_global: Tensor) -> None:
        if det.instance_id is None:
            raise ValueError("the motion queue needs the detection instance ids")
        state.prev_confidence = det.classification[-1].detach().sigmoid().max(dim=-1).values
        state.prev_instance_id = det.instance_id
        state.prev_ego_status = ego_status.detach()
        state.ego_feature_queue = torch.cat([state.ego_feature_queue[:, :, :-1], ego_feature.detach()[:, :, None]],
                                            dim=2)

    @staticmethod
    def history(state: StaticQueueState) -> Tuple[Tensor, List[Tensor], Tensor, List[Tensor]]:
        """All Q slots (the stream trims the padding slots of young streams, :func:`output_from_static`)."""
        return (state.period, list(state.anchor_queue.unbind(2)), state.ego_period,
                list(state.ego_anchor_queue.unbind(2)))


# ----------------------------------------------------------------------------------------------- frame


class StaticHeads(nn.Module):
    """Heads + decoding of one frame as a pure function of tensors (docs/static-graph.md).

    ``forward(feature_maps, projection_mat, image_wh, timestamp, T_global, T_global_inv, command, state)``:
    feature_maps L x [B, N_cam, C, h, w]; projection_mat [B, N_cam, 4, 4]; image_wh [B, N_cam, 2]; timestamp [B]
    float64 s; T_global / T_global_inv [B, 4, 4] float64; command [B] int64 index; state from
    :func:`empty_state` or a previous call. Returns (outputs, next state), both ``dict[str, Tensor]`` with
    fixed shapes; output names in :func:`output_from_static`.
    """

    def __init__(self, model: SparseDrive, with_raw: bool = True) -> None:
        super().__init__()
        self.model = model
        self.with_raw = with_raw
        head = model.head
        self.det_bank = StaticBank(head.det_head.instance_bank)
        self.map_bank = StaticBank(head.map_head.instance_bank)
        mp = head.motion_plan_head
        self.queue = StaticQueue(mp.instance_queue) if mp is not None else None

    def forward(self, feature_maps: List[Tensor], projection_mat: Tensor, image_wh: Tensor, timestamp: Tensor,
                T_global: Tensor, T_global_inv: Tensor, command: Tensor, state: State) -> Tuple[State, State]:
        # The only float64 arithmetic of a frame: the time and pose change since the cached frame, computed once
        # here (the eager banks compute the same products, each for itself).
        dt = timestamp.to(torch.float64) - state["prev_timestamp"]
        T_prev2cur = torch.matmul(T_global_inv.to(torch.float64), state["prev_T_global"])
        outputs, new_state = self.relative_step(feature_maps, projection_mat, image_wh, dt, T_prev2cur, command,
                                                state)
        # Copies: a state output must never alias a frame input (CUDA graphs, ONNX, the caller's tensors).
        new_state["prev_timestamp"] = timestamp.to(torch.float64).clone()
        new_state["prev_T_global"] = T_global.to(torch.float64).clone()
        return outputs, new_state

    def relative_step(self, feature_maps: List[Tensor], projection_mat: Tensor, image_wh: Tensor, dt: Tensor,
                      T_prev2cur: Tensor, command: Tensor, state: State) -> Tuple[State, State]:
        """The frame with the time and pose change given instead of stamps and poses: ``dt`` [B] seconds since
        the previous frame, ``T_prev2cur`` [B, 4, 4] previous lidar -> current lidar (any value while
        ``history`` is False). Both are used in the model dtype, so a caller that computes them in float64 and
        passes float32 gets exactly :meth:`forward`'s results: the float32-only interface TensorRT needs."""
        model, head = self.model, self.model.head
        shared = dict(history=state["history"], dt=dt, T_prev2cur=T_prev2cur)
        det_state = StaticBankState(state["det_feature"], state["det_anchor"], state["det_confidence"],
                                    state["det_instance_id"], state["next_id"], **shared)
        map_state = StaticBankState(state["map_feature"], state["map_anchor"], state["map_confidence"], None, None,
                                    **shared)
        # The static banks and queue read dt and the pose change from their state; the decoder stacks still take
        # the frame's stamp and poses as arguments, unused on this path.
        frame = (projection_mat, image_wh, dt, T_prev2cur, T_prev2cur)
        aggregation = deformable_aggregation_reference
        det = head.det_head(det_state, feature_maps, *frame, bank_ops=self.det_bank, aggregation=aggregation)
        map_out = head.map_head(map_state, feature_maps, *frame, bank_ops=self.map_bank, aggregation=aggregation)
        new_state: State = {
            "history": torch.ones_like(state["history"]),
            "det_feature": det_state.feature, "det_anchor": det_state.anchor,
            "det_confidence": det_state.confidence,
            "det_instance_id": _present(det_state.instance_id), "next_id": _present(det_state.next_id),
            "map_feature": map_state.feature, "map_anchor": map_state.anchor,
            "map_confidence": map_state.confidence,
        }
        motion = None
        if head.motion_plan_head is not None and self.queue is not None:
            queue_state = StaticQueueState(
                state["history"], T_prev2cur, state["agent_prev_id"], state["agent_prev_confidence"],
                state["agent_period"], state["agent_feature_queue"], state["agent_anchor_queue"],
                state["ego_prev_status"], state["ego_period"], state["ego_feature_queue"], state["ego_anchor_queue"])
            det_head = head.det_head
            motion = head.motion_plan_head(
                queue_state, det, map_out, feature_maps[-1][:, 0], T_prev2cur, T_prev2cur, det_state.mask,
                det_head.anchor_encoder, det_head.instance_bank.anchor_handler, queue_ops=self.queue)
            new_state.update({
                "agent_prev_id": queue_state.prev_instance_id, "agent_prev_confidence": queue_state.prev_confidence,
                "agent_period": queue_state.period, "agent_feature_queue": queue_state.feature_queue,
                "agent_anchor_queue": queue_state.anchor_queue, "ego_prev_status": queue_state.prev_ego_status,
                "ego_period": queue_state.ego_period, "ego_feature_queue": queue_state.ego_feature_queue,
                "ego_anchor_queue": queue_state.ego_anchor_queue,
            })
        out = model.decode(det, map_out, motion, command, None, self.with_raw)
        outputs = _flatten_output(out)
        outputs["temporal_valid"] = _present(det_state.mask)
        return outputs, new_state


class StaticFrame(nn.Module):
    """Image encoder + :class:`StaticHeads`: a whole frame, images to decoded outputs, as one static graph."""

    def __init__(self, model: SparseDrive, with_raw: bool = True) -> None:
        super().__init__()
        self.heads = StaticHeads(model, with_raw)

    def forward(self, images: Tensor, projection_mat: Tensor, image_wh: Tensor, timestamp: Tensor,
                T_global: Tensor, T_global_inv: Tensor, command: Tensor, state: State) -> Tuple[State, State]:
        feature_maps = self.heads.model.extract_feat(images)
        return self.heads(feature_maps, projection_mat, image_wh, timestamp, T_global, T_global_inv, command, state)


def _present(x: Optional[Tensor]) -> Tensor:
    if x is None:
        raise ValueError("the static frame lost a state tensor")
    return x


def _flatten_output(out: SparseDriveOutput) -> State:
    det, mp = out.detections, out.map
    flat: State = {
        "det/boxes": det.boxes, "det/scores": det.scores, "det/labels": det.labels,
        "det/cls_scores": det.cls_scores, "det/instance_ids": det.instance_ids, "det/index": det.index,
        "map/polylines": mp.polylines, "map/scores": mp.scores, "map/labels": mp.labels, "map/index": mp.index,
        "time_interval": out.time_interval,
    }
    if out.motion is not None:
        m = out.motion
        flat.update({"motion/trajs": m.trajs, "motion/traj_scores": m.traj_scores, "motion/history": m.history,
                     "motion/period": m.period})
    if out.planning is not None:
        p = out.planning
        flat.update({"plan/trajectories": p.trajectories, "plan/scores": p.scores, "plan/final": p.final,
                     "plan/command": p.command, "plan/mode": p.mode, "plan/ego_status": p.ego_status,
                     "plan/ego_period": p.ego_period, "plan/ego_history": p.ego_history})
    if out.raw is not None:
        flat.update(out.raw)
    return flat


def output_from_static(flat: State, queue_filled: int, first_frame: bool) -> SparseDriveOutput:
    """The eager :class:`SparseDriveOutput` of a static frame's outputs.

    ``queue_filled``: how many queue slots hold history (frames since the last reset, at most Q): the eager
    queue has that many entries, so the padding slots are cut from the motion history and anchor queues.
    ``first_frame``: the frame after a reset, whose eager ``temporal_valid`` is None.
    """
    detections = BoxDetections(flat["det/boxes"], flat["det/scores"], flat["det/labels"], flat["det/cls_scores"],
                               flat["det/instance_ids"], flat["det/index"])
    elements = MapElements(flat["map/polylines"], flat["map/scores"], flat["map/labels"], flat["map/index"])
    forecast = planning = None
    if "motion/trajs" in flat:
        forecast = MotionForecast(flat["motion/trajs"], flat["motion/traj_scores"],
                                  flat["motion/history"][:, :, -queue_filled:], flat["motion/period"])
    if "plan/final" in flat:
        planning = PlanningResult(flat["plan/trajectories"], flat["plan/scores"], flat["plan/final"],
                                  flat["plan/command"], flat["plan/mode"], flat["plan/ego_status"],
                                  flat["plan/ego_period"], flat["plan/ego_history"][:, -queue_filled:])
    raw = None
    if any(k.startswith("raw/") for k in flat):
        raw = {k: v for k, v in flat.items() if k.startswith("raw/") and "/anchor_queue/" not in k}
        for name in ("motion", "planning"):
            slots = sorted((int(k.rsplit("/", 1)[1]), v) for k, v in flat.items()
                           if k.startswith(f"raw/{name}/anchor_queue/"))
            for i, (_, v) in enumerate(slots[len(slots) - queue_filled:]):
                raw[f"raw/{name}/anchor_queue/{i}"] = v
    return SparseDriveOutput(detections, elements, forecast, planning, flat["time_interval"],
                             None if first_frame else flat["temporal_valid"], raw)


class StaticSparseDriveStream:
    """:class:`~sparsedrive_ros.model.sparsedrive.SparseDriveStream` on the static frame: same ``step`` /
    ``reset`` and results (tests/test_static_frame.py checks both agree).

    ``compile``: None runs the static graph eagerly (fixed shapes, no host sync; the float64 parity path);
    "default" is ``torch.compile(fullgraph=True)``; "reduce-overhead" adds CUDA-graph capture on CUDA.
    ``with_raw`` False leaves the per-layer raw outputs out of the graph (the node needs only the last layer's
    classification, which it gets with with_raw True; see runtime/pipeline.py).
    """

    def __init__(self, model: SparseDrive, max_time_gap: Optional[float] = None, reset_on_backwards: bool = False,
                 compile: Optional[str] = None, with_raw: bool = True) -> None:
        self.model = model
        self.max_time_gap = max_time_gap
        self.reset_on_backwards = reset_on_backwards
        self.compile_mode = compile
        self.frame = StaticFrame(model, with_raw)
        self._run = self.frame if compile is None else torch.compile(self.frame, fullgraph=True, mode=compile)
        self.compile_error = ""  # why compilation failed, when it did (the stream then runs uncompiled)
        self._compiled_once = False
        self.state: Optional[State] = None
        self.frames_seen = 0  # since the last reset (host-side count: no device read)
        self.last_timestamp: Optional[Tensor] = None  # [B] float64 s on the host, per sample

    def reset(self) -> None:
        self.state = None
        self.frames_seen = 0
        self.last_timestamp = None

    def step(self, inputs: FrameInputs, return_raw: bool = False) -> SparseDriveOutput:
        model = self.model
        param = model.img_backbone.conv1.weight
        inputs.validate(model.config.num_cams, model.config.image_hw)
        batch = inputs.images.shape[0]
        # Host-side decisions before the frame: the command check and the optional gap reset read host tensors.
        command = command_index(inputs.command.cpu(), batch)
        stamps = inputs.timestamp.detach().to("cpu", torch.float64)
        # A different batch size starts from an empty state below, so only same-size stamps are compared.
        if self.last_timestamp is not None and self.last_timestamp.shape == stamps.shape:
            if gap_needs_reset(stamps - self.last_timestamp, self.max_time_gap, self.reset_on_backwards):
                self.reset()
        inputs = inputs.to(param.device, param.dtype)
        if self.compile_mode == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()
        with torch.inference_mode():
            if self.state is None or self.state["history"].shape[0] != batch:
                self.reset()
                # Made under inference mode like every later state, so a compiled frame sees one kind of tensor.
                self.state = empty_state(model, batch)
            args = (inputs.images, inputs.projection_mat, inputs.image_wh, inputs.timestamp, inputs.T_global,
                    inputs.T_global_inv, command.to(param.device), self.state)
            try:
                flat, state = self._run(*args)
            except Exception as err:
                if self._run is self.frame or self._compiled_once:
                    raise
                # Documented degradation (docs/static-graph.md#choosing-a-path): a compiler or CUDA-graph failure on
                # the first call leaves the same graph running uncompiled instead of stopping the stream.
                self.compile_error = f"{type(err).__name__}: {err}"
                warnings.warn(f"torch.compile of the static frame failed, running it uncompiled: "
                              f"{self.compile_error}", RuntimeWarning, stacklevel=2)
                self._run, self.compile_mode = self.frame, None
                flat, state = self._run(*args)
            self._compiled_once = True
        if self.compile_mode == "reduce-overhead":
            # CUDA-graph outputs live in the graph's memory pool and are overwritten by the next replay.
            state = {k: v.clone() for k, v in state.items()}
        first = self.frames_seen == 0
        self.state = state
        self.frames_seen += 1
        self.last_timestamp = stamps
        queue = model.config.motion_plan.queue_length if model.config.motion_plan is not None else 1
        out = output_from_static(flat, min(self.frames_seen, queue), first)
        if not return_raw:
            out.raw = None
        return out
