"""The float64 details that make the project's training losses equal to the original's (docs/training-losses.md).

Each test builds a small float64 case whose expected value is written out by hand from the rule, so a loss that
silently computes in float32 (or drops the epsilon of the average factor) fails here long before the golden
comparison notices.
"""

import math

import numpy as np
import pytest
import torch

from sparsedrive_ros.training import losses as L
from sparsedrive_ros.training.criterion import GroundTruth, LossConfig, SparseDriveCriterion
from sparsedrive_ros.training.trainer import disable_dropout

F64 = torch.float64
EPS32 = 2.0 ** -23  # torch.finfo(torch.float32).eps, added to every average factor


def _focal_sum(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Sum of the sigmoid focal loss (alpha 0.25, gamma 2) written out in Python floats."""
    total = 0.0
    for i in range(logits.shape[0]):
        for c in range(logits.shape[1]):
            x = float(logits[i, c])
            t = 1.0 if int(labels[i]) == c else 0.0
            p = 1.0 / (1.0 + math.exp(-x))
            pt = (1 - p) * t + p * (1 - t)
            bce = max(x, 0.0) - x * t + math.log1p(math.exp(-abs(x)))
            total += bce * (0.25 * t + 0.75 * (1 - t)) * pt ** 2
    return total


def _det_case(num_gt: int = 5, num_pred: int = 12, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    boxes = torch.cat([torch.rand(num_gt, 3, generator=g, dtype=F64) * 20 - 10,
                       torch.rand(num_gt, 3, generator=g, dtype=F64) + 1.0,
                       torch.rand(num_gt, 1, generator=g, dtype=F64) * 6 - 3,
                       torch.rand(num_gt, 2, generator=g, dtype=F64)], 1)
    labels = torch.arange(num_gt) % 4
    cls = torch.randn(1, num_pred, 10, generator=g, dtype=F64)
    reg = torch.randn(1, num_pred, 11, generator=g, dtype=F64)
    reg[0, :num_gt, :3] = boxes[:, :3] + 0.1 * torch.randn(num_gt, 3, generator=g, dtype=F64)
    qt = torch.randn(1, num_pred, 2, generator=g, dtype=F64)
    outputs = {"raw/det/classification/0": cls, "raw/det/prediction/0": reg, "raw/det/quality/0": qt}
    gt = GroundTruth(boxes=[boxes], labels=[labels], map_labels=[torch.zeros(0, dtype=torch.long)],
                     map_pts=[torch.zeros(0, 20, 2, dtype=F64)])
    return outputs, gt


def test_det_class_loss_divides_by_num_pos_plus_float32_eps_in_float64():
    outputs, gt = _det_case()
    crit = SparseDriveCriterion(LossConfig(with_map=False, with_motion_plan=False, with_depth=False))
    losses = crit(outputs, gt)
    match = crit.last_decisions
    labels = torch.full((12,), 10)
    labels[torch.as_tensor(match["match/det/0/pred_idx"])] = gt.labels[0][
        torch.as_tensor(match["match/det/0/target_idx"])
    ]
    expected = 2.0 * _focal_sum(outputs["raw/det/classification/0"][0], labels) / (5.0 + EPS32)
    got = losses["det_loss_cls_0"]
    assert got.dtype == F64
    # 5 + eps rounds to 5 in float32: a float32 avg factor would be off by 2.4e-8 relative.
    assert float(got) == pytest.approx(expected, rel=1e-13, abs=0)


def test_map_avg_factor_keeps_the_eps():
    g = torch.Generator().manual_seed(1)
    num_pred, num_gt = 10, 3
    pts = torch.rand(num_gt, 20, 2, generator=g, dtype=F64) * 20 - 10
    lines = torch.rand(1, num_pred, 40, generator=g, dtype=F64) * 20 - 10
    cls = torch.randn(1, num_pred, 3, generator=g, dtype=F64)
    outputs = {"raw/map/classification/0": cls, "raw/map/prediction/0": lines}
    gt = GroundTruth(boxes=[torch.zeros(0, 9, dtype=F64)], labels=[torch.zeros(0, dtype=torch.long)],
                     map_labels=[torch.tensor([0, 1, 2])], map_pts=[pts])
    crit = SparseDriveCriterion(LossConfig(with_det=False, with_motion_plan=False, with_depth=False))
    losses = crit(outputs, gt)
    pred_idx = torch.as_tensor(crit.last_decisions["match/map/0/pred_idx"])
    target_idx = torch.as_tensor(crit.last_decisions["match/map/0/target_idx"])
    labels = torch.full((num_pred,), 3)
    labels[pred_idx] = gt.map_labels[0][target_idx]
    expected = _focal_sum(cls[0], labels) / (3.0 + EPS32)
    assert losses["map_loss_cls_0"].dtype == F64
    assert float(losses["map_loss_cls_0"]) == pytest.approx(expected, rel=1e-13, abs=0)


def test_dense_depth_loss_stays_in_float64():
    g = torch.Generator().manual_seed(2)
    pred = [torch.rand(6, 1, 4, 5, generator=g, dtype=F64) * 70, torch.rand(6, 1, 2, 3, generator=g, dtype=F64) * 70]
    gt = [torch.rand(6, 4, 5, generator=g, dtype=F64) * 80 - 20, torch.rand(6, 2, 3, generator=g, dtype=F64) * 80 - 20]
    expected = 0.0
    for p, t in zip(pred, gt):
        p = p.permute(0, 2, 3, 1).reshape(-1).numpy()
        t = t.reshape(-1).numpy()
        valid = t > 0
        expected += np.abs(np.clip(p[valid], 0, 60) - t[valid]).sum() / (valid.sum() * 2) * 0.2
    got = L.dense_depth_loss(pred, gt)
    assert got.dtype == F64
    assert float(got) == pytest.approx(expected, rel=1e-14, abs=0)


def _bce(x: float, t: float) -> float:
    return max(x, 0.0) - x * t + math.log1p(math.exp(-abs(x)))


def test_centerness_target_is_rounded_to_float32_like_the_original_and_float64_on_request():
    g = torch.Generator().manual_seed(3)
    box = torch.randn(4, 10, generator=g, dtype=F64)
    target = box + 0.3 * torch.randn(4, 10, generator=g, dtype=F64)
    quality = torch.randn(4, 2, generator=g, dtype=F64)
    weight = torch.ones(4, 10, dtype=F64)
    cls_target = torch.zeros(4, dtype=torch.long)
    cns_target = torch.exp(-torch.linalg.norm(target[:, :3] - box[:, :3], dim=-1))
    rounded = cns_target.float().double()
    assert not torch.equal(rounded, cns_target)
    x = quality[:, 0].tolist()
    exact = sum(_bce(a, t) for a, t in zip(x, cns_target.tolist())) / (4.0 + EPS32)
    quirk = sum(_bce(a, t) for a, t in zip(x, rounded.tolist())) / (4.0 + EPS32)
    num_pos = torch.tensor(4.0, dtype=F64)
    parity = L.sparse_box3d_loss(box, target, weight, num_pos, quality, cls_target)["cns"]
    fixed = L.sparse_box3d_loss(box, target, weight, num_pos, quality, cls_target,
                                L.SparseBox3DLossConfig(cns_target_float32=False))["cns"]
    assert float(fixed) == pytest.approx(exact, rel=1e-14, abs=0)
    # The original's BCE sees a float32 target and returns float32 element losses: float32 rounding only.
    assert float(parity) == pytest.approx(quirk, rel=3e-7, abs=0)
    assert float(parity) != float(fixed)


def test_disable_dropout_turns_every_random_layer_off():
    from sparsedrive_ros.model.sparsedrive import build_sparsedrive
    from sparsedrive_ros.training.config import micro

    cfg = micro().model
    import dataclasses
    det = dataclasses.replace(cfg.det, dropout=0.1, dfa_attn_drop=0.15)
    model = build_sparsedrive(2, dataclasses.replace(cfg, det=det))
    assert disable_dropout(model) > 0
    for m in model.modules():
        assert getattr(m, "p", 0.0) == 0.0 or not isinstance(m, torch.nn.Dropout)
        assert getattr(m, "attn_drop", 0.0) == 0.0
        if hasattr(m, "in_proj_weight"):
            assert m.dropout == 0.0


def test_frame_without_ground_truth_divides_by_one_plus_eps():
    """No GT box: every prediction is background, num_pos is floored at 1 (the original's max(count, 1.0))."""
    outputs, _ = _det_case()
    gt = GroundTruth(boxes=[torch.zeros(0, 9, dtype=F64)], labels=[torch.zeros(0, dtype=torch.long)],
                     map_labels=[torch.zeros(0, dtype=torch.long)], map_pts=[torch.zeros(0, 20, 2, dtype=F64)])
    crit = SparseDriveCriterion(LossConfig(with_map=False, with_motion_plan=False, with_depth=False))
    losses = crit(outputs, gt)
    background = torch.full((12,), 10)
    expected = 2.0 * _focal_sum(outputs["raw/det/classification/0"][0], background) / (1.0 + EPS32)
    assert float(losses["det_loss_cls_0"]) == pytest.approx(expected, rel=1e-13, abs=0)
    assert float(losses["det_loss_box_0"]) == 0.0 and crit.last_decisions["match/det/0/pred_idx"].size == 0


def test_motion_avg_factor_keeps_the_eps_and_planning_takes_plain_means():
    outputs, gt = _det_case()
    g = torch.Generator().manual_seed(4)
    motion_reg = torch.randn(1, 12, 6, 12, 2, generator=g, dtype=F64)
    plan_reg = torch.randn(1, 1, 18, 6, 2, generator=g, dtype=F64)
    outputs.update({
        "raw/motion/classification/0": torch.randn(1, 12, 6, generator=g, dtype=F64),
        "raw/motion/prediction/0": motion_reg,
        "raw/planning/classification/0": torch.randn(1, 1, 18, generator=g, dtype=F64),
        "raw/planning/prediction/0": plan_reg,
        "raw/planning/status/0": torch.randn(1, 1, 10, generator=g, dtype=F64),
    })
    trajs = torch.randn(5, 12, 2, generator=g, dtype=F64)
    masks = torch.ones(5, 12, dtype=F64)
    masks[1, 7:] = 0
    gt.agent_fut_trajs, gt.agent_fut_masks = [trajs], [masks]
    gt.ego_fut_trajs = torch.randn(1, 6, 2, generator=g, dtype=F64)
    gt.ego_fut_masks = torch.tensor([[1.0, 1, 1, 1, 0, 0]], dtype=F64)
    gt.ego_fut_cmd = torch.tensor([[0.0, 1.0, 0.0]], dtype=F64)
    gt.ego_status = torch.randn(1, 10, generator=g, dtype=F64)
    crit = SparseDriveCriterion(LossConfig(with_map=False, with_depth=False))
    losses = crit(outputs, gt)
    d = crit.last_decisions
    # motion: matches of the (last) det layer; best mode by masked mean distance of cumulative positions
    expected = 0.0
    for p, t in zip(d["match/det/0/pred_idx"].tolist(), d["match/det/0/target_idx"].tolist()):
        pred = motion_reg[0, p].numpy().cumsum(-2)
        gt_cum = trajs[t].numpy().cumsum(-2)
        mask = masks[t].numpy()
        mode = int(np.argmin((np.linalg.norm(pred - gt_cum[None], axis=-1) * mask).mean(-1)))
        assert d["match/motion/0/mode_target"][p] == mode
        expected += (np.abs(pred[mode] - gt_cum) * mask[:, None]).sum()
    assert losses["motion_loss_reg_0"].dtype == F64
    assert float(losses["motion_loss_reg_0"]) == pytest.approx(0.2 * expected / (5.0 + EPS32), rel=1e-13, abs=0)
    # planning: command 1 picks modes 6..11; means over 12 offsets (no avg factor, no eps)
    modes = plan_reg[0, 0, 6:12].numpy()
    ego, ego_mask = gt.ego_fut_trajs[0].numpy(), gt.ego_fut_masks[0].numpy()
    dist = (np.linalg.norm(modes.cumsum(-2) - ego.cumsum(-2)[None], axis=-1) * ego_mask).mean(-1)
    best = int(np.argmin(dist))
    assert d["match/planning/0/cmd"].tolist() == [1] and d["match/planning/0/mode_target"].tolist() == [best]
    expected = (np.abs(modes[best] - ego) * ego_mask[:, None]).mean()
    assert float(losses["planning_loss_reg_0"]) == pytest.approx(expected, rel=1e-14, abs=0)
    status = outputs["raw/planning/status/0"][0, 0].numpy()
    assert float(losses["planning_loss_status_0"]) == pytest.approx(
        np.abs(status - gt.ego_status[0].numpy()).mean(), rel=1e-14, abs=0)
