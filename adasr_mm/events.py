"""Events a session emits, in order, and their JSON form.

A session turns chunks into a stream of events: one :class:`ChunkEvent` per chunk followed by exactly one
:class:`ThoughtEvent` or :class:`SkipEvent` (streaming mode), then :class:`DeepEvent`, :class:`AnswerEvent` and a
final :class:`SummaryEvent`. Times (``t_*``) are seconds on the session's clock, whose zero is the session start
and which runs in media time for the ``realtime``/``simulated`` clocks. :class:`DeltaEvent` carries partial text
for live displays and is not part of the JSONL record.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

from .chunks import TimedChunk


def _r(x: float | None) -> float | None:
    return None if x is None else round(float(x), 4)


@dataclass
class Event:
    type: ClassVar[str] = "event"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": self.type}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, TimedChunk):
                v = v.to_dict()
            elif isinstance(v, float):
                v = _r(v)
            elif f.name != "chunk" and hasattr(v, "__dataclass_fields__"):
                v = asdict(v)
            d[f.name] = v
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)


@dataclass
class ChunkEvent(Event):
    """A chunk was read: its tokens are now in the policy's KV cache."""

    type: ClassVar[str] = "chunk"
    index: int
    chunk: TimedChunk
    t_available: float
    t_start: float
    t_end: float
    tokens: int
    lag_s: float


@dataclass
class ThoughtEvent(Event):
    """The policy's streaming thought about chunk ``index`` (``capped``: the environment closed it).

    ``reason`` says why it ended: ``stop`` (the policy closed it), ``cap`` (the token cap, which the deadline may
    have lowered), ``deadline`` (cut because a new chunk was waiting past the deadline) or ``end`` (cut because
    the stream ended). ``group``: how many chunks this thought covers (> 1 after a catch-up read).
    """

    type: ClassVar[str] = "thought"
    index: int
    text: str
    tokens: int
    t_start: float
    t_end: float
    capped: bool = False
    reason: str = "stop"
    cap: int = 0
    group: int = 1
    tool_tokens: int = 0  # calculator results inside the thought (not in ``tokens``; the cap counts both)


@dataclass
class SkipEvent(Event):
    """No thought for chunk ``index``: the policy wrote ``<|skip|>`` or, with ``forced``, lag exceeded the budget."""

    type: ClassVar[str] = "skip"
    index: int
    t_start: float
    t_end: float
    tokens: int = 1
    forced: bool = False
    text: str = ""
    group: int = 1
    tool_tokens: int = 0


@dataclass
class DeltaEvent(Event):
    """Newly decoded text of the current thought / deep reasoning / answer (live display only)."""

    type: ClassVar[str] = "delta"
    phase: str
    index: int | None
    text: str
    t: float


@dataclass
class DeepEvent(Event):
    """Reasoning after end-of-stream. ``prefill_tokens`` are the tokens read first (everything, for read-then-think)."""

    type: ClassVar[str] = "deep"
    text: str
    tokens: int
    t_stream_end: float
    t_start: float
    t_prefill_end: float
    t_end: float
    prefill_tokens: int
    closed: bool = True
    tool_tokens: int = 0


@dataclass
class AnswerEvent(Event):
    """The final answer; ``delay_s`` runs from the end of the stream to the first answer token."""

    type: ClassVar[str] = "answer"
    text: str
    answer: str
    tokens: int
    t_first_token: float
    t_end: float
    delay_s: float
    delay_last_s: float
    tool_tokens: int = 0


@dataclass
class SummaryEvent(Event):
    """Metrics of one finished session (the last JSONL line)."""

    type: ClassVar[str] = "summary"
    answer: str
    mode: str
    clock: str
    chunks: int
    thoughts: int
    skips: int
    forced_skips: int
    stream_tokens: int
    deep_tokens: int
    answer_tokens: int
    input_tokens: int
    prefill_tokens: int
    prefill_per_input: float
    delay_s: float
    delay_last_s: float
    lag_s: float
    lag_avg_s: float
    format_violations: int
    stream_end_s: float
    wall_s: float
    #: the delay's parts (seconds): stream end -> the last chunk was available (ASR flush), -> the deep phase
    #: started decoding (queue drain: the thought in progress, reading the rest), deep decoding, answer's first token
    end_known_s: float = 0.0
    drain_s: float = 0.0
    deep_s: float = 0.0
    answer_first_s: float = 0.0
    deep_cut: bool = False  # the answer deadline lowered the deep cap
    caught_up: int = 0  # chunks read together with others (catch-up) instead of one by one
    cut_thoughts: int = 0  # thoughts cut at a deadline or by the end of the stream
    policy: str = ""
    question: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        extra = d.pop("extra") or {}
        d.update({k: (_r(v) if isinstance(v, float) else v) for k, v in extra.items()})
        return d


EVENT_TYPES: dict[str, type[Event]] = {
    cls.type: cls
    for cls in (ChunkEvent, ThoughtEvent, SkipEvent, DeltaEvent, DeepEvent, AnswerEvent, SummaryEvent)
}


def event_from_dict(d: dict[str, Any]) -> Event:
    """Inverse of ``Event.to_dict`` (unknown summary keys land in ``SummaryEvent.extra``)."""
    d = dict(d)
    kind = d.pop("type", None)
    if kind not in EVENT_TYPES:
        raise ValueError(f"unknown event type {kind!r}; expected one of {', '.join(EVENT_TYPES)}")
    cls = EVENT_TYPES[kind]
    names = {f.name for f in fields(cls)}
    if cls is ChunkEvent:
        d["chunk"] = TimedChunk.from_dict(d["chunk"])
    if cls is SummaryEvent:
        extra = {k: d.pop(k) for k in list(d) if k not in names}
        d["extra"] = {**(d.get("extra") or {}), **extra}
    unknown = set(d) - names
    if unknown:
        raise ValueError(f"unknown fields for {kind} event: {', '.join(sorted(unknown))}")
    return cls(**d)


def event_from_json(line: str) -> Event:
    return event_from_dict(json.loads(line))
