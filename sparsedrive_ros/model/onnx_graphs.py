"""The two graphs of the ONNX export, as modules with flat, named tensor inputs and outputs
(docs/static-graph.md#onnx-export).

* :class:`ImageEncoder` — ``images`` [B, N_cam, 3, H, W] (normalised RGB, model/preprocess.py) -> the four FPN
  levels ``feature_0..3`` [B, N_cam, C, H/s, W/s], s = 4, 8, 16, 32.
* :class:`HeadsStep` — one temporal step of the heads: the four levels, the frame's calibration, stamp, pose and
  command, and the temporal state -> decoded outputs and the next state (:mod:`.static_frame`).

The state travels as ``state_<name>`` inputs and ``next_state_<name>`` outputs (names and shapes in
:func:`~sparsedrive_ros.model.static_frame.state_spec`); the first frame of a stream gets the empty state
(:func:`~sparsedrive_ros.model.static_frame.empty_state`: zeros, ``history`` False, ids -1, identity pose).
Nothing here imports onnx: the tool (tools/export_onnx.py) exports these modules with ``torch.onnx``.
"""

from __future__ import annotations

from typing import List, Tuple

import torch
from torch import Tensor, nn

from .sparsedrive import SparseDrive
from .static_frame import StaticHeads, state_spec

__all__ = ["FRAME_INPUTS", "RELATIVE_FRAME_INPUTS", "HeadsStep", "ImageEncoder", "example_heads_inputs",
           "export_names", "frame_inputs", "heads_output_keys"]

# Per-frame inputs of the heads step after the feature levels: (name, shape and meaning); B = batch, N = cameras.
FRAME_INPUTS = (
    ("projection_mat", "[B, N, 4, 4] float32: lidar -> pixels of the network input"),
    ("image_wh", "[B, N, 2] float32: (W, H) of the network input"),
    ("timestamp", "[B] float64: seconds"),
    ("T_global", "[B, 4, 4] float64: lidar -> global"),
    ("T_global_inv", "[B, 4, 4] float64: global -> lidar"),
    ("command", "[B] int64: 0 right, 1 left, 2 straight"),
)
# The float32-only interface (export_onnx --float32-time, for TensorRT): the caller keeps the previous stamp and
# pose in float64 and passes the differences, which the graph would otherwise compute (same results).
RELATIVE_FRAME_INPUTS = (
    FRAME_INPUTS[0], FRAME_INPUTS[1],
    ("dt", "[B] float32: seconds since the previous frame, float64 difference of the stamps (any value on a "
           "first frame)"),
    ("T_prev2cur", "[B, 4, 4] float32: previous lidar -> current lidar, T_global_inv(now) @ T_global(previous) "
                   "in float64 (identity on a first frame)"),
    FRAME_INPUTS[5],
)


def frame_inputs(relative_time: bool):
    return RELATIVE_FRAME_INPUTS if relative_time else FRAME_INPUTS


class ImageEncoder(nn.Module):
    """Backbone + FPN: images -> 4 feature levels (a tuple, so the exporter names them feature_0..3)."""

    def __init__(self, model: SparseDrive) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> Tuple[Tensor, ...]:
        return tuple(self.model.extract_feat(images))


def heads_output_keys(model: SparseDrive) -> List[str]:
    """Decoded outputs of :class:`HeadsStep`, in order, as :class:`StaticHeads` names them (the ONNX names
    replace ``/`` by ``_``: ``det/boxes`` -> ``det_boxes``)."""
    keys = ["det/boxes", "det/scores", "det/labels", "det/cls_scores", "det/instance_ids", "det/index",
            "map/polylines", "map/scores", "map/labels", "map/index", "time_interval"]
    if model.config.motion_plan is not None:
        keys += ["motion/trajs", "motion/traj_scores", "motion/history", "motion/period",
                 "plan/trajectories", "plan/scores", "plan/final", "plan/command", "plan/mode", "plan/ego_status",
                 "plan/ego_period", "plan/ego_history"]
    keys.append("temporal_valid")
    return keys


