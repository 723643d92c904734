"""Training data on the nuScenes reader: per-frame samples with the original's augmentations and GT filters,
streamed as time-ordered sub-sequences (docs/model-notes.md#training).

Each of the B batch slots of a process streams one sub-sequence (a scene cut into ``sequences_split_num``
parts) in time order with one augmentation draw, then moves on to another randomly drawn sub-sequence. The
model's temporal state therefore carries across iterations as at test time; scene switches are detected by
the model's own 2-s time-gap rule, as in the original.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

from sparsedrive_ros.conventions import MAP_CLASSES
from sparsedrive_ros.data.images import load_images
from sparsedrive_ros.data.nuscenes import (
    LIDAR_CHANNEL,
    FrameGroundTruth,
    NuScenes,
    build_frame_inputs,
    build_ground_truth,
)
from sparsedrive_ros.geometry.shapes import resample_polyline
from sparsedrive_ros.training import augment as A
from sparsedrive_ros.training.criterion import GroundTruth

__all__ = [
    "MINI_VAL_SCENES",
    "TrainFrame",
    "FrameBatch",
    "scene_names_for_split",
    "filter_gt",
    "SparseDriveTrainData",
    "SequenceStreams",
    "collate",
]

MINI_VAL_SCENES = ("scene-0103", "scene-0916")
DET_RANGE_M = 55.0  # CircleObjectRangeFilter, every class
MAP_NUM_SAMPLE = 20


def scene_names_for_split(nusc: NuScenes, split: str) -> list[str]:
    """'all', 'train' or 'val' (v1.0-mini split by name; unknown names count as train)."""
    names = [s["name"] for s in nusc.scenes]
    if split == "all":
        return names
    if split == "val":
        return [n for n in names if n in MINI_VAL_SCENES]
    if split == "train":
        train = [n for n in names if n not in MINI_VAL_SCENES]
        return train or names  # a dataset made only of val-named scenes still trains
    raise ValueError(f"split must be 'all', 'train' or 'val', got {split!r}")


def filter_gt(gt: FrameGroundTruth) -> dict[str, NDArray]:
    """Original training filters: known class, >= 1 lidar point, centre within 55 m; NaN velocity -> 0."""
    keep = (gt.labels >= 0) & (gt.num_lidar_pts > 0) & (np.linalg.norm(gt.boxes[:, :2], axis=-1) <= DET_RANGE_M)
    vel = np.nan_to_num(gt.velocities[keep], nan=0.0)
    lines, labels = [], []
    for label, name in enumerate(MAP_CLASSES):
        for line in gt.map_polylines.get(name, []):
            line = np.asarray(line, dtype=np.float64)
            if len(line) >= 2 and np.linalg.norm(np.diff(line, axis=0), axis=1).sum() > 0:
                lines.append(resample_polyline(line, MAP_NUM_SAMPLE))
                labels.append(label)
    return {
        "boxes": np.concatenate([gt.boxes[keep], vel], axis=1),  # [K, 9]
        "labels": gt.labels[keep],
        "instance_ids": gt.instance_ids[keep],
        "agent_fut_trajs": gt.agent_fut_trajs[keep],
        "agent_fut_masks": gt.agent_fut_masks[keep],
        "map_pts": np.asarray(lines, dtype=np.float64).reshape(-1, MAP_NUM_SAMPLE, 2),
        "map_labels": np.asarray(labels, dtype=np.int64),
    }


@dataclass
class TrainFrame:
    """One augmented key frame ready for collation (numpy, lidar frame of the key frame)."""

    token: str
    images: NDArray[np.float32]  # [N_cam, 3, H, W] normalised RGB
    projection_mat: NDArray[np.float32]  # [N_cam, 4, 4] lidar -> augmented pixels
    image_wh: NDArray[np.float32]  # [N_cam, 2]
    focal: NDArray[np.float32]  # [N_cam] fx of the augmented images
    timestamp: float
    T_global: NDArray[np.float64]
    T_global_inv: NDArray[np.float64]
    command: NDArray[np.float32]  # [3] one-hot
    ego_status: NDArray[np.float32]  # [10]
    gt: dict[str, NDArray]
    ego_fut_trajs: NDArray[np.float32]  # [6, 2]
    ego_fut_masks: NDArray[np.float32]  # [6]
    depth: Optional[list[NDArray[np.float32]]]  # per level [N_cam, h, w]
    aug: A.ImageAug


class SparseDriveTrainData:
    """Builds augmented :class:`TrainFrame` s for sample tokens; GT and geometry are cached per sample."""

    def __init__(self, nusc: NuScenes, scene_names: Sequence[str], aug: A.AugConfig, train: bool = True,
                 with_depth: bool = True):
        if not scene_names:
            raise ValueError("no scenes selected for training")
        self.nusc, self.aug, self.train, self.with_depth = nusc, aug, train, with_depth
        self.scenes = {name: [s["token"] for s in nusc.scene_samples(nusc.scene(name))] for name in scene_names}
        self._cache: dict[str, tuple] = {}

    def _static(self, token: str):
        if token not in self._cache:
            sample = self.nusc.get("sample", token)
            inputs = build_frame_inputs(self.nusc, sample)
            gt = build_ground_truth(self.nusc, sample)
            lidar = self.nusc.key_sample_data(sample, LIDAR_CHANNEL)
            self._cache[token] = (inputs, gt, filter_gt(gt), str(self.nusc.dataroot / lidar["filename"]))
        return self._cache[token]

    def ground_truth(self) -> Iterator[dict]:
        """Filtered GT of every sample, in the lidar frame, without reading images (for k-means anchors)."""
        for tokens in self.scenes.values():
            for token in tokens:
                _, gt, gt_f, _ = self._static(token)
                yield {**gt_f, "ego_fut_trajs": gt.ego_fut_trajs, "ego_fut_masks": gt.ego_fut_masks,
                       "command": int(np.argmax(gt.ego_fut_cmd))}

    def frame(self, token: str, aug: Optional[A.ImageAug], rng: np.random.Generator) -> TrainFrame:
        inputs, gt, gt_f, lidar_path = self._static(token)
        raw = load_images(inputs.image_paths)  # [N, H, W, 3] BGR uint8
        src_hw = raw.shape[1:3]
        if aug is None:
            aug = A.sample_image_aug(rng, src_hw, self.aug) if self.train else A.test_image_aug(src_hw, self.aug)
        mat = A.image_aug_matrix(aug)
        images = []
        for img in raw:
            out = A.apply_image_aug(img, aug, self.aug.final_hw)
            if self.train and self.aug.photometric:
                out = A.photometric_distortion(out, rng)
            images.append(A.normalize_image(out))
        lidar2img = mat[None] @ inputs.lidar2img  # [N, 4, 4]
        depth = None
        if self.with_depth:
            points = A.load_lidar_points(lidar_path)
            if points is not None:
                depth = A.depth_maps(
                    points, lidar2img, self.aug.final_hw, self.aug.depth_downsample, self.aug.max_depth
                )
        fh, fw = self.aug.final_hw
        return TrainFrame(
            token=token, images=np.stack(images), projection_mat=lidar2img.astype(np.float32),
            image_wh=np.tile(np.array([fw, fh], np.float32), (len(raw), 1)),
            focal=(inputs.intrinsics[:, 0, 0] * aug.resize).astype(np.float32),
            timestamp=inputs.timestamp, T_global=inputs.T_global, T_global_inv=inputs.T_global_inv,
            command=gt.ego_fut_cmd.astype(np.float32), ego_status=inputs.ego_status.astype(np.float32),
            gt=gt_f, ego_fut_trajs=gt.ego_fut_trajs.astype(np.float32),
            ego_fut_masks=gt.ego_fut_masks.astype(np.float32), depth=depth, aug=aug,
        )


class SequenceStreams:
    """B slots, each streaming a sub-sequence in time order with one augmentation draw (GroupInBatchSampler)."""

    def __init__(self, data: SparseDriveTrainData, batch_size: int, seed: int, sequences_split_num: int = 2,
                 shuffle: bool = True):
        self.data, self.batch_size, self.shuffle = data, batch_size, shuffle
        self.rng = np.random.default_rng(seed)
        self.chunks: list[list[str]] = []
        for tokens in data.scenes.values():
            for part in np.array_split(np.arange(len(tokens)), min(sequences_split_num, len(tokens))):
                self.chunks.append([tokens[i] for i in part])
        self.slots: list[list] = [[None, 0, None] for _ in range(batch_size)]  # [chunk, position, aug]
        self._next_chunk = 0

    def _draw_chunk(self) -> list[str]:
        if self.shuffle:
            return self.chunks[int(self.rng.integers(len(self.chunks)))]
        chunk = self.chunks[self._next_chunk % len(self.chunks)]
        self._next_chunk += 1
        return chunk

    def next_frames(self) -> list[TrainFrame]:
        frames = []
        for slot in self.slots:
            if slot[0] is None or slot[1] >= len(slot[0]):
                slot[0], slot[1], slot[2] = self._draw_chunk(), 0, None
            frame = self.data.frame(slot[0][slot[1]], slot[2], self.rng)
            slot[2] = frame.aug  # keep_consistent_seq_aug: the rest of the sub-sequence reuses this draw
            slot[1] += 1
            frames.append(frame)
        return frames

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state, "next_chunk": self._next_chunk}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        self._next_chunk = state["next_chunk"]


@dataclass
class FrameBatch:
    """A collated batch: model inputs (tensors), focal, ground truth and the sample tokens."""

    images: Tensor  # [B, N_cam, 3, H, W]
    projection_mat: Tensor  # [B, N_cam, 4, 4]
    image_wh: Tensor  # [B, N_cam, 2]
    timestamp: Tensor  # [B] float64
    T_global: Tensor  # [B, 4, 4] float64
    T_global_inv: Tensor  # [B, 4, 4] float64
    command: Tensor  # [B, 3]
    focal: Tensor  # [B, N_cam]
    gt: GroundTruth
    tokens: list[str]


def collate(frames: Sequence[TrainFrame], device: torch.device | str = "cpu") -> FrameBatch:
    def stack(name, dtype=torch.float32):
        return torch.as_tensor(np.stack([getattr(f, name) for f in frames]), dtype=dtype, device=device)

    def per(name, dtype=torch.float32):
        return [torch.as_tensor(f.gt[name], dtype=dtype, device=device) for f in frames]

    depth = None
    depths = [f.depth for f in frames if f.depth is not None]
    if len(depths) == len(frames):
        depth = [torch.as_tensor(np.concatenate([d[lvl] for d in depths]), device=device)
                 for lvl in range(len(depths[0]))]
    gt = GroundTruth(
        boxes=per("boxes"), labels=per("labels", torch.long), map_labels=per("map_labels", torch.long),
        map_pts=per("map_pts"), agent_fut_trajs=per("agent_fut_trajs"), agent_fut_masks=per("agent_fut_masks"),
        ego_fut_trajs=stack("ego_fut_trajs"), ego_fut_masks=stack("ego_fut_masks"), ego_fut_cmd=stack("command"),
        ego_status=stack("ego_status"), depth=depth,
    )
    return FrameBatch(
        images=stack("images"), projection_mat=stack("projection_mat"), image_wh=stack("image_wh"),
        timestamp=torch.as_tensor([f.timestamp for f in frames], dtype=torch.float64, device=device),
        T_global=stack("T_global", torch.float64), T_global_inv=stack("T_global_inv", torch.float64),
        command=stack("command"), focal=stack("focal"), gt=gt, tokens=[f.token for f in frames],
    )
