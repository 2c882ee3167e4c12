"""``adasr-mm run`` as a library function: open a media file, stream it through a session, print and record."""

from __future__ import annotations

import sys
from typing import TextIO

from .config import AdasrConfig
from .session import SessionResult


def run_media(path: str, question: str, cfg: AdasrConfig, output: str | None = None, quiet: bool = False,
              out: TextIO | None = None) -> SessionResult:
    """Stream ``path`` through a fresh session of the configured policy on ``cfg.run.clock``.

    Prints the live trace (or, with ``quiet``, only the summary line) to ``out`` and writes every event to the
    JSONL file ``output``. The input is validated before any model loads. If the input fails mid-stream, the
    session still ends on what was read (and the JSONL keeps it), then the error is raised.
    """
    from .agent import StreamingAgent, open_media
    from .pipeline import iter_pipeline
    from .sinks import JsonlSink, TracePrinter, format_summary

    out = out or sys.stdout
    source = open_media(path, cfg)  # validates the input (and splits the cores) before loading any model
    agent = StreamingAgent.from_pretrained(config=cfg)
    printer = TracePrinter(out)
    if not quiet:
        printer.header(policy=agent.policy.name, mode=cfg.session.mode, clock=cfg.run.clock, input=path)
        printer.line(printer.bold("Q: ") + question)
    sink = JsonlSink(output) if output else None
    session = agent.session(question, clock=cfg.run.clock, emit_deltas=not quiet)
    try:
        for ev in iter_pipeline(session, source, getattr(source, "duration", None), cfg.pipeline):
            if sink is not None:
                sink(ev)
            if not quiet:
                printer(ev)
    finally:
        if sink is not None:
            sink.close()
    assert session.result is not None
    if quiet:
        print(format_summary(session.result.summary), file=out)
    return session.result
