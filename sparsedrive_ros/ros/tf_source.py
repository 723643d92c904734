"""TF look-ups for the node: tf2_ros where it is installed, the project's own buffer where it is not.

Both expose the same two calls with integer-nanosecond stamps and 4x4 numpy results (p_target = T @ p_source),
and raise TransformError on failure.
"""
from __future__ import annotations

import numpy as np
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.time import Time

from sparsedrive_ros.ros.conversions import stamp_to_ns, transform_to_matrix
from sparsedrive_ros.runtime.tf_buffer import TransformBuffer, TransformError

try:
    import tf2_ros  # a real ROS 2 install
except ImportError:  # the PyPI wheel environment has no tf2_ros
    tf2_ros = None

TF_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
TF_STATIC_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST,
                           durability=DurabilityPolicy.TRANSIENT_LOCAL)


class OwnTfSource:
    """Subscribes /tf and /tf_static into a TransformBuffer.

    When /tf stamps step back by more than a second (a looped bag, a restarted player) a fresh buffer starts and
    the previous one is kept as a fall-back for look-ups of frames still in flight from before the step."""

    name = "sparsedrive_ros.runtime.tf_buffer"

    def __init__(self, node: Node, cache_seconds: float = 30.0):
        from tf2_msgs.msg import TFMessage  # the real package or the project's wire-compatible stand-in

        self.buffer = TransformBuffer(cache_seconds=cache_seconds)
        self._cache_seconds = cache_seconds
        self._previous: TransformBuffer | None = None
        self._fallback: dict[str, tuple[str, np.ndarray]] = {}
        self._newest_ns = 0
        node.create_subscription(TFMessage, "/tf", lambda m: self._on_tf(m, False), TF_QOS)
        node.create_subscription(TFMessage, "/tf_static", lambda m: self._on_tf(m, True), TF_STATIC_QOS)

    def _on_tf(self, msg, static: bool) -> None:
        for t in msg.transforms:
            ns = stamp_to_ns(t.header.stamp)
            if not static:
                if ns < self._newest_ns - 1_000_000_000:  # time went backwards (bag loop): start over
                    self._previous, fresh = self.buffer, TransformBuffer(cache_seconds=self._cache_seconds)
                    for child, edge in self.buffer._edges.items():  # static transforms carry over
                        if edge.static:
                            fresh.set_transform_tq(edge.parent, child, 0, edge.translations[-1], edge.quaternions[-1],
                                                   static=True)
                    self.buffer = fresh
                    self._newest_ns = 0
                self._newest_ns = max(self._newest_ns, ns)
            try:
                self.buffer.set_transform(t.header.frame_id, t.child_frame_id, ns, transform_to_matrix(t), static)
            except ValueError:
                pass  # a NaN transform is ignored; look-ups that need it fail with a clear TransformError

    def add_fallback_static(self, parent: str, child: str, matrix: np.ndarray) -> None:
        """A static transform from the calibration file: used only while TF has none for `child`."""
        self._fallback[child] = (parent, matrix)
        if child not in self.buffer.frames():
            self.buffer.set_transform(parent, child, 0, matrix, static=True)

    def _try(self, fn_name: str, *args) -> np.ndarray:
        try:
            return getattr(self.buffer, fn_name)(*args)
        except TransformError:
            previous = self._previous
            if previous is None:
                raise
            return getattr(previous, fn_name)(*args)

    def lookup(self, target: str, source: str, stamp_ns: int) -> np.ndarray:
        return self._try("lookup", target, source, stamp_ns)

    def lookup_full(self, target: str, target_ns: int, source: str, source_ns: int, fixed: str) -> np.ndarray:
        return self._try("lookup_full", target, target_ns, source, source_ns, fixed)


class Tf2Source:
    """tf2_ros.Buffer + TransformListener (real ROS 2)."""

    name = "tf2_ros"

    def __init__(self, node: Node, cache_seconds: float = 30.0):
        from rclpy.duration import Duration

        self.buffer = tf2_ros.Buffer(cache_time=Duration(seconds=cache_seconds))
        self._listener = tf2_ros.TransformListener(self.buffer, node, spin_thread=False)

    def add_fallback_static(self, parent: str, child: str, matrix: np.ndarray) -> None:
        """A static transform from the calibration file: used only while TF has none for `child`."""
        if self.buffer.can_transform(parent, child, Time()):
            return
        from geometry_msgs.msg import TransformStamped

        from sparsedrive_ros.runtime.tf_buffer import matrix_to_quat

        t = TransformStamped()
        t.header.frame_id, t.child_frame_id = parent, child
        t.transform.translation.x, t.transform.translation.y, t.transform.translation.z = map(float, matrix[:3, 3])
        q = matrix_to_quat(matrix[:3, :3])
        r = t.transform.rotation
        r.x, r.y, r.z, r.w = map(float, q)
        self.buffer.set_transform_static(t, "calibration_file")

    @staticmethod
    def _time(ns: int) -> Time:
        return Time(nanoseconds=ns)

    def lookup(self, target: str, source: str, stamp_ns: int) -> np.ndarray:
        try:
            return transform_to_matrix(self.buffer.lookup_transform(target, source, self._time(stamp_ns)))
        except tf2_ros.TransformException as exc:
            raise TransformError(str(exc)) from exc

    def lookup_full(self, target: str, target_ns: int, source: str, source_ns: int, fixed: str) -> np.ndarray:
        try:
            t = self.buffer.lookup_transform_full(target, self._time(target_ns), source, self._time(source_ns), fixed)
        except tf2_ros.TransformException as exc:
            raise TransformError(str(exc)) from exc
        return transform_to_matrix(t)


def make_tf_source(node: Node, cache_seconds: float = 30.0):
    return Tf2Source(node, cache_seconds) if tf2_ros is not None else OwnTfSource(node, cache_seconds)
