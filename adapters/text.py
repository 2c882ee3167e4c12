"""Text adapter: a document read aloud at a fixed speed becomes sentence chunks.

Both papers stream text at 150 words/minute; a chunk is one sentence (long sentences are cut at clause
boundaries, then at ``max_words``), timed by its word count. This is the reference adapter the audio and video
adapters mirror: lazy, time-ordered, with the media duration known.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adasr_mm.chunks import TimedChunk
from adasr_mm.errors import InputError


@dataclass
class TextAdapterConfig:
    """How text is cut into chunks and timed."""

    words_per_minute: float = field(default=150.0, metadata={"help": "reading speed that times text chunks"})
    max_words: int = field(default=40, metadata={"help": "longest chunk; longer sentences are split"})
    min_words: int = field(default=3, metadata={"help": "shorter sentences are merged into the next one"})
    max_bytes: int = field(default=50_000_000, metadata={"help": "refuse text files larger than this"})

    def __post_init__(self) -> None:
        if not self.words_per_minute > 0:
            raise ValueError(f"words_per_minute must be > 0, got {self.words_per_minute}")
        if self.max_words < 1:
            raise ValueError(f"max_words must be >= 1, got {self.max_words}")
        if self.min_words < 1 or self.min_words > self.max_words:
            raise ValueError(f"min_words must be in [1, max_words={self.max_words}], got {self.min_words}")
        if self.max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, got {self.max_bytes}")


_ABBREVIATIONS = {
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "e.g", "i.e", "inc", "ltd", "co", "no",
    "fig", "approx", "dept", "mt", "ft", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct",
    "nov", "dec", "a.m", "p.m", "u.s",
}
_BOUNDARY = re.compile(r"([.!?…]+[\"'”’)\]]*)\s+")


def split_sentences(text: str) -> list[str]:
    """Split prose into sentences: terminal punctuation + space, not after abbreviations/initials; blank lines."""
    out: list[str] = []
    for para in re.split(r"\n\s*\n", text):
        para = " ".join(para.split())
        if not para:
            continue
        start = 0
        for m in _BOUNDARY.finditer(para):
            end = m.end(1)
            before = para[start:end]
            last_word = before.rsplit(" ", 1)[-1].rstrip(".!?…\"'”’)]").lower()
            nxt = para[m.end() : m.end() + 1]
            if m.group(1).startswith(".") and (last_word in _ABBREVIATIONS or re.fullmatch(r"[a-z]", last_word)):
                continue  # "Dr. Smith", "J. K. Rowling"
            if nxt and nxt.islower():
                continue  # "e.g. this" / ellipsis inside a sentence
            out.append(before.strip())
            start = m.end()
        tail = para[start:].strip()
        if tail:
            out.append(tail)
    return out


def _split_long(sentence: str, max_words: int) -> list[str]:
    words = sentence.split()
    if len(words) <= max_words:
        return [sentence]
    parts: list[str] = []
    cur: list[str] = []
    for w in words:
        cur.append(w)
        at_clause = w.endswith((",", ";", ":", "—")) and len(cur) >= max_words // 2
        if at_clause or len(cur) >= max_words:
            parts.append(" ".join(cur))
            cur = []
    if cur:
        parts.append(" ".join(cur))
    return parts


def segment_text(text: str, max_words: int = 40, min_words: int = 3) -> list[str]:
    """Sentences, long ones split, very short ones merged forward (a lone "Yes." is not worth a thought)."""
    pieces = [p for s in split_sentences(text) for p in _split_long(s, max_words)]
    out: list[str] = []
    carry = ""
    for p in pieces:
        p = f"{carry} {p}".strip() if carry else p
        if len(p.split()) < min_words:
            carry = p
            continue
        out.append(p)
        carry = ""
    if carry:
        if out and len(out[-1].split()) + len(carry.split()) <= max_words:
            out[-1] = f"{out[-1]} {carry}"
        else:
            out.append(carry)
    return out


def chunks_from_text(text: str, config: TextAdapterConfig | None = None, source: str = "",
                     start: float = 0.0) -> Iterator[TimedChunk]:
    """Sentence chunks timed at ``words_per_minute`` from ``start``."""
    cfg = config or TextAdapterConfig()
    sec_per_word = 60.0 / cfg.words_per_minute
    t = start
    for i, sentence in enumerate(segment_text(text, cfg.max_words, cfg.min_words)):
        dur = len(sentence.split()) * sec_per_word
        yield TimedChunk(start=t, end=t + dur, text=sentence, modality="text", source=source, index=i)
        t += dur


def chunks_from_iterable(items: Iterable[Any], config: TextAdapterConfig | None = None, source: str = ""
                         ) -> Iterator[TimedChunk]:
    """Anything iterable -> chunks: ``TimedChunk`` (kept), ``(start, end, text)``, ``{"start","end","text"}``, or
    plain strings (one chunk each, timed at the reading speed after the previous chunk)."""
    cfg = config or TextAdapterConfig()
    t = 0.0
    for i, item in enumerate(items):
        if isinstance(item, TimedChunk):
            chunk = item
        elif isinstance(item, str):
            dur = max(1, len(item.split())) * 60.0 / cfg.words_per_minute
            chunk = TimedChunk(t, t + dur, item, source=source)
        elif isinstance(item, dict):
            chunk = TimedChunk(item["start"], item["end"], item["text"], modality=item.get("modality", "text"),
                               source=item.get("source", source))
        elif isinstance(item, (tuple, list)) and len(item) == 3:
            chunk = TimedChunk(item[0], item[1], item[2], source=source)
        else:
            raise InputError(f"item {i} is not a chunk, a string, a (start, end, text) tuple or a dict: {item!r}")
        if chunk.index is None:
            chunk.index = i
        t = chunk.end
        yield chunk


def read_text_file(path: str | Path, max_bytes: int = 50_000_000) -> str:
    """Read a UTF-8 text file, with a specific error for each way it can be unusable."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"input file '{path}' does not exist")
    if p.is_dir():
        raise InputError(f"input '{path}' is a directory, not a file")
    size = p.stat().st_size
    if size > max_bytes:
        raise InputError(f"text file '{path}' is {size / 1e6:.1f} MB, over the {max_bytes / 1e6:.0f} MB limit "
                         "(text.max_bytes)")
    data = p.read_bytes()
    if b"\x00" in data[:65536]:
        raise InputError(f"'{path}' is a binary file, not UTF-8 text (found NUL bytes)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"'{path}' is not UTF-8 text (undecodable byte at offset {e.start})") from None
    if not text.strip():
        raise InputError(f"input file '{path}' is empty: there is no text to stream")
    return text


class TextSource:
    """A ``.txt``/``.md`` file as a lazy chunk stream (the file is read and validated on construction)."""

    def __init__(self, path: str | Path, config: TextAdapterConfig | None = None):
        self.config = config or TextAdapterConfig()
        self.path = str(path)
        self.text = read_text_file(path, self.config.max_bytes)
        words = sum(len(s.split()) for s in segment_text(self.text, self.config.max_words, self.config.min_words))
        if words == 0:
            raise InputError(f"input file '{path}' has no words to stream")
        self.duration: float | None = words * 60.0 / self.config.words_per_minute

    def __iter__(self) -> Iterator[TimedChunk]:
        return chunks_from_text(self.text, self.config, source=self.path)
