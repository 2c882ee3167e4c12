"""The real-time runtime: a producer thread makes chunks, the policy consumes them, neither waits for the other.

Why: the policy must never delay the input. Media decoding + ASR + video description run on a producer thread
(paced by the media clock) and put :class:`TimedChunk`s on a :class:`ChunkQueue`; the session's policy is the
consumer. CTranslate2 and torch release the GIL in their kernels, so the two sides run on separate cores (thread
counts are split between them, :func:`plan_threads`).

The consumer schedules its thinking by time (:class:`Scheduler`):
- **catch-up**: chunks that queued up while it was busy are read in one prefill, followed by one thought;
- **deadline-aware thoughts**: a thought's cap follows from the measured decode speed and the expected time to the
  next chunk; a thought is cut when a chunk is waiting past that deadline, or when the stream has ended;
- **end of stream**: chunks still unread when the end is known are read together with the end-of-stream marker
  and deep reasoning starts at once (no per-chunk thought on the critical path).

One implementation serves ``adasr-mm run``, :meth:`StreamingAgent.run`, the app's file and live runs and the
server: each hands a chunk source and a session to :func:`iter_pipeline`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .chunks import TimedChunk
from .clock import Clock
from .errors import InputError
from .events import Event
from .session import Session

log = logging.getLogger(__name__)


@dataclass
class PipelineConfig:
    """How the consumer (policy) schedules its work against the producer (media, ASR, describer)."""

    catch_up: bool = field(
        default=True,
        metadata={"help": "read every chunk that queued up while the policy was busy in one prefill, then write "
                          "one thought (media-timed clocks and live input; instant file replay reads one by one). "
                          "On, chunks still unread when the stream's end is known are read with the end marker; "
                          "off, every chunk is read on its own whatever the policy's speed (the eval schedule), "
                          "and only the last one(s) with the end marker"},
    )
    deadline: bool = field(
        default=True,
        metadata={"help": "cap each thought by the measured decode speed and the expected time to the next chunk"},
    )
    min_thought_tokens: int = field(
        default=8, metadata={"help": "a deadline never caps a thought below this many tokens"},
    )
    tokens_per_s: float = field(
        default=20.0, metadata={"help": "decode speed assumed until the first thought has been measured"},
    )
    answer_within_s: float = field(
        default=0.0,
        metadata={"help": "cap deep reasoning so the first answer token comes within this many seconds after the "
                          "stream ended (0 = off)", "flag": "--answer-within"},
    )
    torch_threads: int = field(
        default=0,
        metadata={"help": "torch threads for the policy; 0 = the cores the ASR leaves free (at least 1)"},
    )
    end_threads: int = field(
        default=0,
        metadata={"help": "torch threads for deep reasoning once the producer has stopped; 0 = every core when "
                          "this is the only pipeline in the process (the ASR is done; `adasr-mm run`, the Python "
                          "API), else the streaming split (the app and the server share the cores)"},
    )

    def __post_init__(self) -> None:
        if self.min_thought_tokens < 1:
            raise ValueError(f"min_thought_tokens must be >= 1, got {self.min_thought_tokens}")
        if not self.tokens_per_s > 0:
            raise ValueError(f"tokens_per_s must be > 0, got {self.tokens_per_s}")
        if self.answer_within_s < 0:
            raise ValueError(f"answer_within_s must be >= 0, got {self.answer_within_s}")
        if self.torch_threads < 0:
            raise ValueError(f"torch_threads must be >= 0, got {self.torch_threads}")
        if self.end_threads < 0:
            raise ValueError(f"end_threads must be >= 0, got {self.end_threads}")


def plan_threads(asr_threads: int, torch_threads: int = 0, cores: int | None = None) -> tuple[int, int]:
    """(ASR threads, torch threads) that do not oversubscribe the cores: by default half each (1 + 1 on 2 cores).

    0 means "choose"; an explicit value is kept as given.
    """
    cores = cores or os.cpu_count() or 1
    asr = asr_threads or max(1, cores // 2)
    return asr, torch_threads or max(1, cores - asr)


# -- the queue between the two sides -----------------------------------------------------------------------------
class ChunkQueue:
    """Chunks with their availability times, the producer's progress (watermark) and how the stream ended.

    ``watermark``: producer time up to which every available chunk has been put (a virtual-clock consumer waits
    for it before deciding what is "in the queue" at its own time).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._items: deque[tuple[float, TimedChunk]] = deque()
        self.watermark = 0.0
        self.closed = False
        self.closed_at: float | None = None  # producer time the end of the stream became known
        self.duration: float | None = None
        self.duration_hint: float | None = None  # the media length when known up front (files)
        self.error: BaseException | None = None
        self.stats: dict[str, Any] = {}

    def put(self, chunk: TimedChunk, available: float) -> None:
        with self._cond:
            self._items.append((available, chunk))
            self.watermark = max(self.watermark, available)
            self._cond.notify_all()

    def advance(self, t: float) -> None:
        with self._cond:
            if t > self.watermark:
                self.watermark = t
                self._cond.notify_all()

    def close(self, t: float, duration: float | None, stats: dict[str, Any], error: BaseException | None = None
              ) -> None:
        with self._cond:
            self.closed, self.closed_at, self.duration, self.stats, self.error = True, t, duration, stats, error
            self.watermark = float("inf")
            self._cond.notify_all()

    # consumer side -------------------------------------------------------------------------------------------
    def wait(self, predicate: Any, timeout: float | None = None) -> bool:
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    def take(self, until: float | None = None, limit: int | None = None) -> list[tuple[float, TimedChunk]]:
        """Remove and return the queued chunks available at ``until`` (None: all), at most ``limit``."""
        out: list[tuple[float, TimedChunk]] = []
        with self._cond:
            while self._items and (until is None or self._items[0][0] <= until + 1e-9):
                if limit is not None and len(out) >= limit:
                    break
                out.append(self._items.popleft())
        return out

    def waiting(self, until: float | None = None) -> bool:
        with self._cond:
            return bool(self._items) and (until is None or self._items[0][0] <= until + 1e-9)

    @property
    def empty(self) -> bool:
        with self._cond:
            return not self._items

    def next_time(self) -> float | None:
        with self._cond:
            return self._items[0][0] if self._items else None


