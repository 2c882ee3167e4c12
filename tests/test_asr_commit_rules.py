"""Commit rules of the streaming ASR, driven by a scripted stand-in for Whisper (no model): which words a pass
commits, when a decode is retried, how a new hypothesis is aligned with the committed text."""

from types import SimpleNamespace as NS

import numpy as np
import pytest

from adasr_mm.adapters import asr as asr_mod
from adasr_mm.adapters.asr import ASRConfig, StreamingASR, Word, normalize_word

SR = 16000


class _ScriptedWhisper:
    """Answers the n-th decode with the n-th script entry: ``[(word, start, end, probability), ...]`` in the
    decoded audio's own time. Records each call's prompt and encoder window (0 = the full 30 s)."""

    def __init__(self, *script):
        self.script = list(script)
        self.calls: list[dict] = []

    def encode(self, features):  # makes the model "windowable" (see asr._install_window)
        return features

    def transcribe(self, audio, initial_prompt=None, **kw):
        self.calls.append({"prompt": initial_prompt, "frames": getattr(asr_mod._WINDOW, "frames", 0)})
        entry = self.script[min(len(self.calls), len(self.script)) - 1]
        words = [NS(word=w if w[:1] == "-" else " " + w, start=a, end=b, probability=p) for w, a, b, p in entry]
        end = max([b for _, _, b, _ in entry], default=0.0)
        return [NS(words=words, start=0.0, end=end, no_speech_prob=0.0, avg_logprob=-0.2)], None


def _says(text, t0=0.2, step=0.4, prob=0.9):
    return [(w, t0 + i * step, t0 + i * step + 0.3, prob) for i, w in enumerate(text.split())]


def _asr(model, **cfg):
    # a pass a push; the scripts' times are the buffer's (no lead silence: it has its own test)
    base = dict(vad=False, cadence="fixed", min_chunk_s=0.95, buffer_max_s=30, stable_s=0.0, first_lead_silence_s=0)
    return StreamingASR(model, ASRConfig(**{**base, **cfg}))


def _feed(asr, seconds):
    out = []
    for _ in range(int(seconds)):
        out += asr.push(np.full(SR, 0.1, np.float32)).words
    return [w.norm for w in out]


@pytest.mark.parametrize("context, committed", [(2, ["feeds", "by", "light's", "flame"]), (0, [])])
def test_agreement_survives_one_substituted_word(context, committed):
    model = _ScriptedWhisper(_says("feet by light's flame"), _says("feeds by light's flame with"))
    asr = _asr(model, substitution_context=context)
    assert _feed(asr, 2) == committed  # passes at 1 s and 2 s: the newer spelling of the odd word is committed


def test_a_streams_first_words_need_confidence_to_commit_by_agreement():
    unsure = [("how", 0.1, 0.4, 0.2), ("do", 0.4, 0.6, 0.9), ("you", 0.6, 0.8, 0.9)]
    gated = _asr(_ScriptedWhisper(unsure), first_commit_hold_s=2.5)
    assert _feed(gated, 2) == []  # two passes agree on a 0.2-probability opening: held
    assert _feed(gated, 1) == ["how", "do", "you"]  # the buffer reached first_commit_hold_s: committed
    assert _feed(_asr(_ScriptedWhisper(unsure), first_commit_prob=0.0), 2) == ["how", "do", "you"]


