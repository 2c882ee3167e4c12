"""The calculator tool: what it reads, and that its result enters a response as environment tokens in every
decode path (batch-1 session, batched engine) and on the real shipped policy."""

from __future__ import annotations

import re
from fractions import Fraction

import pytest
from test_batch import assert_same

from adasr_mm.adapters.text import chunks_from_text
from adasr_mm.batch import BatchEngine
from adasr_mm.calculator import evaluate, result_for
from adasr_mm.session import Session, SessionConfig


@pytest.mark.parametrize(("text", "want"), [
    ("60 + 4 =", " 64"), ("48 - 26 =", " 22"), ("Then 54 / 2 =", " 27"), ("12 / 13 =", " 0.92"),
    ("2 + 3 * 4 =", " 14"), ("20 - 6 / 3 =", " 18"), ("3 x 4 =", " 12"), ("3 × 4 =", " 12"), ("9 ÷ 3 =", " 3"),
    ("4 - 6 =", " -2"), ("1.5 + 2.25 =", " 3.75"), ("10 / 4 * 2 =", " 5"), ("7 - 2 - 1 =", " 4"),
])
def test_results(text, want):
    assert result_for(text) == want


@pytest.mark.parametrize("text", [
    "Starts with 60 postcards =",  # no operator
    "60 + 4",  # no "="
    "60 + 4 = 64",  # already written
    "7 / 0 =",  # no value
    "v2 + 3 =", "1,000 + 5 =", "3.5.1 + 2 =",  # the first number continues a longer token
    "99999999 * 99999999 * 99 =",  # not a number a word problem writes
])
def test_left_alone(text):
    assert result_for(text) is None


def test_exact_arithmetic():
    assert evaluate("1 / 3 + 1 / 3 + 1 / 3") == 1
    assert evaluate("0.1 + 0.2") == Fraction(3, 10)


class Writes:
    """A token guide that makes every streaming thought ``text`` and then closes it; deep and answer as sampled."""

    def __init__(self, policy, text: str):
        self.plan = policy.tokenizer.encode(text, add_special_tokens=False) + [policy.ids.eot]
        self.chunk_open = policy.ids.chunk_open
        self.at: dict[int, int] = {}

    def __call__(self, st, proposed, forbidden):
        if st.phase[-1] != "stream":
            return proposed
        k = st.ids.count(self.chunk_open)
        i = self.at[k] = self.at.get(k, -1) + 1
        return self.plan[min(i, len(self.plan) - 1)]


CHUNKS = list(chunks_from_text("Tom has 12 apples. He buys 30 more apples. His sister eats 2 of them."))


def _session(policy, seed=0):
    s = Session(policy, "How many apples?", SessionConfig(max_lag_s=0.0), clock="instant", seed=seed)
    s.state.guide = Writes(policy, "12 + 30 =")
    for c in CHUNKS:
        for _ in s.push(c):
            pass
    return s.finish()


def _thoughts(res):
    return [e.text for e in res.events if e.type == "thought"]


def test_result_is_written_as_environment_tokens(make_tiny_policy):
    policy = make_tiny_policy(max_thought_tokens=16, max_deep_tokens=8, max_answer_tokens=4)
    res = _session(policy)
    assert _thoughts(res) == ["12 + 30 = 42"] * len(CHUNKS)
    st = res.state
    result = policy.tokenizer.encode(" 42", add_special_tokens=False)
    at = [i for i in range(len(st.ids)) if st.ids[i:i + len(result)] == result and st.phase[i] == "stream"]
    assert len(at) == len(CHUNKS)
    assert all(st.env_mask[i + j] == 0 for i in at for j in range(len(result)))  # input, never trained on
    assert st.tool_tokens == len(CHUNKS) * len(result)
    plan = len(policy.tokenizer.encode("12 + 30 =", add_special_tokens=False)) + 1
    assert res.summary.stream_tokens == len(CHUNKS) * plan  # generated tokens: the policy's own only
    assert [e.tokens for e in res.events if e.type == "thought"] == [plan] * len(CHUNKS)

    policy.config.calculator = False
    off = _session(policy)
    assert off.state.tool_tokens == 0
    assert not any("42" in t for t in _thoughts(off))


def test_batched_rows_write_the_same_results(make_tiny_policy):
    policy = make_tiny_policy(max_thought_tokens=16, max_deep_tokens=8, max_answer_tokens=4, temperature=1.0)
    refs = [_session(policy, seed) for seed in (1, 2, 3)]
    engine = BatchEngine(policy, session_config=SessionConfig(max_lag_s=0.0))
    rows = [r for seed in (1, 2, 3) for r in engine.add("How many apples?", CHUNKS, [seed])]
    for r in rows:
        r.state.guide = Writes(policy, "12 + 30 =")
    engine.run()
    for ref, row in zip(refs, rows, strict=True):
        assert row.state.tool_tokens == ref.state.tool_tokens > 0
        assert_same(ref, row.result)


@pytest.mark.slow
def test_shipped_policy_writes_exact_sums():
    """A problem in phrasings the policy never trained on where, alone, it writes "40 + 12 = 42" and answers 44:
    with the calculator every equation in its trace is exact and the answer is right."""
    text = ("Maria is carrying 42 stamps. The shop opens at 7 in the morning. Then 2 of Maria's stamps break and "
            "are thrown out. Sofia reads 14 pages of a book every night. A friend hands Maria 12 stamps. Then she "
            "earns 2 stamps for helping at home.")
    from adasr_mm.agent import StreamingAgent
    from adasr_mm.config import load_config

    agent = StreamingAgent.from_pretrained(config=load_config(None, ["policy.temperature=0"]))
    res = agent.run("What is the number of stamps that Maria has now?", chunks_from_text(text), clock="simulated")
    trace = " ".join(e.text for e in res.events if e.type in ("thought", "deep"))
    eqs = re.findall(r"(\d+) ([-+*/]) (\d+) = (\d+)", trace)
    assert len(eqs) >= 2, trace
    assert all(Fraction(int(c)) == evaluate(f"{a} {op} {b}") for a, op, b, c in eqs), eqs
    assert res.state.tool_tokens > 0
    assert res.answer == "54", trace
