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
    # 14 cycles of 83 ms: anchors at 0 ms, 498 ms, 996 ms pass the 0.45 s throttle. Every anchor is decided once
    # its last camera fired (CAM_FRONT_LEFT, 8 ms early, is settled: its next image is 83 ms away).
    assert [f.anchor_stamp_ns for f in frames] == [1000 * MS, 1498 * MS, 1996 * MS]
    f = frames[1]
    assert all(s is CameraStatus.OK for s in f.status)
    assert [p[0] for p in f.payloads] == list(CAMS)
    # The closest image wins: CAM_BACK of the previous cycle fired 41 ms before the anchor, this one 42 ms after;
    # CAM_BACK_RIGHT 33 ms before and 50 ms after.
    assert [p[1] for p in f.payloads] == [6, 6, 6, 5, 6, 5]
    assert f.max_skew == pytest.approx(0.041)
    assert sync.counters["throttled"] == 11 and sync.counters["emitted"] == 3


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
    assert frames == [] and sync.counters["incomplete"] == 4
    sync = CameraSynchronizer(SyncConfig(CAMS, max_camera_time_diff=0.06, min_frame_interval=0.0))
    assert len(feed(sync, 3, start_ms=60_000)) == 3
    frames = feed(sync, 3, start_ms=1000)  # the bag looped
    assert sync.counters["time_backwards"] == 1
    assert [f.anchor_stamp_ns for f in frames] == [1000 * MS, 1083 * MS, 1166 * MS]
    assert [f.reset_reason for f in frames] == ["time_backwards", "", ""]


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


# ------------------------------------------------------------------------------------------ time handling, floods

KEY_FRAMES_PER_PASS = [1000 * MS, 1498 * MS, 1996 * MS, 2494 * MS]  # 24 cycles of 83 ms throttled to 0.45 s


def play(sync, cycles, start_ms=1000, cut_after=None):
    """A player publishing `cycles` 12 Hz camera cycles in stamp order; `cut_after` stops it after that many
    messages (a player killed mid-cycle)."""
    events = []
    for k in range(cycles):
        t0 = start_ms + k * 83
        events += sorted(((t0 + OFFSETS_MS[c]) * MS, c) for c in CAMS)
    frames = []
    for stamp, cam in events[:cut_after]:
        frames += sync.add(cam, stamp, (cam, stamp))
    return frames


def test_a_looped_2s_bag_gives_every_key_frame_of_every_pass_and_resets_once_per_loop():
    sync = CameraSynchronizer(SyncConfig(CAMS, max_camera_time_diff=0.06, min_frame_interval=0.45))
    frames = []
    for _ in range(3):  # 24 cycles = 2 s; the loop steps back by 1.9 s (less than the 2 s buffer)
        frames += play(sync, 24)
    frames += sync.flush(10_000 * MS)  # the player stopped: the last anchor's window ends
    assert [f.anchor_stamp_ns for f in frames] == KEY_FRAMES_PER_PASS * 3
    assert [f.reset_reason for f in frames] == ["", "", "", ""] + ["time_backwards", "", "", ""] * 2
    assert all(all(s is CameraStatus.OK for s in f.status) for f in frames)
    assert sync.counters["time_backwards"] == 2 and sync.counters["incomplete"] == 0


# Killed after 3 messages (its first anchor still pending: the restart repeats it, nothing to reset), in the
# middle of a cycle (40, 97), and at the end of a cycle (102, 1.3 s into the bag).
@pytest.mark.parametrize("killed_after_messages, backwards", [(3, False), (40, True), (97, True), (102, True)])
def test_a_restarted_player_loses_no_key_frame_after_the_restart(killed_after_messages, backwards):
    sync = CameraSynchronizer(SyncConfig(CAMS, max_camera_time_diff=0.06, min_frame_interval=0.45))
    play(sync, 24, cut_after=killed_after_messages)
    after = play(sync, 24) + sync.flush(10_000 * MS)
    # The restart first decides the anchor the killed player left pending (with the images it has), then the new
    # pass gives every key frame.
    old, new = after[:-4], after[-4:]
    assert [f.anchor_stamp_ns for f in new] == KEY_FRAMES_PER_PASS and len(old) <= 1
    assert [f.reset_reason for f in after] == [""] * len(old) + ["time_backwards" if backwards else "", "", "", ""]
    assert sync.counters["time_backwards"] == int(backwards)
    assert all(all(s is CameraStatus.OK for s in f.status) for f in after)


def test_a_tiny_backward_step_of_the_anchor_resets():
    sync = CameraSynchronizer(SyncConfig(CAMS, max_camera_time_diff=0.06, min_frame_interval=0.0))
    play(sync, 3)
    frames = play(sync, 3, start_ms=1000 + 2 * 83 - 1) + sync.flush(10_000 * MS)  # 1 ms earlier than the newest
    assert sync.counters["time_backwards"] == 1
    assert frames[-3].reset_reason == "time_backwards" and frames[-3].anchor_stamp_ns == (1000 + 2 * 83 - 1) * MS


def test_a_stale_image_is_dropped_for_its_own_camera_only():
    sync = CameraSynchronizer(SyncConfig(CAMS, max_camera_time_diff=0.06, min_frame_interval=0.0))
    play(sync, 30)  # 2.5 s of cycles
    assert sync.add("CAM_BACK", 1000 * MS, "late") == []  # 2.4 s older than CAM_BACK's newest
    frames = play(sync, 2, start_ms=1000 + 30 * 83)
    assert [f.anchor_stamp_ns for f in frames] == [(1000 + k * 83) * MS for k in (30, 31)]  # nothing lost
    assert all(all(s is CameraStatus.OK for s in f.status) for f in frames)
    assert sync.counters["stale:CAM_BACK"] == 1 and sync.counters["time_backwards"] == 0
    assert all(p != "late" for f in frames for p in f.payloads)


def test_buffers_are_bounded_by_count_under_a_flood():
    cfg = SyncConfig(CAMS, max_camera_time_diff=0.06, min_frame_interval=0.0, max_buffered_images=30)
    sync = CameraSynchronizer(cfg)
    play(sync, 2)
    for k in range(20_000):  # fresh stamps every 0.1 ms: 2 s of stamps, all inside the time window
        sync.add("CAM_BACK", 1200 * MS + k * 100_000, k)
    assert sync.buffer_sizes()["CAM_BACK"] == 30 and sync.counters["overflow:CAM_BACK"] == 20_000 + 2 - 30
    for _ in range(20_000):  # a stuck camera repeating one stamp
        sync.add("CAM_BACK_LEFT", 1300 * MS, "stuck")
        sync.add("CAM_FRONT", 1150 * MS, "stuck")
    sizes = sync.buffer_sizes()
    assert sizes["CAM_BACK_LEFT"] <= 3 and sizes["CAM_FRONT"] <= 3 and max(sizes.values()) <= 30
    assert sync.counters["repeated:CAM_BACK_LEFT"] == 19_999 and sync.counters["repeated:CAM_FRONT"] == 19_999
    assert sync.pending_count() <= 1
    # The synchroniser still works after the flood.
    frames = play(sync, 3, start_ms=4000) + sync.flush(10_000 * MS)
    assert [f.anchor_stamp_ns for f in frames] == [(4000 + k * 83) * MS for k in range(3)]
