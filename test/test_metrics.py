"""Metrics on hand-built predictions (docs/model-notes.md#evaluation)."""

import math

import numpy as np
import pytest
from external import oracle

from sparsedrive_ros.geometry.shapes import box_footprint, resample_polyline
from sparsedrive_ros.training.metrics import detection as D
from sparsedrive_ros.training.metrics.map import MapSample, chamfer_distance, evaluate_map
from sparsedrive_ros.training.metrics.motion import MotionSample, evaluate_motion
from sparsedrive_ros.training.metrics.planning import PlanningSample, boxes_overlap, evaluate_planning


def _gt_scene(num_samples=3):
    rng = np.random.default_rng(0)
    boxes = []
    for s in range(num_samples):
        for c, name in enumerate(D.DETECTION_CLASSES):
            for k in range(2):
                boxes.append(D.DetBox(
                    sample_token=f"s{s}", translation=(c * 6.0 - 25, k * 8.0 - 4, 0.5), size=(1.5, 3.0, 1.2),
                    yaw=float(rng.uniform(-3, 3)), velocity=(float(rng.uniform(-2, 2)), 0.5), name=name,
                    ego_dist=float(np.hypot(c * 6.0 - 25, k * 8.0 - 4)), num_pts=5,
                ))
    return boxes


def _as_pred(box, dx=0.0, score=0.9, **kw):
    fields = dict(box.__dict__)
    fields.update(translation=(box.translation[0] + dx, *box.translation[1:]), score=score, num_pts=-1)
    fields.update(kw)
    return D.DetBox(**fields)


def test_perfect_detections_give_map_and_nds_one():
    gt = _gt_scene()
    res = D.evaluate_detection(gt, [_as_pred(b) for b in gt])
    assert res["mAP"] == pytest.approx(1.0)
    assert res["NDS"] == pytest.approx((5 + 4) / 10)  # no GT attributes: attribute error counts as 1
    assert res["mATE"] == pytest.approx(0.0)


def test_shifted_detections_give_known_translation_error():
    gt = _gt_scene()
    res = D.evaluate_detection(gt, [_as_pred(b, dx=0.3) for b in gt])
    assert res["mAP"] == pytest.approx(1.0)
    assert res["mATE"] == pytest.approx(0.3)
    assert res["NDS"] == pytest.approx((5 + 0.7 + 3) / 10)
    # 0.7 m: missed at the 0.5 m threshold only
    res = D.evaluate_detection(gt, [_as_pred(b, dx=0.7) for b in gt])
    assert res["mAP"] == pytest.approx(0.75)


def test_orientation_and_scale_errors():
    gt = _gt_scene(1)
    preds = [_as_pred(b, yaw=b.yaw + 0.5, size=(1.5, 3.0, 0.6)) for b in gt]
    res = D.evaluate_detection(gt, preds)
    assert res["label_tp_errors"]["car"]["orient_err"] == pytest.approx(0.5)
    assert res["label_tp_errors"]["car"]["scale_err"] == pytest.approx(0.5)
    # barrier orientation has period π: a flipped barrier has no orientation error
    flipped = [_as_pred(b, yaw=b.yaw + math.pi) for b in gt]
    res = D.evaluate_detection(gt, flipped)
    assert res["label_tp_errors"]["barrier"]["orient_err"] == pytest.approx(0.0, abs=1e-9)
    assert res["label_tp_errors"]["car"]["orient_err"] == pytest.approx(math.pi)
    assert math.isnan(res["label_tp_errors"]["traffic_cone"]["orient_err"])


def test_false_positives_lower_precision_and_range_filter():
    gt = [b for b in _gt_scene(1) if b.name == "car"]
    preds = [_as_pred(b, score=0.5) for b in gt] + [
        _as_pred(b, dx=10.0, score=0.9) for b in gt  # higher-scoring false positives
    ]
    curve = D.class_curve(gt, preds, "car", 2.0)
    assert curve.precision[-1] == pytest.approx(0.5)
    far = D.DetBox("s0", (60.0, 0, 0), (1, 1, 1), 0.0, (0, 0), "car", score=1.0, ego_dist=60.0)
    assert D.keep_in_range([far], D.DetectionConfig(), is_gt=False) == []


