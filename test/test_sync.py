import pytest

from sparsedrive_ros.runtime.sync import CameraStatus, CameraSynchronizer, MissingCameraPolicy, SyncConfig

CAMS = ("CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_FRONT_LEFT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_BACK_RIGHT")
# nuScenes-like firing offsets within a 12 Hz cycle (ms after CAM_FRONT).
OFFSETS_MS = {"CAM_FRONT": 0, "CAM_FRONT_RIGHT": 8, "CAM_FRONT_LEFT": -8, "CAM_BACK": 42,
              "CAM_BACK_LEFT": 33, "CAM_BACK_RIGHT": 50}
MS = 1_000_000


def feed(sync, cycles, skip=(), start_ms=1000, period_ms=83):
    frames = []
    for k in range(cycles):
        t0 = start_ms + k * period_ms
        events = sorted(((t0 + OFFSETS_MS[c]) * MS, c) for c in CAMS if (c, k) not in skip and c not in skip)
        for stamp, cam in events:
            frames += sync.add(cam, stamp, (cam, k))
    return frames


def test_all_cameras_within_tolerance_and_throttled_to_2hz():
    sync = CameraSynchronizer(SyncConfig(CAMS, max_camera_time_diff=0.06, min_frame_interval=0.45))
    frames = feed(sync, 14)
    # 14 cycles of 83 ms: anchors at 0 ms, 498 ms, 996 ms pass the 0.45 s throttle. The anchor of cycle 12 is
    # decided only when CAM_FRONT_LEFT (8 ms early) of cycle 13 arrives; cycle 13's anchor is still pending.
    assert [f.anchor_stamp_ns for f in frames] == [1000 * MS, 1498 * MS, 1996 * MS]
    f = frames[1]
    assert all(s is CameraStatus.OK for s in f.status)
    assert [p[0] for p in f.payloads] == list(CAMS)
    # The closest image wins: CAM_BACK of the previous cycle fired 41 ms before the anchor, this one 42 ms after;
    # CAM_BACK_RIGHT 33 ms before and 50 ms after.
    assert [p[1] for p in f.payloads] == [6, 6, 6, 5, 6, 5]
    assert f.max_skew == pytest.approx(0.041)
    assert sync.counters["throttled"] == 10 and sync.counters["emitted"] == 3


def test_stopped_camera_skip_reuse_and_mask():
    def run(policy):
        sync = CameraSynchronizer(SyncConfig(CAMS, max_camera_time_diff=0.06, min_frame_interval=0.0,
                                             missing_camera_policy=policy, max_reuse_age=1.2))
        # 2 Hz streams; CAM_BACK stops after cycle 2. The last anchor stays pending (CAM_BACK might still come).
        frames = feed(sync, 3, period_ms=500) + feed(sync, 6, skip=("CAM_BACK",), start_ms=2500, period_ms=500)
        return sync, frames

    sync, frames = run(MissingCameraPolicy.SKIP)
    assert len(frames) == 3 and sync.counters["incomplete"] == 5 and sync.counters["missing:CAM_BACK"] == 5

    sync, frames = run(MissingCameraPolicy.REUSE_LAST)
    reused = [f for f in frames if f.status[3] is CameraStatus.REUSED]
    # Reuse is allowed while the last CAM_BACK image is at most 1.2 s old: 2 frames, then skips.
    assert len(reused) == 2 and all(f.payloads[3] == ("CAM_BACK", 2) for f in reused)
    assert sync.counters["incomplete"] == 3

    sync, frames = run(MissingCameraPolicy.MASK)
    masked = [f for f in frames if f.status[3] is CameraStatus.MASKED]
    assert len(frames) == 8 and len(masked) == 5
    assert all(f.payloads[3] is None and f.stamps_ns[3] is None for f in masked)


def test_camera_outside_tolerance_is_missing_and_time_backwards_resets():
    sync = CameraSynchronizer(SyncConfig(CAMS, max_camera_time_diff=0.03, min_frame_interval=0.0))
    frames = feed(sync, 4)  # CAM_BACK (+42 ms), CAM_BACK_LEFT (+33) and CAM_BACK_RIGHT (+50) exceed 30 ms
    assert frames == [] and sync.counters["incomplete"] == 3  # the 4th anchor still waits for CAM_FRONT_LEFT
    sync = CameraSynchronizer(SyncConfig(CAMS, max_camera_time_diff=0.06, min_frame_interval=0.0))
    assert len(feed(sync, 3, start_ms=60_000)) == 2  # the third anchor waits for CAM_FRONT_LEFT
    frames = feed(sync, 3, start_ms=1000)  # the bag looped: the pending anchor is forgotten with the buffers
    assert sync.counters["time_backwards"] == 1
    assert [f.anchor_stamp_ns for f in frames] == [1000 * MS, 1083 * MS]


def test_frame_decided_by_a_much_later_anchor_keeps_its_images():
    sync = CameraSynchronizer(SyncConfig(CAMS, max_camera_time_diff=0.06, min_frame_interval=0.0, buffer_seconds=2.0))
    feed(sync, 1, start_ms=1000)
    frames = feed(sync, 1, start_ms=9000)  # 8 s later (beyond the 2 s buffer) decides the frame at 1 s
    assert [f.anchor_stamp_ns for f in frames] == [1000 * MS]
    assert all(s is CameraStatus.OK for s in frames[0].status)


def test_flush_decides_the_last_frame_of_a_stream():
    sync = CameraSynchronizer(SyncConfig(CAMS, max_camera_time_diff=0.06, min_frame_interval=0.0))
    assert feed(sync, 1) == []  # CAM_FRONT_LEFT fired 8 ms before the anchor: it might still send a closer image
    assert sync.flush(1050 * MS) == []  # still inside the 60 ms window
    frames = sync.flush(1061 * MS)
    assert len(frames) == 1 and all(s is CameraStatus.OK for s in frames[0].status)


def test_config_is_validated():
    with pytest.raises(ValueError, match="anchor_camera"):
        SyncConfig(CAMS, anchor_camera="CAM_TOP")
    with pytest.raises(ValueError):
        SyncConfig(CAMS, missing_camera_policy="drop_everything")
    with pytest.raises(ValueError, match="unknown camera"):
        CameraSynchronizer(SyncConfig(CAMS)).add("CAM_TOP", 0, None)
