"""`adasr-mm run` on audio: the spoken sample end to end, and every kind of bad audio input."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from test_cli import assert_clean_error, cli

AUDIO = Path(__file__).resolve().parents[1] / "samples" / "audio"


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    import av

    d = tmp_path_factory.mktemp("audio")
    data = (AUDIO / "pauses.flac").read_bytes()
    (d / "truncated.flac").write_bytes(data[:40])  # header cut short
    (d / "garbage.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt " + bytes(200))
    sf.write(d / "empty.wav", np.zeros(0, np.int16), 16000)  # a valid header, zero samples
    (d / "notes.mp3").write_text("these are my notes, not an mp3\n" * 50)
    sf.write(d / "silence.wav", np.zeros(16000 * 20, np.int16), 16000)
    # video without an audio track
    with av.open(str(d / "mute.mp4"), "w") as c:
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for i in range(10):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 20, np.uint8), format="rgb24")
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    # the pause sample as 8-bit unsigned, stereo, 48 kHz
    from adasr_mm.adapters.audio_io import load_audio

    x = load_audio(AUDIO / "pauses.flac")
    up = np.interp(np.arange(len(x) * 3) / 3, np.arange(len(x)), x)
    sf.write(d / "u8_stereo_48k.wav", np.stack([up, up], 1), 48000, subtype="PCM_U8")
    return d


@pytest.mark.parametrize(
    "name, message",
    [
        ("truncated.flac", "is not a readable audio or video file"),
        ("garbage.wav", "is not a readable audio or video file"),
        ("empty.wav", "contains no audio samples"),
        ("notes.mp3", "is not a readable audio or video file"),
        ("mute.mp4", "has no audio track"),
    ],
)
def test_bad_audio_is_one_clear_line(media, name, message):
    r = cli("run", media / name, "-q", "How many?", "--modality", "audio")
    assert_clean_error(r, message)


def test_silence_only_audio_says_there_was_nothing_to_read(media):
    r = cli("run", media / "silence.wav", "-q", "How many?")
    assert_clean_error(r, "produced no chunks")


def test_a_file_without_a_known_extension_is_opened_by_its_content(media, tmp_path):
    """A download saved without an extension: PyAV's probe picks the adapter; non-media still gets the list of
    supported types, a directory says so."""
    from adasr_mm.adapters import open_input
    from adasr_mm.adapters.audio import AudioSource
    from adasr_mm.config import load_config

    blob = tmp_path / "recording"
    blob.write_bytes((AUDIO / "pauses.flac").read_bytes())
    assert isinstance(open_input(str(blob), "auto", load_config(None)), AudioSource)
    assert_clean_error(cli("run", media / "notes.mp3", "-q", "Q?"), "is not a readable audio or video file")
    (tmp_path / "notes").write_text("Tom has 5 apples.\n")
    assert_clean_error(cli("run", tmp_path / "notes", "-q", "Q?"), "cannot tell the modality of")
    assert_clean_error(cli("run", tmp_path, "-q", "Q?"), "is a directory, not a media file")


def test_unknown_asr_model_is_a_clear_error():
    r = cli("run", AUDIO / "pauses.flac", "-q", "Q?", "--asr", "/no/such/whisper")
    assert_clean_error(r, "ASR model dir '/no/such/whisper' does not exist")
    r = cli("run", AUDIO / "pauses.flac", "-q", "Q?", "--asr", "no-such-whisper-size")  # offline: not fetched
    assert_clean_error(r, "cannot load ASR model 'no-such-whisper-size'")
    assert "bundled: tiny.en, base" in r.stderr


def test_a_language_the_model_cannot_decode_is_a_clear_error():
    """tiny.en decodes any speech as English whatever ``asr.language`` says, and an unknown code made faster-whisper
    raise mid-stream: both are refused before the first pass, with the fix."""
    r = cli("run", AUDIO / "pauses.flac", "-q", "Q?", "asr.language=de")
    assert_clean_error(r, "asr.language='de': this Whisper model is English-only; use a multilingual one")
    r = cli("run", AUDIO / "pauses.flac", "-q", "Q?", "--asr", "base", "asr.language=xx")
    assert_clean_error(r, "asr.language='xx' is not a Whisper language code")


@pytest.mark.slow
def test_spoken_sample_end_to_end_with_asr_figures(media, tmp_path):
    out = tmp_path / "ev.jsonl"
    r = cli("run", media / "u8_stereo_48k.wav", "-q", "How many marbles does Maria have now?", "-o", out,
            "--max-thought-tokens", "8", "--max-deep-tokens", "16", "--max-answer-tokens", "8",
            "asr.cadence=fixed")  # passes per second of audio: the transcript must not follow the machine's load
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    chunks = [x["chunk"] for x in lines if x["type"] == "chunk"]
    assert len(chunks) >= 3 and all(c["modality"] == "audio" for c in chunks)
    assert "marbles" in " ".join(c["text"] for c in chunks).lower()
    s = lines[-1]
    assert s["type"] == "summary" and s["prefill_tokens"] == s["input_tokens"]
    for key in ("asr_rtf", "commit_latency_avg_s", "commit_latency_max_s"):
        assert s[key] > 0, key
    assert s["stream_end_s"] == pytest.approx(13.0, abs=0.1)
    from adasr_mm.pipeline import plan_threads

    assert s["asr_threads"] == plan_threads(0)[0]  # Whisper got its share of the cores, not all of them
    assert "asr: rtf" in r.stdout and "[audio" in r.stdout