def test_detection_matches_nuscenes_devkit():
    algo = oracle("nuscenes.eval.detection.algo")
    from nuscenes.eval.common.data_classes import EvalBoxes
    from nuscenes.eval.common.utils import center_distance
    from nuscenes.eval.detection.data_classes import DetectionBox
    from pyquaternion import Quaternion

    rng = np.random.default_rng(3)
    gt = _gt_scene(4)
    preds = [
        _as_pred(b, dx=float(rng.normal(0, 0.8)), score=float(rng.uniform()), yaw=b.yaw + float(rng.normal(0, 0.3)))
        for b in gt
        if rng.uniform() < 0.8
    ]

    def to_devkit(boxes, is_gt):
        eb = EvalBoxes()
        for token in sorted({b.sample_token for b in gt}):
            eb.add_boxes(token, [DetectionBox(
                sample_token=b.sample_token, translation=b.translation, size=b.size,
                rotation=tuple(Quaternion(axis=[0, 0, 1], angle=b.yaw).elements), velocity=b.velocity,
                ego_translation=(b.ego_dist, 0, 0), num_pts=b.num_pts, detection_name=b.name,
                detection_score=b.score if not is_gt else -1.0, attribute_name=b.attribute,
            ) for b in boxes if b.sample_token == token])
        return eb

    gt_eb, pred_eb = to_devkit(gt, True), to_devkit(preds, False)
    for cls in D.DETECTION_CLASSES:
        for th in (0.5, 2.0):
            ref = algo.accumulate(gt_eb, pred_eb, cls, center_distance, th)
            mine = D.class_curve(gt, preds, cls, th)
            assert D.average_precision(mine, 0.1, 0.1) == pytest.approx(algo.calc_ap(ref, 0.1, 0.1), abs=1e-6)
            for m in ("trans_err", "orient_err", "scale_err", "vel_err"):
                assert D.mean_tp_error(mine, m, 0.1) == pytest.approx(algo.calc_tp(ref, 0.1, m), abs=1e-6)

    # Whole-protocol aggregation: mAP, TP errors and NDS as the devkit's DetectionMetrics computes them.
    from nuscenes.eval.detection.config import config_factory
    from nuscenes.eval.detection.data_classes import DetectionMetrics

    cfg = config_factory("detection_cvpr_2019")
    metrics = DetectionMetrics(cfg)
    for cls in cfg.class_names:
        for th in cfg.dist_ths:
            metrics.add_label_ap(
                cls, th, algo.calc_ap(algo.accumulate(gt_eb, pred_eb, cls, center_distance, th), 0.1, 0.1)
            )
        ref = algo.accumulate(gt_eb, pred_eb, cls, center_distance, cfg.dist_th_tp)
        for m in ("trans_err", "scale_err", "orient_err", "vel_err", "attr_err"):
            undefined = (cls == "traffic_cone" and m in ("attr_err", "vel_err", "orient_err")) or (
                cls == "barrier" and m in ("attr_err", "vel_err"))
            metrics.add_label_tp(cls, m, np.nan if undefined else algo.calc_tp(ref, 0.1, m))
    mine = D.evaluate_detection(gt, preds)
    assert mine["mAP"] == pytest.approx(metrics.mean_ap, abs=1e-6)
    assert mine["NDS"] == pytest.approx(metrics.nd_score, abs=1e-6)
    assert mine["mATE"] == pytest.approx(metrics.tp_errors["trans_err"], abs=1e-6)
    assert mine["mAOE"] == pytest.approx(metrics.tp_errors["orient_err"], abs=1e-6)


def _line(x, y0=-10, y1=10, n=20):
    return np.stack([np.full(n, x), np.linspace(y0, y1, n)], -1)


def test_map_ap_perfect_and_shifted():
    gts = [MapSample([_line(-3), _line(3), _line(0, -5, 5)], np.array([1, 1, 2]))]
    perfect = [MapSample([_line(-3), _line(3), _line(0, -5, 5)], np.array([1, 1, 2]), np.array([0.9, 0.8, 0.7]))]
    res = evaluate_map(gts, perfect)
    assert res["class_AP"]["divider"] == pytest.approx(1.0)
    assert res["class_AP"]["ped_crossing"] == 0.0  # no GT of that class
    shifted = [MapSample([_line(-2.3), _line(3.7), _line(0.7, -5, 5)], np.array([1, 1, 2]), np.array([0.9, 0.8, 0.7]))]
    res = evaluate_map(gts, shifted)
    assert res["AP"]["divider"] == {"0.5": 0.0, "1.0": pytest.approx(1.0), "1.5": pytest.approx(1.0)}
    # a reversed polyline has the same chamfer distance
    assert chamfer_distance(resample_polyline(_line(1), 200), resample_polyline(_line(1)[::-1], 200)) == pytest.approx(
        0.0
    )


