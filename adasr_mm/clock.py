"""Clocks that decide when chunks become available and what "now" means for event timestamps.

- ``instant``: chunks are handled as fast as they are pushed (live sources: arrival = push time).
- ``realtime``: media is delivered at its timestamps (the producer sleeps), the consumer works on the wall clock.
- ``simulated``: compute-aware virtual time without sleeping. Each side of the pipeline (producer: decoding + ASR /
  describer; consumer: the policy) has its own virtual timeline: while a side computes, its time advances by the
  measured wall time of that computation; when it waits (for media, or for the next chunk) its time jumps to the
  moment the wait would have ended (``wait_until``) and the physical wait itself is not counted (``idle``). Both
  sides run concurrently on the same machine, so the compute each one measures includes sharing the cores, as it
  would live. See docs/architecture.md, "Clocks".
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

CLOCKS = ("instant", "realtime", "simulated")


class Clock:
    name = "instant"
    #: Whether a chunk becomes available at its media end time (else: when it is pushed).
    media_timed = False
    #: Whether ``now()`` is virtual (advances by measured compute, jumps over waits) rather than wall time.
    virtual = False

    def __init__(self) -> None:
        self._t0 = time.perf_counter()
        self._offset = 0.0
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self._t0 = time.perf_counter()
            self._offset = 0.0

    def now(self) -> float:
        return time.perf_counter() - self._t0 + self._offset

    def wait_until(self, t: float) -> None:
        """Block (or advance virtual time) until clock time ``t``; no-op if already past."""

    @contextlib.contextmanager
    def idle(self) -> Iterator[None]:
        """A physical wait (e.g. for the other side of the pipeline) that a virtual clock does not count."""
        yield

    def fork(self) -> Clock:
        """The clock the producer side uses: the same timeline for wall clocks, its own for virtual ones."""
        return self


class InstantClock(Clock):
    name = "instant"


class LiveClock(InstantClock):
    """The instant clock with its zero fixed at construction (live input: the session's start must not move it).

    A live session's clock must start with the media, not when a worker gets round to ``Session.start()`` (which
    resets its clock): arrival times stamped by the handlers and thought times then share one axis.
    """

    def reset(self) -> None:  # zero stays at construction
        pass


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
    virtual = True

    def wait_until(self, t: float) -> None:
        with self._lock:
            dt = t - self.now()
            if dt > 0:
                self._offset += dt

    @contextlib.contextmanager
    def idle(self) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            with self._lock:
                self._offset -= time.perf_counter() - t0

    def fork(self) -> Clock:
        return SimulatedClock()


def make_clock(clock: str | Clock) -> Clock:
    if isinstance(clock, Clock):
        return clock
    table = {"instant": InstantClock, "realtime": RealtimeClock, "simulated": SimulatedClock}
    if clock not in table:
        raise ValueError(f"unknown clock {clock!r}; expected one of {', '.join(CLOCKS)}")
    return table[clock]()
