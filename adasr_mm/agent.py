"""The Python agent API: load a policy once, open independent sessions on it."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable
from typing import Any

from .chunks import TimedChunk
from .clock import Clock
from .config import AdasrConfig, load_config
from .events import Event
from .policy import Runner, StreamingPolicy
from .replay import replay
from .session import Session, SessionResult


def open_media(path: str | os.PathLike[str], config: AdasrConfig, modality: str | None = None
               ) -> Iterable[TimedChunk]:
    """Open a media file as a chunk source with the adapter registry (``modality``: ``config.run.modality``;
    ``auto`` picks by extension and looks inside containers), as ``adasr-mm run`` does.

    Splits the cores between Whisper and torch first (``pipeline.configure_threads``) so an audio source does not
    oversubscribe them. Bad input raises :class:`~adasr_mm.errors.InputError` here, before any media model loads.
    """
    from .adapters import open_input
    from .pipeline import configure_threads

    configure_threads(config)
    return open_input(os.fspath(path), modality or config.run.modality, config)


class StreamingAgent:
    """Shared engine (weights loaded once) from which any number of independent sessions are opened.

    >>> agent = StreamingAgent.from_pretrained()            # embedded SmolLM2, offline
    >>> s = agent.session("How many apples are left?")
    >>> for ev in s.push(TimedChunk(0, 2.4, "Tom has 5 apples.")): print(ev)
    >>> print(s.finish().answer)
    """

    def __init__(self, policy: StreamingPolicy, config: AdasrConfig | None = None):
        self.policy = policy
        self.config = config or AdasrConfig()

    @classmethod
    def from_pretrained(cls, policy: str | None = None, config: AdasrConfig | str | dict[str, Any] | None = None
                        ) -> StreamingAgent:
        """``policy``: hub id or local dir (None: the config's, else the embedded default); ``config``: an
        :class:`AdasrConfig`, a YAML path or a nested dict."""
        if not isinstance(config, AdasrConfig):
            config = load_config(config)
        if policy is not None:
            config.policy.policy = policy
        return cls(StreamingPolicy.from_pretrained(config.policy, config.protocol), config)

    def session(self, question: str, *, mode: str | None = None, clock: str | Clock | None = None,
                emit_deltas: bool = False, seed: int | None = None, batcher: Runner | None = None) -> Session:
        """``batcher``: a :class:`~adasr_mm.continuous.DecodeScheduler` on this agent's policy, shared by
        concurrent sessions (each on its own thread) so their model calls run batched."""
        scfg = self.config.session
        if mode is not None and mode != scfg.mode:
            scfg = dataclasses.replace(scfg, mode=mode)
        return Session(self.policy, question, scfg, clock or self.config.run.clock, emit_deltas, seed, batcher)

    def open(self, path: str | os.PathLike[str], modality: str | None = None) -> Iterable[TimedChunk]:
        """:func:`open_media` with this agent's config."""
        return open_media(path, self.config, modality)

    def run(self, question: str, media: Iterable[TimedChunk] | str | os.PathLike[str], *,
            mode: str | None = None, clock: str | Clock | None = None,
            on_event: Callable[[Event], None] | None = None, duration: float | None = None,
            modality: str | None = None) -> SessionResult:
        """Stream ``media`` (chunks, or a media file path opened with :meth:`open`) through a fresh session on
        the real-time pipeline (default clock: the config's, ``simulated``)."""
        if isinstance(media, (str, os.PathLike)):
            media = self.open(media, modality)
        return replay(self.session(question, mode=mode, clock=clock, emit_deltas=on_event is not None), media,
                      duration, on_event, self.config.pipeline)
