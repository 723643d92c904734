"""The node in-process over real ROS topics, with a real (small, seeded) SparseDrive model: outputs, equality
with the model core on the same inputs, and the fault paths. The end-to-end replay through separate processes
is test_end_to_end.py."""
import copy
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy not installed: run `make setup`")
import torch  # noqa: E402
from diagnostic_msgs.msg import DiagnosticStatus  # noqa: E402
from fake_rig import FakeRig  # noqa: E402
from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from ros_helpers import RosContext  # noqa: E402

from sparsedrive_ros.model.sparsedrive import build_sparsedrive, stage_config  # noqa: E402
from sparsedrive_ros.msg import Detection3DArray, EgoPlan, FrameInfo, MapElementArray, MotionForecastArray  # noqa: E402
from sparsedrive_ros.ros.sparsedrive_node import PARAMETERS, NodeParams, SparseDriveNode, StartupError, build_pipeline  # noqa: E402
from sparsedrive_ros.runtime.pipeline import SparseDrivePipeline  # noqa: E402

pytestmark = pytest.mark.ros
SEC = 1_000_000_000
T0 = 1_700_000_000 * SEC  # a realistic epoch stamp: float64 seconds must keep sub-ms precision


def small_model():
    """A real SparseDrive stage-2 network, reduced so a frame takes about a second on 2 CPU cores."""
    torch.manual_seed(0)
    return build_sparsedrive(2, stage_config(2, backbone_depth=18, image_hw=(128, 320)))


class Harness:
    def __init__(self, ctx, **params):
        self.model = small_model()
        self.weights = copy.deepcopy(self.model.state_dict())
        overrides = {"min_frame_interval": 0.0, "score_threshold": 0.0, "map_score_threshold": 0.0,
                     "max_camera_time_diff": 0.06, "tf_timeout": 0.3,
                     "diag_window": 600.0, **params}  # the window covers the whole (slow) test
        self.node = SparseDriveNode(pipeline=SparseDrivePipeline(self.model), context=ctx,
                                    parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])
        self.requests = []
        process = self.node.pipeline.process
        self.node.pipeline.process = lambda req: (self.requests.append(req), process(req))[1]
        self.driver = rclpy.create_node("test_driver", context=ctx)
        self.rig = FakeRig(self.driver)
        self.got = {t: [] for t in ("detections", "map", "forecasts", "plan", "frame_info")}
        for topic, typ in (("detections", Detection3DArray), ("map", MapElementArray),
                           ("forecasts", MotionForecastArray), ("plan", EgoPlan), ("frame_info", FrameInfo)):
            self.driver.create_subscription(typ, f"/sparsedrive/{topic}", self.got[topic].append, 10)
        self.executor = MultiThreadedExecutor(num_threads=3, context=ctx)
        self.executor.add_node(self.node)
        self.executor.add_node(self.driver)
        self.spin_until(lambda: all(p.get_subscription_count() for p in self.rig.pub_img.values())
                        and self.node.pub_info.get_subscription_count(), 20)

    def spin_until(self, done, timeout):
        deadline = time.monotonic() + timeout
        while not done() and time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.05)
        return done()

    def cycle(self, anchor_ns, expect_frames=None, timeout=60.0, **kwargs):
        self.rig.publish_cycle(anchor_ns, **kwargs)
        # The node decides a frame when the next anchor arrives or every camera passed the anchor stamp.
        if expect_frames is not None:
            assert self.spin_until(lambda: len(self.got["frame_info"]) >= expect_frames, timeout), (
                f"{len(self.got['frame_info'])} frames, "
                f"counters {dict(self.node.counters)} {dict(self.node.sync.counters)}"
            )
        else:
            self.spin_until(lambda: False, 1.0)

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()
        self.driver.destroy_node()


@pytest.fixture
def harness():
    with RosContext() as ctx:
        h = Harness(ctx)
        yield h
        h.close()


