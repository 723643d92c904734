"""Behaviour of the bundled demo model through the launch files (process replay): on a freshly generated scene with
seeds training never used, the node's published detections, map and plan must agree with the annotations.

The same check fails with random weights of the same architecture and with deliberately wrong camera extrinsics,
so it catches a calibration or frame bug, not only a missing model (sparsedrive_ros/tools/behaviour_check.py).
"""
from pathlib import Path

import pytest
import torch

pytest.importorskip("rclpy", reason="rclpy not installed: run `make setup`")

from sparsedrive_ros.model.model_file import DEMO_MODEL_PATH, export_model_file, load_model  # noqa: E402
from sparsedrive_ros.model.sparsedrive import build_sparsedrive  # noqa: E402
from sparsedrive_ros.tools.behaviour_check import format_report, run_check  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.slow]
SEED = 4242  # the demo model was trained on seeds (100, k) and evaluated on (900, k)


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    from sparsedrive_ros.data.synthetic import SyntheticConfig, generate_dataset

    return generate_dataset(tmp_path_factory.mktemp("scene") / "data", SyntheticConfig(seconds=5.0, seed=SEED)).dataroot


def _copy(dataroot: Path, dest: Path) -> Path:
    import shutil

    shutil.copytree(dataroot, dest)
    return dest


def test_demo_model_drives_a_held_out_scene(scene, tmp_path):
    assert DEMO_MODEL_PATH.is_file(), "the bundled demo model is missing"
    report = run_check(tmp_path, checkpoint="", dataroot=scene)
    print(format_report(report))
    assert report.frames_with_ground_truth >= 10, format_report(report)  # 11 key frames in 5 s
    assert report.passed, format_report(report)


def test_the_check_fails_with_random_weights_of_the_same_architecture(scene, tmp_path):
    _, source = load_model("")
    torch.manual_seed(0)
    random_model = build_sparsedrive(source.config.stage, source.config)
    export_model_file(random_model, tmp_path / "random.safetensors", "random weights (test)")
    report = run_check(tmp_path / "run", checkpoint=str(tmp_path / "random.safetensors"), dataroot=scene, rate=0.25)
    print(format_report(report))
    assert report.frames_with_ground_truth >= 10, format_report(report)
    assert not report.passed


def test_the_check_fails_with_wrong_camera_extrinsics(scene, tmp_path):
    data = _copy(scene, tmp_path / "data")
    report = run_check(tmp_path / "run", checkpoint="", dataroot=data, extrinsic_yaw_deg=5.0)
    print(format_report(report))
    assert report.frames_with_ground_truth >= 10, format_report(report)
    assert not report.passed
