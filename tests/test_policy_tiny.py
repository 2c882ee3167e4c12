"""Plumbing of the streaming policy on a tiny random-weight model (fast; the real model is in test_session_real)."""

import pytest

from adasr_mm.chunks import TimedChunk
from adasr_mm.events import ChunkEvent, SkipEvent, ThoughtEvent
from adasr_mm.protocol import ProtocolConfig
from adasr_mm.session import Session, SessionConfig


def _chunks(n, words=6):
    return [TimedChunk(i * 2.0, i * 2.0 + 2.0, " ".join(f"w{i}x{j}" for j in range(words)) + ".")
            for i in range(n)]


def _run(policy, chunks, **kw):
    s = Session(policy, "What happened?", SessionConfig(**kw), clock="instant")
    events = []
    for c in chunks:
        events += list(s.push(c))
    return s, s.finish()


def test_every_position_is_processed_exactly_once(make_tiny_policy, forward_counter):
    policy = make_tiny_policy(max_thought_tokens=5, max_deep_tokens=7, max_answer_tokens=4)
    counter = forward_counter(policy.model)
    s, res = _run(policy, _chunks(6))
    st = res.state
    sm = res.summary
    assert sm.prefill_tokens == sm.input_tokens and sm.prefill_per_input == 1.0
    # the hook saw exactly the trace minus the final pending token(s), and prefill+decode add up to it
    assert counter.positions == len(st.ids) - st.pending == st.prefill_tokens + st.decode_tokens
    assert sm.stream_tokens + sm.deep_tokens + sm.answer_tokens == sum(st.env_mask)
    kinds = [type(e) for e in res.events if isinstance(e, (ChunkEvent, ThoughtEvent, SkipEvent))]
    assert kinds[0::2] == [ChunkEvent] * 6
    assert all(k in (ThoughtEvent, SkipEvent) for k in kinds[1::2])
    # random weights never say <|eot|> by chance within 5 tokens: every thought capped and env-closed
    assert sm.format_violations >= 1
    assert res.trace.responses and len(res.trace.responses) == 6


def test_unconsumed_push_still_runs(make_tiny_policy):
    policy = make_tiny_policy(max_thought_tokens=3, max_deep_tokens=3, max_answer_tokens=2)
    s = Session(policy, "Q?", clock="instant")
    for c in _chunks(3):
        s.push(c)  # never iterated
    res = s.finish()
    assert res.summary.chunks == 3
    assert sum(isinstance(e, (ThoughtEvent, SkipEvent)) for e in res.events) == 3


def test_sessions_are_independent(make_tiny_policy):
    policy = make_tiny_policy(max_thought_tokens=4, max_deep_tokens=4, max_answer_tokens=2)
    a = Session(policy, "Q about A?", clock="instant")
    b = Session(policy, "Q about B?", clock="instant")
    ca, cb = _chunks(2), _chunks(3, words=3)
    for x, y in zip(ca, cb, strict=False):  # interleaved pushes on one model
        list(a.push(x))
        list(b.push(y))
    list(b.push(cb[2]))
    ra, rb = a.finish(), b.finish()
    solo = Session(policy, "Q about A?", clock="instant")
    for x in ca:
        list(solo.push(x))
    rs = solo.finish()
    assert ra.state.ids == rs.state.ids  # greedy: interleaving another session changed nothing
    assert ra.summary.chunks == 2 and rb.summary.chunks == 3


def test_sampling_is_seeded(make_tiny_policy):
    policy = make_tiny_policy(max_thought_tokens=6, max_deep_tokens=6, max_answer_tokens=3, temperature=1.0, top_p=0.9)
    runs = []
    for seed in (1, 1, 2):
        s = Session(policy, "Q?", clock="instant", seed=seed)
        for c in _chunks(2):
            list(s.push(c))
        runs.append(s.finish().state.ids)
    assert runs[0] == runs[1] and runs[0] != runs[2]


def test_protocol_markers_never_sampled_by_the_policy(make_tiny_policy):
    policy = make_tiny_policy(max_thought_tokens=8, max_deep_tokens=8, max_answer_tokens=4, temperature=1.5)
    _, res = _run(policy, _chunks(4))
    st, p = res.state, policy.ids
    for tok, env, phase in zip(st.ids, st.env_mask, st.phase, strict=True):
        if env:
            assert tok not in p.env_only
            if phase == "stream":
                assert tok not in (p.think_close, *p.eos)


