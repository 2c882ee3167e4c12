"""SFT warm start: teacher traces follow the protocol token for token, the loss sees only policy tokens, and a
short run on a tiny random model saves a dir the streaming policy loads."""

from __future__ import annotations

import dataclasses

import pytest

from adasr_mm.adapters.text import chunks_from_text
from adasr_mm.policy import PolicyConfig, StreamingPolicy
from adasr_mm.protocol import SKIP, Protocol, ProtocolConfig
from adasr_mm.session import Session, SessionConfig
from adasr_mm.training.sample import Sample
from adasr_mm.training.sft import SFTStageConfig, build_sft_trainer, run_sft, teacher_trace

STORIES = [
    ("Tom has 5 apples in his basket. The weather is sunny and warm today. "
     "At the market he buys 3 more apples.", "How many apples does Tom have now?", "8",
     ["Tom starts with 5 apples.", None, "5 + 3 = 8 apples."],
     "He had 5 and bought 3, so 5 + 3 = 8."),
    ("A train leaves at 9 in the morning. Birds sing in the old oak tree. The ride takes 2 hours. "
     "The station has a red roof.", "When does the train arrive?", "11",
     ["It departs at 9.", None, "Two hours of travel: 9 + 2 = 11.", None], "9 + 2 = 11."),
    ("Anna reads 12 pages on Monday. She reads twice as many pages on Tuesday.",
     "How many pages did Anna read in total?", "36", ["12 pages on Monday.", "Tuesday: 2 x 12 = 24 pages."],
     "12 + 24 = 36."),
]


def _samples() -> list[Sample]:
    out = []
    for i, (text, q, a, teacher, deep) in enumerate(STORIES):
        chunks = list(chunks_from_text(text))
        assert len(chunks) == len(teacher)
        out.append(Sample(id=f"t{i}", question=q, answer=a, chunks=chunks, teacher=teacher,
                          teacher_deep=deep))
    # no teacher: the generic trace (skip all but the last chunk, empty deep reasoning)
    out.append(Sample(id="generic", question="What is the colour of the roof?", answer="red",
                      chunks=list(chunks_from_text(STORIES[1][0]))))
    return out


def _expected_mask(protocol: Protocol, ids: list[int], question: str) -> list[int]:
    """Policy positions derived from the parsed trace alone: responses, deep (after end-of-stream), answer."""
    tr = protocol.parse(ids)
    exp = [0] * len(ids)
    for s in tr.responses:
        exp[s.start : s.end] = [1] * (s.end - s.start)
    assert tr.deep is not None and tr.answer is not None
    d0 = tr.deep.start + len(protocol.end_ids(question))
    exp[d0 : tr.deep.end] = [1] * (tr.deep.end - d0)
    exp[tr.answer.start : tr.answer.end] = [1] * (tr.answer.end - tr.answer.start)
    return exp


@pytest.mark.parametrize("order", ["question-first", "context-first"])
def test_teacher_traces_validate_and_mask_only_policy_tokens(make_tiny_policy, order):
    policy = make_tiny_policy(protocol=ProtocolConfig(order=order))
    p = policy.protocol
    for s in _samples():
        ids, mask = teacher_trace(s, p)
        assert len(ids) == len(mask)
        report = p.parse(ids).validate(len(s.chunks))
        assert report.violations == [] and report.format == 1.0, (s.id, report)
        assert mask == _expected_mask(p, ids, s.question), s.id
        tr = p.parse(ids)
        # prompt, every chunk, <|end_of_stream|> (+ the context-first question) are input: mask 0
        prompt_len = len(p.prompt_ids(s.question))
        assert ids[:prompt_len] == p.prompt_ids(s.question) and not any(mask[:prompt_len])
        pos = prompt_len
        teacher = s.teacher or [None] * len(s.chunks)
        for chunk, span, thought in zip(s.chunks, tr.responses, teacher, strict=True):
            cids = p.chunk_ids(chunk)
            assert ids[pos : pos + len(cids)] == cids and not any(mask[pos : pos + len(cids)])
            assert span.start == pos + len(cids) and all(mask[span.start : span.end])
            if thought is None and s.teacher is not None:
                assert ids[span.start : span.end] == [p.ids.skip]
            pos = span.end
        end = p.end_ids(s.question)
        assert ids[pos : pos + len(end)] == end and not any(mask[pos : pos + len(end)])
        assert ids[-1] == p.ids.eos[0] and mask[-1] == 1
        assert tr.answer_text.endswith("\\boxed{" + s.answer + "}")


