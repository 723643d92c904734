"""Conversions between ROS messages and the pipeline's plain types. No model code, no node state.

Outputs are built from a PipelineResult (numpy, reference frame) into this package's messages and the standard
adapters (visualization_msgs/MarkerArray, nav_msgs/Path) that RViz shows without plugins.
"""
from __future__ import annotations

import math
from array import array
from typing import Optional

import cv2
import numpy as np
from builtin_interfaces.msg import Duration, Time
from geometry_msgs.msg import Point, PoseStamped, TransformStamped
from nav_msgs.msg import Path
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from sparsedrive_ros.geometry.shapes import box_corners
from sparsedrive_ros.model.config import DET_CLASS_NAMES, MAP_CLASS_NAMES
from sparsedrive_ros.model.preprocess import JpegDecodeError, decode_on_device, jpeg_size
from sparsedrive_ros.msg import (
    Detection3D,
    Detection3DArray,
    EgoPlan,
    MapElement,
    MapElementArray,
    MotionForecast,
    MotionForecastArray,
    PlanCandidate,
    PredictedPath,
)
from sparsedrive_ros.runtime.pipeline import MAP_GROUND_Z, PipelineConfig, PipelineResult
from sparsedrive_ros.runtime.tf_buffer import quat_to_matrix
from sparsedrive_ros.viz.messages import (  # noqa: F401 (the node calls conv.decode_compressed)
    ImageDecodeError,
    decode_compressed,
    message_bytes,
)

TIME_STEP = Duration(sec=0, nanosec=500_000_000)  # 0.5 s between trajectory points (agents and ego)
EGO_Z = -1.84 + 1.56 / 2  # m, ego box centre height in the nuScenes lidar frame (the model's ego anchor)


# ----------------------------------------------------------------------------------------------- inputs


def stamp_to_ns(stamp: Time) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def ns_to_stamp(ns: int) -> Time:
    return Time(sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))


def jpeg_on_device(config: PipelineConfig) -> bool:
    """Whether the pipeline decodes JPEG bytes itself (on its device; PipelineConfig.gpu_decode)."""
    return decode_on_device(config.gpu_decode, config.device)


def compressed_jpeg(msg) -> Optional[tuple[np.ndarray, tuple[int, int]]]:
    """A JPEG sensor_msgs/CompressedImage -> (its bytes, uint8 [n], and (width, height) from the JPEG header),
    without decoding; None for another format (PNG). Raises ImageDecodeError for a corrupt or truncated header."""
    fmt = str(msg.format).lower()
    if "jpeg" not in fmt and "jpg" not in fmt:
        return None
    buf = message_bytes(msg)
    try:
        height, width = jpeg_size(buf)
    except JpegDecodeError as exc:
        raise ImageDecodeError(f"cannot decode {buf.size} bytes of format {msg.format!r} ({msg.header.frame_id}): "
                               f"{exc}") from None
    return buf, (width, height)


def image_input(msg, compressed: bool, jpeg_bytes: bool) -> tuple[Optional[np.ndarray], Optional[np.ndarray],
                                                                    tuple[int, int]]:
    """One camera's image message -> (BGR image or None, JPEG bytes or None, (width, height)). With
    ``jpeg_bytes`` a JPEG CompressedImage is not decoded here (the pipeline decodes it on its device; its header
    is checked); everything else is decoded on the CPU. Raises ImageDecodeError."""
    jpeg = compressed_jpeg(msg) if compressed and jpeg_bytes else None
    if jpeg is not None:
        return None, jpeg[0], jpeg[1]
    image = decode_compressed(msg) if compressed else decode_raw(msg)
    return image, None, (int(image.shape[1]), int(image.shape[0]))


