"""SparseDrive trainer: one process or DDP (gloo on CPU, nccl on CUDA), AdamW with a backbone lr multiplier,
linear warm-up + cosine annealing, gradient clipping, optional AMP, JSON-lines log, resumable checkpoints.

Checkpoint format (what ``tools/evaluate.py`` and the inference loader read)::

    {"state_dict": {name: tensor}, "meta": {"config": asdict(SparseDriveConfig), "config_name": str,
     "step": int, "stage": int, "train_config": asdict(TrainConfig)}, "optimizer": ..., "scaler": ...}
"""

from __future__ import annotations

import json
import math
import os
import queue
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from sparsedrive_ros.model.deformable_layer import DeformableFeatureAggregation
from sparsedrive_ros.model.deformable_op import channels_last_feature_maps
from sparsedrive_ros.model.sparsedrive import FrameInputs, SparseDrive, build_sparsedrive, raw_arrays
from sparsedrive_ros.training.anchors import apply_anchors, compute_anchors, load_anchors
from sparsedrive_ros.training.augment import grid_mask
from sparsedrive_ros.training.config import TrainConfig, config_to_dict
from sparsedrive_ros.training.criterion import SparseDriveCriterion
from sparsedrive_ros.training.dataset import FrameBatch, SequenceStreams, SparseDriveTrainData, collate

__all__ = [
    "DistEnv",
    "init_distributed",
    "init_training_weights",
    "lr_factor",
    "build_optimizer",
    "TrainingModule",
    "disable_dropout",
    "Trainer",
    "save_checkpoint",
    "load_backbone_weights",
    "Prefetcher",
    "Progress",
]

CLS_BIAS_INIT = -4.595  # logit(0.01)


