"""adasr-mm: streaming reasoning over live audio, video and text.

The policy thinks while the media plays and deliberates once it ends, so the answer comes seconds after the
stream stops. Data flows one way: adapter -> :class:`TimedChunk` -> :class:`Session` -> policy -> events.
"""

from .chunks import TimedChunk
from .errors import AdasrError, ConfigError, InputError, ModelLoadError
from .events import (
    AnswerEvent,
    ChunkEvent,
    DeepEvent,
    DeltaEvent,
    Event,
    SkipEvent,
    SummaryEvent,
    ThoughtEvent,
    event_from_dict,
    event_from_json,
)

__version__ = "0.1.0"

__all__ = [
    "AdasrError", "AnswerEvent", "ChunkEvent", "ConfigError", "DeepEvent", "DeltaEvent", "Event", "InputError",
    "ModelLoadError", "SkipEvent", "StreamingAgent", "SummaryEvent", "ThoughtEvent", "TimedChunk",
    "event_from_dict", "event_from_json", "replay", "load_config", "AdasrConfig", "Session",
]


def __getattr__(name: str):  # heavy imports (torch, transformers) only when used
    if name == "StreamingAgent":
        from .agent import StreamingAgent

        return StreamingAgent
    if name == "replay":
        from .replay import replay

        return replay
    if name in ("load_config", "AdasrConfig"):
        from . import config

        return getattr(config, name)
    if name == "Session":
        from .session import Session

        return Session
    raise AttributeError(name)
