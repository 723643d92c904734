"""This package's output messages -> the renderers' containers. Works on rclpy messages and on rosbags'
deserialised dataclasses alike (same field names), so a live recorder and an offline bag renderer share it.
Nothing here imports rclpy or a message package.
"""
from __future__ import annotations

from typing import Any, Dict, Iterator, List, Tuple

import cv2
import numpy as np

from .scene import DETECTION_CLASSES, MAP_CLASSES, Boxes, FrameOutputs, MapElements, ObjectForecast, Plan


def stamp_ns(header_or_stamp: Any) -> int:
    stamp = getattr(header_or_stamp, "stamp", header_or_stamp)
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def _points(points) -> np.ndarray:
    return np.array([(p.x, p.y, p.z) for p in points], dtype=np.float64).reshape(-1, 3)


def boxes_from_msg(msg) -> Boxes:
    """Detection3DArray -> Boxes."""
    d = msg.detections
    return Boxes(centers=np.array([(x.center.x, x.center.y, x.center.z) for x in d], np.float64).reshape(-1, 3),
                 sizes=np.array([(x.size.x, x.size.y, x.size.z) for x in d], np.float64).reshape(-1, 3),
                 yaws=np.array([x.yaw for x in d], np.float64), labels=np.array([x.label for x in d], np.int64),
                 scores=np.array([x.score for x in d], np.float64),
                 ids=np.array([x.instance_id for x in d], np.uint64))


def map_from_msg(msg) -> MapElements:
    """MapElementArray -> MapElements."""
    e = msg.elements
    return MapElements([_points(x.points) for x in e], np.array([x.label for x in e], np.int64),
                       np.array([x.score for x in e], np.float64))


FORECAST_Z = -1.0  # m, drawing height of forecasts in the lidar frame (about a car's centre; ground is -1.84)


def _xy_points(xy) -> np.ndarray:
    """PredictedPath.xy [x0, y0, x1, y1, ...] -> [T, 3] at FORECAST_Z (the message carries no height)."""
    pts = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    return np.concatenate([pts, np.full((len(pts), 1), FORECAST_Z)], axis=1)


def forecasts_from_msg(msg) -> List[ObjectForecast]:
    """MotionForecastArray -> one ObjectForecast per object (modes with differing lengths are cut to the shortest)."""
    out = []
    for f in msg.forecasts:
        paths = [_xy_points(p.xy) for p in f.paths]
        steps = min((len(p) for p in paths), default=0)
        out.append(ObjectForecast(int(f.instance_id), int(f.label),
                                  np.stack([p[:steps] for p in paths]) if paths else np.zeros((0, 0, 3)),
                                  np.array([p.confidence for p in f.paths], np.float64)))
    return out


def plan_from_msg(msg) -> Plan:
    """EgoPlan -> Plan."""
    traj = _points(msg.trajectory)
    cands = [_points(c.points) for c in msg.candidates]
    steps = min((len(c) for c in cands), default=len(traj))
    return Plan(traj, np.stack([c[:steps] for c in cands]) if cands else np.zeros((0, steps, 3)),
                np.array([c.score for c in msg.candidates], np.float64),
                np.array([c.command for c in msg.candidates], np.int64), int(msg.command))


def info_lines(frame_info) -> Dict[str, str]:
    """The FrameInfo fields worth a line in the rendered header."""
    status_names = {0: "ok", 1: "reused", 2: "masked"}
    statuses = [status_names.get(int(s), str(s)) for s in frame_info.camera_status]
    cams = ", ".join(f"{statuses.count(s)} {s}" for s in ("ok", "reused", "masked") if statuses.count(s))
    lines = {"latency": f"model {frame_info.model_latency:.2f} s, total {frame_info.total_latency:.2f} s, "
                        f"age {frame_info.result_age:.2f} s",
             "cameras": f"{cams or 'none'}, skew {frame_info.max_camera_skew * 1e3:.0f} ms",
             "command": f"{int(frame_info.command)}{' (stale)' if frame_info.command_stale else ''}"}
    if frame_info.temporal_reset:
        lines["temporal reset"] = frame_info.reset_reason or "yes"
    return lines


