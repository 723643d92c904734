"""Soak test of the node: a scene replayed in a loop for a long time; resident memory over time and every key
frame of every pass accounted for.

    . scripts/env.sh && python benchmarks/soak_node.py --minutes 30 [--rate 0.25] [--out benchmarks/results]

A synthetic scene is written as a rosbag2 and played by this package's bag player (a separate process, looping,
with /clock); the node runs in this process on sim time with a CI-sized model (64x192 input, ResNet-18: the
model is not the point, the node's buffers, threads and temporal resets are). Every pass must give exactly the
key frames the 2 Hz throttle selects from the scene's anchor stamps, the first with reset_reason
time_backwards. Resident memory (VmRSS of this process, which holds the node) is sampled every 10 s; the
result is the growth from the end of the warm-up (the first fifth, at least 2 minutes) to the end.
A short version runs in CI (test/test_node_operation.py::test_short_soak).
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SEC = 1_000_000_000


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def make_bag(directory: Path, seconds: float, width: int, height: int) -> tuple[Path, list[int]]:
    """A synthetic scene as an MCAP bag, and the anchor stamps the node's 0.45 s throttle keeps in one pass."""
    from rosbags.rosbag2 import Reader

    from sparsedrive_ros.data.synthetic import SyntheticConfig, generate_dataset
    from sparsedrive_ros.tools.nuscenes_to_bag import convert

    ds = generate_dataset(directory / "data", SyntheticConfig(seconds=seconds, width=width, height=height, seed=5))
    convert(ds.dataroot, directory / "bag", storage="mcap")
    with Reader(directory / "bag") as reader:
        conns = [c for c in reader.connections if c.topic == "/CAM_FRONT/image_rect_compressed"]
        anchors = sorted(t for _, t, _ in reader.messages(connections=conns))
    keys: list[int] = []
    for t in anchors:
        if not keys or t - keys[-1] >= int(0.45 * SEC):
            keys.append(t)
    return directory / "bag", keys


def ci_model():
    import torch

    from sparsedrive_ros.model.config import DetHeadConfig, MapHeadConfig, MotionPlanConfig, SparseDriveConfig
    from sparsedrive_ros.model.sparsedrive import build_sparsedrive

    torch.manual_seed(0)
    config = SparseDriveConfig(
        backbone_depth=18, image_hw=(64, 192),
        det=DetHeadConfig(num_anchor=32, num_temp_instances=16, num_decoder=2, num_learnable_pts=2, ffn_dims=128,
                          num_output=16),
        map=MapHeadConfig(num_anchor=8, num_temp_instances=2, num_decoder=2, num_learnable_pts=1,
                          fix_height=(0.0,), ffn_dims=128),
        motion_plan=MotionPlanConfig(num_det=8, num_map=2, num_blocks=1, ffn_dims=128))
    return build_sparsedrive(2, config)


@dataclass
class SoakResult:
    minutes: float
    keys_per_pass: int
    passes: list[list[int]] = field(default_factory=list)  # anchor stamps of each complete pass
    bad_passes: list[int] = field(default_factory=list)
    resets: list[str] = field(default_factory=list)
    samples: list[tuple[float, float, int]] = field(default_factory=list)  # (s, MiB, frames)
    counters: dict = field(default_factory=dict)
    warmup_s: float = 0.0

    @property
    def growth(self) -> float:
        """Relative RSS growth from the end of the warm-up to the end (mean of the last 3 samples each side)."""
        after = [m for t, m, _ in self.samples if t >= self.warmup_s]
        if len(after) < 2:
            return float("nan")
        start, end = sum(after[:3]) / len(after[:3]), sum(after[-3:]) / len(after[-3:])
        return end / start - 1.0

    def report(self) -> str:
        lines = [
            f"soak: {self.minutes:.1f} min, {len(self.passes)} complete passes of {self.keys_per_pass} key "
            f"frames, {sum(map(len, self.passes))} key frames in them",
            f"passes with a missing or extra key frame: {len(self.bad_passes)} {self.bad_passes[:10]}",
            f"resets: {len([r for r in self.resets if r])} ({', '.join(sorted(set(r for r in self.resets if r)))})",
            f"node counters: {self.counters}",
            f"resident memory: start {self.samples[0][1]:.1f} MiB, end of warm-up ({self.warmup_s:.0f} s) "
            f"{next(m for t, m, _ in self.samples if t >= self.warmup_s):.1f} MiB, end "
            f"{self.samples[-1][1]:.1f} MiB, max {max(m for _, m, _ in self.samples):.1f} MiB",
            f"growth after warm-up: {100 * self.growth:+.2f} % (limit +5 %)",
            "",
            "t_s,rss_mib,frames",
        ]
        lines += [f"{t:.0f},{m:.1f},{n}" for t, m, n in self.samples]
        return "\n".join(lines) + "\n"


