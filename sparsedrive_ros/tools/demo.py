"""`make demo`: replay a scene through the SparseDrive node, record the outputs to MCAP and render PNG frames.

    python -m sparsedrive_ros.tools.demo [--dataroot DIR] [--out demo_output] [--device cpu] [--checkpoint FILE]
                                         [--rate R] [--scene NAME] [--seconds S]

Without --dataroot a small synthetic nuScenes scene is generated first (cached in <out>/synthetic_nuscenes).
Then launch/nuscenes_replay.launch.py runs (through ROS 2 launch's stand-in runner, so it works on the PyPI
ROS 2 wheels) with record:=true, in stages: the sparsedrive node and the recorder start first, the replay once
the node says it is ready (loading the model takes a while and frames sent before would be lost). When the
replay has ended and no new result has arrived for a while, everything is stopped with SIGINT and the bag and
frames are listed. Without --checkpoint the bundled demo model runs (small, about 0.5 s per frame on a 2-core CPU,
replayed at rate 0.25); any other model defaults to rate 0.02, which gives the full-size model 25 s of wall
time per 0.5 s key-frame interval. When the dataroot has annotations, the renders draw them beside the outputs.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from sparsedrive_ros.launch_runner import LaunchError, LaunchRunner, PackageResolver

NODE, RECORDER, REPLAY = "sparsedrive", "sparsedrive_recorder", "nuscenes_replay"
# Logged by the node once its subscriptions exist ("sparsedrive active: ..." since the lifecycle rework; the
# older "sparsedrive ready" still counts).
READY_MARKS = ("sparsedrive active", "sparsedrive ready")
# The demo model was trained for 1.6 h on a CPU: its confidences are low (true boxes score 0.1-0.5), so the
# node's default threshold of 0.25 would hide most of them (docs/demo-model.md).
DEMO_MODEL_SCORE_THRESHOLD = 0.1


@dataclass(frozen=True)
class DemoTimeouts:
    ready_s: float = 600.0  # model construction (and checkpoint loading) on a busy CPU
    discovery_s: float = 3.0  # the replay's start delay once matched: the node's subscriptions match too
    replay_s: float = 1800.0
    # After the replay, the node holds at most one frame in work and one waiting: once no result has come for
    # longer than one frame's latency (with margin), the waiting one has been published too.
    min_idle_s: float = 15.0
    idle_latency_factor: float = 1.5
    stop_s: float = 60.0


def _parse(argv: Optional[list[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m sparsedrive_ros.tools.demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataroot", default="", help="nuScenes dataroot; default: generate a synthetic scene")
    p.add_argument("--version", default="v1.0-mini", help="nuScenes version folder of --dataroot")
    p.add_argument("--scene", default="", help="scene names to replay, comma-separated (default: every scene)")
    p.add_argument("--out", default="demo_output", help="output directory (bag/, frames/ are replaced)")
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1")
    p.add_argument("--checkpoint", default="",
                   help="SparseDrive weights (official .pth, .safetensors, training .pt); default: the bundled demo "
                        "model (trained on the synthetic world only); 'random': seeded random weights")
    p.add_argument("--rate", type=float, default=None,
                   help="replay speed (1.0 = real time). Default: 0.25 for the small demo model (about 0.5 s per "
                        "frame on a busy 2-core CPU), 0.02 for any other model (the full-size model takes 4-30 s per "
                        "frame on a CPU: 25 s of wall time per 0.5 s key-frame interval). On a GPU use ~0.5")
    p.add_argument("--seconds", type=float, default=2.0, help="length of the synthetic scene (key frames every 0.5 s)")
    p.add_argument("--score-threshold", type=float, default=None,
                   help=f"detections below are not published; default: {DEMO_MODEL_SCORE_THRESHOLD} for the demo model "
                        "(its scores run low), the node's default (config/sparsedrive.param.yaml) for other models")
    return p.parse_args(argv)


def _say(text: str) -> None:
    print(f"[demo] {text}", flush=True)


def prepare_synthetic(out: Path, seconds: float) -> tuple[Path, str]:
    """A synthetic dataroot under `out`, reused when it was generated with the same settings."""
    from sparsedrive_ros.data.synthetic import SyntheticConfig, generate_dataset

    config = SyntheticConfig(seconds=seconds, num_scenes=1)
    root = out / "synthetic_nuscenes"
    stamp = root / "demo_config.json"
    wanted = json.dumps({k: str(v) for k, v in asdict(config).items()}, sort_keys=True)
    if stamp.is_file() and stamp.read_text() == wanted:
        _say(f"reusing the synthetic scene in {root}")
    else:
        if root.exists():
            shutil.rmtree(root)
        _say(f"generating a {seconds:g} s synthetic nuScenes scene (6 cameras, 12 Hz) in {root} ...")
        t0 = time.monotonic()
        dataset = generate_dataset(root, config)
        stamp.write_text(wanted)
        _say(f"generated {dataset.num_images} images in {time.monotonic() - t0:.1f} s")
    return root, config.version


def write_params(out: Path, score_threshold: float) -> Path:
    """The node's parameters (its defaults, which config/sparsedrive.param.yaml lists) with another
    score_threshold, as a parameters file for the launch's params_file argument."""
    import yaml

    from sparsedrive_ros.ros.node_config import default_values

    values = default_values() | {"score_threshold": float(score_threshold)}
    path = out / "sparsedrive.param.yaml"
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": values}}, sort_keys=False))
    return path


