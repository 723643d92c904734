"""Hungarian targets and mode targets on hand-built cases (docs/training-losses.md)."""

import math

import pytest
import torch

from sparsedrive_ros.training import targets as T


def _gt_boxes():
    # [x, y, z, l, w, h, yaw, vx, vy], lidar frame
    return torch.tensor(
        [[5.0, 10.0, 0.0, 4.0, 2.0, 1.5, 0.2, 1.0, 0.0], [-8.0, 3.0, 0.5, 0.5, 0.5, 1.0, 1.0, 0.0, 0.0]]
    )


def _pred_from(enc):
    return torch.cat([enc, torch.zeros(enc.shape[0], 1)], -1)


def test_encode_box_target_layout():
    enc = T.encode_box_target(_gt_boxes())
    assert enc.shape == (2, 10)
    assert enc[0, 3].item() == pytest.approx(math.log(4.0))
    assert enc[0, 6].item() == pytest.approx(math.sin(0.2))  # sin before cos
    assert enc[0, 7].item() == pytest.approx(math.cos(0.2))
    with pytest.raises(ValueError, match="GT boxes"):
        T.encode_box_target(torch.zeros(2, 7))


def test_det_assignment_picks_the_matching_predictions_and_swap_costs_more():
    gt = _gt_boxes()
    labels = torch.tensor([0, 8])
    enc = T.encode_box_target(gt)
    # predictions 0..3: pred 2 = GT 1, pred 3 = GT 0, others far away
    preds = torch.zeros(4, 11)
    preds[:, 0] = torch.tensor([40.0, -40.0, 0.0, 0.0])
    preds[2], preds[3] = _pred_from(enc[1:2])[0], _pred_from(enc[0:1])[0]
    logits = torch.full((4, 10), -3.0)
    logits[2, 8] = 2.0
    logits[3, 0] = 2.0
    out = T.assign_det(logits[None], preds[None], [labels], [gt])
    match = dict(zip(out.assignments[0].pred_idx.tolist(), out.assignments[0].gt_idx.tolist()))
    assert match == {2: 1, 3: 0}
    assert out.cls_target[0].tolist() == [10, 10, 8, 0]
    torch.testing.assert_close(out.box_target[0, 3], enc[0])
    # Total cost of the chosen matching is lower than the swapped one.
    w = torch.ones(2, 10)
    cost = T.det_focal_cost(logits, labels) + T.det_box_cost(preds[:, :10], enc, w)
    assert cost[2, 1] + cost[3, 0] < cost[2, 0] + cost[3, 1]


def test_traffic_cone_has_no_yaw_weight():
    gt = torch.tensor([[1.0, 1.0, 0.0, 0.3, 0.3, 0.7, 0.4, 0.0, 0.0]])
    out = T.assign_det(torch.zeros(1, 3, 10), torch.zeros(1, 3, 11), [torch.tensor([9])], [gt])
    pred = out.assignments[0].pred_idx.item()
    assert out.reg_weights[0, pred].tolist() == [2, 2, 2, 1, 1, 1, 0, 0, 1, 1]


def test_empty_gt_gives_all_background():
    out = T.assign_det(
        torch.zeros(1, 5, 10), torch.zeros(1, 5, 11), [torch.zeros(0, dtype=torch.long)], [torch.zeros(0, 9)]
    )
    assert (out.cls_target == 10).all() and (out.reg_weights == 0).all()


def test_polyline_permutations_open_and_closed():
    line = torch.stack([torch.linspace(0, 1, 5), torch.zeros(5)], -1)
    perms, valid = T.polyline_permutations(line[None])
    assert perms.shape == (1, 8, 5, 2) and valid[0].tolist() == [True, True] + [False] * 6
    torch.testing.assert_close(perms[0, 1], line.flip(0))
    square = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 0.0]])
    perms, valid = T.polyline_permutations(square[None])
    assert valid.all()
    # every ordering is closed and visits the same 4 corners
    assert torch.equal(perms[0, :, 0], perms[0, :, -1])
    assert {tuple(p) for p in perms[0, 5, :4].tolist()} == {tuple(p) for p in square[:4].tolist()}


def test_map_assignment_chooses_reversed_ordering():
    gt = torch.stack([torch.full((20,), 2.0), torch.linspace(-10, 10, 20)], -1)  # open line along +y
    pred_line = gt.flip(0).reshape(1, 40) + 0.01  # predicted in the reverse direction
    preds = torch.cat([pred_line, torch.full((1, 40), 12.0)])  # second prediction far away
    logits = torch.zeros(2, 3)
    out = T.assign_map(logits[None], preds[None], [torch.tensor([1])], [gt[None]])
    assert out.assignments[0].pred_idx.tolist() == [0]
    torch.testing.assert_close(out.line_target[0, 0], gt.flip(0).reshape(40))
    assert out.cls_target[0].tolist() == [1, 3]
    # the chosen ordering's cost is far below the forward ordering's
    perms = T.polyline_permutations(gt[None])[0].flatten(-2)
    from sparsedrive_ros.training.losses import normalize_map_points
    cost, perm = T.lines_l1_cost(normalize_map_points(pred_line), normalize_map_points(perms))
    assert perm.item() == 1


def test_planning_target_uses_command_modes_and_best_mode():
    bsz, modes, steps = 2, 6, 6
    reg = torch.zeros(bsz, 1, 3 * modes, steps, 2)
    cls = torch.arange(3 * modes, dtype=torch.float32).repeat(bsz, 1)[:, None]
    gt = torch.zeros(bsz, steps, 2)
    gt[..., 1] = 1.0  # 1 m forward per step
    # sample 0: command left (1), mode 4 of the left block matches; sample 1: straight (2), mode 2
    reg[0, 0, 1 * modes + 4, :, 1] = 1.0
    reg[1, 0, 2 * modes + 2, :, 1] = 1.0
    reg[0, 0, 2 * modes + 0, :, 1] = 1.0  # a perfect mode under another command must be ignored
    cmd = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    tgt = T.planning_targets(cls, reg, gt, torch.ones(bsz, steps), cmd)
    assert tgt.cls_target.tolist() == [4, 2]
    assert tgt.cls[0].tolist() == list(range(6, 12)) and tgt.cls[1].tolist() == list(range(12, 18))
    torch.testing.assert_close(tgt.best_reg, gt)
    with pytest.raises(ValueError, match="command"):
        T.planning_targets(cls, reg, gt, torch.ones(bsz, steps), torch.zeros(bsz, 4))


def test_motion_target_follows_det_assignment():
    reg = torch.zeros(1, 3, 6, 12, 2)
    reg[0, 2, 5, :, 0] = 0.5
    gt = torch.zeros(1, 12, 2)
    gt[0, :, 0] = 0.5
    mask = torch.ones(1, 12)
    mask[0, 8:] = 0
    match = [T.Assignment(torch.tensor([2]), torch.tensor([0]))]
    tgt = T.motion_targets(reg, [gt], [mask], match)
    assert tgt.cls_target[0, 2].item() == 5
    assert tgt.cls_weight[0].tolist() == [0, 0, 1]
    assert tgt.num_pos.item() == 1
    torch.testing.assert_close(tgt.reg_weight[0, 2], mask[0])
