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


def test_a_loop_cut_short_by_the_token_cap_leaves_the_sentence_once():
    # tiny.en on the kit's cheetah file, a decode stopped by the token cap mid-repeat
    said = "times 10 equals 60, not 600,000. That gives us a 12% chance."
    cut = words(said + " That gives us a 12% chance. That gives us a 12% chance. That gives us a 12")
    assert " ".join(w.text.strip() for w in drop_repeats([], cut)) == said
    # without a repeat before it, a sentence's start again is left to the next pass (a speaker may restart)
    restart = words(said + " That gives us")
    assert drop_repeats([], restart) == restart


def test_wer_normalises_case_punctuation_and_numbers():
    assert wer("Tom has 5 apples.", "tom has five apples") == 0.0
    assert wer("He has 21 cats", "he has twenty-one cats") == 0.0
    assert wer("a b c d", "a x c") == pytest.approx(0.5)
    assert normalize_words("Forty two, Bob's!") == ["42", "bob's"]
    # a quote mark is not part of the word (sonnet 2's reference: "'This fair child of mine ... my old excuse,'")
    assert normalize_words("'This child shall sum my count and make my old excuse,'")[::10] == ["this", "excuse"]
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


def test_chunker_cuts_before_a_sentence_whisper_left_unpunctuated():
    text = "At the market he buys three more apples And his sister eats two of the apples."
    ch = WordChunker(AudioAdapterConfig(), source="x.wav")
    assert [c.text for c in ch.add(words(text))] == ["At the market he buys three more apples",
                                                     "And his sister eats two of the apples."]
    # a name, "I", a word after a comma and a too-short start stay inside the chunk
    for keep in ("Later Tom picks four apples and then I eat one.", "He buys apples, And more.", "Oh The dog."):
        assert [c.text for c in ch.add(words(keep))] == [keep]
    off = WordChunker(AudioAdapterConfig(split_at_openers=False))
    assert [c.text for c in off.add(words(text))] == [text]


def test_bad_asr_config_values():
    with pytest.raises(ValueError, match="min_chunk_s"):
        ASRConfig(min_chunk_s=0)
    with pytest.raises(ValueError, match="buffer_max_s"):
        ASRConfig(min_chunk_s=5, buffer_max_s=6)
    with pytest.raises(ValueError, match="vad_threshold"):
        ASRConfig(vad_threshold=1.5)
    with pytest.raises(ValueError, match="hotwords is 301 characters"):
        ASRConfig(hotwords="x" * 301)
    with pytest.raises(ValueError, match="vad_max_gain_db"):
        ASRConfig(vad_max_gain_db=-6)
    with pytest.raises(ValueError, match="warmup_s"):
        ASRConfig(warmup_s=-1)
    with pytest.raises(ValueError, match="warmup_pause_s"):
        ASRConfig(pause_s=2.0, warmup_pause_s=1.0)
    with pytest.raises(ValueError, match="cadence"):
        ASRConfig(cadence="sometimes")
    with pytest.raises(ValueError, match="min_window_s"):
        ASRConfig(min_window_s=40)
    with pytest.raises(ValueError, match="min_speech_s"):
        ASRConfig(min_speech_s=-1)
    with pytest.raises(ValueError, match="stable_s"):
        ASRConfig(stable_s=-0.5)
    with pytest.raises(ValueError, match="stable_prob"):
        ASRConfig(stable_prob=1.5)
    with pytest.raises(ValueError, match="substitution_context"):
        ASRConfig(substitution_context=-1)
    with pytest.raises(ValueError, match="first_commit_prob"):
        ASRConfig(first_commit_prob=2)
    with pytest.raises(ValueError, match="first_commit_hold_s"):
        ASRConfig(first_commit_hold_s=-1)
    with pytest.raises(ValueError, match="flush_full_window_prob"):
        ASRConfig(flush_full_window_prob=-0.1)
    with pytest.raises(ValueError, match="retry_uncovered_s"):
        ASRConfig(retry_uncovered_s=-1)
    with pytest.raises(ValueError, match="flush_hold_prob"):
        ASRConfig(flush_hold_prob=1.5)
    with pytest.raises(ValueError, match="tail_word_prob"):
        ASRConfig(tail_word_prob=-0.1)
    with pytest.raises(ValueError, match="hold_pause_s"):
        ASRConfig(hold_pause_s=0.2)
    with pytest.raises(ValueError, match="first_commit_min_words"):
        ASRConfig(first_commit_min_words=0)
    with pytest.raises(ValueError, match="first_lead_silence_s"):
        ASRConfig(first_lead_silence_s=-1)
    with pytest.raises(ValueError, match="block_s"):
        AudioAdapterConfig(block_s=0)


