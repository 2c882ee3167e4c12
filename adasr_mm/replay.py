"""Feed a chunk source to a session on a clock (instant, realtime or simulated) through the pipeline.

Kept as the stable entry point of the Python API; the work happens in :mod:`adasr_mm.pipeline`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from .chunks import TimedChunk
from .events import Event
from .pipeline import PipelineConfig, iter_pipeline
from .session import Session, SessionResult


def iter_replay(session: Session, chunks: Iterable[TimedChunk], duration: float | None = None,
                config: PipelineConfig | None = None) -> Iterator[Event]:
    """Yield every event of ``session`` as ``chunks`` are produced at their media times (per the session clock).

    Each chunk is available at its ``end`` time (or later, when its source stamps ``meta["available_at"]``); the
    stream ends at ``duration`` (default: the source's ``duration``, else the last chunk's end).
    """
    return iter_pipeline(session, chunks, duration, config)


def replay(session: Session, chunks: Iterable[TimedChunk], duration: float | None = None,
           on_event: Callable[[Event], None] | None = None, config: PipelineConfig | None = None
           ) -> SessionResult:
    """Run :func:`iter_replay` to the end and return the session's result."""
    for ev in iter_replay(session, chunks, duration, config):
        if on_event is not None:
            on_event(ev)
    assert session.result is not None
    return session.result