def test_generic_trace_skips_all_but_the_last_chunk(make_tiny_policy):
    p = make_tiny_policy().protocol
    s = _samples()[-1]
    ids, _ = teacher_trace(s, p, generic_thought="Done reading.", generic_deep="Look at the roof.")
    tr = p.parse(ids)
    assert [r.closer for r in tr.responses] == [SKIP] * (len(s.chunks) - 1) + ["<|eot|>"]
    assert tr.text(tr.responses[-1]) == "Done reading."
    assert tr.text(tr.deep) == "Look at the roof."
    assert tr.answer_text == "\\boxed{red}"


def test_bad_teacher_text_and_config_are_rejected(make_tiny_policy):
    p = make_tiny_policy().protocol
    s = _samples()[0]
    s.teacher = ["fine", f"sneaky {SKIP}", None]
    with pytest.raises(ValueError, match="protocol markers"):
        teacher_trace(s, p)
    for bad in ({"max_steps": 0}, {"learning_rate": 0.0}, {"warmup_ratio": 1.0}, {"save_steps": -1},
                {"generic_thought": "two\nlines"}, {"generic_deep": "</think>"}):
        with pytest.raises(ValueError):
            SFTStageConfig(**bad)


def test_sft_loss_covers_only_policy_tokens(make_tiny_policy, tmp_path):
    import torch

    policy = make_tiny_policy()
    model, tok, p = policy.model, policy.tokenizer, policy.protocol
    samples = _samples()
    cfg = SFTStageConfig(max_steps=1, per_device_train_batch_size=2, end_read_fraction=0.0)
    trainer = build_sft_trainer(model, tok, samples, cfg, str(tmp_path / "run"))
    # the prepared dataset: labels are -100 exactly where policy_mask is 0
    traces = [teacher_trace(s, p) for s in samples]
    data = trainer.train_dataset
    assert len(data) == len(samples)
    for row, (ids, mask) in zip(data, traces, strict=True):
        assert row["input_ids"] == ids
        assert row["labels"] == [t if m else -100 for t, m in zip(ids, mask, strict=True)]
    # the collated batch the trainer sees (padded): every non-policy token is ignored
    batch = next(iter(trainer.get_train_dataloader()))
    labels, input_ids = batch["labels"], batch["input_ids"]
    by_ids = {tuple(ids): mask for ids, mask in traces}
    for b in range(input_ids.shape[0]):
        n = int(batch["attention_mask"][b].sum())
        mask = by_ids[tuple(input_ids[b, :n].tolist())]
        assert all((labels[b, i] == -100) == (m == 0) for i, m in enumerate(mask))
        assert (labels[b, n:] == -100).all()
    # the trainer's loss == mean NLL over policy tokens only (plain forward, independent of TRL's fused head)
    model.train()
    captured = {}

    def keep(_mod, _inp, out):
        out.retain_grad()
        captured["h"] = out

    hook = model.model.norm.register_forward_hook(keep)
    try:
        loss = trainer.compute_loss(model, dict(batch))
        loss.backward()
    finally:
        hook.remove()
    with torch.no_grad():
        logits = model(input_ids=input_ids, attention_mask=batch["attention_mask"]).logits
        ref = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(),
                                                labels[:, 1:].flatten(), ignore_index=-100)
    assert torch.allclose(loss.detach(), ref, atol=1e-4), (float(loss), float(ref))
    # the final hidden state at position t only feeds the prediction of token t+1: its gradient is exactly
    # zero wherever token t+1 is a prompt/chunk/pad token, so what the model predicts there cannot change
    # the loss
    grad = captured["h"].grad
    zero = grad.abs().sum(-1) == 0
    last = torch.ones_like(labels[:, :1], dtype=torch.bool)  # the last position predicts nothing
    target_ignored = torch.cat([labels[:, 1:] == -100, last], dim=1)
    assert torch.equal(zero, target_ignored)


