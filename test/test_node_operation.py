"""The node in real operation: looped and restarted sources, failed starts, live reconfiguration, the lifecycle,
diagnostics over a sliding window, the calibration-file fallback and the topic prefix.

A CI-sized model (the training recipes' `micro`, 64x192 input) keeps every frame cheap; the real model is not the
point here. Key frames are counted exactly: the synchroniser's throttle picks them from the anchor stamps.
"""
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

rclpy = pytest.importorskip("rclpy", reason="rclpy not installed: run `make setup`")
import torch  # noqa: E402
from diagnostic_msgs.msg import DiagnosticStatus  # noqa: E402
from fake_rig import CAMERAS, FakeRig  # noqa: E402
from lifecycle_msgs.msg import State  # noqa: E402
from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from ros_helpers import RosContext  # noqa: E402

from sparsedrive_ros.data.synthetic_world import CAMERA_CALIBRATION  # noqa: E402
from sparsedrive_ros.model.config import DetHeadConfig, MapHeadConfig, MotionPlanConfig, SparseDriveConfig  # noqa: E402
from sparsedrive_ros.model.sparsedrive import build_sparsedrive  # noqa: E402
from sparsedrive_ros.msg import Detection3DArray, FrameInfo  # noqa: E402
from sparsedrive_ros.ros.node_config import PARAMETERS  # noqa: E402
from sparsedrive_ros.ros.sparsedrive_node import SparseDriveLifecycleNode, SparseDriveNode  # noqa: E402
from sparsedrive_ros.runtime.pipeline import SparseDrivePipeline  # noqa: E402

pytestmark = pytest.mark.ros
REPO = Path(__file__).resolve().parents[1]
SEC = 1_000_000_000
T0 = 1_700_000_000 * SEC
HALF = SEC // 2


def micro_pipeline():
    """A stage-2 network of the training recipes' CI size: 64x192 input, 32 det / 8 map anchors, ResNet-18."""
    torch.manual_seed(0)
    config = SparseDriveConfig(
        backbone_depth=18, image_hw=(64, 192),
        det=DetHeadConfig(num_anchor=32, num_temp_instances=16, num_decoder=2, num_learnable_pts=2, ffn_dims=128,
                          num_output=16),
        map=MapHeadConfig(num_anchor=8, num_temp_instances=2, num_decoder=2, num_learnable_pts=1, fix_height=(0.0,),
                          ffn_dims=128),
        motion_plan=MotionPlanConfig(num_det=8, num_map=2, num_blocks=1, ffn_dims=128))
    return SparseDrivePipeline(build_sparsedrive(2, config))


class Rig:
    """The node (plain or lifecycle) and a driver node publishing the fake rig, on one executor."""

    def __init__(self, ctx, node_cls=SparseDriveNode, rig_kwargs=None, **params):
        overrides = {"min_frame_interval": 0.0, "max_camera_time_diff": 0.06, "tf_timeout": 0.5, **params}
        self.node = node_cls(pipeline=micro_pipeline(), context=ctx,
                             parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])
        self.driver = rclpy.create_node("test_driver", context=ctx)
        self.rig = FakeRig(self.driver, **(rig_kwargs or {}))
        self.infos, self.dets, self.diag = [], [], []
        self.driver.create_subscription(FrameInfo, "/sparsedrive/frame_info", self.infos.append, 50)
        self.driver.create_subscription(Detection3DArray, "/sparsedrive/detections", self.dets.append, 50)
        self.executor = MultiThreadedExecutor(num_threads=3, context=ctx)
        self.executor.add_node(self.node)
        self.executor.add_node(self.driver)

    def wait_matched(self):
        assert self.spin_until(lambda: all(p.get_subscription_count() for p in self.rig.pub_img.values())
                               and self.node._outputs["frame_info"].get_subscription_count(), 20)

    def spin_until(self, done, timeout):
        deadline = time.monotonic() + timeout
        while not done() and time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.02)
        return done()

    def cycle(self, anchor_ns, **kwargs):
        self.rig.publish_cycle(anchor_ns, **kwargs)
        self.spin_until(lambda: False, 0.05)

    def settle(self, timeout=30):
        """Until the frame this cycle completes (decided by the flush once its window is over) is processed."""
        self.spin_until(lambda: False, 0.25)
        assert self.spin_until(lambda: self.node.idle(), timeout)

    def frames(self, n, timeout=60):
        assert self.spin_until(lambda: len(self.infos) >= n, timeout), \
            f"{len(self.infos)} of {n} frames; {dict(self.node.counters)} {dict(self.node.sync.counters)}"

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()
        self.driver.destroy_node()


