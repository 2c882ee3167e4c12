"""Clocks that decide when chunks become available and what "now" means for event timestamps.

- ``instant``: chunks are handled as fast as they are pushed (live sources: arrival = push time).
- ``realtime``: replay sleeps until each chunk's media end time, like a live stream would deliver it.
- ``simulated``: compute-aware virtual time without sleeping: while the policy works, time advances by measured
  compute; when it is idle, time jumps to the next arrival. A chunk is thus handled at
  ``max(arrival, end of previous work)``, so lag and delay come out as in real time, only faster.
"""

from __future__ import annotations

import time

CLOCKS = ("instant", "realtime", "simulated")


class Clock:
    name = "instant"
    #: Whether a chunk becomes available at its media end time (else: when it is pushed).
    media_timed = False

    def __init__(self) -> None:
        self._t0 = time.perf_counter()
        self._offset = 0.0

    def reset(self) -> None:
        self._t0 = time.perf_counter()
        self._offset = 0.0

    def now(self) -> float:
        return time.perf_counter() - self._t0 + self._offset

    def wait_until(self, t: float) -> None:
        """Block (or advance virtual time) until clock time ``t``; no-op if already past."""


class InstantClock(Clock):
    name = "instant"


class RealtimeClock(Clock):
    name = "realtime"
    media_timed = True

    def wait_until(self, t: float) -> None:
        dt = t - self.now()
        if dt > 0:
            time.sleep(dt)


class SimulatedClock(Clock):
    name = "simulated"
    media_timed = True

    def wait_until(self, t: float) -> None:
        dt = t - self.now()
        if dt > 0:
            self._offset += dt


def make_clock(clock: str | Clock) -> Clock:
    if isinstance(clock, Clock):
        return clock
    table = {"instant": InstantClock, "realtime": RealtimeClock, "simulated": SimulatedClock}
    if clock not in table:
        raise ValueError(f"unknown clock {clock!r}; expected one of {', '.join(CLOCKS)}")
    return table[clock]()
