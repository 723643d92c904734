"""The ROS-free pipeline: inputs built like the original, temporal resets, BatchNorm folding."""
import numpy as np
import pytest
import torch

from sparsedrive_ros.data.synthetic_world import CAMERA_CALIBRATION
from sparsedrive_ros.model.sparsedrive import build_sparsedrive, stage_config
from sparsedrive_ros.runtime.pipeline import FrameRequest, PipelineConfig, SparseDrivePipeline

CAMS = ["CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_FRONT_LEFT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_BACK_RIGHT"]
SEC = 1_000_000_000


def small_model():
    torch.manual_seed(0)
    return build_sparsedrive(2, stage_config(2, backbone_depth=18, image_hw=(128, 320)))


def request(stamp_ns, seed=0, masked=()):
    rng = np.random.default_rng(seed)
    images = [None if i in masked else rng.integers(0, 255, (900, 1600, 3), dtype=np.uint8) for i in range(6)]
    k = np.array([[[f, 0, cx], [0, f, cy], [0, 0, 1]] for f, cx, cy in (CAMERA_CALIBRATION[c][2] for c in CAMS)])
    cam_from_ref = np.stack([np.eye(4)] * 6)
    for i, yaw in enumerate(np.linspace(0, 2 * np.pi, 6, endpoint=False)):
        # Cameras looking outwards: optical z along (sin, cos) in the lidar x-y plane, optical y down.
        z = np.array([np.sin(yaw), np.cos(yaw), 0.0])
        x = np.cross(z, [0, 0, 1.0])
        cam_from_ref[i, :3, :3] = np.stack([x, np.cross(z, x), z])
    return FrameRequest(stamp_ns, images, k, cam_from_ref, np.eye(4), 2)


