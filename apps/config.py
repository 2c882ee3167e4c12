"""App settings: the runtime config tree plus an ``app`` section for the server's limits.

:class:`AppSettings` extends :class:`~adasr_mm.config.AdasrConfig` with one more section, so the same machinery
gives YAML (``app: {port: 7861}``), ``app.port=7861`` overrides and ``--port`` flags, and the agent accepts the
settings object as its config unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from adasr_mm.config import AdasrConfig, load_config

FILE_CLOCKS = ("realtime", "instant")


@dataclass
class AppConfig:
    """Where the app listens and the limits that keep one user from starving the others."""

    host: str = field(default="127.0.0.1", metadata={"help": "interface to bind (127.0.0.1 = this machine only)"})
    port: int = field(default=7860, metadata={"help": "TCP port (0 = any free port)"})
    share: bool = field(default=False, metadata={"help": "create a public Gradio share link (off unless --share)"})
    concurrency_limit: int = field(
        default=16, metadata={"help": "event handlers of one kind running at once (Gradio concurrency_limit)"})
    max_queue: int = field(default=64, metadata={"help": "requests waiting in the Gradio queue before refusing"})
    max_runs: int = field(
        default=8, metadata={"help": "streams computing at once across all users; more get a 'busy' message"})
    max_upload_mb: float = field(default=50.0, metadata={"help": "largest accepted upload (MB)"})
    max_stream_s: float = field(
        default=120.0, metadata={"help": "longest live stream or file (s); a live stream is stopped and answered"})
    audio_every_s: float = field(default=0.5, metadata={"help": "microphone block sent to the server every (s)"})
    video_every_s: float = field(default=0.5, metadata={"help": "webcam frame sent to the server every (s)"})
    file_clock: str = field(default="realtime", metadata={"help": "default clock for uploaded files: realtime "
                                                                  "(plays at media speed) or instant"})
    batching: bool = field(
        default=True,
        metadata={"help": "run concurrent sessions' model calls batched in one decode scheduler (continuous "
                          "batching); false = each session at batch 1, sharing the model pass by pass"})

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in [0, 65535], got {self.port}")
        for name in ("concurrency_limit", "max_queue", "max_runs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_upload_mb", "max_stream_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("audio_every_s", "video_every_s"):
            if not 0.1 <= getattr(self, name) <= 5:
                raise ValueError(f"{name} must be in [0.1, 5], got {getattr(self, name)}")
        if self.file_clock not in FILE_CLOCKS:
            raise ValueError(f"file_clock must be one of {', '.join(FILE_CLOCKS)}, got {self.file_clock!r}")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


@dataclass
class ServeConfig:
    """The ``serve`` section: where to listen and what a client may use."""

    host: str = field(default="127.0.0.1", metadata={"help": "interface to bind (127.0.0.1 = this machine only)"})
    port: int = field(default=8000, metadata={"help": "TCP port (0 = any free port)"})
    api_key: str = field(default="", metadata={"help": "require 'Authorization: Bearer KEY' (required off loopback)"})
    max_sessions: int = field(default=8, metadata={"help": "concurrent WebSocket sessions"})
    max_message_bytes: int = field(default=1_048_576, metadata={"help": "largest client message (bytes)"})
    idle_timeout_s: float = field(default=60.0, metadata={"help": "close a session silent for this long"})
    max_session_s: float = field(default=600.0, metadata={"help": "longest session (s of wall time)"})
    batching: bool = field(
        default=True,
        metadata={"help": "run concurrent sessions' model calls batched in one decode scheduler (continuous "
                          "batching); false = each session at batch 1, sharing the model pass by pass"})

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in [0, 65535], got {self.port}")
        for name in ("max_sessions", "max_message_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("idle_timeout_s", "max_session_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")


@dataclass
class ServeSettings(AdasrConfig):
    """Every runtime section plus ``serve``."""

    serve: ServeConfig = field(default_factory=ServeConfig)


def load_serve_settings(source: str | Path | dict[str, Any] | None = None, overrides: list[str] | None = None
                        ) -> ServeSettings:
    return cast(ServeSettings, load_config(source, overrides, ServeSettings()))


@dataclass
class AppSettings(AdasrConfig):
    """Every runtime section plus ``app``."""

    app: AppConfig = field(default_factory=AppConfig)


def load_settings(source: str | Path | dict[str, Any] | None = None, overrides: list[str] | None = None
                  ) -> AppSettings:
    """Defaults <- YAML file or dict <- ``section.key=value`` overrides (raises ConfigError on bad keys)."""
    return cast(AppSettings, load_config(source, overrides, AppSettings()))