def stamp_ns(header):
    return header.stamp.sec * SEC + header.stamp.nanosec


# --------------------------------------------------------------------------------------------- time handling


def test_player_killed_and_restarted_at_several_points_loses_no_key_frame():
    """12 Hz cycles throttled to 2 Hz key frames; the player dies after 7, 16 and 3 cycles and starts again at
    the beginning each time; a last full pass follows. Every key frame after each restart arrives, the first one
    with a single reset (time_backwards)."""
    with RosContext() as ctx:
        r = Rig(ctx, min_frame_interval=0.45)
        r.wait_matched()
        period = SEC // 12
        key = [T0 + k * 6 * period for k in range(4)]  # anchors that pass the 0.45 s throttle in 24 cycles
        for killed_after in (7, 16, 3, 24):
            for k in range(killed_after):
                r.cycle(T0 + k * period)
                if k % 6 == 0:  # let the model keep up with the key frames
                    r.spin_until(lambda: r.node.idle(), 30)
            r.spin_until(lambda: False, 0.3)  # the killed player's last key frame is decided by the flush
        r.frames(10)
        r.spin_until(lambda: False, 1.0)
        got = [stamp_ns(i.header) for i in r.infos]
        reasons = [i.reset_reason for i in r.infos]
        # Pass 1: 2 key frames (0, 6); pass 2: 0, 6, 12; pass 3 (3 cycles): 0; pass 4: 0, 6, 12, 18.
        assert got == [key[0], key[1], key[0], key[1], key[2], key[0], key[0], key[1], key[2], key[3]], got
        assert reasons == ["start", "", "time_backwards", "", "", "time_backwards", "time_backwards", "", "", ""]
        assert r.node.counters["busy"] == 0
        r.close()


def make_bag(tmp_path, seconds=2.0):
    from sparsedrive_ros.data.synthetic import SyntheticConfig, generate_dataset
    from sparsedrive_ros.tools.nuscenes_to_bag import convert

    ds = generate_dataset(tmp_path / "data", SyntheticConfig(seconds=seconds, width=320, height=180, seed=3))
    convert(ds.dataroot, tmp_path / "bag", storage="mcap")
    from rosbags.rosbag2 import Reader

    with Reader(tmp_path / "bag") as reader:
        conns = [c for c in reader.connections if c.topic == "/CAM_FRONT/image_rect_compressed"]
        anchors = sorted(t for _, t, _ in reader.messages(connections=conns))
    keys, last = [], None
    for t in anchors:  # the node's throttle: strictly >= 0.45 s after the previous emitted anchor
        if last is None or t - last >= int(0.45 * SEC):
            keys.append(t)
            last = t
    return tmp_path / "bag", keys