def test_projection_is_resize_crop_times_k_times_extrinsics():
    pipeline = SparseDrivePipeline(small_model())
    req = request(0)
    inputs = pipeline.build_inputs(req)
    # 1600x900 -> 320x180 (scale 0.2), bottom 128 rows kept: A = diag(0.2, 0.2) with a 52-row shift.
    a = np.array([[0.2, 0, 0, 0], [0, 0.2, -52, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    k4 = np.eye(4)
    k4[:3, :3] = req.intrinsics[1]
    np.testing.assert_allclose(inputs.projection_mat[0, 1].double().numpy(), a @ k4 @ req.cam_from_ref[1],
                               rtol=1e-6, atol=1e-4)
    assert inputs.images.shape == (1, 6, 3, 128, 320) and inputs.timestamp.dtype == torch.float64


def test_masked_camera_gets_black_input_and_zero_projection():
    inputs = SparseDrivePipeline(small_model()).build_inputs(request(0, masked=(3,)))
    assert torch.count_nonzero(inputs.images[0, 3]) == 0 and torch.count_nonzero(inputs.projection_mat[0, 3]) == 0
    assert torch.count_nonzero(inputs.projection_mat[0, 2]) > 0


def test_temporal_resets_and_reasons():
    pipeline = SparseDrivePipeline(small_model(), PipelineConfig(max_time_jump=2.0))
    t0 = 1_700_000_000 * SEC
    reasons = []
    for stamp in (t0, t0 + SEC // 2, t0 + 3 * SEC, t0 + 2 * SEC):
        r = pipeline.process(request(stamp))
        reasons.append((r.temporal_reset, r.reset_reason, round(r.time_since_previous, 3)))
    pipeline.request_reset()
    r = pipeline.process(request(t0 + 5 * SEC // 2))
    reasons.append((r.temporal_reset, r.reset_reason, r.time_since_previous))
    assert reasons == [(True, "start", 0.0), (False, "", 0.5), (True, "time_jump", 0.0),
                       (True, "time_backwards", 0.0), (True, "request", 0.0)]


def test_bad_requests_are_rejected():
    pipeline = SparseDrivePipeline(small_model())
    req = request(0)
    req.cam_from_ref[2, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        pipeline.process(req)
    with pytest.raises(ValueError, match="command"):
        pipeline.process(FrameRequest(0, request(0).images, req.intrinsics, np.stack([np.eye(4)] * 6), np.eye(4), 7))


def test_batchnorm_folding_changes_only_rounding():
    model = small_model()
    with torch.no_grad():  # non-trivial BatchNorm statistics, as a trained checkpoint has
        for m in model.img_backbone.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    plain = small_model()
    plain.load_state_dict(model.state_dict())
    fused = SparseDrivePipeline(model, PipelineConfig(fuse_batchnorm=True))
    unfused = SparseDrivePipeline(plain, PipelineConfig(fuse_batchnorm=False))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.model.img_backbone.modules())
    images = fused.build_inputs(request(0)).images.flatten(0, 1)
    with torch.no_grad():
        a = fused.model.img_backbone(images)
        b = unfused.model.img_backbone(images)
    for x, y in zip(a, b):
        assert (x - y).abs().max() <= 1e-4 * y.abs().max()


def test_inference_paths_give_the_same_results_and_auto_is_eager_on_cpu():
    """`inference: static` runs the fixed-shape graph (docs/static-graph.md): same results as eager (float64, so
    only summation order differs), same resets; `auto` picks eager on the CPU; a bad value fails early."""
    assert SparseDrivePipeline(small_model()).inference == "eager"
    with pytest.raises(ValueError, match="inference"):
        PipelineConfig(inference="fast")
    from test_model_stream import tiny_config  # full-size heads in float64 take minutes on the dense static path

    torch.manual_seed(0)
    model = build_sparsedrive(2, tiny_config(2))
    twin = build_sparsedrive(2, tiny_config(2))
    twin.load_state_dict(model.state_dict())
    eager = SparseDrivePipeline(model, PipelineConfig(dtype="float64", inference="eager"))
    static = SparseDrivePipeline(twin, PipelineConfig(dtype="float64", inference="static"))
    t0 = 1_700_000_000 * SEC
    for k, stamp in enumerate((t0, t0 + SEC // 2, t0 + 3 * SEC)):  # start, history, a time jump
        a, b = eager.process(request(stamp, seed=k)), static.process(request(stamp, seed=k))
        assert (a.reset_reason, a.time_since_previous) == (b.reset_reason, b.time_since_previous)
        for name in ("boxes", "scores", "class_scores", "map_polylines", "map_scores", "trajs", "plan_final",
                     "plan_trajectories", "ego_status"):
            np.testing.assert_allclose(getattr(b, name), getattr(a, name), rtol=1e-9, atol=1e-9, err_msg=name)
        for name in ("labels", "instance_ids", "map_labels", "tracked_frames"):
            assert np.array_equal(getattr(b, name), getattr(a, name)), name
        assert (a.plan_command, a.plan_mode) == (b.plan_command, b.plan_mode)
    assert "det_head" in a.timings and "model" in b.timings and "det_head" not in b.timings


def test_batchnorm_folding_twice_is_a_no_op():
    """A second fold (an already folded model handed to the ONNX export, a pipeline built twice) changes nothing."""
    model = small_model().eval()
    model.img_backbone.fuse_batchnorm()
    before = {k: v.clone() for k, v in model.img_backbone.state_dict().items()}
    model.img_backbone.fuse_batchnorm()
    after = model.img_backbone.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_a_compile_failure_is_reported_by_the_pipeline():
    """The node's /diagnostics warn with this text when the compiled path fell back to the uncompiled graph."""
    from test_model_stream import tiny_config

    torch.manual_seed(0)
    pipeline = SparseDrivePipeline(build_sparsedrive(2, tiny_config(2)), PipelineConfig(inference="compiled"))
    assert pipeline.inference_status() == ("compiled", "")

    def broken(*args):
        raise RuntimeError("no C++ compiler")

    pipeline.stream._run = broken
    with pytest.warns(RuntimeWarning):
        pipeline.process(request(1_700_000_000 * SEC))
    path, problem = pipeline.inference_status()
    assert path == "static" and "no C++ compiler" in problem
