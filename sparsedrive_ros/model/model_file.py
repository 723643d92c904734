"""Which network a weights file needs, and the bundled demo model.

A *checkpoint spec* is what a user passes as ``checkpoint`` (node parameter, launch argument, tool option):

* ``""`` (nothing given): the bundled demo model, ``sparsedrive_ros/assets/demo_model.safetensors``, a small
  network trained only on the project's synthetic world (``scripts/train_demo_model.sh``). It is meant to show
  that the stack works end to end, not to drive on real roads.
* ``"random"``: the official architecture with seeded random weights (for timing and plumbing checks).
* a file path: an official ``.pth`` (mmcv), a plain state dict, a training checkpoint of this project, or a
  ``.safetensors`` file. When the file carries a model configuration (``meta['config']`` of a training checkpoint,
  or the ``sparsedrive_ros.config`` metadata entry of an exported safetensors file) that architecture is built;
  otherwise the official configuration of the stage found in the keys (an official checkpoint).

The file format of an exported model: safetensors whose metadata holds ``sparsedrive_ros.config`` (JSON of
:class:`~sparsedrive_ros.model.config.SparseDriveConfig`), ``sparsedrive_ros.name``, ``sparsedrive_ros.note`` and
``sparsedrive_ros.step``. Large floating tensors are stored in float16 to keep the file small; small ones
(anchors, biases, norms, the ego anchor) stay float32 because box positions of tens of metres would lose
centimetres in float16. Loading converts everything to the model's float32.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import torch
from torch import Tensor

from .checkpoint import check_state_dict, detect_stage, load_checkpoint_with_meta, save_safetensors
from .config import SparseDriveConfig, model_config_from_dict
from .sparsedrive import SparseDrive, build_sparsedrive, stage_config

__all__ = [
    "DEMO_MODEL_PATH",
    "RANDOM_WEIGHTS",
    "ModelSource",
    "export_model_file",
    "load_model",
    "model_description",
    "resolve_checkpoint",
]

DEMO_MODEL_PATH = Path(__file__).resolve().parents[1] / "assets" / "demo_model.safetensors"
RANDOM_WEIGHTS = "random"
META_CONFIG = "sparsedrive_ros.config"
META_NAME = "sparsedrive_ros.name"
META_NOTE = "sparsedrive_ros.note"
META_STEP = "sparsedrive_ros.step"
# Tensors with fewer elements than this stay float32 in an exported file (see the module docstring).
_HALF_MIN_NUMEL = 4_096


@dataclass(frozen=True)
class ModelSource:
    """Where the weights came from."""

    kind: str  # "demo", "file" or "random"
    path: Optional[Path]
    name: str  # short label for logs and renders, e.g. "demo model (synthetic world only)"
    config: SparseDriveConfig
    step: Optional[int] = None  # training step the file records, if any
    note: str = ""

    @property
    def random(self) -> bool:
        """True when nothing meaningful was loaded (seeded random weights)."""
        return self.kind == "random"

    def describe(self) -> str:
        return self.name if self.path is None else f"{self.name}, {self.path.name}"


def resolve_checkpoint(spec: str) -> tuple[str, Optional[Path]]:
    """``(kind, path)`` for a checkpoint spec; raises FileNotFoundError for a missing file or demo model."""
    spec = spec.strip()
    if spec == RANDOM_WEIGHTS:
        return "random", None
    if spec == "":
        if not DEMO_MODEL_PATH.is_file():
            raise FileNotFoundError(f"the bundled demo model {DEMO_MODEL_PATH} is missing (broken install?); "
                                    f"pass a checkpoint file or checkpoint:={RANDOM_WEIGHTS}")
        return "demo", DEMO_MODEL_PATH
    path = Path(spec).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    return "file", path


def model_description(meta: Mapping[str, Any]) -> dict[str, Any]:
    """``{"config": dict | None, "name", "note", "step"}`` from a file's metadata (load_checkpoint_with_meta).

    An exported file has the ``sparsedrive_ros.*`` entries; a training checkpoint of this project a ``meta`` with
    ``config`` (a dict), ``config_name`` and ``step``; an official one has no model configuration (mmcv keeps the
    config file's text there, a string, which is not one).
    """
    config = meta.get(META_CONFIG)
    config = json.loads(config) if isinstance(config, str) else None
    if config is None and isinstance(meta.get("config"), Mapping):
        config = dict(meta["config"])
    step = meta.get(META_STEP, meta.get("step"))
    return {"config": config, "name": str(meta.get(META_NAME) or meta.get("config_name") or ""),
            "note": str(meta.get(META_NOTE, "")), "step": int(step) if str(step).isdigit() else None}


def load_model(spec: str, stage: int = 2, seed: int = 0) -> tuple[SparseDrive, ModelSource]:
    """Build the network a checkpoint spec needs and load its weights (CPU, float32, eval mode).

    ``stage`` and ``seed`` only matter for ``"random"``. Raises FileNotFoundError, CheckpointLoadError or
    CheckpointMismatchError (naming the keys) for a bad file.
    """
    kind, path = resolve_checkpoint(spec)
    if path is None:
        torch.manual_seed(seed)
        model = build_sparsedrive(stage)
        return model.eval(), ModelSource("random", None, f"RANDOM weights (seed {seed})", model.config)
    state_dict, raw_meta = load_checkpoint_with_meta(path)
    meta = model_description(raw_meta)
    if meta["config"] is not None:
        config = model_config_from_dict(meta["config"])
    else:
        config = stage_config(detect_stage(state_dict))  # an official checkpoint: the original's architecture
    model = build_sparsedrive(config.stage, config)
    check_state_dict(state_dict, model)  # names every missing/unexpected key and shape conflict
    model.load_state_dict(state_dict, strict=True)  # copies into the float32 parameters (float16 storage too)
    if kind == "demo":
        name = "demo model (synthetic world only)"
    else:
        name = meta["name"] or ("official SparseDrive" if meta["config"] is None else "trained model")
    return model.eval(), ModelSource(kind, path, name, config, meta["step"], meta["note"])


def export_model_file(model: SparseDrive, path: Union[str, Path], name: str, note: str = "",
                      step: Optional[int] = None, half: bool = True) -> dict[str, int]:
    """Write ``model`` as a self-describing safetensors file; returns ``{"float16": n, "float32": n}`` tensors."""
    counts = {"float16": 0, "float32": 0}
    tensors: dict[str, Tensor] = {}
    for key, value in model.state_dict().items():
        value = value.detach().cpu()
        if half and value.is_floating_point() and value.numel() >= _HALF_MIN_NUMEL \
                and float(value.abs().max()) < 6.0e4:
            value = value.to(torch.float16)
            counts["float16"] += 1
        elif value.is_floating_point():
            value = value.to(torch.float32)
            counts["float32"] += 1
        tensors[key] = value
    metadata = {META_CONFIG: json.dumps(dataclasses.asdict(model.config)), META_NAME: name, META_NOTE: note}
    if step is not None:
        metadata[META_STEP] = str(int(step))
    save_safetensors(tensors, path, metadata)
    return counts