# ----------------------------------------------------------------------------------------------------------
# Distributed setup
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: Optional[str] = None) -> DistEnv:
    """Reads torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK); nccl on CUDA, gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    dev = torch.device(f"cuda:{local}") if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistEnv(rank, world, local, dev)


# ----------------------------------------------------------------------------------------------------------
# Initialisation, optimiser, schedule
# ----------------------------------------------------------------------------------------------------------


def init_training_weights(model: SparseDrive) -> None:
    """The original's init_weights (docs/model-notes.md#decoder-stack): xavier on >= 2-d parameters of the head's
    non-refine layers,
    class biases at logit(0.01), DFA weights_fc zero and output_proj xavier.

    Unlike the original, non-trainable parameters (the configured ``fix_scale`` key points) are left alone:
    the original's xavier loop overwrote them by accident (docs/model-notes.md#checkpoint-tensors).
    """
    for head in (model.head.det_head, model.head.map_head, model.head.motion_plan_head):
        if head is None:
            continue
        for layer in head.layers:
            if layer is None or "Refinement" in type(layer).__name__:
                continue
            for p in layer.parameters():
                if p.dim() > 1 and p.requires_grad:
                    nn.init.xavier_uniform_(p)
    for module in model.modules():
        for name in ("cls_layers", "motion_cls_branch", "plan_cls_branch"):
            branch = getattr(module, name, None)
            if isinstance(branch, nn.Sequential) and isinstance(branch[-1], nn.Linear):
                nn.init.constant_(branch[-1].bias, CLS_BIAS_INIT)
        if isinstance(module, DeformableFeatureAggregation):
            nn.init.zeros_(module.weights_fc.weight)
            nn.init.zeros_(module.weights_fc.bias)
            nn.init.xavier_uniform_(module.output_proj.weight)
            nn.init.zeros_(module.output_proj.bias)


def lr_factor(step: int, max_steps: int, warmup_iters: int, warmup_ratio: float, min_lr_ratio: float) -> float:
    """mmcv CosineAnnealing (min_lr_ratio) with linear warm-up from ``warmup_ratio``: multiplier of the base lr."""
    progress = min(step, max_steps) / max(max_steps, 1)
    cosine = min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    if step < warmup_iters:
        cosine *= 1 - (1 - warmup_ratio) * (1 - step / warmup_iters)
    return cosine


def build_optimizer(model: nn.Module, lr: float, weight_decay: float, backbone_lr_mult: float) -> torch.optim.AdamW:
    """AdamW with two groups: ``img_backbone.*`` at lr × backbone_lr_mult, the rest at lr."""
    backbone: list[nn.Parameter] = []
    rest: list[nn.Parameter] = []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (backbone if name.startswith("img_backbone.") else rest).append(p)
    groups = [
        {"params": rest, "lr": lr, "base_lr": lr},
        {"params": backbone, "lr": lr * backbone_lr_mult, "base_lr": lr * backbone_lr_mult},
    ]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, weight_decay=weight_decay, foreach=True)


# ----------------------------------------------------------------------------------------------------------
# Training forward
# ----------------------------------------------------------------------------------------------------------


def disable_dropout(model: nn.Module) -> int:
    """Set every dropout of ``model`` to 0 (nn.Dropout, the attention cores' dropout, the deformable
    aggregation's attn_drop): with GridMask off the training forward is then a function of its inputs.
    Returns the number of modules changed."""
    count = 0
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
            count += 1
        elif isinstance(module, nn.MultiheadAttention) or (
                isinstance(getattr(module, "dropout", None), float) and hasattr(module, "in_proj_weight")):
            setattr(module, "dropout", 0.0)
            count += 1
        elif isinstance(getattr(module, "attn_drop", None), float):
            setattr(module, "attn_drop", 0.0)
            count += 1
    return count


class TrainingModule(nn.Module):
    """Model + temporal state + criterion; ``forward`` returns the dict of named losses.

    The temporal state lives here (not in the call arguments) so that DDP's input handling never copies it.
    """

    def __init__(self, model: SparseDrive, criterion: SparseDriveCriterion, grid_mask_prob: float = 0.7,
                 seed: int = 0):
        super().__init__()
        self.model = model
        self.criterion = criterion
        self.state = model.new_state()
        self.grid_mask_prob = grid_mask_prob
        self.rng = np.random.default_rng(seed)

    def forward(self, batch: FrameBatch) -> dict[str, Tensor]:
        model = self.model
        param = model.img_backbone.conv1.weight
        inputs = FrameInputs(batch.images, batch.projection_mat, batch.image_wh, batch.timestamp, batch.T_global,
                             batch.T_global_inv, batch.command)
        inputs.validate(model.config.num_cams, model.config.image_hw)
        # Float inputs in the model's dtype (float64 for the parity checks; timestamps and poses stay float64).
        inputs = inputs.to(param.device, param.dtype)
        images = grid_mask(inputs.images, self.rng, self.grid_mask_prob) if self.training else inputs.images
        inputs.images = images
        levels = model.extract_feat(images)  # 4 × [B, N_cam, C, h, w]
        outputs: dict[str, Tensor] = {}
        if batch.gt.depth is not None and self.criterion.cfg.with_depth:
            depth_levels = [x.flatten(0, 1) for x in levels[: len(model.depth_branch.depth_layers)]]
            focal = batch.focal.flatten().to(param.device, param.dtype)
            for i, d in enumerate(model.depth_branch(depth_levels, focal)):
                outputs[f"aux/depth/{i}"] = d
        det, map_out, motion = model.forward_heads(channels_last_feature_maps(levels), inputs, self.state)
        self.state.frames_seen += 1
        outputs.update(raw_arrays(det, map_out, motion))
        # Losses in float32 even under AMP (fp16 / bf16 sums of L1 terms lose precision); a float64 model keeps
        # float64 losses (the parity checks against the original, docs/training-losses.md).
        outputs = {k: v.float() if v.dtype in (torch.float16, torch.bfloat16) else v for k, v in outputs.items()}
        with torch.autocast(images.device.type, enabled=False):
            return self.criterion(outputs, batch.gt)


# ----------------------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------------------


def save_checkpoint(path: Path, model: SparseDrive, cfg: TrainConfig, step: int,
                    optimizer: Optional[torch.optim.Optimizer] = None, scaler=None) -> None:
    payload = {
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": {
            "config": config_to_dict(model.config), "config_name": cfg.name, "step": step,
            "stage": model.config.stage, "train_config": config_to_dict(cfg),
        },
    }
    if optimizer is not None:
        payload["optimizer"] = optimizer.state_dict()
    if scaler is not None:
        payload["scaler"] = scaler.state_dict()
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def _load_initial_weights(model: SparseDrive, path: str) -> list[str]:
    """Non-strict load (stage 2 from stage 1: the motion head stays random). Returns the missing keys."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else ckpt
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(usable, strict=False)
    return sorted(set(own) - set(usable))


def load_backbone_weights(model: SparseDrive, path: str) -> None:
    """torchvision ResNet weights (classifier ``fc.*`` dropped) into ``img_backbone``; every key must match."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state)
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    missing, unexpected = model.img_backbone.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"backbone weights {path!r} do not fit img_backbone: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")


# ----------------------------------------------------------------------------------------------------------
# Trainer
# ----------------------------------------------------------------------------------------------------------


class Trainer:
    """Runs ``cfg.max_steps`` optimisation steps on time-ordered sub-sequences of the dataset."""

    def __init__(self, cfg: TrainConfig, data: SparseDriveTrainData, work_dir: str | Path,
                 env: Optional[DistEnv] = None, resume: bool = True, log_every: int = 1):
        self.cfg, self.env = cfg, env or DistEnv()
        self.work_dir = Path(work_dir)
        self.log_every = log_every
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        model = build_sparsedrive(cfg.model.stage, cfg.model)
        init_training_weights(model)
        self.anchor_notes = self._init_anchors(model, data)
        if cfg.backbone_weights:
            load_backbone_weights(model, cfg.backbone_weights)
        if cfg.load_from:
            _load_initial_weights(model, cfg.load_from)
        model.img_backbone.grad_checkpoint = cfg.grad_checkpoint
        model.backbone_autocast = torch.bfloat16 if cfg.backbone_bf16 else None
        self.model = model.to(self.env.device)
        self.module = TrainingModule(self.model, SparseDriveCriterion(cfg.loss), cfg.aug.grid_mask_prob,
                                     seed=cfg.seed + 7919 * self.env.rank).train()
        self.ddp: nn.Module = self.module
        if self.env.distributed:
            ids = [self.env.device.index] if self.env.device.type == "cuda" else None
            self.ddp = nn.parallel.DistributedDataParallel(self.module, device_ids=ids,
                                                           find_unused_parameters=True)
        self.optimizer = build_optimizer(self.model, cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.backbone_lr_mult)
        use_amp = cfg.amp and self.env.device.type == "cuda"
        self.amp_dtype = getattr(torch, cfg.amp_dtype) if use_amp else None
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        self.step = 0
        if resume:
            self._maybe_resume()
        self.streams = SequenceStreams(data, cfg.batch_size, seed=cfg.seed + 1000 * self.env.rank + self.step,
                                       sequences_split_num=cfg.sequences_split_num)

    def _init_anchors(self, model: SparseDrive, data: SparseDriveTrainData) -> list[str]:
        """Every rank computes the same seeded anchors, so no broadcast is needed."""
        if self.cfg.anchors_dir:
            anchors = load_anchors(self.cfg.anchors_dir, model)
        elif self.cfg.kmeans_anchors:
            anchors = compute_anchors(data.ground_truth(), model, seed=self.cfg.seed)
        else:
            return []
        apply_anchors(model, anchors)
        if self.env.is_main:
            for note in anchors.notes:
                print(f"[train] anchors: {note}", flush=True)
        return anchors.notes

    # -- checkpoints --------------------------------------------------------------------------------------------
    @property
    def latest_path(self) -> Path:
        return self.work_dir / "latest.pt"

    def _maybe_resume(self) -> None:
        if not self.latest_path.is_file():
            return
        ckpt = torch.load(self.latest_path, map_location=self.env.device, weights_only=True)
        self.model.load_state_dict(ckpt["state_dict"], strict=True)
        if "optimizer" in ckpt:
            self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.scaler is not None and "scaler" in ckpt:
            self.scaler.load_state_dict(ckpt["scaler"])
        self.step = int(ckpt["meta"]["step"])

    def save(self) -> None:
        if not self.env.is_main:
            return
        self.work_dir.mkdir(parents=True, exist_ok=True)
        path = self.work_dir / f"step_{self.step:07d}.pt"
        save_checkpoint(path, self.model, self.cfg, self.step, self.optimizer, self.scaler)
        save_checkpoint(self.latest_path, self.model, self.cfg, self.step, self.optimizer, self.scaler)

    # -- one step -----------------------------------------------------------------------------------------------
    def _set_lr(self) -> float:
        o = self.cfg.optim
        factor = lr_factor(self.step, self.cfg.max_steps, o.warmup_iters, o.warmup_ratio, o.min_lr_ratio)
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        return self.optimizer.param_groups[0]["lr"]

    def train_step(self, batch: FrameBatch) -> dict[str, float]:
        lr = self._set_lr()
        self.optimizer.zero_grad(set_to_none=True)
        device_type = self.env.device.type
        with torch.autocast(device_type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            losses = self.ddp(batch)
        total = sum(losses.values())
        if not torch.isfinite(total):
            raise FloatingPointError(f"non-finite loss at step {self.step}: "
                                     f"{ {k: float(v.detach()) for k, v in losses.items()} }"
                                     + ("; float16 autocast can overflow in the heads: try amp_dtype='bfloat16'"
                                        if self.amp_dtype == torch.float16 else ""))
        if self.scaler is not None:
            self.scaler.scale(total).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            total.backward()
        max_norm = self.cfg.optim.grad_clip if self.cfg.optim.grad_clip > 0 else float("inf")
        grad_norm = float(nn.utils.clip_grad_norm_(self.model.parameters(), max_norm))
        skipped = not math.isfinite(grad_norm) and self.scaler is None
        if self.scaler is not None:
            self.scaler.step(self.optimizer)  # the scaler skips non-finite steps itself
            self.scaler.update()
        elif not skipped:
            self.optimizer.step()
        # else: a non-finite gradient with a finite loss would poison every weight; drop this step.
        self.step += 1
        record = {k: float(v.detach()) for k, v in losses.items()}
        record = self._mean_over_ranks(record)
        record.update(step=self.step, loss=sum(record.values()), lr=lr, grad_norm=grad_norm,
                      skipped=int(skipped))
        return record

    def _mean_over_ranks(self, record: dict[str, float]) -> dict[str, float]:
        if not self.env.distributed:
            return record
        keys = sorted(record)
        values = torch.tensor([record[k] for k in keys], dtype=torch.float64, device=self.env.device)
        dist.all_reduce(values)
        return {k: float(v) / self.env.world_size for k, v in zip(keys, values)}

    def next_batch(self) -> FrameBatch:
        return collate(self.streams.next_frames(), self.env.device)

    # -- loop ---------------------------------------------------------------------------------------------------
    def train(self, max_steps: Optional[int] = None) -> list[dict]:
        """Train up to ``max_steps`` (default cfg.max_steps) total steps; returns the logged records.

        SIGTERM (``timeout``, a cluster's pre-emption) or a first Ctrl-C ends the run after the current step
        with a checkpoint, so a rerun resumes there; a second Ctrl-C interrupts at once.
        """
        max_steps = max_steps or self.cfg.max_steps
        self.work_dir.mkdir(parents=True, exist_ok=True)
        log = (self.work_dir / "log.jsonl").open("a") if self.env.is_main else None
        progress = Progress(self.step, max_steps) if self.env.is_main else None
        records = []
        prefetch = Prefetcher(self.streams.next_frames, self.cfg.prefetch_batches)
        stop = StopRequest()
        try:
            while self.step < max_steps:
                if self._any_rank(stop.requested):
                    self.save()
                    if self.env.is_main:
                        print(f"[train] {stop.reason}: stopped at step {self.step}, checkpoint {self.latest_path}",
                              file=sys.stderr, flush=True)
                    break
                t0 = time.perf_counter()
                record = self.train_step(collate(prefetch.get(), self.env.device))
                record["time_s"] = time.perf_counter() - t0
                records.append(record)
                if progress is not None:
                    progress.update(self.step, record)
                if log is not None and (self.step % self.log_every == 0 or self.step == max_steps):
                    log.write(json.dumps(record) + "\n")
                    log.flush()
                if self.step % self.cfg.checkpoint_interval == 0 or self.step == max_steps:
                    self.save()
        finally:
            stop.restore()
            prefetch.close()
            if log is not None:
                log.close()
            if progress is not None:
                progress.close()
        return records

    def _any_rank(self, flag: bool) -> bool:
        """True on every rank when any rank's flag is set (ranks must leave the loop at the same step)."""
        if not self.env.distributed:
            return flag
        value = torch.tensor([float(flag)], device=self.env.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())


class StopRequest:
    """Turns SIGTERM and a first SIGINT into a flag checked between steps (handlers only in the main thread)."""

    def __init__(self) -> None:
        self.requested, self.reason = False, ""
        self._previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested, self.reason = True, signal.Signals(signum).name

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


class Prefetcher:
    """Calls ``produce`` on a background thread, at most ``depth`` results ahead; ``get`` returns them in order.

    One producer thread keeps the data streams' order and random draws exactly those of inline reading. An
    exception in ``produce`` is re-raised by the ``get`` that would have returned its result. Results produced
    but not taken before ``close`` are dropped (a later ``Trainer.train`` call continues after them).
    """

    def __init__(self, produce: Callable[[], Any], depth: int = 2) -> None:
        self.produce, self.depth = produce, depth
        self._stop = threading.Event()
        self._queue: queue.Queue = queue.Queue(maxsize=max(depth, 1))
        self._thread: Optional[threading.Thread] = None
        if depth > 0:
            self._thread = threading.Thread(target=self._run, name="batch_prefetch", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                item: tuple[bool, Any] = (True, self.produce())
            except BaseException as exc:  # handed to the consumer, which raises it
                item = (False, exc)
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if not item[0]:
                return

    def get(self) -> Any:
        if self._thread is None:
            return self.produce()
        ok, value = self._queue.get()
        if not ok:
            raise value
        return value

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30.0)


class Progress:
    """One status line on stderr: step, loss, lr, seconds per step and ETA.

    On a terminal the line redraws in place; in a log file (CI, nohup) it is written every ``interval_s``
    seconds so that the file stays short.
    """

    def __init__(self, start_step: int, max_steps: int, interval_s: float = 30.0, stream=None,
                 clock=time.perf_counter) -> None:
        self.stream, self.clock = stream or sys.stderr, clock
        self.tty = self.stream.isatty()
        self.max_steps, self.interval_s = max_steps, (0.5 if self.tty else interval_s)
        self.start_step, self.start = start_step, clock()
        self.last_print = -float("inf")
        self.line = ""

    def update(self, step: int, record: dict) -> None:
        now = self.clock()
        if now - self.last_print < self.interval_s and step < self.max_steps:
            return
        self.last_print = now
        per_step = (now - self.start) / max(step - self.start_step, 1)
        eta = per_step * (self.max_steps - step)
        self.line = (f"[train] step {step}/{self.max_steps} ({100.0 * step / self.max_steps:.0f} %) "
                     f"loss {record['loss']:.3f} lr {record['lr']:.2e} {per_step:.2f} s/step "
                     f"ETA {format_duration(eta)}")
        self.stream.write(("\r" + self.line) if self.tty else self.line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self.line:
            self.stream.write("\n")
            self.stream.flush()


def format_duration(seconds: float) -> str:
    seconds = max(int(round(seconds)), 0)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"
