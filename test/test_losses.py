"""Losses of SparseDrive on hand-built cases (docs/model-notes.md#backbone-and-neck; docs/training-losses.md)."""

import math

import pytest
import torch

from sparsedrive_ros.training import losses as L
from sparsedrive_ros.training.criterion import GroundTruth, LossConfig, SparseDriveCriterion


def test_focal_loss_matches_hand_formula():
    logits = torch.tensor([[0.3, -1.2], [2.0, 0.5]])
    labels = torch.tensor([1, 2])  # 2 = background
    p = logits.sigmoid()
    expected = 0.0
    for i in range(2):
        for c in range(2):
            t = 1.0 if labels[i] == c else 0.0
            pc = float(p[i, c])
            pt = (1 - pc) * t + pc * (1 - t)
            bce = -(t * math.log(pc) + (1 - t) * math.log(1 - pc))
            expected += bce * (0.25 * t + 0.75 * (1 - t)) * pt**2
    got = L.sigmoid_focal_loss(logits, labels, avg_factor=2.0, loss_weight=2.0)
    assert got.item() == pytest.approx(2.0 * expected / 2.0, rel=1e-5)
    # Without avg_factor the mean runs over all 4 elements.
    assert L.sigmoid_focal_loss(logits, labels).item() == pytest.approx(expected / 4, rel=1e-5)


def test_focal_loss_rejects_bad_shapes():
    with pytest.raises(ValueError, match="focal loss"):
        L.sigmoid_focal_loss(torch.zeros(3), torch.zeros(3, dtype=torch.long))


def _box(x, y, yaw):
    return torch.tensor([[x, y, 0.0, 1.0, 0.5, 0.2, math.sin(yaw), math.cos(yaw), 1.0, 0.0]])


def test_box_loss_zero_for_perfect_prediction_and_grows_with_error():
    target = _box(1.0, 2.0, 0.3)
    w = torch.ones(1, 10)
    big_logit = torch.tensor([[20.0, 20.0]])  # centerness -> 1, yawness -> 1
    perfect = L.sparse_box3d_loss(target.clone(), target, w, 1.0, big_logit, torch.tensor([0]))
    assert perfect["box"].item() == 0.0
    assert perfect["cns"].item() < 1e-6 and perfect["yns"].item() < 1e-6
    shifted = L.sparse_box3d_loss(_box(1.5, 2.0, 0.3), target, w, 1.0, big_logit, torch.tensor([0]))
    assert shifted["box"].item() == pytest.approx(0.25 * 0.5)
    # centerness target exp(-0.5) while predicting ~1: positive BCE
    assert shifted["cns"].item() > 1.0


def test_barrier_yaw_flip_only_for_barrier():
    pred = _box(0, 0, 0.0)
    target = _box(0, 0, math.pi)  # opposite heading
    w = torch.ones(1, 10)
    barrier = L.sparse_box3d_loss(pred, target, w, 1.0, None, torch.tensor([5]))
    car = L.sparse_box3d_loss(pred, target, w, 1.0, None, torch.tensor([0]))
    assert barrier["box"].item() == pytest.approx(0.0, abs=1e-6)
    assert car["box"].item() == pytest.approx(0.25 * 2.0, abs=1e-6)  # |Δcos| = 2


def test_gaussian_focal_loss_positive_and_negative_terms():
    prob = torch.tensor([0.8, 0.3])
    target = torch.tensor([1.0, 0.0])
    expected = -math.log(0.8) * 0.2**2 - math.log(0.7) * 0.3**2
    assert L.gaussian_focal_loss(prob, target, avg_factor=1.0).item() == pytest.approx(expected, rel=1e-5)


def test_line_loss_normalises_and_divides_by_points():
    target = torch.zeros(1, 40)
    pred = target.clone()
    pred[0, 0] = 3.0  # 3 m in x -> 0.1 of the 30 m ROI
    got = L.sparse_line_loss(pred, target, torch.ones(1, 40), avg_factor=1.0)
    d = 3.0 / (30 + 1e-5)
    assert got.item() == pytest.approx(10.0 * (d - 0.005) / 20, rel=1e-4)


def test_dense_depth_loss_ignores_empty_pixels():
    pred = [torch.full((2, 1, 2, 2), 10.0).log().exp()]
    gt = [torch.tensor([[[12.0, -1.0], [-1.0, -1.0]], [[-1.0, -1.0], [-1.0, 70.0]]])]
    # |10-12| + |10-70| over 2 valid pixels * 1 level, × 0.2; prediction is clipped to 60 but GT is not
    assert L.dense_depth_loss(pred, gt).item() == pytest.approx((2.0 + 60.0) / 2 * 0.2, rel=1e-5)


