"""End-to-end behaviour of a small ("tiny") SparseDrive: streaming state, time gaps, reset, gradients."""

from __future__ import annotations

import math

import pytest
import torch

from sparsedrive_ros.model import (
    DetHeadConfig,
    FrameInputs,
    MapHeadConfig,
    MotionPlanConfig,
    SparseDriveConfig,
    SparseDriveStream,
    build_sparsedrive,
)

T0 = 1533151603.0
IMAGE_HW = (64, 192)


def tiny_config(stage: int = 2) -> SparseDriveConfig:
    return SparseDriveConfig(
        backbone_depth=18, embed_dims=64, image_hw=IMAGE_HW,
        det=DetHeadConfig(num_anchor=40, num_temp_instances=20, num_output=20, num_decoder=3,
                          anchor_encoder_dims=(32, 8, 8, 16), ffn_dims=128),
        map=MapHeadConfig(num_anchor=10, num_temp_instances=3 if stage == 2 else 0, num_decoder=3, ffn_dims=128),
        motion_plan=MotionPlanConfig(num_det=10, num_map=5, ffn_dims=128, num_blocks=1) if stage == 2 else None,
    )


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    model = build_sparsedrive(2, config=tiny_config(2)).eval()
    with torch.no_grad():  # spread the anchors so that some key points land in the images
        model.head.det_head.instance_bank.anchor[:, :3].uniform_(-20, 20)
    return model


def camera_rig(batch: int = 1) -> torch.Tensor:
    """Six pinhole cameras around the lidar origin (front first), lidar -> pixels of the 192 x 64 input."""
    mats = []
    for yaw_deg in (0, -55, 55, 180, 110, -110):
        a = math.radians(yaw_deg)
        rz = torch.tensor([[math.cos(a), math.sin(a), 0.0], [-math.sin(a), math.cos(a), 0.0], [0.0, 0.0, 1.0]])
        front = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])  # lidar -> camera axes
        intrinsics = torch.tensor([[100.0, 0.0, 96.0], [0.0, 100.0, 32.0], [0.0, 0.0, 1.0]])
        mat = torch.eye(4)
        mat[:3, :3] = intrinsics @ front @ rz
        mats.append(mat)
    return torch.stack(mats)[None].expand(batch, -1, -1, -1).clone()


def frame(t: float, forward: float = 0.0, command: int = 2, seed: int = 0) -> FrameInputs:
    gen = torch.Generator().manual_seed(seed)
    pose = torch.eye(4, dtype=torch.float64)
    pose[1, 3] = forward
    return FrameInputs(
        images=torch.randn(1, 6, 3, *IMAGE_HW, generator=gen),
        projection_mat=camera_rig(),
        image_wh=torch.tensor([[IMAGE_HW[1], IMAGE_HW[0]]] * 6, dtype=torch.float32)[None],
        timestamp=torch.tensor([t], dtype=torch.float64),
        T_global=pose[None], T_global_inv=torch.linalg.inv(pose)[None],
        command=torch.tensor([command]),
    )


def test_stream_carries_state_and_masks_time_gaps(tiny_model) -> None:
    stream = SparseDriveStream(tiny_model)
    first = stream.step(frame(T0, seed=1), return_raw=True)
    assert first.temporal_valid is None and first.time_interval.tolist() == [0.5]
    assert first.raw["raw/det/instance_id"].tolist() == [list(range(40))]
    carried = stream.state.det.instance_id[0, :20].clone()
    second = stream.step(frame(T0 + 0.5, forward=2.0, seed=2), return_raw=True)
    assert second.temporal_valid.tolist() == [True]
    assert torch.equal(second.raw["raw/det/instance_id"][0, :20], carried)
    assert second.raw["raw/det/instance_id"][0, 20:].min() >= 40  # fresh instances get new ids
    assert int(second.planning.ego_period[0]) == 2 and len(second.raw) > len(first.raw)
    third = stream.step(frame(T0 + 3.5, forward=4.0, seed=3), return_raw=True)  # 3 s gap: history masked
    assert third.temporal_valid.tolist() == [False] and third.time_interval.tolist() == [0.5]
    assert third.raw["raw/det/instance_id"].min() >= 60  # nothing carried, all ids new
    assert third.raw["raw/motion/period"].max() == 1 and int(third.planning.ego_period[0]) == 1
    stream.reset()
    again = stream.step(frame(T0 + 4.0, seed=4), return_raw=True)
    assert again.temporal_valid is None and again.raw["raw/det/instance_id"].tolist() == [list(range(40))]


def test_outputs_are_finite_with_documented_shapes(tiny_model) -> None:
    stream = SparseDriveStream(tiny_model)
    for k in range(2):
        out = stream.step(frame(T0 + 0.5 * k, forward=2.0 * k, command=k, seed=k))
    det, plan = out.detections, out.planning
    assert det.boxes.shape == (1, 20, 10) and det.scores.shape == det.labels.shape == (1, 20)
    assert bool((det.scores[:, :-1] >= det.scores[:, 1:]).all())
    assert out.map.polylines.shape == (1, 10, 20, 2) and out.motion.trajs.shape == (1, 20, 6, 12, 2)
    assert out.motion.history.shape == (1, 20, 2, 10)
    assert plan.trajectories.shape == (1, 3, 6, 6, 2) and plan.final.shape == (1, 6, 2)
    assert plan.command.tolist() == [1] and plan.ego_status.shape == (1, 10)
    torch.testing.assert_close(plan.final[0], plan.trajectories[0, 1, int(plan.mode[0])])
    for value in (det.boxes, det.scores, out.map.polylines, out.motion.trajs, plan.trajectories, plan.scores):
        assert torch.isfinite(value).all()