# -- producer -----------------------------------------------------------------------------------------------------
class _ProducerClock(Clock):
    """The producer's clock: every wait for media time publishes its progress to the queue."""

    def __init__(self, base: Clock, queue: ChunkQueue):
        super().__init__()
        self.base, self.queue = base, queue
        self.name, self.media_timed, self.virtual = base.name, base.media_timed, base.virtual

    def now(self) -> float:
        return self.base.now()

    def reset(self) -> None:
        self.base.reset()

    def wait_until(self, t: float) -> None:
        if t <= self.base.now():  # no wait: keep working (progress is published at the next real wait)
            return
        self.queue.advance(self.base.now())  # everything produced so far is queued
        self.base.wait_until(t)
        self.queue.advance(self.base.now())


class Producer:
    """Iterates a chunk source on its own thread and fills a :class:`ChunkQueue`; never waits for the consumer."""

    def __init__(self, source: Iterable[TimedChunk], clock: Clock, queue: ChunkQueue,
                 duration: float | None = None):
        self.source, self.queue = source, queue
        self.clock = _ProducerClock(clock, queue)
        self.duration = duration  # explicit length; else the source's (which it may learn while reading)
        self._paced = hasattr(source, "bind_clock")  # the source waits for media time itself
        if self._paced:
            source.bind_clock(self.clock)  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self._main, name="adasr-producer", daemon=True)
        queue.duration_hint = self._duration() or None

    def start(self) -> None:
        self.thread.start()

    def _main(self) -> None:
        clock, q = self.clock, self.queue
        last: dict[str, float] = {}  # per modality: merged streams may interleave late speech commits
        error: BaseException | None = None
        end = 0.0
        try:
            for n, chunk in enumerate(self.source):
                prev = last.get(chunk.modality, 0.0)
                if chunk.start < prev - 1e-6:
                    raise InputError(f"{chunk.modality} chunk {n} starts at {chunk.start:.2f}s, before the previous "
                                     f"{chunk.modality} chunk ({prev:.2f}s)")
                last[chunk.modality] = chunk.start
                end = max(end, chunk.end)
                if clock.media_timed and not self._paced:
                    clock.wait_until(chunk.end)
                q.put(chunk, self._available(chunk))
            if clock.media_timed:
                clock.wait_until(max(end, self._duration()))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, which ends the session cleanly
            error = e
        stats = self.source.stats() if callable(getattr(self.source, "stats", None)) else {}
        q.close(clock.now(), self._duration(), stats, error)

    def _duration(self) -> float:
        d = self.duration if self.duration is not None else getattr(self.source, "duration", None)
        return float(d or 0.0)

    def _available(self, chunk: TimedChunk) -> float:
        """When the chunk could be read: produced (its source's stamp or now), never before its media end."""
        if not self.clock.media_timed:
            return float(chunk.meta.get("available_at", self.clock.now()))
        return max(chunk.end, float(chunk.meta.get("available_at", self.clock.now())))


