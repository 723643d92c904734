"""Train SparseDrive on a nuScenes-layout dataroot.

    python -m sparsedrive_ros.tools.train --config tiny --data DIR --work-dir DIR [--max-steps N]
    torchrun --nproc_per_node K -m sparsedrive_ros.tools.train --config stage1 --data DIR --work-dir DIR

Writes WORK_DIR/log.jsonl (one JSON object per step: step, loss, every loss term, lr, grad_norm) and
WORK_DIR/step_*.pt + latest.pt checkpoints; a rerun with the same work dir resumes from latest.pt.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

import torch.distributed as dist

from sparsedrive_ros.data.nuscenes import NuScenes
from sparsedrive_ros.training.config import CONFIGS, get_config
from sparsedrive_ros.training.dataset import SparseDriveTrainData, scene_names_for_split
from sparsedrive_ros.training.trainer import Trainer, init_distributed


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, choices=sorted(CONFIGS))
    p.add_argument("--data", required=True, help="nuScenes dataroot (tables under DATA/VERSION)")
    p.add_argument("--version", default="v1.0-mini")
    p.add_argument("--split", default=None, choices=("all", "train", "val"), help="default: the config's")
    p.add_argument("--work-dir", required=True)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None, help="per process")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--load-from", default=None, help="initial weights (non-strict), e.g. a stage-1 checkpoint")
    p.add_argument("--backbone-weights", default=None, help="torchvision ResNet .pth for the ImageNet init")
    p.add_argument("--anchors", default=None,
                   help="directory of k-means anchor files (tools.kmeans_anchors or the original's data/kmeans)")
    p.add_argument("--no-kmeans-anchors", action="store_true",
                   help="keep the model's stand-in anchors instead of k-means on the training split")
    p.add_argument("--grad-checkpoint", action="store_true",
                   help="recompute backbone blocks in the backward pass (less activation memory, ~30%% slower)")
    p.add_argument("--amp", action="store_true", help="mixed-precision autocast (CUDA only), see --amp-dtype")
    p.add_argument("--amp-dtype", default=None, choices=("bfloat16", "float16"),
                   help="default bfloat16; float16 adds a GradScaler (the original's fp16)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--no-resume", action="store_true")
    p.add_argument("--no-depth", action="store_true", help="skip the dense depth loss (no lidar files)")
    p.add_argument("--log-every", type=int, default=1)
    return p.parse_args(argv)


def apply_overrides(cfg, args):
    optim = cfg.optim if args.lr is None else dataclasses.replace(cfg.optim, lr=args.lr)
    changes = {"optim": optim, "amp": args.amp or cfg.amp,
               "grad_checkpoint": args.grad_checkpoint or cfg.grad_checkpoint}
    for field, value in (("max_steps", args.max_steps), ("batch_size", args.batch_size), ("split", args.split),
                         ("load_from", args.load_from), ("seed", args.seed),
                         ("backbone_weights", args.backbone_weights), ("anchors_dir", args.anchors),
                         ("amp_dtype", args.amp_dtype)):
        if value is not None:
            changes[field] = value
    if args.no_kmeans_anchors:
        changes["kmeans_anchors"] = False
    if args.no_depth:
        changes["loss"] = dataclasses.replace(cfg.loss, with_depth=False)
    return dataclasses.replace(cfg, **changes)


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = apply_overrides(get_config(args.config), args)
    env = init_distributed(args.device)
    nusc = NuScenes(args.data, args.version)
    data = SparseDriveTrainData(nusc, scene_names_for_split(nusc, cfg.split), cfg.aug, train=True,
                                with_depth=cfg.loss.with_depth)
    trainer = Trainer(cfg, data, args.work_dir, env, resume=not args.no_resume, log_every=args.log_every)
    records = trainer.train()
    if env.is_main and records:
        first, last = records[0], records[-1]
        print(f"steps {first['step']}..{last['step']}: loss {first['loss']:.4f} -> {last['loss']:.4f}; "
              f"checkpoint {trainer.latest_path}")
    if env.distributed:
        dist.barrier()
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