class HeadsStep(nn.Module):
    """:class:`StaticHeads` with positional inputs ``feature_0..3, *frame_inputs, *state`` and outputs
    ``*heads_output_keys, *next state`` (both state lists in :func:`state_spec` order)."""

    def __init__(self, model: SparseDrive, relative_time: bool = False) -> None:
        super().__init__()
        self.heads = StaticHeads(model, with_raw=False)
        self.relative_time = relative_time
        self.state_names = list(state_spec(model, relative_time=relative_time))
        self.output_keys = heads_output_keys(model)

    def forward(self, feature_0: Tensor, feature_1: Tensor, feature_2: Tensor, feature_3: Tensor,
                projection_mat: Tensor, image_wh: Tensor, *rest: Tensor) -> Tuple[Tensor, ...]:
        num_time = 2 if self.relative_time else 3  # (dt, T_prev2cur) or (timestamp, T_global, T_global_inv)
        time_inputs, command, state = rest[:num_time], rest[num_time], rest[num_time + 1:]
        if len(state) != len(self.state_names):
            raise ValueError(f"expected {len(self.state_names)} state tensors ({self.state_names}), got {len(state)}")
        levels = [feature_0, feature_1, feature_2, feature_3]
        named = dict(zip(self.state_names, state))
        if self.relative_time:
            dt, T_prev2cur = time_inputs
            outputs, next_state = self.heads.relative_step(levels, projection_mat, image_wh, dt, T_prev2cur, command,
                                                           named)
        else:
            timestamp, T_global, T_global_inv = time_inputs
            outputs, next_state = self.heads(levels, projection_mat, image_wh, timestamp, T_global, T_global_inv,
                                             command, named)
        return tuple(outputs[k] for k in self.output_keys) + tuple(next_state[n] for n in self.state_names)


def export_names(model: SparseDrive, relative_time: bool = False) -> Tuple[List[str], List[str]]:
    """(input names, output names) of :class:`HeadsStep`."""
    state = list(state_spec(model, relative_time=relative_time))
    inputs = [f"feature_{i}" for i in range(4)] + [n for n, _ in frame_inputs(relative_time)]
    inputs += [f"state_{n}" for n in state]
    outputs = [k.replace("/", "_") for k in heads_output_keys(model)] + [f"next_state_{n}" for n in state]
    return inputs, outputs


def example_heads_inputs(model: SparseDrive, batch: int = 1, relative_time: bool = False) -> Tuple[Tensor, ...]:
    """Zero-image inputs of the right shapes and dtypes (what the exporter traces with), empty state."""
    from .static_frame import empty_state

    cfg = model.config
    h, w = cfg.image_hw
    param = model.img_backbone.conv1.weight
    with torch.no_grad():
        levels = model.extract_feat(torch.zeros(batch, cfg.num_cams, 3, h, w, dtype=param.dtype))
    projection = torch.eye(4, dtype=param.dtype).expand(batch, cfg.num_cams, 4, 4).clone()
    image_wh = torch.tensor([float(w), float(h)], dtype=param.dtype).expand(batch, cfg.num_cams, 2).clone()
    command = torch.full((batch,), 2, dtype=torch.long)
    if relative_time:
        eye = torch.eye(4, dtype=param.dtype).expand(batch, 4, 4).clone()
        time_inputs: Tuple[Tensor, ...] = (torch.zeros(batch, dtype=param.dtype), eye)
    else:
        pose = torch.eye(4, dtype=torch.float64).expand(batch, 4, 4).clone()
        time_inputs = (torch.zeros(batch, dtype=torch.float64), pose, pose.clone())
    state = empty_state(model, batch, relative_time=relative_time)
    return (*levels, projection, image_wh, *time_inputs, command, *state.values())
