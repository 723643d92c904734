"""Latency budget of the node: per-stage times of full frames through real ROS topics, and the node's overhead
beyond the model (decode + calibration + preprocessing + post-processing + publishing).

    . scripts/env.sh && python benchmarks/bench_node.py [--frames 5] [--device cpu] [--small]
                                                        [--inference auto|eager|static|compiled] [--warmup 1]

Runs the node in-process with the full-size stage-2 model (seeded random weights; the speed does not depend on the
weights) and the test rig of six 1600x900 JPEG cameras with TF and CameraInfo (test/fake_rig.py). Prints medians.
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

import rclpy
import torch
from rclpy.executors import MultiThreadedExecutor
from rclpy.parameter import Parameter

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "test"))
from fake_rig import FakeRig  # noqa: E402
from nav_msgs.msg import Path  # noqa: E402
from visualization_msgs.msg import MarkerArray  # noqa: E402

from sparsedrive_ros.model.sparsedrive import build_sparsedrive, stage_config  # noqa: E402
from sparsedrive_ros.msg import Detection3DArray, EgoPlan, FrameInfo, MapElementArray, MotionForecastArray  # noqa: E402
from sparsedrive_ros.ros.sparsedrive_node import SparseDriveNode  # noqa: E402
from sparsedrive_ros.runtime.pipeline import PipelineConfig, SparseDrivePipeline  # noqa: E402

SEC = 1_000_000_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--small", action="store_true", help="the reduced test model (ResNet-18, 128x320)")
    parser.add_argument("--inference", default="auto", help="PipelineConfig.inference (docs/static-graph.md)")
    parser.add_argument("--warmup", type=int, default=1,
                        help="frames not timed (allocations; with --inference compiled, the compilation)")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = build_sparsedrive(2, stage_config(2, backbone_depth=18, image_hw=(128, 320)) if args.small else None)
    rclpy.init()
    config = PipelineConfig(device=args.device, inference=args.inference)
    node = SparseDriveNode(pipeline=SparseDrivePipeline(model, config),
                           parameter_overrides=[Parameter("min_frame_interval", value=0.0)])
    driver = rclpy.create_node("bench_driver")
    rig = FakeRig(driver)
    infos = []
    driver.create_subscription(FrameInfo, "/sparsedrive/frame_info", infos.append, 10)
    # Subscribe to every output, as the recorder does: the node builds only the messages somebody listens to.
    for name, typ in (("detections", Detection3DArray), ("map", MapElementArray), ("forecasts", MotionForecastArray),
                      ("plan", EgoPlan), ("markers", MarkerArray), ("plan_path", Path)):
        driver.create_subscription(typ, f"/sparsedrive/{name}", lambda m: None, 10, raw=True)  # no deserialising
    executor = MultiThreadedExecutor(num_threads=3)
    executor.add_node(node)
    executor.add_node(driver)

    def spin_until(done, timeout):
        end = time.monotonic() + timeout
        while not done() and time.monotonic() < end:
            executor.spin_once(timeout_sec=0.02)
        return done()

    spin_until(lambda: all(p.get_subscription_count() for p in rig.pub_img.values()), 20)
    t0 = 1_700_000_000 * SEC
    rig.publish_cycle(t0)
    for k in range(1, args.frames + args.warmup + 1):  # frame k-1 is decided by cycle k
        rig.publish_cycle(t0 + k * SEC // 2)
        if not spin_until(lambda: len(infos) >= k, 900):
            raise SystemExit(f"frame {k - 1} did not arrive: {dict(node.counters)} {dict(node.sync.counters)}")
    timed = infos[args.warmup:]  # the first frames include one-off allocations (and compilation)
    stages = {}
    for info in timed:
        for name, value in zip(info.stage_names, info.stage_latency):
            stages.setdefault(name, []).append(value)
    print(f"device {args.device}, inference {node.pipeline.inference}, "
          f"model {'small' if args.small else 'full stage 2 (ResNet-50, 256x704)'}, "
          f"{len(timed)} frames after {args.warmup} warm-up, torch threads {torch.get_num_threads()}")
    print(f"{'stage':<22}{'median ms':>12}")
    for name, values in stages.items():
        print(f"{name:<22}{statistics.median(values) * 1e3:>12.1f}")
    model_t = statistics.median(i.model_latency for i in timed)
    total_t = statistics.median(i.total_latency for i in timed)
    overhead = statistics.median(i.total_latency - i.model_latency for i in timed)
    print(f"{'model (sum)':<22}{model_t * 1e3:>12.1f}")
    print(f"{'total per frame':<22}{total_t * 1e3:>12.1f}")
    print(f"{'node overhead':<22}{overhead * 1e3:>12.1f}   ({100 * overhead / model_t:.1f} % of the model)")
    executor.shutdown()
    node.destroy_node()
    driver.destroy_node()
    rclpy.shutdown()


if __name__ == "__main__":
    main()