def frame_from_messages(detections=None, map_elements=None, forecasts=None, plan=None,
                        frame_info=None) -> FrameOutputs:
    """One frame's messages (any may be None; at least one given) -> FrameOutputs."""
    present = [m for m in (detections, map_elements, forecasts, plan, frame_info) if m is not None]
    if not present:
        raise ValueError("frame_from_messages needs at least one message")
    header = present[0].header
    frame = FrameOutputs(stamp_ns=stamp_ns(header), frame_index=int(getattr(present[0], "frame_index", 0)),
                         frame_id=header.frame_id)
    if detections is not None:
        frame.boxes = boxes_from_msg(detections)
        frame.class_names = tuple(detections.class_names) or DETECTION_CLASSES
    if map_elements is not None:
        frame.map = map_from_msg(map_elements)
        frame.map_class_names = tuple(map_elements.class_names) or MAP_CLASSES
    if forecasts is not None:
        frame.forecasts = forecasts_from_msg(forecasts)
    if plan is not None:
        frame.plan = plan_from_msg(plan)
    if frame_info is not None:
        frame.info = info_lines(frame_info)
        frame.model = str(getattr(frame_info, "model", ""))  # absent in bags recorded before the field existed
        frame.random_weights = bool(getattr(frame_info, "random_weights", False))
    return frame


def intrinsics_from_camera_info(info) -> Tuple[np.ndarray, Tuple[int, int]]:
    """CameraInfo -> (K [3, 3], (width, height))."""
    k = np.asarray(info.k, dtype=np.float64).reshape(3, 3)
    if k[2, 2] == 0:
        raise ValueError(f"camera_info of {info.header.frame_id!r} has an all-zero K (uncalibrated camera)")
    return k, (int(info.width), int(info.height))


def transform_matrix(translation, rotation) -> np.ndarray:
    """geometry_msgs Vector3 + Quaternion (x, y, z, w) -> 4x4."""
    x, y, z, w = rotation.x, rotation.y, rotation.z, rotation.w
    n = np.sqrt(x * x + y * y + z * z + w * w)
    if n < 1e-12:
        raise ValueError("transform has a zero quaternion")
    x, y, z, w = x / n, y / n, z / n, w / n
    m = np.eye(4)
    m[:3, :3] = [[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                 [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                 [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]]
    m[:3, 3] = (translation.x, translation.y, translation.z)
    return m


def transforms_from_tf(msg) -> Iterator[Tuple[str, str, int, np.ndarray]]:
    """TFMessage -> (parent, child, stamp_ns, T_parent_from_child) per transform."""
    for t in msg.transforms:
        yield (t.header.frame_id.lstrip("/"), t.child_frame_id.lstrip("/"), stamp_ns(t.header),
               transform_matrix(t.transform.translation, t.transform.rotation))


class ImageDecodeError(ValueError):
    """An image message that cannot be turned into a BGR uint8 array."""


def message_bytes(msg) -> np.ndarray:
    """A CompressedImage's payload as uint8 [n]: ``msg.data`` may be bytes, a list (rclpy) or a uint8 array
    (rosbags)."""
    data = msg.data
    return data if isinstance(data, np.ndarray) else np.frombuffer(bytes(data), np.uint8)


def decode_compressed(msg) -> np.ndarray:
    """sensor_msgs/CompressedImage (JPEG/PNG) -> BGR uint8 [H, W, 3]; raises ImageDecodeError if it does not
    decode."""
    buf = message_bytes(msg)
    image = cv2.imdecode(buf.astype(np.uint8, copy=False), cv2.IMREAD_COLOR) if buf.size else None
    if image is None:
        raise ImageDecodeError(f"cannot decode {buf.size} bytes of format {msg.format!r} ({msg.header.frame_id})")
    return image