def test_marker_rows_take_larger_steps(make_tiny_policy, tmp_path):
    """One step with marker_lr_multiplier=k moves the protocol rows k times as far and the rest alike."""

    from adasr_mm.protocol import PROTOCOL_TOKENS

    deltas = {}
    for k in (1.0, 4.0):
        policy = make_tiny_policy()
        emb = policy.model.get_input_embeddings().weight
        before = emb.detach().clone()
        cfg = SFTStageConfig(max_steps=1, per_device_train_batch_size=2, learning_rate=1e-3, warmup_ratio=0.0,
                             marker_lr_multiplier=k)
        build_sft_trainer(policy.model, policy.tokenizer, _samples(), cfg, str(tmp_path / f"k{k}")).train()
        deltas[k] = emb.detach() - before
    assert_marker_rows_scaled(deltas, [policy.tokenizer.convert_tokens_to_ids(t) for t in PROTOCOL_TOKENS])


def assert_marker_rows_scaled(deltas, rows, k=4.0):
    """Embedding updates with multiplier ``k`` vs 1: the protocol rows moved k times as far, the rest alike."""
    import torch

    other = torch.ones(deltas[1.0].shape[0], dtype=torch.bool)
    other[rows] = False
    assert deltas[1.0][rows].abs().sum() > 0
    assert torch.allclose(deltas[k][rows], k * deltas[1.0][rows], atol=1e-6)
    assert torch.allclose(deltas[k][other], deltas[1.0][other], atol=1e-7)


def test_tiny_sft_run_saves_a_loadable_policy(make_tiny_policy, tmp_path):
    policy = make_tiny_policy()
    out = tmp_path / "sft"
    cfg = SFTStageConfig(max_steps=3, per_device_train_batch_size=2, learning_rate=5e-3, warmup_ratio=0.0)
    metrics = run_sft(policy.model, policy.tokenizer, _samples(), cfg, str(out))
    assert metrics["steps"] == 3 and metrics["seconds"] > 0
    assert 0 < metrics["policy_tokens"] < metrics["tokens"]
    assert metrics["loss_last"] < metrics["loss_first"]
    assert (out / "config.json").is_file() and (out / "tokenizer_config.json").is_file()
    loaded = StreamingPolicy.from_pretrained(PolicyConfig(policy=str(out), dtype="float32",
                                                          max_thought_tokens=4, max_deep_tokens=4,
                                                          max_answer_tokens=4))
    assert len(loaded.tokenizer) == len(policy.tokenizer)  # protocol tokens saved, nothing added again
    assert loaded.model.get_input_embeddings().weight.shape[0] == len(policy.tokenizer)
    s = _samples()[0]
    sess = Session(loaded, s.question, clock="instant")
    for c in s.chunks:
        list(sess.push(c))
    res = sess.finish()
    assert res.summary.chunks == len(s.chunks) and len(res.trace.responses) == len(s.chunks)