# -- consumer -----------------------------------------------------------------------------------------------------
class Scheduler:
    """Drives one session from a :class:`ChunkQueue`: when to read, how long to think, when to stop thinking."""

    def __init__(self, session: Session, queue: ChunkQueue, config: PipelineConfig, live: bool = False):
        self.session, self.q, self.cfg = session, queue, config
        self.clock = session.clock
        self.timed = self.clock.media_timed or live  # chunks are due at times, not as fast as possible
        self.catch_up = config.catch_up and self.timed
        self._last_arrival: float | None = None
        self._interval: float | None = None  # EMA of the time between chunk arrivals

    # which chunks are there -----------------------------------------------------------------------------------
    def _sync(self) -> None:
        """Virtual clock: wait (uncounted) until the producer has passed the consumer's time."""
        if self.clock.virtual:
            t = self.clock.now()
            with self.clock.idle():
                self.q.wait(lambda: self.q.watermark > t)

    def _end_now(self) -> bool:
        """Is the stream over (or will it be within one decode step)? Then read what is left with the end marker.

        Waiting one step for an imminent end is cheaper than starting a thought the end would cut at once.
        """
        step = 1.0 / (self.session.tokens_per_s or self.cfg.tokens_per_s)
        now = self.clock.now()
        if self.clock.virtual:
            if self.q.closed and self.q.empty and (self.q.closed_at or 0.0) - now <= step:
                self.clock.wait_until(self.q.closed_at or 0.0)
                return True
            return self._end_reached()
        d = self.q.duration_hint
        if not self.q.closed and d and now >= d - 1e-3:
            with self.clock.idle():
                self.q.wait(lambda: self.q.closed, timeout=step)
        return self._ended() and self.q.empty

    def _ended(self) -> bool:
        """The end of the stream is known at the consumer's time and nothing is left in the queue unseen."""
        if not self.q.closed:
            return False
        return not self.clock.virtual or (self.q.closed_at or 0.0) <= self.clock.now() + 1e-9

    def _end_reached(self) -> bool:
        """The end is known and, with catch-up off, every chunk has been read. Catch-up off reads chunk by chunk
        whatever the policy's speed: a slow step must not turn the chunks still queued into one end-of-stream
        read, nor cut the thought on the one before (a loaded machine changed `adasr-mm eval`'s traces so)."""
        return self._ended() and (self.catch_up or self.q.empty)

    def _next(self) -> list[tuple[float, TimedChunk]] | None:
        """The chunks to read now (waiting for one if none is there); None when the stream is over."""
        while True:
            self._sync()
            now = self.clock.now() if self.clock.virtual else None
            ready = self.q.take(now, None if self.catch_up else 1)
            if ready:
                return ready
            if self.q.closed and self.q.empty:
                return None
            with self.clock.idle():
                self.q.wait(lambda: not self.q.empty or self.q.closed)
            t = self.q.next_time()
            if self.clock.virtual and t is not None:
                self.clock.wait_until(t)  # idle until the next arrival

    def _observe(self, ready: list[tuple[float, TimedChunk]]) -> None:
        for t, chunk in ready:
            if self._last_arrival is not None and t > self._last_arrival:
                dt = t - self._last_arrival
                self._interval = dt if self._interval is None else 0.7 * self._interval + 0.3 * dt
            elif self._interval is None and chunk.duration > 0:
                self._interval = chunk.duration  # before two arrivals: a chunk spans about one interval
            self._last_arrival = t if self._last_arrival is None else max(self._last_arrival, t)

    # how long to think ----------------------------------------------------------------------------------------
    def budget(self) -> tuple[int | None, float | None]:
        """(cap, deadline) for the next thought: time to the expected next chunk x measured decode speed."""
        if not (self.timed and self.cfg.deadline) or self._interval is None or self._last_arrival is None:
            return None, None
        tps = self.session.tokens_per_s or self.cfg.tokens_per_s
        now = self.clock.now()
        deadline = max(self._last_arrival + self._interval, now + self.cfg.min_thought_tokens / tps)
        cap = max(self.cfg.min_thought_tokens, int((deadline - now) * tps))
        return cap, deadline

    def _interrupt(self, deadline: float | None) -> Any:
        def check() -> str | None:
            if not self.timed:
                return None
            if self._end_reached():
                return "end"
            now = self.clock.now()
            if deadline is not None and now >= deadline and self.q.waiting(now if self.clock.virtual else None):
                return "deadline"
            return None

        return check

    # the loop -------------------------------------------------------------------------------------------------
    def run(self) -> Iterator[Event]:
        pending: list[tuple[float, TimedChunk]] = []
        n = 0
        while True:
            ready = self._next()
            if ready is None:
                break
            self._observe(ready)
            n += len(ready)
            if self.timed and self._end_now():  # the end is known: read these with the end marker, no thought
                pending = ready + self.q.take()
                break
            cap, deadline = self.budget()
            times = [t for t, _ in ready]
            yield from self.session.push_group([c for _, c in ready], times, cap, self._interrupt(deadline))
        with self.clock.idle():
            self.q.wait(lambda: self.q.closed)
        if self.q.error is not None and not isinstance(self.q.error, Exception):
            raise self.q.error  # KeyboardInterrupt / SystemExit from the producer
        if n == 0 and not self.session.chunks:
            if self.q.error is not None:
                raise self.q.error
            raise InputError("the input produced no chunks (nothing to read: silence, or no speech or text)")
        yield from self._finish(pending)

    def _end_threads(self) -> int:
        """Torch threads for the deep phase (0 = keep): the producer has stopped, so a lone pipeline takes the
        cores the ASR had."""
        if self.cfg.end_threads:
            return self.cfg.end_threads
        with _ACTIVE_LOCK:
            alone = _ACTIVE[0] == 1
        return (os.cpu_count() or 1) if alone else 0

    def _finish(self, pending: list[tuple[float, TimedChunk]]) -> Iterator[Event]:
        q, s = self.q, self.session
        end = max([c.end for c in s.chunks] + [c.end for _, c in pending] + [q.duration or 0.0])
        extra = dict(q.stats)
        if q.error is not None:
            extra["input_error"] = str(q.error)
        timed = self.clock.media_timed
        with _torch_threads(self._end_threads()):
            yield from s.finish_iter(
                stream_end=end if timed else None, extra=extra, pending=[c for _, c in pending],
                pending_available=[t for t, _ in pending], end_known=q.closed_at if timed else None,
                answer_within_s=self.cfg.answer_within_s, prior_tokens_per_s=self.cfg.tokens_per_s)
        if q.error is not None:  # the session ended on what was read; the caller still learns why it stopped
            raise q.error


