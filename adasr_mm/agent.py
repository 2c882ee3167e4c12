"""The Python agent API: load a policy once, open independent sessions on it."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

from .chunks import TimedChunk
from .clock import Clock
from .config import AdasrConfig, load_config
from .events import Event
from .policy import Runner, StreamingPolicy
from .replay import replay
from .session import Session, SessionResult


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

    def run(self, question: str, chunks: Iterable[TimedChunk], *, mode: str | None = None,
            clock: str | Clock | None = None, on_event: Callable[[Event], None] | None = None,
            duration: float | None = None) -> SessionResult:
        """Replay ``chunks`` through a fresh session (default clock: the config's, ``simulated``)."""
        return replay(self.session(question, mode=mode, clock=clock, emit_deltas=on_event is not None), chunks,
                      duration, on_event, self.config.pipeline)