def test_words_held_for_the_first_commit_are_committed_when_the_hold_ends_not_a_pass_later():
    unsure = [("and", 0.0, 0.3, 0.2), ("mister", 0.3, 0.6, 0.9), ("john", 0.6, 0.9, 0.9)]
    asr = _asr(_ScriptedWhisper(unsure), min_chunk_s=3.0, first_commit_hold_s=4.0, retry_uncovered_s=0)
    out = []
    for _ in range(8):  # half-second pushes: a pass at 3 s (held), the hold ends at 4 s
        out.append([w.norm for w in asr.push(np.full(SR // 2, 0.1, np.float32)).words])
    assert out.index(["and", "mister", "john"]) == 7  # at 4.0 s, not at the next regular pass (6 s)
    assert asr.stats.passes == 2
    assert not _asr(_ScriptedWhisper(unsure), min_chunk_s=3.0, first_commit_prob=0)._hold_lifted()


def test_a_sure_word_before_an_unsure_one_is_not_a_streams_first_commit_alone():
    split = [("i'll", 0.1, 0.3, 0.5), ("less", 0.3, 0.5, 0.26), ("to", 0.5, 0.6, 0.9), ("be", 0.6, 0.8, 0.9)]
    for min_words, first in ((2, []), (1, ["i'll"])):
        asr = _asr(_ScriptedWhisper(split), first_commit_min_words=min_words, first_commit_hold_s=2.5)
        assert _feed(asr, 2) == first  # two passes agree, but only "i'll" is sure enough under the hold


def test_a_streams_first_decodes_have_silence_before_the_audio():
    class Recording(_ScriptedWhisper):
        def transcribe(self, audio, initial_prompt=None, **kw):
            self.calls.append({"lead": int(np.argmax(np.abs(audio) > 0)), "samples": len(audio)})
            words = [NS(word=" " + w, start=a + 1.0, end=b + 1.0, probability=0.9) for w, a, b in
                     (("and", -0.2, 0.3), ("mister", 0.3, 0.6), ("john", 0.6, 0.9))]  # "and" from 0.8 s
            return [NS(words=words, start=0.8, end=1.9, no_speech_prob=0.0, avg_logprob=-0.2)], None

    model = Recording()
    asr = _asr(model, first_lead_silence_s=1.0)
    assert _feed(asr, 1) == []
    assert [(w.start, w.end) for w, _ in asr._hyp] == [(0.0, pytest.approx(0.3)), (pytest.approx(0.3),
                                                        pytest.approx(0.6)), (pytest.approx(0.6), pytest.approx(0.9))]
    assert [b for _, b in asr._hyp] == [int(0.3 * SR), int(0.6 * SR), int(0.9 * SR)]  # in the buffer's samples
    assert _feed(asr, 1) == ["and", "mister", "john"]
    assert [c["lead"] for c in model.calls] == [SR, SR]  # 1 s of silence, then the buffer's audio
    assert model.calls[1]["samples"] - SR == len(asr._buf)
    asr.push(np.full(SR, 0.1, np.float32))  # after the first commit the prompt is the context: no lead
    assert model.calls[-1]["lead"] == 0 and model.calls[-1]["samples"] == len(asr._buf)


def test_the_lead_silence_counts_the_silence_the_buffer_starts_with():
    class Recording(_ScriptedWhisper):
        def transcribe(self, audio, initial_prompt=None, **kw):
            self.calls.append(int(np.argmax(audio != 0)))  # the added silence is exact zeros
            return [], None

    model = Recording()
    asr = _voice_by_level(_asr(model, vad=True, first_lead_silence_s=1.0, min_chunk_s=1.0))
    asr.push(np.full(SR // 2, 0.01, np.float32))  # 0.5 s of quiet room (not speech) ...
    asr.push(np.full(2 * SR, 0.1, np.float32))  # ... then speech: the buffer keeps ~0.3 s of the room before it
    room = asr._voiced[0][0] - asr._to_stream(0.0)
    assert 0.2 < room < 0.4 and model.calls
    assert model.calls[0] == pytest.approx((1.0 - room) * SR, abs=1)


def test_a_collapsed_decode_is_retried_without_the_prompt():
    collapsed, full = [("not", 5.5, 5.8, 0.9)], _says("whose fresh repair now thou not renewest", step=0.7)
    for limit, calls in ((1.5, 2), (0.0, 1)):
        model = _ScriptedWhisper(collapsed, full)
        asr = _asr(model, min_chunk_s=10, retry_uncovered_s=limit, first_commit_prob=0)  # no pass while fed
        _feed(asr, 6)
        asr.committed = [Word(-1.0, -0.5, " earlier.")]  # committed text before the buffer: the prompt
        asr._pass(flush=False)
        assert [c["prompt"] for c in model.calls] == ["earlier."] + [None] * (calls - 1)
        assert asr.stats.uncovered_retries == calls - 1
        assert len(asr._hyp) == (7 if calls == 2 else 1)


def test_a_stray_improbable_word_stretched_over_the_speech_does_not_hide_a_collapse():
    # a collapsed decode's one word, timed over all 5.6 s of speech: only a word Whisper believes covers them
    for prob, calls in ((0.01, 2), (0.9, 1)):
        model = _ScriptedWhisper([("not", 0.2, 5.8, prob)], _says("whose fresh repair now thou not renewest"))
        asr = _asr(model, min_chunk_s=10, retry_uncovered_s=1.5, first_commit_prob=0)
        _feed(asr, 6)
        asr._pass(flush=False)
        assert asr.stats.uncovered_retries == calls - 1
        assert len(asr._hyp) == (7 if calls == 2 else 1)


def test_new_words_are_aligned_on_the_committed_text_not_only_on_time():
    asr = _asr(_ScriptedWhisper([]))
    asr.committed = [Word(14.0 + 0.4 * i, 14.3 + 0.4 * i, " " + w) for i, w in enumerate("your seat".split())]
    asr.committed.append(Word(15.4, 16.06, " belts"))  # this decode put the end of "belts" at 16.06 s ...
    hyp = [(Word(a, b, " " + w), 0) for w, a, b in
           (("seat", 15.16, 15.38), ("belts", 15.38, 15.82), ("we", 15.82, 16.46), ("are", 16.46, 16.72))]
    assert [w.norm for w, _ in asr._new_words(hyp)] == ["we", "are"]  # ... the next one "we" at 15.82 s
    far = [(Word(a, b, " " + w), 0) for w, a, b in
           (("seat", 11.0, 11.3), ("belts", 11.3, 11.6), ("go", 11.7, 12.0), ("now", 16.2, 16.5))]
    assert [w.norm for w, _ in asr._new_words(far)] == ["now"]  # the same text 4 s earlier is no anchor


def test_repeats_are_cut_before_unvoiced_words_and_zero_length_words_are_judged_by_their_time():
    asr = _asr(_ScriptedWhisper([]), vad=True)
    asr._voiced = [[0.0, 2.0]]
    said = "ladies and gentlemen ladies and gentlemen."
    decoded = [(Word(0.2 + 0.25 * i, 0.4 + 0.25 * i, " " + w), 0) for i, w in enumerate(said.split())]
    decoded[-1] = (Word(2.6, 2.9, " gentlemen."), 0)  # the looped copy's last word lies in the closing pause
    assert [w.norm for w, _ in asr._voiced_words(decoded)] == ["ladies", "and", "gentlemen"]
    at_edge, in_pause = Word(2.1, 2.1, " We", 0.99), Word(2.5, 2.5, " so", 0.9)  # zero-length spans
    assert [w.norm for w, _ in asr._voiced_words([(at_edge, 0), (in_pause, 0)])] == ["we"]


def test_a_word_keeps_one_closing_mark():
    # sonnet 2 streamed "if thou couldst answer?." : a bare "." decoded after "answer?"
    model = _ScriptedWhisper([("couldst", 0.2, 0.5, 0.9), ("answer?", 0.5, 0.9, 0.9), (".", 0.9, 0.9, 0.9),
                              ("'", 0.9, 0.9, 0.9)])
    asr = _asr(model)
    assert [w.text.strip() for w, _ in asr._decode_buffer()] == ["couldst", "answer?'"]
    asr = _asr(_ScriptedWhisper([]), vad=True)
    asr._voiced = [[0.0, 1.0]]
    decoded = [(Word(0.5, 0.9, " answer?"), 0), (Word(2.5, 2.6, " so."), 0), (Word(0.2, 0.4, " Tom"), 0)]
    kept = asr._voiced_words(decoded[:2]) + asr._voiced_words(decoded[2:] + decoded[1:2])
    assert [w.text.strip() for w, _ in kept] == ["answer?", "Tom."]  # an unvoiced word's sentence end is kept


def test_an_uncertain_final_decode_is_redone_with_the_full_window():
    short, full = [("old", 0.8, 1.1, 0.37), ("sposed", 1.1, 1.5, 0.54)], _says("ill disposed", t0=0.8)
    for prob, expect in ((0.5, ["ill", "disposed"]), (0.0, ["old", "sposed"])):
        model = _ScriptedWhisper(short, full)
        asr = _asr(model, min_chunk_s=10, flush_full_window_prob=prob)
        _feed(asr, 2)
        assert [w.norm for w in asr.finish().words] == expect
        assert [c["frames"] for c in model.calls] == [1000, 0][: len(model.calls)]  # 10 s window, then 30 s
        assert asr.stats.full_window_retries == (prob > 0)


def test_a_full_window_redo_that_stops_early_is_not_taken():
    said = _says("whose oniard womb disdain the tillage of thy husbandry", step=0.3)
    said[3] = ("disdain", 1.1, 1.4, 0.2)  # the uncertain word that makes the flush redo the decode
    stopped = said[:3] + [("distains", 1.1, 1.5, 0.29), ("the", 1.5, 3.6, 0.99)]  # "the" swallows the rest
    model = _ScriptedWhisper(said, stopped)
    asr = _asr(model, min_chunk_s=10, flush_full_window_prob=0.3)
    _feed(asr, 3)
    assert [w.norm for w in asr.finish().words] == [w for w, *_ in said]
    assert asr.stats.full_window_retries == 1


def _voice_by_level(asr):
    """A scripted VAD for the scripted Whisper: a 32 ms window is speech when its level is above 0.05."""
    asr._vad = lambda audio: (np.abs(audio.reshape(-1, asr_mod._VAD_WINDOW)).mean(1) > 0.05).astype(np.float32)
    return asr


def _push(asr, seconds, speech):
    return asr.push(np.full(int(seconds * SR), 0.1 if speech else 0.0, np.float32))


_SAID = [("nothing", 0.2, 0.5, 0.95), ("of", 0.5, 0.8, 0.95), ("my", 0.8, 1.1, 0.95)]


@pytest.mark.parametrize("hold", [0.9, 0.0])
def test_an_unsure_last_word_at_a_pause_waits_for_the_speech_after_it(hold):
    model = _ScriptedWhisper(_SAID + [("antecedence.", 1.1, 1.7, 0.79)],
                             _SAID + [("antecedents,", 1.1, 1.75, 0.95), ("nor", 2.6, 2.9, 0.95), ("of", 2.9, 3.2, 0.95)])
    asr = _voice_by_level(_asr(model, vad=True, min_chunk_s=10, flush_hold_prob=hold))
    _push(asr, 2.0, speech=True)
    at_pause = _push(asr, 0.5, speech=False)  # the flush at 0.3 s of pause (a comma's pause, as it turns out)
    assert [w.norm for w in at_pause.words] == ["nothing", "of", "my"] + ["antecedence"] * (not hold)
    assert at_pause.utterance_end == (not hold)  # the chunk is not closed without its last word
    _push(asr, 1.0, speech=True)
    _push(asr, 0.5, speech=False)
    assert [w.norm for w in asr.committed] == \
        ["nothing", "of", "my", "antecedents" if hold else "antecedence", "nor", "of"]


def test_a_held_last_word_is_committed_when_the_pause_goes_on():
    asr = _voice_by_level(_asr(_ScriptedWhisper(_SAID + [("antecedence.", 1.1, 1.7, 0.79)]), vad=True,
                               min_chunk_s=10, hold_pause_s=0.8, context_s=0.5))
    _push(asr, 2.0, speech=True)
    assert _push(asr, 0.5, speech=False).words[-1].norm == "my"
    assert asr._to_stream(0.0) == pytest.approx(0.5)  # committed audio beyond context_s was cut meanwhile
    later = _push(asr, 0.4, speech=False)  # 0.9 s of pause
    assert [w.norm for w in later.words] == ["antecedence"] and later.utterance_end
    assert asr._to_stream(asr._committed_b / SR) == pytest.approx(1.7)  # its buffer position moved with the cut
    held = _voice_by_level(_asr(_ScriptedWhisper(_SAID + [("antecedence.", 1.1, 1.7, 0.79)]), vad=True,
                                min_chunk_s=10))
    _push(held, 2.0, speech=True)
    _push(held, 0.5, speech=False)
    assert [w.norm for w in held.finish().words] == ["antecedence"]  # the end of the stream commits it too


def test_agreed_words_keep_the_earlier_time_when_a_decode_collapses():
    said = [("windows", 0.2, 0.5, 0.9), ("of", 0.5, 0.7, 0.9), ("thy", 0.7, 0.9, 0.9)]
    collapsed = said[:1] + [("of", 0.5, 1.9, 0.9), ("thy", 1.9, 1.95, 0.9)]  # timing squeezed to the audio's end
    more = [("windows", 0.2, 0.5, 0.9), ("of", 0.5, 0.7, 0.9), ("thy", 0.7, 0.85, 0.9), ("nage", 0.85, 1.2, 0.9),
            ("shall", 1.2, 1.5, 0.9), ("see", 1.5, 1.9, 0.9), ("despite", 2.0, 2.4, 0.9)]
    asr = _asr(_ScriptedWhisper(said, collapsed, more))
    assert _feed(asr, 2) == ["windows", "of", "thy"]
    assert asr.committed[-1].end == pytest.approx(0.9)  # not 1.95: the earlier pass's time
    assert _feed(asr, 2) == ["nage", "shall", "see", "despite"]  # at 1.95 s they looked older than the commit


def _speech_pause_speech_pause(model):
    """2 s of speech, a 0.5 s pause (the flush: its last word held), 1 s of speech, a 0.5 s pause."""
    asr = _voice_by_level(_asr(model, vad=True, min_chunk_s=10))
    for seconds, speech in ((2.0, True), (0.5, False), (1.0, True), (0.5, False)):
        _push(asr, seconds, speech)
    return asr


def test_a_held_word_decoded_again_without_its_mark_still_ends_the_sentence():
    # the pause after "apples." was real; the next decode runs on into "and his sister" without punctuation
    said = [("buys", 0.2, 0.5, 0.95), ("three", 0.5, 0.8, 0.95), ("more", 0.8, 1.1, 0.95)]
    model = _ScriptedWhisper(said + [("apples.", 1.1, 1.7, 0.8)],
                             said + [("apples", 1.1, 1.7, 0.95), ("and", 2.6, 2.9, 0.95), ("his", 2.9, 3.2, 0.95)])
    asr = _speech_pause_speech_pause(model)
    assert [w.text.strip() for w in asr.committed] == ["buys", "three", "more", "apples.", "and", "his"]


def test_a_held_word_continued_by_a_piece_of_the_same_word_gets_no_mark():
    said = [("fifty", 0.2, 0.5, 0.95), ("apple", 0.5, 0.8, 0.95)]
    model = _ScriptedWhisper(said + [("Mini.", 0.8, 1.4, 0.6)],
                             said + [("Mini", 0.8, 1.4, 0.95), ("-Puns", 2.3, 2.6, 0.95), ("back.", 2.6, 3.0, 0.95)])
    asr = _speech_pause_speech_pause(model)
    assert "".join(w.text for w in asr.committed).split() == ["fifty", "apple", "Mini-Puns", "back."]


_LAST_LINE = [("feel'st", 0.2, 0.6, 0.6), ("it", 0.6, 0.8, 0.9), ("cold.", 0.8, 1.2, 0.99)]


@pytest.mark.parametrize("tail_word_prob, expect", [(0.2, ["feel'st", "it", "cold"]),
                                                    (0.0, ["feel'st", "it", "cold", "good"])])
def test_an_invented_word_after_the_last_sentence_is_dropped(tail_word_prob, expect):
    # base on the kit's sonnet 2: its final decode closed the poem with "Good." at p 0.02
    asr = _asr(_ScriptedWhisper(_LAST_LINE + [("Good.", 1.2, 1.3, 0.02)]), tail_word_prob=tail_word_prob)
    _feed(asr, 1)
    asr.finish()
    assert [w.norm for w in asr.committed] == expect
    assert asr.stats.dropped_tail == (asr.stats.passes if tail_word_prob else 0)  # one word, every decode


@pytest.mark.parametrize("tail", [
    [("it", 0.6, 0.8, 0.1), ("cold", 0.8, 1.2, 0.1)],  # weak words that go on with a sentence: no sentence end
    [("cold.", 0.8, 1.2, 0.99), ("And", 1.3, 1.5, 0.1), ("see", 1.5, 1.7, 0.5)],  # one word of the tail is sure
    [("cold.", 0.8, 1.2, 0.99), ("And", 1.3, 1.5, 0.1), ("see", 1.5, 1.7, 0.1), ("thy", 1.7, 1.9, 0.1)],  # 3 words
])
def test_a_weak_tail_that_may_be_speech_is_kept(tail):
    said = [("feel'st", 0.2, 0.6, 0.6)] + tail
    asr = _asr(_ScriptedWhisper(said))
    _feed(asr, 1)
    asr.finish()
    assert [w.norm for w in asr.committed] == [normalize_word(w) for w, *_ in said]