class _EarlyStopWhisper:
    """Stands in for Whisper ending a decode early (the end-of-text token while speech remains), which the real
    model does only on some inputs: a whole-buffer decode covers its first second only; a decode of a shorter
    piece (the uncovered rest with its context) covers it all."""

    def __init__(self, full_s: float):
        self.full_s = full_s
        self.calls: list[tuple[float, str | None]] = []

    def transcribe(self, audio, initial_prompt=None, **kw):
        from types import SimpleNamespace as NS

        dur = len(audio) / 16000
        self.calls.append((dur, initial_prompt))
        if dur > self.full_s - 0.01:
            words = [NS(word=" one", start=0.2, end=0.5, probability=0.9),
                     NS(word=" two.", start=0.6, end=0.9, probability=0.9)]
        else:  # the rest decode: audio from CONTEXT_S before the uncovered part (which starts at 0.9 s)
            off = self.full_s - dur
            words = [NS(word=w, start=a - off, end=b - off, probability=0.9)
                     for w, a, b in ((" two.", 0.6, 0.9), (" three", 1.2, 1.5), (" four.", 1.6, 1.9))
                     if a - off >= 0]
        return [NS(words=words, start=0.0, end=dur, no_speech_prob=0.0, avg_logprob=-0.2)], None


def test_a_flush_decodes_again_what_an_early_stopped_decode_left_out():
    model = _EarlyStopWhisper(full_s=6.0)
    asr = StreamingASR(model, ASRConfig(vad=False, cadence="fixed", min_chunk_s=10, buffer_max_s=30,
                                        first_lead_silence_s=0, first_commit_prob=0))  # the script's times are
    # the buffer's, and one pass: at the flush (no first-commit hold to lift at 4 s)
    asr.CONTEXT_S = 0.5  # the rest decode starts at 0.9 - 0.5 = 0.4 s
    asr.push(np.full(6 * 16000, 0.1, np.float32))
    out = asr.finish().words
    assert asr.stats.tail_passes == 1
    (full, _), (rest, _) = model.calls
    assert full == pytest.approx(6.0, abs=0.05) and rest == pytest.approx(6.0 - 0.4, abs=0.05)
    assert [w.norm for w in out] == ["one", "two", "three", "four"]  # the re-decoded "two." is not doubled
    assert out[2].start == pytest.approx(1.2, abs=0.01)  # stream time = the rest's own time + its 0.4 s offset


def test_a_flush_whose_decode_covers_the_buffer_decodes_once():
    model = _EarlyStopWhisper(full_s=1.0)  # 1 s of audio: "one two." ends at 0.9 s, inside the closing margin
    asr = StreamingASR(model, ASRConfig(vad=False, cadence="fixed", min_chunk_s=10, buffer_max_s=30))
    asr.push(np.full(16000, 0.1, np.float32))
    assert [w.norm for w in asr.finish().words] == ["one", "two"]
    assert asr.stats.tail_passes == 0 and len(model.calls) == 1


class _CountingWhisper:
    """Returns one fixed word per decode; counts decodes."""

    def __init__(self):
        self.calls = 0

    def transcribe(self, audio, **kw):
        from types import SimpleNamespace as NS

        self.calls += 1
        return [NS(words=[NS(word=" hello", start=0.1, end=0.4, probability=0.9)], start=0.0, end=0.5,
                   no_speech_prob=0.0, avg_logprob=-0.2)], None