def soak(minutes: float, rate: float = 0.1, seconds: float = 2.0, width: int = 800, height: int = 450,
         sample_s: float = 10.0, log=print) -> SoakResult:
    import rclpy
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.parameter import Parameter

    from sparsedrive_ros.msg import FrameInfo
    from sparsedrive_ros.ros.sparsedrive_node import SparseDriveNode
    from sparsedrive_ros.runtime.pipeline import SparseDrivePipeline

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    with tempfile.TemporaryDirectory() as tmp:
        bag, keys = make_bag(Path(tmp), seconds, width, height)
        context = rclpy.Context()
        rclpy.init(context=context)
        node = SparseDriveNode(pipeline=SparseDrivePipeline(ci_model()), context=context, parameter_overrides=[
            Parameter("use_sim_time", value=True), Parameter("skip_when_no_subscribers", value=False)])
        infos: list = []
        listener = rclpy.create_node("soak_listener", context=context)
        listener.create_subscription(FrameInfo, "/sparsedrive/frame_info", infos.append, 50)
        executor = MultiThreadedExecutor(num_threads=3, context=context)
        executor.add_node(node)
        executor.add_node(listener)
        player = subprocess.Popen([sys.executable, "-m", "sparsedrive_ros.tools.play_bag", str(bag), "--loop",
                                   "--rate", str(rate), "--wait-for-subscribers", "30"],
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        result = SoakResult(minutes, len(keys), warmup_s=max(min(120.0, 0.5 * minutes * 60), 0.2 * minutes * 60))
        t0 = time.monotonic()
        next_sample = t0
        try:
            while time.monotonic() - t0 < minutes * 60:
                executor.spin_once(timeout_sec=0.05)
                if time.monotonic() >= next_sample:
                    result.samples.append((time.monotonic() - t0, rss_mib(), len(infos)))
                    with node._lock:
                        busy, resets = node.counters["busy"], node.sync.counters["time_backwards"]
                    log(f"{result.samples[-1][0]:7.0f} s  rss {result.samples[-1][1]:7.1f} MiB  "
                        f"frames {len(infos)}  passes started {resets + 1}  busy {busy}")
                    next_sample += sample_s
                if player.poll() is not None:
                    raise RuntimeError(f"the bag player exited with {player.returncode}")
        finally:
            player.send_signal(signal.SIGINT)
            try:
                player.wait(timeout=30)  # a niced process on a busy machine can take seconds to shut down
            except subprocess.TimeoutExpired:
                player.kill()
                player.wait()
            result.samples.append((time.monotonic() - t0, rss_mib(), len(infos)))
            result.counters = {k: v for k, v in (node.sync.counters + node.counters).items()}
            executor.shutdown()
            node.destroy_node()
            listener.destroy_node()
            context.try_shutdown()
    # Split the frames into passes at each reset; the pass still running at the end is not complete.
    stamps = [i.header.stamp.sec * SEC + i.header.stamp.nanosec for i in infos]
    result.resets = [i.reset_reason for i in infos]
    starts = [k for k, r in enumerate(result.resets) if r in ("start", "time_backwards")]
    for n, (a, b) in enumerate(zip(starts, starts[1:])):
        result.passes.append(stamps[a:b])
        if stamps[a:b] != keys:
            result.bad_passes.append(n)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=0.1, help="bag playback rate (the node must keep up)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    args = parser.parse_args()
    result = soak(args.minutes, args.rate, log=lambda s: print(s, flush=True))
    text = result.report()
    print(text)
    out = Path(args.out) / f"soak_node_{args.minutes:g}min.txt"
    out.write_text(text)
    print(f"written to {out}")
    ok = not result.bad_passes and result.passes and result.growth <= 0.05
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
