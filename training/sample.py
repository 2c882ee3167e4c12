"""`Sample`: one training/eval example — a question, its answer, and the stream it is asked about.

A sample carries its stream in one of three forms: ready ``chunks`` (text tasks, or audio/video after
``adasr-mm prepare`` cached their adapter output), ``context`` text still to be chunked, or a ``media`` path
(audio/video) that an adapter must process first. ``teacher`` holds per-chunk reference thoughts (None = skip) for
programmatic SFT traces when the task knows them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from adasr_mm.chunks import TimedChunk

MODALITIES = ("text", "audio", "video")


@dataclass
class Sample:
    id: str
    question: str
    answer: str
    modality: str = "text"
    chunks: list[TimedChunk] | None = None
    context: str | None = None
    media: str | None = None
    duration: float | None = None
    #: per chunk (aligned with ``chunks``): a short reference thought, or None where an ideal policy skips
    teacher: list[str | None] | None = None
    #: brief reference reasoning for the deep phase (before the boxed answer)
    teacher_deep: str | None = None
    #: reference reasoning of a read-then-think policy (everything read first), for mixed SFT traces
    teacher_rtt: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise ValueError(f"sample {self.id}: modality must be one of {', '.join(MODALITIES)}, got {self.modality!r}")
        if not str(self.question).strip():
            raise ValueError(f"sample {self.id}: empty question")
        if str(self.answer).strip() == "":
            raise ValueError(f"sample {self.id}: empty answer")
        if self.chunks is None and self.context is None and self.media is None:
            raise ValueError(f"sample {self.id}: needs chunks, context or media")
        if self.teacher is not None and self.chunks is not None and len(self.teacher) != len(self.chunks):
            raise ValueError(f"sample {self.id}: {len(self.teacher)} teacher thoughts for {len(self.chunks)} chunks")

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id, "question": self.question, "answer": self.answer,
                             "modality": self.modality}
        for k in ("context", "media", "duration", "teacher", "teacher_deep", "teacher_rtt"):
            v = getattr(self, k)
            if v is not None:
                d[k] = v
        if self.chunks is not None:
            d["chunks"] = [c.to_dict() for c in self.chunks]
        if self.meta:
            d["meta"] = self.meta
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Sample:
        chunks = [TimedChunk.from_dict(c) for c in d["chunks"]] if d.get("chunks") is not None else None
        return cls(id=str(d["id"]), question=d["question"], answer=str(d["answer"]), modality=d.get("modality", "text"),
                   chunks=chunks, context=d.get("context"), media=d.get("media"), duration=d.get("duration"),
                   teacher=d.get("teacher"), teacher_deep=d.get("teacher_deep"),
                   teacher_rtt=d.get("teacher_rtt"), meta=dict(d.get("meta") or {}))
