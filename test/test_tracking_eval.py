"""Tracking evaluation: the nuScenes tracking submission format, and the official devkit's TrackingEval as an oracle.

The devkit (with motmetrics and pandas) is the optional extra of scripts/setup_devkit.sh; it always runs in a child
process (see training/metrics/tracking.py). Without it the oracle tests skip and the evaluation says why.
"""
import math

import numpy as np
import pytest
from external import missing

from sparsedrive_ros.data.nuscenes import DETECTION_CLASSES, NuScenes, build_frame_inputs, build_ground_truth
from sparsedrive_ros.data.synthetic import SyntheticConfig, generate_dataset
from sparsedrive_ros.training.evaluation import format_table, tracking_submission_boxes
from sparsedrive_ros.training.metrics import tracking
from sparsedrive_ros.training.metrics.tracking import devkit_split, evaluate_tracking, tracking_keep_count

CAR, BARRIER, PED = (DETECTION_CLASSES.index(n) for n in ("car", "barrier", "pedestrian"))


def _pose(yaw: float, xyz) -> np.ndarray:
    t = np.eye(4)
    t[:2, :2] = [[math.cos(yaw), -math.sin(yaw)], [math.sin(yaw), math.cos(yaw)]]
    t[:3, 3] = xyz
    return t


def _rotation_matrix(q) -> np.ndarray:
    w, x, y, z = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def test_submission_boxes_global_frame_sizes_quaternion_and_stable_ids():
    lidar_to_ego = _pose(0.0, [0.9, 0.0, 1.8])
    # Two frames; the same two objects come back in a different order (as sorted by score) with the same ids.
    frames = []
    for k, t_global in enumerate([_pose(math.pi / 6, [100.0, 50.0, 0.0]), _pose(math.pi / 5, [101.0, 51.0, 0.0])]):
        car = [10.0 + k, 2.0, -0.5, 4.5, 1.9, 1.6, 0.25, 3.0, 0.0]  # x y z l w h yaw vx vy (lidar frame)
        ped = [5.0, -3.0, -0.8, 0.7, 0.6, 1.8, -1.0, 0.0, 1.0]
        rows, labels, ids = ([car, ped], [CAR, PED], [7, 3]) if k == 0 else ([ped, car], [PED, CAR], [3, 7])
        out = tracking_submission_boxes(f"s{k}", np.array(rows), np.array(labels), np.array([0.9, 0.8]),
                                        np.array([0.95, 0.9]), np.array(ids), t_global, lidar_to_ego)
        frames.append({b["tracking_name"]: b for b in out})
        car_box = frames[-1]["car"]
        assert car_box["sample_token"] == f"s{k}" and car_box["tracking_id"] == "7"
        assert frames[-1]["pedestrian"]["tracking_id"] == "3"
        assert car_box["size"] == pytest.approx([1.9, 4.5, 1.6])  # (w, l, h)
        np.testing.assert_allclose(car_box["translation"], t_global[:3, :3] @ car[:3] + t_global[:3, 3])
        yaw = 0.25 + math.atan2(t_global[1, 0], t_global[0, 0])
        assert car_box["rotation"] == pytest.approx([math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)])
        np.testing.assert_allclose(_rotation_matrix(car_box["rotation"])[:2, 0], [math.cos(yaw), math.sin(yaw)])
        np.testing.assert_allclose(car_box["velocity"], 3.0 * t_global[:2, 0])
        assert car_box["tracking_score"] == pytest.approx(0.9 if k == 0 else 0.8)
    assert frames[0]["car"]["tracking_id"] == frames[1]["car"]["tracking_id"]


def test_untracked_classes_and_the_originals_class_score_threshold():
    boxes = np.zeros((4, 9))
    boxes[:, 3:6] = 1.0
    # Sorted by final score; class scores are not monotone. The original keeps the first #(cls >= 0.2) = 2.
    cls_scores = np.array([0.9, 0.1, 0.5, 0.15])
    out = tracking_submission_boxes("s", boxes, np.array([CAR, PED, BARRIER, CAR]), np.array([0.5, 0.4, 0.3, 0.2]),
                                    cls_scores, np.arange(4), np.eye(4), np.eye(4))
    assert tracking_keep_count(cls_scores) == 2
    assert [b["tracking_id"] for b in out] == ["0", "1"]
    out = tracking_submission_boxes("s", boxes, np.array([CAR, BARRIER, CAR, CAR]), np.ones(4), np.ones(4),
                                    np.arange(4), np.eye(4), np.eye(4))
    assert [b["tracking_id"] for b in out] == ["0", "2", "3"]  # barrier is not a tracking class


