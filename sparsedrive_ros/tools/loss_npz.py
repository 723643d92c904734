"""Training losses of SparseDrive over the frames of a golden case (inputs.npz + gt.npz), one file per frame.

    python -m sparsedrive_ros.tools.loss_npz --checkpoint FILE --inputs FILE.npz --gt GT.npz --out DIR \
        [--dtype float64|float32] [--device cpu|cuda] [--grad] [--dropout] [--grid-mask PROB] [--frames N]

The stage-2 model runs the training forward (``TrainingModule``: training-mode BatchNorm with the statistics of
the batch of one, the project's criterion, targets and Hungarian assigners) frame by frame with the temporal
state reset once before frame 0 and then carried, as consecutive training iterations of one sequence with
fixed weights. By default dropout and GridMask are off (they are the only random parts of the training
forward) and the forward runs without autograd; ``--grad`` builds the graph as a real training step does.

DIR/loss{k}.npz holds ``loss/<name>`` (every entry of the loss dict, float64 scalars), ``total_loss`` (their
sum in dict order, what the optimiser back-propagates) and the discrete decisions of the loss: the Hungarian
matches of every det / map decoder layer, the chosen map permutation, the motion and planning mode targets.
docs/training-losses.md describes the keys and the details that make these equal to the original's losses.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Dict, Iterator, List, Optional

import numpy as np
import torch

from sparsedrive_ros.tools.infer_npz import DTYPES, load_model
from sparsedrive_ros.training.criterion import GroundTruth, LossConfig, SparseDriveCriterion
from sparsedrive_ros.training.dataset import FrameBatch
from sparsedrive_ros.training.trainer import TrainingModule, disable_dropout

__all__ = ["golden_batches", "frame_ground_truth", "build_training_module", "run", "main"]


def frame_ground_truth(gt: Dict[str, np.ndarray], k: int, dtype: torch.dtype, device: str = "cpu") -> GroundTruth:
    """Frame k of a golden gt.npz as a batch-of-one :class:`GroundTruth`; float arrays in ``dtype`` (the values
    are the file's float32 values, so the target encodings are then computed in ``dtype``)."""
    def f(name: str) -> torch.Tensor:
        return torch.as_tensor(gt[f"frame{k}/{name}"], device=device).to(dtype)

    def i(name: str) -> torch.Tensor:
        return torch.as_tensor(gt[f"frame{k}/{name}"], device=device).long()

    return GroundTruth(
        boxes=[f("gt_bboxes_3d")], labels=[i("gt_labels_3d")], map_labels=[i("gt_map_labels")],
        map_pts=[f("gt_map_pts")],  # [M, 38, 20, 2]: every equivalent ordering, padded with 1e5
        agent_fut_trajs=[f("gt_agent_fut_trajs")], agent_fut_masks=[f("gt_agent_fut_masks")],
        ego_fut_trajs=f("gt_ego_fut_trajs")[None], ego_fut_masks=f("gt_ego_fut_masks")[None],
        ego_fut_cmd=f("gt_ego_fut_cmd")[None], ego_status=f("ego_status")[None],
        depth=[f(f"gt_depth_{level}") for level in range(3)],
    )


def golden_batches(inputs: Dict[str, np.ndarray], gt: Dict[str, np.ndarray], dtype: torch.dtype,
                   device: str = "cpu") -> Iterator[FrameBatch]:
    """Frames of a golden case as batch-of-one :class:`FrameBatch` es (float inputs in ``dtype``; timestamps and
    poses float64)."""
    num = int(inputs["img"].shape[0])
    if int(gt["num_frames"]) != num:
        raise ValueError(f"inputs.npz has {num} frames, gt.npz {int(gt['num_frames'])}")
    for k in range(num):
        for name in ("ego_status", "gt_ego_fut_cmd"):
            if not np.array_equal(inputs[name][k], gt[f"frame{k}/{name}"]):
                raise ValueError(f"frame {k}: {name} of gt.npz differs from inputs.npz (not the same case?)")

        def t(name: str, dt: torch.dtype = dtype) -> torch.Tensor:
            return torch.as_tensor(inputs[name][k:k + 1], device=device).to(dt)

        yield FrameBatch(
            images=t("img"), projection_mat=t("projection_mat"), image_wh=t("image_wh"),
            timestamp=t("timestamp", torch.float64), T_global=t("T_global", torch.float64),
            T_global_inv=t("T_global_inv", torch.float64), command=t("gt_ego_fut_cmd"),
            focal=torch.as_tensor(gt[f"frame{k}/focal"][None], device=device).to(dtype),
            gt=frame_ground_truth(gt, k, dtype, device), tokens=[f"frame{k}"],
        )


def build_training_module(checkpoint: str, dtype: torch.dtype, device: str = "cpu", dropout: bool = False,
                          grid_mask_prob: float = 0.0, loss: Optional[LossConfig] = None) -> TrainingModule:
    """The stage-2 model with the checkpoint's weights in training mode, under the golden switches by default:
    no dropout, no GridMask (the stage-2 model has no denoising queries at all)."""
    model = load_model(checkpoint, dtype, device, stage=2)
    if not dropout:
        disable_dropout(model)
    return TrainingModule(model, SparseDriveCriterion(loss or LossConfig()), grid_mask_prob=grid_mask_prob).train()


def frame_arrays(losses: Dict[str, torch.Tensor], criterion: SparseDriveCriterion) -> Dict[str, np.ndarray]:
    """The loss dict and the criterion's recorded decisions as the golden loss{k}.npz arrays."""
    out: Dict[str, np.ndarray] = {}
    total = 0.0
    for name, value in losses.items():
        value = value.detach()
        out[f"loss/{name}"] = np.asarray(value.double().cpu().numpy())
        out[f"loss_dtype/{name}"] = np.asarray(torch.finfo(value.dtype).bits, dtype=np.int64)
        total = total + value  # dict order, as the optimiser's sum
    out["total_loss"] = np.asarray(float(total))
    for key, value in criterion.last_decisions.items():
        out[key] = value
    return out


def run(module: TrainingModule, inputs_path: str, gt_path: str, out_dir: str, grad: bool = False,
        max_frames: Optional[int] = None, verbose: bool = True) -> List[Dict[str, np.ndarray]]:
    """Reset the temporal state once, compute every frame's losses in order, write out_dir/loss{k}.npz."""
    os.makedirs(out_dir, exist_ok=True)
    param = next(module.model.parameters())
    with np.load(inputs_path) as data:
        inputs = {k: data[k] for k in data.files}
    with np.load(gt_path) as data:
        gt = {k: data[k] for k in data.files}
    module.state.reset()
    results = []
    for k, batch in enumerate(golden_batches(inputs, gt, param.dtype, str(param.device))):
        if max_frames is not None and k >= max_frames:
            break
        start = time.perf_counter()
        with torch.set_grad_enabled(grad):
            losses = module(batch)
        arrays = frame_arrays(losses, module.criterion)
        arrays["meta/num_gt_boxes"] = np.asarray(len(batch.gt.labels[0]), dtype=np.int64)
        arrays["meta/num_gt_map"] = np.asarray(len(batch.gt.map_labels[0]), dtype=np.int64)
        arrays["meta/threads"] = np.asarray(torch.get_num_threads(), dtype=np.int64)
        arrays["meta/float64"] = np.asarray(int(param.dtype == torch.float64), dtype=np.int64)
        np.savez(os.path.join(out_dir, f"loss{k}.npz"), **arrays)
        results.append(arrays)
        if verbose:
            print(f"frame {k}: total_loss {float(arrays['total_loss']):.10f} ({len(losses)} terms, "
                  f"{time.perf_counter() - start:.1f} s)", flush=True)
    return results


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="stage-2 state dict (.pt/.pth/.safetensors)")
    parser.add_argument("--inputs", required=True, help="inputs.npz in the golden-case format")
    parser.add_argument("--gt", required=True, help="gt.npz of the same case (golden loss kit's make_gt.py)")
    parser.add_argument("--out", required=True, help="output directory for loss{k}.npz")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float64")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--grad", action="store_true", help="build the autograd graph (a real training step)")
    parser.add_argument("--dropout", action="store_true", help="keep the model's dropout (random; off by default)")
    parser.add_argument("--grid-mask", type=float, default=0.0, metavar="PROB",
                        help="GridMask probability (random image masking; default 0 = off)")
    parser.add_argument("--frames", type=int, default=None, help="only the first N frames")
    parser.add_argument("--cns-target-float64", action="store_true",
                        help="keep the centerness target in float64 instead of the original's float32 rounding")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device!r} requested but CUDA is not available")
    loss = LossConfig()
    if args.cns_target_float64:
        import dataclasses
        loss = dataclasses.replace(loss, det_box=dataclasses.replace(loss.det_box, cns_target_float32=False))
    module = build_training_module(args.checkpoint, DTYPES[args.dtype], args.device, args.dropout, args.grid_mask,
                                   loss)
    run(module, args.inputs, args.gt, args.out, grad=args.grad, max_frames=args.frames)
    return 0


if __name__ == "__main__":
    sys.exit(main())
