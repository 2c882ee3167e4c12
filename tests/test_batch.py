"""The batched engine against the batch-1 ``Session``: same traces, masks, phases, log-probs and counters."""

from __future__ import annotations

import pytest

from adasr_mm.adapters.text import chunks_from_text
from adasr_mm.batch import BatchConfig, BatchEngine, run_batched
from adasr_mm.errors import InputError
from adasr_mm.session import Session, SessionConfig

STREAMS = [
    ("How many apples does Tom have?", "Tom has 5 apples. The weather is sunny and warm today. He buys 3 more apples."),
    ("How far does the train go?", "A train leaves at 3 pm. It travels 60 miles per hour. The conductor likes tea."),
    ("How many pages does Mia read?", "Mia reads 10 pages a day. Her cat is grey. She reads for 4 days."),
]


def batch1(policy, question, chunks, seed, guide=None):
    session = Session(policy, question, SessionConfig(max_lag_s=0.0), clock="instant", seed=seed)
    session.state.guide = guide
    for c in chunks:
        for _ in session.push(c):
            pass
    return session.finish()


def assert_same(ref, got, tol=1e-4):
    a, b = ref.state, got.state
    assert b.ids == a.ids
    assert b.env_mask == a.env_mask
    assert b.phase == a.phase
    assert max(abs(x - y) for x, y in zip(a.logprobs, b.logprobs, strict=True)) <= tol
    for k in ("prompt_len", "input_tokens", "prefill_tokens", "decode_tokens", "forward_calls", "pending",
              "segments", "guided", "tool_tokens"):
        assert getattr(b, k) == getattr(a, k), k
    assert got.answer == ref.answer
    assert got.format == ref.format
    ds, dr = got.summary.to_dict(), ref.summary.to_dict()
    for k in ("chunks", "thoughts", "skips", "stream_tokens", "deep_tokens", "answer_tokens", "input_tokens",
              "prefill_tokens", "prefill_per_input", "format_violations", "format_stream", "format_deep"):
        assert ds[k] == dr[k], k
    assert [e.type for e in got.events] == [e.type for e in ref.events]


def thought_lengths(res):
    return [e.tokens for e in res.events if e.type in ("thought", "skip")]


class StopAfter:
    """A token guide that ends the thought about chunk k after ``n[k]`` tokens, so rows of one batch finish their
    thoughts at different steps; deep and answer tokens are left as sampled."""

    def __init__(self, policy, n):
        self.ids, self.n = policy.ids, n

    def __call__(self, st, proposed, forbidden):
        if st.phase[-1] != "stream":
            return proposed
        k = st.ids.count(self.ids.chunk_open) - 1
        done = 0  # tokens of this thought so far
        while st.env_mask[-1 - done]:
            done += 1
        if done + 1 >= self.n[k]:
            return self.ids.eot
        return proposed if proposed not in (self.ids.eot, self.ids.skip) else 1000


def _jobs(seeds_per_stream=2):
    jobs = []
    for k, (q, text) in enumerate(STREAMS):
        chunks = list(chunks_from_text(text))
        jobs += [(q, chunks, 100 * k + i) for i in range(seeds_per_stream)]
    return jobs


@pytest.mark.slow
def test_greedy_batched_equals_batch1_on_real_smollm2():
    """float32: bf16 matmuls at batch 8 and batch 1 round differently, float32 keeps log-probs within 1e-4."""
    from adasr_mm.policy import PolicyConfig, StreamingPolicy

    policy = StreamingPolicy.from_pretrained(PolicyConfig(dtype="float32", max_thought_tokens=12,
                                                          max_deep_tokens=24, max_answer_tokens=8))
    jobs = _jobs(2)
    refs = [batch1(policy, q, c, s) for q, c, s in jobs]
    lengths = {tuple(thought_lengths(r)) for r in refs}
    deep = {r.summary.deep_tokens for r in refs}
    assert len(lengths) > 1 or len(deep) > 1, "precondition: the rows must decode different lengths"
    got = run_batched(policy, jobs)
    for ref, res in zip(refs, got, strict=True):
        assert_same(ref, res)


def test_uneven_thoughts_and_sampling_match_batch1(make_tiny_policy):
    policy = make_tiny_policy(max_thought_tokens=9, max_deep_tokens=12, max_answer_tokens=5, temperature=1.0)
    jobs = _jobs(3)
    plans = [[1 + (i * 5 + j * 3) % 9 for j in range(3)] for i in range(len(jobs))]
    refs = [batch1(policy, q, c, s, StopAfter(policy, plans[i])) for i, (q, c, s) in enumerate(jobs)]
    assert len({tuple(thought_lengths(r)) for r in refs}) > 3  # uneven thoughts across rows
    engine = BatchEngine(policy, session_config=SessionConfig(max_lag_s=0.0))
    rows = []
    for q, c, s in jobs:
        rows += engine.add(q, c, [s])
    for i, r in enumerate(rows):
        r.state.guide = StopAfter(policy, plans[i])
    engine.run()
    assert engine.stats.real_tokens < engine.stats.positions  # rows really waited on masked holes
    for ref, row in zip(refs, rows, strict=True):
        assert_same(ref, row.result)


def test_group_prefills_the_prompt_once(make_tiny_policy, forward_counter):
    policy = make_tiny_policy(max_thought_tokens=4, max_deep_tokens=6, max_answer_tokens=3)
    q, text = STREAMS[0]
    chunks = list(chunks_from_text(text))
    jobs = [(q, chunks, s) for s in range(4)]
    counter = forward_counter(policy.model)
    engine = BatchEngine(policy)
    rows = engine.add(q, chunks, [s for _, _, s in jobs])
    prompt = rows[0].state.prompt_len
    engine.run()
    assert engine.stats.shared_prompt_tokens == 3 * prompt
    # one batch-1 prompt call, then every call is batched: the model saw the prompt positions once
    assert counter.calls == engine.stats.forward_calls
    refs = [batch1(policy, q, chunks, s) for q, chunks, s in jobs]
    for ref, row in zip(refs, rows, strict=True):
        assert_same(ref, row.result)


def test_rows_join_and_leave_between_steps(make_tiny_policy):
    policy = make_tiny_policy(max_thought_tokens=5, max_deep_tokens=8, max_answer_tokens=4, temperature=0.8,
                              dtype="float32")
    jobs = _jobs(1)
    engine = BatchEngine(policy, BatchConfig(compact_at=0.05))
    first = engine.add(*jobs[0][:2], [jobs[0][2]])
    dropped = engine.add(*jobs[1][:2], [jobs[1][2]])[0]
    for _ in range(7):
        engine.step()
    engine.remove(dropped)
    late = engine.add(*jobs[2][:2], [jobs[2][2]])
    engine.run()
    assert engine.stats.compactions > 0 and not engine.rows
    assert dropped.result is None
    for (q, c, s), row in zip([jobs[0], jobs[2]], first + late, strict=True):
        assert_same(batch1(policy, q, c, s), row.result)


def test_bad_rows_are_refused(make_tiny_policy):
    policy = make_tiny_policy()
    engine = BatchEngine(policy, BatchConfig(max_rows=2))
    chunks = list(chunks_from_text(STREAMS[0][1]))
    with pytest.raises(InputError, match="question is empty"):
        engine.add("  ", chunks)
    with pytest.raises(InputError, match="no chunks"):
        engine.add("Why?", [])
    with pytest.raises(ValueError, match="batch full"):
        engine.add("Why?", chunks, [1, 2, 3])
    with pytest.raises(ValueError, match="stream mode only"):
        BatchEngine(policy, session_config=SessionConfig(mode="read-then-think"))