def test_a_2s_bag_looped_three_times_gives_every_key_frame_of_every_pass(tmp_path, ros_env):
    bag, keys = make_bag(tmp_path)
    with RosContext() as ctx:
        r = Rig(ctx, min_frame_interval=0.45, use_sim_time=True)
        player = subprocess.Popen([sys.executable, "-m", "sparsedrive_ros.tools.play_bag", str(bag), "--loop",
                                   "--passes", "3", "--rate", "0.25", "--wait-for-subscribers", "20"],
                                  env=ros_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            r.frames(3 * len(keys), timeout=120)
            r.spin_until(lambda: player.poll() is not None, 30)
            r.spin_until(lambda: False, 1.5)
        finally:
            player.kill()
            out = player.communicate()[0]
        got = [stamp_ns(i.header) for i in r.infos]
        assert got == keys * 3, (got, keys, out[-2000:])
        reasons = [i.reset_reason for i in r.infos]
        assert reasons == ["start"] + [""] * (len(keys) - 1) + (["time_backwards"] + [""] * (len(keys) - 1)) * 2
        assert r.node.sync.counters["time_backwards"] == 2
        r.close()


# --------------------------------------------------------------------------------------------- failed starts


def start_node(tmp_path, ros_env, params: dict, lifecycle=False, timeout=120):
    f = tmp_path / "params.yaml"
    f.write_text(yaml.safe_dump({"/**": {"ros__parameters": params}}))
    exe = "sparsedrive_lifecycle_node" if lifecycle else "sparsedrive_node"
    return subprocess.run([sys.executable, str(REPO / "nodes" / exe), "--ros-args", "--params-file", str(f)],
                          env=ros_env, capture_output=True, text=True, timeout=timeout)


def assert_one_clear_failure(out, *texts):
    text = out.stdout + out.stderr
    assert out.returncode == 2, text
    assert text.count("cannot start") == 1 and "Traceback" not in text, text
    for t in texts:
        assert t in text, text
    assert "RANDOM weights" not in text and "using the bundled" not in text  # refused before the model was built


def test_unknown_parameters_are_all_named_and_the_node_exits_2(tmp_path, ros_env):
    out = start_node(tmp_path, ros_env, {"max_time_jumps": 3.0, "camera_prefix": "/x", "score_threshold": 0.3})
    assert_one_clear_failure(out, "unknown parameters: camera_prefix, max_time_jumps")


@pytest.mark.parametrize("params, text", [
    ({"anchor_camera": "CAM_TOP"}, "anchor_camera 'CAM_TOP' is not one of"),
    ({"missing_camera_policy": "drop"}, "'drop' is not a valid MissingCameraPolicy"),
    ({"max_time_jump": 2}, "parameter max_time_jump"),  # an integer where a float is declared
])
def test_bad_values_fail_before_the_model_is_built(tmp_path, ros_env, params, text):
    assert_one_clear_failure(start_node(tmp_path, ros_env, params), text)


@pytest.mark.parametrize("content, text", [
    (b"", "is empty"),
    (None, "cannot read"),  # a real checkpoint cut in half
    (b"not a checkpoint at all", "refusing to load"),
])
def test_bad_checkpoints_exit_2_with_one_message(tmp_path, ros_env, content, text):
    f = tmp_path / "model.pth"
    if content is None:
        torch.save({"state_dict": {"w": torch.zeros(100_000)}}, f)
        content = f.read_bytes()[: f.stat().st_size // 2]
    f.write_bytes(content)
    assert_one_clear_failure(start_node(tmp_path, ros_env, {"checkpoint": str(f)}), text)


def test_lifecycle_node_with_autostart_fails_the_same_way(tmp_path, ros_env):
    out = start_node(tmp_path, ros_env, {"autostart": True, "stage": 3}, lifecycle=True)
    assert_one_clear_failure(out, "stage must be 1 or 2")


# --------------------------------------------------------------------------------------------- reconfiguration


def test_live_reconfiguration_applies_next_frame_and_refuses_read_only_parameters():
    with RosContext() as ctx:
        r = Rig(ctx, score_threshold=0.0)
        r.wait_matched()
        r.cycle(T0)
        r.cycle(T0 + HALF)
        r.frames(2)  # the flush decides the last frame once its window is over
        assert r.spin_until(lambda: len(r.dets) >= 2 and r.node._busy_since is None, 10)
        assert len(r.dets[1].detections) > 0
        results = r.node.set_parameters([Parameter("score_threshold", value=1.0),
                                         Parameter("min_frame_interval", value=0.2)])
        assert all(x.successful for x in results)
        r.cycle(T0 + 2 * HALF)
        r.frames(3)
        assert r.spin_until(lambda: len(r.dets) >= 3, 10) and len(r.dets[2].detections) == 0  # the next frame
        assert r.node.sync.config.min_frame_interval == 0.2
        for name, value in (("camera_names", ["CAM_FRONT"]), ("checkpoint", "/x.pth"), ("device", "cuda")):
            result = r.node.set_parameters([Parameter(name, value=value)])[0]
            assert not result.successful and "read-only while the node runs" in result.reason, result.reason
        result = r.node.set_parameters([Parameter("missing_camera_policy", value="drop")])[0]
        assert not result.successful and "drop" in result.reason
        result = r.node.set_parameters([Parameter("diag_max_latency", value=100.0)])[0]
        assert not result.successful and "diag_max_latency_error" in result.reason
        assert r.node.get_parameter("device").value == "cpu" and r.node.params.missing_camera_policy == "skip"
        r.close()


# --------------------------------------------------------------------------------------------- lifecycle


def test_lifecycle_node_walks_its_transitions():
    with RosContext() as ctx:
        r = Rig(ctx, node_cls=SparseDriveLifecycleNode)
        node = r.node
        topic = "/CAM_FRONT/image_rect_compressed"
        assert node._state_machine.current_state[1] == "unconfigured"
        assert node.pipeline is None and r.driver.count_subscribers(topic) == 0
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node._state_machine.current_state[0] == State.PRIMARY_STATE_INACTIVE
        assert node.pipeline is not None and r.driver.count_subscribers(topic) == 0
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        assert node._state_machine.current_state[0] == State.PRIMARY_STATE_ACTIVE
        r.wait_matched()
        r.cycle(T0)
        r.cycle(T0 + HALF)
        r.frames(1)
        assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
        assert r.spin_until(lambda: r.driver.count_subscribers(topic) == 0, 10)
        assert node._worker is None
        assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
        assert node.pipeline is None and node._state_machine.current_state[1] == "unconfigured"
        # A read-only parameter may change while unconfigured; a bad value makes configure fail (and stay put).
        assert node.set_parameters([Parameter("anchor_camera", value="CAM_TOP")])[0].successful
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert "anchor_camera 'CAM_TOP'" in node.configure_error
        assert node._state_machine.current_state[1] == "unconfigured"
        node.set_parameters([Parameter("anchor_camera", value="CAM_FRONT")])
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        r.wait_matched()
        n = len(r.infos)
        r.cycle(T0 + 2 * HALF)
        r.cycle(T0 + 3 * HALF)
        r.frames(n + 1)
        assert r.spin_until(lambda: any(stamp_ns(i.header) == T0 + 2 * HALF for i in r.infos), 30)
        info = next(i for i in r.infos if stamp_ns(i.header) == T0 + 2 * HALF)
        assert info.reset_reason == "start"  # a new configure starts a new temporal state
        assert node.trigger_shutdown() == TransitionCallbackReturn.SUCCESS
        r.close()


def test_launch_files_start_either_node():
    from sparsedrive_ros.launch_runner import PackageResolver, load_launch_description, plan_launch

    for launch_file in ("sparsedrive.launch.py", "nuscenes_replay.launch.py", "bag_replay.launch.py"):
        extra = {"bag": "/tmp/bag"} if launch_file == "bag_replay.launch.py" else {}
        for lifecycle, exe in (("false", "sparsedrive_node"), ("true", "sparsedrive_lifecycle_node")):
            plan = plan_launch(load_launch_description(REPO / "launch" / launch_file),
                               {"lifecycle": lifecycle, **extra}, PackageResolver([REPO]))
            node = next(p for p in plan.processes if p.name == "sparsedrive")
            assert node.cmd[1].endswith(exe), node.cmd
            params = {}
            for f in node.param_files:
                params.update(yaml.safe_load(Path(f).read_text())["/**"]["ros__parameters"])
            assert params.get("autostart", False) is (lifecycle == "true")
            plan.cleanup()


# --------------------------------------------------------------------------------------------- diagnostics


def test_diagnostics_window_camera_states_watchdog_and_clock_hint():
    with RosContext() as ctx:
        r = Rig(ctx, diag_window=3.0, diag_camera_timeout=2.0, diag_max_latency=1.5, diag_max_latency_error=2.5,
                diag_max_result_age=30.0)
        node = r.node
        assert set(node.camera_states().values()) == {("waiting", "no image received yet")}
        r.wait_matched()
        t = time.time_ns()  # stamps on this node's clock (live cameras)
        for k in range(3):
            r.cycle(t + k * HALF, corrupt=("CAM_BACK",) if k == 1 else ())
            r.settle()
        assert node.counters["invalid"] == 1 and node.counters["busy"] == 0
        status = node.diagnostics_array()
        assert status[0].level == DiagnosticStatus.WARN and "1 invalid frames" in status[0].message
        cams = {s.name.split()[-1]: s.message for s in status[1:]}
        assert cams["CAM_BACK"].startswith("rejected") and cams["CAM_FRONT"] == "active", cams
        # The fault has passed: good frames for longer than the window bring the status back to OK.
        start, k = time.monotonic(), 3
        while time.monotonic() - start < 4.0 or len(r.infos) < 5:
            assert k < 60, f"{len(r.infos)} frames"
            r.cycle(t + k * HALF)
            r.settle()
            k += 1
        status = node.diagnostics_array()
        assert status[0].level == DiagnosticStatus.OK, status[0].message
        assert [s.message for s in status[1:]] == ["active"] * 6
        assert {kv.key: kv.value for kv in status[0].values}["inference"] == "eager"  # auto on the CPU
        # A compiled path that fell back to the uncompiled graph is a WARN naming the reason.
        status_of = node.pipeline.inference_status
        node.pipeline.inference_status = lambda: ("static", "torch.compile failed, running the static graph "
                                                            "uncompiled: no C++ compiler")
        status = node.diagnostics_array()
        assert status[0].level == DiagnosticStatus.WARN and "no C++ compiler" in status[0].message
        node.pipeline.inference_status = status_of
        # A frame that runs too long: WARN after diag_max_latency, ERROR after diag_max_latency_error.
        process = node.pipeline.process
        node.pipeline.process = lambda req: (time.sleep(4.0), process(req))[1]
        r.spin_until(lambda: node._busy_since is None, 20)
        r.cycle(t + k * HALF)
        r.cycle(t + (k + 1) * HALF)
        assert r.spin_until(lambda: node._busy_since is not None, 10)
        r.spin_until(lambda: False, 1.8)
        assert node.diagnostics().level == DiagnosticStatus.WARN and "watchdog" in node.diagnostics().message
        r.spin_until(lambda: False, 1.2)
        assert node.diagnostics().level == DiagnosticStatus.ERROR, node.diagnostics().message
        node.pipeline.process = process
        # Silent cameras become stale.
        r.spin_until(lambda: False, 2.2)
        assert {s for s, _ in node.camera_states().values()} == {"stale"}
        # Stamps years behind this node's clock without use_sim_time: a bag played without sim time; say so.
        r.cycle(T0)
        assert "use_sim_time is false" in node.diagnostics().message
        r.close()


# --------------------------------------------------------------------------------------------- conventions


def test_calibration_file_and_topic_prefix(tmp_path):
    """Cameras under /rig, no CameraInfo and no camera TF: K and extrinsics come from the calibration file."""
    cal = {"cameras": {}}
    for cam in CAMERAS:
        (tx, ty, tz), (w, x, y, z), (f, cx, cy) = CAMERA_CALIBRATION[cam][:3]
        cal["cameras"][cam] = {"width": 1600, "height": 900, "K": [f, 0.0, cx, 0.0, f, cy, 0.0, 0.0, 1.0],
                               "parent_frame": "base_link", "translation": [tx, ty, tz],
                               "rotation_xyzw": [x, y, z, w]}
    path = tmp_path / "calibration.yaml"
    path.write_text(yaml.safe_dump(cal))
    with RosContext() as ctx:
        r = Rig(ctx, rig_kwargs={"prefix": "/rig", "camera_tf": False}, camera_topic_prefix="/rig",
                calibration_file=str(path))
        r.wait_matched()
        requests = []
        process = r.node.pipeline.process
        r.node.pipeline.process = lambda req: (requests.append(req), process(req))[1]
        r.cycle(T0, camera_info=False)
        r.cycle(T0 + HALF, camera_info=False)
        r.frames(1)
        f, cx, cy = CAMERA_CALIBRATION["CAM_BACK"][2]
        assert r.node.tf.buffer.frames() >= set(CAMERAS)  # the extrinsics came from the file, not from TF
        np.testing.assert_allclose(requests[0].intrinsics[3], [[f, 0, cx], [0, f, cy], [0, 0, 1]])
        assert list(r.infos[0].camera_status) == [0] * 6
        r.close()


def test_calibration_file_is_validated(tmp_path):
    from sparsedrive_ros.ros.node_config import StartupError, load_calibration_file

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"cameras": {"CAM_FRONT": {"width": 1600, "height": 900, "K": [1] * 9,
                                                              "parent_frame": "base_link", "translation": [0, 0, 0],
                                                              "rotation_xyzw": [0, 0, 0, 1], "fov": 70}}}))
    with pytest.raises(StartupError, match="unknown keys \\['fov'\\]"):
        load_calibration_file(str(path), CAMERAS)
    path.write_text(yaml.safe_dump({"cameras": {"CAM_TOP": {}}}))
    with pytest.raises(StartupError, match="not one of camera_names"):
        load_calibration_file(str(path), CAMERAS)


