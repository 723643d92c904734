"""Compute k-means anchors (det, map, motion, plan) from a dataset split and save them as .npy files.

    python -m sparsedrive_ros.tools.kmeans_anchors --config stage2 --data DIR --out DIR [--split train]

The files carry the original's names (kmeans_det_900.npy, kmeans_map_100.npy, kmeans_motion_6.npy,
kmeans_plan_6.npy for the stage configs), so `tools.train --anchors DIR` and the original both read them.
Training computes the same anchors by itself when no directory is given; precompute them for large datasets
(one pass over all GT; images are not read).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from sparsedrive_ros.data.nuscenes import NuScenes
from sparsedrive_ros.model.sparsedrive import build_sparsedrive
from sparsedrive_ros.training.anchors import compute_anchors, save_anchors
from sparsedrive_ros.training.config import CONFIGS, get_config
from sparsedrive_ros.training.dataset import SparseDriveTrainData, scene_names_for_split


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, choices=sorted(CONFIGS), help="sizes the anchors (counts, modes)")
    p.add_argument("--data", required=True, help="nuScenes dataroot")
    p.add_argument("--version", default="v1.0-mini")
    p.add_argument("--split", default="train", choices=("all", "train", "val"))
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    cfg = get_config(args.config)
    model = build_sparsedrive(cfg.model.stage, cfg.model)
    nusc = NuScenes(args.data, args.version)
    data = SparseDriveTrainData(nusc, scene_names_for_split(nusc, args.split), cfg.aug, train=False, with_depth=False)
    anchors = compute_anchors(data.ground_truth(), model, seed=args.seed)
    for note in anchors.notes:
        print(f"note: {note}")
    for path in save_anchors(anchors, args.out):
        array = np.load(path)
        print(f"{path}: shape {tuple(array.shape)}, range [{array.min():.2f}, {array.max():.2f}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