def decode_raw(msg) -> np.ndarray:
    """sensor_msgs/Image (bgr8, rgb8, mono8, bgra8, rgba8) -> BGR uint8 [H, W, 3]."""
    channels = {"bgr8": 3, "rgb8": 3, "mono8": 1, "bgra8": 4, "rgba8": 4}.get(msg.encoding)
    if channels is None:
        raise ImageDecodeError(f"unsupported image encoding {msg.encoding!r} ({msg.header.frame_id})")
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    data = np.frombuffer(bytes(msg.data), np.uint8)
    if step < w * channels or data.size != h * step:
        raise ImageDecodeError(f"image {w}x{h} {msg.encoding} has {data.size} bytes with step {step}")
    image = data.reshape(h, step)[:, : w * channels].reshape(h, w, channels)
    conversion = {"rgb8": cv2.COLOR_RGB2BGR, "mono8": cv2.COLOR_GRAY2BGR, "bgra8": cv2.COLOR_BGRA2BGR,
                  "rgba8": cv2.COLOR_RGBA2BGR}.get(msg.encoding)
    return cv2.cvtColor(image, conversion) if conversion is not None else image


def transform_to_matrix(t: TransformStamped) -> np.ndarray:
    """TransformStamped -> 4x4 T with p_parent = T @ p_child."""
    m = np.eye(4)
    q = t.transform.rotation
    m[:3, :3] = quat_to_matrix([q.x, q.y, q.z, q.w])
    v = t.transform.translation
    m[:3, 3] = [v.x, v.y, v.z]
    return m


# ----------------------------------------------------------------------------------------------- outputs


def _header(result: PipelineResult, frame_id: str) -> Header:
    return Header(stamp=ns_to_stamp(result.stamp_ns), frame_id=frame_id)


def _points(xy: np.ndarray, z) -> list[Point]:
    """[N, 2] x, y and a height (one for all, or [N]) -> geometry_msgs/Point list."""
    zs = np.broadcast_to(np.asarray(z, dtype=np.float64), (len(xy),))
    return [Point(x=float(x), y=float(y), z=float(h)) for (x, y), h in zip(xy, zs)]


def _yaw_quaternion(msg_quat, yaw: float) -> None:
    msg_quat.z, msg_quat.w = math.sin(yaw / 2.0), math.cos(yaw / 2.0)
    msg_quat.x = msg_quat.y = 0.0


def detection_index(result: PipelineResult, score_threshold: float) -> np.ndarray:
    """Indices of the detections to publish (scores are sorted, so this is a prefix)."""
    return np.flatnonzero(result.scores >= score_threshold)


def detections_msg(result: PipelineResult, frame_id: str, frame_index: int, keep: np.ndarray) -> Detection3DArray:
    msg = Detection3DArray(header=_header(result, frame_id), frame_index=frame_index,
                           temporal_reset=result.temporal_reset, class_names=list(DET_CLASS_NAMES))
    for i in keep:
        b = result.boxes[i]
        det = Detection3D(instance_id=int(result.instance_ids[i]), label=int(result.labels[i]),
                          score=float(result.scores[i]), class_score=float(result.cls_scores[i]),
                          class_scores=array("f", result.class_scores[i].astype(np.float32).tobytes()), yaw=float(b[6]),
                          tracked_frames=int(result.tracked_frames[i]) if result.tracked_frames is not None else 1)
        det.center.x, det.center.y, det.center.z = float(b[0]), float(b[1]), float(b[2])
        det.size.x, det.size.y, det.size.z = float(b[3]), float(b[4]), float(b[5])
        det.velocity.x, det.velocity.y, det.velocity.z = float(b[7]), float(b[8]), float(b[9])
        _yaw_quaternion(det.orientation, float(b[6]))
        msg.detections.append(det)
    return msg


def map_msg(result: PipelineResult, frame_id: str, frame_index: int, threshold: float) -> MapElementArray:
    msg = MapElementArray(header=_header(result, frame_id), frame_index=frame_index,
                          temporal_reset=result.temporal_reset, class_names=list(MAP_CLASS_NAMES))
    for i in np.flatnonzero(result.map_scores >= threshold):
        msg.elements.append(MapElement(label=int(result.map_labels[i]), score=float(result.map_scores[i]),
                                       points=_points(result.map_polylines[i], MAP_GROUND_Z)))
    return msg


