"""Commit rules of the streaming ASR, driven by a scripted stand-in for Whisper (no model): which words a pass
commits, when a decode is retried, how a new hypothesis is aligned with the committed text."""

from types import SimpleNamespace as NS

import numpy as np
import pytest

from adasr_mm.adapters import asr as asr_mod
from adasr_mm.adapters.asr import ASRConfig, StreamingASR, Word

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
        words = [NS(word=" " + w, start=a, end=b, probability=p) for w, a, b, p in entry]
        end = max([b for _, _, b, _ in entry], default=0.0)
        return [NS(words=words, start=0.0, end=end, no_speech_prob=0.0, avg_logprob=-0.2)], None


def _says(text, t0=0.2, step=0.4, prob=0.9):
    return [(w, t0 + i * step, t0 + i * step + 0.3, prob) for i, w in enumerate(text.split())]


def _asr(model, **cfg):
    base = dict(vad=False, cadence="fixed", min_chunk_s=0.95, buffer_max_s=30, stable_s=0.0)  # a pass a push
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


def test_a_collapsed_decode_is_retried_without_the_prompt():
    collapsed, full = [("not", 5.5, 5.8, 0.9)], _says("whose fresh repair now thou not renewest", step=0.7)
    for limit, calls in ((1.5, 2), (0.0, 1)):
        model = _ScriptedWhisper(collapsed, full)
        asr = _asr(model, min_chunk_s=10, retry_uncovered_s=limit)
        _feed(asr, 6)
        asr.committed = [Word(-1.0, -0.5, " earlier.")]  # committed text before the buffer: the prompt
        asr._pass(flush=False)
        assert [c["prompt"] for c in model.calls] == ["earlier."] + [None] * (calls - 1)
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


def test_an_uncertain_final_decode_is_redone_with_the_full_window():
    short, full = [("old", 0.8, 1.1, 0.37), ("sposed", 1.1, 1.5, 0.54)], _says("ill disposed", t0=0.8)
    for prob, expect in ((0.5, ["ill", "disposed"]), (0.0, ["old", "sposed"])):
        model = _ScriptedWhisper(short, full)
        asr = _asr(model, min_chunk_s=10, flush_full_window_prob=prob)
        _feed(asr, 2)
        assert [w.norm for w in asr.finish().words] == expect
        assert [c["frames"] for c in model.calls] == [1000, 0][: len(model.calls)]  # 10 s window, then 30 s
        assert asr.stats.full_window_retries == (prob > 0)
