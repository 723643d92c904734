"""k-means anchors from the training split's ground truth (the original's tools/kmeans scripts,
docs/model-notes.md#anchors).

Four arrays, all in the lidar frame of each key frame (x right, y forward, z up, metres):

* det    [N_det, 11]: k-means centres of GT boxes within 55 m, then the constant tail
  (ln w, ln l, ln h) = (1, 1, 1), (sin, cos) = (1, 0), velocity (0, 0, 0).
* map    [N_map, S, 2]: k-means of the mean point of every GT polyline; each anchor is an 8 m segment along +y.
* motion [C, M, T, 2]: per detection class, k-means of the T cumulative future positions rotated into the
  agent's heading frame (heading = +x), agents whose T steps are all valid.
* plan   [3, M_ego, T_ego, 2]: per driving command (0 right, 1 left, 2 straight), k-means of the cumulative
  future ego positions of samples whose steps are all valid.

Unlike the original, a class or command with fewer samples than modes (or a dataset with fewer box centres
than det anchors) does not shift the indexing: that slot keeps the model's stand-in anchors and the summary
says so. The arrays are saved under the original's file names so that the two tool chains interchange.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

import numpy as np
import torch
from numpy.typing import NDArray
from scipy.cluster.vq import kmeans2

from sparsedrive_ros.model.sparsedrive import SparseDrive

__all__ = ["Anchors", "kmeans", "compute_anchors", "apply_anchors", "save_anchors", "load_anchors"]

F64 = NDArray[np.float64]

DET_TAIL = (1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0)
MAP_SEGMENT_HALF_LENGTH_M = 4.0
FILE_NAMES = {"det": "kmeans_det_{n}.npy", "map": "kmeans_map_{n}.npy", "motion": "kmeans_motion_{n}.npy",
              "plan": "kmeans_plan_{n}.npy"}


@dataclass
class Anchors:
    """Anchor arrays; ``None`` leaves the model's current values. ``notes`` lists the stand-in fallbacks."""

    det: Optional[F64] = None  # [N_det, 11]
    map: Optional[F64] = None  # [N_map, S, 2]
    motion: Optional[F64] = None  # [C, M, T, 2]
    plan: Optional[F64] = None  # [3, M_ego, T_ego, 2]
    notes: list[str] = field(default_factory=list)


def kmeans(points: F64, k: int, seed: int = 0, iters: int = 100) -> F64:
    """[N, D] -> [k, D] cluster centres (k-means++ seeding, Lloyd iterations); needs N >= k."""
    points = np.asarray(points, dtype=np.float64)
    if len(points) < k:
        raise ValueError(f"k-means needs at least k={k} points, got {len(points)}")
    with warnings.catch_warnings():
        # An empty cluster keeps its previous centre: harmless for anchors (duplicates of real points).
        warnings.simplefilter("ignore", UserWarning)
        centres, _ = kmeans2(points, k, iter=iters, minit="++", seed=np.random.default_rng(seed))
    return centres


def _ensure_2d(rows: list[F64], dim: int) -> F64:
    return np.concatenate(rows, axis=0) if rows else np.zeros((0, dim))