def forecasts_msg(result: PipelineResult, frame_id: str, frame_index: int, keep: np.ndarray) -> MotionForecastArray:
    msg = MotionForecastArray(header=_header(result, frame_id), frame_index=frame_index,
                              temporal_reset=result.temporal_reset)
    if result.trajs is None:
        return msg
    trajs = result.trajs.astype(np.float32)  # [K, M, T, 2]
    confidence = result.traj_scores / np.maximum(result.traj_scores.sum(axis=1, keepdims=True), 1e-12)  # [K, M]
    for i in keep:
        paths = [PredictedPath(confidence=float(c), xy=array("f", traj.tobytes()))
                 for traj, c in zip(trajs[i], confidence[i])]
        msg.forecasts.append(MotionForecast(instance_id=int(result.instance_ids[i]), label=int(result.labels[i]),
                                            time_step=TIME_STEP, paths=paths))
    return msg


def plan_msg(result: PipelineResult, frame_id: str, frame_index: int, command_stale: bool) -> Optional[EgoPlan]:
    if result.plan_final is None:
        return None
    msg = EgoPlan(header=_header(result, frame_id), frame_index=frame_index, temporal_reset=result.temporal_reset,
                  command=result.plan_command, command_stale=command_stale, time_step=TIME_STEP,
                  trajectory=_points(result.plan_final, EGO_Z), selected_mode=result.plan_mode,
                  predicted_ego_status=result.ego_status.astype(np.float32).tolist())
    for cmd in range(result.plan_trajectories.shape[0]):
        for mode in range(result.plan_trajectories.shape[1]):
            score = float(result.plan_scores[cmd, mode])
            msg.candidates.append(PlanCandidate(
                command=cmd, mode=mode, score=score,
                collision=bool(cmd == result.plan_command and score == 0.0),
                points=_points(result.plan_trajectories[cmd, mode], EGO_Z)))
    return msg


def path_msg(result: PipelineResult, frame_id: str) -> Optional[Path]:
    if result.plan_final is None:
        return None
    header = _header(result, frame_id)
    path = Path(header=header)
    prev = np.zeros(2)
    for xy in result.plan_final:
        pose = PoseStamped(header=header)
        pose.pose.position.x, pose.pose.position.y, pose.pose.position.z = float(xy[0]), float(xy[1]), EGO_Z
        heading = math.atan2(xy[1] - prev[1], xy[0] - prev[0]) if np.linalg.norm(xy - prev) > 1e-6 else math.pi / 2
        _yaw_quaternion(pose.pose.orientation, heading)
        path.poses.append(pose)
        prev = xy
    return path


# Class colours (RGB 0..1): vehicles warm, vulnerable road users cool, static objects grey.
_DET_COLORS = {"car": (1.0, 0.6, 0.0), "truck": (1.0, 0.3, 0.0), "construction_vehicle": (0.8, 0.5, 0.2),
               "bus": (1.0, 0.0, 0.3), "trailer": (0.7, 0.3, 0.3), "barrier": (0.6, 0.6, 0.6),
               "motorcycle": (0.3, 0.8, 1.0), "bicycle": (0.0, 0.6, 1.0), "pedestrian": (0.0, 1.0, 0.4),
               "traffic_cone": (0.9, 0.9, 0.3)}
_MAP_COLORS = {"ped_crossing": (0.2, 0.9, 0.2), "divider": (1.0, 1.0, 1.0), "boundary": (1.0, 0.2, 0.2)}
_BOX_EDGES = [(0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4), (0, 4), (1, 5), (2, 6), (3, 7)]


