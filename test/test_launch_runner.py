"""The stand-in launch runner: shipped launch files evaluate as ROS 2 launch would, and processes run and stop."""
import io
import json
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest
import yaml

from sparsedrive_ros.launch_runner import (
    LaunchError,
    LaunchRunner,
    PackageResolver,
    api,
    declared_arguments,
    load_launch_description,
    plan_launch,
    real_launch_available,
)

REPO = Path(__file__).resolve().parents[1]
LAUNCH = REPO / "launch"


def plan_of(file_name, **arguments):
    plan = plan_launch(load_launch_description(LAUNCH / file_name), arguments, PackageResolver([REPO]))
    params = {p.name: {} for p in plan.processes}
    for spec in plan.processes:  # what the node will see: every params file merged in order
        for f in spec.param_files:
            params[spec.name].update(yaml.safe_load(Path(f).read_text())["/**"]["ros__parameters"])
    names = [p.name for p in plan.processes]
    by_name = {p.name: p for p in plan.processes}
    plan.cleanup()
    return plan, names, by_name, params


@pytest.fixture
def fake_rviz(tmp_path, monkeypatch):
    """An ament prefix holding an `rviz2` executable, so the rviz branch resolves without RViz installed."""
    prefix = tmp_path / "prefix"
    (prefix / "share" / "ament_index" / "resource_index" / "packages").mkdir(parents=True)
    (prefix / "share" / "ament_index" / "resource_index" / "packages" / "rviz2").touch()
    exe = prefix / "lib" / "rviz2" / "rviz2"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    monkeypatch.setenv("AMENT_PREFIX_PATH", f"{prefix}{os.pathsep}{os.environ.get('AMENT_PREFIX_PATH', '')}")
    return exe


def test_real_launch_is_not_mistaken_for_the_repo_dir_or_pypi_launch(monkeypatch):
    # From the repository root, `import launch` can find the launch/ directory as a namespace package; PyPI has an
    # unrelated `launch` 0.1.3. Neither has a LaunchDescription, so neither counts as ROS 2 launch.
    repo_dir = types.ModuleType("launch")
    repo_dir.__path__ = [str(LAUNCH)]
    pypi_launch = types.ModuleType("launch")
    launch_ros = types.ModuleType("launch_ros")
    launch_ros.actions = types.ModuleType("launch_ros.actions")
    monkeypatch.setitem(sys.modules, "launch_ros", launch_ros)
    monkeypatch.setitem(sys.modules, "launch_ros.actions", launch_ros.actions)
    for impostor in (repo_dir, pypi_launch):
        monkeypatch.setitem(sys.modules, "launch", impostor)
        assert real_launch_available() is False