def test_params_file_readme_and_docs_list_every_parameter_with_its_default():
    doc = yaml.safe_load((REPO / "config" / "sparsedrive.param.yaml").read_text())["/**"]["ros__parameters"]
    assert list(doc) == list(PARAMETERS), set(doc) ^ set(PARAMETERS)
    assert {k: v for k, v in doc.items()} == {k: p.default for k, p in PARAMETERS.items()}
    node_md, readme = (REPO / "docs" / "node.md").read_text(), (REPO / "README.md").read_text()
    for name, p in PARAMETERS.items():
        default = yaml.safe_dump(p.default, default_flow_style=True).strip().removesuffix("...").strip()
        assert f"| `{name}` | `{default}` | {'yes' if p.runtime else 'no'} |" in node_md, (name, default)
        assert f"`{name}`=`{default}`" in readme, (name, default)


def test_short_soak():
    """The CI version of benchmarks/soak_node.py (30 min there): a looped scene for 45 s, every key frame of every
    complete pass processed, resident memory sampled."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from soak_node import soak

    result = soak(minutes=45 / 60, rate=0.25, width=320, height=180, sample_s=5.0, log=lambda s: None)
    assert len(result.passes) >= 3 and not result.bad_passes, result.report()
    assert all(len(p) == result.keys_per_pass for p in result.passes)
    assert len(result.samples) >= 8 and all(m > 0 for _, m, _ in result.samples)


def test_output_stamp_lidar_uses_the_nearest_lidar_stamp():
    """output_stamp: lidar stamps the outputs (and takes the ego pose) at the lidar sweep nearest the anchor; only
    the header of the point cloud is read."""
    from sensor_msgs.msg import PointCloud2

    from sparsedrive_ros.ros.conversions import ns_to_stamp

    with RosContext() as ctx:
        r = Rig(ctx, output_stamp="lidar", lidar_topic="/LIDAR_TOP")
        lidar = r.driver.create_publisher(PointCloud2, "/LIDAR_TOP", 10)
        assert r.spin_until(lambda: lidar.get_subscription_count() > 0, 20)
        r.wait_matched()
        requests = []
        process = r.node.pipeline.process
        r.node.pipeline.process = lambda req: (requests.append(req), process(req))[1]
        for k in range(2):
            cloud = PointCloud2(height=1, width=0)
            cloud.header.stamp, cloud.header.frame_id = ns_to_stamp(T0 + k * HALF - 35_000_000), "LIDAR_TOP"
            lidar.publish(cloud)
            r.spin_until(lambda: False, 0.1)
            r.cycle(T0 + k * HALF)
            r.settle()
        r.frames(2)
        assert [stamp_ns(i.header) for i in r.infos] == [T0 - 35_000_000, T0 + HALF - 35_000_000]
        assert [q.stamp_ns for q in requests] == [T0 - 35_000_000, T0 + HALF - 35_000_000]
        anchors = [i.camera_stamps[0].sec * SEC + i.camera_stamps[0].nanosec for i in r.infos]
        assert anchors == [T0, T0 + HALF]  # the frames are still opened by CAM_FRONT
        r.close()


def test_a_flooding_camera_is_bounded_by_count():
    """One camera floods (fresh stamps, then one repeated stamp): its buffer stays at max_buffered_images, the
    other cameras and the frames carry on."""
    from sensor_msgs.msg import CompressedImage

    from sparsedrive_ros.ros.conversions import ns_to_stamp

    with RosContext() as ctx:
        r = Rig(ctx, max_buffered_images=20)
        r.wait_matched()
        r.cycle(T0)
        r.settle()  # the first frame's inference must not hold the executor while the flood is published
        # The camera subscription is best effort with depth 5 (sensor data QoS): publish in batches the queue
        # holds and wait until the sync has taken each batch, so that what is counted does not depend on how
        # fast this machine spins.
        arrived = []
        add = r.node.sync.add
        r.node.sync.add = lambda cam, *a, **k: (arrived.append(cam == "CAM_BACK"), add(cam, *a, **k))[1]
        msg = CompressedImage(format="jpeg", data=r.rig.jpeg["CAM_BACK"])
        msg.header.frame_id = "CAM_BACK"
        for k in range(400):
            msg.header.stamp = ns_to_stamp(T0 + 100_000_000 + min(k, 199) * 1_000_000)  # then stuck
            r.rig.pub_img["CAM_BACK"].publish(msg)
            if k % 4 == 3:
                r.spin_until(lambda: sum(arrived) >= k + 1, 2.0)
        r.spin_until(lambda: False, 0.5)
        assert sum(arrived) >= 300, f"only {sum(arrived)} of 400 images reached the node"
        counters = r.node.sync.counters
        assert r.node.sync.buffer_sizes()["CAM_BACK"] <= 20
        assert counters["overflow:CAM_BACK"] > 0 and counters["repeated:CAM_BACK"] > 0
        n = len(r.infos)
        r.cycle(T0 + HALF)
        r.cycle(T0 + 2 * HALF)
        r.frames(n + 1)
        r.close()
