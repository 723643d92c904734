"""Data-layer timings for a 2 s synthetic scene: generate, read (model inputs + GT), convert to a bag, replay.

    .venv/bin/python benchmarks/bench_data.py [--seconds 2] [--rate 1.0] [--no-ros]

Replays run in this process at ``--rate`` (1.0 = real time, so about ``--seconds`` of wall time each);
the reported lateness is how far behind schedule the worst message went out.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def bench(seconds: float, rate: float, with_ros: bool) -> None:
    from sparsedrive_ros.data.images import load_images
    from sparsedrive_ros.data.nuscenes import NuScenes, build_frame_inputs, build_ground_truth
    from sparsedrive_ros.data.synthetic import SyntheticConfig, generate_dataset
    from sparsedrive_ros.tools.nuscenes_to_bag import convert

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        ds = generate_dataset(Path(tmp) / "data", SyntheticConfig(seconds=seconds))
        gen = time.perf_counter() - t
        print(
            f"generate {seconds:.1f} s scene (1600x900, {ds.num_images} images): {gen:.2f} s "
            f"(render+encode {ds.seconds_rendering:.2f} s, {ds.seconds_rendering / ds.num_images * 1e3:.1f} ms/image)"
        )

        t = time.perf_counter()
        nusc = NuScenes(ds.dataroot, ds.version)
        samples = nusc.scene_samples(nusc.scenes[0])
        load = time.perf_counter() - t
        t = time.perf_counter()
        frames = [build_frame_inputs(nusc, s) for s in samples]
        inputs = (time.perf_counter() - t) / len(samples)
        t = time.perf_counter()
        for s in samples:
            build_ground_truth(nusc, s)
        gt = (time.perf_counter() - t) / len(samples)
        t = time.perf_counter()
        for f in frames:
            load_images(f.image_paths)
        imgs = (time.perf_counter() - t) / len(frames)
        print(f"read: tables {load * 1e3:.1f} ms, inputs {inputs * 1e3:.2f} ms/frame, GT+map {gt * 1e3:.1f} ms/frame, "
              f"6 JPEG decodes {imgs * 1e3:.1f} ms/frame")

        for storage in ("mcap", "sqlite3"):
            summary = convert(ds.dataroot, Path(tmp) / f"bag_{storage}", storage=storage)
            print(f"convert to {storage}: {summary.seconds:.2f} s, {sum(summary.messages.values())} messages")

        if with_ros:
            replay(ds.dataroot, Path(tmp) / "bag_mcap", rate)


def replay(dataroot: Path, bag: Path, rate: float) -> None:
    import rclpy
    from rclpy.parameter import Parameter

    from sparsedrive_ros.ros.bag_player import BagPlayer
    from sparsedrive_ros.ros.replay_node import ReplayNode

    rclpy.init()
    try:
        for name, make in (
            ("replay node", lambda: ReplayNode(parameter_overrides=[Parameter("dataroot", value=str(dataroot)),
                                                                     Parameter("rate", value=rate)])),
            ("bag player", lambda: BagPlayer(parameter_overrides=[Parameter("bag", value=str(bag)),
                                                                   Parameter("rate", value=rate)])),
        ):
            node = make()
            t = time.perf_counter()
            while not node.done.is_set():
                rclpy.spin_once(node, timeout_sec=0.05)
            wall = time.perf_counter() - t
            print(f"{name} at rate {rate}: {wall:.2f} s wall, {node.messages_published} messages, "
                  f"max lateness {node.pacer.max_lateness_s * 1e3:.1f} ms")
            node.destroy_node()
    finally:
        rclpy.try_shutdown()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--rate", type=float, default=1.0)
    p.add_argument("--no-ros", action="store_true")
    a = p.parse_args()
    bench(a.seconds, a.rate, not a.no_ros)


if __name__ == "__main__":
    main()
