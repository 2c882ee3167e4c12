"""Audio decoding: every container/codec the ASR may meet, broken inputs, live numpy input and memory bounds.

All media is generated at test time with PyAV / soundfile (no fixtures, no ffmpeg binary, no model).
"""

from __future__ import annotations

import logging
import tracemalloc
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

from adasr_mm.adapters.audio_io import (
    TARGET_SR,
    AudioInfo,
    Resampler,
    iter_audio_blocks,
    load_audio,
    probe_audio,
    to_mono_float32,
)
from adasr_mm.errors import InputError

TONE_HZ = 1234.0
SECONDS = 3.0


def _has_encoder(*names: str) -> str | None:
    for name in names:
        try:
            av.codec.Codec(name, "w")
            return name
        except Exception:
            continue
    return None


def _tone(sr: int, seconds: float = SECONDS, hz: float = TONE_HZ, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * hz * np.arange(round(sr * seconds)) / sr)).astype(np.float32)


def _gray(level: int) -> av.VideoFrame:
    return av.VideoFrame.from_ndarray(np.full((48, 64, 3), level, np.uint8), format="rgb24")


def _encode(path: Path, codec: str, x: np.ndarray, sr: int, out_rate: int | None = None, video: bool = False,
            container_opts: dict[str, str] | None = None) -> Path:
    """Write float32 audio ``x`` of shape (ch, n) with PyAV, optionally next to a small h264 video track."""
    x = np.atleast_2d(x).astype(np.float32)
    layout = "mono" if x.shape[0] == 1 else "stereo"
    rate = out_rate or sr
    with av.open(str(path), "w", options=container_opts or {}) as c:
        if video:
            v = c.add_stream("libx264", rate=10)
            v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        s = c.add_stream(codec, rate=rate)
        s.layout = layout
        s.format = "s16" if codec == "flac" else s.codec_context.codec.audio_formats[0].name
        s.codec_context.open()
        r = av.AudioResampler(format=s.format.name, layout=layout, rate=rate,
                              frame_size=s.codec_context.frame_size or 1024)
        vi = 0
        for pos in range(0, x.shape[1], 4096):
            f = av.AudioFrame.from_ndarray(np.ascontiguousarray(x[:, pos:pos + 4096].T.reshape(1, -1)),
                                           format="flt", layout=layout)
            f.sample_rate, f.pts = sr, pos
            for of in r.resample(f):
                c.mux(s.encode(of))
            while video and vi / 10 <= (pos + 4096) / sr:
                c.mux(v.encode(_gray(vi % 250)))
                vi += 1
        for of in r.resample(None):
            c.mux(s.encode(of))
        c.mux(s.encode(None))
        if video:
            c.mux(v.encode(None))
    return path


def _video_only(path: Path) -> Path:
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=10)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        for i in range(10):
            c.mux(v.encode(_gray(i * 20)))
        c.mux(v.encode(None))
    return path


def _peak_hz(y: np.ndarray, sr: int = TARGET_SR) -> float:
    spec = np.abs(np.fft.rfft(y * np.hanning(y.size)))
    return float(np.argmax(spec) * sr / y.size)


def _truncate(src: Path, dst: Path, fraction: float = 0.6) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


MP3 = _has_encoder("libmp3lame", "mp3")
OPUS = _has_encoder("libopus", "opus")

