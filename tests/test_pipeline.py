"""The concurrent pipeline: a producer thread that the policy never blocks, catch-up reads, deadline-aware thinking,
end of stream without a last per-chunk thought, and producer failures.

A *slow policy stand-in* is the tiny random-weight model with a forward hook that sleeps (no CPU use, so the
producer's timing is not disturbed by contention); on the simulated clock sleeping counts as compute, so these
runs are deterministic up to scheduling noise of a few milliseconds.
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

from adasr_mm.chunks import TimedChunk
from adasr_mm.errors import InputError
from adasr_mm.events import ChunkEvent, DeepEvent, SkipEvent, ThoughtEvent
from adasr_mm.pipeline import PipelineConfig, iter_pipeline, plan_threads
from adasr_mm.protocol import END_OF_STREAM
from adasr_mm.session import Session, SessionConfig


def _chunks(n: int, every: float = 0.5) -> list[TimedChunk]:
    return [TimedChunk(i * every, (i + 1) * every, f"Piece number {i} of the stream.") for i in range(n)]


@pytest.fixture
def slow(make_tiny_policy):
    """A tiny policy whose every forward pass takes ``delay`` seconds (sleeping, not computing)."""
    hooks = []

    def make(delay: float = 0.05, **cfg):
        policy = make_tiny_policy(**cfg)
        if delay:
            hooks.append(policy.model.register_forward_pre_hook(lambda *_: time.sleep(delay)))
        return policy

    yield make
    for h in hooks:
        h.remove()


class PacedSource:
    """A chunk source that does its own media-time pacing and spends ``work_s`` per chunk, like an ASR would."""

    def __init__(self, chunks: list[TimedChunk], work_s: float = 0.1, fail_after: int | None = None):
        self.chunks, self.work_s, self.fail_after = chunks, work_s, fail_after
        self.duration = chunks[-1].end
        self.clock = None

    def bind_clock(self, clock) -> None:
        self.clock = clock

    def __iter__(self):
        for i, c in enumerate(self.chunks):
            if self.fail_after is not None and i == self.fail_after:
                raise InputError("audio decoding failed at 2.0 s: corrupt data")
            self.clock.wait_until(c.end)
            time.sleep(self.work_s)  # "transcribing"
            c = TimedChunk(c.start, c.end, c.text, meta={"available_at": self.clock.now()})
            yield c


def _run(policy, source, clock="simulated", cfg=None, **scfg):
    s = Session(policy, "What happened?", SessionConfig(**scfg), clock=clock)
    events = list(iter_pipeline(s, source, None, cfg or PipelineConfig()))
    return s, events


def _available(events):
    return [e.t_available for e in events if isinstance(e, ChunkEvent)]


@pytest.mark.parametrize("clock", ["simulated", "realtime"])
def test_a_slow_policy_does_not_change_when_chunks_become_available(slow, clock):
    """The producer's availability stamps (media time + its own work) are the same with a policy 10x slower than
    the input; the consumer's lag goes to catching up, not into the producer's timeline."""
    chunks = _chunks(8, every=0.4)
    kw = dict(max_thought_tokens=8, max_deep_tokens=2, max_answer_tokens=2)
    fast_s, fast = _run(slow(0.0, **kw), PacedSource(chunks), clock)
    slow_s, slow_ev = _run(slow(0.06, **kw), PacedSource(chunks), clock)
    ends = np.array([c.end for c in chunks])
    for evs in (fast, slow_ev):
        got = np.array(_available(evs))
        assert len(got) == len(chunks)
        # available = media end + the source's 0.1 s of work; never pushed back by thinking (old design: + ~0.5 s
        # per earlier chunk)
        assert np.all(got >= ends + 0.1 - 1e-6) and np.all(got <= ends + 0.1 + 0.15), got - ends
    assert slow_s.result.summary.lag_s > fast_s.result.summary.lag_s  # the slow policy did lag, as a consumer


def test_catch_up_reads_queued_chunks_in_one_prefill(slow, forward_counter):
    policy = slow(0.05, max_thought_tokens=16, max_deep_tokens=4, max_answer_tokens=2)
    counter = forward_counter(policy.model)
    lengths = []
    h = policy.model.register_forward_pre_hook(lambda m, a, kw: lengths.append(int(kw["input_ids"].shape[1])),
                                               with_kwargs=True)
    try:
        s, events = _run(policy, _chunks(10, every=0.25), "simulated", PipelineConfig(deadline=False))
    finally:
        h.remove()
    groups = [e for e in events if isinstance(e, ThoughtEvent | SkipEvent) and e.group > 1]
    assert groups, "a policy 3x slower than the input must read queued chunks together"
    g = groups[0]
    members = [e for e in events if isinstance(e, ChunkEvent) and g.index - g.group < e.index <= g.index]
    assert len(members) == g.group and len({(e.t_start, e.t_end) for e in members}) == 1  # one read
    assert max(lengths) >= sum(e.tokens for e in members)  # ... in one forward pass
    assert s.result.summary.caught_up >= g.group
    # the grouped trace parses back into exactly the chunks read (random weights only ever hit the cap)
    assert not [v for v in s.result.format.violations if "cap hit" not in v and "chunk" in v]
    assert counter.calls == len(lengths)


@pytest.mark.parametrize("catch_up", [True, False])
def test_end_of_stream_reads_the_rest_without_a_thought(slow, catch_up):
    """Chunks still queued when the end is known go straight into the deep phase's prefill (with or without
    mid-stream catch-up: the eval schedule turns that off and must still end as a live run does)."""
    policy = slow(0.05, max_thought_tokens=16, max_deep_tokens=4, max_answer_tokens=2)
    s, events = _run(policy, _chunks(6, every=0.3), "simulated", PipelineConfig(deadline=False, catch_up=catch_up))
    last = len(s.chunks) - 1
    responded = {e.index for e in events if isinstance(e, ThoughtEvent | SkipEvent)}
    assert last not in responded
    assert s.result.trace.responses[-1].closer == END_OF_STREAM
    deep = next(e for e in events if isinstance(e, DeepEvent))
    end_marker = len(policy.protocol.end_ids("What happened?"))
    assert deep.prefill_tokens > end_marker  # the unread chunks were read with the end marker
    assert not [v for v in s.result.format.violations if "cap hit" not in v and "chunk" in v]


def test_thoughts_are_capped_by_the_time_to_the_next_chunk(slow):
    """~20 tokens/s and a chunk every second: deadline-aware caps stay near 20 and the lag stays bounded; with
    the deadline off, every thought runs to the 64-token cap and the lag grows chunk by chunk."""
    chunks = _chunks(8, every=1.0)
    on_s, on = _run(slow(0.05, max_thought_tokens=64, max_deep_tokens=4, max_answer_tokens=2), chunks,
                    "simulated", PipelineConfig(catch_up=False), max_lag_s=0)
    off_s, off = _run(slow(0.05, max_thought_tokens=64, max_deep_tokens=4, max_answer_tokens=2), chunks,
                      "simulated", PipelineConfig(catch_up=False, deadline=False), max_lag_s=0)
    caps_on = [e.cap for e in on if isinstance(e, ThoughtEvent)][1:]
    caps_off = [e.cap for e in off if isinstance(e, ThoughtEvent)]
    assert caps_off and set(caps_off) == {64}
    assert caps_on and all(8 <= c <= 30 for c in caps_on), caps_on
    assert on_s.result.summary.lag_s < 1.5 and off_s.result.summary.lag_s > 3.0


def test_answer_deadline_caps_deep_reasoning(slow):
    chunks = _chunks(3, every=1.0)
    kw = dict(max_thought_tokens=4, max_deep_tokens=120, max_answer_tokens=2)
    free_s, _ = _run(slow(0.05, **kw), chunks, "simulated")
    cut_s, _ = _run(slow(0.05, **kw), chunks, "simulated", PipelineConfig(answer_within_s=1.0))
    assert not free_s.result.summary.deep_cut and free_s.result.summary.deep_tokens == 120
    sm = cut_s.result.summary
    assert sm.deep_cut and 1 <= sm.deep_tokens <= 20  # 1.0 s at ~20 tokens/s, minus what the drain used
    # one chunk, read only with the end marker: nothing decoded yet, so the prior decode speed sets the cap
    one_s, _ = _run(slow(0.05, **kw), chunks[:1], "simulated", PipelineConfig(answer_within_s=1.0))
    assert one_s.result.summary.thoughts == 0
    assert one_s.result.summary.deep_cut and one_s.result.summary.deep_tokens <= 20


def test_a_failing_producer_ends_the_session_on_what_was_read(slow):
    policy = slow(0.0, max_thought_tokens=4, max_deep_tokens=4, max_answer_tokens=2)
    s = Session(policy, "What happened?", clock="simulated")
    events = []
    with pytest.raises(InputError, match="corrupt data"):
        for ev in iter_pipeline(s, PacedSource(_chunks(6), fail_after=3)):
            events.append(ev)
    assert [e.chunk.text for e in events if isinstance(e, ChunkEvent)] == [c.text for c in _chunks(3)]
    assert s.result is not None and "corrupt data" in s.result.summary.extra["input_error"]


def test_a_producer_that_fails_before_any_chunk_is_an_input_error(slow):
    s = Session(slow(0.0), "What happened?", clock="simulated")
    with pytest.raises(InputError, match="corrupt data"):
        list(iter_pipeline(s, PacedSource(_chunks(3), fail_after=0)))


def test_live_pushes_are_never_blocked_and_get_caught_up(slow):
    """A live source on the instant clock (as the app and the server use it): pushes return at once while the
    policy is busy, and what queued up is read together (the same pipeline as files)."""
    from adasr_mm.adapters.live import LiveSource
    from adasr_mm.clock import LiveClock

    clock = LiveClock()
    src = LiveSource()
    src.bind_clock(clock)
    s = Session(slow(0.05, max_thought_tokens=16, max_deep_tokens=4, max_answer_tokens=2), "What happened?",
                clock=clock)
    out: list = []
    worker = threading.Thread(target=lambda: out.extend(iter_pipeline(s, src, live=True)))
    worker.start()
    for i in range(12):  # a sentence every 0.1 s: ~8x faster than the policy thinks
        assert src.push_text(f"Sentence number {i} arrives now.")
        time.sleep(0.1)
    src.stop()
    assert not src.push_text("too late")  # after stop, pushes are refused
    worker.join(60)
    assert not worker.is_alive() and s.result is not None
    reads = [e for e in out if isinstance(e, ChunkEvent)]
    assert [e.chunk.text for e in reads] == [f"Sentence number {i} arrives now." for i in range(12)]
    assert s.result.summary.caught_up >= 2  # queued chunks were read together (catch-up or at the end)


def test_thread_plan_splits_the_cores():
    assert plan_threads(0, 0, cores=2) == (1, 1)
    assert plan_threads(0, 0, cores=8) == (4, 4)
    assert plan_threads(2, 0, cores=2) == (2, 1)
    assert plan_threads(0, 3, cores=4) == (2, 3)


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2 cores to tell the split from all cores")
def test_a_lone_pipeline_gives_deep_reasoning_every_core_then_restores_the_split(make_tiny_policy):
    """Once the producer has stopped, the ASR's cores are free: a lone pipeline's deep phase runs on all of them
    (measured where it happens, at the deep event), and the streaming split is back afterwards; an explicit
    ``end_threads`` is used as given."""
    import torch

    policy = make_tiny_policy(max_thought_tokens=4, max_deep_tokens=4, max_answer_tokens=2)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for cfg, want in ((PipelineConfig(), os.cpu_count()), (PipelineConfig(end_threads=1), 1)):
            s = Session(policy, "What happened?", SessionConfig(mode="stream"), clock="simulated")
            seen = [torch.get_num_threads() for e in iter_pipeline(s, _chunks(3), None, cfg)
                    if isinstance(e, DeepEvent)]
            assert seen == [want]
            assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_chunks_read_as_the_stream_ends_get_no_thought(make_tiny_policy):
    """The end arrives while a chunk is being read: no thought is started (a thought cut after one token would
    leave a fragment in the context); the end marker follows the chunk, as in a catch-up read at the end."""
    policy = make_tiny_policy(max_thought_tokens=8, max_deep_tokens=4, max_answer_tokens=2)
    s = Session(policy, "What happened?", SessionConfig(), clock="simulated")
    first = list(s.push_group(_chunks(1), [0.5]))
    assert any(isinstance(e, ThoughtEvent | SkipEvent) for e in first)
    last = list(s.push_group([TimedChunk(0.5, 1.0, "The last piece.")], [1.0], interrupt=lambda: "end"))
    assert [type(e) for e in last] == [ChunkEvent]
    result = s.finish(stream_end=1.0)
    assert result.trace.responses[-1].closer == END_OF_STREAM
    assert result.summary.cut_thoughts == 0
    assert not [v for v in result.format.violations if "cap hit" not in v and "chunk" in v]


@pytest.mark.parametrize("where", ["mid-stream", "near the end"])
def test_the_eval_schedule_gives_a_stalled_run_the_trace_of_a_smooth_one(make_tiny_policy, where):
    """`adasr-mm eval` must not change a checkpoint's traces with the machine's load: with its schedule (no
    catch-up, no deadline cuts, no forced skips) a 5 s stall leaves the trace as it is without the stall; with
    the live defaults the same stall changes it (chunks read together, a skip forced by lag). Near the end, the
    stall puts the consumer's clock past the stream's close with chunks still queued: a loaded test run read them
    with the end marker, without their thoughts (eval CLI and library one format point apart)."""
    from adasr_mm.training.config import load_train_config
    from adasr_mm.training.evaluate import _eval_config

    acfg = _eval_config(None, load_train_config(None, []))
    chunks = _chunks(20, every=0.5)  # mid-stream: the stall comes in chunk 1's thought, 10 s before the end

    calls = [0]

    def run(stall_at: int | None, cfg: PipelineConfig, max_lag_s: float) -> list[tuple]:
        policy = make_tiny_policy(max_thought_tokens=8, max_deep_tokens=4, max_answer_tokens=2)
        calls[0] = 0

        def stall(*_):
            calls[0] += 1
            if calls[0] == stall_at:
                time.sleep(5.0)

        h = policy.model.register_forward_pre_hook(stall)
        try:
            s, events = _run(policy, chunks, "simulated", cfg, max_lag_s=max_lag_s)
        finally:
            h.remove()
        return [(type(e).__name__, e.index, e.group, getattr(e, "text", "")) for e in events
                if isinstance(e, ThoughtEvent | SkipEvent)] + [("answer", s.result.answer)]

    smooth = run(None, acfg.pipeline, acfg.session.max_lag_s)
    at = 12 if where == "mid-stream" else calls[0] - 24  # in the last chunks' thoughts (~2 s of stream left)
    assert run(at, acfg.pipeline, acfg.session.max_lag_s) == smooth
    assert run(at, PipelineConfig(), 4.0) != run(None, PipelineConfig(), 4.0)
