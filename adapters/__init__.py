"""Adapters turn media into time-ordered :class:`~adasr_mm.chunks.TimedChunk` streams.

Each adapter registers a name, the file extensions it opens and a factory; ``--modality auto`` picks by extension
(containers, and files with no or an unknown extension, by what PyAV finds inside).
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


def supported_extensions() -> tuple[str, ...]:
    """Every file extension some adapter opens (the one list: CLI help, the app's upload filter, errors)."""
    seen: dict[str, None] = {}
    for spec in ADAPTERS.values():
        seen.update(dict.fromkeys(spec.extensions))
    return tuple(seen)


def supported() -> str:
    return "; ".join(f"{s.name} ({', '.join(s.extensions)})" for s in ADAPTERS.values() if s.name != "av")


def detect_modality(path: str) -> str:
    ext = Path(path).suffix.lower()
    for spec in ADAPTERS.values():  # first registration wins (video before av for containers)
        if ext in spec.extensions:
            return spec.name
    kind = f"'{ext}'" if ext else "without an extension"
    raise InputError(f"cannot tell the modality of '{path}' (file type {kind}); supported: {supported()}; "
                     "or pass --modality")


def open_input(path: str, modality: str, config: Any) -> ChunkSource:
    """Open ``path`` with the adapter named ``modality`` (``auto``: by file extension)."""
    if not Path(path).exists():
        raise InputError(f"input file '{path}' does not exist")
    if Path(path).is_dir():
        raise InputError(f"'{path}' is a directory, not a media file")
    name = modality
    if modality == "auto":
        ext = Path(path).suffix.lower()
        if ext in CONTAINER_EXTENSIONS:
            name = _container_modality(path)
        elif ext not in supported_extensions():  # no or an unknown extension: what is inside decides
            name = _probed_modality(path) or detect_modality(path)
        else:
            name = detect_modality(path)
    if name not in ADAPTERS:
        raise InputError(f"unknown modality {modality!r}; available: auto, {', '.join(ADAPTERS)}")
    return ADAPTERS[name].open(path, config)


@register_adapter("text", (".txt", ".text", ".md"), "sentences timed at a reading speed")
def _open_text(path: str, config: Any) -> ChunkSource:
    from .text import TextSource

    return TextSource(path, config.text)


@register_adapter("audio", (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".aiff", ".aif", ".wma"),
                  "streaming Whisper ASR (also the soundtrack of a video file)")
def _open_audio(path: str, config: Any) -> ChunkSource:
    from .audio import AudioSource

    return AudioSource(path, config.asr, config.audio)


#: Containers that may hold video, audio or both: ``auto`` looks inside to choose av, video or audio.
CONTAINER_EXTENSIONS = (".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".gif")


@register_adapter("video", CONTAINER_EXTENSIONS, "frames sampled per window and described")
def _open_video(path: str, config: Any) -> ChunkSource:
    from .video import VideoSource

    return VideoSource(path, config.video)


@register_adapter("av", CONTAINER_EXTENSIONS, "soundtrack (ASR) and frames (describer) merged by start time")
def _open_av(path: str, config: Any) -> ChunkSource:
    from .av import AVSource

    return AVSource(path, config.asr, config.audio, config.video)


def _probed_modality(path: str) -> str | None:
    """av when the file has both tracks, else whichever it has; None when PyAV cannot read it or it holds neither
    (so a download saved without an extension is opened by what is inside)."""
    import av

    try:
        with av.open(path) as c:
            if not (c.streams.audio or c.streams.video):
                return None
            has_v = any(s.type == "video" and not (s.disposition & av.stream.Disposition.attached_pic)
                        for s in c.streams)
            has_a = bool(c.streams.audio)
    except Exception:  # noqa: BLE001 - not media: the caller decides what to say
        return None
    if has_v and has_a:
        return "av"
    return "audio" if has_a and not has_v else "video"


def _container_modality(path: str) -> str:
    """:func:`_probed_modality` of a container; unreadable ones go to the video adapter, which names the problem."""
    return _probed_modality(path) or "video"


__all__ = ["ADAPTERS", "AdapterSpec", "ChunkSource", "detect_modality", "open_input", "register_adapter",
           "supported", "supported_extensions"]
