"""One stream through one session, computed on its own worker thread.

Why a worker thread per run: Gradio calls a streaming handler every ``stream_every`` and the browser waits for its
reply, while reading a chunk and writing a thought can take longer than that. The handlers only hand media to the
run's inbox and render what the run has produced so far; ASR, the describer and the policy work here, so a slow
model never stalls the microphone, and one run's failure is caught here and never reaches another run.
"""

from __future__ import annotations

import logging
import queue
import threading
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adasr_mm.chunks import TimedChunk
from adasr_mm.clock import InstantClock, make_clock
from adasr_mm.errors import AdasrError, InputError
from adasr_mm.events import AnswerEvent, DeltaEvent, Event
from adasr_mm.session import Session

if TYPE_CHECKING:
    from .engine import Engine

log = logging.getLogger(__name__)


class LiveClock(InstantClock):
    """The instant clock with its zero fixed when the run is created.

    A live session's clock must start with the media, not when the worker gets round to ``Session.start()``
    (which resets its clock): arrival times stamped by the handlers and thought times then share one axis.
    """

    def reset(self) -> None:  # zero stays at construction
        pass


class Run:
    """Events of one session as they are produced, with a condition variable for pollers."""

    kind = "run"

    def __init__(self, engine: Engine, question: str, clock: Any):
        self.engine = engine
        self.id = uuid.uuid4().hex[:10]
        self.clock = make_clock(clock)
        self.session: Session | None = engine.agent.session(question, clock=self.clock, emit_deltas=True)
        self.question = self.session.question
        self.events: list[Event] = []
        self.partial: dict[str, str] = {}  # phase -> text being written (live display only)
        self.status = "running"  # running | done | error | cancelled
        self.error: str | None = None
        self.notice: str | None = None
        self.t_stop: float | None = None  # clock time the end of the stream was requested
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
                self.session.state.cache = None  # a cancelled or failed run keeps no KV cache
            self.engine.run_finished(self)

    def _work(self) -> None:
        raise NotImplementedError

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
    """Microphone blocks and webcam frames -> audio/video adapters -> the session; ``stop()`` ends the stream."""

    kind = "live"

    def __init__(self, engine: Engine, question: str):
        super().__init__(engine, question, LiveClock())
        self._inbox: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self._push_lock = threading.Lock()
        self.ended = False  # no more media accepted
        self.audio: Any = None
        self.video: Any = None
        self.media: set[str] = set()

    # handler side ---------------------------------------------------------------------------------------------
    def push_audio(self, sample_rate: int, samples: Any) -> bool:
        return self._put("audio", sample_rate, samples)

    def push_frame(self, frame: Any) -> bool:
        return self._put("frame", frame)

    def _put(self, kind: str, *payload: Any) -> bool:
        with self._push_lock:  # stamp and enqueue atomically: frame times must not decrease
            if self.ended:
                return False
            self._inbox.put((kind, self.clock.now(), *payload))
            return True

    def stop(self, notice: str | None = None) -> None:
        """End of the stream (Stop button, end of recording or a limit): flush the adapters, then answer."""
        with self._push_lock:
            if self.ended:
                return
            self.ended = True
            if notice:
                self.notice = notice
            self.t_stop = self.clock.now()
            self._inbox.put(("end", self.t_stop))

    def cancel(self) -> None:
        super().cancel()
        with self._push_lock:
            self.ended = True
        self._inbox.put(("cancel", 0.0))

    def _on_exit(self) -> None:
        with self._push_lock:
            self.ended = True

    @property
    def elapsed(self) -> float:
        return self.clock.now()

    # worker side ----------------------------------------------------------------------------------------------
    def _adapters(self, kind: str) -> Any:
        cfg = self.engine.settings
        if kind == "audio" and self.audio is None:
            from adasr_mm.adapters.audio import AudioStream

            self.audio = AudioStream(self.engine.asr_model, cfg.asr, cfg.audio, source="microphone",
                                     now=self.clock.now)
        if kind == "frame" and self.video is None:
            from adasr_mm.adapters.video import VideoStream, describer_from_config

            self.video = VideoStream(describer_from_config(cfg.video), cfg.video, source="webcam",
                                     now=self.clock.now)
        return self.audio if kind == "audio" else self.video

    def _push_chunks(self, chunks: Iterator[TimedChunk], available_at: float) -> None:
        assert self.session is not None
        for c in chunks:
            if self._cancelled.is_set():
                return
            # lag counts from the arrival of the media that completed the chunk (queueing + ASR/describer work)
            self._record(self.session.push(c, available_at=available_at))

    def _work(self) -> None:
        session = self.session
        assert session is not None
        session.start()
        limit = self.engine.settings.app.max_stream_s
        while True:
            kind, t, *payload = self._inbox.get()
            if kind == "cancel" or self._cancelled.is_set():
                return
            if kind == "end":
                break
            self.media.add(kind)
            stream = self._adapters(kind)
            try:
                out = stream.push(payload[1], payload[0]) if kind == "audio" else stream.push(payload[0], t)
                chunks = list(out)
            except ValueError as e:  # malformed samples or frames from a client
                raise InputError(f"bad {kind} data from the browser: {e}") from None
            self._push_chunks(iter(chunks), t)
            received = max(t, self.audio.time if self.audio is not None else 0.0)  # wall or audio seconds
            if received >= limit:
                self.stop(f"Stream limit reached: live streams stop after {limit:g} s (max_stream_s); "
                          "answering on what was received.")
        t_end = self.clock.now()
        tail: list[TimedChunk] = []
        if self.audio is not None:
            tail += list(self.audio.finish())
        if self.video is not None:
            tail += list(self.video.finish())
        self._push_chunks(iter(sorted(tail, key=lambda c: c.start)), t_end)
        if not session.chunks:
            what = " and ".join(sorted(self.media)) or "media"
            raise InputError(
                "Empty recording: nothing to answer. " + (
                    f"No speech or visual content was detected in the {what} received; speak (or show the "
                    "camera) and try again." if self.media else
                    "No audio or video reached the server; allow the microphone/camera and record again."))
        stats: dict[str, Any] = {}
        for s in (self.audio, self.video):
            if s is not None:
                stats.update(s.stats.to_dict())
        self._record(session.finish_iter(extra=stats))


class FileRun(Run):
    """An uploaded file through the same adapters and replay path as ``adasr-mm run``."""

    kind = "file"

    def __init__(self, engine: Engine, question: str, path: str, clock: str):
        super().__init__(engine, question, clock)
        self.path = path
        self.t_stop = None

    def _work(self) -> None:
        try:
            self._replay()
        except AdasrError as e:  # show the user's file name, not the server's upload path
            name = Path(self.path).name
            raise InputError(str(e).replace(self.path, name)) from None

    def _replay(self) -> None:
        from adasr_mm.adapters import open_input
        from adasr_mm.replay import iter_replay

        cfg = self.engine.settings
        limit = cfg.app.max_stream_s
        source = open_input(self.path, cfg.run.modality, cfg)  # names a corrupt or unsupported file
        duration = getattr(source, "duration", None)
        if duration and duration > limit:
            raise InputError(f"'{self.path}' is {duration:.1f} s long; this app streams at most {limit:g} s "
                             "(max_stream_s). Trim it or raise --max-stream-s.")
        assert self.session is not None
        for ev in iter_replay(self.session, source, duration):
            if self._cancelled.is_set():
                return
            self._record([ev])
