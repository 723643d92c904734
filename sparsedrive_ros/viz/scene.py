"""Plain containers of one frame's SparseDrive outputs, as the renderers take them (numpy only, no ROS).

Frame: everything is in the outputs' reference frame, nuScenes LIDAR_TOP axes (x right, y forward, z up); the
ego vehicle sits at the origin heading +y. Lengths in metres, angles in radians.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional, Tuple

import numpy as np

from sparsedrive_ros.conventions import DETECTION_CLASSES, MAP_CLASSES


def _array(value, shape_tail: Tuple[int, ...], name: str, dtype=np.float64) -> np.ndarray:
    arr = np.asarray(value, dtype=dtype)
    if arr.size == 0:
        arr = arr.reshape((0,) + shape_tail)
    if arr.ndim != 1 + len(shape_tail) or arr.shape[1:] != shape_tail:
        raise ValueError(f"{name} must have shape [N, {', '.join(map(str, shape_tail))}], got {arr.shape}")
    return arr


@dataclass
class Boxes:
    """3-D boxes. centers [N, 3] (geometric centre), sizes [N, 3] (length along heading, width, height),
    yaws [N] (counter-clockwise about +z from +x), labels [N], scores [N], ids [N] (tracking ids)."""

    centers: np.ndarray
    sizes: np.ndarray
    yaws: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    ids: np.ndarray

    def __post_init__(self):
        self.centers = _array(self.centers, (3,), "centers")
        self.sizes = _array(self.sizes, (3,), "sizes")
        n = len(self.centers)
        self.yaws = np.asarray(self.yaws, dtype=np.float64).reshape(-1)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        self.scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        self.ids = np.asarray(self.ids, dtype=np.uint64).reshape(-1)
        for name in ("sizes", "yaws", "labels", "scores", "ids"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"boxes: {name} has {len(getattr(self, name))} entries for {n} centers")

    @classmethod
    def empty(cls) -> "Boxes":
        return cls(np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0), np.zeros(0, np.int64), np.zeros(0),
                   np.zeros(0, np.uint64))

    def __len__(self) -> int:
        return len(self.centers)


@dataclass
class MapElements:
    """Vector-map polylines: polylines[i] [P_i, 3], labels [M] (MAP_CLASSES index), scores [M]."""

    polylines: List[np.ndarray]
    labels: np.ndarray
    scores: np.ndarray

    def __post_init__(self):
        self.polylines = [_array(p, (3,), f"polyline {i}") for i, p in enumerate(self.polylines)]
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        self.scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        if not len(self.polylines) == len(self.labels) == len(self.scores):
            raise ValueError(f"map: {len(self.polylines)} polylines, {len(self.labels)} labels, "
                             f"{len(self.scores)} scores")

    @classmethod
    def empty(cls) -> "MapElements":
        return cls([], np.zeros(0, np.int64), np.zeros(0))


@dataclass
class ObjectForecast:
    """Multi-modal future of one object: paths [M, T, 3] (absolute positions), confidences [M] (sum to 1)."""

    instance_id: int
    label: int
    paths: np.ndarray
    confidences: np.ndarray

    def __post_init__(self):
        self.paths = np.asarray(self.paths, dtype=np.float64)
        if self.paths.size == 0:
            self.paths = self.paths.reshape(0, 0, 3)
        if self.paths.ndim != 3 or self.paths.shape[2] != 3:
            raise ValueError(f"forecast paths must have shape [M, T, 3], got {self.paths.shape}")
        self.confidences = np.asarray(self.confidences, dtype=np.float64).reshape(-1)
        if len(self.confidences) != len(self.paths):
            raise ValueError(f"forecast: {len(self.paths)} paths but {len(self.confidences)} confidences")


@dataclass
class Plan:
    """Ego plan: trajectory [T, 3] (selected), candidates [C, T, 3] with scores [C], their commands [C]."""

    trajectory: np.ndarray
    candidates: np.ndarray
    candidate_scores: np.ndarray
    candidate_commands: np.ndarray
    command: int

    def __post_init__(self):
        self.trajectory = _array(self.trajectory, (3,), "plan trajectory")
        self.candidates = np.asarray(self.candidates, dtype=np.float64)
        if self.candidates.size == 0:
            self.candidates = self.candidates.reshape(0, len(self.trajectory), 3)
        if self.candidates.ndim != 3 or self.candidates.shape[2] != 3:
            raise ValueError(f"plan candidates must have shape [C, T, 3], got {self.candidates.shape}")
        self.candidate_scores = np.asarray(self.candidate_scores, dtype=np.float64).reshape(-1)
        self.candidate_commands = np.asarray(self.candidate_commands, dtype=np.int64).reshape(-1)
        if not len(self.candidates) == len(self.candidate_scores) == len(self.candidate_commands):
            raise ValueError("plan: candidates, candidate_scores and candidate_commands differ in length")


@dataclass
class GroundTruth:
    """Annotations drawn beside the outputs, in the same frame: boxes (scores 1, ids = instance index), map
    polylines, the future ego path [T, 3] (one point per 0.5 s), and the key frame's stamp they come from."""

    boxes: Boxes
    map: MapElements
    ego_path: np.ndarray
    key_frame_stamp_ns: int = 0

    def __post_init__(self):
        self.ego_path = _array(self.ego_path, (3,), "ground-truth ego path")