# name -> (codec, input rate, encoded rate, wrapped with an h264 video track, lossless, container name)
FORMATS = {
    "tone.flac": ("flac", 44100, None, False, True, "flac"),
    "tone.ogg": (OPUS, 48000, 48000, False, False, "ogg"),
    "tone.mp3": (MP3, 44100, None, False, False, "mp3"),
    "tone.m4a": ("aac", 44100, None, False, False, "mov,mp4,m4a,3gp,3g2,mj2"),
    "tone.mp4": ("aac", 48000, None, True, False, "mov,mp4,m4a,3gp,3g2,mj2"),
    "tone.webm": (OPUS, 48000, 48000, False, False, "matroska,webm"),
    "tone.mkv": ("flac", 48000, None, False, True, "matroska,webm"),
}


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("media")
    out: dict[str, Path] = {}
    for name, (codec, sr, rate, video, _, _) in FORMATS.items():
        if codec is not None:
            out[name] = _encode(d / name, codec, _tone(sr)[None], sr, rate, video=video)
    for sr in (44100, 48000):
        sf.write(d / f"tone{sr}.wav", _tone(sr), sr, subtype="PCM_16")
        out[f"tone{sr}.wav"] = d / f"tone{sr}.wav"
    left, right = _tone(48000, amp=0.6), _tone(48000, amp=0.2)
    sf.write(d / "stereo.wav", np.stack([left, right], 1), 48000, subtype="PCM_16")
    u8 = np.concatenate([np.zeros(8000), _tone(8000, 1.0, 440.0, 0.5)])  # 1 s of silence, then a tone
    sf.write(d / "u8.wav", u8, 8000, subtype="PCM_U8")
    sf.write(d / "empty.wav", np.zeros(0, np.int16), 16000, subtype="PCM_16")
    (d / "text.wav").write_text("this is not audio\n" * 50)
    (d / "random.mp3").write_bytes(np.random.default_rng(1).bytes(100_000))
    (d / "zero.ogg").write_bytes(b"")
    for name in ("stereo.wav", "u8.wav", "empty.wav", "text.wav", "random.mp3", "zero.ogg"):
        out[name] = d / name
    out["video_only.mp4"] = _video_only(d / "video_only.mp4")
    out["faststart.mp4"] = _encode(d / "faststart.mp4", "aac", _tone(44100)[None], 44100, video=True,
                                   container_opts={"movflags": "faststart"})
    return out