def test_outputs_equal_the_model_core_on_the_same_frames(harness):
    h = harness
    # A frame is decided once every camera has passed its anchor stamp; CAM_FRONT_LEFT fires 8 ms before
    # CAM_FRONT, so frame k completes with cycle k + 1.
    h.cycle(T0)
    for k in range(3):
        h.cycle(T0 + (k + 1) * SEC // 2, expect_frames=k + 1)
    assert h.spin_until(lambda: len(h.got["plan"]) >= 3 and len(h.got["map"]) >= 3, 30)
    infos = h.got["frame_info"]
    assert [stamp.sec * SEC + stamp.nanosec for stamp in (i.header.stamp for i in infos)] == \
        [T0, T0 + SEC // 2, T0 + SEC]
    assert [i.temporal_reset for i in infos] == [True, False, False] and infos[0].reset_reason == "start"
    assert all(i.header.frame_id == "LIDAR_TOP" and list(i.camera_status) == [0] * 6 for i in infos)
    assert infos[1].time_since_previous == pytest.approx(0.5)
    assert {"preprocess", "backbone", "det_head", "map_head", "motion_plan", "publish"} <= set(infos[2].stage_names)

    # The same requests through a fresh pipeline with the same weights: the published numbers must match.
    core = small_model()
    core.load_state_dict(h.weights)
    pipeline = SparseDrivePipeline(core)
    for req, det, mp, fc, plan in zip(h.requests, h.got["detections"], h.got["map"], h.got["forecasts"],
                                      h.got["plan"]):
        ref = pipeline.process(req)
        assert len(det.detections) == 300 and len(mp.elements) == 100 and len(fc.forecasts) == 300
        boxes = np.array([[d.center.x, d.center.y, d.center.z, d.size.x, d.size.y, d.size.z, d.yaw,
                           d.velocity.x, d.velocity.y, d.velocity.z] for d in det.detections])
        np.testing.assert_allclose(boxes, ref.boxes, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose([d.score for d in det.detections], ref.scores, rtol=1e-6, atol=1e-7)
        assert [d.instance_id for d in det.detections] == ref.instance_ids.tolist()
        assert [d.label for d in det.detections] == ref.labels.tolist()
        np.testing.assert_allclose([d.class_scores for d in det.detections], ref.class_scores, atol=1e-6)
        polylines = np.array([[(p.x, p.y) for p in e.points] for e in mp.elements])
        np.testing.assert_allclose(polylines, ref.map_polylines, rtol=1e-6, atol=1e-6)
        trajs = np.array([[np.reshape(path.xy, (-1, 2)) for path in f.paths] for f in fc.forecasts])
        np.testing.assert_allclose(trajs, ref.trajs, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose([(p.x, p.y) for p in plan.trajectory], ref.plan_final, rtol=1e-6, atol=1e-6)
        assert len(plan.candidates) == 18 and plan.command == 2 and plan.command_stale


def test_fault_paths_are_counted_and_diagnosed(harness):
    h, t, half = harness, T0, SEC // 2
    # Each cycle decides the previous one (see above).
    h.cycle(t)
    h.cycle(t + half, corrupt=("CAM_BACK",), expect_frames=1)
    h.cycle(t + 2 * half)
    assert h.spin_until(lambda: h.node.counters["invalid"] == 1, 20) and "cannot decode" in h.node._last_error
    small = __import__("cv2").imencode(".jpg", np.zeros((450, 800, 3), np.uint8))[1].tobytes()
    h.cycle(t + 3 * half, image_bytes={"CAM_FRONT_LEFT": small}, expect_frames=2)  # CameraInfo says 1600x900
    h.cycle(t + 4 * half)
    assert h.spin_until(lambda: h.node.counters["invalid"] == 2, 20) and "800x450" in h.node._last_error
    # No ego pose (TF) at the next stamps: dropped after tf_timeout, counted, the node keeps going.
    h.cycle(t + 20 * half, tf=False, expect_frames=3)
    h.cycle(t + 21 * half, tf=False)
    assert h.spin_until(lambda: h.node.counters["missing_tf"] >= 1, 20)
    # A camera that stops, under the default policy (skip): counted per camera, no output for that frame.
    h.cycle(t + 22 * half, skip=("CAM_BACK_LEFT",), tf=False)
    h.cycle(t + 23 * half, skip=("CAM_BACK_LEFT",), tf=False)
    assert h.spin_until(lambda: h.node.sync.counters["missing:CAM_BACK_LEFT"] >= 1, 20)
    assert h.spin_until(lambda: h.node.counters["missing_tf"] == 2, 20)
    status = h.node.diagnostics()
    assert status.level == DiagnosticStatus.WARN
    for text in ("CAM_BACK_LEFT", "without TF", "invalid frames"):
        assert text in status.message, status.message
    # Time goes backwards (a bag loop): the temporal state is reset and the output says so.
    n = len(h.got["frame_info"])
    assert n == 3
    h.cycle(t - 10 * half)
    h.cycle(t - 9 * half, expect_frames=n + 1)
    info = h.got["frame_info"][n]
    assert info.temporal_reset and info.reset_reason == "time_backwards"
    assert info.header.stamp.sec * SEC + info.header.stamp.nanosec == t - 10 * half


def test_masked_camera_policy_keeps_frames(harness_mask):
    h = harness_mask
    h.cycle(T0, skip=("CAM_BACK",))
    h.cycle(T0 + SEC // 2, skip=("CAM_BACK",))
    h.cycle(T0 + SEC, skip=("CAM_BACK",), expect_frames=1)  # a silent camera is missing once a newer anchor came
    info = h.got["frame_info"][0]
    assert list(info.camera_status) == [0, 0, 0, FrameInfo.CAMERA_MASKED, 0, 0]
    assert h.node.sync.counters["missing:CAM_BACK"] >= 1 and h.node.diagnostics().level == DiagnosticStatus.WARN


@pytest.fixture
def harness_mask():
    with RosContext() as ctx:
        h = Harness(ctx, missing_camera_policy="mask")
        yield h
        h.close()


def test_mismatching_checkpoint_is_a_clear_error_at_start(tmp_path):
    bad = tmp_path / "bad.pth"
    torch.save({"state_dict": {"img_backbone.conv1.weight": torch.zeros(3)}, "meta": {}}, bad)
    params = NodeParams(**{k: v.default for k, v in PARAMETERS.items()} | {"checkpoint": str(bad)})
    with pytest.raises(StartupError) as err:
        build_pipeline(params, __import__("logging").getLogger("test"))
    text = str(err.value)
    assert "missing" in text and "img_backbone.conv1.weight" in text


def test_gpu_decode_on_hands_jpeg_bytes_to_the_pipeline_and_rejects_broken_ones():
    """gpu_decode: on (on a CPU here; auto turns it on for device: cuda): the node checks JPEG headers and passes
    the bytes undecoded; a header that does not parse, and a JPEG that only the decoder finds broken, are both
    that camera's rejection, as a CPU decode failure is."""
    with RosContext() as ctx:
        h = Harness(ctx, gpu_decode="on")
        try:
            t, half = T0, SEC // 2
            h.cycle(t)
            h.cycle(t + half, corrupt=("CAM_BACK",), expect_frames=1)
            h.cycle(t + 2 * half)
            assert h.spin_until(lambda: h.node.counters["invalid"] == 1, 20), dict(h.node.counters)
            assert "cannot decode" in h.node._last_error and "CAM_BACK" in h.node._last_error
            truncated = h.rig.jpeg["CAM_BACK_LEFT"][:700]  # the header parses, the scan is cut
            h.cycle(t + 3 * half, image_bytes={"CAM_BACK_LEFT": truncated}, expect_frames=2)
            h.cycle(t + 4 * half)
            assert h.spin_until(lambda: h.node.counters["invalid"] == 2, 20), dict(h.node.counters)
            assert h.node._last_error.startswith("CAM_BACK_LEFT: cannot decode 700 bytes of JPEG")
            assert h.node.counters["rejected:CAM_BACK"] == 1 and h.node.counters["rejected:CAM_BACK_LEFT"] == 1
            req = h.requests[0]
            assert req.jpeg is not None and all(image is None for image in req.images)
            assert bytes(req.jpeg[0]) == h.rig.jpeg["CAM_FRONT"]
            # The same frame decoded on the CPU (gpu_decode off): the same inputs (both decoders are
            # libjpeg-turbo here; on a GPU they may differ by a grey level, test_gpu_preprocess.py).
            cpu = SparseDrivePipeline(small_model())
            ref = cpu.build_inputs(type(req)(req.stamp_ns, req.decoded_images(), req.intrinsics, req.cam_from_ref,
                                             req.ref_to_global, req.command))
            out = h.node.pipeline.build_inputs(req)
            torch.testing.assert_close(out.images, ref.images, rtol=0, atol=0)
            torch.testing.assert_close(out.projection_mat, ref.projection_mat, rtol=0, atol=0)
        finally:
            h.close()
