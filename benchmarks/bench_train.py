"""Training throughput and a short loss-drop run on a synthetic dataset (prints numbers; GPU if available).

    python benchmarks/bench_train.py --work /tmp/bench_train [--tiny-steps 100] [--full-steps 5]

1. tiny config (ResNet-18, 128x320): --tiny-steps steps, loss of the first/last 10 steps, s/step.
2. stage1 / stage2 configs (ResNet-50, 256x704): --full-steps steps each at the batch sizes of --full-batch
   (default 1 and 1; the original's per-GPU batches are 8 and 6), s/step, peak CUDA memory; with
   --grad-checkpoint each full run repeats with backbone gradient checkpointing.
"""

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from sparsedrive_ros.data.nuscenes import NuScenes
from sparsedrive_ros.data.synthetic import SyntheticConfig, generate_dataset
from sparsedrive_ros.training.config import get_config
from sparsedrive_ros.training.dataset import SparseDriveTrainData, scene_names_for_split
from sparsedrive_ros.training.trainer import DistEnv, Trainer


def run(name, nusc, work, steps, device, amp, batch_size=None, grad_checkpoint=False, amp_dtype="bfloat16",
        loop_steps=0):
    cfg = get_config(name)
    cfg = dataclasses.replace(cfg, max_steps=max(steps, 2), amp=amp, amp_dtype=amp_dtype,
                              batch_size=batch_size or cfg.batch_size, grad_checkpoint=grad_checkpoint)
    data = SparseDriveTrainData(nusc, scene_names_for_split(nusc, "all"), cfg.aug)
    env = DistEnv(device=torch.device(device))
    trainer = Trainer(cfg, data, work / name, env, resume=False)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    losses, times, data_times = [], [], []
    for _ in range(steps):
        t0 = time.perf_counter()
        batch = trainer.next_batch()
        t1 = time.perf_counter()
        rec = trainer.train_step(batch)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t1)
        data_times.append(t1 - t0)
        losses.append(rec["loss"])
    k = min(10, max(1, steps // 3))
    loop_s = None
    if loop_steps > 0:
        # Trainer.train as a user runs it: the next batches are read on the prefetch thread during each step.
        # time_s per record spans waiting for the batch, collation and the step (the loss read-out synchronises);
        # the first step pays the prefetch thread's start and the end-of-run checkpoint is outside it.
        records = trainer.train(max_steps=trainer.step + loop_steps)
        loop_s = float(np.median([r["time_s"] for r in records[1:]] or [records[0]["time_s"]]))
    out = {"config": name, "steps": steps, "batch": cfg.batch_size, "amp": amp and amp_dtype,
           "grad_checkpoint": grad_checkpoint, "train_loop_s_per_step_with_prefetch": loop_s,
           "loss_first": float(np.mean(losses[:k])), "loss_last": float(np.mean(losses[-k:])),
           "s_per_step_median": float(np.median(times[1:] if steps > 1 else times)),
           "data_s_per_step_median": float(np.median(data_times)),
           "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None,
           "skipped": 0}
    print(json.dumps(out), flush=True)
    trainer.save()
    del trainer
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--work", default="/tmp/bench_train")
    p.add_argument("--tiny-steps", type=int, default=100)
    p.add_argument("--full-steps", type=int, default=5)
    p.add_argument("--amp", action="store_true", help="autocast for the tiny run")
    p.add_argument("--amp-full", action="store_true", help="autocast for the stage1/stage2 runs")
    p.add_argument("--amp-dtype", default="bfloat16", choices=("bfloat16", "float16"))
    p.add_argument("--loop-steps", type=int, default=0,
                   help="then time this many steps of Trainer.train (prefetch thread on) per run")
    p.add_argument("--full-batch", default="1,1", help="stage1,stage2 batch sizes per step")
    p.add_argument("--grad-checkpoint", action="store_true", help="repeat each full run with checkpointing")
    p.add_argument("--width", type=int, default=800)
    args = p.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    work = Path(args.work)
    t = time.perf_counter()
    generate_dataset(work / "data", SyntheticConfig(seconds=3.0, num_scenes=2, width=args.width,
                                                    height=args.width * 9 // 16))
    print(f"dataset {time.perf_counter() - t:.1f} s; device {device}", flush=True)
    nusc = NuScenes(work / "data", "v1.0-mini")
    jobs = [("tiny", args.tiny_steps, args.amp, None, False)] if args.tiny_steps > 0 else []
    batches = [int(b) for b in args.full_batch.split(",")]
    for name, batch in zip(("stage1", "stage2"), batches):
        for ckpt in ((False, True) if args.grad_checkpoint else (False,)):
            if args.full_steps > 0:
                jobs.append((name, args.full_steps, args.amp_full, batch, ckpt))
    for name, steps, amp, batch, ckpt in jobs:
        try:
            run(name, nusc, work, steps, device, amp, batch_size=batch, grad_checkpoint=ckpt, amp_dtype=args.amp_dtype,
                loop_steps=args.loop_steps)
        except Exception as exc:  # report and go on with the next configuration
            print(json.dumps({"config": name, "error": repr(exc)[:500]}), flush=True)


if __name__ == "__main__":
    main()
