"""Audio decoding for the streaming ASR: any file PyAV can open becomes 16 kHz mono float32 blocks.

Files are decoded lazily, one packet at a time, so a 3-hour recording costs no more memory than one block.
Channels are averaged in numpy (libswresample's mono downmix sums stereo at -3 dB, which can exceed [-1, 1]),
then PyAV's resampler (libswresample, the same filter ffmpeg and Whisper's own loader use) changes the rate.
Live numpy input goes through the same :class:`Resampler`, so file and microphone audio look alike to the
model.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np

from adasr_mm.errors import InputError

log = logging.getLogger(__name__)

TARGET_SR = 16000
MAX_CHANNELS = 8
# Until this many packets decode cleanly, as many failures mean the file is not audio (random bytes can pass
# the mp3 probe and yield a frame or two); afterwards, this many failures in a row mean a damaged tail.
_STARTUP_PACKETS = 8
_MAX_BAD_IN_A_ROW = 8
_INT_SCALE = {np.dtype(np.int8): 2.0**7, np.dtype(np.int16): 2.0**15, np.dtype(np.int32): 2.0**31,
              np.dtype(np.int64): 2.0**63}
_LIVE_DTYPES = {np.dtype(t) for t in (np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64)}


@dataclass
class AudioInfo:
    """What :func:`probe_audio` found: the first audio track of a media file."""

    path: str
    duration: float | None  # seconds, as declared by the container; None when it does not say
    sample_rate: int
    channels: int
    codec: str
    container: str


def _reason(exc: BaseException) -> str:
    """A short human reason from an av/OS error (its strerror, without the file name PyAV appends)."""
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return str(text)[:200]


def _open(path: str | Path) -> tuple[Any, Any]:
    """Open ``path`` and return (container, first audio stream), or raise a specific InputError."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"audio file '{path}' does not exist")
    if p.is_dir():
        raise InputError(f"'{path}' is a directory, not an audio or video file")
    if p.stat().st_size == 0:
        raise InputError(f"'{path}' is not a readable audio or video file (the file is empty)")
    try:
        container = av.open(str(p), mode="r", metadata_errors="ignore")
    except (av.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise InputError(f"'{path}' is not a readable audio or video file ({_reason(e)})") from e
    if not container.streams.audio:
        kinds = sorted({s.type for s in container.streams}) or ["no streams"]
        container.close()
        raise InputError(f"'{path}' has no audio track (it contains: {', '.join(kinds)})")
    return container, container.streams.audio[0]


def _declared_duration(container: Any, stream: Any) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


class _FrameReader:
    """Decodes one audio stream packet by packet, turning av errors into skips, warnings or InputError."""

    def __init__(self, container: Any, stream: Any, path: str) -> None:
        self.container, self.stream, self.path = container, stream, path
        self.good = self.bad = 0
        self.samples = 0  # decoded samples per channel, at the stream's own rate
        self.seconds = 0.0
        self.last_error = ""

    def _fail(self, why: str) -> InputError:
        return InputError(f"could not decode any audio from '{self.path}' ({why})")

    def frames(self) -> Iterator[Any]:
        packets = self.container.demux(self.stream)
        bad_in_a_row = 0
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except av.FFmpegError as e:  # the demuxer cannot go on: a truncated or damaged container
                if self.samples == 0:
                    raise self._fail(_reason(e)) from e
                log.warning("'%s': stopped reading after %.2f s of audio: %s",
                            self.path, self.seconds, _reason(e))
                return
            try:
                decoded = packet.decode()
            except av.FFmpegError as e:
                self.bad += 1
                bad_in_a_row += 1
                self.last_error = _reason(e)
                if self.good < _STARTUP_PACKETS and self.bad >= _STARTUP_PACKETS:
                    raise self._fail(f"{self.bad} of the first {self.bad + self.good} packets are invalid: "
                                     f"{self.last_error}") from e
                if bad_in_a_row >= _MAX_BAD_IN_A_ROW and self.samples:
                    log.warning("'%s': stopped after %.2f s: %d undecodable packets in a row (%s)",
                                self.path, self.seconds, bad_in_a_row, self.last_error)
                    return
                continue
            bad_in_a_row = 0
            if packet.size:
                self.good += 1
            for frame in decoded:
                if frame.samples:
                    self.samples += frame.samples
                    self.seconds += frame.samples / frame.sample_rate
                    yield frame
        if self.bad and (self.samples == 0 or (self.good < _STARTUP_PACKETS and self.bad > self.good)):
            raise self._fail(f"{self.bad} of {self.bad + self.good} packets are invalid: {self.last_error}")


def _no_samples(path: str, container: Any, stream: Any) -> InputError:
    declared = _declared_duration(container, stream)
    if declared:  # the header promised audio that is not there: cut off before the first complete packet
        return InputError(f"could not decode any audio from '{path}' (it declares {declared:.2f} s but no "
                          "complete audio packet was found; the file may be truncated)")
    return InputError(f"'{path}' contains no audio samples (its audio track is empty)")


def probe_audio(path: str | Path) -> AudioInfo:
    """Describe the first audio track, decoding a few packets so that broken or empty files fail here."""
    container, stream = _open(path)
    try:
        ctx = stream.codec_context
        reader = _FrameReader(container, stream, str(path))
        frames = reader.frames()
        try:
            for _ in frames:
                if reader.good >= _STARTUP_PACKETS:
                    break
        finally:
            frames.close()
        if reader.samples == 0:
            raise _no_samples(str(path), container, stream)
        return AudioInfo(path=str(path), duration=_declared_duration(container, stream),
                         sample_rate=int(ctx.sample_rate), channels=int(ctx.layout.nb_channels),
                         codec=ctx.codec.canonical_name, container=container.format.name)
    finally:
        container.close()


def _check_rate(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer, float)) or not value > 0 \
            or int(value) != value:
        raise ValueError(f"{name} must be a positive integer number of Hz, got {value!r}")
    return int(value)