def _outputs(gt_box, num=6, layers=2, logit=5.0):
    """Raw outputs where prediction 1 equals the single GT box exactly."""
    reg = torch.zeros(1, num, 11)
    reg[..., 3:6] = 0.0
    reg[..., 7] = 1.0
    reg[0, :, 0] = torch.arange(num, dtype=torch.float32) * 10 + 20  # far away from the GT
    reg[0, 1, :10] = gt_box
    cls = torch.full((1, num, 10), -8.0)
    cls[0, 1, 0] = logit
    qt = torch.zeros(1, num, 2)
    qt[0, 1] = 20.0
    out = {}
    for d in range(layers):
        out[f"raw/det/classification/{d}"] = cls.clone().requires_grad_()
        out[f"raw/det/prediction/{d}"] = reg.clone().requires_grad_()
        out[f"raw/det/quality/{d}"] = qt.clone()
    return out


def test_criterion_det_perfect_prediction_has_zero_box_loss():
    box = torch.tensor([[1.0, 2.0, 0.5, 4.0, 2.0, 1.5, 0.3, 1.0, -0.5]])
    enc = torch.cat([box[0, :3], box[0, 3:6].log(), box[0, 6:7].sin(), box[0, 6:7].cos(), box[0, 7:9]])
    gt = GroundTruth(
        boxes=[box], labels=[torch.tensor([0])], map_labels=[torch.zeros(0)], map_pts=[torch.zeros(0, 20, 2)]
    )
    crit = SparseDriveCriterion(LossConfig(with_map=False, with_motion_plan=False))
    losses = crit(_outputs(enc), gt)
    assert set(losses) == {f"det_loss_{k}_{d}" for k in ("cls", "box", "cns", "yns") for d in range(2)}
    assert losses["det_loss_box_0"].item() == 0.0
    # A worse prediction on the matched slot raises the box loss.
    out = _outputs(enc)
    with torch.no_grad():
        out["raw/det/prediction/1"][0, 1, 0] += 1.0
    assert crit(out, gt)["det_loss_box_1"].item() == pytest.approx(0.25 * 2.0 * 1.0, rel=1e-5)
    # Gradients reach the predictions.
    total = sum(crit(out, gt).values())
    total.backward()
    assert out["raw/det/classification/0"].grad.abs().sum() > 0


def test_criterion_map_and_planning_terms():
    line = torch.stack([torch.full((20,), 3.0), torch.linspace(-10, 10, 20)], -1)  # [20, 2]
    cls = torch.full((1, 4, 3), -6.0)
    cls[0, 2, 1] = 4.0
    pred = torch.full((1, 4, 40), 12.0)
    pred[0, 2] = line.flip(0).reshape(40)  # reversed ordering of the GT: still a perfect prediction
    bsz = 1
    plan_reg = torch.zeros(bsz, 1, 18, 6, 2)
    gt_traj = torch.zeros(bsz, 6, 2)
    gt_traj[..., 1] = 2.0
    plan_reg[0, 0, 2 * 6 + 3] = gt_traj[0]  # command straight, mode 3 is exact
    outputs = {
        "raw/map/classification/0": cls, "raw/map/prediction/0": pred,
        "raw/planning/classification/0": torch.zeros(bsz, 1, 18),
        "raw/planning/prediction/0": plan_reg,
        "raw/planning/status/0": torch.ones(bsz, 1, 10),
        "raw/motion/classification/0": torch.zeros(bsz, 3, 6),
        "raw/motion/prediction/0": torch.zeros(bsz, 3, 6, 12, 2),
    }
    gt = GroundTruth(
        boxes=[torch.zeros(0, 9)], labels=[torch.zeros(0, dtype=torch.long)],
        map_labels=[torch.tensor([1])], map_pts=[line[None]],
        agent_fut_trajs=[torch.zeros(0, 12, 2)], agent_fut_masks=[torch.zeros(0, 12)],
        ego_fut_trajs=gt_traj, ego_fut_masks=torch.ones(bsz, 6), ego_fut_cmd=torch.tensor([[0.0, 0.0, 1.0]]),
        ego_status=torch.zeros(bsz, 10),
    )
    crit = SparseDriveCriterion(LossConfig(with_det=False))
    # Motion needs the det assignment; check planning and map through the public methods.
    losses = crit.map_losses(outputs, gt)
    assert losses["map_loss_line_0"].item() == pytest.approx(0.0, abs=1e-6)
    plan = crit.planning_losses(outputs, gt)
    assert plan["planning_loss_reg_0"].item() == pytest.approx(0.0, abs=1e-7)
    assert plan["planning_loss_status_0"].item() == pytest.approx(1.0)  # mean |1 - 0|
    # focal over the 6 straight modes with target mode 3, logits 0: mean over B·6 elements
    p = 0.5
    pos = -math.log(p) * 0.25 * (1 - p) ** 2
    neg = -math.log(1 - p) * 0.75 * p**2
    assert plan["planning_loss_cls_0"].item() == pytest.approx(0.5 * (pos + 5 * neg) / 6, rel=1e-5)
    with pytest.raises(ValueError, match="det assignment"):
        crit(outputs, gt)