@dataclass
class FrameOutputs:
    """Everything the renderers draw for one model frame (any part may be missing)."""

    stamp_ns: int
    frame_index: int = 0
    frame_id: str = "LIDAR_TOP"
    class_names: Tuple[str, ...] = DETECTION_CLASSES
    map_class_names: Tuple[str, ...] = MAP_CLASSES
    boxes: Boxes = field(default_factory=Boxes.empty)
    map: MapElements = field(default_factory=MapElements.empty)
    forecasts: List[ObjectForecast] = field(default_factory=list)
    plan: Optional[Plan] = None
    info: Dict[str, str] = field(default_factory=dict)  # short text lines for the header (latency, resets)
    model: str = ""  # which weights produced the frame (FrameInfo.model)
    random_weights: bool = False  # drawn as a banner on every render: the outputs mean nothing
    ground_truth: Optional[GroundTruth] = None  # when the dataset has annotations (recorder `dataroot`)

    def strongest(self, max_boxes: int, max_map: int, min_score: float = 0.0) -> "FrameOutputs":
        """A copy with at most the `max_boxes` / `max_map` best-scoring boxes / map elements at or above
        `min_score`, and only the forecasts of kept boxes (the model publishes up to 300 boxes and 100 polylines,
        too many to read in a picture, especially with untrained weights)."""
        if max_boxes < 0 or max_map < 0:
            raise ValueError(f"max_boxes and max_map must be >= 0, got {max_boxes}, {max_map}")
        b = self.boxes
        keep = [k for k in np.argsort(-b.scores, kind="stable") if b.scores[k] >= min_score][:max_boxes]
        boxes = Boxes(b.centers[keep], b.sizes[keep], b.yaws[keep], b.labels[keep], b.scores[keep], b.ids[keep])
        m = self.map
        keep_map = [k for k in np.argsort(-m.scores, kind="stable") if m.scores[k] >= min_score][:max_map]
        kept_ids = {int(i) for i in boxes.ids}
        return replace(self, boxes=boxes,
                       map=MapElements([m.polylines[k] for k in keep_map], m.labels[keep_map], m.scores[keep_map]),
                       forecasts=[f for f in self.forecasts if int(f.instance_id) in kept_ids])


@dataclass
class CameraView:
    """One camera image with its projection. cam_from_ref [4, 4]: p_cam = T @ p_ref, camera axes are the optical
    frame (x right, y down, z forward); intrinsics [3, 3] for this image's pixel grid."""

    name: str
    image: np.ndarray  # [H, W, 3] uint8 BGR
    intrinsics: np.ndarray
    cam_from_ref: np.ndarray

    def __post_init__(self):
        self.intrinsics = np.asarray(self.intrinsics, dtype=np.float64)
        self.cam_from_ref = np.asarray(self.cam_from_ref, dtype=np.float64)
        if self.intrinsics.shape != (3, 3):
            raise ValueError(f"camera {self.name}: intrinsics must be 3x3, got {self.intrinsics.shape}")
        if self.cam_from_ref.shape != (4, 4):
            raise ValueError(f"camera {self.name}: cam_from_ref must be 4x4, got {self.cam_from_ref.shape}")
        if self.image.ndim != 3 or self.image.shape[2] != 3 or self.image.dtype != np.uint8:
            raise ValueError(f"camera {self.name}: image must be [H, W, 3] uint8, got {self.image.shape} "
                             f"{self.image.dtype}")