def test_read_then_think_reads_everything_at_the_end(make_tiny_policy):
    policy = make_tiny_policy(max_thought_tokens=4, max_deep_tokens=5, max_answer_tokens=2)
    chunks = _chunks(3)
    _, stream = _run(policy, chunks)
    _, rtt = _run(policy, chunks, mode="read-then-think")
    deep = next(e for e in rtt.events if e.type == "deep")
    chunk_tokens = sum(e.tokens for e in rtt.events if e.type == "chunk")
    assert deep.prefill_tokens == chunk_tokens + 1  # all chunks + <|end_of_stream|>, read at stream end
    assert rtt.summary.stream_tokens == 0 and rtt.summary.thoughts == 0
    assert rtt.summary.prefill_tokens == rtt.summary.input_tokens
    # same model, same prompt, same chunk tokens
    prompt_len = stream.state.prompt_len
    assert rtt.state.ids[:prompt_len] == stream.state.ids[:prompt_len]
    assert next(e for e in stream.events if e.type == "deep").prefill_tokens == 1


def test_context_first(make_tiny_policy):
    policy = make_tiny_policy(max_thought_tokens=3, max_deep_tokens=3, max_answer_tokens=2,
                              protocol=ProtocolConfig(order="context-first"))
    _, res = _run(policy, _chunks(2))
    text = policy.tokenizer.decode(res.state.ids)
    assert text.index("<|end_of_stream|>Question: What happened?") > text.index("<|/chunk|>")


def test_long_stream_evicts_old_chunks_instead_of_overflowing(make_tiny_policy):
    policy = make_tiny_policy(max_position_embeddings=256, max_thought_tokens=4, max_deep_tokens=6,
                              max_answer_tokens=2)
    _, res = _run(policy, _chunks(40))
    st = res.state
    assert st.evicted_tokens > 0 and st.reprefill_tokens > 0
    assert st.evicted_tokens <= len(st.ids) - st.prompt_len  # each token is evicted at most once
    assert res.summary.chunks == 40
    assert res.summary.extra["evicted_tokens"] == st.evicted_tokens


def test_simulated_clock_never_runs_backwards():
    from adasr_mm.clock import SimulatedClock

    clock = SimulatedClock()
    clock.wait_until(10.0)
    assert clock.now() >= 10.0
    now = clock.now()
    clock.wait_until(5.0)  # the past: no-op
    assert clock.now() >= now


def test_lag_budget_forces_skips(make_tiny_policy):
    """Within the lag budget the policy still thinks; beyond it the session forces a skip."""
    policy = make_tiny_policy(max_thought_tokens=4, max_deep_tokens=3, max_answer_tokens=2)
    s = Session(policy, "Q?", SessionConfig(max_lag_s=2.0), clock="simulated")
    s.start()
    s.clock.wait_until(1.5)
    evs = list(s.push(TimedChunk(0, 1, "a chunk on time."), available_at=0.5))  # 1 s late: within budget
    assert not any(isinstance(e, SkipEvent) and e.forced for e in evs)
    s.clock.wait_until(30.0)
    evs = list(s.push(TimedChunk(1, 2, "a late chunk."), available_at=2.0))  # ~28 s late: over budget
    assert isinstance(evs[-1], SkipEvent) and evs[-1].forced
    assert s.finish().summary.forced_skips == 1


def test_forced_skip_when_lagging(make_tiny_policy):
    policy = make_tiny_policy(max_thought_tokens=4, max_deep_tokens=3, max_answer_tokens=2)
    s = Session(policy, "Q?", SessionConfig(max_lag_s=0.5), clock="simulated")
    s.start()
    s.clock.wait_until(10.0)
    evs = list(s.push(TimedChunk(0, 1, "late chunk here."), available_at=1.0))  # 9 s late
    assert isinstance(evs[-1], SkipEvent) and evs[-1].forced
    assert evs[0].lag_s == pytest.approx(9.0, abs=0.5)
    res = s.finish()
    assert res.summary.forced_skips == 1


def test_bad_session_inputs(make_tiny_policy):
    from adasr_mm.errors import InputError

    policy = make_tiny_policy()
    with pytest.raises(InputError, match="question is empty"):
        Session(policy, "  ")
    with pytest.raises(ValueError, match="mode"):
        SessionConfig(mode="think-harder")
    s = Session(policy, "Q?")
    s.finish()
    with pytest.raises(RuntimeError, match="finished"):
        s.push(TimedChunk(0, 1, "x"))


def test_cached_forward_extends_the_cache_without_deprecated_names(make_tiny_policy):
    """Two cached forwards give the full forward's last logits, with the installed transformers' cache argument
    (``past_key_values`` warns in transformers 5.2x and goes in 5.40)."""
    import warnings

    import torch
    from transformers import DynamicCache

    from adasr_mm.models import forward_cached

    model = make_tiny_policy().model
    ids = torch.tensor([[11, 12, 13, 14, 15, 16]])
    with warnings.catch_warnings(record=True) as caught, torch.inference_mode():
        warnings.simplefilter("always")
        _, cache = forward_cached(model, ids[:, :4], DynamicCache())
        out, cache = forward_cached(model, ids[:, 4:], cache)
        full = model(input_ids=ids).logits[0, -1]
    assert cache.get_seq_length() == 6
    assert torch.allclose(out.logits[0, -1], full, atol=1e-5)
    assert not [str(w.message) for w in caught if "past_key_values" in str(w.message)]
