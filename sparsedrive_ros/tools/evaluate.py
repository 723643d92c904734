"""Evaluate a SparseDrive checkpoint on a nuScenes-layout dataroot: detection mAP/NDS, map AP, and (stage 2)
motion minADE/minFDE/MR/EPA and planning L2/collision; with --tracking also the nuScenes tracking metrics.

    python -m sparsedrive_ros.tools.evaluate --checkpoint FILE --data DIR --out metrics.json [--split val] [--tracking]

FILE is any checkpoint spec of model/model_file.py: a training checkpoint, an exported .safetensors model, an
official .pth, empty ("") for the bundled demo model.
--tracking scores the detections' instance ids with the official devkit's TrackingEval (AMOTA, AMOTP, RECALL,
MOTAR, MOTA, MOTP, IDS, FRAG, ...). It needs the optional extra (scripts/setup_devkit.sh) and a split that is a
predefined devkit split (val/train; 'all' is none); otherwise the metrics say why tracking was skipped. It is
opt-in rather than automatic so that the default run does not depend on what is installed and stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from sparsedrive_ros.data.nuscenes import NuScenes
from sparsedrive_ros.model.model_file import load_model
from sparsedrive_ros.training.dataset import scene_names_for_split
from sparsedrive_ros.training.evaluation import evaluate_model, format_table


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--version", default="v1.0-mini")
    p.add_argument("--split", default="val", choices=("all", "train", "val"))
    p.add_argument("--out", required=True, help="metrics JSON file")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--max-frames", type=int, default=None, help="stop after this many frames (smoke runs)")
    p.add_argument("--tracking", action="store_true",
                   help="also compute nuScenes tracking metrics with the official devkit (optional extra)")
    args = p.parse_args(argv)
    try:
        model, source = load_model(args.checkpoint)
    except (OSError, ValueError) as err:
        raise SystemExit(f"evaluate: {err}") from None
    nusc = NuScenes(args.data, args.version)
    res = evaluate_model(model, nusc, scene_names_for_split(nusc, args.split), args.device, args.max_frames,
                         tracking=args.tracking)
    res["checkpoint"] = {"path": str(source.path), "step": source.step, "name": source.name}
    Path(args.out).write_text(json.dumps(res, indent=2, default=float))
    print(format_table(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