def test_devkit_split_matches_scenes_present():
    splits = {"mini_val": ["scene-0103", "scene-0916"], "mini_train": ["scene-0061", "scene-0553"],
              "val": ["scene-0003"], "train": ["scene-0001"]}
    present = ["scene-0103", "scene-0061", "scene-0553"]
    assert devkit_split(splits, "v1.0-mini", ["scene-0103"], present) == "mini_val"
    assert devkit_split(splits, "v1.0-mini", ["scene-0061", "scene-0553"], present) == "mini_train"
    assert devkit_split(splits, "v1.0-mini", present, present) is None  # 'all' is no devkit split
    assert devkit_split(splits, "v1.0-trainval", ["scene-0003"], ["scene-0003", "scene-0001"]) == "val"


def test_missing_devkit_extra_is_skipped_with_a_reason(monkeypatch):
    monkeypatch.setattr(tracking, "DEVKIT_MODULES", ("nuscenes", "sparsedrive_no_such_module"))
    res = evaluate_tracking({"s": []}, "/nonexistent", "v1.0-mini", ["scene-0103"], ["scene-0103"])
    assert set(res) == {"skipped"} and "sparsedrive_no_such_module" in res["skipped"]
    table = format_table({
        "detection": {"NDS": 0.5, "mAP": 0.4, "mATE": 0.6, "mASE": 0.3, "mAOE": 0.5, "mAVE": 0.4, "mAAE": 0.2},
        "map": {"mAP": 0.55, "class_AP": {}}, "tracking": res})
    assert "tracking skipped" in table and "setup_devkit" in table
    monkeypatch.setattr(tracking, "DEVKIT_MODULES", ())
    res = evaluate_tracking({"s": []}, "/nonexistent", "v1.0-mini", ["scene-0103"], ["scene-0103"])
    assert set(res) == {"skipped"} and "empty submission" in res["skipped"]  # an untrained model's output
    table = format_table({
        "detection": {"NDS": 0.5, "mAP": 0.4, "mATE": 0.6, "mASE": 0.3, "mAOE": 0.5, "mAVE": 0.4, "mAAE": 0.2},
        "map": {"mAP": 0.55, "class_AP": {}}, "tracking": {"AMOTA": 0.25, "AMOTP": 1.5, "RECALL": 0.4, "MOTAR": 0.6,
                                                           "MOTA": 0.2, "MOTP": 0.8, "IDS": 12.0, "FRAG": 3.0}})
    assert "AMOTA" in table and "0.2500" in table and "12.0000" in table


# ----------------------------------------------------------------------------------------------- devkit oracle

def _require_devkit() -> None:
    absent = tracking._missing_modules()
    if absent:
        missing(f"optional devkit extra missing ({', '.join(absent)}): make setup-devkit")


@pytest.fixture(scope="module")
def gt_frames(tmp_path_factory):
    """Synthetic val scenes (mini_val names) and, per sample, the GT as 'detections' with the instance index as id."""
    root = tmp_path_factory.mktemp("tracking_data")
    ds = generate_dataset(root, SyntheticConfig(seconds=3.0, num_scenes=2, render_images=False))
    nusc = NuScenes(ds.dataroot, ds.version)
    scenes = [s["name"] for s in nusc.scenes]
    frames = []  # (scene name, token, boxes [K, 9], labels, ids, T_global, lidar_to_ego)
    for scene in nusc.scenes:
        for sample in nusc.scene_samples(scene):
            gt, inputs = build_ground_truth(nusc, sample), build_frame_inputs(nusc, sample)
            keep = (gt.labels >= 0) & gt.valid_flag  # the devkit drops GT without points
            boxes = np.concatenate([gt.boxes, np.nan_to_num(gt.velocities)], axis=1)[keep]
            frames.append((scene["name"], sample["token"], boxes, gt.labels[keep], gt.instance_ids[keep],
                           inputs.T_global, inputs.lidar_to_ego))
    return nusc, scenes, frames


def _submission(frames, relabel=lambda scene, index, ids: ids) -> dict:
    results, index = {}, {}
    for scene, token, boxes, labels, ids, t_global, lidar_to_ego in frames:
        index[scene] = index.get(scene, -1) + 1
        ones = np.ones(len(boxes))
        results[token] = tracking_submission_boxes(token, boxes, labels, ones, ones, relabel(scene, index[scene], ids),
                                                   t_global, lidar_to_ego)
    return results