def test_golden_export_names(tiny_model) -> None:
    stream = SparseDriveStream(tiny_model)
    stream.step(frame(T0))
    arrays = stream.step(frame(T0 + 0.5, seed=5), return_raw=True).golden_arrays()
    for name in ("post/boxes_3d", "post/cls_scores", "post/trajs_3d", "post/anchor_queue", "post/vectors",
                 "post/planning_score", "post/final_planning", "post/ego_anchor_queue", "raw/det/quality/2",
                 "raw/map/prediction/2", "raw/motion/anchor_queue/1", "raw/planning/anchor_queue/1",
                 "raw/planning/status/0", "raw/det/instance_id"):
        assert name in arrays, name
    assert arrays["post/anchor_queue"].shape == (20, 2, 10) and arrays["post/ego_anchor_queue"].shape == (1, 2, 10)
    assert arrays["post/instance_ids"].dtype.kind == "i" and arrays["post/boxes_3d"].dtype.name == "float64"


def test_streams_do_not_share_state(tiny_model) -> None:
    a, b = SparseDriveStream(tiny_model), SparseDriveStream(tiny_model)
    a.step(frame(T0))
    a.step(frame(T0 + 0.5))
    out_b = b.step(frame(T0 + 0.5))
    assert out_b.temporal_valid is None and b.state.frames_seen == 1 and a.state.frames_seen == 2


def test_optional_reset_on_large_gap_or_backwards_time(tiny_model) -> None:
    stream = SparseDriveStream(tiny_model, max_time_gap=1.0, reset_on_backwards=True)
    stream.step(frame(T0))
    assert stream.step(frame(T0 + 1.5)).temporal_valid is None  # reset before the frame
    stream.step(frame(T0 + 2.0))
    assert stream.step(frame(T0 + 1.8)).temporal_valid is None  # time went backwards


def test_invalid_inputs_raise_value_error(tiny_model) -> None:
    stream = SparseDriveStream(tiny_model)
    good = frame(T0)
    with pytest.raises(ValueError, match="images must be"):
        stream.step(FrameInputs(**{**good.__dict__, "images": good.images[:, :5]}))
    with pytest.raises(ValueError, match="timestamp must be float64"):
        stream.step(FrameInputs(**{**good.__dict__, "timestamp": good.timestamp.float()}))
    with pytest.raises(ValueError, match="command indices"):
        stream.step(FrameInputs(**{**good.__dict__, "command": torch.tensor([3])}))
    one_hot = stream.step(FrameInputs(**{**good.__dict__, "command": torch.tensor([[0.0, 1.0, 0.0]])}))
    assert one_hot.planning.command.tolist() == [1]


def test_stage1_tiny_has_no_motion_and_no_map_memory() -> None:
    torch.manual_seed(0)
    model = build_sparsedrive(1, config=tiny_config(1)).eval()
    stream = SparseDriveStream(model)
    stream.step(frame(T0))
    out = stream.step(frame(T0 + 0.5))
    assert out.motion is None and out.planning is None
    assert not stream.state.map.has_cache and stream.state.det.has_cache


def test_training_forward_reaches_every_trainable_parameter() -> None:
    torch.manual_seed(0)
    model = build_sparsedrive(2, config=tiny_config(2)).train()
    with torch.no_grad():
        model.head.det_head.instance_bank.anchor[:, :3].uniform_(-20, 20)
    state = model.new_state()
    with torch.no_grad():
        model(frame(T0), state)  # fill the temporal state first
    inputs = frame(T0 + 0.5, seed=7).to("cpu", torch.float32)
    features = model.extract_feat(inputs.images)
    det, map_out, motion = model.forward_heads(features, inputs, state)
    loss = sum(x.sum() for x in det.classification + det.prediction + det.quality + map_out.classification
               + map_out.prediction)
    loss = loss + motion.motion_cls.sum() + motion.motion_reg.sum() + motion.plan_cls.sum() \
        + motion.plan_reg.sum() + motion.plan_status.sum()
    loss.backward()
    missing = [name for name, p in model.named_parameters()
               if p.requires_grad and not name.startswith("depth_branch.") and p.grad is None]
    assert missing == []
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_frame_inputs_create_from_numpy_and_scalars(tiny_model) -> None:
    ref = frame(T0 + 0.25, forward=1.0, command=0, seed=9)
    built = FrameInputs.create(ref.images[0].numpy(), ref.projection_mat[0].numpy(), T0 + 0.25,
                               ref.T_global[0].numpy(), command=0)
    assert built.timestamp.dtype == torch.float64 and built.timestamp.tolist() == [T0 + 0.25]
    torch.testing.assert_close(built.T_global_inv, ref.T_global_inv)
    torch.testing.assert_close(built.image_wh, ref.image_wh)
    one_hot = FrameInputs.create(ref.images, ref.projection_mat, T0, ref.T_global[0], command=[0.0, 0.0, 1.0])
    assert one_hot.command.shape == (1, 3)
    out_a = SparseDriveStream(tiny_model).step(built)
    out_b = SparseDriveStream(tiny_model).step(ref)
    torch.testing.assert_close(out_a.planning.final, out_b.planning.final)
