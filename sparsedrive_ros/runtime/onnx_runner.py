"""Run an exported model (tools/export_onnx.py) with onnxruntime, carrying the temporal state between frames.

>>> stream = OnnxStream("work_dirs/onnx")          # image_encoder.onnx + heads_step.onnx + empty_state.npz
>>> out = stream.step(images, projection_mat, image_wh, timestamp, T_global, T_global_inv, command)
>>> out["plan_final"]                              # [1, 6, 2] lidar frame, as SparseDriveStream

Inputs are numpy arrays (float32; timestamp and poses float64; command int64 index [B] or one-hot [B, 3]).
``reset()`` returns to the empty state (a new scene, a time jump). An export with ``--float32-time`` takes the
same calls: the stream keeps the previous stamp and pose in float64 and feeds the graph their differences.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import onnxruntime as ort

__all__ = ["OnnxStream"]


class OnnxStream:
    def __init__(self, folder: Union[str, Path], providers: Sequence[str] = ("CPUExecutionProvider",),
                 threads: int = 0) -> None:
        folder = Path(folder)
        self.manifest = json.loads((folder / "manifest.json").read_text())
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.encoder = ort.InferenceSession(str(folder / "image_encoder.onnx"), options, providers=list(providers))
        self.heads_session = ort.InferenceSession(str(folder / "heads_step.onnx"), options,
                                                  providers=list(providers))
        with np.load(folder / "empty_state.npz") as data:
            self.empty = {k: data[k] for k in data.files}
        self.output_names = [o.name for o in self.heads_session.get_outputs()]
        self.relative_time = bool(self.manifest.get("relative_time", False))
        self.state: Dict[str, np.ndarray] = dict(self.empty)
        self._previous: Optional[tuple] = None  # (timestamp, T_global) float64, --float32-time exports only

    def reset(self) -> None:
        self.state = dict(self.empty)
        self._previous = None

    def encode(self, images: np.ndarray) -> List[np.ndarray]:
        return self.encoder.run(None, {"images": np.ascontiguousarray(images, dtype=np.float32)})

    def heads(self, levels: Sequence[np.ndarray], projection_mat: np.ndarray, image_wh: np.ndarray,
              timestamp: np.ndarray, T_global: np.ndarray, T_global_inv: np.ndarray,
              command: np.ndarray) -> Dict[str, np.ndarray]:
        """One heads step; updates the carried state and returns the decoded outputs by name."""
        command = np.asarray(command)
        if command.ndim == 2:  # one-hot [B, 3], as the original's gt_ego_fut_cmd: argmax, like command_index
            command = command.argmax(axis=-1)
        feed = {f"feature_{i}": level for i, level in enumerate(levels)}
        feed.update(projection_mat=np.asarray(projection_mat, np.float32), image_wh=np.asarray(image_wh, np.float32),
                    command=command.astype(np.int64))
        timestamp, T_global = np.asarray(timestamp, np.float64), np.asarray(T_global, np.float64)
        T_global_inv = np.asarray(T_global_inv, np.float64)
        if self.relative_time:
            if self._previous is None:  # first frame: unused by the graph (history is False)
                dt, T_prev2cur = np.zeros_like(timestamp), np.broadcast_to(np.eye(4), T_global.shape)
            else:  # the differences in float64, as the float64 graph computes them
                dt, T_prev2cur = timestamp - self._previous[0], T_global_inv @ self._previous[1]
            feed.update(dt=dt.astype(np.float32), T_prev2cur=np.ascontiguousarray(T_prev2cur, dtype=np.float32))
            self._previous = (timestamp, T_global)
        else:
            feed.update(timestamp=timestamp, T_global=T_global, T_global_inv=T_global_inv)
        feed.update(self.state)
        values = self.heads_session.run(None, feed)
        outputs = dict(zip(self.output_names, values))
        self.state = {"state_" + k[len("next_state_"):]: v for k, v in outputs.items()
                      if k.startswith("next_state_")}
        return {k: v for k, v in outputs.items() if not k.startswith("next_state_")}

    def step(self, images: np.ndarray, projection_mat: np.ndarray, image_wh: np.ndarray, timestamp: np.ndarray,
             T_global: np.ndarray, T_global_inv: np.ndarray, command: np.ndarray) -> Dict[str, np.ndarray]:
        return self.heads(self.encode(images), projection_mat, image_wh, timestamp, T_global, T_global_inv, command)
