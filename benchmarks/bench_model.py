"""Per-stage timing of one full SparseDrive frame (6 cameras, 256x704) with the temporal state carried.

    python benchmarks/bench_model.py [--iters 5] [--device cpu|cuda] [--dtype float32|float64]
                                     [--autocast bf16|fp16] [--checkpoint FILE] [--stage 2] [--threads N]
                                     [--paths eager,static,compiled,onnx]

Prints the median over iterations (the first, a warm-up without history, is dropped) of: backbone, neck,
det head, map head, motion/planning head, decoders + glue (frame total minus the modules), frame total, the share
spent in deformable aggregation (visible samples per call) and the peak RSS (ru_maxrss). Random weights unless
--checkpoint is given; a nuScenes-like camera rig so that key points are visible in one or two cameras.
Targets on the 2-core CPU (float32): three heads <= 1.5 s, frame <= 4 s, peak RSS <= 2 GiB.
On a CPU shared with other busy processes, OpenMP's spinning threads slow the many small head ops by up to 10x:
compare ``--threads 1`` and ``OMP_WAIT_POLICY=PASSIVE`` (set before Python starts); the cpu column is the stable one.

``--paths`` instead times whole frames side by side (docs/static-graph.md#choosing-a-path): ``eager``
(SparseDriveStream), ``static`` (the fixed-shape graph run eagerly), ``compiled`` (image encoder and heads step each
under torch.compile(fullgraph=True); CUDA graphs on CUDA, inductor C++ on the CPU, where compiling takes minutes)
and ``onnx`` (the two exported graphs in onnxruntime on the CPU; needs ``make setup-onnx``). Each row: median
encoder, heads and frame ms over --iters frames after the warm-up frames, and the first frame's seconds
(compilation / session set-up included).
"""

from __future__ import annotations

import argparse
import copy
import math
import resource
import statistics
import time
from collections import defaultdict
from contextlib import nullcontext
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from sparsedrive_ros.model import FrameInputs, build_sparsedrive
from sparsedrive_ros.model import deformable_layer as dfa
from sparsedrive_ros.model import deformable_op as da_module
from sparsedrive_ros.model.checkpoint import check_state_dict, detect_stage, load_checkpoint
from sparsedrive_ros.model.preprocess import inference_transform, update_projection

STAGES = {"backbone": "img_backbone", "neck": "img_neck", "det head": "head.det_head", "map head": "head.map_head",
          "motion/planning": "head.motion_plan_head"}
# nuScenes camera yaws (degrees, FRONT, FRONT_RIGHT, FRONT_LEFT, BACK, BACK_LEFT, BACK_RIGHT) about the lidar z axis.
CAMERA_YAWS = (0.0, -55.0, 55.0, 180.0, 110.0, -110.0)
AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


