"""Precision of the stage-2 training losses in float32 (CPU) and bf16 autocast (CUDA) against float64.

    python benchmarks/loss_precision.py --case DIR [--reference DIR] [--frames 3] [--threads N] [--skip-float64]

DIR holds a golden loss case (state_dict.pt, inputs.npz, gt.npz: the golden kit's make_case.py + make_gt.py).
The float64 reference is the original's losses when --reference points at their loss{k}.npz files (the public
case: shared/golden/loss/public/expected), otherwise this project's own float64 run (tools.loss_npz; equal to
the original's within 1e-10 on the public case, docs/training-losses.md). Then the same training forward
(training-mode BatchNorm, dropout and GridMask off, temporal state carried) runs

* in float32 on the CPU, as the model runs it (channels-last backbone), and with the backbone fed NCHW
  (training-mode BatchNorm computes the batch statistics of channels-last float32 maps on the CPU about 100x
  less precisely: that column shows how much of the float32 error comes from there);
* on CUDA with a float32 model under ``torch.autocast(dtype=torch.bfloat16)``, as ``tools.train --amp`` trains,
  when a GPU is present; otherwise its column says "not measured".

and prints, per frame and loss term, the relative error |x - ref| / |ref|, whether every Hungarian match, map
permutation and motion / planning mode target equals the reference's, and the median / max over the terms.
A benchmark, not a test: float32 is not expected to reproduce float64 decisions after frame 0 (near-tied scores
change which instances the temporal bank keeps).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch

from sparsedrive_ros.tools import loss_npz


def load_dir(path: Path, frames: int) -> List[Dict[str, np.ndarray]]:
    out = []
    for k in range(frames):
        with np.load(path / f"loss{k}.npz") as data:
            out.append({key: data[key] for key in data.files})
    return out


def run_precision(case: Path, dtype: torch.dtype, device: str, frames: int,
                  autocast: Optional[torch.dtype] = None, nchw_backbone: bool = False
                  ) -> tuple[List[Dict[str, np.ndarray]], float]:
    module = loss_npz.build_training_module(str(case / "state_dict.pt"), dtype, device)
    if nchw_backbone:
        # The model feeds float32 images channels-last (faster oneDNN convolutions). On the CPU, training-mode
        # BatchNorm computes its batch statistics of channels-last float32 maps much less precisely than of
        # NCHW ones; this column feeds the backbone NCHW to show how much of the float32 error that is.
        backbone = module.model.img_backbone
        forward = backbone.forward
        backbone.forward = lambda x: forward(x.contiguous())
    context = torch.autocast(device.split(":")[0], dtype=autocast) if autocast is not None else nullcontext()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, context:
        results = loss_npz.run(module, str(case / "inputs.npz"), str(case / "gt.npz"), tmp, max_frames=frames,
                               verbose=False)
    return results, time.perf_counter() - start


def relative_errors(run: Dict[str, np.ndarray], ref: Dict[str, np.ndarray]) -> Dict[str, float]:
    names = [k for k in ref if k.startswith("loss/")] + ["total_loss"]
    return {k: abs(float(run[k]) - float(ref[k])) / max(abs(float(ref[k])), 1e-300) for k in names}


def same_decisions(run: Dict[str, np.ndarray], ref: Dict[str, np.ndarray]) -> str:
    keys = [k for k in ref if k.startswith("match/") and ref[k].dtype.kind in "iu"]
    differ = [k for k in keys if k not in run or not np.array_equal(run[k], ref[k])]
    return "all equal" if not differ else f"{len(differ)}/{len(keys)} differ ({', '.join(differ[:3])}...)"


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", required=True, type=Path, help="golden loss case: state_dict.pt, inputs.npz, gt.npz")
    parser.add_argument("--reference", type=Path, default=None, help="float64 loss{k}.npz (default: own float64 run)")
    parser.add_argument("--frames", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    if args.reference is not None:
        reference, ref_name = load_dir(args.reference, args.frames), f"the original's float64 losses ({args.reference})"
    else:
        reference, seconds = run_precision(args.case, torch.float64, "cpu", args.frames)
        ref_name = f"this project's float64 CPU run ({seconds:.0f} s)"
    runs: Dict[str, Optional[List[Dict[str, np.ndarray]]]] = {}
    timing: Dict[str, str] = {}
    runs["float32 CPU"], seconds = run_precision(args.case, torch.float32, "cpu", args.frames)
    timing["float32 CPU"] = f"{seconds:.0f} s"
    runs["float32 CPU NCHW"], seconds = run_precision(args.case, torch.float32, "cpu", args.frames,
                                                      nchw_backbone=True)
    timing["float32 CPU NCHW"] = f"{seconds:.0f} s (backbone fed NCHW instead of channels-last)"
    if torch.cuda.is_available():
        runs["bf16 autocast CUDA"], seconds = run_precision(args.case, torch.float32, "cuda", args.frames,
                                                            torch.bfloat16)
        timing["bf16 autocast CUDA"] = f"{seconds:.1f} s ({torch.cuda.get_device_name()})"
    else:
        runs["bf16 autocast CUDA"] = None
        timing["bf16 autocast CUDA"] = "not measured (no CUDA device on this machine)"

    print(f"case: {args.case}, {args.frames} frames; reference: {ref_name}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    for name, value in timing.items():
        print(f"  {name}: {value}")
    columns = list(runs)
    for k in range(args.frames):
        print(f"\nframe {k}: relative error |x - ref| / |ref| per loss term")
        print(f"{'term':<24}" + "".join(f"{c:>22}" for c in columns))
        errors = {c: relative_errors(r[k], reference[k]) if r is not None else None for c, r in runs.items()}
        for term in relative_errors(reference[k], reference[k]):
            row = "".join(f"{errors[c][term]:>22.2e}" if errors[c] is not None else f"{'not measured':>22}"
                          for c in columns)
            print(f"{term.replace('loss/', ''):<24}{row}")
        for label, fn in (("median", statistics.median), ("max", max)):
            row = "".join(f"{fn(errors[c].values()):>22.2e}" if errors[c] is not None else f"{'not measured':>22}"
                          for c in columns)
            print(f"{label:<24}{row}")
        for c in columns:
            if runs[c] is not None:
                print(f"  {c}: matches / permutations / mode targets vs reference: "
                      f"{same_decisions(runs[c][k], reference[k])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
