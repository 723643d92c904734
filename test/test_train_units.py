"""Trainer building blocks: schedule, optimiser groups, augmentation geometry, GridMask, depth maps, GT
conversion, configs and checkpoints (fast, no training)."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from sparsedrive_ros.data.nuscenes import FrameGroundTruth
from sparsedrive_ros.geometry.shapes import resample_polyline
from sparsedrive_ros.training import augment as A
from sparsedrive_ros.training.config import config_to_dict, get_config, model_config_from_dict
from sparsedrive_ros.training.dataset import filter_gt
from sparsedrive_ros.training.trainer import build_optimizer, lr_factor


def test_lr_schedule_warmup_and_cosine():
    def f(step):
        return lr_factor(step, 1000, 100, 1 / 3, 1e-3)

    assert f(0) == pytest.approx(1 / 3, rel=1e-3)  # warm-up starts at lr/3
    assert f(50) == pytest.approx((1 - (2 / 3) * 0.5) * (1e-3 + (1 - 1e-3) * 0.5 * (1 + math.cos(math.pi * 0.05))))
    assert f(100) == pytest.approx(1e-3 + (1 - 1e-3) * 0.5 * (1 + math.cos(math.pi * 0.1)))
    assert f(1000) == pytest.approx(1e-3)
    assert all(f(s) >= f(s + 1) for s in range(100, 999))


def test_optimizer_backbone_multiplier():
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.img_backbone = torch.nn.Linear(2, 2)
            self.head = torch.nn.Linear(2, 2)

    opt = build_optimizer(Net(), lr=4e-4, weight_decay=1e-3, backbone_lr_mult=0.5)
    lrs = sorted(g["lr"] for g in opt.param_groups)
    assert lrs == [pytest.approx(2e-4), pytest.approx(4e-4)]
    assert all(g["weight_decay"] == 1e-3 for g in opt.param_groups)


def test_test_time_aug_matches_the_original_matrix():
    aug = A.test_image_aug((900, 1600))
    assert aug.resize == pytest.approx(0.44) and aug.crop == (0, 140, 704, 396)
    expected = np.array([[0.44, 0, 0, 0], [0, 0.44, -140, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    np.testing.assert_allclose(A.image_aug_matrix(aug), expected, atol=1e-12)


@pytest.mark.parametrize("flip,rot", [(False, 0.0), (True, 0.0), (True, 4.0), (False, -5.0)])
def test_warped_image_agrees_with_projection_update(flip, rot):
    """A bright dot at a source pixel must appear where the updated projection sends it."""
    src = np.zeros((225, 400, 3), np.uint8)
    u, v = 230, 170
    src[v - 3:v + 4, u - 3:u + 4] = 255
    cfg = A.AugConfig(final_hw=(64, 192))
    base = A.test_image_aug((225, 400), cfg)
    aug = A.ImageAug(base.resize * 1.05, (10, 50, 202, 114), flip, rot)
    out = A.apply_image_aug(src, aug, cfg.final_hw)
    mat = A.image_aug_matrix(aug)
    depth = 3.0  # a projection yields (u·d, v·d, d, 1); the update must hold for any depth
    p = mat @ np.array([u * depth, v * depth, depth, 1.0])
    p = p[:2] / p[2]
    ys, xs = np.nonzero(out[..., 0] > 60)
    assert len(xs) > 0
    assert abs(xs.mean() - p[0]) < 1.0 and abs(ys.mean() - p[1]) < 1.0


def test_random_aug_stays_within_limits():
    rng = np.random.default_rng(0)
    for _ in range(20):
        aug = A.sample_image_aug(rng, (900, 1600))
        assert 0.40 - 1e-9 <= aug.resize <= 0.47 + 1e-9
        assert -5.4 <= aug.rotate_deg <= 5.4
        assert aug.crop[2] - aug.crop[0] == 704 and aug.crop[3] - aug.crop[1] == 256
        assert aug.crop[3] == int(1600 * aug.resize * 900 / 1600)  # bottom rows kept


def test_photometric_distortion_keeps_shape_and_changes_values():
    img = np.full((8, 8, 3), 100.0, np.float32)
    img[:, :, 0] = 50
    outs = [A.photometric_distortion(img, np.random.default_rng(s)) for s in range(8)]
    assert all(o.shape == img.shape and o.dtype == np.float32 for o in outs)
    assert any(not np.allclose(o, img, atol=1e-3) for o in outs)


def test_grid_mask_zeroes_squares_between_bands():
    x = torch.ones(2, 6, 3, 64, 96)
    masked = A.grid_mask(x, np.random.default_rng(3), prob=1.0)
    frac = masked.mean().item()
    assert 0.0 < frac < 1.0
    assert torch.equal(masked[0, 0, 0], masked[1, 5, 2])  # one mask for the whole batch
    assert torch.equal(A.grid_mask(x, np.random.default_rng(3), prob=0.0), x)


def test_depth_maps_project_and_keep_nearest():
    proj = np.eye(4)[None].copy()
    proj[0, :3, :3] = [[10, 0, 32], [0, 10, 16], [0, 0, 1]]  # camera looking along +z
    points = np.array([[0.0, 0.0, 5.0], [0.0, 0.0, 2.0], [0.0, 0.0, -3.0], [100.0, 0.0, 1.0]], np.float32)
    maps = A.depth_maps(points, proj, (32, 64), (4, 8))
    assert maps[0].shape == (1, 8, 16) and maps[1].shape == (1, 4, 8)
    assert maps[0][0, 4, 8] == pytest.approx(2.0)  # nearer point wins the pixel
    assert (maps[0] > 0).sum() == 1  # behind-camera and out-of-image points dropped


def test_resample_polyline_and_closed_rings():
    line = np.array([[0.0, 0.0], [0.0, 10.0], [5.0, 10.0]])
    out = resample_polyline(line, 4)
    np.testing.assert_allclose(out[-1], [5.0, 10.0])
    np.testing.assert_allclose(np.linalg.norm(np.diff(out, axis=0), axis=1), 5.0, atol=1e-9)
    ring = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    out = resample_polyline(ring, 20)
    assert np.array_equal(out[0], out[-1])


def _gt(boxes, labels, pts, vel=None):
    k = len(boxes)
    return FrameGroundTruth(
        boxes=np.asarray(boxes, float),
        velocities=np.zeros((k, 2)) if vel is None else np.asarray(vel, float),
        names=tuple("car" for _ in range(k)),
        labels=np.asarray(labels),
        instance_tokens=tuple(str(i) for i in range(k)),
        instance_ids=np.arange(k),
        num_lidar_pts=np.asarray(pts),
        num_radar_pts=np.zeros(k, int),
        agent_fut_trajs=np.zeros((k, 12, 2)),
        agent_fut_masks=np.ones((k, 12)),
        ego_fut_trajs=np.zeros((6, 2)),
        ego_fut_masks=np.ones(6),
        ego_fut_cmd=np.array([0.0, 0.0, 1.0]),
        map_polylines={"divider": [np.array([[0.0, -10.0], [0.0, 10.0]])], "boundary": [np.zeros((1, 2))]},
    )


def test_filter_gt_applies_the_training_filters():
    boxes = [[1, 2, 0, 4, 2, 1.5, 0.1], [60, 0, 0, 4, 2, 1.5, 0], [3, 3, 0, 1, 1, 1, 0], [5, 5, 0, 1, 1, 1, 0]]
    out = filter_gt(_gt(boxes, [0, 0, -1, 8], [5, 5, 5, 0], vel=[[1, 2], [0, 0], [0, 0], [np.nan, np.nan]]))
    assert out["boxes"].shape == (1, 9)  # far box, unknown class and box without lidar points dropped
    np.testing.assert_allclose(out["boxes"][0, 7:], [1, 2])
    assert out["map_pts"].shape == (1, 20, 2) and out["map_labels"].tolist() == [1]  # degenerate line dropped


def test_filter_gt_zeroes_nan_velocity():
    out = filter_gt(_gt([[1, 2, 0, 4, 2, 1.5, 0.1]], [0], [3], vel=[[np.nan, np.nan]]))
    assert np.all(out["boxes"][0, 7:] == 0)


def test_configs_round_trip_and_validate():
    for name in ("stage1", "stage2", "tiny", "micro"):
        cfg = get_config(name)
        assert model_config_from_dict(config_to_dict(cfg.model)) == cfg.model
    assert get_config("stage1").model.motion_plan is None and get_config("stage1").model.map.num_temp_instances == 0
    assert get_config("stage2").optim.backbone_lr_mult == 0.1
    with pytest.raises(ValueError, match="unknown config"):
        get_config("huge")
    with pytest.raises(ValueError, match="final_hw"):
        dataclasses.replace(get_config("tiny"), aug=A.AugConfig())


def test_backbone_weights_load_from_torchvision_layout(tmp_path):
    import torchvision

    from sparsedrive_ros.model.sparsedrive import build_sparsedrive
    from sparsedrive_ros.training.trainer import load_backbone_weights

    cfg = get_config("micro").model
    ref = torchvision.models.resnet18(weights=None)
    torch.save(ref.state_dict(), tmp_path / "r18.pth")
    model = build_sparsedrive(2, cfg)
    load_backbone_weights(model, str(tmp_path / "r18.pth"))
    torch.testing.assert_close(
        model.img_backbone.state_dict()["layer1.0.conv1.weight"], ref.state_dict()["layer1.0.conv1.weight"]
    )
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises((ValueError, RuntimeError)):
        load_backbone_weights(model, str(tmp_path / "bad.pth"))


def test_progress_line_reports_eta_from_measured_step_time():
    import io

    from sparsedrive_ros.training.trainer import Progress, format_duration

    clock = iter([0.0, 10.0, 10.5, 20.0, 40.0])
    stream = io.StringIO()
    p = Progress(start_step=0, max_steps=100, interval_s=5.0, stream=stream, clock=lambda: next(clock))  # t=0
    p.update(10, {"loss": 3.0, "lr": 1e-3})  # t=10: 1 s/step, 90 steps left
    p.update(11, {"loss": 2.0, "lr": 1e-3})  # t=10.5: within the interval, silent
    p.update(20, {"loss": 1.5, "lr": 1e-3})  # t=20: 1 s/step, 80 left
    p.update(100, {"loss": 1.0, "lr": 1e-4})  # t=40: the last step always prints
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3
    assert "step 10/100 (10 %)" in lines[0] and "1.00 s/step" in lines[0] and "ETA 1m30s" in lines[0]
    assert "loss 1.500" in lines[1] and "ETA 1m20s" in lines[1]
    assert "0.40 s/step" in lines[2] and "ETA 0m00s" in lines[2]
    assert format_duration(3 * 3600 + 61) == "3h01m"


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_prefetcher_keeps_order_and_raises_producer_errors(depth):
    import threading

    from sparsedrive_ros.training.trainer import Prefetcher

    rng = np.random.default_rng(0)
    expected = np.random.default_rng(0).random(6).tolist()
    threads = set()

    def produce():
        threads.add(threading.current_thread().name)
        if produce.calls == 6:
            raise RuntimeError("corrupt image")
        produce.calls += 1
        return rng.random()

    produce.calls = 0
    p = Prefetcher(produce, depth)
    assert [p.get() for _ in range(6)] == expected
    with pytest.raises(RuntimeError, match="corrupt image"):
        p.get()
    p.close()
    assert threads == ({"batch_prefetch"} if depth else {threading.current_thread().name})
    if depth:
        assert not p._thread.is_alive()