def test_devkit_scores_gt_tracks_as_perfect(gt_frames, tmp_path):
    _require_devkit()
    nusc, scenes, frames = gt_frames
    res = evaluate_tracking(_submission(frames), nusc.dataroot, nusc.version, scenes, scenes, work_dir=tmp_path)
    assert "skipped" not in res, res
    assert res["eval_set"] == "mini_val" and res["GT"] > 10
    assert res["AMOTA"] == pytest.approx(1.0, abs=1e-6) and res["MOTA"] == pytest.approx(1.0, abs=1e-6)
    assert res["RECALL"] == pytest.approx(1.0) and res["AMOTP"] < 1e-3
    assert res["IDS"] == 0 and res["FRAG"] == 0 and res["FP"] == 0 and res["FN"] == 0


def test_devkit_counts_swapped_track_ids(gt_frames, tmp_path):
    """Two cars of scene-0103 exchange their track ids halfway: 2 identity switches, AMOTA below 1."""
    _require_devkit()
    nusc, scenes, frames = gt_frames
    first = [f for f in frames if f[0] == "scene-0103"]
    common = set.intersection(*(set(ids[labels == CAR].tolist()) for _, _, _, labels, ids, _, _ in first))
    a, b = sorted(common)[:2]
    half = len(first) // 2

    def swap(scene, index, ids):
        if scene != "scene-0103" or index < half:
            return ids
        return np.where(ids == a, b, np.where(ids == b, a, ids))

    res = evaluate_tracking(_submission(frames, swap), nusc.dataroot, nusc.version, scenes, scenes,
                            work_dir=tmp_path)
    assert "skipped" not in res, res
    assert res["IDS"] == 2 and res["AMOTA"] < 1.0
    assert res["RECALL"] == pytest.approx(1.0) and res["FP"] == 0


def test_devkit_failure_is_reported_not_raised(gt_frames, tmp_path):
    """Scenes that form no devkit split (train + val together): skipped with the child's message."""
    _require_devkit()
    nusc, scenes, frames = gt_frames
    both = scenes + ["scene-0061"]
    res = evaluate_tracking(_submission(frames), nusc.dataroot, nusc.version, both, both)
    assert set(res) == {"skipped"} and "not a predefined devkit split" in res["skipped"]


def test_evaluate_model_submits_every_sample_with_carried_ids(tmp_path, monkeypatch):
    """Wiring: evaluate_model(tracking=True) hands the devkit one entry per sample, with the instance bank's ids.

    The micro network is untrained; its det class bias is raised so that detections pass the 0.2 threshold.
    """
    import torch

    from sparsedrive_ros.model.sparsedrive import build_sparsedrive
    from sparsedrive_ros.training import evaluation
    from sparsedrive_ros.training.config import get_config

    ds = generate_dataset(tmp_path, SyntheticConfig(seconds=1.0, num_scenes=1, width=160, height=90))
    nusc = NuScenes(ds.dataroot, ds.version)
    cfg = get_config("micro").model
    torch.manual_seed(0)
    model = build_sparsedrive(cfg.stage, cfg)
    with torch.no_grad():
        for name, module in model.named_modules():
            if name.startswith("det") and name.endswith("cls_layers"):
                module[-1].bias.fill_(5.0)
    seen = {}

    def fake_devkit(results, dataroot, version, scenes, dataset_scenes, **kwargs):
        seen.update(results=results, scenes=list(scenes), version=version)
        return {"skipped": "captured"}

    monkeypatch.setattr(evaluation, "evaluate_tracking", fake_devkit)
    res = evaluation.evaluate_model(model, nusc, ["scene-0103"], tracking=True)
    assert res["tracking"] == {"skipped": "captured"} and seen["scenes"] == ["scene-0103"]
    tokens = [s["token"] for s in nusc.scene_samples(nusc.scene("scene-0103"))]
    assert list(seen["results"]) == tokens
    ids = [{b["tracking_id"] for b in seen["results"][t]} for t in tokens]
    assert all(ids) and all(len(i) == len(seen["results"][t]) for i, t in zip(ids, tokens))  # unique per frame
    assert ids[0] & ids[1] and ids[1] & ids[2]  # carried instances keep their track ids
    for boxes in seen["results"].values():
        assert {b["tracking_name"] for b in boxes} <= set(tracking.TRACKING_CLASSES)
    res = evaluation.evaluate_model(model, nusc, ["scene-0103"], max_frames=1, tracking=True)
    assert "max_frames" in res["tracking"]["skipped"]