def _to_float(a: np.ndarray) -> np.ndarray:
    """Scale any supported sample dtype to float32 in [-1, 1] (uint8 is unsigned, centred at 128)."""
    if a.dtype == np.uint8:
        return (a.astype(np.float32) - 128.0) / 128.0
    if a.dtype in _INT_SCALE:
        return (a / _INT_SCALE[a.dtype]).astype(np.float32)
    if a.dtype in (np.float32, np.float64):
        return a.astype(np.float32, copy=False)
    raise ValueError(f"unsupported sample dtype {a.dtype}; use uint8, int8, int16, int32, float32 or float64")


def _frame_to_mono(frame: Any) -> np.ndarray:
    """A decoded frame (any sample format, packed or planar) as averaged mono float32."""
    a = frame.to_ndarray()
    ch = frame.layout.nb_channels
    x = _to_float(a if frame.format.is_planar else a.reshape(-1, ch).T)
    return x[0] if ch == 1 else x.mean(axis=0, dtype=np.float32)


class Resampler:
    """Stateful mono float32 resampler (libswresample via PyAV) for audio that arrives in pieces.

    Pushing consecutive pieces returns the same samples as one push of their concatenation; the filter's
    last few samples come out of :meth:`flush`, after which the resampler can start a new stream.
    """

    def __init__(self, in_sr: int, out_sr: int = TARGET_SR) -> None:
        self.in_sr = _check_rate("in_sr", in_sr)
        self.out_sr = _check_rate("out_sr", out_sr)
        self._av: av.AudioResampler | None = None

    @staticmethod
    def _collect(frames: list[Any]) -> np.ndarray:
        if not frames:
            return np.zeros(0, np.float32)
        return np.concatenate([f.to_ndarray().reshape(-1) for f in frames])

    def push(self, x: np.ndarray) -> np.ndarray:
        """Resample the next piece of a mono stream; returns what is ready (possibly a few samples fewer)."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 1:
            raise ValueError(f"Resampler.push expects 1-D mono samples, got shape {x.shape}")
        if self.in_sr == self.out_sr:
            return x.copy()
        if x.size == 0:  # an empty frame would be taken as end of stream
            return np.zeros(0, np.float32)
        if self._av is None:
            self._av = av.AudioResampler(format="flt", layout="mono", rate=self.out_sr)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x)[None], format="flt", layout="mono")
        frame.sample_rate = self.in_sr
        return self._collect(self._av.resample(frame))

    def flush(self) -> np.ndarray:
        """End of stream: return the samples still held in the filter and reset."""
        if self._av is None:
            return np.zeros(0, np.float32)
        out = self._collect(self._av.resample(None))
        self._av = None
        return out


def to_mono_float32(samples: Any, sample_rate: int, target_sr: int = TARGET_SR) -> np.ndarray:
    """Live numpy audio (common dtypes, mono or up to 8 channels any layout) as mono float32 at target_sr.

    A 2-D array's smaller dimension is the channel axis ((n, ch) on a tie). Floats must already be in [-1, 1]:
    a peak above 2 almost always means integer samples cast to float, which clipping would turn into noise.
    """
    sample_rate = _check_rate("sample_rate", sample_rate)
    target_sr = _check_rate("target_sr", target_sr)
    a = np.asarray(samples)
    if a.ndim not in (1, 2):
        raise ValueError(f"audio must be 1-D (n,) or 2-D (n, channels) / (channels, n), got shape {a.shape}")
    if a.size == 0:
        return np.zeros(0, np.float32)
    if a.dtype not in _LIVE_DTYPES:  # int64 is usually a Python list of ints, whose scale is unknown
        raise ValueError(f"unsupported sample dtype {a.dtype}; use uint8, int8, int16, int32, float32 or "
                         "float64")
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise ValueError("audio contains NaN or infinite samples")
    x = _to_float(a)
    if x.ndim == 2:
        ch_axis = 1 if x.shape[1] <= x.shape[0] else 0
        if x.shape[ch_axis] > MAX_CHANNELS:
            raise ValueError(f"audio of shape {a.shape} has {x.shape[ch_axis]} channels; at most "
                             f"{MAX_CHANNELS} are supported (the smaller dimension is taken as channels)")
        x = x.mean(axis=ch_axis, dtype=np.float32)
    if a.dtype.kind == "f":
        peak = float(np.abs(x).max())
        if peak > 2.0:
            raise ValueError(f"float audio must be in [-1, 1], got a peak of {peak:.4g}; integer samples "
                             "cast to float must be divided by their full scale (e.g. 32768 for int16)")
    if sample_rate != target_sr:
        r = Resampler(sample_rate, target_sr)
        x = np.concatenate([r.push(x), r.flush()])
    return np.clip(x, -1.0, 1.0)  # a new array: the caller's buffer is never modified


def _check_block(block_s: float, sr: int) -> int:
    try:
        n = round(float(block_s) * sr) if math.isfinite(float(block_s)) else 0
    except (TypeError, ValueError):
        n = 0
    if n < 1:
        raise ValueError(f"block_s must be a positive duration of at least one sample, got {block_s!r}")
    return n


def iter_audio_blocks(path: str | Path, block_s: float = 1.0, sr: int = TARGET_SR) -> Iterator[np.ndarray]:
    """Yield consecutive mono float32 blocks of round(block_s * sr) samples (the last may be shorter).

    The file is opened (and missing/unreadable/no-audio errors raised) at call time; decoding is lazy. A
    truncated or damaged file yields what decodes and stops with a logged warning; InputError if nothing does.
    """
    sr = _check_rate("sr", sr)
    n = _check_block(block_s, sr)
    container, stream = _open(path)
    return _blocks(container, stream, str(path), n, sr)


def _blocks(container: Any, stream: Any, path: str, n: int, sr: int) -> Generator[np.ndarray, None, None]:
    reader = _FrameReader(container, stream, path)
    buf, fill, out_total = np.empty(n, np.float32), 0, 0
    resampler: Resampler | None = None

    def feed(x: np.ndarray) -> Iterator[np.ndarray]:
        nonlocal buf, fill, out_total
        np.clip(x, -1.0, 1.0, out=x)
        pos = 0
        while pos < x.size:
            take = min(n - fill, x.size - pos)
            buf[fill:fill + take] = x[pos:pos + take]
            fill, pos = fill + take, pos + take
            if fill == n:
                out_total += n
                yield buf
                buf, fill = np.empty(n, np.float32), 0

    try:
        for frame in reader.frames():
            if resampler is None or resampler.in_sr != frame.sample_rate:  # rate changes mid-stream are legal
                if resampler is not None:
                    yield from feed(resampler.flush())
                resampler = Resampler(frame.sample_rate, sr)
            yield from feed(resampler.push(_frame_to_mono(frame)))
        if resampler is None:
            raise _no_samples(path, container, stream)
        yield from feed(resampler.flush())
        if fill:
            out_total += fill
            yield buf[:fill].copy()
        if reader.bad:
            log.warning("'%s': skipped %d undecodable audio packets (%s)",
                        path, reader.bad, reader.last_error)
        declared = _declared_duration(container, stream)
        got = out_total / sr
        if declared is not None and got < declared - 0.5 - 0.001 * declared:
            log.warning("'%s': decoded %.2f s of audio but the file declares %.2f s; it may be truncated",
                        path, got, declared)
    finally:
        container.close()


def load_audio(path: str | Path, sr: int = TARGET_SR, max_seconds: float | None = None) -> np.ndarray:
    """The whole file (or its first ``max_seconds``) as one mono float32 array at ``sr``."""
    sr = _check_rate("sr", sr)
    limit = None
    if max_seconds is not None:
        if not (isinstance(max_seconds, (int, float)) and max_seconds > 0 and math.isfinite(max_seconds)):
            raise ValueError(f"max_seconds must be a positive number of seconds or None, got {max_seconds!r}")
        limit = round(max_seconds * sr)
    block_s = 10.0 if limit is None else min(10.0, max(limit, 1) / sr)
    blocks: list[np.ndarray] = []
    got = 0
    container, stream = _open(path)
    gen = _blocks(container, stream, str(path), _check_block(block_s, sr), sr)
    try:
        for b in gen:
            if limit is not None and got + b.size >= limit:
                blocks.append(b[: limit - got])
                break
            blocks.append(b)
            got += b.size
    finally:
        gen.close()  # closes the container even when we stop early
    return np.concatenate(blocks) if blocks else np.zeros(0, np.float32)


def _g711_table(law: str) -> np.ndarray:
    """The 256 G.711 code words decoded to PCM16 (ITU-T G.711: μ-law for ``"mu"``, A-law for ``"a"``)."""
    code = np.arange(256)
    if law == "mu":
        u = ~code & 0xFF
        mag = ((((u & 0x0F) << 3) + 0x84) << ((u >> 4) & 7)) - 0x84
        return np.where(u & 0x80, -mag, mag).astype(np.int16)
    a = code ^ 0x55
    exp, man = (a >> 4) & 7, a & 0x0F
    mag = np.where(exp == 0, (man << 4) + 8, ((man << 4) + 0x108) << np.maximum(exp - 1, 0))
    return np.where(a & 0x80, mag, -mag).astype(np.int16)


G711_TABLES = {"mu": _g711_table("mu"), "a": _g711_table("a")}


def decode_g711(data: bytes, law: str) -> np.ndarray:
    """G.711 bytes (telephony's 8 kHz μ-law or A-law, one byte per sample) as PCM16 samples."""
    if law not in G711_TABLES:
        raise ValueError(f"unknown G.711 law {law!r}; use 'mu' or 'a'")
    return G711_TABLES[law][np.frombuffer(data, dtype=np.uint8)]


__all__ = ["TARGET_SR", "AudioInfo", "Resampler", "decode_g711", "iter_audio_blocks", "load_audio", "probe_audio",
           "to_mono_float32"]