def clear_previous_run(out: Path) -> None:
    """Removes only what a previous demo run wrote (the recorder refuses to overwrite a bag)."""
    for name in ("bag", "frames"):
        if (out / name).exists():
            shutil.rmtree(out / name)
    (out / "progress.json").unlink(missing_ok=True)


def read_progress(out: Path) -> dict:
    try:
        return json.loads((out / "progress.json").read_text())
    except (OSError, ValueError):
        return {}


def _pump_until(runner: LaunchRunner, done, timeout: float, what: str) -> bool:
    deadline = time.monotonic() + timeout
    while not done():
        for name in (NODE, RECORDER):
            if runner.group.returncode(name) is not None:
                raise RuntimeError(f"{name} exited (code {runner.group.returncode(name)}) while {what}")
        if time.monotonic() > deadline:
            return False
        runner.group.step(0.2)
    return True


def run_demo(args: argparse.Namespace, timeouts: DemoTimeouts = DemoTimeouts(),
             resolver: Optional[PackageResolver] = None) -> int:
    """Runs the demo; returns the process exit status. `resolver` lets tests point at another package tree."""
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if args.rate is None:
        args.rate = 0.25 if not args.checkpoint else 0.02
    if args.rate <= 0:
        raise ValueError(f"--rate must be > 0, got {args.rate}")
    dataroot, version = (Path(args.dataroot).resolve(), args.version) if args.dataroot \
        else prepare_synthetic(out, args.seconds)
    clear_previous_run(out)
    if not args.checkpoint:
        _say("no checkpoint given: the bundled demo model (sparsedrive_ros/assets/demo_model.safetensors), trained")
        _say("on the synthetic world only; pass --checkpoint sparsedrive_stage2.pth for the official model.")
    elif args.checkpoint.strip() == "random":
        _say("!" * 72)
        _say("--checkpoint random: the model runs with seeded RANDOM weights. Boxes, map, forecasts and plan are")
        _say("meaningless (every rendered frame carries a red banner saying so).")
        _say("!" * 72)
    threshold = args.score_threshold
    if threshold is None and not args.checkpoint:
        threshold = DEMO_MODEL_SCORE_THRESHOLD
    arguments = {"dataroot": str(dataroot), "version": version, "scene": args.scene, "rate": repr(args.rate),
                 "device": args.device, "checkpoint": args.checkpoint, "record": "true", "out_dir": str(out),
                 "use_sim_time": "true", "rviz": "false", "wait_for_subscribers": "30.0",
                 "start_delay": repr(timeouts.discovery_s)}
    if threshold is not None:
        arguments["params_file"] = str(write_params(out, threshold))
    ready = []
    runner = LaunchRunner.from_package("sparsedrive_ros", "nuscenes_replay.launch.py", arguments, resolver=resolver)
    runner.group.log_line = lambda name, line: ready.append(True) \
        if name == NODE and any(mark in line for mark in READY_MARKS) else None
    try:
        runner.start([NODE, RECORDER])
        _say("waiting for the sparsedrive node to build the model ...")
        if not _pump_until(runner, lambda: bool(ready), timeouts.ready_s, "loading the model"):
            raise RuntimeError(f"the sparsedrive node was not ready within {timeouts.ready_s:.0f} s")
        _say(f"node ready; starting the replay at rate {args.rate:g}")
        runner.start([REPLAY])
        if not _pump_until(runner, lambda: runner.group.returncode(REPLAY) is not None, timeouts.replay_s,
                           "the replay was running"):
            raise RuntimeError(f"the replay did not finish within {timeouts.replay_s:.0f} s")
        _say("replay finished; waiting for the last results")
        replay_end = time.time()
        _pump_until(runner, lambda: _idle(out, timeouts, replay_end), timeouts.replay_s, "finishing the last frames")
    except (RuntimeError, LaunchError) as err:
        _say(f"error: {err}")
        status = 1
    except KeyboardInterrupt:
        _say("interrupted")
        status = 130
    else:
        status = None
    finally:
        # SIGINT to every process: the recorder renders what is pending and closes the bag.
        if not runner.stop("demo finished" if status is None else "demo stopped", timeouts.stop_s):
            _say("some processes had to be killed")
        runner.close()
    report = _report(out)
    return report if status is None else status


def _idle(out: Path, timeouts: DemoTimeouts, since: float) -> bool:
    """True once no result has arrived for the quiet time, counted from `since` (wall time) at the earliest."""
    progress = read_progress(out)
    last = max(since, progress.get("last_output_wall") or 0.0)
    quiet = max(timeouts.min_idle_s, timeouts.idle_latency_factor * float(progress.get("last_total_latency") or 0.0))
    return time.time() - last > quiet


def _report(out: Path) -> int:
    progress = read_progress(out)
    frames = sorted((out / "frames").glob("frame_*.png"))
    _say("=" * 72)
    _say(f"bag (MCAP, rosbag2 v8): {out / 'bag'}  ({sum(progress.get('messages', {}).values())} messages)")
    _say(f"frames (PNG):           {out / 'frames'}  ({len(frames)} frames"
         f"{', e.g. ' + frames[-1].name if frames else ''})")
    _say(f"model frames received: {progress.get('frames_received', 0)}, last latency "
         f"{progress.get('last_total_latency', float('nan')):.2f} s")
    _say("=" * 72)
    if not progress.get("finished"):
        _say("the recorder did not close the bag cleanly")
        return 1
    if not frames:
        _say("no frame was processed: the node never produced a result (see its log above)")
        return 1
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    args = _parse(argv)
    try:
        return run_demo(args)
    except (ValueError, LaunchError) as err:
        _say(f"error: {err}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
