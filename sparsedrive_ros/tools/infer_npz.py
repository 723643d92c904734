"""Run SparseDrive over the frames of an inputs.npz (golden-case format) and write the golden outputs.

    python -m sparsedrive_ros.tools.infer_npz --checkpoint FILE --inputs FILE.npz --out DIR \
        [--dtype float64|float32] [--device cpu|cuda] [--stage 1|2] [--path eager|static]

The temporal state is reset once before frame 0, frames run in order, and DIR/frame{k}.npz holds the
``post/...`` and ``raw/...`` arrays named as in the parity case (docs/parity.md; compare with its compare.py).
``--path static`` runs the fixed-shape static frame (docs/static-graph.md) instead of the eager one.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Dict, Iterator, Optional

import numpy as np
import torch

from sparsedrive_ros.model import FrameInputs, SparseDrive, SparseDriveStream, build_sparsedrive
from sparsedrive_ros.model.checkpoint import detect_stage, load_checkpoint
from sparsedrive_ros.model.static_frame import StaticSparseDriveStream

DTYPES = {"float64": torch.float64, "float32": torch.float32}


def load_model(checkpoint: str, dtype: torch.dtype, device: str, stage: Optional[int] = None) -> SparseDrive:
    state_dict = load_checkpoint(checkpoint)
    model = build_sparsedrive(stage or detect_stage(state_dict))
    model.load_state_dict(state_dict, strict=True)
    return model.to(device=device, dtype=dtype).eval()


def iter_frames(inputs: Dict[str, np.ndarray]) -> Iterator[FrameInputs]:
    """Frames of a golden inputs.npz as batch-of-one :class:`FrameInputs`."""
    for k in range(inputs["img"].shape[0]):
        yield FrameInputs(
            images=torch.from_numpy(inputs["img"][k:k + 1]),
            projection_mat=torch.from_numpy(inputs["projection_mat"][k:k + 1]),
            image_wh=torch.from_numpy(inputs["image_wh"][k:k + 1]),
            timestamp=torch.from_numpy(inputs["timestamp"][k:k + 1]).to(torch.float64),
            T_global=torch.from_numpy(inputs["T_global"][k:k + 1]).to(torch.float64),
            T_global_inv=torch.from_numpy(inputs["T_global_inv"][k:k + 1]).to(torch.float64),
            command=torch.from_numpy(inputs["gt_ego_fut_cmd"][k:k + 1]),
        )


def run(model: SparseDrive, inputs_path: str, out_dir: str, verbose: bool = True, path: str = "eager") -> int:
    """Reset once, run every frame in order, write out_dir/frame{k}.npz. Returns the number of frames.

    path: "eager" (SparseDriveStream) or "static" (StaticSparseDriveStream, the fixed-shape graph)."""
    if path not in ("eager", "static"):
        raise ValueError(f"path must be eager or static, got {path!r}")
    os.makedirs(out_dir, exist_ok=True)
    stream = SparseDriveStream(model) if path == "eager" else StaticSparseDriveStream(model)
    with np.load(inputs_path) as data:
        inputs = {k: data[k] for k in data.files}
    count = 0
    with torch.inference_mode():
        for k, frame in enumerate(iter_frames(inputs)):
            start = time.perf_counter()
            out = stream.step(frame, return_raw=True)
            np.savez(os.path.join(out_dir, f"frame{k}.npz"), **out.golden_arrays(0))
            if verbose:
                print(f"frame {k}: {time.perf_counter() - start:.1f} s, dt {out.time_interval.tolist()}, "
                      f"plan {out.planning.final[0, -1].tolist() if out.planning is not None else None}",
                      flush=True)
            count += 1
    return count


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="state dict (.pt/.pth/.safetensors)")
    parser.add_argument("--inputs", required=True, help="inputs.npz in the golden-case format")
    parser.add_argument("--out", required=True, help="output directory for frame{k}.npz")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float64")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--stage", type=int, choices=(1, 2), default=None, help="default: from the checkpoint keys")
    parser.add_argument("--path", choices=("eager", "static"), default="eager",
                        help="eager frame or the fixed-shape static graph (docs/static-graph.md)")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device!r} requested but CUDA is not available")
    model = load_model(args.checkpoint, DTYPES[args.dtype], args.device, args.stage)
    run(model, args.inputs, args.out, path=args.path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
