"""Sessions: one question, one stream, one KV cache; chunks in, events out.

``Session.push(chunk)`` reads the chunk onto the policy's cache and lets the policy think or skip, yielding events
as they happen; ``Session.finish()`` ends the stream, runs deep reasoning and the answer, and returns a
:class:`SessionResult` with all events and metrics. Sessions share the policy (weights) but nothing else.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from .chunks import TimedChunk
from .clock import Clock, make_clock
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
from .policy import Generation, PolicyState, Runner, StreamingPolicy
from .protocol import FormatReport, ParsedTrace, extract_answer

MODES = ("stream", "read-then-think")

#: Polled after each thought token; a non-empty return value (the reason) cuts the thought there.
Interrupt = Callable[[], "str | None"]


@dataclass
class SessionConfig:
    """How a session runs the policy over a stream."""

    mode: str = field(default="stream", metadata={"help": "stream (think while reading) or read-then-think"})
    max_lag_s: float = field(
        default=4.0,
        metadata={"help": "lag budget: a chunk handled later than this after its arrival is skipped without "
                          "thinking so the policy catches up (0 = never force skips)"},
    )
    rtt_reasoning_tokens: int = field(
        default=0,
        metadata={"help": "read-then-think reasoning cap; 0 = the same total budget as streaming "
                          "(max_deep_tokens + chunks x max_thought_tokens)"},
    )

    fill_deep_budget: bool = field(
        default=False,
        metadata={"help": "benchmarking: keep reasoning until the deep budget is used (EOS and </think> masked), "
                          "emulating a model that thinks to its budget"},
    )

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.max_lag_s < 0:
            raise ValueError(f"max_lag_s must be >= 0, got {self.max_lag_s}")
        if self.rtt_reasoning_tokens < 0:
            raise ValueError(f"rtt_reasoning_tokens must be >= 0, got {self.rtt_reasoning_tokens}")


@dataclass
class _FinishSpec:
    stream_end: float | None
    extra: dict
    pending: list[TimedChunk]
    pending_available: Sequence[float] | None
    end_known: float | None
    answer_within_s: float
    prior_tokens_per_s: float | None = None


@dataclass
class SessionResult:
    question: str
    answer: str
    events: list[Event]
    summary: SummaryEvent
    format: FormatReport
    state: PolicyState = field(repr=False)
    trace: ParsedTrace = field(repr=False)


class Session:
    """A single streaming episode. Not thread-safe; use one session per stream (many may coexist)."""

    def __init__(self, policy: StreamingPolicy, question: str, config: SessionConfig | None = None,
                 clock: str | Clock = "instant", emit_deltas: bool = False, seed: int | None = None,
                 batcher: Runner | None = None):
        """``batcher``: run this session's model calls batched with other sessions' (a
        :class:`~adasr_mm.continuous.DecodeScheduler`); None = batch 1 on its own cache."""
        if not isinstance(question, str) or not question.strip():
            raise InputError("the question is empty: pass --question TEXT")
        self.policy = policy
        self.question = question.strip()
        self.config = config or SessionConfig()
        self.clock = make_clock(clock)
        self.emit_deltas = emit_deltas
        self.state = policy.new_state(seed)
        self.state.runner = batcher
        self.events: list[Event] = []
        self.chunks: list[TimedChunk] = []
        self._chunk_ids: list[list[int]] = []
        self._lags: list[float] = []
        self._started = False
        self._finished = False
        self._pending: Iterator[Event] | None = None
        self._step_s: float | None = None  # EMA of one decode step's wall time
        self._cut: str | None = None
        self._cut_thoughts = 0
        self._caught_up = 0
        self._wall0 = 0.0
        self.result: SessionResult | None = None

    @property
    def started(self) -> bool:
        return self._started

    @property
    def mode(self) -> str:
        return self.config.mode

    def start(self, reset_clock: bool = True) -> None:
        """Prefill the prompt (called by the first push; call it early to overlap with the first chunk).

        ``reset_clock=False``: the caller already started the clock (the pipeline starts it before its producer,
        so the prompt prefill overlaps with the first media instead of delaying it)."""
        if self._started:
            return
        self._started = True
        if reset_clock:
            self.clock.reset()
        self._wall0 = time.perf_counter()
        self.policy.begin(self.state, self.question)

    # -- streaming -------------------------------------------------------------------------------------------
    def _drain(self) -> None:
        if self._pending is not None:
            for _ in self._pending:
                pass
            self._pending = None

    def push(self, chunk: TimedChunk, available_at: float | None = None) -> Iterator[Event]:
        """Read one chunk; yields its :class:`ChunkEvent` then a thought or skip (lazily: iterate to drive it).

        A push that is never iterated still runs, at the next ``push``/``finish``.
        """
        return self.push_group([chunk], None if available_at is None else [available_at])

    def push_group(self, chunks: Sequence[TimedChunk], available_at: Sequence[float | None] | None = None,
                   cap: int | None = None, interrupt: Interrupt | None = None) -> Iterator[Event]:
        """Read several chunks in one prefill (a catch-up after the policy fell behind), then one thought or skip.

        ``cap`` lowers the thought's token cap (deadline-aware thinking); ``interrupt`` is polled after every
        thought token and may cut the thought short by returning a reason (``"deadline"``, ``"end"``).
        """
        if self._finished:
            raise RuntimeError("session already finished")
        if not chunks:
            raise ValueError("push_group needs at least one chunk")
        self._drain()
        times = list(available_at) if available_at is not None else [None] * len(chunks)
        gen = self._record(self._push(list(chunks), times, cap, interrupt))
        self._pending = gen
        return gen

    def _record(self, it: Iterator[Event]) -> Iterator[Event]:
        for ev in it:
            if not isinstance(ev, DeltaEvent):
                self.events.append(ev)
            if self.emit_deltas or not isinstance(ev, DeltaEvent):
                yield ev

    @property
    def tokens_per_s(self) -> float | None:
        """Measured decode speed of this session's policy steps (None before the first measurement)."""
        return 1.0 / self._step_s if self._step_s else None

    def _decode(self, phase: str, index: int | None, max_tokens: int, stops: tuple[int, ...],
                first_token_at: list[float] | None = None, min_tokens: int = 0,
                interrupt: Interrupt | None = None) -> Iterator[Event]:
        it = self.policy.iter_generate(self.state, phase, max_tokens, stops, min_tokens)
        ids: list[int] = []
        tools = 0
        shown = ""
        self._cut = None
        t_prev = None
        while True:
            try:
                tok = next(it)
            except StopIteration as done:
                self._last_gen: Generation = done.value
                return
            t_now = time.perf_counter()
            tool = not self.state.env_mask[-1]  # a calculator result's token: all of it is in the state already
            tools += tool
            # the first token of a phase reuses the read's logits, a calculator result comes with its "=": neither
            # is a decode step
            if t_prev is not None and not tool:
                dt = t_now - t_prev
                self._step_s = dt if self._step_s is None else 0.8 * self._step_s + 0.2 * dt
            t_prev = t_now
            ids.append(tok)
            if first_token_at is not None and not first_token_at:
                first_token_at.append(self.clock.now())
            if self.emit_deltas:
                text = self.policy.text(ids)
                if len(text) > len(shown) and text.startswith(shown):
                    yield DeltaEvent(phase=phase, index=index, text=text[len(shown):], t=self.clock.now())
                    shown = text
            if interrupt is not None and tok not in stops and not tool:  # never cut inside a result
                why = interrupt()
                if why:
                    it.close()
                    self._cut = why
                    self._last_gen = Generation(ids, "cap", None, tools)
                    return

    def _push(self, chunks: list[TimedChunk], times: list[float | None], cap: int | None,
              interrupt: Interrupt | None) -> Iterator[Event]:
        self.start()
        p, cfg, st = self.policy, self.policy.config, self.state
        t_start = self.clock.now()
        read = self._register(chunks, times, t_start)
        all_ids = [i for ids in self._chunk_ids[len(self._chunk_ids) - len(chunks):] for i in ids]
        if self.mode == "read-then-think":  # buffered; everything is read at finish()
            for index, chunk, t_avail, lag, n in read:
                yield ChunkEvent(index, chunk, t_avail, t_start, t_start, n, lag)
            return
        seg_start = len(st.ids)
        max_tokens = cfg.max_thought_tokens if cap is None else max(1, min(cap, cfg.max_thought_tokens))
        p.read(st, all_ids, "stream", reserve=max_tokens + 2)
        t_read = self.clock.now()
        for index, chunk, t_avail, lag, n in read:
            yield ChunkEvent(index, chunk, t_avail, t_start, t_read, n, lag)
        index, group = read[-1][0], len(read)
        t0 = self.clock.now()
        if self.config.max_lag_s and max(r[3] for r in read) > self.config.max_lag_s:
            p.write_env(st, [p.ids.skip], "stream")
            st.segments.append((seg_start, len(st.ids)))
            yield SkipEvent(index, t0, self.clock.now(), tokens=1, forced=True, group=group)
            return
        if interrupt is not None and interrupt() == "end":
            # the stream ended while these chunks were read: no thought; the deep phase reads the end marker right
            # after them, as a catch-up read at the end does (a thought cut after its first token left a fragment,
            # "6", that deep reasoning took for the result)
            st.segments.append((seg_start, len(st.ids)))
            return
        yield from self._decode("stream", index, max_tokens, (p.ids.eot, p.ids.skip), interrupt=interrupt)
        gen, cut = self._last_gen, self._cut
        capped = gen.stop_reason == "cap"
        if capped:
            p.write_env(st, [p.ids.eot], "stream")
        if cut:
            self._cut_thoughts += 1
        st.segments.append((seg_start, len(st.ids)))
        body = gen.ids[:-1] if gen.stop_reason == "stop" else gen.ids
        if gen.stop_id == p.ids.skip:
            yield SkipEvent(index, t0, self.clock.now(), tokens=gen.generated, text=p.text(body), group=group,
                            tool_tokens=gen.tools)
        else:
            reason = cut or ("cap" if capped else "stop")
            yield ThoughtEvent(index, p.text(body), gen.generated, t0, self.clock.now(), capped=capped,
                               reason=reason, cap=max_tokens, group=group, tool_tokens=gen.tools)

    # -- end of stream ---------------------------------------------------------------------------------------
    def finish(self, stream_end: float | None = None, extra: dict | None = None) -> SessionResult:
        for _ in self.finish_iter(stream_end, extra):
            pass
        assert self.result is not None
        return self.result

    def finish_iter(self, stream_end: float | None = None, extra: dict | None = None,
                    pending: Sequence[TimedChunk] = (), pending_available: Sequence[float] | None = None,
                    end_known: float | None = None, answer_within_s: float = 0.0,
                    prior_tokens_per_s: float | None = None) -> Iterator[Event]:
        """End the stream: deep reasoning, answer, summary (yielded as produced); ``self.result`` is set after.

        ``extra``: figures from the chunk source (e.g. ASR real-time factor) added to the summary.
        ``pending``: chunks not read yet; they are read together with the end-of-stream marker in one prefill
        (no per-chunk thought on the critical path). ``end_known``: clock time the end of the stream became known
        (after the source's last work, e.g. the ASR flush). ``answer_within_s`` > 0: cap deep reasoning from the
        measured decode speed so that the first answer token comes within that many seconds of the stream end.
        """
        if self._finished:
            raise RuntimeError("session already finished")
        self._drain()
        self.start()
        self._finished = True
        spec = _FinishSpec(stream_end, extra or {}, list(pending), pending_available, end_known, answer_within_s,
                           prior_tokens_per_s)
        yield from self._record(self._finish(spec))

    def _register(self, chunks: Sequence[TimedChunk], times: Sequence[float | None], t: float
                  ) -> list[tuple[int, TimedChunk, float, float, int]]:
        """Index, tokenise and time chunks read at clock time ``t``: (index, chunk, available, lag, tokens) each."""
        read = []
        for chunk, available in zip(chunks, times, strict=True):
            index = len(self.chunks)
            chunk.index = index if chunk.index is None else chunk.index
            self.chunks.append(chunk)
            ids = self.policy.protocol.chunk_ids(chunk)
            self._chunk_ids.append(ids)
            t_avail = t if available is None else float(available)
            lag = max(0.0, t - t_avail)
            self._lags.append(lag)
            read.append((index, chunk, t_avail, lag, len(ids)))
        if len(chunks) > 1:
            self._caught_up += len(chunks)
        return read

    def _read_pending(self, spec: _FinishSpec) -> Iterator[Event]:
        t = self.clock.now()
        times = list(spec.pending_available or [None] * len(spec.pending))
        read = self._register(spec.pending, times, t)
        for (index, chunk, t_avail, lag, n), ids in zip(read, self._chunk_ids[len(self._chunk_ids) - len(read):],
                                                         strict=True):
            if self.mode == "stream":
                self.policy.write_env(self.state, ids, "stream")  # prefilled with the end marker
            yield ChunkEvent(index, chunk, t_avail, t, t, n, lag)

    def _deep_budget(self, budget: int, spec: _FinishSpec, t_end_stream: float) -> tuple[int, bool]:
        """The deep cap that keeps the first answer token within ``answer_within_s`` of the stream end.

        The step time is this session's measured decode speed, else the caller's prior (a stream read only at its
        end has decoded nothing yet); 15% of the time left is kept as margin (steps slow down as the context grows).
        """
        step = self._step_s or (1.0 / spec.prior_tokens_per_s if spec.prior_tokens_per_s else None)
        if spec.answer_within_s <= 0 or not step:
            return budget, False
        left = spec.answer_within_s - (self.clock.now() - t_end_stream)
        fit = int(0.85 * left / step) - 2  # the closing </think> and the first answer token are two more steps
        return (max(1, fit), True) if fit < budget else (budget, False)

    def _finish(self, spec: _FinishSpec) -> Iterator[Event]:
        p, cfg, st = self.policy, self.policy.config, self.state
        stream_end, source_extra = spec.stream_end, spec.extra
        if self.clock.media_timed and stream_end is not None:
            self.clock.wait_until(stream_end)
            t_end_stream = float(stream_end)
        else:
            t_end_stream = self.clock.now()
        t_known = t_end_stream if spec.end_known is None else max(t_end_stream, float(spec.end_known))
        if self.clock.media_timed:
            self.clock.wait_until(t_known)  # nothing can act on the end of the stream before it is known
        t_start = self.clock.now()
        yield from self._read_pending(spec)
        end_ids = p.protocol.end_ids(self.question)
        if self.mode == "read-then-think":
            budget = self.config.rtt_reasoning_tokens or (
                cfg.max_deep_tokens + len(self.chunks) * cfg.max_thought_tokens
            )
            n_pre = 0
            for ids in self._chunk_ids:
                p.write_env(st, ids, "stream")
                n_pre += len(ids)
            p.read(st, end_ids, "deep", reserve=budget + cfg.max_answer_tokens + 2)
            n_pre += len(end_ids)
        else:
            budget = cfg.max_deep_tokens
            n_pre = len(end_ids) + sum(len(ids) for ids in self._chunk_ids[len(self.chunks) - len(spec.pending):])
            p.read(st, end_ids, "deep", reserve=budget + cfg.max_answer_tokens + 2)
        budget, deep_cut = self._deep_budget(budget, spec, t_end_stream)
        t_pre = self.clock.now()
        fill = budget if self.config.fill_deep_budget else 0
        yield from self._decode("deep", None, budget, (p.ids.think_close, *p.ids.eos), min_tokens=fill)
        gen = self._last_gen
        closed = gen.stop_id == p.ids.think_close
        if not closed:  # cap or EOS before </think>: the environment closes the reasoning
            p.write_env(st, [p.ids.think_close], "deep")
        body = gen.ids[:-1] if gen.stop_reason == "stop" else gen.ids
        t_deep = self.clock.now()
        yield DeepEvent(p.text(body), gen.generated, t_end_stream, t_start, t_pre, t_deep, n_pre, closed, gen.tools)
        first: list[float] = []
        yield from self._decode("answer", None, cfg.max_answer_tokens, p.ids.eos, first_token_at=first)
        ans = self._last_gen
        if ans.stop_reason == "cap":
            p.write_env(st, [p.ids.eos[0]], "answer")
        t_done = self.clock.now()
        t_first = first[0] if first else t_done
        text = p.text(ans.ids[:-1] if ans.stop_reason == "stop" else ans.ids)
        answer = extract_answer(text)
        delay, delay_last = t_first - t_end_stream, t_done - t_end_stream
        yield AnswerEvent(text, answer, ans.generated, t_first, t_done, delay, delay_last, ans.tools)
        timing = {"end_known_s": t_known - t_end_stream, "drain_s": t_pre - t_known, "deep_s": t_deep - t_pre,
                  "answer_first_s": t_first - t_deep, "deep_cut": deep_cut, "caught_up": self._caught_up,
                  "cut_thoughts": self._cut_thoughts}
        self.result = session_result(p, self.question, self.mode, self.clock.name, len(self.chunks), self.events,
                                     self._lags, st, answer, (t_end_stream, delay, delay_last),
                                     time.perf_counter() - self._wall0, source_extra, timing)
        summary = self.result.summary
        yield summary


