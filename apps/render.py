"""What the page shows: the live trace (HTML), the answer panel, live metrics, the timeline PNG and the JSONL.

Pure functions of a run's events (plus the text being written), so the display is the same whichever handler
(microphone, webcam, Stop, file) asks for it, and tests can call them without a browser.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from adasr_mm.events import (
    AnswerEvent,
    ChunkEvent,
    DeepEvent,
    DeltaEvent,
    Event,
    SkipEvent,
    SummaryEvent,
    ThoughtEvent,
)

CSS = """
#trace .ev {font-family: ui-monospace, monospace; font-size: 0.9em; margin: 2px 0; white-space: pre-wrap;}
#trace .chunk .t {color: #b7791f;}
#trace .thought {margin-left: 1.5em;}
#trace .skip {margin-left: 1.5em; opacity: 0.4;}
#trace .partial {opacity: 0.7; font-style: italic;}
#trace .lag, #trace .tok {opacity: 0.55; font-size: 0.85em;}
#trace .deep {color: #2c7a7b; opacity: 0.8;}
#answer .answer-value {font-size: 1.6em; font-weight: 700;}
#answer .answer-text, #answer .delay {opacity: 0.75;}
#metrics table {font-size: 0.85em; width: auto;}
#metrics td {padding: 1px 10px !important;}
"""

MAX_TRACE_ITEMS = 400  # the page keeps the newest; the JSONL keeps everything


def _e(s: str) -> str:
    return html.escape(s or "")


def trace_html(events: list[Event], partial: dict[str, str] | None = None) -> str:
    """Chunks with their media times, thoughts under them, skips dimmed, the text being written in italics."""
    rows: list[str] = []
    for ev in events:
        if isinstance(ev, ChunkEvent):
            c = ev.chunk
            lag = f' <span class="lag">lag {ev.lag_s:.1f}s</span>' if ev.lag_s >= 0.05 else ""
            rows.append(f'<div class="ev chunk" data-index="{ev.index}"><span class="t">[{c.modality} '
                        f'{c.start:.1f}–{c.end:.1f}s]</span> {_e(c.text)}{lag}</div>')
        elif isinstance(ev, ThoughtEvent):
            rows.append(f'<div class="ev thought" data-index="{ev.index}">↳ {_e(ev.text)} '
                        f'<span class="tok">({ev.tokens} tok{", capped" if ev.capped else ""})</span></div>')
        elif isinstance(ev, SkipEvent):
            why = "skip (lag over budget)" if ev.forced else "skip"
            rows.append(f'<div class="ev skip" data-index="{ev.index}">· {why}</div>')
        elif isinstance(ev, DeepEvent):
            rows.append(f'<div class="ev deep">deep ({ev.tokens} tok): {_e(ev.text)}</div>')
    for key, text in (partial or {}).items():
        if key.startswith("stream"):
            rows.append(f'<div class="ev thought partial">↳ {_e(text)}…</div>')
        elif key == "deep":
            rows.append(f'<div class="ev deep partial">deep: {_e(text)}…</div>')
    if not rows:
        return '<div class="empty">The trace appears here: chunks as they arrive, thoughts, skips.</div>'
    shown = rows[-MAX_TRACE_ITEMS:]
    more = f'<div class="ev skip">… {len(rows) - len(shown)} earlier lines in the JSONL</div>' if len(rows) > len(
        shown) else ""
    return more + "".join(shown)


def answer_html(events: list[Event], partial: dict[str, str] | None = None) -> str:
    """The deep reasoning and the answer, with its delay after the end of the stream."""
    partial = partial or {}
    deep = next((e for e in events if isinstance(e, DeepEvent)), None)
    ans = next((e for e in events if isinstance(e, AnswerEvent)), None)
    parts: list[str] = []
    if deep is not None:
        parts.append(f'<details class="deep-box" open><summary>deep reasoning ({deep.tokens} tok)</summary>'
                     f'<div class="deep-text">{_e(deep.text) or "(none)"}</div></details>')
    elif "deep" in partial:
        parts.append(f'<details class="deep-box" open><summary>deep reasoning…</summary>'
                     f'<div class="deep-text">{_e(partial["deep"])}</div></details>')
    if ans is not None:
        value = ans.answer or ans.text or "(empty answer)"
        parts.append(f'<div class="final"><div class="answer-value">{_e(value)}</div>'
                     f'<div class="answer-text">{_e(ans.text)}</div>'
                     f'<div class="delay">first answer token {ans.delay_s:.2f} s after the stream ended</div></div>')
    elif "answer" in partial:
        parts.append(f'<div class="writing">answer: {_e(partial["answer"])}…</div>')
    return "".join(parts) or '<div class="empty">The answer appears here right after the stream ends.</div>'


def metrics(events: list[Event], t_stop: float | None = None) -> dict[str, float | int]:
    """Live figures from the events so far (the summary's, once it exists)."""
    chunks = [e for e in events if isinstance(e, ChunkEvent)]
    thoughts = [e for e in events if isinstance(e, ThoughtEvent)]
    skips = [e for e in events if isinstance(e, SkipEvent)]
    m: dict[str, float | int] = {
        "chunks": len(chunks), "thoughts": len(thoughts), "skips": len(skips),
        "stream tokens": sum(e.tokens for e in thoughts) + sum(e.tokens for e in skips),
        "lag last (s)": chunks[-1].lag_s if chunks else 0.0,
        "lag max (s)": max((e.lag_s for e in chunks), default=0.0),
    }
    for e in events:
        if isinstance(e, DeepEvent):
            m["deep tokens"] = e.tokens
        elif isinstance(e, AnswerEvent):
            m["answer tokens"] = e.tokens
            m["delay (s)"] = e.delay_s
            if t_stop is not None:
                m["stop → answer (s)"] = e.t_first_token - t_stop
        elif isinstance(e, SummaryEvent):
            if "asr_rtf" in e.extra:
                m["ASR real-time factor"] = e.extra["asr_rtf"]
            m["format violations"] = e.format_violations
    return m


def metrics_html(events: list[Event], t_stop: float | None = None) -> str:
    rows = "".join(f"<tr><td>{_e(k)}</td><td>{v:.2f}</td></tr>" if isinstance(v, float) else
                   f"<tr><td>{_e(k)}</td><td>{v}</td></tr>" for k, v in metrics(events, t_stop).items())
    return f'<table class="metrics">{rows}</table>'


def write_jsonl(events: list[Event], path: str | Path) -> str:
    """The run's events, one JSON object per line (the same record as ``adasr-mm run --output``)."""
    lines = [e.to_json() for e in events if not isinstance(e, DeltaEvent)]
    Path(path).write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")
    return str(path)


def timeline_png(events: list[Event], path: str | Path, title: str = "", media_axis: bool = True) -> str:
    """Chunks (by modality) vs thoughts/skips vs deep reasoning and answer on the session clock.

    ``media_axis``: the clock runs with the media (live, realtime, simulated), so a chunk is drawn over its media
    span; otherwise (instant replay) media time means nothing on this axis and a chunk is drawn when it was read.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 2.8), dpi=100)
    colors = {"audio": "#dd8452", "video": "#55a868", "text": "#4c72b0"}
    rows = {"chunks": 3, "thoughts": 2, "deep / answer": 1}
    stream_end = None
    for e in events:
        if isinstance(e, ChunkEvent):
            c = e.chunk
            start, end = (c.start, c.end) if media_axis else (e.t_start, e.t_end)
            ax.broken_barh([(start, max(end - start, 0.05))], (rows["chunks"] - 0.35, 0.7),
                           color=colors.get(c.modality, "grey"), alpha=0.8)
        elif isinstance(e, ThoughtEvent):
            ax.broken_barh([(e.t_start, max(e.t_end - e.t_start, 0.05))], (rows["thoughts"] - 0.35, 0.7),
                           color="#8172b3")
        elif isinstance(e, SkipEvent):
            ax.broken_barh([(e.t_start, max(e.t_end - e.t_start, 0.05))], (rows["thoughts"] - 0.35, 0.7),
                           color="#bbbbbb", alpha=0.6)
        elif isinstance(e, DeepEvent):
            stream_end = e.t_stream_end
            ax.broken_barh([(e.t_start, max(e.t_end - e.t_start, 0.05))], (rows["deep / answer"] - 0.35, 0.7),
                           color="#2c7a7b")
        elif isinstance(e, AnswerEvent):
            ax.broken_barh([(e.t_first_token, max(e.t_end - e.t_first_token, 0.05))],
                           (rows["deep / answer"] - 0.35, 0.7), color="#c44e52")
    if stream_end is not None:
        ax.axvline(stream_end, color="black", linestyle="--", linewidth=1)
        ax.text(stream_end, 3.55, " stream end", fontsize=8, va="bottom")
    ax.set_yticks(list(rows.values()), list(rows.keys()))
    ax.set_ylim(0.4, 3.9)
    ax.set_xlabel("time (s, session clock)")
    ax.grid(axis="x", alpha=0.3)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return str(path)


def status_md(run: Any, extra: str = "") -> str:
    """One line on what the run is doing (or why it failed)."""
    if run is None:
        return extra or "Type a question, then record (Live) or upload a file (File)."
    if run.status == "error":
        return f"**Error:** {run.error}"
    note = f"⚠️ {run.notice}  \n" if run.notice else ""
    if run.status == "cancelled":
        return note + "Cancelled."
    if run.status == "done":
        ans = run.answer
        return note + (f"Answered: **{ans.answer or '(none)'}**" if ans else "Done.")
    if run.kind == "live" and not run.ended:
        return note + f"Listening… {run.elapsed:.1f} s — press **Stop** (or stop recording) for the answer."
    return note + ("Thinking after the end of the stream…" if run.t_stop is not None or run.kind == "live"
                   else "Streaming the file…")
