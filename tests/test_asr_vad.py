"""The streaming VAD: block-size independent, never writes to the audio, and pinned to faster-whisper's Silero
session (we drive its ONNX session directly: this fails loudly if faster-whisper changes it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from adasr_mm.adapters.asr import ASRConfig, StreamingASR, StreamingVAD, _vad_model, whisper_for
from adasr_mm.adapters.audio_io import load_audio

ROOT = Path(__file__).resolve().parents[1]
KIT = ROOT.parent / "shared" / "media" / "dev"
SR = 16000


def _speech() -> np.ndarray:
    a = load_audio(ROOT / "samples" / "audio" / "apples.opus", sr=SR)[: 8 * SR]
    return a[: len(a) // 512 * 512]


def _fed(vad: StreamingVAD, a: np.ndarray, block: int) -> np.ndarray:
    return np.concatenate([vad(a[i: i + block]) for i in range(0, len(a), block)])


def test_without_restarts_it_reproduces_faster_whispers_one_call_for_any_block_size():
    a = _speech()
    # a copy: that call zeroes its input's last 64 samples (and so computes its own last window on them)
    one_call = np.asarray(_vad_model()(a.copy())).reshape(-1)
    assert one_call.max() > 0.9 and one_call.min() < 0.1  # speech and pauses: the comparison has something to see
    for block in (512, 1536, 3584, len(a)):
        np.testing.assert_allclose(_fed(StreamingVAD(reset_windows=0), a, block)[:-1], one_call[:-1], atol=1e-6)


def test_with_restarts_the_probabilities_do_not_depend_on_the_block_size():
    a = _speech()
    ref = _fed(StreamingVAD(reset_windows=16), a, 512)
    for block in (1536, 3584, 8192, len(a)):
        np.testing.assert_allclose(_fed(StreamingVAD(reset_windows=16), a, block), ref, atol=1e-6)
    # and the restarts are real: per 16 windows, as a fresh call on each 16-window group gives
    groups = np.concatenate([np.asarray(_vad_model()(a[i: i + 16 * 512].copy())).reshape(-1)
                             for i in range(0, len(a), 16 * 512)])
    inner = np.arange(len(ref)) % 16 != 15  # faster-whisper computes each call's last window on zeroed samples
    inner[-1] = False
    np.testing.assert_allclose(ref[inner], groups[inner], atol=1e-6)


def test_quiet_speech_is_raised_for_the_vad_and_the_probabilities_still_do_not_depend_on_the_block_size():
    a = _speech()
    quiet = a * np.float32(10 ** (-40 / 20))  # a quiet microphone: peak ~0.008
    def speech(p: np.ndarray) -> float:
        return float((p > 0.5).mean())
    loud = speech(_fed(StreamingVAD(16), a, 1536))
    gated = speech(_fed(StreamingVAD(16), quiet, 1536))
    assert gated < loud - 0.15, (gated, loud)  # with the LSTM restarts, quiet speech loses windows
    raised = _fed(StreamingVAD(16, max_gain_db=30), quiet, 512)
    assert speech(raised) >= loud - 0.05, (speech(raised), loud)
    for block in (1536, 3584, len(quiet)):
        np.testing.assert_allclose(_fed(StreamingVAD(16, max_gain_db=30), quiet, block), raised, atol=1e-6)


def test_the_gain_never_lowers_a_normal_level():
    a = _speech()  # peaks ~0.75, over StreamingVAD.LEVEL from its first word on
    first = int(np.argmax(np.abs(a).reshape(-1, 512).max(axis=1) >= StreamingVAD.LEVEL))
    first = (first // 16 + 1) * 16  # the quiet start before it was raised: compare from the next LSTM restart
    plain, raised = _fed(StreamingVAD(16), a, 1536), _fed(StreamingVAD(16, max_gain_db=30), a, 1536)
    np.testing.assert_allclose(raised[first:], plain[first:], atol=1e-6)
    louder = _fed(StreamingVAD(16, max_gain_db=30), a * np.float32(1.3), 1536)  # over LEVEL: not turned down
    assert np.abs(louder[first:] - raised[first:]).max() > 1e-4


def test_the_audio_handed_to_whisper_is_not_altered_by_the_vad():
    a = load_audio(ROOT / "samples" / "audio" / "apples.opus", sr=SR)[: 6 * SR]
    asr = StreamingASR(whisper_for(ASRConfig(cpu_threads=1)), ASRConfig(cpu_threads=1, cadence="fixed"))
    asr._pass = lambda flush, final=False: []  # only the buffer matters here: no decoding
    for i in range(0, len(a), 1600):  # 0.1 s blocks, as network clients send
        asr.push(a[i: i + 1600])
    assert len(asr._buf) > 2 * SR
    ends = [o for o, _ in asr._anchors[1:]] + [len(asr._buf)]
    for (off, t), end in zip(asr._anchors, ends, strict=True):  # every buffered run is the source audio, sample for sample
        s = int(round(t * SR))
        np.testing.assert_array_equal(asr._buf[off:end], a[s: s + end - off])


def _streamed(model, cfg: ASRConfig, a: np.ndarray, block: int) -> list:  # noqa: ANN001
    """The words committed for ``a`` pushed in blocks of ``block`` samples."""
    asr = StreamingASR(model, cfg)
    for i in range(0, len(a), block):
        asr.push(a[i: i + block])
    asr.finish()
    return asr.committed


@pytest.mark.skipif(not (KIT / "speech_recognition_english_123.wav").is_file(), reason="no dev kit")
def test_short_words_survive_small_blocks_on_a_real_recording():
    # With the per-call VAD, 0.1 s blocks dropped "one" and "two" as fragments; 0.5 s blocks kept them.
    a = load_audio(KIT / "speech_recognition_english_123.wav", sr=SR)
    cfg = ASRConfig(cpu_threads=1, cadence="fixed")
    model = whisper_for(cfg)
    texts = [" ".join(w.norm for w in _streamed(model, cfg, a, block)) for block in (1600, 8000)]
    assert texts[0] == texts[1]
    assert len(texts[0].split()) == 3, texts


@pytest.mark.skipif(not (KIT / "librivox_sense_sensibility_0870.wav").is_file(), reason="no dev kit")
def test_a_quiet_real_recording_streams_the_same_words_as_at_full_level():
    # At -30 dB, with the LSTM restarts and no gain, the VAD cut this reading into fragments: 6 of 22 words wrong
    # (offline Whisper: 1 at either level).
    from adasr_mm.adapters.asr import word_edits, words_text

    a = load_audio(KIT / "librivox_sense_sensibility_0870.wav", sr=SR)
    cfg = ASRConfig(cpu_threads=1, cadence="fixed")
    model = whisper_for(cfg)
    texts = [words_text(_streamed(model, cfg, a * np.float32(gain), 1600)) for gain in (1.0, 10 ** (-30 / 20))]
    edits, n = word_edits(texts[0], texts[1])
    assert n >= 20 and edits <= 1, texts
