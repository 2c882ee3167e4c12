"""The adapter contract: media in, :class:`~adasr_mm.chunks.TimedChunk` stream out."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

from adasr_mm.chunks import TimedChunk


@runtime_checkable
class ChunkSource(Protocol):
    """A lazily iterated, time-ordered stream of chunks from one input.

    ``duration`` is the media length in seconds when known (the stream ends there, even if the last chunk ends
    earlier, e.g. trailing silence).
    """

    duration: float | None

    def __iter__(self) -> Iterator[TimedChunk]: ...