def nuscenes_like_projection() -> torch.Tensor:
    """[1, 6, 4, 4] lidar -> pixels of the 704x256 input: 1600x900 intrinsics, then the 0.44 resize + crop."""
    intrinsics = np.array([[1266.4, 0, 816.3, 0], [0, 1266.4, 491.5, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    axes = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])  # lidar (x right, y forward, z up) -> camera (z forward)
    mats = []
    for yaw in CAMERA_YAWS:
        a = math.radians(yaw)
        rot = np.array([[math.cos(a), math.sin(a), 0], [-math.sin(a), math.cos(a), 0], [0, 0, 1]])
        lidar2cam = np.eye(4)
        lidar2cam[:3, :3] = axes @ rot
        lidar2cam[:3, 3] = [0.0, 0.3, -0.8]  # camera ~1 m from the lidar, a little lower
        mats.append(update_projection(intrinsics @ lidar2cam, inference_transform((900, 1600))))
    return torch.tensor(np.stack(mats), dtype=torch.float32)[None]


def make_frame(k: int, gen: torch.Generator) -> FrameInputs:
    pose = torch.eye(4, dtype=torch.float64)
    pose[1, 3] = 2.5 * k  # 2.5 m forward per 0.5 s frame
    return FrameInputs(
        images=torch.randn(1, 6, 3, 256, 704, generator=gen),
        projection_mat=nuscenes_like_projection(),
        image_wh=torch.tensor([[704.0, 256.0]] * 6)[None],
        timestamp=torch.tensor([1533151603.0 + 0.5 * k], dtype=torch.float64),
        T_global=pose[None], T_global_inv=torch.linalg.inv(pose)[None],
        command=torch.tensor([2]),
    )


class StageTimer:
    """Forward hooks that time named submodules (synchronising CUDA) and a wrapper around the DFA sampling."""

    def __init__(self, model: torch.nn.Module, device: torch.device) -> None:
        self.device = device
        self.times: dict[str, float] = defaultdict(float)
        self.cpu_times: dict[str, float] = defaultdict(float)
        self._starts: dict[str, tuple[float, float]] = {}
        for stage, path in STAGES.items():
            module = model.get_submodule(path) if _has_submodule(model, path) else None
            if module is not None:
                module.register_forward_pre_hook(lambda *_, s=stage: self._start(s))
                module.register_forward_hook(lambda *_, s=stage: self._stop(s))
        self.da_calls = 0
        self.da_samples: list[int] = []
        original = dfa.deformable_aggregation

        def timed(feature_maps, points, weights, **kwargs):
            self._start("deformable aggregation")
            out = original(feature_maps, points, weights, **kwargs)
            self._stop("deformable aggregation")
            self.da_calls += 1
            self.da_samples.append(int(da_module.valid_sample_mask(points).sum()))
            return out

        dfa.deformable_aggregation = timed  # the name the DFA module calls

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def _start(self, stage: str) -> None:
        self._sync()
        self._starts[stage] = (time.perf_counter(), time.process_time())

    def _stop(self, stage: str) -> None:
        self._sync()
        wall, cpu = self._starts.pop(stage)
        self.times[stage] += time.perf_counter() - wall
        self.cpu_times[stage] += time.process_time() - cpu

    def reset(self) -> None:
        self.times = defaultdict(float)
        self.cpu_times = defaultdict(float)
        self.da_samples = []


def _has_submodule(model: torch.nn.Module, path: str) -> bool:
    try:
        return model.get_submodule(path) is not None
    except AttributeError:
        return False


def build_model(args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    torch.manual_seed(0)
    state_dict = load_checkpoint(args.checkpoint) if args.checkpoint else None
    stage = args.stage or (detect_stage(state_dict) if state_dict is not None else 2)
    model = build_sparsedrive(stage)
    if state_dict is not None:
        check_state_dict(state_dict, model)
        model.load_state_dict(state_dict)
    if args.autocast:
        model.backbone_autocast = AUTOCAST[args.autocast]
    return model.eval().to(device=device, dtype=dtype)


def _report(per_stage: dict[str, list[float]], totals: list[float]) -> dict[str, float]:
    """Median ms per stage plus derived rows computed per frame before the median (decoders + glue = frame -
    modules, three heads = det + map + motion)."""
    rows = dict(per_stage)
    rows["frame total"] = totals
    rows["decoders + glue"] = [total - sum(per_stage[s][i] for s in STAGES if s in per_stage)
                               for i, total in enumerate(totals)]
    rows["three heads"] = [sum(per_stage[s][i] for s in ("det head", "map head", "motion/planning") if s in per_stage)
                           for i in range(len(totals))]
    return {stage: statistics.median(values) * 1e3 for stage, values in rows.items()}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class _PathTimes:
    """Per-frame times of one path: frame 0 is the first call (compilation, set-up), frame 1 a warm-up."""

    def __init__(self) -> None:
        self.encode_ms: list[float] = []
        self.heads_ms: list[float] = []
        self.frame_ms: list[float] = []
        self.first_s = 0.0

    def add(self, k: int, start: float, mid: Optional[float], end: float) -> None:
        if k == 0:
            self.first_s = end - start
        elif k > 1:
            if mid is not None:
                self.encode_ms.append((mid - start) * 1e3)
                self.heads_ms.append((end - mid) * 1e3)
            self.frame_ms.append((end - start) * 1e3)


def time_paths(args: argparse.Namespace, model: torch.nn.Module, device: torch.device) -> None:
    """Frame times of each requested inference path on the same frames (see the module docstring)."""
    import tempfile

    from sparsedrive_ros.model.sparsedrive import SparseDriveStream
    from sparsedrive_ros.model.static_frame import StaticHeads, empty_state

    gen = torch.Generator().manual_seed(0)
    frames = [make_frame(k, gen) for k in range(args.iters + 2)]
    dtype = model.img_backbone.conv1.weight.dtype
    rows = []
    for path in args.paths.split(","):
        times = _PathTimes()
        if path == "eager":
            stream = SparseDriveStream(model)
            for k, f in enumerate(frames):
                _sync(device)
                start = time.perf_counter()
                stream.step(f)
                _sync(device)
                times.add(k, start, None, time.perf_counter())
        elif path in ("static", "compiled"):
            heads = StaticHeads(model, with_raw=False)
            encoder = model.extract_feat
            mode = "reduce-overhead" if device.type == "cuda" else "default"
            if path == "compiled":
                torch._dynamo.reset()
                encoder = torch.compile(model.extract_feat, fullgraph=True, mode=mode)
                heads = torch.compile(heads, fullgraph=True, mode=mode)
            with torch.inference_mode():
                state = empty_state(model)
                for k, f in enumerate(frames):
                    f = f.to(device, dtype)
                    if path == "compiled" and device.type == "cuda":
                        torch.compiler.cudagraph_mark_step_begin()
                    _sync(device)
                    start = time.perf_counter()
                    levels = encoder(f.images)
                    _sync(device)
                    mid = time.perf_counter()
                    _, state = heads(levels, f.projection_mat, f.image_wh, f.timestamp, f.T_global,
                                     f.T_global_inv, f.command, state)
                    if path == "compiled" and device.type == "cuda":
                        state = {name: t.clone() for name, t in state.items()}  # outlive the next replay
                    _sync(device)
                    times.add(k, start, mid, time.perf_counter())
        elif path == "onnx":
            from sparsedrive_ros.runtime.onnx_runner import OnnxStream
            from sparsedrive_ros.tools.export_onnx import export

            folder = args.onnx_dir
            if not folder:
                folder = tempfile.mkdtemp(prefix="bench_onnx_")
                export(copy.deepcopy(model).cpu(), Path(folder), check=False)
            start = time.perf_counter()
            ort_stream = OnnxStream(folder, threads=torch.get_num_threads())
            for k, f in enumerate(frames):
                inputs = [x.numpy() for x in (f.projection_mat, f.image_wh, f.timestamp, f.T_global,
                                              f.T_global_inv, f.command)]
                if k > 0:
                    start = time.perf_counter()
                levels = ort_stream.encode(f.images.numpy())
                mid = time.perf_counter()
                ort_stream.heads(levels, *inputs)
                times.add(k, start, mid, time.perf_counter())
        else:
            raise SystemExit(f"unknown path {path!r}: eager, static, compiled or onnx")

        def median(values):
            return f"{statistics.median(values):9.1f}" if values else f"{'-':>9}"

        rows.append(f"  {path:<10} {median(times.encode_ms)} {median(times.heads_ms)} {median(times.frame_ms)} "
                    f"{times.first_s:11.1f}")
    print(f"device={device} dtype={args.dtype} autocast={args.autocast} threads={torch.get_num_threads()} "
          f"frames={args.iters} (median after 2 warm-up frames) "
          f"weights={'checkpoint' if args.checkpoint else 'random'}")
    print(f"  {'path':<10} {'encoder':>9} {'heads':>9} {'frame ms':>9} {'first (s)':>11}")
    print("\n".join(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=5, help="timed frames after one warm-up frame")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--autocast", choices=sorted(AUTOCAST),
                        help="backbone/neck autocast dtype (docs/model-notes.md#numeric-precision)")
    parser.add_argument("--checkpoint", help="weights (.pth/.safetensors); random weights if absent")
    parser.add_argument("--stage", type=int, choices=(1, 2), help="default: from the checkpoint, else 2")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    parser.add_argument("--profile", action="store_true", help="print the top torch ops of the last frame")
    parser.add_argument("--fuse-bn", action="store_true",
                        help="fold the backbone BatchNorms into its convolutions (what the ROS pipeline does)")
    parser.add_argument("--paths", default="",
                        help="comma list of eager, static, compiled, onnx: whole-frame times side by side")
    parser.add_argument("--onnx-dir", default="", help="an export_onnx folder for --paths onnx (default: export now)")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    model = build_model(args, device, dtype)
    if args.fuse_bn:
        model.img_backbone.fuse_batchnorm()
    if args.paths:
        time_paths(args, model, device)
        return
    timer = StageTimer(model, device)
    state = model.new_state()
    gen = torch.Generator().manual_seed(0)
    frames = [make_frame(k, gen) for k in range(args.iters + 1)]
    totals, cpu_totals, per_stage, cpu_per_stage, da_samples = [], [], defaultdict(list), defaultdict(list), []
    for k, inputs in enumerate(frames):
        timer.reset()
        profiling = args.profile and k == len(frames) - 1
        profiler = torch.profiler.profile() if profiling else nullcontext()
        with torch.inference_mode(), profiler as prof:
            timer._sync()
            start, cpu_start = time.perf_counter(), time.process_time()
            model(inputs, state)
            timer._sync()
            total, cpu_total = time.perf_counter() - start, time.process_time() - cpu_start
        if k == 0:
            continue  # warm-up frame (no history, allocator growth)
        totals.append(total)
        cpu_totals.append(cpu_total)
        for stage, seconds in timer.times.items():
            per_stage[stage].append(seconds)
            cpu_per_stage[stage].append(timer.cpu_times[stage])
        da_samples = timer.da_samples
    print(f"device={device} dtype={args.dtype} autocast={args.autocast} fuse_bn={args.fuse_bn} "
          f"threads={torch.get_num_threads()} "
          f"iters={args.iters} weights={'checkpoint' if args.checkpoint else 'random'}")
    print(f"  {'stage (median)':<24} {'wall ms':>9} {'cpu ms':>9}   (cpu = process CPU time, all threads)")
    wall = _report(per_stage, totals)
    cpu = _report(cpu_per_stage, cpu_totals)
    for stage in [*STAGES, "decoders + glue", "three heads", "frame total"]:
        if stage in wall:
            target = {"three heads": "   target <= 1500 ms (2-core CPU, fp32)",
                      "frame total": "   target <= 4000 ms"}.get(stage, "")
            print(f"  {stage:<24} {wall[stage]:9.1f} {cpu[stage]:9.1f}{target}")
    if "deformable aggregation" in wall:
        print(f"  of which deformable aggregation {wall['deformable aggregation']:.1f} ms wall "
              f"({cpu['deformable aggregation']:.1f} ms cpu) in {len(da_samples)} calls, "
              f"visible samples per call {min(da_samples)}..{max(da_samples)}")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB (target <= 2048 MiB)")
    if device.type == "cuda":
        print(f"peak CUDA memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")
    if args.profile:
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))


if __name__ == "__main__":
    main()