def compute_anchors(frames: Iterable[dict], model: SparseDrive, seed: int = 0) -> Anchors:
    """k-means anchors sized for ``model`` from per-frame filtered ground truth.

    ``frames`` yields dicts with ``boxes`` [K, >=7] (x, y, z, l, w, h, yaw, ...), ``labels`` [K],
    ``agent_fut_trajs`` [K, T, 2] per-step offsets, ``agent_fut_masks`` [K, T], ``map_pts`` [L, S, 2],
    ``ego_fut_trajs`` [T_ego, 2] per-step offsets, ``ego_fut_masks`` [T_ego] and ``command`` (int 0/1/2).
    """
    head = model.head
    det_bank, map_bank = head.det_head.instance_bank, head.map_head.instance_bank
    mp = head.motion_plan_head
    centres: list[F64] = []
    map_means: list[F64] = []
    plans: dict[int, list[F64]] = {}
    motions: dict[int, list[F64]] = {}
    for f in frames:
        boxes = np.asarray(f["boxes"], dtype=np.float64)
        centres.append(boxes[:, :3])
        pts = np.asarray(f["map_pts"], dtype=np.float64)
        if len(pts):
            map_means.append(pts.mean(axis=1))
        if mp is not None:
            fut, mask = np.asarray(f["agent_fut_trajs"]), np.asarray(f["agent_fut_masks"])
            steps = mp.motion_anchor.shape[2]
            ok = mask[:, :steps].all(axis=1) if fut.shape[1] >= steps else np.zeros(len(fut), bool)
            for box, label, traj in zip(boxes[ok], np.asarray(f["labels"])[ok], fut[ok, :steps]):
                c, s = np.cos(-box[6]), np.sin(-box[6])
                path = np.cumsum(traj, axis=0) @ np.array([[c, s], [-s, c]])  # rows rotated by -yaw
                motions.setdefault(int(label), []).append(path.reshape(-1))
            ego_steps = mp.plan_anchor.shape[2]
            ego_fut, ego_mask = np.asarray(f["ego_fut_trajs"]), np.asarray(f["ego_fut_masks"])
            if len(ego_mask) >= ego_steps and ego_mask[:ego_steps].all():
                plans.setdefault(int(f["command"]), []).append(np.cumsum(ego_fut[:ego_steps], 0).reshape(-1))

    out = Anchors()
    det_xyz = _ensure_2d(centres, 3)
    n_det = det_bank.anchor.shape[0]
    det = det_bank.anchor.detach().double().cpu().numpy().copy()
    k = min(n_det, len(np.unique(det_xyz, axis=0)))
    if k > 0:
        det[:k, :3] = kmeans(det_xyz, k, seed)
        det[:k, 3:] = DET_TAIL
    if k < n_det:
        out.notes.append(f"det: {len(det_xyz)} box centres for {n_det} anchors; {n_det - k} keep stand-ins")
    out.det = det

    means = _ensure_2d(map_means, 2)
    n_map = map_bank.anchor.shape[0]
    num_sample = map_bank.anchor.shape[1] // 2
    mapa = map_bank.anchor.detach().double().cpu().numpy().reshape(n_map, num_sample, 2).copy()
    k = min(n_map, len(np.unique(means, axis=0)))
    if k > 0:
        c = kmeans(means, k, seed)
        offsets = np.linspace(-MAP_SEGMENT_HALF_LENGTH_M, MAP_SEGMENT_HALF_LENGTH_M, num_sample)
        mapa[:k, :, 0] = c[:, None, 0]
        mapa[:k, :, 1] = c[:, None, 1] + offsets
    if k < n_map:
        out.notes.append(f"map: {len(means)} polylines for {n_map} anchors; {n_map - k} keep stand-ins")
    out.map = mapa

    if mp is not None:
        out.motion = _per_group(motions, mp.motion_anchor, seed, "motion class", out.notes)
        out.plan = _per_group(plans, mp.plan_anchor, seed, "plan command", out.notes)
    return out


def _per_group(samples: dict[int, list[F64]], current: torch.Tensor, seed: int, what: str,
               notes: list[str]) -> F64:
    """k-means per group (class or command) into ``current``'s [G, M, T, 2] layout; thin groups keep theirs."""
    result = current.detach().double().cpu().numpy().copy()
    groups, modes, steps = result.shape[:3]
    for g in range(groups):
        rows = np.asarray(samples.get(g, []), dtype=np.float64).reshape(-1, steps * 2)
        distinct = len(np.unique(rows, axis=0))
        if distinct < modes:
            notes.append(f"{what} {g}: {distinct} distinct samples for {modes} modes; keeps stand-ins")
            continue
        result[g] = kmeans(rows, modes, seed).reshape(modes, steps, 2)
    return result


def _anchor_params(model: SparseDrive) -> dict[str, torch.nn.Parameter]:
    """The model's anchor parameters under the names of :class:`Anchors` (motion/plan only in stage 2)."""
    head = model.head
    params = {"det": head.det_head.instance_bank.anchor, "map": head.map_head.instance_bank.anchor}
    if head.motion_plan_head is not None:
        params.update(motion=head.motion_plan_head.motion_anchor, plan=head.motion_plan_head.plan_anchor)
    return params


def _file_name(name: str, shape: tuple[int, ...]) -> str:
    """The original's file name: det/map count anchors, motion/plan count modes (the second axis)."""
    return FILE_NAMES[name].format(n=shape[0] if name in ("det", "map") else shape[1])


@torch.no_grad()
def apply_anchors(model: SparseDrive, anchors: Anchors) -> None:
    """Copy the arrays into the model's anchor parameters (shapes must match)."""
    for name, param in _anchor_params(model).items():
        array = getattr(anchors, name)
        if array is None:
            continue
        value = torch.as_tensor(np.asarray(array), dtype=param.dtype)
        if value.shape[0] != param.shape[0] or value.numel() != param.numel():
            raise ValueError(f"anchor array of shape {np.shape(array)} does not fit parameter {tuple(param.shape)}")
        param.copy_(value.reshape(param.shape))


def save_anchors(anchors: Anchors, out_dir: str | Path) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in ("det", "map", "motion", "plan"):
        array = getattr(anchors, name)
        if array is None:
            continue
        path = out / _file_name(name, array.shape)
        np.save(path, array.astype(np.float32))
        paths.append(path)
    return paths


def load_anchors(directory: str | Path, model: SparseDrive) -> Anchors:
    """The files of ``save_anchors`` (or the original's data/kmeans/) that fit ``model``; missing ones stay None."""
    d = Path(directory)
    if not d.is_dir():
        raise FileNotFoundError(f"anchor directory {d} does not exist")
    names = {name: _file_name(name, tuple(param.shape)) for name, param in _anchor_params(model).items()}
    found = {name: np.load(d / f, allow_pickle=False).astype(np.float64)
             for name, f in names.items() if (d / f).is_file()}
    if not found:
        raise FileNotFoundError(f"no anchor file in {d} fits this model (looked for {list(names.values())})")
    return Anchors(**found)
