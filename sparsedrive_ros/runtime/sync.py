"""Anchor-camera synchronisation of the six camera streams (ROS-free).

An image of the anchor camera (default CAM_FRONT) opens a frame at its stamp; every other camera contributes
its buffered image closest to that stamp within `max_camera_time_diff`. nuScenes cameras fire one after another
over ~50 ms of a 12 Hz cycle, so the tolerance must be at least 0.05 s there.

A frame is decided once every camera delivered an image at or after the anchor stamp (its closest image is then
known), when a newer anchor arrives, or when `flush(now)` finds its tolerance window over (a camera that is
still silent then counts as missing). An incomplete frame follows `missing_camera_policy`:
  skip        drop the frame (counted as `incomplete`)
  reuse_last  use the camera's newest older image if it is at most `max_reuse_age` old, else skip
  mask        keep the frame; the camera is marked masked (the pipeline gives it a black image and a projection
              that puts every sample outside it, so it contributes nothing to feature aggregation)
Frames are throttled by stamp to `min_frame_interval` (the model was trained on 2 Hz key frames).

Time going backwards. The anchor stream defines the timeline: an anchor stamp older than the newest anchor seen
(by any amount: a looped bag, a restarted player) decides the frames still pending with what is buffered, drops
every buffered image newer than the new anchor's window, restarts the throttle and marks the next emitted frame
with `reset_reason = "time_backwards"` (the pipeline then wipes its temporal state once). An anchor repeating
the newest stamp is dropped (`repeated:<camera>`).
A non-anchor image more than `buffer_seconds` older than its camera's newest is *stale*: it is held aside for
that camera only. If the anchor then steps back too (a restart: other cameras may fire before the anchor), it
joins the new timeline; otherwise it is discarded at the next anchor and counted (`stale:<camera>`). Nothing
else is touched, so one late image costs nothing but itself.

Memory is bounded by count as well as by time: each camera keeps at most `max_buffered_images` images (the
oldest go first, counted as `overflow:<camera>`), an image repeating a buffered stamp replaces it
(`repeated:<camera>`), and at most `max_buffered_images` stale images wait per camera.
Every drop is counted by reason in `counters`. Stamps are integer nanoseconds; payloads are opaque (e.g.
undecoded messages, so that callbacks stay cheap and decoding happens in the worker).
"""
from __future__ import annotations

import bisect
import enum
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence


class MissingCameraPolicy(str, enum.Enum):
    SKIP = "skip"
    REUSE_LAST = "reuse_last"
    MASK = "mask"


class CameraStatus(enum.IntEnum):  # values equal FrameInfo.CAMERA_*
    OK = 0
    REUSED = 1
    MASKED = 2


@dataclass(frozen=True)
class SyncConfig:
    camera_names: tuple[str, ...]          # model order
    anchor_camera: str = "CAM_FRONT"
    max_camera_time_diff: float = 0.08     # s, tolerance around the anchor stamp
    missing_camera_policy: MissingCameraPolicy = MissingCameraPolicy.SKIP
    max_reuse_age: float = 1.0             # s, oldest image reuse_last may substitute
    min_frame_interval: float = 0.45       # s, throttle by stamp (0 = every anchor)
    buffer_seconds: float = 2.0            # s of images kept per camera
    max_buffered_images: int = 48          # images kept per camera (4 s of a 12 Hz camera)

    def __post_init__(self):
        if self.anchor_camera not in self.camera_names:
            raise ValueError(f"anchor_camera {self.anchor_camera!r} is not one of {self.camera_names}")
        if len(set(self.camera_names)) != len(self.camera_names):
            raise ValueError(f"camera_names has duplicates: {self.camera_names}")
        if self.max_camera_time_diff < 0 or self.min_frame_interval < 0 or self.max_reuse_age < 0:
            raise ValueError("time tolerances must be >= 0")
        if self.buffer_seconds <= 0 or self.max_buffered_images < 2:
            raise ValueError("buffer_seconds must be > 0 and max_buffered_images >= 2")
        object.__setattr__(self, "missing_camera_policy", MissingCameraPolicy(self.missing_camera_policy))


@dataclass
class SyncedFrame:
    anchor_stamp_ns: int
    payloads: list[Optional[Any]]          # per camera (model order); None where masked
    stamps_ns: list[Optional[int]]         # stamp of the image used; None where masked
    status: list[CameraStatus]
    reset_reason: str = ""                 # "time_backwards" on the first frame after the anchor stepped back

    @property
    def max_skew(self) -> float:
        """s, largest |camera stamp - anchor stamp| over the cameras used."""
        return max((abs(s - self.anchor_stamp_ns) * 1e-9 for s in self.stamps_ns if s is not None), default=0.0)


