"""Training configurations: ``stage1`` and ``stage2`` (the original's, docs/model-notes.md#training, #configuration)
and ``tiny`` (a reduced
model for CPU tests and quick experiments). A recipe is a function returning a frozen :class:`TrainConfig`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from sparsedrive_ros.model.config import (
    DetHeadConfig,
    MapHeadConfig,
    MotionPlanConfig,
    SparseDriveConfig,
    model_config_from_dict,
)
from sparsedrive_ros.training.augment import AugConfig
from sparsedrive_ros.training.criterion import LossConfig

__all__ = [
    "OptimConfig",
    "TrainConfig",
    "CONFIGS",
    "get_config",
    "model_config_from_dict",
    "config_to_dict",
]


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 4e-4
    weight_decay: float = 1e-3
    backbone_lr_mult: float = 0.5  # parameters named img_backbone.*
    warmup_iters: int = 500
    warmup_ratio: float = 1.0 / 3.0  # warm-up starts at lr / 3
    min_lr_ratio: float = 1e-3  # cosine annealing ends at lr * 1e-3
    grad_clip: float = 25.0  # max L2 norm; <= 0 disables


@dataclass(frozen=True)
class TrainConfig:
    name: str
    model: SparseDriveConfig
    optim: OptimConfig = OptimConfig()
    aug: AugConfig = AugConfig()
    loss: LossConfig = field(default_factory=LossConfig)
    batch_size: int = 8  # per process
    max_steps: int = 43_900
    sequences_split_num: int = 2
    amp: bool = False  # mixed precision on CUDA (autocast); ignored on CPU
    # bfloat16 has float32's range and needs no loss scaling; float16 (+ GradScaler, the original's fp16) overflowed
    # in the decoders' classification within a few steps of stage 1/2 on an H200 (benchmarks/gpu_train_check.sh).
    amp_dtype: str = "bfloat16"
    grad_checkpoint: bool = False  # recompute backbone blocks in the backward pass (less memory, more time)
    # bfloat16 autocast for the image backbone + neck only, on any device (CPUs with AVX-512 bf16 run the
    # convolutions ~20 % faster per step). The heads stay float32: box centres of tens of metres would lose
    # decimetres in bfloat16's 8-bit mantissa.
    backbone_bf16: bool = False
    checkpoint_interval: int = 8780
    # Batches read and augmented ahead on a background thread while a step runs (OpenCV releases the GIL);
    # 0 reads in the step. Same batches in the same order either way.
    prefetch_batches: int = 2
    seed: int = 0
    split: str = "train"
    load_from: Optional[str] = None  # stage 2 starts from a stage-1 checkpoint (non-strict)
    # torchvision ResNet state dict (e.g. resnet50-19c8e357.pth, the original's ImageNet init) for img_backbone.
    backbone_weights: Optional[str] = None
    # Anchors before training: the files of a directory (tools/kmeans_anchors, or the original's data/kmeans/),
    # else k-means on the training split's GT (docs/model-notes.md#anchors), else (False) the model's stand-ins.
    # Weights loaded
    # with load_from or a resume replace them.
    anchors_dir: Optional[str] = None
    kmeans_anchors: bool = True

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
        if self.amp_dtype not in ("bfloat16", "float16"):
            raise ValueError(f"amp_dtype must be 'bfloat16' or 'float16', got {self.amp_dtype!r}")
        if tuple(self.aug.final_hw) != tuple(self.model.image_hw):
            raise ValueError(f"aug.final_hw={self.aug.final_hw} must equal model.image_hw={self.model.image_hw}")


def _stage_model(stage: int) -> SparseDriveConfig:
    if stage == 1:
        return SparseDriveConfig(map=MapHeadConfig(num_temp_instances=0), motion_plan=None)
    return SparseDriveConfig(map=MapHeadConfig(), motion_plan=MotionPlanConfig())


def stage1() -> TrainConfig:
    """64 images-batches over 8 GPUs (8 per GPU), 100 epochs = 43 900 iterations, lr 4e-4, backbone × 0.5."""
    return TrainConfig(
        name="stage1", model=_stage_model(1), optim=OptimConfig(lr=4e-4, backbone_lr_mult=0.5),
        loss=LossConfig(with_motion_plan=False), batch_size=8, max_steps=43_900, checkpoint_interval=8_780,
    )


def stage2() -> TrainConfig:
    """48 over 8 GPUs (6 per GPU), 10 epochs = 5 860 iterations, lr 3e-4, backbone × 0.1; load stage 1."""
    return TrainConfig(
        name="stage2", model=_stage_model(2), optim=OptimConfig(lr=3e-4, backbone_lr_mult=0.1),
        batch_size=6, max_steps=5_860, checkpoint_interval=5_860,
    )


def tiny() -> TrainConfig:
    """The training proof's reduced model: ResNet-18, 64×192 input, 64 det / 16 map anchors, 2 decoder layers,
    1 motion block; stage-2 heads trained jointly from scratch with k-means anchors.

    embed_dims stays 256: the motion head's sine position embedding is fixed at 256 channels. GridMask and
    the photometric distortion are off: they regularise a 100-epoch schedule but slow a one-hour one down.
    """
    det = DetHeadConfig(num_anchor=64, num_temp_instances=32, num_decoder=2, ffn_dims=256, num_output=32)
    mapc = MapHeadConfig(num_anchor=16, num_temp_instances=4, num_decoder=2, ffn_dims=256)
    motion = MotionPlanConfig(num_det=16, num_map=4, num_blocks=1, ffn_dims=256)
    model = SparseDriveConfig(backbone_depth=18, image_hw=(64, 192), det=det, map=mapc, motion_plan=motion)
    aug = AugConfig(final_hw=(64, 192), photometric=False, grid_mask_prob=0.0)
    return TrainConfig(
        name="tiny", model=model, optim=OptimConfig(lr=1e-3, backbone_lr_mult=0.5, warmup_iters=50),
        aug=aug, batch_size=1, max_steps=2200, checkpoint_interval=250,
    )


def demo() -> TrainConfig:
    """The bundled demo model (``make demo``, the replay launch file): trained on the synthetic world only.

    A small network sized for a 2-core CPU and a file under 25 MB in half precision: a half-width ResNet-18
    (32..256 planes), 128-channel features, 64 det / 16 map anchors, 3 det and 2 map decoder layers, map key
    points at one height (the synthetic ground is flat), 64x192 input. No horizontal flip: the synthetic world
    drives on the right, and a flipped image would teach left-hand traffic too. Recipe:
    ``scripts/train_demo_model.sh``.
    """
    dims = 128
    det = DetHeadConfig(num_anchor=64, num_temp_instances=32, num_decoder=3, anchor_encoder_dims=(64, 16, 16, 32),
                        ffn_dims=256, num_output=32)
    mapc = MapHeadConfig(num_anchor=16, num_temp_instances=4, num_decoder=2, fix_height=(0.0,), ffn_dims=256)
    motion = MotionPlanConfig(num_det=16, num_map=4, num_blocks=1, ffn_dims=256)
    model = SparseDriveConfig(backbone_depth=18, backbone_width=32, embed_dims=dims, image_hw=(64, 192), det=det,
                              map=mapc, motion_plan=motion)
    aug = AugConfig(final_hw=(64, 192), rand_flip=False, photometric=False, grid_mask_prob=0.0)
    return TrainConfig(
        name="demo", model=model, optim=OptimConfig(lr=1e-3, backbone_lr_mult=1.0, warmup_iters=100),
        aug=aug, batch_size=1, max_steps=12000, checkpoint_interval=500, split="all", backbone_bf16=True,
    )


def micro() -> TrainConfig:
    """CI-sized: 64×192 input, 32 det / 8 map anchors, few key points, no dropout, no photometric/flip/rotation
    augmentation and no GridMask, so a step is deterministic given the data (DDP-equivalence and overfit tests)."""
    det = DetHeadConfig(num_anchor=32, num_temp_instances=16, num_decoder=2, num_learnable_pts=2, ffn_dims=128,
                        num_output=16, dropout=0.0, dfa_attn_drop=0.0)
    mapc = MapHeadConfig(num_anchor=8, num_temp_instances=2, num_decoder=2, num_learnable_pts=1, fix_height=(0.0,),
                         ffn_dims=128, dropout=0.0, dfa_attn_drop=0.0)
    motion = MotionPlanConfig(num_det=8, num_map=2, num_blocks=1, ffn_dims=128, dropout=0.0)
    model = SparseDriveConfig(backbone_depth=18, image_hw=(64, 192), det=det, map=mapc, motion_plan=motion)
    aug = AugConfig(final_hw=(64, 192), resize_rel_lim=(1.0, 1.0), rot_lim_deg=(0.0, 0.0), rand_flip=False,
                    photometric=False, grid_mask_prob=0.0)
    return TrainConfig(
        name="micro", model=model, optim=OptimConfig(lr=2e-3, backbone_lr_mult=0.5, warmup_iters=5),
        aug=aug, batch_size=1, max_steps=60, checkpoint_interval=1000, split="all",
    )


CONFIGS: dict[str, Callable[[], TrainConfig]] = {
    "stage1": stage1, "stage2": stage2, "tiny": tiny, "demo": demo, "micro": micro,
}


def get_config(name: str) -> TrainConfig:
    if name not in CONFIGS:
        raise ValueError(f"unknown config {name!r}; choose one of {sorted(CONFIGS)}")
    return CONFIGS[name]()


def config_to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)
