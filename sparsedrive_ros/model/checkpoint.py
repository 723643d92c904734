"""Safe checkpoint loading, key/shape checking and summaries for SparseDrive weights.

Accepted inputs: an mmcv checkpoint (a dict with ``state_dict`` and ``meta``, maybe ``optimizer``), a plain
state dict saved with ``torch.save``, or a ``.safetensors`` file. Pickle-based files are read with
``torch.load(weights_only=True)``: tensors, containers, primitive types and numpy arrays/scalars only, so a crafted
file cannot run code.
"""

from __future__ import annotations

import importlib
import json
import pickle
import struct
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence, Union

import torch
from torch import Tensor, nn

__all__ = [
    "CheckpointLoadError",
    "CheckpointMismatchError",
    "CheckpointSummary",
    "KeySpec",
    "check_state_dict",
    "detect_stage",
    "load_checkpoint",
    "read_key_list",
    "save_safetensors",
    "summarize_state_dict",
]

MOTION_PLAN_PREFIX = "head.motion_plan_head."
_WRAPPER_PREFIX = "module."  # added by (Distributed)DataParallel
_CONTAINER_KEYS = ("state_dict", "model")  # mmcv / common training-script layouts


class CheckpointLoadError(ValueError):
    """The file cannot be read as a checkpoint (unsafe pickle content, bad layout, non-tensor entries)."""


class CheckpointMismatchError(ValueError):
    """A state dict does not match the expected keys/shapes; the lists are kept as attributes."""

    def __init__(self, missing: list[str], unexpected: list[str],
                 shape_conflicts: list[tuple[str, tuple[int, ...], tuple[int, ...]]], max_listed: int = 10):
        self.missing = missing
        self.unexpected = unexpected
        self.shape_conflicts = shape_conflicts
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s): {_listing(missing, max_listed)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s): {_listing(unexpected, max_listed)}")
        if shape_conflicts:
            described = [
                f"{name} (checkpoint {list(got)} vs expected {list(want)})" for name, got, want in shape_conflicts
            ]
            parts.append(f"{len(shape_conflicts)} shape conflict(s): {_listing(described, max_listed)}")
        super().__init__("state dict does not match the model: " + "; ".join(parts))


def _listing(items: Sequence[str], max_listed: int) -> str:
    shown = ", ".join(items[:max_listed])
    return shown if len(items) <= max_listed else f"{shown}, ... ({len(items) - max_listed} more)"


class KeySpec(NamedTuple):
    """One line of a key list file: the tensor's shape and dtype name."""

    shape: tuple[int, ...]
    dtype: str


# --------------------------------------------------------------------------------------------------- loading


def _is_safetensors(path: Path) -> bool:
    """safetensors files start with a little-endian u64 header length followed by a JSON object."""
    with path.open("rb") as handle:
        head = handle.read(9)
    if len(head) < 9:
        return False
    (header_len,) = struct.unpack("<Q", head[:8])
    return head[8:9] == b"{" and 0 < header_len < path.stat().st_size


def _numpy_safe_globals() -> list[Any]:
    """numpy's array/scalar/dtype rebuilders, under the names numpy 1.x and 2.x pickles use.

    mmcv/mmdet checkpoints may keep numpy values in ``meta`` (e.g. the seed); these rebuilders only make arrays
    and scalars from bytes, and any class an array refers to must itself pass the weights-only allowlist.
    """
    import numpy as np

    try:
        multiarray = importlib.import_module("numpy._core.multiarray")
    except ImportError:  # numpy < 2
        multiarray = importlib.import_module("numpy.core.multiarray")
    entries: list[Any] = [(np.ndarray, "numpy.ndarray"), (np.dtype, "numpy.dtype")]
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        entries += [(multiarray._reconstruct, f"{module}._reconstruct"), (multiarray.scalar, f"{module}.scalar")]
    dtypes = getattr(np, "dtypes", None)  # numpy >= 1.25 pickles dtypes as numpy.dtypes.XDType
    if dtypes is not None:
        entries += [(getattr(dtypes, name), f"numpy.dtypes.{name}") for name in dir(dtypes) if name.endswith("DType")]
    return entries