def _passes(cadence: str, pass_cost: float) -> int:
    """Decodes over 20 s of (VAD-less) speech when the timer says each push costs ``pass_cost`` seconds."""
    fake_time = [0.0]

    def timer():
        fake_time[0] += pass_cost / 2  # each timed interval (start, end) spans pass_cost
        return fake_time[0]

    model = _CountingWhisper()
    asr = StreamingASR(model, ASRConfig(vad=False, cadence=cadence, min_chunk_s=1.0, max_interval_s=2.5,
                                        buffer_max_s=30), timer=timer)
    for _ in range(40):
        asr.push(np.full(8000, 0.1, np.float32))
    return model.calls


def test_fixed_cadence_ignores_the_clock_and_adaptive_follows_it():
    # fixed: a pass per second of speech however slow the machine; the timer is never what decides
    fixed = _passes("fixed", 0.0)
    assert fixed >= 12 and _passes("fixed", 5.0) == fixed
    # adaptive: a slow machine (every pass costs more than the RTF budget) gets fewer passes - but one at least
    # every max_interval_s (2.5 s here) of speech -, a fast one all
    assert _passes("adaptive", 0.001) == fixed
    assert 20 / 2.5 <= _passes("adaptive", 2.0) < fixed * 2 / 3


def _seg(words, no_speech=0.0, logprob=-0.2):
    from types import SimpleNamespace as NS

    return NS(words=words, no_speech_prob=no_speech, avg_logprob=logprob)


def test_stock_phrases_need_audio_evidence_and_whisper_no_speech_rule():
    asr = StreamingASR(_CountingWhisper(), ASRConfig())
    asr._voiced = [[0.0, 2.0]]  # VAD speech from 0 to 2 s
    thanks = [Word(0.5, 0.8, " Thank", 0.9), Word(0.8, 1.1, " you.", 0.9)]
    assert asr._segment_ok(_seg(thanks), thanks)  # said clearly inside speech: kept
    assert not asr._segment_ok(_seg(thanks, logprob=-0.9), thanks)  # a guess: dropped
    assert not asr._segment_ok(_seg(thanks, no_speech=0.5), thanks)
    late = [Word(2.4, 2.7, " Thank", 0.9), Word(2.7, 3.0, " you.", 0.9)]  # after the speech ended
    assert not asr._segment_ok(_seg(late), late)
    other = [Word(2.4, 2.7, " Tom", 0.9), Word(2.7, 3.0, " left.", 0.9)]  # not a stock phrase: evidence not asked
    assert asr._segment_ok(_seg(other), other)
    assert not asr._segment_ok(_seg(other, no_speech=0.7, logprob=-1.2), other)  # Whisper's own rule
    # eight words in 0.3 s of speech: invented
    asr._voiced = [[0.0, 0.3]]
    many = [Word(0.25 * i, 0.25 * i + 0.2, f" w{i}") for i in range(8)]
    assert not asr._segment_ok(_seg(many), many)
    asr._voiced = [[0.0, 2.0]]
    assert asr._segment_ok(_seg(many), many)
    assert StreamingASR(_CountingWhisper(), ASRConfig(stock_phrase_filter=False))._segment_ok(_seg(late), late)


def test_encoder_window_sizes_and_trimming():
    from adasr_mm.adapters.asr import _encoder_window, _install_window, window_for

    assert window_for(3.0, 10.0) == 10.0 and window_for(9.5, 10.0) == 15.0 and window_for(14.0, 10.0) == 15.0
    assert window_for(29.5, 10.0) == 30.0 and window_for(2.0, 30.0) == 30.0

    class Enc:
        def __init__(self):
            self.shapes = []

        def encode(self, features):
            self.shapes.append(features.shape)
            return features

    m = Enc()
    assert _install_window(m) and _install_window(m)  # idempotent
    feats = np.zeros((80, 3000), np.float32)
    with _encoder_window(15.0):
        m.encode(feats)
    m.encode(feats)  # outside the context: the full window
    with _encoder_window(30.0):
        m.encode(feats)
    assert m.shapes == [(80, 1500), (80, 3000), (80, 3000)]
    assert not _install_window(_CountingWhisper())  # no encode(): left alone