@pytest.mark.parametrize("name", [*FORMATS, "tone44100.wav", "tone48000.wav"])
def test_decodes_every_format_with_right_length_and_pitch(media, name):
    if name not in media:
        pytest.skip(f"no encoder for {name} in this PyAV build")
    info = probe_audio(media[name])
    assert isinstance(info, AudioInfo) and info.channels == 1 and info.path == str(media[name])
    assert info.duration == pytest.approx(SECONDS, abs=0.12)
    if name in FORMATS:
        codec, sr, rate, _, lossless, container = FORMATS[name]
        assert info.sample_rate == (rate or sr) and info.container == container
    blocks = list(iter_audio_blocks(media[name]))
    assert all(b.dtype == np.float32 and b.ndim == 1 for b in blocks)
    assert all(b.size == TARGET_SR for b in blocks[:-1]) and 0 < blocks[-1].size <= TARGET_SR
    y = np.concatenate(blocks)
    tol = 2 if name.endswith(".wav") or FORMATS.get(name, (0,) * 5)[4] else round(0.1 * TARGET_SR)
    assert abs(y.size - SECONDS * TARGET_SR) <= tol
    assert np.abs(y).max() <= 1.0
    assert _peak_hz(y[2000:-2000]) == pytest.approx(TONE_HZ, abs=2.0)
    assert np.sqrt(np.mean(y[4000:-4000] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.05)


def test_block_size_and_load_audio(media):
    path = media["tone44100.wav"]
    sizes = [b.size for b in iter_audio_blocks(path, block_s=0.25, sr=8000)]
    assert sizes == [2000] * 12
    full = load_audio(path)
    assert full.size == 48000 and full.dtype == np.float32
    head = load_audio(path, max_seconds=1.3)
    assert head.size == round(1.3 * TARGET_SR)
    np.testing.assert_array_equal(head, full[: head.size])
    with pytest.raises(ValueError, match="block_s"):
        iter_audio_blocks(path, block_s=0)
    with pytest.raises(ValueError, match="max_seconds"):
        load_audio(path, max_seconds=-1)


def test_stereo_is_averaged(media):
    y = load_audio(media["stereo.wav"])
    assert y.size == 48000
    # left 0.6, right 0.2 -> mean 0.4 (libswresample's own mono downmix would give 0.57)
    assert np.sqrt(np.mean(y[1000:-1000] ** 2)) == pytest.approx(0.4 / np.sqrt(2), rel=0.01)
    assert probe_audio(media["stereo.wav"]).channels == 2


def test_unsigned_8bit_is_centred(media):
    y = load_audio(media["u8.wav"])
    assert y.size == 32000
    assert np.abs(y[:15000]).max() < 0.01  # 8-bit silence is stored as 128
    assert np.abs(y[17000:].mean()) < 0.01
    assert np.abs(y[17000:]).max() == pytest.approx(0.5, abs=0.03)


@pytest.mark.parametrize("name", ["tone.flac", "tone.ogg", "tone.mp3", "tone.webm", "faststart.mp4"])
def test_truncated_file_yields_what_decodes(media, name, tmp_path, caplog):
    if name not in media:
        pytest.skip(f"no encoder for {name} in this PyAV build")
    cut = _truncate(media[name], tmp_path / f"cut_{name}")
    with caplog.at_level(logging.WARNING, logger="adasr_mm.adapters.audio_io"):
        y = np.concatenate(list(iter_audio_blocks(cut)))
    assert 0.3 * SECONDS * TARGET_SR < y.size < 0.95 * SECONDS * TARGET_SR
    assert _peak_hz(y[2000:-2000]) == pytest.approx(TONE_HZ, abs=3.0)
    if name != "tone.ogg":  # Ogg recomputes its duration from the last complete page: nothing to compare
        assert any("truncated" in r.getMessage() for r in caplog.records)


def test_truncated_mp4_without_index_and_header_only_flac(media, tmp_path):
    cut = _truncate(media["tone.mp4"], tmp_path / "cut.mp4")  # the moov index is at the end: nothing survives
    with pytest.raises(InputError, match="cut.mp4.*is not a readable audio or video file"):
        iter_audio_blocks(cut)
    first = next(av.open(str(media["tone.flac"])).demux(audio=0)).pos
    head = tmp_path / "head.flac"
    head.write_bytes(media["tone.flac"].read_bytes()[: first + 100])
    with pytest.raises(InputError, match="could not decode any audio from .*head.flac"):
        list(iter_audio_blocks(head))
    with pytest.raises(InputError, match="could not decode any audio"):
        probe_audio(head)


@pytest.mark.parametrize("name, message", [
    ("text.wav", "is not a readable audio or video file"),
    ("random.mp3", "(is not a readable audio or video file|could not decode any audio)"),
    ("zero.ogg", "is not a readable audio or video file .*empty"),
    ("empty.wav", "contains no audio samples"),
    ("video_only.mp4", "has no audio track"),
])
def test_bad_files_raise_input_error(media, name, message):
    for call in (probe_audio, lambda p: list(iter_audio_blocks(p)), load_audio):
        with pytest.raises(InputError, match=message) as e:
            call(media[name])
        assert name in str(e.value)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(InputError, match="nope.wav.*does not exist"):
        iter_audio_blocks(tmp_path / "nope.wav")  # raised at call time, before iteration
    with pytest.raises(InputError, match="does not exist"):
        probe_audio(tmp_path / "nope.wav")
    with pytest.raises(InputError, match="is a directory"):
        load_audio(tmp_path)


def test_long_file_memory_stays_bounded(tmp_path):
    path = tmp_path / "long.flac"
    rng = np.random.default_rng(0)
    minutes = 20
    with sf.SoundFile(path, "w", samplerate=TARGET_SR, channels=1, subtype="PCM_16") as f:
        for _ in range(minutes * 6):
            f.write(rng.integers(-8, 8, TARGET_SR * 10).astype(np.int16))
    whole = minutes * 60 * TARGET_SR * 4  # bytes of the decoded float32 signal
    tracemalloc.start()
    try:
        n = sum(b.size for b in iter_audio_blocks(path, block_s=1.0))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert n == minutes * 60 * TARGET_SR
    assert peak < whole / 50, f"peak {peak / 1e6:.1f} MB for a {whole / 1e6:.0f} MB signal"


# ----------------------------------------------------------------------------------------- live numpy input


@pytest.mark.parametrize("sr", [44100, 48000])
def test_to_mono_float32_resamples_without_aliasing(sr):
    y = to_mono_float32(_tone(sr, 2.0), sr)
    assert y.dtype == np.float32 and y.size == 2 * TARGET_SR
    assert _peak_hz(y) == pytest.approx(TONE_HZ, abs=1.0)
    # 12 kHz cannot exist at 16 kHz: linear interpolation would fold it to 4 kHz at ~1/3 amplitude
    folded = to_mono_float32(_tone(sr, 2.0, hz=12000.0), sr)
    assert np.sqrt(np.mean(folded[500:-500] ** 2)) < 0.005


@pytest.mark.parametrize("dtype, full", [(np.int8, 127), (np.int16, 32767), (np.int32, 2**31 - 1),
                                         (np.float32, 1.0), (np.float64, 1.0)])
def test_to_mono_float32_scales_dtypes_and_channels(dtype, full):
    mono = np.array([full, -full, 0, full // 2 if isinstance(full, int) else 0.5] * 4, dtype=dtype)
    y = to_mono_float32(mono, 16000)
    np.testing.assert_allclose(y[:4], [1, -1, 0, 0.5], atol=0.01)
    stereo = np.stack([mono, np.zeros_like(mono)], 1)  # (n, 2): the channels are averaged
    np.testing.assert_allclose(to_mono_float32(stereo, 16000), y / 2, atol=1e-6)
    np.testing.assert_allclose(to_mono_float32(stereo.T, 16000), y / 2, atol=1e-6)  # (2, n) as well


def test_to_mono_float32_uint8_and_edge_cases():
    np.testing.assert_allclose(to_mono_float32(np.array([128, 255, 0, 128], np.uint8), 16000),
                               [0, 127 / 128, -1, 0], atol=1e-6)
    empty = to_mono_float32(np.zeros((0, 2), np.int16), 48000)
    assert empty.dtype == np.float32 and empty.size == 0
    x = np.full(100, 0.5, np.float32)
    y = to_mono_float32(x, 16000)
    y[:] = 0
    assert x[0] == 0.5  # the caller's buffer is never modified
    for bad, match in [(np.array([0.1, np.nan], np.float32), "NaN"), (np.array([np.inf, 0.0]), "NaN or inf"),
                       (np.zeros((2, 3, 4), np.int16), "1-D"), (np.zeros((100, 9), np.int16), "channels"),
                       (np.array([1000.0, -2000.0], np.float32), r"\[-1, 1\]"), (np.arange(10), "dtype")]:
        with pytest.raises(ValueError, match=match):
            to_mono_float32(bad, 16000)
    for rate in (0, -16000, 16000.5):
        with pytest.raises(ValueError, match="sample_rate"):
            to_mono_float32(x, rate)


@pytest.mark.parametrize("in_sr", [44100, 48000, 8000])
def test_resampler_pieces_equal_one_shot(in_sr):
    rng = np.random.default_rng(in_sr)
    x = (0.3 * rng.standard_normal(in_sr * 2)).astype(np.float32)
    cuts = np.sort(rng.integers(0, x.size, 99))  # 100 pieces, some of them empty
    r = Resampler(in_sr, TARGET_SR)
    pieces = [r.push(p) for p in np.split(x, cuts)] + [r.flush()]
    streamed = np.concatenate(pieces)
    one_shot = to_mono_float32(x, in_sr)
    assert streamed.size == one_shot.size == 2 * TARGET_SR
    np.testing.assert_allclose(np.clip(streamed, -1, 1), one_shot, atol=1e-5)
    again = np.concatenate([r.push(x), r.flush()])  # after flush the resampler starts a fresh stream
    np.testing.assert_allclose(again, streamed, atol=1e-6)
    with pytest.raises(ValueError, match="1-D"):
        r.push(np.zeros((2, 10), np.float32))


@pytest.mark.parametrize("law, subtype", [("mu", "ULAW"), ("a", "ALAW")])
def test_g711_decodes_every_code_word_as_libsndfile_does(law, subtype):
    """The Realtime server's telephone formats (audio/pcmu, audio/pcma): all 256 code words, against an
    independent decoder."""
    import io

    from adasr_mm.adapters.audio_io import decode_g711

    codes = bytes(range(256))
    ref, _ = sf.read(io.BytesIO(codes), dtype="int16", format="RAW", subtype=subtype, samplerate=8000, channels=1)
    np.testing.assert_array_equal(decode_g711(codes, law), ref)
