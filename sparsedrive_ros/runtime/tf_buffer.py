"""A small ROS-free transform buffer with tf2's conventions, used where tf2_ros is not installed.

An edge (parent, child) stored with matrix T means p_parent = T @ p_child (the pose of `child` in `parent`),
exactly as a geometry_msgs/TransformStamped with header.frame_id = parent and child_frame_id = child.
Frames form a tree (one parent per child). Dynamic edges are interpolated in time (linear translation, slerp
rotation) and never extrapolated; static edges hold for all time. Times are integer nanoseconds.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import numpy as np

from sparsedrive_ros.geometry.transforms import quat_to_rot, rot_to_quat, slerp_quat


class TransformError(LookupError):
    """No transform between two frames at the requested time (unknown frame, no path, or out of range)."""


def quat_to_matrix(q_xyzw: np.ndarray) -> np.ndarray:
    """ROS order (x, y, z, w) -> 3x3 rotation."""
    x, y, z, w = np.asarray(q_xyzw, dtype=np.float64)
    return quat_to_rot([w, x, y, z])


def matrix_to_quat(r: np.ndarray) -> np.ndarray:
    """3x3 rotation -> ROS order (x, y, z, w) with w >= 0."""
    w, x, y, z = rot_to_quat(r)
    return np.array([x, y, z, w])


def _slerp(q0: np.ndarray, q1: np.ndarray, t: float) -> np.ndarray:
    """Slerp in ROS order (x, y, z, w)."""
    return np.roll(slerp_quat(np.roll(q0, 1), np.roll(q1, 1), t), -1)


@dataclass
class _Edge:
    parent: str
    static: bool
    stamps: list[int] = field(default_factory=list)  # sorted, ns
    translations: list[np.ndarray] = field(default_factory=list)  # [3]
    quaternions: list[np.ndarray] = field(default_factory=list)  # [4] x, y, z, w

    def at(self, stamp_ns: int, tolerance_ns: int) -> np.ndarray:
        if self.static:
            return _compose(self.translations[-1], self.quaternions[-1])
        i = bisect.bisect_left(self.stamps, stamp_ns)
        if i < len(self.stamps) and self.stamps[i] == stamp_ns:
            return _compose(self.translations[i], self.quaternions[i])
        if i == 0 or i == len(self.stamps):
            # Outside the buffered interval: only a stamp within `tolerance_ns` of the end is accepted.
            j = 0 if i == 0 else len(self.stamps) - 1
            if abs(self.stamps[j] - stamp_ns) <= tolerance_ns:
                return _compose(self.translations[j], self.quaternions[j])
            raise TransformError(
                f"{self.parent} -> child at {stamp_ns * 1e-9:.3f} s is outside the buffered interval "
                f"[{self.stamps[0] * 1e-9:.3f}, {self.stamps[-1] * 1e-9:.3f}] s")
        t0, t1 = self.stamps[i - 1], self.stamps[i]
        a = (stamp_ns - t0) / (t1 - t0)
        trans = (1 - a) * self.translations[i - 1] + a * self.translations[i]
        return _compose(trans, _slerp(self.quaternions[i - 1], self.quaternions[i], a))


def _compose(translation: np.ndarray, quat_xyzw: np.ndarray) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = quat_to_matrix(quat_xyzw)
    m[:3, 3] = translation
    return m


class TransformBuffer:
    """Transform tree with history. `lookup(target, source, t)` returns T with p_target = T @ p_source."""

    def __init__(self, cache_seconds: float = 30.0, tolerance_seconds: float = 0.0):
        self._edges: dict[str, _Edge] = {}  # keyed by child frame
        self._cache_ns = int(cache_seconds * 1e9)
        self._tolerance_ns = int(tolerance_seconds * 1e9)

    def clear(self, keep_static: bool = True) -> None:
        """Forget dynamic history (e.g. when a bag loops and time goes backwards)."""
        self._edges = {c: e for c, e in self._edges.items() if keep_static and e.static}

    def set_transform(self, parent: str, child: str, stamp_ns: int, matrix: np.ndarray, static: bool = False) -> None:
        m = np.asarray(matrix, dtype=np.float64)
        if m.shape != (4, 4) or not np.all(np.isfinite(m)):
            raise ValueError(f"transform {parent} -> {child} must be a finite 4x4 matrix, got {m!r}")
        self.set_transform_tq(parent, child, stamp_ns, m[:3, 3], matrix_to_quat(m[:3, :3]), static)

    def set_transform_tq(self, parent: str, child: str, stamp_ns: int, translation, quat_xyzw,
                         static: bool = False) -> None:
        t = np.asarray(translation, dtype=np.float64)
        q = np.asarray(quat_xyzw, dtype=np.float64)
        if not (np.all(np.isfinite(t)) and np.all(np.isfinite(q))) or np.linalg.norm(q) < 1e-9:
            raise ValueError(f"transform {parent} -> {child} has a non-finite value or a zero quaternion")
        q = q / np.linalg.norm(q)
        edge = self._edges.get(child)
        if edge is None or edge.parent != parent or edge.static != static:
            edge = self._edges[child] = _Edge(parent=parent, static=static)
        if static:
            edge.stamps, edge.translations, edge.quaternions = [stamp_ns], [t], [q]
            return
        i = bisect.bisect_left(edge.stamps, stamp_ns)
        if i < len(edge.stamps) and edge.stamps[i] == stamp_ns:
            edge.translations[i], edge.quaternions[i] = t, q
        else:
            edge.stamps.insert(i, stamp_ns)
            edge.translations.insert(i, t)
            edge.quaternions.insert(i, q)
        # Bound memory: drop history older than the cache window behind the newest stamp.
        cut = bisect.bisect_left(edge.stamps, edge.stamps[-1] - self._cache_ns)
        if cut:
            del edge.stamps[:cut], edge.translations[:cut], edge.quaternions[:cut]

    def frames(self) -> set[str]:
        return set(self._edges) | {e.parent for e in self._edges.values()}

    def _chain(self, frame: str) -> list[str]:
        chain = [frame]
        while chain[-1] in self._edges:
            chain.append(self._edges[chain[-1]].parent)
            if len(chain) > 64:
                raise TransformError(f"transform tree has a cycle through {frame}")
        return chain

    def _to_ancestor(self, chain: list[str], ancestor: str, stamp_ns: int) -> np.ndarray:
        m = np.eye(4)
        for child in chain[: chain.index(ancestor)]:
            m = self._edges[child].at(stamp_ns, self._tolerance_ns) @ m
        return m

    def lookup(self, target: str, source: str, stamp_ns: int) -> np.ndarray:
        """4x4 T with p_target = T @ p_source, all edges evaluated at `stamp_ns`."""
        if target == source:
            return np.eye(4)
        known = self.frames()
        for f in (target, source):
            if f not in known:
                raise TransformError(f"unknown frame '{f}' (known: {', '.join(sorted(known)) or 'none'})")
        ct, cs = self._chain(target), self._chain(source)
        common = next((f for f in cs if f in ct), None)
        if common is None:
            raise TransformError(f"frames '{target}' and '{source}' are not connected")
        root_from_source = self._to_ancestor(cs, common, stamp_ns)
        root_from_target = self._to_ancestor(ct, common, stamp_ns)
        return np.linalg.solve(root_from_target, root_from_source)

    def lookup_full(self, target: str, target_ns: int, source: str, source_ns: int, fixed: str) -> np.ndarray:
        """tf2's time travel: p_target(target_ns) = T @ p_source(source_ns), through `fixed` (e.g. map)."""
        return self.lookup(target, fixed, target_ns) @ self.lookup(fixed, source, source_ns)
