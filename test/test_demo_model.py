"""The bundled demo model and model files: checkpoint specs, self-describing export, ground truth in renders."""
import json

import numpy as np
import pytest
import torch

from sparsedrive_ros.data.nuscenes import NuScenes, build_frame_inputs, build_ground_truth
from sparsedrive_ros.data.synthetic import SyntheticConfig, generate_dataset
from sparsedrive_ros.model.checkpoint import CheckpointMismatchError, save_safetensors
from sparsedrive_ros.model.config import DetHeadConfig, MapHeadConfig, MotionPlanConfig, SparseDriveConfig
from sparsedrive_ros.model.model_file import (
    DEMO_MODEL_PATH,
    export_model_file,
    load_model,
    resolve_checkpoint,
)
from sparsedrive_ros.model.sparsedrive import build_sparsedrive
from sparsedrive_ros.training.config import get_config
from sparsedrive_ros.viz.bev import BevView, render_bev
from sparsedrive_ros.viz.draw import GT_COLOR, draw_banner
from sparsedrive_ros.viz.ground_truth import DatasetGroundTruth
from sparsedrive_ros.viz.scene import Boxes, FrameOutputs, GroundTruth, MapElements


def small_config() -> SparseDriveConfig:
    return SparseDriveConfig(
        backbone_depth=18, backbone_width=16, embed_dims=64, image_hw=(64, 192),
        det=DetHeadConfig(num_anchor=20, num_temp_instances=10, num_output=10, num_decoder=2,
                          anchor_encoder_dims=(32, 8, 8, 16), ffn_dims=64),
        map=MapHeadConfig(num_anchor=8, num_temp_instances=2, num_decoder=2, fix_height=(0.0,), ffn_dims=64),
        motion_plan=MotionPlanConfig(num_det=8, num_map=4, ffn_dims=64, num_blocks=1),
    )


def test_the_bundled_demo_model_is_the_default_and_describes_its_architecture():
    kind, path = resolve_checkpoint("")
    assert kind == "demo" and path == DEMO_MODEL_PATH and DEMO_MODEL_PATH.stat().st_size <= 25_000_000
    model, source = load_model("")
    assert source.kind == "demo" and not source.random and "synthetic" in source.name
    assert model.config == get_config("demo").model  # the architecture came from the file's metadata
    assert source.step is not None


def test_random_spec_builds_the_official_architecture():
    model, source = load_model("random", stage=2, seed=3)
    assert source.random and source.path is None and model.config.image_hw == (256, 704)


def test_export_round_trip_keeps_the_architecture_and_rounds_only_large_tensors(tmp_path):
    torch.manual_seed(0)
    model = build_sparsedrive(2, small_config())
    path = tmp_path / "m.safetensors"
    counts = export_model_file(model, path, "test model", note="n", step=7)
    assert counts["float16"] > 0 and counts["float32"] > 0
    loaded, source = load_model(str(path))
    assert loaded.config == model.config and source.name == "test model" and source.kind == "file"
    assert source.step == 7 and source.note == "n"
    for key, value in model.state_dict().items():
        got = loaded.state_dict()[key]
        if value.is_floating_point() and value.numel() >= 4096:
            assert torch.equal(got, value.half().float()), key  # stored in float16
        else:
            assert torch.equal(got, value), key  # anchors, biases, norms stay exact


