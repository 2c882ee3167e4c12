"""Pure logic of the streaming ASR (no model): repetition guard, WER, word -> chunk grouping, config checks."""

import pytest

from adasr_mm.adapters.asr import ASRConfig, Word, drop_repeats, normalize_words, wer
from adasr_mm.adapters.audio import AudioAdapterConfig, WordChunker


def words(text, t0=0.0, step=0.3):
    return [Word(t0 + i * step, t0 + i * step + 0.25, " " + w) for i, w in enumerate(text.split())]


def test_repetition_loops_are_dropped_but_real_repeats_kept():
    committed = words("thank you so much")
    loop = words("thank you so much thank you so much thank you so much", t0=2)
    assert drop_repeats(committed, loop) == []
    assert [w.norm for w in drop_repeats([], words("it was very very good"))] == "it was very very good".split()
    assert [w.norm for w in drop_repeats([], words("the the the the end"))] == ["the", "the", "end"]
    fresh = words("and then he left", t0=2)
    assert drop_repeats(committed, fresh) == fresh
    # a loop inside one hypothesis: the phrase survives once
    out = drop_repeats([], words("he buys apples he buys apples he buys apples today"))
    assert [w.norm for w in out] == ["he", "buys", "apples", "today"]


def test_wer_normalises_case_punctuation_and_numbers():
    assert wer("Tom has 5 apples.", "tom has five apples") == 0.0
    assert wer("He has 21 cats", "he has twenty-one cats") == 0.0
    assert wer("a b c d", "a x c") == pytest.approx(0.5)
    assert normalize_words("Forty two, Bob's!") == ["42", "bob's"]
    assert wer("", "") == 0.0 and wer("", "noise") == 1.0


def test_chunker_cuts_at_sentences_pauses_and_max_duration():
    ch = WordChunker(AudioAdapterConfig(max_chunk_s=3.0, min_chunk_words=3), source="x.wav")
    out = ch.add(words("Tom has five apples. He buys"))
    assert [c.text for c in out] == ["Tom has five apples."]
    assert out[0].modality == "audio" and out[0].start == 0.0 and out[0].end == pytest.approx(0.9 + 0.25)
    out = ch.add(words("three more", t0=2.0), utterance_end=True)  # a pause closes the open sentence
    assert [c.text for c in out] == ["He buys three more"]
    long = ch.add(words("one two three four five six seven eight nine ten eleven twelve", t0=10, step=0.4))
    assert long and all(c.end - c.start <= 3.0 + 0.4 for c in long)
    rest = ch.flush()
    idx = [c.index for c in out + long + rest]
    assert idx == sorted(idx)
    assert ch.add(words("Ok.")) == []  # too short for a sentence chunk: waits for more words
    assert [c.text for c in ch.flush()] == ["Ok."]


def test_bad_asr_config_values():
    with pytest.raises(ValueError, match="min_chunk_s"):
        ASRConfig(min_chunk_s=0)
    with pytest.raises(ValueError, match="buffer_max_s"):
        ASRConfig(min_chunk_s=5, buffer_max_s=6)
    with pytest.raises(ValueError, match="vad_threshold"):
        ASRConfig(vad_threshold=1.5)
    with pytest.raises(ValueError, match="block_s"):
        AudioAdapterConfig(block_s=0)
