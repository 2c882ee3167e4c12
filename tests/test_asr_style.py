"""ASR-style chunk text (training/asr_style.py): what a policy reading streaming Whisper sees, for SFT and eval."""

from __future__ import annotations

import random

import pytest

from adasr_mm.chunks import TimedChunk
from adasr_mm.training.asr_style import (
    asr_style_chunks,
    asr_style_sample,
    asr_style_text,
    merge_groups,
    merged_thought,
    number_words,
)
from adasr_mm.training.sft import SFTStageConfig, build_sft_dataset, sample_chunks
from adasr_mm.training.tasks import word_problems


def test_number_words_spell_what_whisper_spells():
    assert [number_words(n) for n in (0, 2, 13, 20, 21, 99, 120)] == [
        "zero", "two", "thirteen", "twenty", "twenty-one", "ninety-nine", "120"]


def test_every_change_at_probability_one_and_none_at_zero():
    rng = random.Random(0)
    text = "Then his sister eats 2 of the 15 apples."
    assert asr_style_text(text, rng, p=1.0) == "then his sister eats two of the fifteen apples"
    assert asr_style_text(text, rng, p=0.0) == text
    # prices and larger numbers stay digits; "I" and names keep their capital
    assert asr_style_text("I pay 2.50 for 120 pears!", rng, p=1.0) == "I pay 2.50 for 120 pears"
    assert asr_style_text("Maria has 7 marbles.", rng, p=1.0, names={"Maria"}) == "Maria has seven marbles"


def test_chunks_keep_their_times_and_names_their_capitals():
    chunks = [TimedChunk(0, 1, "Tom has 5 apples."), TimedChunk(1, 2, "At the market, Tom buys 3 more."),
              TimedChunk(2, 3, "The dog barks.")]
    out = asr_style_chunks(chunks, random.Random(0), p=1.0)
    assert [c.text for c in out] == ["Tom has five apples", "at the market, Tom buys three more", "the dog barks"]
    assert [(c.start, c.end) for c in out] == [(c.start, c.end) for c in chunks]
    assert chunks[0].text == "Tom has 5 apples."  # the originals are untouched


def test_a_sample_is_rewritten_the_same_way_every_time():
    s = word_problems("train", 1)[0]
    a, b = (asr_style_sample(s, sample_chunks(s), seed=0) for _ in range(2))
    assert [c.text for c in a.chunks] == [c.text for c in b.chunks]
    assert [c.text for c in a.chunks] != [c.text for c in sample_chunks(s)]
    assert a.teacher == b.teacher and a.meta["asr_style"] == 0.5
    assert asr_style_sample(s, sample_chunks(s), seed=0, p=0.0).chunks == sample_chunks(s)


def test_merged_chunks_span_their_parts_and_keep_every_update():
    assert merge_groups(5, random.Random(0), 0.0) == [[0], [1], [2], [3], [4]]
    assert merge_groups(5, random.Random(0), 1.0) == [[0, 1], [2, 3], [4]]  # at most two sentences per chunk
    assert merged_thought(["Starts with 5 apples.", "5 + 3 = 8 apples."]) == "5 + 3 = 8 apples."
    assert merged_thought(["8 + 26 = 34 eggs.", None, "34 + 10 = 44 eggs."]) == "8 + 26 = 34 eggs. 34 + 10 = 44 eggs."
    assert merged_thought([None, None]) is None
    merged = 0
    for s in word_problems("train", 30):
        a = asr_style_sample(s, sample_chunks(s), seed=0, p=1.0)  # each boundary dropped with probability 0.5
        merged += len(s.chunks) - len(a.chunks)
        assert len(a.teacher) == len(a.chunks)
        assert a.chunks[0].start == s.chunks[0].start and a.chunks[-1].end == s.chunks[-1].end
        # the last update (the answer's total) always survives, and no update is invented
        assert [t for t in a.teacher if t][-1].endswith([t for t in s.teacher if t][-1])
        assert len(" ".join(t for t in a.teacher if t)) <= len(" ".join(t for t in s.teacher if t))
    assert merged > 30


def test_sft_adds_asr_style_copies_of_that_share_of_the_text_traces(make_tiny_policy):
    p = make_tiny_policy().protocol
    samples = word_problems("train", 8, level="easy")
    for frac, extra in ((0.0, 0), (0.5, 4), (1.0, 8)):
        data = build_sft_dataset(samples, p, SFTStageConfig(rtt_fraction=0, asr_style_fraction=frac))
        assert len(data) == len(samples) + extra
    rows = build_sft_dataset(samples, p, SFTStageConfig(rtt_fraction=0, asr_style_fraction=1.0))["input_ids"]
    clean, styled = (p.decode([t for r in part for t in r]) for part in (rows[:8], rows[8:]))
    assert sum(ch == "." for ch in styled) < sum(ch == "." for ch in clean)
    assert " = " in styled  # the thoughts are the teacher's
    # asr_style_p sets how much the copies change: not at all at 0
    for prob, identical in ((0.0, True), (1.0, False)):
        rows = build_sft_dataset(samples, p, SFTStageConfig(rtt_fraction=0, asr_style_fraction=1.0,
                                                            asr_style_p=prob))["input_ids"]
        assert (sorted(rows[8:]) == sorted(rows[:8])) is identical
    with pytest.raises(ValueError, match="asr_style_fraction"):
        SFTStageConfig(asr_style_fraction=1.5)
    with pytest.raises(ValueError, match="asr_style_p"):
        SFTStageConfig(asr_style_p=-0.1)


def test_more_asr_style_copies_are_drawn_apart_and_the_first_is_unchanged(make_tiny_policy):
    p = make_tiny_policy().protocol
    samples = word_problems("train", 8, level="easy")
    one = build_sft_dataset(samples, p, SFTStageConfig(rtt_fraction=0, asr_style_fraction=1.0))["input_ids"]
    three = build_sft_dataset(samples, p, SFTStageConfig(rtt_fraction=0, asr_style_fraction=1.0,
                                                         asr_style_copies=3))["input_ids"]
    assert len(three) == len(samples) * 4
    assert three[:16] == one
    # a recipe with one copy trains on what it always did: the shipped adapter's copies
    s = word_problems("train", 1)[0]
    assert [c.text for c in asr_style_sample(s, sample_chunks(s), seed=0, p=0.75).chunks][2:4] == [
        "sadly, he loses 10 eggs on the bus",
        "he receives 26 eggs from a friend as a gift at the fair, Diego gets 10 extra eggs."]
    copies = [three[8 * k:8 * (k + 1)] for k in (1, 2, 3)]
    assert sum(a != b for a, b in zip(copies[0], copies[1], strict=True)) >= 4  # not the same draw again
    assert sum(a != b for a, b in zip(copies[1], copies[2], strict=True)) >= 4
    with pytest.raises(ValueError, match="asr_style_copies"):
        SFTStageConfig(asr_style_copies=0)
