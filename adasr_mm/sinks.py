"""Event sinks: the readable live trace for terminals and the JSONL record."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path
from typing import IO, Any

from .errors import InputError
from .events import (
    AnswerEvent,
    ChunkEvent,
    DeepEvent,
    DeltaEvent,
    Event,
    SkipEvent,
    SummaryEvent,
    ThoughtEvent,
)


class JsonlSink:
    """One JSON object per event (deltas excluded), flushed per line so a crash never loses written events."""

    def __init__(self, path: str | Path):
        p = Path(path)
        if p.is_dir():
            raise InputError(f"--output '{path}' is a directory; give a file path such as events.jsonl")
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            self._f: IO[str] = p.open("w", encoding="utf-8")
        except OSError as e:
            raise InputError(f"cannot write --output '{path}': {e.strerror}") from None
        self.path = p

    def __call__(self, ev: Event) -> None:
        if isinstance(ev, DeltaEvent):
            return
        self._f.write(ev.to_json() + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


class TracePrinter:
    """Human-readable live trace: chunks with times, thoughts as they are written, skips dimmed, the answer."""

    def __init__(self, out: IO[str] | None = None, color: bool | None = None, deep_preview: int = 0):
        self.out = out or sys.stdout
        if color is None:
            color = hasattr(self.out, "isatty") and self.out.isatty() and not os.environ.get("NO_COLOR")
        self.color = bool(color)
        self._open: str | None = None  # phase whose deltas are being printed

    def _c(self, code: str, s: str) -> str:
        return f"\033[{code}m{s}\033[0m" if self.color else s

    def _w(self, s: str) -> None:
        self.out.write(s)
        self.out.flush()

    def _close_line(self) -> None:
        if self._open is not None:
            self._w("\n")
            self._open = None

    def bold(self, s: str) -> str:
        return self._c("1", s)

    def line(self, s: str) -> None:
        self._close_line()
        self._w(s + "\n")

    def header(self, **info: Any) -> None:
        self._w(self._c("1", "adasr-mm") + " · " + " · ".join(f"{k} {v}" for k, v in info.items()) + "\n")

    def __call__(self, ev: Event) -> None:
        if isinstance(ev, DeltaEvent):
            if self._open != ev.phase:
                self._close_line()
                label = {"stream": "   ↳ ", "deep": self._c("36", "deep: "), "answer": self._c("1;32", "answer: ")}
                self._w(label.get(ev.phase, ""))
                self._open = ev.phase
            text = ev.text.replace("\n", " ")
            self._w(self._c("2", text) if ev.phase == "deep" else text)
            return
        if isinstance(ev, ChunkEvent):
            self._close_line()
            c = ev.chunk
            tag = "" if c.modality == "text" else f"{c.modality} "
            lag = f"  (lag {ev.lag_s:.1f}s)" if ev.lag_s >= 0.05 else ""
            self._w(self._c("33", f"[{tag}{c.start:6.1f}–{c.end:6.1f}s]") + f" {c.text}" + self._c("2", lag) + "\n")
        elif isinstance(ev, ThoughtEvent):
            if self._open == "stream":
                self._w(self._c("2", f"  ({ev.tokens} tok{_why(ev)})"))
                self._close_line()
            else:
                self._w(f"   ↳ {ev.text}" + self._c("2", f"  ({ev.tokens} tok{_why(ev)})") + "\n")
        elif isinstance(ev, SkipEvent):
            self._close_line()
            why = "skip (lag over budget)" if ev.forced else "skip"
            self._w(self._c("2", f"   · {why}") + "\n")
        elif isinstance(ev, DeepEvent):
            if self._open == "deep":
                self._close_line()
            else:
                self._close_line()
                if ev.text:
                    self._w(self._c("36", "deep: ") + self._c("2", ev.text.replace("\n", " ")) + "\n")
            self._w(self._c("2", f"   ({ev.tokens} deep tok, read {ev.prefill_tokens} tok at stream end"
                                 f"{'' if ev.closed else ', closed by the environment'})") + "\n")
        elif isinstance(ev, AnswerEvent):
            if self._open == "answer":
                self._close_line()
            else:
                self._w(self._c("1;32", "answer: ") + ev.text.replace("\n", " ") + "\n")
            self._w(self._c("1", f"=> {ev.answer or '(none)'}") +
                    self._c("2", f"   first answer token {ev.delay_s:.2f}s after the stream ended, "
                                 f"last {ev.delay_last_s:.2f}s") + "\n")
        elif isinstance(ev, SummaryEvent):
            self._close_line()
            self._w(format_summary(ev) + "\n")


def _why(ev: ThoughtEvent) -> str:
    parts = [f"{ev.group} chunks"] if ev.group > 1 else []
    parts += {"cap": ["capped"], "deadline": ["cut at the deadline"], "end": ["cut: the stream ended"]}.get(
        ev.reason, ["capped"] if ev.capped else [])
    return "".join(", " + p for p in parts)


def format_summary(s: SummaryEvent) -> str:
    line = (
        f"summary: mode {s.mode} · clock {s.clock} · chunks {s.chunks} · thoughts {s.thoughts} · skips {s.skips}"
        f" · stream {s.stream_tokens} tok · deep {s.deep_tokens} tok · answer {s.answer_tokens} tok"
        f" · prefill/input {s.prefill_per_input:.2f} · lag max {s.lag_s:.2f}s · delay {s.delay_s:.2f}s"
        f" · format violations {s.format_violations}"
    )
    if s.stream_end_s or s.delay_s:
        line += (f"\n         delay parts: end known +{s.end_known_s:.2f}s · queue drain {s.drain_s:.2f}s · "
                 f"deep {s.deep_s:.2f}s · answer {s.answer_first_s:.2f}s · lag avg {s.lag_avg_s:.2f}s · "
                 f"forced skips {s.forced_skips} · caught up {s.caught_up} chunks · cut thoughts {s.cut_thoughts}"
                 + (" · deep reasoning cut short by the answer deadline" if s.deep_cut else ""))
    x = s.extra
    if x.get("input_error"):
        line += f"\n         input error: {x['input_error']}"
    if "asr_rtf" in x:
        line += (f"\n         asr: rtf {x['asr_rtf']:.3f} · commit latency avg {x['commit_latency_avg_s']:.2f}s"
                 f" · max {x['commit_latency_max_s']:.2f}s · {x.get('asr_words', 0)} words"
                 + (f" · {x['asr_threads']} thread(s)" if x.get("asr_threads") else ""))
    return line


def render_trace(events: list[Event]) -> str:
    """The trace of finished events as text (no color), e.g. for logs and tests."""
    buf = io.StringIO()
    p = TracePrinter(buf, color=False)
    for ev in events:
        p(ev)
    return buf.getvalue()