def iter_pipeline(session: Session, source: Iterable[TimedChunk], duration: float | None = None,
                  config: PipelineConfig | None = None, live: bool = False) -> Iterator[Event]:
    """Run ``source`` on a producer thread and ``session`` on the calling thread; yield the session's events.

    ``live``: the source delivers media as it happens (microphone, webcam, a network client), so the consumer
    schedules by time even on the ``instant`` clock. If the source fails mid-stream, the session still ends (deep
    reasoning and answer on what was read; the summary's ``input_error`` says why), then the error is raised.
    """
    cfg = config or PipelineConfig()
    prepare = getattr(source, "prepare", None)
    if callable(prepare):
        prepare()  # load models before the clocks start: loading is not streaming latency
    q = ChunkQueue()
    pclock = session.clock.fork()
    producer = Producer(source, pclock, q, duration)
    if not session.started:  # media time 0 for both sides; the prompt prefill then overlaps with the first media
        session.clock.reset()
        if pclock is not session.clock:
            pclock.reset()
    producer.start()
    session.start(reset_clock=False)
    with _active():
        yield from Scheduler(session, q, cfg, live=live).run()


_ACTIVE = [0]  # pipelines consuming in this process (the deep phase takes every core only when alone)
_ACTIVE_LOCK = threading.Lock()


@contextlib.contextmanager
def _active() -> Iterator[None]:
    with _ACTIVE_LOCK:
        _ACTIVE[0] += 1
    try:
        yield
    finally:
        with _ACTIVE_LOCK:
            _ACTIVE[0] -= 1


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch threads (0 = unchanged), then restore the streaming split."""
    import torch

    before = torch.get_num_threads()
    if n <= 0 or n == before:
        yield
        return
    set_torch_threads(n)
    try:
        yield
    finally:
        set_torch_threads(before)


def set_torch_threads(n: int) -> None:
    """Give the policy ``n`` intra-op threads (process-wide; call once before streaming)."""
    import torch

    if n > 0 and torch.get_num_threads() != n:
        torch.set_num_threads(n)


def configure_threads(cfg: Any) -> tuple[int, int]:
    """Split the cores between the ASR (``cfg.asr.cpu_threads``, resolved in place when 0) and torch.

    Returns (asr threads, torch threads). Call before loading the models.
    """
    import dataclasses

    asr, torch_n = plan_threads(cfg.asr.cpu_threads, cfg.pipeline.torch_threads)
    if cfg.asr.cpu_threads != asr:
        cfg.asr = dataclasses.replace(cfg.asr, cpu_threads=asr)
    set_torch_threads(torch_n)
    return asr, torch_n
