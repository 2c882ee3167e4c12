"""Continuous batching across live sessions (`adasr_mm.continuous.DecodeScheduler`) against batch 1.

Real SmolLM2-135M in float32 (bf16 matmuls round differently at different batch sizes; see docs/batching.md), greedy.
Which calls share rows depends on thread timing; the point is that any interleaving gives every session exactly
its batch-1 trace.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch
from test_batch import STREAMS, assert_same

from adasr_mm.adapters.text import chunks_from_text
from adasr_mm.batch import BatchEngine
from adasr_mm.continuous import DecodeScheduler
from adasr_mm.session import Session, SessionConfig

pytestmark = pytest.mark.slow

@pytest.fixture(scope="module")
def policy():
    from adasr_mm.policy import PolicyConfig, StreamingPolicy

    return StreamingPolicy.from_pretrained(PolicyConfig(dtype="float32", max_thought_tokens=10, max_deep_tokens=16,
                                                        max_answer_tokens=8))


def _session(policy, k, batcher=None, mode="stream", emit_deltas=False):
    return Session(policy, STREAMS[k][0], SessionConfig(max_lag_s=0.0, mode=mode), clock="instant",
                   emit_deltas=emit_deltas, seed=k, batcher=batcher)


def _chunks(k):
    return list(chunks_from_text(STREAMS[k][1]))


def _run(policy, k, batcher=None, mode="stream"):
    s = _session(policy, k, batcher, mode)
    for c in _chunks(k):
        for _ in s.push(c):
            pass
    return s.finish()


def _threads(*targets):
    errors: list[BaseException] = []

    def wrap(f):
        def main():
            try:
                f()
            except BaseException as e:  # noqa: BLE001 - re-raised in the test thread
                errors.append(e)
        return main

    ts = [threading.Thread(target=wrap(f)) for f in targets]
    for t in ts:
        t.start()
    return ts, errors


def _join(ts, errors):
    for t in ts:
        t.join(600)
    assert not [t for t in ts if t.is_alive()], "a session thread hung"
    if errors:
        raise errors[0]


class _Poison:
    """Makes every model call that feeds the token " zebra" fail half-way through the layers (so the shared
    cache has been partly appended to when the error comes)."""

    def __init__(self, policy):
        self.id = policy.tokenizer(" zebra", add_special_tokens=False)["input_ids"][0]
        self.armed = False
        layers = policy.model.model.layers
        self._hooks = [policy.model.register_forward_pre_hook(self._check, with_kwargs=True),
                       layers[len(layers) // 2].register_forward_pre_hook(self._fail)]

    def _check(self, module, args, kwargs):
        self.armed = bool((kwargs["input_ids"] == self.id).any())

    def _fail(self, module, args):
        if self.armed:
            raise RuntimeError("poisoned call")

    def remove(self):
        for h in self._hooks:
            h.remove()


def test_attached_rows_sub_batches_and_a_failed_call_match_batch1(policy):
    """The engine calls the scheduler makes, driven by hand: attach, a prefill of some rows only (sub-batch),
    a full decode step, a call that fails half-way (the cache must be as before), then more steps."""
    refs = [policy.new_state(0) for _ in STREAMS]
    states = [policy.new_state(0) for _ in STREAMS]
    engine = BatchEngine(policy)
    rows = []
    for (q, _), ref, st in zip(STREAMS, refs, states, strict=True):
        policy.begin(ref, q)
        policy.begin(st, q)
        rows.append(engine.attach(st))
    chunk = [policy.protocol.chunk_ids(_chunks(k)[0]) for k in range(len(STREAMS))]

    def step(ks, sub):
        for k in ks:
            policy._forward_alone(refs[k])
        engine.forward([rows[k] for k in ks], sub_batch=sub)
        for k in ks:
            assert torch.allclose(states[k].next_logits, refs[k].next_logits, atol=1e-4)
            for name in ("cache_len", "prefill_tokens", "decode_tokens", "forward_calls", "pending"):
                assert getattr(states[k], name) == getattr(refs[k], name), name

    def feed(ks, ids_of):
        for k in ks:
            for st in (refs[k], states[k]):
                policy._append(st, ids_of(k), 0, "stream")

    def decode(ks):
        for k in ks:
            tok = int(refs[k].next_logits.argmax())
            for st in (refs[k], states[k]):
                policy._append(st, [tok], 1, "stream")

    feed([1], lambda k: chunk[k])
    step([1], sub=True)  # one row's chunk: only that row computed, holes appended to the others
    feed([0, 2], lambda k: chunk[k])
    step([0, 2], sub=True)  # two chunks of different lengths, left-padded
    decode([0, 1, 2])
    step([0, 1, 2], sub=False)
    decode([0, 1, 2])
    step([0, 2], sub=False)  # row 1 waits on a computed hole
    poison = _Poison(policy)
    try:
        width, mask = engine.mask.shape[1], engine.mask.clone()
        keys = [layer.keys.clone() for layer in engine.cache.layers]
        feed([1], lambda k: policy.tokenizer(" zebra", add_special_tokens=False)["input_ids"])
        with pytest.raises(RuntimeError, match="poisoned"):
            engine.forward([rows[1]], sub_batch=False)  # rows 0 and 2 computed as holes: the shared cache grows
        assert engine.mask.shape[1] == width and torch.equal(engine.mask, mask)
        assert all(torch.equal(layer.keys, k) for layer, k in zip(engine.cache.layers, keys, strict=True))
        assert states[1].pending == refs[1].pending > 1  # nothing accounted for the failed call
    finally:
        poison.remove()
    decode([0, 2])
    step([0, 1, 2], sub=False)  # the rows carry on as if the failed call never happened
    engine.compact()
    decode([0, 1, 2])
    step([0, 1, 2], sub=False)


def test_concurrent_sessions_equal_their_batch1_runs(policy):
    """Two streaming sessions and a read-then-think one on their own threads, one scheduler."""
    modes = ["stream", "stream", "read-then-think"]
    refs = [_run(policy, k, mode=m) for k, m in enumerate(modes)]
    sched = DecodeScheduler(policy)
    got: list = [None] * 3

    def worker(k):
        return lambda: got.__setitem__(k, _run(policy, k, sched, modes[k]))

    _join(*_threads(*[worker(k) for k in range(3)]))
    for ref, res in zip(refs, got, strict=True):
        assert_same(ref, res)
    assert sched.stats.max_rows >= 2  # precondition: calls really were shared
    sched.sync()
    assert sched.sessions == 0 and sched.engine.cache is None  # every session left the batch
    sched.close()


def test_calculator_results_under_continuous_batching(policy):
    """Sessions whose thoughts end in "2 + 3 =": the calculator's result is pending with the "=" (a wider call
    than a decode step) and every session still gets its batch-1 trace."""
    from test_calculator import Writes

    def run(k, sched=None):
        s = _session(policy, k, sched)
        s.state.guide = Writes(policy, "2 + 3 =")  # and " 5" fit the 10-token thought cap
        for c in _chunks(k):
            for _ in s.push(c):
                pass
        return s.finish()

    refs = [run(k) for k in range(3)]
    assert all(r.state.tool_tokens > 0 for r in refs)  # precondition: the calculator wrote in every session
    sched = DecodeScheduler(policy)
    got: list = [None] * 3
    _join(*_threads(*[(lambda k=k: got.__setitem__(k, run(k, sched))) for k in range(3)]))
    for ref, res in zip(refs, got, strict=True):
        assert res.state.tool_tokens == ref.state.tool_tokens
        assert_same(ref, res)
    sched.close()


def test_sessions_join_and_leave_mid_run(policy):
    """A reads two chunks; B joins beside it, C joins, reads two chunks and leaves; then A and B run on."""
    refs = [_run(policy, k) for k in range(2)]
    partial = _session(policy, 2)
    for c in _chunks(2)[:2]:
        for _ in partial.push(c):
            pass
    sched = DecodeScheduler(policy)
    a_ready, b_ready, go = threading.Event(), threading.Event(), threading.Event()
    got: dict = {}

    def a():
        s = _session(policy, 0, sched)
        chunks = _chunks(0)
        for i, c in enumerate(chunks):
            if i == 2:
                a_ready.set()
                go.wait()
            for _ in s.push(c):
                pass
        got["a"] = s.finish()

    def b():
        s = _session(policy, 1, sched)
        for i, c in enumerate(_chunks(1)):
            for _ in s.push(c):
                pass
            if i == 0:
                b_ready.set()
                go.wait()
        got["b"] = s.finish()

    def c():
        s = _session(policy, 2, sched)
        for ch in _chunks(2)[:2]:
            for _ in s.push(ch):
                pass
        got["c"] = list(s.state.ids)
        policy.release(s.state)  # leaves mid-stream (a client went away)

    ta, ea = _threads(a)
    a_ready.wait(600)
    tb, eb = _threads(b)
    tc, ec = _threads(c)
    _join(tc, ec)
    b_ready.wait(600)
    sched.sync()
    assert sched.sessions == 2  # A and B hold rows; C's is gone
    go.set()
    _join(ta + tb, ea + eb)
    assert_same(refs[0], got["a"])
    assert_same(refs[1], got["b"])
    assert got["c"] == partial.state.ids
    sched.sync()
    assert sched.sessions == 0 and sched.engine.cache is None
    sched.close()


def test_a_failing_or_cancelled_session_does_not_take_down_the_others(policy):
    """P writes a poison token in its first thought (its token guide), and every model call that feeds it fails;
    the sessions decode in lockstep, so that call is shared with the others. X is cancelled in the middle of a
    thought (its consumer stops and releases it, as the apps do). A and B still get their batch-1 results."""
    refs = [_run(policy, k) for k in range(2)]
    sched = DecodeScheduler(policy)
    poison = _Poison(policy)
    ready = threading.Barrier(4)
    got: dict = {}
    failed: list[BaseException] = []

    def healthy(k):
        def main():
            s = _session(policy, k, sched)
            s.start()
            ready.wait(600)  # every prompt is in the batch before any chunk is read
            for c in _chunks(k):
                for _ in s.push(c):
                    pass
            got[k] = s.finish()
        return main

    def poisoned():
        s = _session(policy, 2, sched)
        calls = []

        def guide(st, proposed, forbidden):
            calls.append(proposed)
            return poison.id if len(calls) == 3 else proposed

        s.state.guide = guide
        s.start()
        ready.wait(600)
        try:
            for c in _chunks(2):
                for _ in s.push(c):
                    pass
            s.finish()
        except RuntimeError as e:
            failed.append(e)
        finally:
            policy.release(s.state)

    def cancelled():
        s = _session(policy, 0, sched, emit_deltas=True)
        s.start()
        ready.wait(600)
        for c in _chunks(0):
            events = s.push(c)
            if any(ev.type == "delta" for ev in events):  # stops in the middle of a thought
                break
        events.close()  # type: ignore[attr-defined]
        got["x"] = s.state.responding  # closing the consumer closed the thought: no call is expected from it
        policy.release(s.state)

    try:
        _join(*_threads(healthy(0), healthy(1), poisoned, cancelled))
    finally:
        poison.remove()
    assert len(failed) == 1 and "poisoned" in str(failed[0])
    assert sched.stats.retried_calls >= 1  # precondition: the failing call carried other sessions' rows
    assert got["x"] is False
    assert_same(refs[0], got[0])
    assert_same(refs[1], got[1])
    sched.sync()
    assert sched.sessions == 0
    sched.close()


def test_app_runs_share_one_decode_scheduler(policy):
    """The Gradio app's engine (app.batching, the default): two file runs at once go through its scheduler and
    each gets its batch-1 trace (instant clock: chunks are read one by one, no deadlines, so it is deterministic)."""
    from adasr_mm.adapters.text import chunks_from_text
    from adasr_mm.agent import StreamingAgent
    from apps.config import load_settings
    from apps.engine import Engine

    root = Path(__file__).resolve().parents[1] / "samples" / "text"
    jobs = [("apples.txt", "How many apples does Tom have now?"), ("bakery.txt", "How many muffins are left?")]
    settings = load_settings(None, ["session.max_lag_s=0"])  # no lag-forced skips: the trace must not depend on load
    engine = Engine(settings, agent=StreamingAgent(policy, settings), asr_model=object())
    refs = [engine.agent.run(q, chunks_from_text((root / n).read_text()), clock="instant") for n, q in jobs]
    try:
        conns = [engine.connection(n) for n, _ in jobs]
        runs = [engine.start_file(c, q, str(root / n), "instant") for c, (n, q) in zip(conns, jobs, strict=True)]
        for run in runs:
            run.join(600)
        for run, ref in zip(runs, refs, strict=True):
            assert run.status == "done", run.error
            assert run.session.state.ids == ref.state.ids and run.answer.answer == ref.answer
        st = engine.batcher.stats
        assert st.rows_served > st.decode_calls + st.prefill_calls  # some calls carried both runs
        engine.batcher.sync()
        assert engine.batcher.sessions == 0
    finally:
        engine.close()


def test_a_session_that_fills_its_context_evicts_and_rejoins():
    """A 300-token context: long streams evict old chunks at batch 1 on the session's own thread (the row leaves
    the batch) and rejoin with the rebuilt cache; both sessions still equal their batch-1 runs."""
    from adasr_mm.policy import PolicyConfig, StreamingPolicy

    # the untrained base model: its longer thoughts fill the 300-token context on both streams
    small = StreamingPolicy.from_pretrained(PolicyConfig(policy="base", dtype="float32", max_thought_tokens=10,
                                                         max_deep_tokens=16, max_answer_tokens=8,
                                                         max_context_tokens=300))
    streams = [(STREAMS[k][0], list(chunks_from_text(STREAMS[k][1] + " " + STREAMS[k][1]))) for k in range(2)]

    def run(k, batcher=None):
        q, chunks = streams[k]
        s = Session(small, q, SessionConfig(max_lag_s=0.0), clock="instant", seed=k, batcher=batcher)
        for c in chunks:
            for _ in s.push(c):
                pass
        return s.finish()

    refs = [run(k) for k in range(2)]
    assert all(r.summary.extra["evicted_tokens"] > 0 for r in refs)  # precondition: both streams evict
    sched = DecodeScheduler(small)
    got: list = [None, None]
    _join(*_threads(*[lambda k=k: got.__setitem__(k, run(k, sched)) for k in range(2)]))
    for ref, res in zip(refs, got, strict=True):
        assert_same(ref, res)
        for k in ("evicted_tokens", "reprefill_tokens"):
            assert res.summary.extra[k] == ref.summary.extra[k], k
    assert sched.stats.max_rows >= 2
    sched.sync()
    assert sched.sessions == 0
    sched.close()