def test_map_duplicate_prediction_is_false_positive():
    gts = [MapSample([_line(0)], np.array([0]))]
    preds = [MapSample([_line(0), _line(0.1)], np.array([0, 0]), np.array([0.9, 0.8]))]
    res = evaluate_map(gts, preds)
    assert res["AP"]["ped_crossing"]["0.5"] == pytest.approx(1.0)  # envelope: precision 1 up to recall 1
    preds = [MapSample([_line(0.1), _line(0)], np.array([0, 0]), np.array([0.8, 0.9]))]
    assert evaluate_map(gts, preds)["AP"]["ped_crossing"]["0.5"] == pytest.approx(1.0)


def _motion_case(offset):
    centers = np.array([[0.0, 10.0], [5.0, 5.0]])
    fut = np.cumsum(np.tile([[0.0, 1.0]], (12, 1)), 0)[None] + centers[:, None]  # [2, 12, 2]
    gt = MotionSample(centers, np.array([0, 8]), fut, masks=np.ones((2, 12)))
    modes = np.repeat(fut[:, None], 6, axis=1) + 5.0  # five bad modes
    modes[:, 2] = fut + [offset, 0.0]
    pred = MotionSample(centers.copy(), np.array([0, 8]), modes, scores=np.array([0.9, 0.8]))
    return [gt], [pred]


def test_motion_metrics_perfect_and_offset():
    res = evaluate_motion(*_motion_case(0.0))
    assert res["car"]["min_ade"] == pytest.approx(0.0) and res["car"]["EPA"] == pytest.approx(1.0)
    res = evaluate_motion(*_motion_case(1.0))
    assert res["car"]["min_ade"] == pytest.approx(1.0)
    assert res["pedestrian"]["min_fde"] == pytest.approx(1.0)
    assert res["car"]["miss_rate"] == 0.0
    res = evaluate_motion(*_motion_case(3.0))
    assert res["car"]["miss_rate"] == 1.0 and res["car"]["EPA"] == 0.0


def test_planning_l2_and_collision():
    gt = np.stack([np.zeros(6), np.arange(1, 7) * 2.0], -1)  # straight ahead, 2 m per step
    pred = gt + [1.0, 0.0]  # 1 m to the right
    # obstacle right of the GT path at step 3 (1.5 s): the prediction hits it, the GT does not
    boxes = [np.zeros((0, 7))] * 6
    boxes[2] = np.array([[1.9, 6.5, 0, 1.0, 1.0, 1.5, 0.0]])
    res = evaluate_planning([PlanningSample(pred, gt, np.ones(6), boxes)])
    assert res["L2"]["1s"] == pytest.approx(1.0)
    assert res["obj_box_col"]["1s"] == 0.0
    assert res["obj_box_col"]["2s"] == pytest.approx(0.25)
    assert res["obj_box_col"]["3s"] == pytest.approx(1 / 6)
    assert res["obj_col"]["3s"] == 0.0
    # samples with invalid steps are skipped
    assert evaluate_planning([PlanningSample(pred, gt, np.array([1, 1, 1, 1, 1, 0]), boxes)])["num_samples"] == 0


def test_box_overlap():
    a = box_footprint(0, 0, 4, 2, 0.0)
    assert boxes_overlap(a, box_footprint(1.9, 0, 1, 1, 0.0))
    assert not boxes_overlap(a, box_footprint(2.6, 0, 1, 1, 0.0))
    assert boxes_overlap(a, box_footprint(2.6, 0, 1, 1, math.pi / 4))  # rotated corner reaches in


def test_perfect_detections_with_attributes_give_nds_one():
    gt = [D.DetBox(**{**b.__dict__, "attribute": "vehicle.moving"}) for b in _gt_scene()]
    assert D.evaluate_detection(gt, [_as_pred(b) for b in gt])["NDS"] == pytest.approx(1.0)
    wrong = [_as_pred(b, attribute="vehicle.parked") for b in gt]
    assert D.evaluate_detection(gt, wrong)["mAAE"] == pytest.approx(1.0)
