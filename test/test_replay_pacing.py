"""Pacer: dataset time -> wall time at a rate factor, with /clock ticks that never pass the next stamp."""
import threading

import pytest

from sparsedrive_ros.data.pacing import Pacer


class FakeClock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


class FakeStop(threading.Event):
    """Advances the fake clock instead of sleeping."""

    def __init__(self, clock):
        super().__init__()
        self.clock = clock

    def wait(self, timeout=None):
        self.clock.t += timeout
        return self.is_set()


@pytest.mark.parametrize("rate", [1.0, 0.25, 4.0])
def test_waits_scale_with_rate_and_ticks_are_monotonic(rate):
    clock = FakeClock()
    ticks = []
    pacer = Pacer(rate, tick=ticks.append, tick_hz=10.0, stop=FakeStop(clock), clock=clock)
    pacer.restart(1_000_000_000)
    assert pacer.wait_until(1_000_000_000)
    assert pacer.wait_until(3_000_000_000)
    assert clock.t == pytest.approx(100.0 + 2.0 / rate)
    assert ticks == sorted(ticks) and ticks[-1] == 3_000_000_000
    assert len(ticks) >= 2.0 / rate * 10  # ~tick_hz ticks per wall second while waiting


def test_late_events_go_out_at_once_and_stop_aborts():
    clock = FakeClock()
    stop = FakeStop(clock)
    pacer = Pacer(1.0, stop=stop, clock=clock)
    pacer.restart(0)
    clock.t += 5.0
    assert pacer.wait_until(1_000_000_000) and pacer.max_lateness_s == pytest.approx(4.0)
    stop.set()
    assert not pacer.wait_until(9_000_000_000)


def test_bad_rate():
    with pytest.raises(ValueError, match="rate"):
        Pacer(0.0)
