"""Real-time pacing of a recorded timeline (ROS-free): dataset stamps -> wall-clock waits at a rate factor.

Used by the replay node and the bag player. While waiting it reports the current simulated time through
``tick`` (the players publish it on /clock) at ``tick_hz``, then once more exactly at the event stamp, so
that /clock reaches each message's stamp before the message goes out.
"""
from __future__ import annotations

import threading
import time
from typing import Callable


class Pacer:
    def __init__(self, rate: float, tick: Callable[[int], None] | None = None, tick_hz: float = 40.0,
                 stop: threading.Event | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be > 0, got {rate}")
        if not tick_hz > 0:
            raise ValueError(f"tick_hz must be > 0, got {tick_hz}")
        self.rate, self.tick, self.tick_period = rate, tick, 1.0 / tick_hz
        self.stop = stop or threading.Event()
        self.clock = clock
        self._origin_ns: int | None = None
        self._origin_wall = 0.0
        self.max_lateness_s = 0.0

    def restart(self, first_stamp_ns: int) -> None:
        """Anchor dataset time ``first_stamp_ns`` to now (call at start and after every loop or gap reset)."""
        self._origin_ns, self._origin_wall = first_stamp_ns, self.clock()

    def sim_now_ns(self) -> int:
        if self._origin_ns is None:
            raise RuntimeError("Pacer.restart() must be called first")
        return self._origin_ns + int((self.clock() - self._origin_wall) * self.rate * 1e9)

    def wait_until(self, stamp_ns: int) -> bool:
        """Sleep until ``stamp_ns`` is due; False when stopped meanwhile."""
        if self._origin_ns is None:
            self.restart(stamp_ns)
        origin_ns = stamp_ns if self._origin_ns is None else self._origin_ns
        target = self._origin_wall + (stamp_ns - origin_ns) / 1e9 / self.rate
        while not self.stop.is_set():
            remaining = target - self.clock()
            if remaining <= 0:
                self.max_lateness_s = max(self.max_lateness_s, -remaining)
                break
            if self.tick is not None:
                self.tick(min(self.sim_now_ns(), stamp_ns))
            self.stop.wait(min(remaining, self.tick_period))
        if self.stop.is_set():
            return False
        if self.tick is not None:
            self.tick(stamp_ns)
        return True
