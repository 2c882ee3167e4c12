"""`TimedChunk`: the one unit of input that flows from adapters into sessions.

Every modality ends up here: a span of media time with the text the policy reads (a sentence of speech, a
description of a second of video, a sentence of text). Frames/audio ride along for policies that can consume
them directly, but they are never serialised to JSON (only their shapes are).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MODALITIES = ("text", "audio", "video")


@dataclass
class TimedChunk:
    """A piece of the input stream, available to the policy at media time ``end``."""

    start: float
    end: float
    text: str
    modality: str = "text"
    source: str = ""
    index: int | None = None
    frames: np.ndarray | None = field(default=None, repr=False)
    frame_times: list[float] | None = field(default=None, repr=False)
    audio: np.ndarray | None = field(default=None, repr=False)
    sample_rate: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.start = float(self.start)
        self.end = float(self.end)
        if not (math.isfinite(self.start) and math.isfinite(self.end)):
            raise ValueError(f"chunk times must be finite, got start={self.start} end={self.end}")
        if self.start < 0 or self.end < self.start:
            raise ValueError(f"chunk times must satisfy 0 <= start <= end, got start={self.start} end={self.end}")
        if self.modality not in MODALITIES:
            raise ValueError(f"unknown chunk modality {self.modality!r}; expected one of {', '.join(MODALITIES)}")
        if not isinstance(self.text, str):
            raise TypeError(f"chunk text must be str, got {type(self.text).__name__}")

    @property
    def duration(self) -> float:
        return self.end - self.start

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "start": round(self.start, 4),
            "end": round(self.end, 4),
            "text": self.text,
            "modality": self.modality,
            "source": self.source,
            "index": self.index,
        }
        if self.frames is not None:
            d["frames_shape"] = list(np.shape(self.frames))
        if self.frame_times is not None:
            d["frame_times"] = [round(float(t), 4) for t in self.frame_times]
        if self.audio is not None:
            d["audio_samples"] = int(np.shape(self.audio)[0])
            d["sample_rate"] = self.sample_rate
        if self.meta:
            d["meta"] = self.meta
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TimedChunk:
        return cls(
            start=d["start"],
            end=d["end"],
            text=d["text"],
            modality=d.get("modality", "text"),
            source=d.get("source", ""),
            index=d.get("index"),
            frame_times=d.get("frame_times"),
            sample_rate=d.get("sample_rate"),
            meta=dict(d.get("meta") or {}),
        )
