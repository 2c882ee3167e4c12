"""One stream through one session, computed on its own worker thread through the shared pipeline.

Why a worker thread per run: Gradio calls a streaming handler every ``stream_every`` and the browser waits for its
reply, while reading a chunk and writing a thought can take longer than that. The handlers only hand media to the
run's :class:`~adasr_mm.adapters.live.LiveSource` (or name a file) and render what the run has produced so far;
the run's worker drives :func:`adasr_mm.pipeline.iter_pipeline` exactly as ``adasr-mm run`` does (a producer
thread for ASR / the describer, the policy as consumer), and one run's failure is caught here and never reaches
another run.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adasr_mm.clock import LiveClock, make_clock
from adasr_mm.errors import AdasrError, InputError
from adasr_mm.events import AnswerEvent, DeltaEvent, Event
from adasr_mm.pipeline import iter_pipeline
from adasr_mm.session import Session

log = logging.getLogger(__name__)


@dataclass
class RunContext:
    """What a run needs from the app: the shared agent and ASR model, the settings, and who to tell it ended."""

    agent: Any
    settings: Any
    asr_model: Any = None
    on_finished: Callable[[Any], None] | None = None
    batcher: Any = None  # the shared decode scheduler (continuous batching); None = batch-1 sessions


class Run:
    """Events of one session as they are produced, with a condition variable for pollers."""

    kind = "run"
    notice: str | None = None  # shown above the trace (e.g. a limit was reached)
    t_stop: float | None = None  # clock time the end of the stream was requested

    def __init__(self, ctx: RunContext, question: str, clock: Any):
        self.ctx = ctx
        self.id = uuid.uuid4().hex[:10]
        self.clock = make_clock(clock)
        self.session: Session | None = ctx.agent.session(question, clock=self.clock, emit_deltas=True,
                                                         batcher=ctx.batcher)
        self.question = self.session.question
        self.events: list[Event] = []
        self.partial: dict[str, str] = {}  # phase -> text being written (live display only)
        self.status = "running"  # running | done | error | cancelled
        self.error: str | None = None
        self.version = 0
        self.artifacts: dict[str, str] = {}
        self.out_dir: Path | None = None  # the connection's download directory
        self._cond = threading.Condition()
        self._cancelled = threading.Event()
        self._thread = threading.Thread(target=self._main, name=f"adasr-{self.kind}-{self.id}", daemon=True)

    # -- lifecycle --------------------------------------------------------------------------------------------
    def start(self) -> Run:
        self._thread.start()
        return self

    @property
    def done(self) -> bool:
        return self.status != "running"

    def cancel(self) -> None:
        """Stop working as soon as possible (the connection went away)."""
        self._cancelled.set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _main(self) -> None:
        try:
            self._work()
            status = "cancelled" if self._cancelled.is_set() else "done"
            self._set(status=status)
        except AdasrError as e:
            self._set(status="error", error=str(e))
        except Exception as e:  # noqa: BLE001 - a bug in one run is reported in its page, never raised further
            log.exception("run %s failed", self.id)
            self._set(status="error", error=f"internal error ({type(e).__name__}: {e})")
        finally:
            self._on_exit()
            if self.session is not None and self.session.state is not None:
                self.ctx.agent.policy.release(self.session.state)  # no KV cache kept; leaves the shared batch
            if self.ctx.on_finished is not None:
                self.ctx.on_finished(self)

    def _work(self) -> None:
        raise NotImplementedError

    def _stream(self, source: Iterable[Any], duration: float | None = None, live: bool = False) -> None:
        assert self.session is not None
        events = iter_pipeline(self.session, source, duration, self.ctx.settings.pipeline, live=live)
        try:
            for ev in events:
                self._record([ev])
                if self._cancelled.is_set():
                    return
        finally:
            events.close()  # type: ignore[attr-defined]
    def _on_exit(self) -> None:
        """Called on the worker when the run ends, however it ends."""

    # -- events -----------------------------------------------------------------------------------------------
    def _set(self, **fields: Any) -> None:
        with self._cond:
            for k, v in fields.items():
                setattr(self, k, v)
            self.version += 1
            self._cond.notify_all()

    def _record(self, events: Iterable[Event]) -> None:
        for ev in events:
            with self._cond:
                if isinstance(ev, DeltaEvent):
                    key = ev.phase if ev.phase != "stream" else f"stream:{ev.index}"
                    self.partial[key] = self.partial.get(key, "") + ev.text
                else:
                    self.events.append(ev)
                    self.partial.clear()
                self.version += 1
                self._cond.notify_all()
            if self._cancelled.is_set():
                return

    def wait_change(self, version: int, timeout: float) -> int:
        """Block until the run changed since ``version`` (or ``timeout``); returns the current version."""
        with self._cond:
            self._cond.wait_for(lambda: self.version != version, timeout)
            return self.version

    def snapshot(self) -> tuple[list[Event], dict[str, str]]:
        with self._cond:
            return list(self.events), dict(self.partial)

    @property
    def answer(self) -> AnswerEvent | None:
        return next((e for e in reversed(self.events) if isinstance(e, AnswerEvent)), None)


class LiveRun(Run):
    """Microphone blocks and webcam frames -> :class:`LiveSource` -> the pipeline; ``stop()`` ends the stream."""

    kind = "live"

    def __init__(self, ctx: RunContext, question: str):
        from adasr_mm.adapters.live import LiveSource

        super().__init__(ctx, question, LiveClock())
        cfg = ctx.settings
        self.source = LiveSource(ctx.asr_model, cfg.asr, cfg.audio, cfg.video, cfg.app.max_stream_s,
                                 origin="the browser")
        self.source.bind_clock(self.clock)

    # handler side ---------------------------------------------------------------------------------------------
    def push_audio(self, sample_rate: int, samples: Any) -> bool:
        return self.source.push_audio(sample_rate, samples)

    def push_frame(self, frame: Any) -> bool:
        return self.source.push_frame(frame)

    def stop(self, notice: str | None = None) -> None:
        """End of the stream (Stop button, end of recording or a limit): flush the adapters, then answer."""
        self.source.stop(notice)

    @property
    def ended(self) -> bool:
        return self.source.ended

    @property  # type: ignore[override]
    def t_stop(self) -> float | None:
        return self.source.t_stop

    @property  # type: ignore[override]
    def notice(self) -> str | None:
        return self.source.notice

    @property
    def media(self) -> set[str]:
        return self.source.media

    def cancel(self) -> None:
        super().cancel()
        self.source.cancel()

    def _on_exit(self) -> None:
        self.source.cancel()  # no more media accepted, the producer thread ends

    @property
    def elapsed(self) -> float:
        return self.clock.now()

    def _work(self) -> None:
        self._stream(self.source, live=True)


class FileRun(Run):
    """An uploaded file through the same adapters and pipeline as ``adasr-mm run``."""

    kind = "file"

    def __init__(self, ctx: RunContext, question: str, path: str, clock: str):
        super().__init__(ctx, question, clock)
        self.path = path

    def _work(self) -> None:
        try:
            self._replay()
        except AdasrError as e:  # show the user's file name, not the server's upload path
            name = Path(self.path).name
            raise InputError(str(e).replace(self.path, name)) from None

    def _replay(self) -> None:
        from adasr_mm.adapters import open_input

        cfg = self.ctx.settings
        limit = cfg.app.max_stream_s
        source = open_input(self.path, cfg.run.modality, cfg)  # names a corrupt or unsupported file
        duration = getattr(source, "duration", None)
        if duration and duration > limit:
            raise InputError(f"'{self.path}' is {duration:.1f} s long; this app streams at most {limit:g} s "
                             "(max_stream_s). Trim it or raise --max-stream-s.")
        self._stream(source, duration)