def _marker(header: Header, ns: str, mid: int, mtype: int, rgb, alpha: float = 1.0, width: float = 0.1) -> Marker:
    m = Marker(header=header, ns=ns, id=mid, type=mtype, action=Marker.ADD)
    m.pose.orientation.w = 1.0
    m.scale.x = width
    m.color = ColorRGBA(r=rgb[0], g=rgb[1], b=rgb[2], a=alpha)
    return m


MAX_MARKED = 50  # RViz shows the strongest detections only (hundreds are unreadable); ~/detections has them all


def markers_msg(result: PipelineResult, frame_id: str, keep: np.ndarray, map_threshold: float) -> MarkerArray:
    """RViz markers for the MAX_MARKED strongest published detections: one LINE_LIST of boxes and one of best-mode
    forecasts per class, a label each; one LINE_LIST per map class; the plan as a LINE_STRIP. Few markers and
    points keep the conversion cheap (building geometry_msgs/Point objects is most of the node's own time)."""
    header = _header(result, frame_id)
    out = MarkerArray()
    out.markers.append(Marker(header=header, action=Marker.DELETEALL))
    keep = keep[:MAX_MARKED]
    labels = result.labels[keep]
    for cls in np.unique(labels):
        name = DET_CLASS_NAMES[int(cls)]
        members = keep[labels == cls]
        corners = np.stack([box_corners(result.boxes[i, :3], result.boxes[i, 3:6], result.boxes[i, 6])
                            for i in members])  # [n, 8, 3]
        edges = corners[:, np.array(_BOX_EDGES).reshape(-1)].reshape(-1, 3)  # [n * 24, 3] segment endpoints
        boxes = _marker(header, f"boxes/{name}", 0, Marker.LINE_LIST, _DET_COLORS[name], width=0.08)
        boxes.points = _points(edges[:, :2], edges[:, 2])
        out.markers.append(boxes)
        if result.trajs is not None:
            best = result.trajs[members, np.argmax(result.traj_scores[members], axis=1)]  # [n, T, 2]
            path = np.concatenate([result.boxes[members, None, :2], best], axis=1)  # from the box centre
            segments = np.stack([path[:, :-1], path[:, 1:]], axis=2).reshape(-1, 2)  # [n * T * 2, 2]
            z = np.repeat(result.boxes[members, 2], best.shape[1] * 2)
            traj = _marker(header, f"forecasts/{name}", 0, Marker.LINE_LIST, _DET_COLORS[name], alpha=0.8, width=0.12)
            traj.points = _points(segments, z)
            out.markers.append(traj)
    for n, i in enumerate(keep):
        label = _marker(header, "ids", n, Marker.TEXT_VIEW_FACING, (1.0, 1.0, 1.0))
        label.pose.position.x, label.pose.position.y = float(result.boxes[i, 0]), float(result.boxes[i, 1])
        label.pose.position.z = float(result.boxes[i, 2] + result.boxes[i, 5] / 2 + 0.5)
        label.scale.z = 0.8
        label.text = f"{DET_CLASS_NAMES[int(result.labels[i])]} #{int(result.instance_ids[i])} {result.scores[i]:.2f}"
        out.markers.append(label)
    shown = np.flatnonzero(result.map_scores >= map_threshold)
    for cls in np.unique(result.map_labels[shown]):
        name = MAP_CLASS_NAMES[int(cls)]
        lines = result.map_polylines[shown[result.map_labels[shown] == cls]]  # [n, S, 2]
        segments = np.stack([lines[:, :-1], lines[:, 1:]], axis=2).reshape(-1, 2)
        marker = _marker(header, f"map/{name}", 0, Marker.LINE_LIST, _MAP_COLORS[name], width=0.15)
        marker.points = _points(segments, MAP_GROUND_Z)
        out.markers.append(marker)
    if result.plan_final is not None:
        plan = _marker(header, "plan", 0, Marker.LINE_STRIP, (0.1, 0.4, 1.0), width=0.4)
        plan.points = _points(np.concatenate([np.zeros((1, 2)), result.plan_final]), MAP_GROUND_Z + 0.05)
        out.markers.append(plan)
    return out
