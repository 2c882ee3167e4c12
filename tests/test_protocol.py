import torch

from adasr_mm.chunks import TimedChunk
from adasr_mm.protocol import (
    CHUNK_CLOSE,
    CHUNK_OPEN,
    END_OF_STREAM,
    EOT,
    PROTOCOL_TOKENS,
    SKIP,
    THINK_CLOSE,
    Protocol,
    ProtocolConfig,
    add_protocol_tokens,
    extract_answer,
    extract_boxed,
    render_chunk,
)


def _tiny(embedded_dir):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(embedded_dir)
    conf = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                       num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=False)
    torch.manual_seed(0)
    return tok, LlamaForCausalLM(conf)


def test_tokens_added_as_single_specials_with_mean_embeddings(embedded_dir):
    tok, model = _tiny(embedded_dir)
    old = model.get_input_embeddings().weight.detach().clone()
    old_out = model.get_output_embeddings().weight.detach().clone()
    added = add_protocol_tokens(tok, model)
    assert added == len(PROTOCOL_TOKENS)
    emb = model.get_input_embeddings().weight
    assert emb.shape[0] == len(tok) == old.shape[0] + added
    assert torch.allclose(emb[: old.shape[0]], old)
    for t in PROTOCOL_TOKENS:
        ids = tok(t, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1, t
        assert torch.allclose(emb[ids[0]], old.mean(0), atol=1e-6)
        assert torch.allclose(model.get_output_embeddings().weight[ids[0]], old_out.mean(0), atol=1e-6)
    assert add_protocol_tokens(tok, model) == 0  # idempotent
    assert model.get_input_embeddings().weight.shape[0] == len(tok)


def test_render_and_parse_a_trace(embedded_dir):
    tok, model = _tiny(embedded_dir)
    add_protocol_tokens(tok, model)
    proto = Protocol(tok)
    c0 = TimedChunk(0.0, 2.4, "Tom has 5 apples.")
    assert render_chunk(c0) == f"{CHUNK_OPEN}[0.0-2.4s] Tom has 5 apples.{CHUNK_CLOSE}"
    assert render_chunk(TimedChunk(3, 4, "red circle", modality="video")).startswith(f"{CHUNK_OPEN}[video 3.0-4.0s]")
    prompt = proto.prompt_ids("How many?")
    assert "How many?" in tok.decode(prompt)
    e = proto.encode
    c1 = TimedChunk(2.4, 4.1, "The sky is blue.")
    ids = (prompt + proto.chunk_ids(c0) + e("Tom starts with 5." + EOT) + proto.chunk_ids(c1) + e(SKIP)
           + proto.end_ids("How many?") + e("5 + 3 = 8" + THINK_CLOSE + " \\boxed{8}") + [tok.eos_token_id])
    trace = proto.parse(ids)
    assert [s.closer for s in trace.responses] == [EOT, SKIP]
    assert trace.text(trace.responses[0]) == "Tom starts with 5."
    assert trace.text(trace.deep) == "5 + 3 = 8"
    assert extract_answer(trace.answer_text) == "8"
    assert trace.phase[: len(prompt)] == ["prompt"] * len(prompt)
    assert set(trace.phase[len(prompt):]) == {"stream", "deep", "answer"}
    rep = trace.validate(n_chunks=2)
    assert rep.violations == [] and rep.format == 1.0
    # a forced closure (env_mask 0 on the EOT) is a cap hit: a violation
    env = [1] * len(ids)
    eot_pos = ids.index(proto.ids.eot, len(prompt))  # (the system prompt names the markers too)
    env[eot_pos] = 0
    rep = proto.parse(ids, env).validate(n_chunks=2)
    assert rep.format_stream == 0.5 and "chunk 0: thought cap hit" in rep.violations
    # a missing response and no end marker
    short = prompt + proto.chunk_ids(c0) + e("Tom" + EOT)
    rep = proto.parse(short).validate(n_chunks=2)
    assert "1 chunks in the trace for 2 chunks" in rep.violations and "no deep phase" in rep.violations


def test_context_first_puts_question_after_stream(embedded_dir):
    tok, model = _tiny(embedded_dir)
    add_protocol_tokens(tok, model)
    proto = Protocol(tok, ProtocolConfig(order="context-first"))
    assert "How many?" not in proto.render_prompt("How many?")
    assert proto.render_end("How many?").startswith(END_OF_STREAM + "Question: How many?")


def test_extract_answer():
    assert extract_answer("so \\boxed{12} or \\boxed{ \\frac{1}{2} }") == "\\frac{1}{2}"
    assert extract_answer("\n  The answer is 7.\nbecause") == "The answer is 7."
    assert extract_answer("   ") == ""


def test_one_boxed_parser_for_box_boxed_nesting_and_none():
    """``\\box{}`` (StreamingThinker's gold answers) and ``\\boxed{}`` both unbox, nested braces balance, the
    last closed box wins, an unclosed box counts only alone; the checker normalises what the parser keeps."""
    from adasr_mm.training.data import check_answer

    assert extract_boxed("Therefore, the answer is \\box{12}.") == "12"
    assert extract_boxed("\\boxed{1,234}") == "1,234" and check_answer("\\boxed{1,234}", "1234")
    assert extract_boxed("\\boxed {  $5 }") == "$5" and check_answer("\\boxed{ $5 }", "5")
    assert extract_boxed("\\boxed{\\frac{\\sqrt{4}}{2}} then \\box{7}") == "7"
    assert extract_boxed("\\boxed{\\frac{\\sqrt{4}}{2}}") == "\\frac{\\sqrt{4}}{2}"
    assert extract_boxed("\\boxed{5} and \\boxed{6") == "5" and extract_boxed("cut off: \\boxed{6") == "6"
    assert extract_boxed("no box here, 12") is None and extract_boxed("\\boxes{3}") is None
    assert extract_answer("\\box{3}") == "3"
    # gold answers written as \box{..} are unboxed before comparing (they were compared as text before)
    assert check_answer("12", "\\box{12}") and check_answer("\\boxed{12}", "\\box{12}")
    assert not check_answer("13", "\\box{12}")


def test_chunks_read_together_share_one_response(embedded_dir):
    """A catch-up read (several chunks in one prefill, one thought) and chunks read with the end-of-stream marker
    parse as groups and are valid; a group still needs its closing marker."""
    tok, model = _tiny(embedded_dir)
    add_protocol_tokens(tok, model)
    proto = Protocol(tok)
    e = proto.encode
    c = [TimedChunk(i, i + 1, f"Sentence {i}.") for i in range(5)]
    prompt = proto.prompt_ids("How many?")
    ids = (prompt + proto.chunk_ids(c[0]) + e("One." + EOT) + proto.chunk_ids(c[1]) + proto.chunk_ids(c[2])
           + e("Two and three." + EOT) + proto.chunk_ids(c[3]) + proto.chunk_ids(c[4]) + proto.end_ids("How many?")
           + e("so 5" + THINK_CLOSE + " \\boxed{5}") + [tok.eos_token_id])
    trace = proto.parse(ids)
    assert [(s.chunk_index, s.n_chunks, s.closer) for s in trace.responses] == [
        (0, 1, EOT), (1, 2, EOT), (3, 2, END_OF_STREAM)]
    assert trace.text(trace.responses[1]) == "Two and three."
    rep = trace.validate(n_chunks=5)
    assert rep.violations == [] and rep.format_stream == 1.0
    # a group without its closing marker is still a violation (for both of its chunks)
    bad = prompt + proto.chunk_ids(c[0]) + proto.chunk_ids(c[1]) + e("Half a thought")
    rep = proto.parse(bad).validate(n_chunks=2)
    assert "chunk 0: response not closed" in rep.violations and rep.format_stream == 0.0
