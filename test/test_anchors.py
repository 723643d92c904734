"""k-means anchors (docs/model-notes.md#anchors) on hand-built ground truth, their files, and backbone gradient
checkpointing."""

import numpy as np
import pytest
import torch

from sparsedrive_ros.model.sparsedrive import build_sparsedrive
from sparsedrive_ros.training.anchors import (
    DET_TAIL,
    Anchors,
    apply_anchors,
    compute_anchors,
    kmeans,
    load_anchors,
    save_anchors,
)
from sparsedrive_ros.training.config import get_config


@pytest.fixture(scope="module")
def micro_model():
    cfg = get_config("micro")
    return build_sparsedrive(cfg.model.stage, cfg.model)


def test_kmeans_finds_separated_blobs():
    rng = np.random.default_rng(0)
    truth = np.array([[0.0, 0.0], [20.0, 5.0], [-10.0, 30.0]])
    points = np.concatenate([c + rng.normal(0, 0.3, (50, 2)) for c in truth])
    centres = kmeans(points, 3, seed=1)
    for c in truth:
        assert np.min(np.linalg.norm(centres - c, axis=1)) < 0.2
    with pytest.raises(ValueError, match="at least k=4"):
        kmeans(points[:3], 4)


def _frames(num_det_anchors):
    """Box centres on a grid of exactly ``num_det_anchors`` spots; six cars of class 0 heading +y (yaw pi/2) at
    six speeds; map polylines around two centres; ego futures straight ahead at six speeds, command 2."""
    spots = np.stack(np.meshgrid(np.arange(8) * 6.0 - 20.0, np.arange(num_det_anchors // 8) * 7.0 - 10.0),
                     -1).reshape(-1, 2)
    frames = []
    for i, speed in enumerate((0.0, 2.0, 4.0, 6.0, 8.0, 10.0)):
        boxes = np.zeros((len(spots), 9))
        boxes[:, :2], boxes[:, 2] = spots, -1.0
        boxes[:, 6] = np.pi / 2
        labels = np.full(len(spots), 3)  # bus: only one distinct path (all parked) -> stand-ins
        labels[:6] = 0
        fut = np.zeros((len(spots), 12, 2))
        fut[:6, :, 1] = speed * 0.5  # per-step offsets along +y = the cars' heading
        masks = np.ones((len(spots), 12))
        line = np.stack([np.linspace(-3, 3, 20), np.full(20, 10.0 * (i % 2))], -1)
        frames.append({
            "boxes": boxes, "labels": labels, "agent_fut_trajs": fut, "agent_fut_masks": masks,
            "map_pts": line[None], "ego_fut_trajs": np.tile([0.0, speed * 0.5], (6, 1)),
            "ego_fut_masks": np.ones(6), "command": 2,
        })
    return frames, spots


def test_compute_anchors_from_hand_built_ground_truth(micro_model):
    n_det = micro_model.head.det_head.instance_bank.anchor.shape[0]
    frames, spots = _frames(n_det)
    a = compute_anchors(frames, micro_model, seed=0)

    # det: one anchor per grid spot, the constant tail after the centre.
    assert a.det.shape == (n_det, 11)
    got = sorted(map(tuple, np.round(a.det[:, :2], 6)))
    assert got == sorted(map(tuple, np.round(spots, 6)))
    np.testing.assert_allclose(a.det[:, 2], -1.0)
    np.testing.assert_allclose(a.det[:, 3:], np.tile(DET_TAIL, (n_det, 1)))

    # map: 2 distinct polyline means for more anchors -> both found, 8 m segments along +y; the rest stand-ins.
    n_map = micro_model.head.map_head.instance_bank.anchor.shape[0]
    seg_centres = sorted(map(tuple, np.round(a.map[:2].mean(axis=1), 6)))
    assert seg_centres == [(0.0, 0.0), (0.0, 10.0)]
    np.testing.assert_allclose(a.map[:2, -1, 1] - a.map[:2, 0, 1], 8.0)
    np.testing.assert_allclose(a.map[:2, :, 0], a.map[:2, :1, 0].repeat(a.map.shape[1], 1))
    assert any(note.startswith(f"map: 6 polylines for {n_map} anchors") for note in a.notes)

    # motion: cars heading +y drive along +x of their own frame; final positions = speed * 6 s.
    final = np.sort(a.motion[0, :, -1, 0])
    np.testing.assert_allclose(final, [0.0, 12.0, 24.0, 36.0, 48.0, 60.0], atol=1e-9)
    np.testing.assert_allclose(a.motion[0, :, :, 1], 0.0, atol=1e-9)
    stand_in = micro_model.head.motion_plan_head.motion_anchor.detach().double().numpy()
    np.testing.assert_array_equal(a.motion[3], stand_in[3])
    assert any(note.startswith("motion class 3: 1 distinct") for note in a.notes)

    # plan: command 2 gets the six straight paths (lidar frame, forward = +y); commands 0/1 keep stand-ins.
    np.testing.assert_allclose(np.sort(a.plan[2, :, -1, 1]), [0.0, 6.0, 12.0, 18.0, 24.0, 30.0], atol=1e-9)
    plan_stand_in = micro_model.head.motion_plan_head.plan_anchor.detach().double().numpy()
    np.testing.assert_array_equal(a.plan[:2], plan_stand_in[:2])


def test_too_few_boxes_keep_stand_in_det_anchors(micro_model):
    frames, _ = _frames(micro_model.head.det_head.instance_bank.anchor.shape[0])
    for f in frames:
        f["boxes"], f["labels"] = f["boxes"][:5], f["labels"][:5]
        f["agent_fut_trajs"], f["agent_fut_masks"] = f["agent_fut_trajs"][:5], f["agent_fut_masks"][:5]
    a = compute_anchors(frames, micro_model)
    stand_in = micro_model.head.det_head.instance_bank.anchor.detach().double().numpy()
    np.testing.assert_array_equal(a.det[5:], stand_in[5:])
    assert any("det: 30 box centres" in note for note in a.notes)


def test_anchor_files_round_trip_and_apply(tmp_path):
    cfg = get_config("micro")
    model = build_sparsedrive(cfg.model.stage, cfg.model)
    frames, _ = _frames(model.head.det_head.instance_bank.anchor.shape[0])
    a = compute_anchors(frames, model)
    paths = save_anchors(a, tmp_path)
    assert sorted(p.name for p in paths) == ["kmeans_det_32.npy", "kmeans_map_8.npy", "kmeans_motion_6.npy",
                                             "kmeans_plan_6.npy"]
    loaded = load_anchors(tmp_path, model)
    apply_anchors(model, loaded)
    head = model.head
    np.testing.assert_allclose(head.det_head.instance_bank.anchor.detach().numpy(), a.det, rtol=1e-6)
    np.testing.assert_allclose(head.map_head.instance_bank.anchor.detach().numpy(), a.map.reshape(8, -1), rtol=1e-6)
    np.testing.assert_allclose(head.motion_plan_head.plan_anchor.detach().numpy(), a.plan, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="does not fit"):
        apply_anchors(model, Anchors(det=np.zeros((7, 11))))
    with pytest.raises(FileNotFoundError, match="no anchor file"):
        (tmp_path / "empty").mkdir()
        load_anchors(tmp_path / "empty", model)


def test_backbone_gradient_checkpointing_keeps_gradients():
    cfg = get_config("micro")
    torch.manual_seed(0)
    model = build_sparsedrive(cfg.model.stage, cfg.model).train()
    x = torch.randn(2, 3, 64, 192)
    grads = []
    for checkpointed in (False, True):
        model.zero_grad()
        model.img_backbone.grad_checkpoint = checkpointed
        outs = model.img_backbone(x)
        sum((o.square().mean() for o in outs)).backward()
        grads.append({k: p.grad.clone() for k, p in model.img_backbone.named_parameters()})
    assert grads[0].keys() == grads[1].keys()
    for k in grads[0]:
        torch.testing.assert_close(grads[1][k], grads[0][k], rtol=1e-5, atol=1e-6, msg=k)