@dataclass
class _Stream:
    stamps: list[int] = field(default_factory=list)
    payloads: list[Any] = field(default_factory=list)
    stale: list[tuple[int, Any]] = field(default_factory=list)  # held aside, see the module docstring

    def insert(self, stamp_ns: int, payload: Any) -> bool:
        """Insert in stamp order; an image repeating a buffered stamp replaces it (returns False then)."""
        i = bisect.bisect_left(self.stamps, stamp_ns)
        if i < len(self.stamps) and self.stamps[i] == stamp_ns:
            self.payloads[i] = payload
            return False
        self.stamps.insert(i, stamp_ns)
        self.payloads.insert(i, payload)
        return True


_WALL_MARGIN = 1_000_000_000  # ns; extra wall time the flush grants late deliveries (a starved process)


class CameraSynchronizer:
    def __init__(self, config: SyncConfig):
        self.config = config
        self._tol = int(config.max_camera_time_diff * 1e9)
        self._window = int(config.buffer_seconds * 1e9)
        self._streams = {name: _Stream() for name in config.camera_names}
        self._pending: list[tuple[int, Optional[int]]] = []  # (anchor stamp, receipt ns) waiting, ascending
        self._newest_anchor: Optional[int] = None
        self._last_emitted: Optional[int] = None
        self._reset_reason = ""
        self.counters: Counter[str] = Counter()

    def reconfigure(self, config: SyncConfig) -> None:
        """New tolerances/policy from the next decision on (camera names and anchor must stay the same)."""
        if config.camera_names != self.config.camera_names or config.anchor_camera != self.config.anchor_camera:
            raise ValueError("camera_names and anchor_camera cannot change while running")
        self.config = config
        self._tol = int(config.max_camera_time_diff * 1e9)
        self._window = int(config.buffer_seconds * 1e9)

    def reset(self) -> None:
        """Forget buffered images and pending frames."""
        for s in self._streams.values():
            s.stamps.clear()
            s.payloads.clear()
            s.stale.clear()
        self._pending.clear()
        self._newest_anchor = None
        self._last_emitted = None

    def buffer_sizes(self) -> dict[str, int]:
        """Images held per camera (buffered + held aside as stale)."""
        return {c: len(s.stamps) + len(s.stale) for c, s in self._streams.items()}

    def pending_count(self) -> int:
        return len(self._pending)

    def newest_stamp(self, camera: str) -> Optional[int]:
        s = self._streams[camera].stamps
        return s[-1] if s else None

    def add(self, camera: str, stamp_ns: int, payload: Any, received_ns: Optional[int] = None) -> list[SyncedFrame]:
        """Buffer one image; returns the frames this arrival completed or decided (oldest first).

        `received_ns` (a monotonic clock) lets `flush` wait for a frame's window in wall time too."""
        stream = self._streams.get(camera)
        if stream is None:
            raise ValueError(f"unknown camera {camera!r}; expected one of {self.config.camera_names}")
        frames: list[SyncedFrame] = []
        if camera == self.config.anchor_camera:
            newest = self._newest_anchor
            if newest is not None and stamp_ns == newest:
                self.counters[f"repeated:{camera}"] += 1
                return frames
            if newest is not None and stamp_ns < newest:
                frames += self._restart(stamp_ns)
            else:
                self._discard_stale()
            self._newest_anchor = stamp_ns
            stream.insert(stamp_ns, payload)
            self._pending.append((stamp_ns, received_ns))
        else:
            if stream.stamps and stamp_ns < stream.stamps[-1] - self._window:
                stream.stale.append((stamp_ns, payload))
                if len(stream.stale) > self.config.max_buffered_images:
                    del stream.stale[0]
                    self.counters[f"stale:{camera}"] += 1
                return frames
            if not stream.insert(stamp_ns, payload):
                self.counters[f"repeated:{camera}"] += 1
        frames += self._decide()
        # Prune only after deciding, so a frame decided by a much later anchor still finds its own images.
        cut = bisect.bisect_left(stream.stamps, stream.stamps[-1] - self._window)
        over = len(stream.stamps) - cut - self.config.max_buffered_images
        if over > 0:
            self.counters[f"overflow:{camera}"] += over
            cut += over
        del stream.stamps[:cut], stream.payloads[:cut]
        return frames

    def _discard_stale(self) -> None:
        for name, stream in self._streams.items():
            if stream.stale:
                self.counters[f"stale:{name}"] += len(stream.stale)
                stream.stale.clear()

    def _restart(self, anchor_ns: int) -> list[SyncedFrame]:
        """The anchor stepped back to `anchor_ns`: finish the old timeline, then start a new one."""
        frames = self._decide(force=True)
        keep_until = anchor_ns + self._tol
        for stream in self._streams.values():
            cut = bisect.bisect_right(stream.stamps, keep_until)
            del stream.stamps[cut:], stream.payloads[cut:]
            for stamp, payload in stream.stale:  # early images of the new timeline
                if anchor_ns - self._window <= stamp <= keep_until:
                    stream.insert(stamp, payload)
            stream.stale.clear()
        self._last_emitted = None
        self._reset_reason = "time_backwards"
        self.counters["time_backwards"] += 1
        return frames

    def _closest(self, camera: str, anchor: int) -> Optional[int]:
        s = self._streams[camera].stamps
        best = None
        for j in (bisect.bisect_left(s, anchor) - 1, bisect.bisect_left(s, anchor)):
            if (
                0 <= j < len(s)
                and abs(s[j] - anchor) <= self._tol
                and (best is None or abs(s[j] - anchor) < abs(s[best] - anchor))
            ):
                best = j
        return best

    def _settled(self, camera: str, anchor: int) -> bool:
        """True once the camera's closest image to `anchor` is known: it delivered an image at or after the
        anchor, or its newest image is so close before the anchor that the next one, one period later (the
        interval between its last two images), cannot be closer. The second case decides a frame as soon as
        its last camera fired, instead of waiting for the next cycle or the flush, for rigs where a camera fires
        just before the anchor (CAM_FRONT_LEFT, 8 ms before CAM_FRONT on nuScenes)."""
        s = self._streams[camera].stamps
        if not s:
            return False
        if s[-1] >= anchor:
            return True
        gap = anchor - s[-1]
        period = s[-1] - s[-2] if len(s) >= 2 else 0
        return gap <= self._tol and period > 2 * gap

    def flush(self, now_ns: int, received_now_ns: Optional[int] = None) -> list[SyncedFrame]:
        """Decide pending frames whose tolerance window ended before `now_ns` (same clock as the stamps) and, when
        given, also before `received_now_ns` on the monotonic clock of `add(received_ns=...)`.

        Without it, the last frame of a stream would wait forever for a camera that fires before the anchor. The
        second clock keeps a source whose stamps are far from `now_ns` (a bag without sim time) from having its
        frames decided before their later cameras could arrive."""
        return self._decide(now_ns, received_now_ns)

    def _decide(self, now_ns: Optional[int] = None, received_now_ns: Optional[int] = None,
                force: bool = False) -> list[SyncedFrame]:
        out = []
        while self._pending:
            anchor, received = self._pending[0]
            newer_anchor = len(self._pending) > 1
            expired = now_ns is not None and now_ns > anchor + self._tol and (
                received_now_ns is None or received is None or received_now_ns > received + self._tol + _WALL_MARGIN)
            if not (force or newer_anchor or expired) and \
                    not all(self._settled(c, anchor) for c in self.config.camera_names):
                break  # wait: a closer image may still come (at most max_camera_time_diff later)
            found = {c: self._closest(c, anchor) for c in self.config.camera_names}
            missing = [c for c, j in found.items() if j is None]
            self._pending.pop(0)
            frame = self._assemble(anchor, found, missing)
            if frame is not None:
                out.append(frame)
        return out
    def _assemble(self, anchor: int, found: dict, missing: Sequence[str]) -> Optional[SyncedFrame]:
        cfg = self.config
        # Strict: 12 Hz sweeps 5 frames apart (0.417 s) must not pass a 0.45 s throttle meant for 2 Hz key frames.
        if self._last_emitted is not None and 0 <= anchor - self._last_emitted < int(cfg.min_frame_interval * 1e9):
            self.counters["throttled"] += 1
            return None
        payloads, stamps, status = [], [], []
        for cam in cfg.camera_names:
            stream, j = self._streams[cam], found[cam]
            if j is not None:
                payloads.append(stream.payloads[j])
                stamps.append(stream.stamps[j])
                status.append(CameraStatus.OK)
                continue
            self.counters[f"missing:{cam}"] += 1
            if cfg.missing_camera_policy is MissingCameraPolicy.REUSE_LAST:
                k = bisect.bisect_left(stream.stamps, anchor) - 1
                if k >= 0 and anchor - stream.stamps[k] <= int(cfg.max_reuse_age * 1e9):
                    payloads.append(stream.payloads[k])
                    stamps.append(stream.stamps[k])
                    status.append(CameraStatus.REUSED)
                    continue
            elif cfg.missing_camera_policy is MissingCameraPolicy.MASK:
                payloads.append(None)
                stamps.append(None)
                status.append(CameraStatus.MASKED)
                continue
            self.counters["incomplete"] += 1
            return None
        self._last_emitted = anchor
        self.counters["emitted"] += 1
        reason, self._reset_reason = self._reset_reason, ""
        return SyncedFrame(anchor, payloads, stamps, status, reason)
