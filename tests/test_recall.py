"""Built-in fact-recall streams (training/recall.py): answers read back from the text alone, splits, traces."""

from __future__ import annotations

import re

import pytest

from adasr_mm.errors import ConfigError
from adasr_mm.training.data import check_answer, load_samples
from adasr_mm.training.recall import ATTRIBUTES, PEOPLE, STANDING, make_recall_problem, recall_problems
from adasr_mm.training.sft import SFTStageConfig, build_sft_dataset, teacher_trace

BY_KEY = {a.key: a for a in ATTRIBUTES}


def _asked_person(question: str) -> str:
    (who,) = [w for w in re.findall(r"[A-Z][a-z]+", question) if w in PEOPLE]
    return who


def _values_said_of(person: str, sentence: str, values: tuple[str, ...]) -> list[str]:
    """Values of an attribute that a sentence states of ``person`` (the person named, the value named, and no
    other person named: the generator never puts two people in one sentence unless one is the value)."""
    words = set(re.findall(r"[A-Za-z]+", sentence))
    if person not in words:
        return []
    return [v for v in values if v in words and v != person]


def _last_values(s, attr) -> dict[str, tuple[int, str]]:
    """Each person's last stated value of ``attr`` in the stream, with its sentence index."""
    last: dict[str, tuple[int, str]] = {}
    for i, c in enumerate(s.chunks):
        for who in PEOPLE:
            for v in _values_said_of(who, c.text, attr.values):
                last[who] = (i, v)
    return last


@pytest.mark.parametrize("split", ["train", "test"])
@pytest.mark.parametrize("wide", [False, True])
def test_the_answer_is_the_last_value_the_stream_states_of_the_asked_person(split, wide):
    """Re-derive every answer to "Where does Omar live?" from the sentences, without the generator's bookkeeping:
    of all the sentences that state a value of the asked attribute for the asked person, the last one holds the
    answer, and exactly those sentences carry a reference thought."""
    changed = direct = 0
    for s in recall_problems(split, 400, wide=wide):
        if s.meta["form"] != "direct":
            continue
        direct += 1
        attr = BY_KEY[s.meta["attribute"]]
        who = _asked_person(s.question)
        said = [(i, _values_said_of(who, c.text, attr.values)) for i, c in enumerate(s.chunks)]
        stated = [(i, v) for i, vs in said for v in vs]
        assert stated, (s.id, s.context)
        assert len({i for i, _ in stated}) == len(stated), (s.id, "two values in one sentence")
        assert stated[-1][1] == s.answer, (s.id, s.question, s.context)
        assert [i for i, _ in stated] == [i for i, t in enumerate(s.teacher) if t is not None], s.id
        assert s.answer in s.teacher[stated[-1][0]] and s.answer in s.teacher_deep
        changed += len(stated) > 1
    assert 0.3 * direct < changed < 0.6 * direct, (changed, direct)  # the facts that can change do, about half


def _wide_of_form(split: str, form: str) -> list:
    return [s for s in recall_problems(split, 400, wide=True) if s.meta["form"] == form]


@pytest.mark.parametrize("split", ["train", "test"])
def test_who_questions_name_the_one_person_who_holds_the_value_at_the_end(split):
    """"Who lives in Tokyo?": the asked value is in the question; exactly one person's last stated value is it
    (someone who moved away from it does not count), and that person is the answer."""
    asked = _wide_of_form(split, "inverse")
    for s in asked:
        attr = BY_KEY[s.meta["attribute"]]
        (value,) = [v for v in attr.values if v in re.findall(r"[A-Za-z]+", s.question)]
        holders = [who for who, (_, v) in _last_values(s, attr).items() if v == value]
        assert holders == [s.answer], (s.id, s.question, s.context, holders)
        assert s.answer in s.teacher_deep and value in s.teacher_deep
    assert len(asked) > 60


@pytest.mark.parametrize("split", ["train", "test"])
def test_mention_questions_are_asked_only_of_a_stream_naming_one_value(split):
    """"Which city is mentioned?": the stream names exactly one value of the attribute (fillers, which name
    colours, animals and places of their own, are left out of these streams), and it is the answer."""
    asked = _wide_of_form(split, "mention")
    for s in asked:
        attr = BY_KEY[s.meta["attribute"]]
        named = {v for v in attr.values if v in re.findall(r"[A-Za-z]+", s.context)}
        assert named == {s.answer}, (s.id, s.question, s.context)
    assert len(asked) > 25


def test_attribute_values_never_overlap():
    """A value names one attribute: "Which colour is mentioned?" must not be answerable by a pet or a place."""
    seen: dict[str, str] = {}
    for a in ATTRIBUTES:
        if a.key == "friend":  # its values are the people
            continue
        for v in a.values:
            assert v not in seen, (v, a.key, seen.get(v))
            seen[v] = a.key


@pytest.mark.parametrize("wide", [False, True])
def test_recall_is_seeded_and_its_splits_never_share_a_stream(wide):
    assert make_recall_problem(5, wide).to_dict() == make_recall_problem(5, wide).to_dict()
    train = {s.context for s in recall_problems("train", 200, wide=wide)}
    test = {s.context for s in recall_problems("test", 200, wide=wide)}
    assert len(train) == 200 and len(test) == 200 and not train & test
    keys = {s.meta["attribute"] for s in recall_problems("test", 150, wide=wide)}
    assert keys == {a.key for a in (ATTRIBUTES if wide else STANDING)}
    assert {s.meta["form"] for s in recall_problems("test", 150, wide=wide)} == (
        {"direct", "inverse", "mention"} if wide else {"direct"})


def test_builtin_recall_source_is_text_only(tmp_path):
    assert [s.id for s in load_samples("builtin:recall", "test", "text", limit=2)] == ["recall-1000000",
                                                                                     "recall-1000001"]
    with pytest.raises(ConfigError, match="builtin:recall is a text task"):
        load_samples("builtin:recall", "train", "audio", limit=1, media_dir=tmp_path)
    assert [s.id for s in load_samples("builtin:recall-wide", "test", "text", limit=1)] == ["recall-wide-1000000"]
    with pytest.raises(ConfigError, match="builtin:recall-wide is a text task"):
        load_samples("builtin:recall-wide", "train", "video", limit=1, media_dir=tmp_path)


@pytest.mark.parametrize("pred, ok", [("the violin", True), ("Violin.", True), ("viola", False), ("3", False)])
def test_a_word_answer_is_checked_as_text(pred, ok):
    assert check_answer(f"\\boxed{{{pred}}}", "violin") is ok


def test_recall_traces_follow_the_protocol_with_word_answers(make_tiny_policy):
    p = make_tiny_policy().protocol
    samples = recall_problems("train", 12)
    for s in samples:
        for end_read in (False, True):
            ids, _ = teacher_trace(s, p, end_read=end_read)
            tr = p.parse(ids)
            n_read = len(s.chunks) - end_read
            assert tr.validate(len(s.chunks)).violations == [], s.id
            assert tr.answer_text.endswith("\\boxed{" + s.answer + "}")
            thoughts = [tr.text(r) for r in tr.responses[:n_read] if r.closer == "<|eot|>"]
            assert thoughts == [t for t in s.teacher[:n_read] if t], s.id
    ds = build_sft_dataset(samples, p, SFTStageConfig(asr_style_fraction=1.0, rtt_fraction=0.5))
    assert len(ds) == 12 + 6 + 12  # streaming, read-then-think, and an ASR-style copy of each streaming trace
