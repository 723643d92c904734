"""Map expansion (v1.3 layout) of the synthetic world: road segments, lanes, dividers, ped crossings."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np

from sparsedrive_ros.data.synthetic_world import LANE_WIDTH, LANES_PER_DIRECTION, ROAD_HALF_WIDTH, World

PIECE_LENGTH_M = 20.0
NODE_SPACING_M = 2.0
EMPTY_LAYERS = ("road_block", "walkway", "stop_line", "carpark_area", "traffic_light", "lane_connector")


class _MapBuilder:
    def __init__(self, tok: Callable[..., str]) -> None:
        self.tok = tok
        self.n = 0
        self.layers: dict[str, Any] = {name: [] for name in (
            "node", "line", "polygon", "drivable_area", "road_segment", "lane", "ped_crossing", "road_divider",
            "lane_divider", *EMPTY_LAYERS)}
        self.layers["arcline_path_3"] = {}
        self.layers["connectivity"] = {}

    def _token(self, kind: str) -> str:
        self.n += 1
        return self.tok("map", kind, self.n)

    def nodes(self, xy: np.ndarray) -> list[str]:
        tokens = []
        for x, y in xy:
            token = self._token("node")
            self.layers["node"].append({"token": token, "x": float(x), "y": float(y)})
            tokens.append(token)
        return tokens

    def line(self, xy: np.ndarray) -> tuple[str, list[str]]:
        token, nodes = self._token("line"), self.nodes(xy)
        self.layers["line"].append({"token": token, "node_tokens": nodes})
        return token, nodes

    def polygon(self, exterior: np.ndarray) -> str:
        token = self._token("polygon")
        self.layers["polygon"].append({"token": token, "exterior_node_tokens": self.nodes(exterior), "holes": []})
        return token

    def record(self, layer: str, **fields: Any) -> str:
        token = self._token(layer)
        self.layers[layer].append({"token": token, **fields})
        return token


def _band(world: World, s_a: float, s_b: float, d_lo: float, d_hi: float) -> np.ndarray:
    """Closed-band polygon exterior (no repeated first point) between arc lengths and lateral offsets."""
    s = np.linspace(s_a, s_b, max(2, int(np.ceil((s_b - s_a) / NODE_SPACING_M)) + 1))
    return np.concatenate([world.road.point(s, d_lo), world.road.point(s[::-1], d_hi)])


def _along(world: World, s_a: float, s_b: float, d: float) -> np.ndarray:
    s = np.linspace(s_a, s_b, max(2, int(np.ceil((s_b - s_a) / NODE_SPACING_M)) + 1))
    return world.road.point(s, d)


def _add_road(b: _MapBuilder, world: World, s_lo: float, s_hi: float, crossings: list[tuple[float, float]]) -> None:
    road_polys = []
    for s_a in np.arange(s_lo, s_hi, PIECE_LENGTH_M):
        s_b = min(s_a + PIECE_LENGTH_M, s_hi)
        seg_poly = b.polygon(_band(world, s_a, s_b, -ROAD_HALF_WIDTH, ROAD_HALF_WIDTH))
        road_polys.append(seg_poly)
        seg = b.record("road_segment", polygon_token=seg_poly, is_intersection=False, drivable_area_token="")
        for lane in range(-LANES_PER_DIRECTION, LANES_PER_DIRECTION):
            d_lo, d_hi = lane * LANE_WIDTH, (lane + 1) * LANE_WIDTH
            from_edge, _ = b.line(np.stack([world.road.point(s_a, d_lo), world.road.point(s_a, d_hi)]))
            to_edge, _ = b.line(np.stack([world.road.point(s_b, d_lo), world.road.point(s_b, d_hi)]))
            lane_token = b.record("lane", polygon_token=b.polygon(_band(world, s_a, s_b, d_lo, d_hi)), lane_type="CAR",
                                  from_edge_line_token=from_edge, to_edge_line_token=to_edge,
                                  left_lane_divider_segments=[], right_lane_divider_segments=[])
            b.layers["arcline_path_3"][lane_token] = []
            b.layers["connectivity"][lane_token] = {"incoming": [], "outgoing": []}
        for d in (-LANE_WIDTH, LANE_WIDTH):
            line_token, nodes = b.line(_along(world, s_a, s_b, d))
            b.record("lane_divider", line_token=line_token,
                     lane_divider_segments=[{"node_token": n, "segment_type": "SINGLE_DASHED_WHITE"} for n in nodes])
        line_token, _ = b.line(_along(world, s_a, s_b, 0.0))
        b.record("road_divider", line_token=line_token, road_segment_token=seg)
    area = b.record("drivable_area", polygon_tokens=road_polys)
    for rec in b.layers["road_segment"]:
        if not rec["drivable_area_token"]:
            rec["drivable_area_token"] = area
    for s_start, length in crossings:
        poly = b.polygon(_band(world, s_start, s_start + length, -ROAD_HALF_WIDTH, ROAD_HALF_WIDTH))
        b.record("ped_crossing", polygon_token=poly, road_segment_token="")


def map_arc_range(world: World, seconds: float) -> tuple[float, float]:
    """Arc-length range of the mapped (and rendered) road of a scene."""
    return -60.0, world.ego_speed * (seconds + 0.5) + 110.0


def write_map_expansion(root: Path, location: str, worlds: list[World], crossings: list[list[tuple[float, float]]],
                        tok: Callable[..., str], seconds: float) -> Path:
    """Write ``maps/expansion/<location>.json`` covering every scene's road."""
    b = _MapBuilder(tok)
    for world, cross in zip(worlds, crossings):
        _add_road(b, world, *map_arc_range(world, seconds), cross)
    data = {"version": "1.3", "canvas_edge": [3000.0, 2200.0], **b.layers}
    path = Path(root) / "maps" / "expansion" / f"{location}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        json.dump(data, f)
    return path