def _load_pickled(path: Path) -> Any:
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's message names the refused global (e.g. "GLOBAL posix.system was not an allowed global").
        raise CheckpointLoadError(
            f"refusing to load {path}: it contains pickled objects other than tensors and plain containers, "
            f"and arbitrary objects are never unpickled. Details: {err}"
        ) from None
    except RuntimeError as err:
        raise CheckpointLoadError(f"cannot read {path} as a torch checkpoint: {err}") from None


def _extract_state_dict(obj: Any, path: Path) -> Mapping[str, Any]:
    if not isinstance(obj, Mapping):
        raise CheckpointLoadError(f"{path} holds a {type(obj).__name__}, expected a dict of tensors")
    for key in _CONTAINER_KEYS:
        inner = obj.get(key)
        if isinstance(inner, Mapping):
            return inner
    return obj


def _strip_wrapper_prefix(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {
        name[len(_WRAPPER_PREFIX) :] if name.startswith(_WRAPPER_PREFIX) else name: t for name, t in state_dict.items()
    }


def load_checkpoint(path: Union[str, Path]) -> dict[str, Tensor]:
    """Read SparseDrive weights from ``path`` onto the CPU.

    Args:
        path: ``.pth``/``.pt`` (mmcv dict with ``state_dict``/``meta``/``optimizer``, a dict with ``model``, or a
            plain state dict) or ``.safetensors`` (detected from the file content, not the suffix).

    Returns:
        ``{name: tensor}`` with any DataParallel ``module.`` prefix removed.

    Raises:
        FileNotFoundError: no such file.
        CheckpointLoadError: unsafe pickle content (never executed), unreadable file, non-tensor entries.
    """
    return load_checkpoint_with_meta(path)[0]


def load_checkpoint_with_meta(path: Union[str, Path]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """:func:`load_checkpoint` and, from the same single read, the file's metadata: a safetensors file's header
    metadata (``str -> str``) or a torch checkpoint's ``meta`` dict (``{}`` when it has none)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    meta: Mapping[str, Any]
    if _is_safetensors(path):
        from safetensors import safe_open

        with safe_open(str(path), framework="pt", device="cpu") as handle:
            meta = handle.metadata() or {}
            state_dict: Mapping[str, Any] = {name: handle.get_tensor(name) for name in handle.keys()}
    else:
        obj = _load_pickled(path)
        state_dict = _extract_state_dict(obj, path)
        found = obj.get("meta") if isinstance(obj, Mapping) else None
        meta = found if isinstance(found, Mapping) else {}
    bad = [name for name, value in state_dict.items() if not isinstance(value, Tensor)]
    if bad:
        raise CheckpointLoadError(f"{path}: entries that are not tensors: {_listing(bad, 10)}")
    return _strip_wrapper_prefix(state_dict), dict(meta)


def save_safetensors(
    state_dict: Mapping[str, Tensor], path: Union[str, Path], metadata: Mapping[str, str] | None = None
) -> None:
    """Write ``state_dict`` as safetensors (tensors are made contiguous and unshared first)."""
    from safetensors.torch import save_file

    tensors = {name: t.detach().to("cpu").contiguous().clone() for name, t in state_dict.items()}
    save_file(tensors, str(path), metadata=dict(metadata or {}))


# --------------------------------------------------------------------------------------------------- checking


def read_key_list(path: Union[str, Path]) -> dict[str, KeySpec]:
    """Parse a key list file (``name<TAB>shape<TAB>dtype`` per line, shape like ``(64, 3, 7, 7)`` or ``()``)."""
    specs: dict[str, KeySpec] = {}
    for line_no, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 3:
            raise ValueError(f"{path}:{line_no}: expected name<TAB>shape<TAB>dtype, got {line!r}")
        name, shape_text, dtype = fields
        dims = shape_text.strip().strip("()").replace(" ", "")
        shape = tuple(int(d) for d in dims.split(",") if d)
        specs[name] = KeySpec(shape, dtype)
    return specs


ExpectedShapes = Union[nn.Module, Mapping[str, Any]]


def _expected_shapes(expected: ExpectedShapes) -> dict[str, tuple[int, ...]]:
    if isinstance(expected, nn.Module):
        expected = expected.state_dict()
    # Values may be tensors, KeySpec tuples or plain shape tuples.
    return {name: tuple(value.shape) if hasattr(value, "shape") else tuple(value) for name, value in expected.items()}


def check_state_dict(state_dict: Mapping[str, Tensor], expected: ExpectedShapes, *, max_listed: int = 10) -> None:
    """Raise :class:`CheckpointMismatchError` unless ``state_dict`` has exactly the expected keys and shapes.

    Args:
        state_dict: ``{name: tensor}`` (meta tensors are fine: only shapes are read).
        expected: a module (its ``state_dict()``), or ``{name: shape}`` / ``{name: KeySpec}`` / ``{name: tensor}``.
        max_listed: names shown per category in the message; the counts are always complete.
    """
    want = _expected_shapes(expected)
    missing = sorted(name for name in want if name not in state_dict)
    unexpected = sorted(name for name in state_dict if name not in want)
    conflicts = sorted(
        (name, tuple(t.shape), want[name])
        for name, t in state_dict.items()
        if name in want and tuple(t.shape) != want[name]
    )
    if missing or unexpected or conflicts:
        raise CheckpointMismatchError(missing, unexpected, conflicts, max_listed)


# --------------------------------------------------------------------------------------------------- summary


def detect_stage(state_dict: Mapping[str, Tensor]) -> int:
    """2 if the motion/planning head is present (stage-2 checkpoint), else 1."""
    return 2 if any(name.startswith(MOTION_PLAN_PREFIX) for name in state_dict) else 1


def _module_of(name: str) -> str:
    parts = name.split(".")
    return ".".join(parts[:2]) if parts[0] == "head" and len(parts) > 2 else parts[0]


@dataclass
class CheckpointSummary:
    num_tensors: int
    total_numel: int
    stage: int
    per_module: dict[str, tuple[int, int]] = field(default_factory=dict)  # module -> (tensors, numbers)
    fix_scale: dict[str, list] = field(default_factory=dict)  # key -> values (nested lists)

    def format(self) -> str:
        lines = [
            f"tensors: {self.num_tensors}",
            f"total numbers (params + buffers): {self.total_numel:,}",
            f"detected stage: {self.stage}" + (" (head.motion_plan_head.* present)" if self.stage == 2 else ""),
        ]
        lines += [
            f"  {module:<28} {count:>5} tensors {numel:>13,} numbers"
            for module, (count, numel) in self.per_module.items()
        ]
        distinct: dict[str, list[str]] = defaultdict(list)
        for name, values in self.fix_scale.items():
            distinct[json.dumps(_rounded(values))].append(name)
        for text, names in distinct.items():
            lines.append(f"fix_scale {_listing(names, 2)} = {text}")
        return "\n".join(lines)


def _rounded(values: Any, digits: int = 4) -> Any:
    return [_rounded(v, digits) for v in values] if isinstance(values, list) else round(values, digits)


def summarize_state_dict(state_dict: Mapping[str, Tensor]) -> CheckpointSummary:
    per_module: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for name, tensor in state_dict.items():
        entry = per_module[_module_of(name)]
        entry[0] += 1
        entry[1] += tensor.numel()
    fix_scale = {
        name: t.tolist() for name, t in state_dict.items() if name.endswith("fix_scale") and t.device.type != "meta"
    }
    return CheckpointSummary(
        num_tensors=len(state_dict),
        total_numel=sum(t.numel() for t in state_dict.values()),
        stage=detect_stage(state_dict),
        per_module={module: (count, numel) for module, (count, numel) in per_module.items()},
        fix_scale=fix_scale,
    )