def session_result(p: StreamingPolicy, question: str, mode: str, clock: str, n_chunks: int, events: list[Event],
                   lags: list[float], st: PolicyState, answer: str, times: tuple[float, float, float],
                   wall_s: float, source_extra: dict, timing: dict | None = None) -> SessionResult:
    """The finished session's record (trace, format report, summary); shared with the batched engine.

    ``events`` must not yet hold the summary; ``times`` is (stream end, delay to first, delay to last answer token);
    ``timing``: the delay's parts and scheduling counters (:class:`SummaryEvent` fields; default zeros).
    """
    t_end_stream, delay, delay_last = times
    p.release(st)  # free the KV cache (and a batched row) now; the token trace stays for training/inspection
    trace = p.protocol.parse(st.ids, st.env_mask)
    report = trace.validate(n_chunks, streaming=mode == "stream")
    # Closures the environment wrote after the policy's last token are never read by anyone: not input.
    unread = sum(1 for m in st.env_mask[len(st.ids) - st.pending :] if m == 0)
    input_tokens = st.input_tokens - unread
    thoughts = sum(isinstance(e, ThoughtEvent) for e in events)
    skips = [e for e in events if isinstance(e, SkipEvent)]
    summary = SummaryEvent(
        answer=answer,
        mode=mode,
        clock=clock,
        chunks=n_chunks,
        thoughts=thoughts,
        skips=len(skips),
        forced_skips=sum(e.forced for e in skips),
        stream_tokens=st.generated("stream"),
        deep_tokens=st.generated("deep"),
        answer_tokens=st.generated("answer"),
        input_tokens=input_tokens,
        prefill_tokens=st.prefill_tokens,
        prefill_per_input=(st.prefill_tokens + st.reprefill_tokens) / max(1, input_tokens),
        delay_s=delay,
        delay_last_s=delay_last,
        lag_s=max(lags, default=0.0),
        lag_avg_s=sum(lags) / len(lags) if lags else 0.0,
        format_violations=len(report.violations),
        stream_end_s=t_end_stream,
        wall_s=wall_s,
        **(timing or {}),
        policy=p.name,
        question=question,
        extra={"format_stream": report.format_stream, "format_deep": report.format_deep,
               "evicted_tokens": st.evicted_tokens, "reprefill_tokens": st.reprefill_tokens,
               "tool_tokens": st.tool_tokens, **source_extra},
    )
    return SessionResult(question, answer, events, summary, report, st, trace)
