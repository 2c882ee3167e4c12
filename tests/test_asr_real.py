"""The streaming ASR on real recordings of real people (the dev kit, read in place) with the bundled tiny.en.

The kit lives outside the repo (``../shared/media/dev``); these tests skip with the reason when it is absent. The
pass cadence is fixed (passes per second of audio, never the clock), so no outcome depends on the machine's speed.
Quality targets (WER ratio, latency, RTF) are benchmark criteria (``benchmarks/audio.py``), not asserted here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from adasr_mm.adapters.asr import ASRConfig, load_whisper, normalize_words, wer, words_text
from adasr_mm.adapters.audio import AudioStream
from adasr_mm.adapters.audio_io import TARGET_SR, iter_audio_blocks, load_audio
from adasr_mm.errors import ModelLoadError

pytestmark = pytest.mark.slow

KIT = Path(__file__).resolve().parents[1].parent / "shared" / "media" / "dev"
if not (KIT / "references.json").is_file():
    pytest.skip(f"the real-media dev kit is absent ({KIT})", allow_module_level=True)
REFS = json.loads((KIT / "references.json").read_text())
SPEECH = ["picovoice_leopard_diarization_3spk.wav", "librispeech_2412-153948-0000.flac",
          "librivox_sense_sensibility_0870.wav", "librivox_sense_sensibility_0890.wav", "ljspeech_LJ050-0131.wav"]
NONSPEECH = sorted(n for n in REFS if n.startswith("nonspeech/"))
FIXED = ASRConfig(cadence="fixed")


@pytest.fixture(scope="module")
def tiny():
    return load_whisper("tiny.en")


def stream(model, audio: np.ndarray, cfg: ASRConfig = FIXED, block_s: float = 0.5) -> tuple[AudioStream, list]:
    s = AudioStream(model, cfg)
    chunks, n = [], int(block_s * TARGET_SR)
    for i in range(0, len(audio), n):
        chunks += list(s.push(audio[i : i + n], TARGET_SR))
    chunks += list(s.finish())
    return s, chunks


@pytest.fixture(scope="module")
def runs(tiny):
    out = {}
    for name in SPEECH:
        audio = load_audio(KIT / name)
        s, chunks = stream(tiny, audio)
        out[name] = {"duration": len(audio) / TARGET_SR, "chunks": chunks, "text": words_text(s.asr.committed)}
    return out


def test_chunks_are_monotonic_and_inside_the_audio(runs):
    for name, r in runs.items():
        chunks = r["chunks"]
        assert chunks, name
        for a, b in zip(chunks, chunks[1:], strict=False):
            assert b.start >= a.end - 0.05, (name, a.text, b.text)
            assert b.meta["available_at"] >= a.meta["available_at"]
        for c in chunks:
            assert 0 <= c.start <= c.end <= r["duration"] + 0.05, (name, c)
            assert c.meta["available_at"] >= c.end - 1e-6
        # behavioural, not a quality bar: the transcript is about the reference (the ratio is benchmarked)
        assert wer(REFS[name]["text"], r["text"]) < 0.3, (name, r["text"])


def test_the_first_chunk_of_a_long_recording_comes_before_it_ends(runs):
    for name, r in runs.items():
        if r["duration"] >= 10:
            first = r["chunks"][0].meta["available_at"]  # stream time when it was committed (zero compute)
            assert first < r["duration"] - 3.0, (name, first, r["duration"])


@pytest.mark.parametrize("name", ["librivox_sense_sensibility_0870.wav", "librivox_sense_sensibility_0890.wav"])
def test_a_word_spoken_at_the_first_sample_is_kept(runs, name):
    # "And Mr. John ..." / "Unless to be ...": decoded from the first sample on, Whisper wrote "Mr. John" and
    # "I'll less" (committed as "I'll to be") for the first words
    assert normalize_words(runs[name]["text"])[:1] == normalize_words(REFS[name]["text"])[:1], runs[name]["text"]


def test_a_speaker_saying_a_stock_phrase_is_kept(runs):
    # the third speaker ends with "thank you": a stock phrase, but said clearly inside speech
    assert "thank you" in " ".join(normalize_words(runs["picovoice_leopard_diarization_3spk.wav"]["text"]))


def test_no_invented_word_after_the_last_line():
    # Whisper base, 0.1 s pushes (the file replay's), a pass a second: the final decode of sonnet 2 closed the
    # poem with "Good." (p 0.02), committed as a chunk of its own
    try:
        base = load_whisper("base")
    except ModelLoadError as e:
        pytest.skip(str(e))
    _, chunks = stream(base, load_audio(KIT / "librivox_sonnet002.mp3"), ASRConfig(model="base", cadence="fixed"),
                       block_s=0.1)
    assert normalize_words(chunks[-1].text)[-2:] == ["it", "cold"], [c.text for c in chunks[-2:]]


def test_a_detected_language_is_kept_once_words_are_committed():
    """``language=""`` on a multilingual model: decodes detect the language until the first words are committed,
    then that language is kept (no detection, and no flip, in later passes); the transcript is the one with the
    language given."""
    try:
        base = load_whisper("base")
    except ModelLoadError as e:
        pytest.skip(str(e))
    asked: list = []

    class Recorder:  # the real model; records the language each decode is asked for
        supported_languages = base.supported_languages

        def __getattr__(self, name):
            return getattr(base, name)

        def transcribe(self, *a, **kw):
            asked.append(kw["language"])
            return base.transcribe(*a, **kw)

    audio = load_audio(KIT / "librispeech_2412-153948-0000.flac")
    given, _ = stream(base, audio, ASRConfig(model="base", cadence="fixed"))
    detected, _ = stream(Recorder(), audio, ASRConfig(model="base", cadence="fixed", language=""))
    assert detected.asr.language == "en"
    assert words_text(detected.asr.committed) == words_text(given.asr.committed)
    first = asked.index("en")
    assert first >= 1 and set(asked[:first]) == {None} and set(asked[first:]) == {"en"}, asked


def test_a_loop_cut_by_the_token_cap_leaves_no_trace(tiny):
    """tiny.en loops on the cheetah file ("That gives us a 12% chance." x 6) in one pass a second. Capped at
    ``max_tokens_per_s``, the loop ends mid-repeat; the transcript is still the uncapped one, sentence once."""
    audio = load_audio(KIT / "picovoice_cheetah_test_en_norm.wav")
    texts = [words_text(stream(tiny, audio, ASRConfig(cadence="fixed", min_chunk_s=1.0, max_tokens_per_s=cap))[0]
                        .asr.committed) for cap in (0.0, ASRConfig().max_tokens_per_s)]
    assert texts[1] == texts[0], texts
    assert " ".join(normalize_words(texts[1])).count("that gives us") == 1, texts


@pytest.mark.parametrize("name", NONSPEECH)
def test_non_speech_audio_yields_no_chunk(tiny, name):
    s, chunks = stream(tiny, load_audio(KIT / name))
    assert chunks == [], [c.text for c in chunks]


def test_hotwords_spell_the_names_and_write_nothing_on_music(tiny):
    """A speaker's name the model misspells is written as given in ``hotwords``; the hint does not make Whisper
    write text on music (without the mean-probability check it wrote "Good morning." here)."""
    ami = load_audio(KIT / "ami_ES2011a_headset0_40-46s.wav")
    plain = " ".join(normalize_words(words_text(stream(tiny, ami)[0].asr.committed)))
    assert "claflin" not in plain  # precondition: tiny.en alone misspells it
    hinted = ASRConfig(cadence="fixed", hotwords="Abigail Claflin, Abbie, PyTorch, Kubernetes")
    text = " ".join(normalize_words(words_text(stream(tiny, ami, hinted)[0].asr.committed)))
    assert "abigail claflin" in text and "abbie" in text, text
    music = load_audio(KIT / "nonspeech" / "kevin_macleod_sugar_plum_fairy.ogg")
    s, chunks = stream(tiny, music, hinted, block_s=0.1)
    assert chunks == [], [c.text for c in chunks]


@pytest.mark.parametrize("tail", ["speech fragment", "noise", "silence"])
def test_a_short_tail_after_speech_produces_no_text(tiny, tail):
    """A 0.3 s tail after a finished sentence (a cut-off syllable, a burst of noise, or silence) adds nothing."""
    speech = load_audio(KIT / "picovoice_leopard_test.wav")
    gap = np.zeros(TARGET_SR, np.float32)
    n = int(0.3 * TARGET_SR)
    if tail == "speech fragment":  # a real voiced 0.3 s, cut from the middle of another speaker's word
        frag = load_audio(KIT / "librispeech_2412-153948-0000.flac")[int(1.0 * TARGET_SR) :][:n]
    elif tail == "noise":
        frag = (np.random.default_rng(0).standard_normal(n) * 0.1).astype(np.float32)
    else:
        frag = np.zeros(n, np.float32)
    base, _ = stream(tiny, np.concatenate([speech, gap]))
    s, chunks = stream(tiny, np.concatenate([speech, gap, frag]))
    t_frag = (len(speech) + len(gap)) / TARGET_SR
    assert [w for w in s.asr.committed if w.end > t_frag - 0.1] == []
    assert words_text(s.asr.committed) == words_text(base.asr.committed)


def test_a_lone_fragment_is_dropped_undecoded(tiny):
    frag = load_audio(KIT / "librispeech_2412-153948-0000.flac")[TARGET_SR : TARGET_SR + int(0.25 * TARGET_SR)]
    audio = np.concatenate([np.zeros(TARGET_SR, np.float32), frag, np.zeros(TARGET_SR, np.float32)])
    s, chunks = stream(tiny, audio)
    assert chunks == [] and s.asr.stats.passes == 0 and s.asr.stats.dropped_fragments == 1


def test_words_with_right_context_commit_in_one_pass(tiny):
    """Run-on speech (a sonnet read without pauses), a pass every 2 s of speech: a word that already has
    ``stable_s`` of audio after it is committed by the pass that first decodes it, not by the next one; the
    transcript stays the same."""
    audio = load_audio(KIT / "librivox_sonnet002.mp3")[: 25 * TARGET_SR]
    out = []
    for stable_s in (0.0, ASRConfig().stable_s):
        s, _ = stream(tiny, audio, ASRConfig(cadence="fixed", min_chunk_s=2.0, stable_s=stable_s))
        out.append((float(np.mean(s.stats.commit_latencies)), words_text(s.asr.committed)))
    (agreement_only, text_agreement), (stable, text_stable) = out
    assert stable < agreement_only - 0.2, out  # measured 2.68 -> 2.38 s (media time)
    assert wer(text_agreement, text_stable) < 0.05, out


def test_file_blocks_and_live_pushes_agree(tiny, runs):
    """The file path (decoded blocks) and a live push of the same samples give the same transcript."""
    name = "librivox_sense_sensibility_0870.wav"
    s = AudioStream(tiny, FIXED)
    for block in iter_audio_blocks(KIT / name, 0.5, TARGET_SR):
        list(s.push(block, TARGET_SR))
    list(s.finish())
    assert words_text(s.asr.committed) == runs[name]["text"]
