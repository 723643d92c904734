"""Run a model over a dataset split and compute SparseDrive's metrics (docs/model-notes.md#evaluation).

Each scene is streamed in time order through a fresh temporal state (batch 1, as the official evaluation).
Detections and GT go to the global frame for the nuScenes detection protocol; map, motion and planning are
evaluated in each key frame's lidar frame. Ground truth comes from the project's nuScenes reader. On request
(``tracking=True``) the detections with their instance ids also form a nuScenes tracking submission, scored by
the official devkit in a child process (optional extra, see ``metrics/tracking.py``).

Known differences from the official pipeline: images are resized with OpenCV area averaging (the original
uses PIL bicubic), the map GT is not shapely-simplified before the 200-point resampling, and the detection
evaluation skips the bike-rack filter (needs the map rasters).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from sparsedrive_ros.conventions import DETECTION_CLASSES, MAP_CLASSES
from sparsedrive_ros.data.nuscenes import FrameGroundTruth, NuScenes
from sparsedrive_ros.model.sparsedrive import FrameInputs, SparseDrive, SparseDriveOutput, SparseDriveStream
from sparsedrive_ros.training.augment import AugConfig
from sparsedrive_ros.training.dataset import SparseDriveTrainData, collate
from sparsedrive_ros.training.metrics.detection import DetBox, evaluate_detection
from sparsedrive_ros.training.metrics.map import MapSample, evaluate_map
from sparsedrive_ros.training.metrics.motion import MotionSample, evaluate_motion
from sparsedrive_ros.training.metrics.planning import PlanningSample, evaluate_planning
from sparsedrive_ros.training.metrics.tracking import (
    TRACKING_CLASSES,
    TRACKING_THRESHOLD,
    evaluate_tracking,
    tracking_box,
    tracking_keep_count,
)

__all__ = ["EvalAccumulator", "predicted_attribute", "lidar_boxes_to_global", "tracking_submission_boxes",
           "evaluate_model", "format_table"]

_VEHICLES = ("car", "construction_vehicle", "bus", "truck", "trailer")
_DEFAULT_ATTRIBUTE = {
    "car": "vehicle.parked", "pedestrian": "pedestrian.moving", "trailer": "vehicle.parked",
    "truck": "vehicle.parked", "bus": "vehicle.moving", "motorcycle": "cycle.without_rider",
    "construction_vehicle": "vehicle.parked", "bicycle": "cycle.without_rider", "barrier": "", "traffic_cone": "",
}


def predicted_attribute(name: str, velocity: Sequence[float]) -> str:
    """The original's speed heuristic (> 0.2 m/s = moving)."""
    if float(np.hypot(velocity[0], velocity[1])) > 0.2:
        if name in _VEHICLES:
            return "vehicle.moving"
        if name in ("bicycle", "motorcycle"):
            return "cycle.with_rider"
        return _DEFAULT_ATTRIBUTE[name]
    if name == "pedestrian":
        return "pedestrian.standing"
    if name == "bus":
        return "vehicle.stopped"
    return _DEFAULT_ATTRIBUTE[name]


