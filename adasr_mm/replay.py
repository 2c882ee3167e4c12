"""Feed a chunk source to a session on a clock (instant, realtime or simulated)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from .chunks import TimedChunk
from .errors import InputError
from .events import Event
from .session import Session, SessionResult


def iter_replay(session: Session, chunks: Iterable[TimedChunk], duration: float | None = None) -> Iterator[Event]:
    """Yield every event of ``session`` as ``chunks`` are delivered at their media times (per the session clock).

    Each chunk arrives at its ``end`` time; the stream ends at ``duration`` (default: the last chunk's end).
    """
    clock = session.clock
    session.start()
    if hasattr(chunks, "bind_clock"):  # sources that do their own work in media time (ASR) share the clock
        chunks.bind_clock(clock)
    last_end = 0.0
    last_start: dict[str, float] = {}  # per modality: merged streams may interleave late speech commits
    n = 0
    for chunk in chunks:
        prev = last_start.get(chunk.modality, 0.0)
        if chunk.start < prev - 1e-6:
            raise InputError(f"{chunk.modality} chunk {n} starts at {chunk.start:.2f}s, before the previous "
                             f"{chunk.modality} chunk ({prev:.2f}s)")
        last_start[chunk.modality] = chunk.start
        last_end = max(last_end, chunk.end)
        available = None
        if clock.media_timed:
            clock.wait_until(chunk.end)
            # a chunk is available when its source produced it (e.g. ASR commit), never before its media end
            available = max(chunk.end, float(chunk.meta.get("available_at", chunk.end)))
        yield from session.push(chunk, available_at=available)
        n += 1
    if duration is None:
        duration = getattr(chunks, "duration", None)
    if n == 0:
        raise InputError("the input produced no chunks (nothing to read: silence, or no speech or text)")
    end = max(last_end, duration or 0.0)
    stats = chunks.stats() if callable(getattr(chunks, "stats", None)) else {}
    yield from session.finish_iter(stream_end=end if clock.media_timed else None, extra=stats)


def replay(session: Session, chunks: Iterable[TimedChunk], duration: float | None = None,
           on_event: Callable[[Event], None] | None = None) -> SessionResult:
    """Run :func:`iter_replay` to the end and return the session's result."""
    for ev in iter_replay(session, chunks, duration):
        if on_event is not None:
            on_event(ev)
    assert session.result is not None
    return session.result
