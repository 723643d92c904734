"""The synthetic 3-D world behind the generated nuScenes dataset: road, ego motion, objects, sensors.

Global frame: the nuScenes map frame (x east, y north, z up, ground at z = 0). The road is parameterised by
arc length ``s`` along its centreline and signed lateral offset ``d`` (left positive). Traffic drives on the
right: the ego direction's lanes have d < 0.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np
from numpy.typing import NDArray

from sparsedrive_ros.geometry import transform_from_quat, yaw_to_quat

F64 = NDArray[np.float64]

LANE_WIDTH = 3.5
LANES_PER_DIRECTION = 2
ROAD_HALF_WIDTH = LANE_WIDTH * LANES_PER_DIRECTION  # 7 m
SIDEWALK_WIDTH = 3.0
EGO_LANE_D = -LANE_WIDTH / 2
CAMERA_PERIOD_US = 1e6 / 12.0
LIDAR_PERIOD_US = 50_000
SAMPLE_PERIOD_US = 500_000

# Real nuScenes sensor calibration (one vehicle of the public set): translation [m], rotation [w, x, y, z]
# sensor -> ego, intrinsic K for 1600x900; and camera exposure offsets [ms] to the lidar key frame.
CAMERA_CALIBRATION: dict[str, tuple[tuple[float, ...], tuple[float, ...], tuple[float, float, float], float]] = {
    # channel: (translation, rotation, (f, cx, cy), offset_ms)
    "CAM_FRONT": ((1.70079118954, 0.0159456324149, 1.51095763913),
                  (0.4998015430569128, -0.5030316162024876, 0.4997798114386805, -0.49737083824542755),
                  (1266.417203046554, 816.2670197447984, 491.50706579294757), -35.5),
    "CAM_FRONT_RIGHT": ((1.5508477543, -0.493404796419, 1.49574800619),
                        (0.2060347966337182, -0.2026940577919598, 0.6824507824531167, -0.6713610884174485),
                        (1260.8474446004698, 807.968244525554, 495.3344268742088), -27.6),
    "CAM_FRONT_LEFT": ((1.52387798135, 0.494631336551, 1.50932822144),
                       (0.6757265034669446, -0.6736266522251881, 0.21214015046209478, -0.21122827103904068),
                       (1272.5979470598488, 826.6154927353808, 479.75165386361925), -43.1),
    "CAM_BACK": ((0.0283260309358, 0.00345136761476, 1.57910346144),
                 (0.5037872666382278, -0.49740249788611096, -0.4941850223835201, 0.5045496097725578),
                 (809.2209905677063, 829.2196003259838, 481.77842384512485), -10.4),
    "CAM_BACK_LEFT": ((1.03569100218, 0.484795032713, 1.59097014818),
                      (0.6924185592174665, -0.7031619420114925, -0.11648342771943819, 0.11203317912370753),
                      (1256.7414812095406, 792.1125740759628, 492.7757465151356), -0.5),
    "CAM_BACK_RIGHT": ((1.0148780988, -0.480568219723, 1.56239545128),
                       (0.12280980120078765, -0.132400842670559, -0.7004305821388234, 0.690496031265798),
                       (1259.5137405846733, 807.2529053838625, 501.19579884916527), -20.1),
}
LIDAR_CALIBRATION = ((0.943713, 0.0, 1.84023),
                     (0.7077955119163518, -0.006492242056004365, 0.010646214713995808, -0.7063073142877817))


class RoadShape(str, Enum):
    STRAIGHT = "straight"
    LEFT = "left"
    RIGHT = "right"


class Road:
    """Centreline: straight, then (for curves) a constant-curvature arc, then straight again."""

    def __init__(self, origin: tuple[float, float], heading: float, shape: RoadShape, radius: float,
                 turn_start: float, turn_angle: float = np.pi / 2, s_min: float = -150.0, s_max: float = 300.0,
                 step: float = 0.05) -> None:
        if radius <= ROAD_HALF_WIDTH + SIDEWALK_WIDTH:
            raise ValueError(f"curve radius {radius} m must exceed the road half width + sidewalk "
                             f"({ROAD_HALF_WIDTH + SIDEWALK_WIDTH} m)")
        self.shape = shape
        sign = {RoadShape.STRAIGHT: 0.0, RoadShape.LEFT: 1.0, RoadShape.RIGHT: -1.0}[shape]
        self.s = np.arange(s_min, s_max + step, step)
        turn_len = turn_angle * radius
        kappa = np.where((self.s >= turn_start) & (self.s < turn_start + turn_len), sign / radius, 0.0)
        # Integrate from s = 0 in both directions so that s = 0 sits exactly at ``origin``.
        i0 = int(np.argmin(np.abs(self.s)))
        theta = np.zeros_like(self.s)
        theta[i0 + 1:] = np.cumsum(kappa[i0:-1]) * step
        theta[:i0] = -np.cumsum(kappa[i0 - 1::-1][:i0])[::-1] * step if i0 > 0 else theta[:i0]
        self.theta = theta + heading
        dx, dy = np.cos(self.theta) * step, np.sin(self.theta) * step
        x, y = np.zeros_like(self.s), np.zeros_like(self.s)
        x[i0 + 1:], y[i0 + 1:] = np.cumsum(dx[i0:-1]), np.cumsum(dy[i0:-1])
        if i0 > 0:
            x[:i0] = -np.cumsum(dx[i0 - 1::-1][:i0])[::-1]
            y[:i0] = -np.cumsum(dy[i0 - 1::-1][:i0])[::-1]
        self.x, self.y = x + origin[0], y + origin[1]
        self.kappa = kappa

    def _check(self, s: F64) -> None:
        if np.any(s < self.s[0]) or np.any(s > self.s[-1]):
            raise ValueError(f"arc length outside the road [{self.s[0]}, {self.s[-1]}]: {np.min(s)}..{np.max(s)}")

    def heading(self, s: F64 | float) -> F64:
        s_arr = np.asarray(s, dtype=np.float64)
        self._check(s_arr)
        return np.interp(s_arr, self.s, self.theta)

    def point(self, s: F64 | float, d: F64 | float) -> F64:
        """(s, d) -> [..., 2] global xy."""
        s_arr = np.asarray(s, dtype=np.float64)
        self._check(s_arr)
        th = np.interp(s_arr, self.s, self.theta)
        cx, cy = np.interp(s_arr, self.s, self.x), np.interp(s_arr, self.s, self.y)
        d_arr = np.asarray(d, dtype=np.float64)
        return np.stack([cx - d_arr * np.sin(th), cy + d_arr * np.cos(th)], axis=-1)


@dataclass(frozen=True)
class ObjectSpec:
    """One object of the world: moves along the road at constant arc-length speed (0 = parked)."""

    name: str  # detection class
    category: str  # nuScenes category
    size_wlh: tuple[float, float, float]
    s0: float  # arc length at the scene's t0
    d: float  # lateral offset
    speed: float  # ds/dt, m/s; negative drives against increasing s
    yaw_offset: float  # added to the road heading (pi: facing against s; pi/2: across)
    color_bgr: tuple[int, int, int]
    attribute: str | None


class World:
    """Road, ego and objects of one scene; all poses are functions of time (Unix microseconds)."""

    def __init__(self, road: Road, objects: list[ObjectSpec], ego_speed: float, t0_us: int) -> None:
        self.road, self.objects, self.ego_speed, self.t0_us = road, objects, ego_speed, t0_us

    def ego_s(self, t_us: int | float) -> float:
        return self.ego_speed * (t_us - self.t0_us) / 1e6

    def ego_to_global(self, t_us: int | float) -> F64:
        """[4, 4] base_link -> global (z = 0, 2-D localisation like nuScenes)."""
        s = self.ego_s(t_us)
        xy = self.road.point(s, EGO_LANE_D)
        return transform_from_quat(yaw_to_quat(float(self.road.heading(s))), [xy[0], xy[1], 0.0])

    def ego_pose_record(self, t_us: int | float) -> tuple[list[float], list[float]]:
        """(rotation [w, x, y, z], translation [3]) of base_link in the global frame."""
        s = self.ego_s(t_us)
        xy = self.road.point(s, EGO_LANE_D)
        return yaw_to_quat(float(self.road.heading(s))).tolist(), [float(xy[0]), float(xy[1]), 0.0]

    def object_pose(self, obj: ObjectSpec, t_us: int | float) -> tuple[F64, float]:
        """([3] global box centre, yaw) at time t."""
        s = obj.s0 + obj.speed * (t_us - self.t0_us) / 1e6
        xy = self.road.point(s, obj.d)
        yaw = float(self.road.heading(s)) + obj.yaw_offset
        return np.array([xy[0], xy[1], obj.size_wlh[2] / 2.0]), yaw


BOX_FACES = np.array([[0, 1, 2, 3], [4, 5, 6, 7], [0, 1, 5, 4], [1, 2, 6, 5], [2, 3, 7, 6], [3, 0, 4, 7]])
