"""Pure logic of the streaming ASR (no model): repetition guard, WER, word -> chunk grouping, config checks."""

import numpy as np
import pytest

from adasr_mm.adapters.asr import (
    ASRConfig,
    StreamingASR,
    Word,
    drop_repeats,
    normalize_words,
    pooled_wer,
    wer,
)
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
    # a whole sentence looping (seen from tiny.en on a synthetic voice): kept once
    sentence = "Preya keep 20 oranges in a golden box."
    out = drop_repeats(words("a dog barks."), words(" ".join([sentence] * 5) + " The school bus", t0=2))
    assert " ".join(w.text.strip() for w in out) == sentence + " The school bus"
    # ... but a speaker saying a long sentence again in the next utterance is not a loop
    again = words(sentence, t0=30)
    assert drop_repeats(words(sentence, t0=20), again) == again


def test_wer_normalises_case_punctuation_and_numbers():
    assert wer("Tom has 5 apples.", "tom has five apples") == 0.0
    assert wer("He has 21 cats", "he has twenty-one cats") == 0.0
    assert wer("a b c d", "a x c") == pytest.approx(0.5)
    assert normalize_words("Forty two, Bob's!") == ["42", "bob's"]
    assert wer("", "") == 0.0 and wer("", "noise") == 1.0
    # pooled: all errors over all reference words (the long file weighs more than a mean of WERs would give it)
    assert pooled_wer([("a b c d e f", "a x c d e f"), ("g h", "")]) == pytest.approx(3 / 8)


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
    with pytest.raises(ValueError, match="warmup_s"):
        ASRConfig(warmup_s=-1)
    with pytest.raises(ValueError, match="warmup_pause_s"):
        ASRConfig(pause_s=2.0, warmup_pause_s=1.0)
    with pytest.raises(ValueError, match="block_s"):
        AudioAdapterConfig(block_s=0)


class _EarlyStopWhisper:
    """Stands in for Whisper ending a decode early (the end-of-text token while speech remains), which the real
    model does only on some inputs: a whole-buffer decode covers its first second only; a decode of a shorter
    piece (the uncovered rest) covers it all."""

    def __init__(self, full_s: float):
        self.full_s = full_s
        self.calls: list[tuple[float, str | None]] = []

    def transcribe(self, audio, initial_prompt=None, **kw):
        from types import SimpleNamespace as NS

        dur = len(audio) / 16000
        self.calls.append((dur, initial_prompt))
        texts = [" one", " two."] if dur > self.full_s - 0.01 else [" three", " four."]
        words = [NS(word=t, start=0.2 + 0.4 * i, end=0.5 + 0.4 * i, probability=0.9) for i, t in enumerate(texts)]
        return [NS(words=words, no_speech_prob=0.0, avg_logprob=-0.2)], None


def test_a_flush_decodes_again_what_an_early_stopped_decode_left_out():
    model = _EarlyStopWhisper(full_s=4.0)
    asr = StreamingASR(model, ASRConfig(vad=False, warmup_s=0, min_chunk_s=10, buffer_max_s=30))
    asr.push(np.full(4 * 16000, 0.1, np.float32))
    out = asr.finish().words
    assert [w.norm for w in out] == ["one", "two", "three", "four"]
    assert asr.stats.tail_passes == 1
    # the rest was decoded from where the first decode's words ended (0.9 s), prompted with them
    (full, p0), (rest, p1) = model.calls
    assert full == pytest.approx(4.0, abs=0.05) and rest == pytest.approx(4.0 - 0.9, abs=0.05)
    assert p0 is None and p1 == "one two."
    assert out[2].start == pytest.approx(0.9 + 0.2, abs=0.01)  # stream times shifted by the rest's offset
    assert [w.start for w in out] == sorted(w.start for w in out)


def test_a_flush_whose_decode_covers_the_buffer_decodes_once():
    model = _EarlyStopWhisper(full_s=1.0)  # 1 s of audio: "one two." ends at 0.9 s, inside the closing margin
    asr = StreamingASR(model, ASRConfig(vad=False, warmup_s=0, min_chunk_s=10, buffer_max_s=30))
    asr.push(np.full(16000, 0.1, np.float32))
    assert [w.norm for w in asr.finish().words] == ["one", "two"]
    assert asr.stats.tail_passes == 0 and len(model.calls) == 1
