"""nuScenes tracking metrics (AMOTA, AMOTP, MOTA, IDS, ...) computed by the official devkit in a child process.

Detection mAP/NDS has its own implementation (tested equal to the devkit); tracking does not: its CLEAR-MOT
bookkeeping (motmetrics) over 40 recall thresholds is large, so the devkit's ``TrackingEval`` scores the
submission itself. The devkit is an optional extra (nuscenes-devkit + motmetrics + pandas, installed by
``scripts/setup_devkit.sh``) that pins numpy<2 and is slow to import, so it never enters the caller's process:
this module builds the submission with numpy only, and run as a script
(``python -m sparsedrive_ros.training.metrics.tracking REQUEST.json``) it is the child that runs the devkit.
Without the extra, :func:`evaluate_tracking` returns ``{"skipped": reason}`` instead of raising.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np

from sparsedrive_ros.geometry.transforms import yaw_to_quat

__all__ = [
    "TRACKING_CLASSES", "TRACKING_THRESHOLD", "TRACKING_CONFIG", "TRACKING_METRICS",
    "tracking_keep_count", "tracking_box", "devkit_split", "summarize", "evaluate_tracking",
]

# The 7 classes of the devkit's tracking_nips_2019 config (barrier, traffic_cone, construction_vehicle are not
# tracked; the original drops them from its tracking submission).
TRACKING_CLASSES = ("car", "truck", "bus", "trailer", "pedestrian", "motorcycle", "bicycle")
TRACKING_THRESHOLD = 0.2  # the original's dataset tracking_threshold on the class score
TRACKING_CONFIG = "tracking_nips_2019"
# Devkit summary keys, reported upper-cased. AMOTA/AMOTP/RECALL/MOTAR/MOTA/MOTP/MT/ML/FAF over recall
# thresholds; GT/TP/FP/FN/IDS/FRAG counts and TID/LGD (s) at the best-MOTA threshold.
TRACKING_METRICS = ("amota", "amotp", "recall", "motar", "mota", "motp", "mt", "ml", "faf", "gt", "tp", "fp",
                    "fn", "ids", "frag", "tid", "lgd")
DEVKIT_MODULES = ("nuscenes", "motmetrics", "pandas")
# Annotated predefined devkit splits per dataset version suffix (the devkit asserts this pairing in load_gt).
_SPLITS_OF_VERSION = {"mini": ("mini_val", "mini_train"), "trainval": ("val", "train")}
_META = {"use_camera": True, "use_lidar": False, "use_radar": False, "use_map": False, "use_external": False}


def tracking_keep_count(cls_scores: np.ndarray, threshold: float = TRACKING_THRESHOLD) -> int:
    """How many of the score-sorted detections go into the tracking submission.

    Parity with the original: it compares its class scores, still in top-k order, position-wise against the
    boxes re-sorted by class score x centerness, so it keeps the first M boxes in final order where
    M = #(class score >= threshold), not exactly the boxes whose own class score passes.
    """
    return int((np.asarray(cls_scores) >= threshold).sum())


def tracking_box(sample_token: str, centre: Sequence[float], size_wlh: Sequence[float], yaw: float,
                 velocity: Sequence[float], name: str, score: float, track_id: int | str) -> dict:
    """One box of the nuScenes tracking submission, global frame: centre (m), size (w, l, h) (m), rotation as a
    (w, x, y, z) quaternion of the global yaw, velocity (vx, vy) (m/s)."""
    return {
        "sample_token": sample_token,
        "translation": [float(v) for v in centre],
        "size": [float(v) for v in size_wlh],
        "rotation": [float(v) for v in yaw_to_quat(yaw)],
        "velocity": [float(v) for v in np.nan_to_num(np.asarray(velocity, float)[:2])],
        "tracking_id": str(track_id),
        "tracking_name": name,
        "tracking_score": float(score),
    }


def devkit_split(splits: Mapping[str, Sequence[str]], version: str, scenes: Sequence[str],
                 dataset_scenes: Sequence[str]) -> Optional[str]:
    """The predefined devkit split whose scenes present in the dataset are exactly ``scenes`` (None if none).

    The devkit only evaluates named splits; a dataset with just some of a split's scenes (the synthetic ones)
    still matches, since the devkit keeps only the samples it finds.
    """
    present, wanted = set(dataset_scenes), set(scenes)
    for name in _SPLITS_OF_VERSION.get(version.rsplit("-", 1)[-1], ()):
        if name in splits and set(splits[name]) & present == wanted:
            return name
    return None


def summarize(summary: Mapping) -> dict:
    """The devkit's metrics_summary.json -> our metrics: upper-case headline keys, per-class AMOTA."""
    out: dict = {k.upper(): float(summary[k]) for k in TRACKING_METRICS}
    out["class_AMOTA"] = {k: float(v) for k, v in summary["label_metrics"]["amota"].items()}
    return out


