"""Error per stage of bf16 autocast against the golden case, next to the float32 tolerance.

    python benchmarks/bf16_error.py [--shared ../shared] [--device cpu|cuda]

Regenerates the public golden case (parity material, docs/parity.md), runs frame 0 of its stage-2 model in
float32 with: no autocast, bf16 autocast of the backbone + neck only (the node's ``backbone_autocast: bf16``),
and bf16 autocast of the whole frame (heads included), and prints, per stage, the largest
max|got - expected| / max|expected| over the stage's arrays. The float32 parity test holds frame 0 to 3e-3
(test/test_parity.py, FLOAT32_RTOL); a variant is usable where every stage stays within it. Frame 0 only:
later frames carry top-k selections whose near-ties make any precision change reorder instances.
bf16 rounds the same way on CPU and GPU (8-bit mantissa, float32 accumulation), so the CPU figures stand for the
GPU's up to kernel summation order.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections import defaultdict
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from sparsedrive_ros.model import SparseDriveStream
from sparsedrive_ros.tools.infer_npz import iter_frames, load_model

FLOAT32_RTOL = 3e-3  # test/test_parity.py
STAGES = ("raw/det", "raw/map", "raw/motion", "raw/planning", "post")


def stage_of(name: str) -> str:
    return next((s for s in STAGES if name.startswith(s)), "other")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared"),
                        help="parity material folder (SPARSEDRIVE_SHARED)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    shared = Path(args.shared)
    case = Path(tempfile.mkdtemp(prefix="bf16_case_"))
    subprocess.run([sys.executable, "make_case.py", "--keys", str(shared / "docs" / "state-dict-stage2.txt"),
                    "--seed", "1", "--scenario", "drive", "--out", str(case)], cwd=shared / "golden", check=True,
                   capture_output=True)
    expected = np.load(shared / "golden" / "public" / "expected" / "frame0.npz")
    with np.load(case / "inputs.npz") as data:
        frame = next(iter_frames({k: data[k] for k in data.files}))
    variants = {"float32": (None, False), "bf16 backbone+neck": (torch.bfloat16, False),
                "bf16 whole frame": (torch.bfloat16, True)}
    rows = {}
    for label, (backbone, whole) in variants.items():
        model = load_model(str(case / "state_dict.pt"), torch.float32, args.device)
        model.backbone_autocast = backbone
        context = torch.autocast(torch.device(args.device).type, dtype=torch.bfloat16) if whole else nullcontext()
        with context:
            out = SparseDriveStream(model).step(frame, return_raw=True).golden_arrays()
        errors: dict[str, float] = defaultdict(float)
        ints: dict[str, int] = defaultdict(int)
        for name in expected.files:
            want, got, stage = expected[name], out[name], stage_of(name)
            if want.dtype.kind == "f":
                errors[stage] = max(errors[stage], float(np.abs(got - want).max() / np.abs(want).max()))
            else:
                ints[stage] += int((got != want).sum())
        rows[label] = (errors, ints)
    print(f"frame 0 of the golden case, device {args.device}: max |got - expected| / max |expected| per stage "
          f"(integers: how many differ); float32 tolerance {FLOAT32_RTOL:g}")
    print(f"  {'stage':<14}" + "".join(f"{label:>22}" for label in rows))
    for stage in STAGES:
        cells = []
        for errors, ints in rows.values():
            mark = "" if errors[stage] <= FLOAT32_RTOL else " !"
            cells.append(f"{errors[stage]:.2e}{mark} / {ints[stage]}")
        print(f"  {stage:<14}" + "".join(f"{c:>22}" for c in cells))
    for label, (errors, _) in rows.items():
        ok = all(errors[s] <= FLOAT32_RTOL for s in STAGES)
        print(f"  {label}: {'within' if ok else 'OUTSIDE'} the float32 tolerance")
    return 0


if __name__ == "__main__":
    sys.exit(main())