def test_a_file_without_configuration_is_checked_against_the_official_architecture(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "plain.safetensors"
    save_safetensors(build_sparsedrive(2, small_config()).state_dict(), path)  # no metadata: taken as official
    with pytest.raises(CheckpointMismatchError):
        load_model(str(path))


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(str(tmp_path / "nope.pth"))


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    cfg = SyntheticConfig(seconds=1.0, seed=21, render_images=False)
    return generate_dataset(tmp_path_factory.mktemp("gt") / "data", cfg).dataroot


def test_ground_truth_in_the_key_frames_own_lidar_frame_equals_the_dataset(tables):
    nusc = NuScenes(tables)
    sample = nusc.scene_samples(nusc.scenes[0])[1]
    inputs, gt = build_frame_inputs(nusc, sample), build_ground_truth(nusc, sample)
    view = DatasetGroundTruth(tables)
    stamp = int(round(inputs.timestamp * 1e9))
    got = view.in_frame(stamp + 30_000_000, inputs.T_global)  # 30 ms off the key frame: still that key frame
    known = gt.labels >= 0
    np.testing.assert_allclose(got.boxes.centers, gt.boxes[known, :3], atol=1e-9)
    np.testing.assert_allclose(got.boxes.yaws, gt.boxes[known, 6], atol=1e-9)
    np.testing.assert_allclose(got.ego_path[:, :2], np.cumsum(gt.ego_fut_trajs, 0)[gt.ego_fut_masks > 0], atol=1e-9)
    assert view.in_frame(stamp + 200_000_000, inputs.T_global) is None  # between key frames: nothing


def test_ground_truth_moves_with_the_outputs_frame(tables):
    nusc = NuScenes(tables)
    inputs = build_frame_inputs(nusc, nusc.scene_samples(nusc.scenes[0])[0])
    view = DatasetGroundTruth(tables)
    stamp = int(round(inputs.timestamp * 1e9))
    shifted = inputs.T_global.copy()
    shifted[:3, 3] += shifted[:3, :3] @ np.array([0.0, 2.0, 0.0])  # the outputs' frame 2 m further forward
    a, b = view.in_frame(stamp, inputs.T_global), view.in_frame(stamp, shifted)
    np.testing.assert_allclose(b.boxes.centers[:, 1], a.boxes.centers[:, 1] - 2.0, atol=1e-9)


def test_bev_draws_ground_truth_and_a_legend():
    gt_box = Boxes([[0.0, 10.0, -1.0]], [[4.0, 2.0, 1.5]], [np.pi / 2], [0], [1.0], [1])
    frame = FrameOutputs(stamp_ns=0, ground_truth=GroundTruth(gt_box, MapElements.empty(),
                                                              np.array([[0.0, 3.5, -1.8]])))
    view = BevView()
    with_gt, without = render_bev(frame, view), render_bev(FrameOutputs(stamp_ns=0), view)
    u, v = view.to_pixels(np.array([[1.0, 10.0]]))[0]  # right edge of the GT box
    patch = with_gt[int(v) - 3:int(v) + 4, int(u) - 3:int(u) + 4]
    assert (np.abs(patch.astype(int) - GT_COLOR).sum(-1) < 60).any()
    assert not np.array_equal(with_gt, without)


def test_random_weights_banner_adds_a_red_band():
    image = np.zeros((100, 400, 3), np.uint8)
    out = draw_banner(image, "RANDOM WEIGHTS")
    assert out.shape[0] > 100 and out[2, 2, 2] > 150 and out[2, 2, 0] < 60  # BGR red


def test_frame_info_carries_the_model_into_renders():
    from sparsedrive_ros.viz.messages import frame_from_messages

    class Stamp:
        sec, nanosec = 1, 0

    class Header:
        stamp, frame_id = Stamp(), "LIDAR_TOP"

    class Info:
        header, frame_index, camera_status, camera_names, camera_stamps = Header(), 3, [], [], []
        model_latency = total_latency = result_age = max_camera_skew = 0.0
        command, command_stale, temporal_reset, reset_reason = 2, False, False, ""
        model, random_weights = "RANDOM weights (seed 0)", True

    frame = frame_from_messages(frame_info=Info())
    assert frame.random_weights and frame.model.startswith("RANDOM")
    assert json.dumps(frame.info)  # header lines stay plain strings


def test_diagnostics_do_not_count_as_model_results(tmp_path):
    # /diagnostics keeps coming on wall time after the last model frame; tools that wait until no result has
    # arrived for a while (make demo, the behaviour check) must not wait forever because of it.
    serialization = pytest.importorskip("rclpy.serialization")
    from diagnostic_msgs.msg import DiagnosticArray

    from sparsedrive_ros.tools.demo import read_progress
    from sparsedrive_ros.viz.recording import RecorderConfig, Recording

    rec = Recording(RecorderConfig(out_dir=tmp_path, write_bag=False, render=False), log=lambda line: None)
    rec.handle("/diagnostics", serialization.serialize_message(DiagnosticArray()), 1)
    rec._write_progress()
    assert read_progress(tmp_path).get("last_output_wall") is None
