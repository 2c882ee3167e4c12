"""Adapters turn media into time-ordered :class:`~adasr_mm.chunks.TimedChunk` streams.

Each adapter registers a name, the file extensions it opens and a factory; ``--modality auto`` picks by extension.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adasr_mm.errors import InputError

from .base import ChunkSource


@dataclass(frozen=True)
class AdapterSpec:
    name: str
    extensions: tuple[str, ...]
    open: Callable[[str, Any], ChunkSource]
    description: str = ""


ADAPTERS: dict[str, AdapterSpec] = {}


def register_adapter(name: str, extensions: tuple[str, ...], description: str = ""
                     ) -> Callable[[Callable[[str, Any], ChunkSource]], Callable[[str, Any], ChunkSource]]:
    """Decorator: ``factory(path, config: AdasrConfig) -> ChunkSource`` becomes the adapter ``name``."""

    def deco(fn: Callable[[str, Any], ChunkSource]) -> Callable[[str, Any], ChunkSource]:
        ADAPTERS[name] = AdapterSpec(name, tuple(e.lower() for e in extensions), fn, description)
        return fn

    return deco


def supported() -> str:
    return "; ".join(f"{s.name} ({', '.join(s.extensions)})" for s in ADAPTERS.values())


def detect_modality(path: str) -> str:
    ext = Path(path).suffix.lower()
    for spec in ADAPTERS.values():
        if ext in spec.extensions:
            return spec.name
    kind = f"'{ext}'" if ext else "without an extension"
    raise InputError(f"cannot tell the modality of '{path}' (file type {kind}); supported: {supported()}; "
                     "or pass --modality")


def open_input(path: str, modality: str, config: Any) -> ChunkSource:
    """Open ``path`` with the adapter named ``modality`` (``auto``: by file extension)."""
    if not Path(path).exists():
        raise InputError(f"input file '{path}' does not exist")
    name = detect_modality(path) if modality == "auto" else modality
    if name not in ADAPTERS:
        raise InputError(f"unknown modality {modality!r}; available: auto, {', '.join(ADAPTERS)}")
    return ADAPTERS[name].open(path, config)


@register_adapter("text", (".txt", ".text", ".md"), "sentences timed at a reading speed")
def _open_text(path: str, config: Any) -> ChunkSource:
    from .text import TextSource

    return TextSource(path, config.text)


@register_adapter("audio", (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".aiff", ".aif",
                            ".mp4", ".mkv", ".webm", ".mov"), "streaming Whisper ASR (video files: their audio track)")
def _open_audio(path: str, config: Any) -> ChunkSource:
    from .audio import AudioSource

    return AudioSource(path, config.asr, config.audio)


__all__ = ["ADAPTERS", "AdapterSpec", "ChunkSource", "detect_modality", "open_input", "register_adapter"]