def test_real_launch_detection_matches_this_installation(tmp_path):
    # True on a ROS 2 install with launch and launch_ros, False with the PyPI wheels: ask a clean interpreter
    # outside the repository root.
    probe = ("import launch, launch_ros.actions; "
             "print(hasattr(launch, 'LaunchService') and hasattr(launch_ros.actions, 'Node'))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True)
    installed = result.returncode == 0 and result.stdout.strip() == "True"
    assert real_launch_available() is installed


def test_stand_ins_do_not_leak_out_of_the_runner():
    before = {m: sys.modules.get(m) for m in ("launch", "launch.actions", "launch_ros", "launch_ros.actions")}
    description = load_launch_description(LAUNCH / "nuscenes_replay.launch.py")
    assert isinstance(description, api.LaunchDescription)
    assert {m: sys.modules.get(m) for m in before} == before


def test_nuscenes_replay_defaults():
    plan, names, by_name, params = plan_of("nuscenes_replay.launch.py")
    assert names == ["nuscenes_replay", "sparsedrive"]
    # "sparsedrive" once more: the lifecycle variant of the node (lifecycle:=true) is not started.
    assert sorted(plan.skipped) == ["rviz2", "sparsedrive", "sparsedrive_recorder"]
    node = by_name["sparsedrive"]
    assert node.required and not by_name["nuscenes_replay"].required
    assert node.param_files[0] == str(REPO / "config" / "sparsedrive.param.yaml")
    assert node.cmd[:2] == [sys.executable, str(REPO / "nodes" / "sparsedrive_node")]
    assert node.cmd[node.cmd.index("--ros-args") + 1:][:2] == ["-r", "__node:=sparsedrive"]
    # Launch overrides come after the YAML file; launch_ros types them (bool, not the text "true").
    assert params["sparsedrive"]["use_sim_time"] is True
    assert params["sparsedrive"]["device"] == "cpu" and params["sparsedrive"]["checkpoint"] == ""
    assert params["sparsedrive"]["reference_frame"] == "LIDAR_TOP"  # from config/sparsedrive.param.yaml
    assert params["nuscenes_replay"] == {"dataroot": "", "version": "v1.0-mini", "scene": "", "rate": 1.0,
                                         "loop": False, "synthetic_seconds": 2.0, "wait_for_subscribers": 0.0,
                                         "start_delay": 0.0}


def test_nuscenes_replay_arguments_reach_the_nodes(tmp_path, fake_rviz):
    plan, names, by_name, params = plan_of(
        "nuscenes_replay.launch.py", record="true", rviz="true", out_dir=str(tmp_path / "rec"), rate="1",
        dataroot="/data/nuscenes", device="cuda:1", checkpoint="/w/stage2.pth", use_sim_time="false")
    assert names == ["nuscenes_replay", "sparsedrive", "sparsedrive_recorder", "rviz2"]
    assert plan.skipped == ["sparsedrive"]  # the lifecycle variant
    assert params["nuscenes_replay"]["rate"] == 1.0 and isinstance(params["nuscenes_replay"]["rate"], float)
    assert params["nuscenes_replay"]["dataroot"] == "/data/nuscenes"
    assert params["sparsedrive"]["device"] == "cuda:1" and params["sparsedrive"]["checkpoint"] == "/w/stage2.pth"
    assert params["sparsedrive"]["use_sim_time"] is False
    assert params["sparsedrive_recorder"] == {"out_dir": str(tmp_path / "rec"), "use_sim_time": False,
                                              "dataroot": "/data/nuscenes", "version": "v1.0-mini"}
    rviz = by_name["rviz2"]
    assert rviz.cmd[0] == str(fake_rviz)
    assert rviz.cmd[1:3] == ["-d", str(REPO / "config" / "sparsedrive.rviz")]
    assert (REPO / "config" / "sparsedrive.rviz").is_file()


def test_sparsedrive_launch_is_live_by_default():
    plan, names, _, params = plan_of("sparsedrive.launch.py")
    assert names == ["sparsedrive"] and plan.skipped == ["sparsedrive", "rviz2"]
    assert params["sparsedrive"]["use_sim_time"] is False


def test_bag_replay_needs_a_bag_and_passes_it():
    with pytest.raises(LaunchError, match="missing required launch argument 'bag'"):
        plan_of("bag_replay.launch.py")
    _, names, _, params = plan_of("bag_replay.launch.py", bag="/bags/scene", loop="true", rate="0.5")
    assert names == ["bag_player", "sparsedrive"]
    assert params["bag_player"] == {"bag": "/bags/scene", "rate": 0.5, "loop": True}


@pytest.mark.parametrize("arguments, message", [
    ({"rviz": "yes"}, "is not one of"),
    ({"recrod": "true"}, "unknown launch arguments"),
    ({"params_file": "/nonexistent/p.yaml"}, "does not exist"),
])
def test_bad_arguments_are_rejected_with_their_value(arguments, message):
    with pytest.raises(LaunchError, match=message):
        plan_of("nuscenes_replay.launch.py", **arguments)


def test_every_launch_argument_has_a_description():
    for path in sorted(LAUNCH.glob("*.launch.py")):
        for decl in declared_arguments(load_launch_description(path)):
            assert decl.description, f"{path.name}: {decl.name}"


def test_conditions_follow_launch_semantics():
    ctx = api.LaunchContext(arguments={"a": "True", "b": "0", "c": "maybe"}, find_share=lambda p: Path("/"))
    assert api.IfCondition(api.LaunchConfiguration("a")).evaluate(ctx)
    assert api.UnlessCondition(api.LaunchConfiguration("b")).evaluate(ctx)
    with pytest.raises(LaunchError, match="'maybe'"):
        api.IfCondition(api.LaunchConfiguration("c")).evaluate(ctx)
    with pytest.raises(LaunchError, match="'zzz' does not exist"):
        api.perform(api.LaunchConfiguration("zzz"), ctx)


TALKER = '''
import sys, rclpy
from rclpy.executors import ExternalShutdownException
from std_msgs.msg import String
def main():
    rclpy.init(args=sys.argv)
    node = rclpy.create_node("unnamed")
    greeting = node.declare_parameter("greeting", "none").value
    pub = node.create_publisher(String, "/tiny/chatter", 10)
    node.create_timer(0.1, lambda: pub.publish(String(data=greeting)))
    print(f"talker {node.get_name()} up, sim time {node.get_parameter('use_sim_time').value}", flush=True)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        print("talker stopped by signal", flush=True)
    return 0
sys.exit(main())
'''

LISTENER = '''
import sys, rclpy
from std_msgs.msg import String
def main():
    rclpy.init(args=sys.argv)
    node = rclpy.create_node("unnamed")
    got = []
    node.create_subscription(String, "/tiny/chatter", lambda m: got.append(m.data), 10)
    while len(got) < 3:
        rclpy.spin_once(node, timeout_sec=0.1)
    print(f"listener {node.get_name()} heard {got[0]!r} x{len(got)}", flush=True)
    return 0
sys.exit(main())
'''

TINY_LAUNCH = '''
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument("greeting", default_value="hello", description="what the talker says"),
        Node(package="tiny_pkg", executable="talker", name="tiny_talker",
             parameters=[{"greeting": LaunchConfiguration("greeting"), "use_sim_time": False}]),
        Node(package="tiny_pkg", executable="listener", name="tiny_listener", on_exit=Shutdown()),
    ])
'''


@pytest.mark.ros
def test_tiny_launch_runs_two_nodes_and_shuts_down_cleanly(tmp_path, ros_env):
    pytest.importorskip("rclpy", reason="rclpy not installed: run `make setup`")
    root = tmp_path / "tiny_pkg"
    (root / "nodes").mkdir(parents=True)
    (root / "launch").mkdir()
    (root / "package.xml").write_text("<package format='3'><name>tiny_pkg</name></package>")
    for name, code in (("talker", TALKER), ("listener", LISTENER)):
        (root / "nodes" / name).write_text("#!/usr/bin/env python3\n" + textwrap.dedent(code))
    (root / "launch" / "tiny.launch.py").write_text(TINY_LAUNCH)

    out = io.StringIO()
    runner = LaunchRunner.from_package("tiny_pkg", "tiny.launch.py", {"greeting": "hi there"},
                                       resolver=PackageResolver([root]), out=out, grace_s=5.0)
    runner.group.base_env = ros_env
    runner.start()
    finished = runner.group.wait_all(timeout=90.0)
    if not finished:
        runner.stop("test timeout", timeout=10.0)
    runner.close()
    log = out.getvalue()
    assert finished, log
    assert "[tiny_talker] talker tiny_talker up, sim time False" in log
    assert "[tiny_listener] listener tiny_listener heard 'hi there' x3" in log
    # The listener is required: its exit stops the talker with SIGINT, which the talker handles.
    assert "shutting down: required process tiny_listener exited" in log
    assert "[tiny_talker] talker stopped by signal" in log
    assert runner.group.returncode("tiny_listener") == 0
    assert runner.group.returncode("tiny_talker") == 0
    assert runner.group.exit_status() == 0


FAKE_SPARSEDRIVE_NODE = '''
"""Stand-in for the sparsedrive node: same name, topics and ready line; 0.5 s of "model" per 2 Hz frame."""
import sys, time
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage
from sparsedrive_ros.msg import (Detection3D, Detection3DArray, EgoPlan, FrameInfo, MapElementArray,
                                 MotionForecastArray)

def main():
    rclpy.init(args=sys.argv)
    node = rclpy.create_node("unnamed")
    time.sleep(1.0)  # "building the model"
    pubs = {name: node.create_publisher(cls, "~/" + name, 10) for name, cls in (
        ("detections", Detection3DArray), ("map", MapElementArray), ("forecasts", MotionForecastArray),
        ("plan", EgoPlan), ("frame_info", FrameInfo))}
    last = [None]
    count = [0]
    def on_image(msg):
        t = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        if last[0] is not None and t - last[0] < 0.45:
            return
        last[0] = t
        time.sleep(0.5)
        for name, pub in pubs.items():
            out = pub.msg_type()
            out.header = msg.header
            out.header.frame_id = "LIDAR_TOP"
            out.frame_index = count[0]
            if name == "detections":
                d = Detection3D(instance_id=1, label=0, score=0.9)
                d.center.y, d.size.x, d.size.y, d.size.z = 12.0, 4.0, 2.0, 1.6
                out.detections = [d]
            if name == "frame_info":
                out.total_latency = 0.5
            pub.publish(out)
        count[0] += 1
    node.create_subscription(CompressedImage, "/CAM_FRONT/image_rect_compressed", on_image, qos_profile_sensor_data)
    node.get_logger().info("sparsedrive ready: fake node")
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    print(f"fake node processed {count[0]} frames", flush=True)
    return 0

sys.exit(main())
'''


@pytest.mark.ros
@pytest.mark.slow
def test_demo_stages_the_launch_and_stops_after_the_last_result(tmp_path, ros_env, monkeypatch, capsys):
    """The demo's orchestration with the real replay and recorder and a fast stand-in for the model node."""
    pytest.importorskip("rclpy", reason="rclpy not installed: run `make setup`")
    from sparsedrive_ros.tools import demo

    root = tmp_path / "pkg"
    for rel in ("package.xml", "launch/nuscenes_replay.launch.py", "config/sparsedrive.param.yaml",
                "nodes/nuscenes_replay", "nodes/sparsedrive_recorder"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes((REPO / rel).read_bytes())
    (root / "nodes" / "sparsedrive_node").write_text("#!/usr/bin/env python3\n" + FAKE_SPARSEDRIVE_NODE)
    monkeypatch.setenv("PYTHONPATH", ros_env["PYTHONPATH"])

    out = tmp_path / "demo_output"
    args = demo._parse(["--out", str(out), "--rate", "0.5", "--seconds", "1.0"])
    timeouts = demo.DemoTimeouts(ready_s=120, discovery_s=2.0, replay_s=120, min_idle_s=3.0, stop_s=60)
    status = demo.run_demo(args, timeouts, resolver=PackageResolver([root]))
    log = capsys.readouterr().out
    assert status == 0, log[-6000:]
    assert "the bundled demo model" in log  # no --checkpoint: the demo model, said so
    # The replay ran to its end on its own; node and recorder were stopped afterwards and exited cleanly.
    assert "process has finished: nuscenes_replay (exit code 0)" in log
    assert "process has finished: sparsedrive (exit code 0, after a stop request)" in log
    assert "process has finished: sparsedrive_recorder (exit code 0, after a stop request)" in log
    assert log.index("node ready; starting the replay") < log.index("process started: nuscenes_replay")
    processed = int(log.split("fake node processed ")[1].split()[0])
    assert processed >= 2  # a 1 s scene has three 2 Hz key frames
    frames = sorted((out / "frames").glob("frame_*.png"))
    assert len(frames) == processed
    progress = json.loads((out / "progress.json").read_text())
    assert progress["finished"] and progress["messages"]["/sparsedrive/detections"] == processed
    assert progress["messages"]["/CAM_FRONT/image_rect_compressed"] >= 12  # 12 Hz for 1 s, recorded too
    assert f"bag (MCAP, rosbag2 v8): {out / 'bag'}" in log


def test_launch_cli_prints_the_plan_and_rejects_bad_arguments(capsys):
    from sparsedrive_ros.tools.launch import main

    assert main(["sparsedrive_ros", "nuscenes_replay.launch.py", "--print", "record:=true", "--standin"]) == 0
    out = capsys.readouterr().out
    assert "sparsedrive (required): " in out and "nodes/sparsedrive_node --ros-args -r __node:=sparsedrive" in out
    assert "sparsedrive_recorder: " in out and "skipped (condition false): sparsedrive, rviz2" in out
    assert main(["sparsedrive_ros", "bag_replay.launch.py", "--show-args"]) == 0
    assert "'bag':\n        rosbag2 directory" in capsys.readouterr().out
    assert main(["sparsedrive_ros", "nuscenes_replay.launch.py", "--print", "rate=2"]) == 2
    assert "'rate=2' is not of the form name:=value" in capsys.readouterr().err
    assert main(["sparsedrive_ros", "no_such.launch.py", "--print"]) == 2
    assert "launch file 'no_such.launch.py'" in capsys.readouterr().err