@pytest.mark.slow
def test_real_smollm2_sft_steps_and_reload(embedded_dir, tmp_path):
    """A few steps on the real SmolLM2-135M in float32 (~tens of seconds on 2 cores)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(embedded_dir)
    model = AutoModelForCausalLM.from_pretrained(embedded_dir, dtype=torch.float32)
    out = tmp_path / "sft"
    cfg = SFTStageConfig(max_steps=4, per_device_train_batch_size=2, learning_rate=1e-4, warmup_ratio=0.0)
    metrics = run_sft(model, tok, _samples(), cfg, str(out))
    assert metrics["steps"] == 4
    assert metrics["loss_last"] < metrics["loss_first"]
    loaded = StreamingPolicy.from_pretrained(PolicyConfig(policy=str(out), dtype="float32",
                                                          max_thought_tokens=12, max_deep_tokens=16,
                                                          max_answer_tokens=8))
    s = _samples()[0]
    sess = Session(loaded, s.question, clock="instant")
    for c in s.chunks:
        list(sess.push(c))
    res = sess.finish()
    assert len(res.trace.responses) == len(s.chunks)


def test_read_then_think_traces_match_the_session_layout(make_tiny_policy):
    """An rtt trace is what a read-then-think session reads (prompt, chunks back to back, end) + the reasoning."""
    from adasr_mm.training.sft import build_sft_dataset
    from adasr_mm.training.tasks import word_problems

    policy = make_tiny_policy()
    p = policy.protocol
    s = word_problems("train", 1, level="easy")[0]
    ids, mask = teacher_trace(s, p, rtt=True)
    first = mask.index(1)
    sess = Session(policy, s.question, SessionConfig(mode="read-then-think"), clock="instant")
    for c in s.chunks:
        list(sess.push(c))
    res = sess.finish()
    assert res.state.ids[:first] == ids[:first]  # identical input, token for token
    assert p.parse(ids).validate(len(s.chunks), streaming=False).violations == []
    assert p.decode(ids[first:]).startswith(s.teacher_rtt) and all(mask[first:])
    # a streaming trace of the same sample ends with the short deep phase instead
    sids, smask = teacher_trace(s, p)
    assert s.teacher_deep in p.decode([t for t, m in zip(sids, smask, strict=True) if m])
    # rtt_fraction adds read-then-think rows for that share of the samples that have teacher_rtt
    samples = word_problems("train", 8, level="easy") + _samples()
    for frac, extra in ((0.0, 0), (0.25, 2), (1.0, 8)):
        data = build_sft_dataset(samples, p, SFTStageConfig(rtt_fraction=frac))
        assert len(data) == len(samples) + extra
    with pytest.raises(ValueError, match="needs teacher_rtt"):
        teacher_trace(_samples()[0], p, rtt=True)
    with pytest.raises(ValueError, match="rtt_fraction"):
        SFTStageConfig(rtt_fraction=1.5)


def _contains(seq: list[int], sub: list[int]) -> bool:
    return any(seq[i : i + len(sub)] == sub for i in range(len(seq) - len(sub) + 1))


def test_end_read_traces_match_a_session_that_reads_the_last_chunk_at_the_end(make_tiny_policy):
    """Files and text end with the last chunk read together with the end marker (no thought on the critical
    path); the trace teaches exactly that layout, and the last chunk's update moves into the deep phase."""
    from adasr_mm.training.sft import build_sft_dataset
    from adasr_mm.training.tasks import word_problems

    policy = make_tiny_policy(max_thought_tokens=4, max_deep_tokens=4, max_answer_tokens=4)
    p = policy.protocol
    s = next(x for x in word_problems("train", 20, level="easy") if x.teacher[-1] is not None)
    ids, mask = teacher_trace(s, p, end_read=True)
    tail = p.chunk_ids(s.chunks[-1]) + p.end_ids(s.question)
    assert _contains(ids, tail)  # no response between the last chunk and the end marker
    tr = p.parse(ids)
    last = tr.responses[-1]  # the parser shows the end-read chunk as an empty span closed by the end marker
    assert len(tr.responses) == len(s.chunks) and last.start == last.end and last.closer == "<|end_of_stream|>"
    assert all(r.closer != "<|end_of_stream|>" for r in tr.responses[:-1])
    assert tr.validate(len(s.chunks), streaming=True).violations == []
    assert p.decode(ids[tr.deep.start : tr.deep.end]).strip() == s.teacher[-1]  # it states the total: no recap
    # a deep phase that is more than a recap follows the last update
    plain = dataclasses.replace(s, meta={k: v for k, v in s.meta.items() if k != "deep_is_recap"})
    ids2 = teacher_trace(plain, p, end_read=True)[0]
    tr2 = p.parse(ids2)
    assert p.decode(ids2[tr2.deep.start : tr2.deep.end]).strip() == f"{s.teacher[-1]} {s.teacher_deep}"
    sess = Session(policy, s.question, SessionConfig(mode="stream"), clock="instant")
    for c in s.chunks[:-1]:
        list(sess.push(c))
    list(sess.finish_iter(pending=[s.chunks[-1]]))
    res = sess.result
    assert _contains(res.state.ids, tail)  # the session reads it the same way
    # end_read_fraction picks that share of the streaming traces
    samples = word_problems("train", 8, level="easy")
    n_end = [sum(p.parse(r).responses[-1].closer == "<|end_of_stream|>" for r in build_sft_dataset(
        samples, p, SFTStageConfig(rtt_fraction=0, end_read_fraction=f))["input_ids"]) for f in (0.0, 0.5, 1.0)]
    assert n_end == [0, 4, 8]
    with pytest.raises(ValueError, match="end_read_fraction"):
        SFTStageConfig(end_read_fraction=2)