def lidar_boxes_to_global(
    boxes: np.ndarray,  # [K, >=9] x, y, z, l, w, h, yaw, vx, vy (lidar frame)
    t_global: np.ndarray,  # [4, 4] lidar -> global
    lidar_to_ego: np.ndarray,  # [4, 4]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """-> (centres [K, 3] global, yaw [K] global, velocity [K, 2] global, ego distance [K])."""
    centres = boxes[:, :3] @ t_global[:3, :3].T + t_global[:3, 3]
    yaw = boxes[:, 6] + np.arctan2(t_global[1, 0], t_global[0, 0])
    vel3 = np.concatenate([boxes[:, 7:9], np.zeros((len(boxes), 1))], axis=1)
    vel = (vel3 @ t_global[:3, :3].T)[:, :2]
    ego = boxes[:, :3] @ lidar_to_ego[:3, :3].T + lidar_to_ego[:3, 3]
    return centres, yaw, vel, np.linalg.norm(ego[:, :2], axis=1)


def tracking_submission_boxes(
    sample_token: str,
    boxes: np.ndarray,  # [K, >=9] x, y, z, l, w, h, yaw, vx, vy (lidar frame), sorted by score (descending)
    labels: np.ndarray,  # [K] index into DETECTION_CLASSES
    scores: np.ndarray,  # [K] final score (class score x centerness), the tracking_score
    cls_scores: np.ndarray,  # [K] class score, thresholded as the original (see tracking_keep_count)
    track_ids: np.ndarray,  # [K] instance ids, stable across the frames of a scene
    t_global: np.ndarray,  # [4, 4] lidar -> global
    lidar_to_ego: np.ndarray,  # [4, 4]
    threshold: float = TRACKING_THRESHOLD,
) -> list[dict]:
    """One frame's detections as nuScenes tracking submission boxes (global frame, tracked classes only)."""
    keep = tracking_keep_count(cls_scores, threshold)
    boxes = np.asarray(boxes, np.float64)[:keep]
    c, yaw, vel, _ = lidar_boxes_to_global(boxes, t_global, lidar_to_ego)
    out = []
    for i in range(keep):
        name = DETECTION_CLASSES[int(labels[i])]
        if name in TRACKING_CLASSES:
            out.append(tracking_box(sample_token, c[i], (boxes[i, 4], boxes[i, 3], boxes[i, 5]), float(yaw[i]),
                                    vel[i], name, float(scores[i]), int(track_ids[i])))
    return out


@dataclass
class EvalAccumulator:
    """Collects per-frame predictions and GT for all four tasks."""

    det_gt: list[DetBox] = field(default_factory=list)
    det_pred: list[DetBox] = field(default_factory=list)
    map_gt: list[MapSample] = field(default_factory=list)
    map_pred: list[MapSample] = field(default_factory=list)
    motion_gt: list[MotionSample] = field(default_factory=list)
    motion_pred: list[MotionSample] = field(default_factory=list)
    planning: list[PlanningSample] = field(default_factory=list)
    planning_cv: list[PlanningSample] = field(default_factory=list)  # constant-velocity baseline, same GT
    tracking: dict[str, list[dict]] = field(default_factory=dict)  # sample token -> tracking submission boxes

    def add_detection(self, token: str, gt: FrameGroundTruth, attributes: Sequence[str], out: SparseDriveOutput,
                      t_global: np.ndarray, lidar_to_ego: np.ndarray) -> None:
        known = gt.labels >= 0
        boxes = np.concatenate([gt.boxes, gt.velocities], axis=1)[known]
        c, yaw, vel, dist = lidar_boxes_to_global(boxes, t_global, lidar_to_ego)
        pts = (gt.num_lidar_pts + gt.num_radar_pts)[known]
        names = [DETECTION_CLASSES[label] for label in gt.labels[known]]
        attrs = [a for a, k in zip(attributes, known) if k]
        for i in range(len(boxes)):
            self.det_gt.append(DetBox(token, tuple(c[i]), (boxes[i, 4], boxes[i, 3], boxes[i, 5]), float(yaw[i]),
                                      tuple(vel[i]), names[i], attribute=attrs[i], ego_dist=float(dist[i]),
                                      num_pts=int(pts[i])))
        det = out.detections
        pb = det.boxes[0].detach().cpu().double().numpy()
        c, yaw, vel, dist = lidar_boxes_to_global(pb, t_global, lidar_to_ego)
        for i, (label, score) in enumerate(zip(det.labels[0].tolist(), det.scores[0].tolist())):
            name = DETECTION_CLASSES[label]
            self.det_pred.append(DetBox(token, tuple(c[i]), (pb[i, 4], pb[i, 3], pb[i, 5]), float(yaw[i]),
                                        tuple(vel[i]), name, score=float(score),
                                        attribute=predicted_attribute(name, vel[i]), ego_dist=float(dist[i])))

    def add_tracking(self, token: str, out: SparseDriveOutput, t_global: np.ndarray, lidar_to_ego: np.ndarray) -> None:
        """Every evaluated sample gets an entry (possibly empty): the devkit requires all samples of the split."""
        det = out.detections
        boxes, labels, scores, cls_scores, ids = (
            x[0].detach().cpu().numpy() for x in (det.boxes, det.labels, det.scores, det.cls_scores, det.instance_ids))
        self.tracking[token] = tracking_submission_boxes(token, boxes, labels, scores, cls_scores, ids, t_global,
                                                         lidar_to_ego)

    def add_map(self, gt: FrameGroundTruth, out: SparseDriveOutput) -> None:
        lines, labels = [], []
        for label, name in enumerate(MAP_CLASSES):
            for line in gt.map_polylines.get(name, []):
                if len(line) >= 2:
                    lines.append(np.asarray(line, float))
                    labels.append(label)
        self.map_gt.append(MapSample(lines, np.asarray(labels, int)))
        m = out.map
        self.map_pred.append(MapSample(list(m.polylines[0].detach().cpu().double().numpy()),
                                       m.labels[0].cpu().numpy(), m.scores[0].detach().cpu().double().numpy()))

    def add_motion(self, gt: FrameGroundTruth, out: SparseDriveOutput) -> None:
        known = gt.labels >= 0
        centres = gt.boxes[known, :2]
        fut = np.cumsum(gt.agent_fut_trajs[known], axis=1) + centres[:, None]
        self.motion_gt.append(MotionSample(centres, gt.labels[known], fut, masks=gt.agent_fut_masks[known]))
        det, motion = out.detections, out.motion
        if motion is None:
            raise ValueError("motion metrics need a stage-2 model")
        self.motion_pred.append(MotionSample(
            det.boxes[0, :, :2].detach().cpu().double().numpy(), det.labels[0].cpu().numpy(),
            motion.trajs[0].detach().cpu().double().numpy(), scores=det.scores[0].detach().cpu().double().numpy(),
        ))

    def add_planning(self, gt: FrameGroundTruth, out: SparseDriveOutput, fut_boxes: list[np.ndarray]) -> None:
        if out.planning is None:
            raise ValueError("planning metrics need a stage-2 model")
        self.planning.append(PlanningSample(
            out.planning.final[0].detach().cpu().double().numpy(), np.cumsum(gt.ego_fut_trajs, axis=0),
            gt.ego_fut_masks, fut_boxes,
        ))

    def add_constant_velocity(
        self, gt: FrameGroundTruth, displacement: np.ndarray, fut_boxes: list[np.ndarray]
    ) -> None:
        """Baseline: the ego repeats its last 0.5 s displacement [2] (lidar frame) for the 6 planning steps."""
        steps = np.arange(1, len(gt.ego_fut_masks) + 1)[:, None]
        self.planning_cv.append(PlanningSample(steps * displacement[None], np.cumsum(gt.ego_fut_trajs, axis=0),
                                               gt.ego_fut_masks, fut_boxes))

    def results(self) -> dict:
        res = {
            "detection": evaluate_detection(self.det_gt, self.det_pred),
            "map": evaluate_map(self.map_gt, self.map_pred),
        }
        if self.planning:
            res["motion"] = evaluate_motion(self.motion_gt, self.motion_pred)
            res["planning"] = evaluate_planning(self.planning)
        if self.planning_cv:
            res["planning_constant_velocity"] = evaluate_planning(self.planning_cv)
        return res


def _future_boxes(nusc: NuScenes, tokens: Sequence[str], index: int, gts: dict, steps: int = 6) -> list[np.ndarray]:
    """GT boxes [K, 7] of the next ``steps`` key frames, expressed in the lidar frame of ``tokens[index]``."""
    t_now_inv = np.linalg.inv(gts[tokens[index]][1])
    out = []
    for t in range(1, steps + 1):
        if index + t >= len(tokens):
            out.append(np.zeros((0, 7)))
            continue
        gt, t_fut = gts[tokens[index + t]]
        rel = t_now_inv @ t_fut
        boxes = gt.boxes[gt.labels >= 0].copy()
        boxes[:, :3] = boxes[:, :3] @ rel[:3, :3].T + rel[:3, 3]
        boxes[:, 6] += np.arctan2(rel[1, 0], rel[0, 0])
        out.append(boxes)
    return out


def _last_displacement(tokens: Sequence[str], index: int, gts: dict, ego_status: Optional[np.ndarray] = None,
                       lidar_to_ego: Optional[np.ndarray] = None, interval_s: float = 0.5) -> np.ndarray:
    """[2] how far the lidar origin moved over the last key-frame interval, in the current lidar frame.

    On a scene's first frame there is no past key frame; the baseline then takes the CAN-bus ego velocity
    (``ego_status[6:9]``, base_link axes, m/s) that the model also receives, rotated into the lidar frame and
    times the interval. Without it (no CAN bus) the displacement is zero.
    """
    if index == 0:
        if ego_status is None or lidar_to_ego is None:
            return np.zeros(2)
        velocity_lidar = lidar_to_ego[:3, :3].T @ np.asarray(ego_status[6:9], dtype=np.float64)
        return velocity_lidar[:2] * interval_s
    prev_in_now = np.linalg.inv(gts[tokens[index]][1]) @ gts[tokens[index - 1]][1][:, 3]  # previous origin
    return -prev_in_now[:2]


def _attributes(nusc: NuScenes, token: str) -> list[str]:
    names = []
    for ann in nusc.annotations(nusc.get("sample", token)):
        tokens = ann.get("attribute_tokens") or []
        names.append(nusc.get("attribute", tokens[0])["name"] if tokens else "")
    return names


def evaluate_model(model: SparseDrive, nusc: NuScenes, scene_names: Sequence[str], device: str = "cpu",
                   max_frames: Optional[int] = None, tracking: bool = False) -> dict:
    """Stream every scene through ``model`` (eval mode) and compute all metrics.

    ``tracking`` adds ``res["tracking"]`` (AMOTA, AMOTP, ... by the devkit, or ``{"skipped": reason}``). It is
    opt-in: the devkit is an optional extra and takes minutes on the full val split.
    """
    model = model.to(device).eval()
    aug = AugConfig(final_hw=(model.config.image_hw[0], model.config.image_hw[1]))
    data = SparseDriveTrainData(nusc, scene_names, aug, train=False, with_depth=False)
    acc, frames, truncated = EvalAccumulator(), 0, False
    rng = np.random.default_rng(0)
    for tokens in data.scenes.values():
        stream = SparseDriveStream(model)
        gts = {}
        for tok in tokens:
            inputs, gt, _, _ = data._static(tok)
            gts[tok] = (gt, inputs.T_global)
        for i, tok in enumerate(tokens):
            if max_frames is not None and frames >= max_frames:
                truncated = True
                break
            batch = collate([data.frame(tok, None, rng)], device)
            out = stream.step(FrameInputs(batch.images, batch.projection_mat, batch.image_wh, batch.timestamp,
                                          batch.T_global, batch.T_global_inv, batch.command))
            inputs, gt, _, _ = data._static(tok)
            acc.add_detection(tok, gt, _attributes(nusc, tok), out, inputs.T_global, inputs.lidar_to_ego)
            acc.add_map(gt, out)
            if tracking:
                acc.add_tracking(tok, out, inputs.T_global, inputs.lidar_to_ego)
            if out.planning is not None:
                acc.add_motion(gt, out)
                acc.add_planning(gt, out, _future_boxes(nusc, tokens, i, gts))
                cv = _last_displacement(tokens, i, gts, inputs.ego_status, inputs.lidar_to_ego)
                acc.add_constant_velocity(gt, cv, _future_boxes(nusc, tokens, i, gts))
            frames += 1
    res = acc.results()
    res["num_frames"] = frames
    if tracking and truncated:
        res["tracking"] = {"skipped": "max_frames cut the split short; tracking needs every sample of its scenes"}
    elif tracking:
        res["tracking"] = evaluate_tracking(acc.tracking, nusc.dataroot, nusc.version, scene_names,
                                            [s["name"] for s in nusc.scenes])
    return res


def format_table(res: dict) -> str:
    det, mp = res["detection"], res["map"]
    rows = [
        ("NDS", det["NDS"]), ("mAP (det)", det["mAP"]), ("mATE", det["mATE"]), ("mASE", det["mASE"]),
        ("mAOE", det["mAOE"]), ("mAVE", det["mAVE"]), ("mAAE", det["mAAE"]), ("map mAP", mp["mAP"]),
    ]
    rows += [(f"map AP {k}", v) for k, v in mp["class_AP"].items()]
    if "motion" in res:
        car = res["motion"]["car"]
        rows += [("minADE car", car["min_ade"]), ("minFDE car", car["min_fde"]), ("MR car", car["miss_rate"]),
                 ("EPA car", car["EPA"])]
        pl = res["planning"]
        rows += [(f"L2 {k}", v) for k, v in pl["L2"].items()]
        if "planning_constant_velocity" in res:
            rows += [(f"L2 {k} const. velocity", v) for k, v in res["planning_constant_velocity"]["L2"].items()]
        rows += [(f"collision {k} (%)", 100 * v) for k, v in pl["obj_box_col"].items()]
    track = res.get("tracking", {})
    if "AMOTA" in track:
        rows += [(k, track[k]) for k in ("AMOTA", "AMOTP", "RECALL", "MOTAR", "MOTA", "MOTP", "IDS", "FRAG")]
    width = max(len(k) for k, _ in rows)
    lines = [f"{k:<{width}}  {v:8.4f}" for k, v in rows]
    if "skipped" in track:
        lines.append(f"tracking skipped: {track['skipped']}")
    return "\n".join(lines)