def _missing_modules() -> list[str]:
    # find_spec locates top-level packages without importing them (the devkit stays out of this process).
    return [m for m in DEVKIT_MODULES if importlib.util.find_spec(m) is None]


def evaluate_tracking(results: Mapping[str, list[dict]], dataroot: str | Path, version: str,
                      scenes: Sequence[str], dataset_scenes: Sequence[str], work_dir: Optional[str | Path] = None,
                      timeout: float = 3600.0) -> dict:
    """Score a tracking submission ({sample_token: [tracking_box, ...]}, every sample of ``scenes``) with the
    devkit's TrackingEval (tracking_nips_2019) in a child process.

    -> metrics (see :func:`summarize`) plus ``eval_set``, or ``{"skipped": reason}`` when the optional devkit
    extra is missing, the submission has no box at all, the scenes form no predefined devkit split, or the
    devkit fails.
    """
    missing = _missing_modules()
    if missing:
        return {"skipped": f"optional devkit extra not installed (missing {', '.join(missing)}); "
                           "run scripts/setup_devkit.sh"}
    if not any(results.values()):  # the devkit infers the box type from the first box and fails without one
        return {"skipped": f"no detection of a tracked class passed the tracking threshold "
                           f"(class score >= {TRACKING_THRESHOLD}); the devkit cannot score an empty submission"}
    with tempfile.TemporaryDirectory(prefix="sd_tracking_") as tmp:
        out_dir = Path(work_dir) if work_dir is not None else Path(tmp)
        out_dir.mkdir(parents=True, exist_ok=True)
        result_path = out_dir / "tracking_results.json"
        result_path.write_text(json.dumps({"meta": _META, "results": dict(results)}))
        request = out_dir / "tracking_request.json"
        request.write_text(json.dumps({
            "result_path": str(result_path), "dataroot": str(dataroot), "version": version,
            "scenes": list(scenes), "dataset_scenes": list(dataset_scenes), "output_dir": str(out_dir),
        }))
        try:
            proc = subprocess.run([sys.executable, "-m", __name__, str(request)], capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"skipped": f"devkit tracking evaluation timed out after {timeout:.0f} s"}
        if proc.returncode != 0:
            lines = [text for text in proc.stderr.strip().splitlines() if text.strip()]
            return {"skipped": f"devkit tracking evaluation failed (exit {proc.returncode}): "
                               f"{lines[-1] if lines else 'no message'}"}
        summary = json.loads((out_dir / "metrics_summary.json").read_text())
    res = summarize(summary)
    res["eval_set"] = summary["eval_set"]
    res["config"] = TRACKING_CONFIG
    return res


def _devkit_main(request_path: str) -> int:
    """Child process: run the devkit's TrackingEval for the request and add ``eval_set`` to its summary."""
    req = json.loads(Path(request_path).read_text())
    from nuscenes.eval.common.config import config_factory  # the optional extra, imported only here
    from nuscenes.eval.tracking.evaluate import TrackingEval
    from nuscenes.utils.splits import create_splits_scenes

    eval_set = devkit_split(create_splits_scenes(), req["version"], req["scenes"], req["dataset_scenes"])
    if eval_set is None:
        print(f"scenes {sorted(req['scenes'])} are not a predefined devkit split of {req['version']}",
              file=sys.stderr)
        return 3
    evaluation = TrackingEval(config_factory(TRACKING_CONFIG), req["result_path"], eval_set, req["output_dir"],
                              req["version"], req["dataroot"], verbose=False)
    summary = evaluation.main(render_curves=False)
    summary["eval_set"] = eval_set
    (Path(req["output_dir"]) / "metrics_summary.json").write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(_devkit_main(sys.argv[1]))
