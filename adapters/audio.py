"""Audio adapter: live pushes or files -> streaming ASR -> sentence-level :class:`TimedChunk`s.

One object, :class:`AudioStream`, serves a microphone (``push(samples, sample_rate)`` from any source at any rate)
and a file (:class:`AudioSource` replays the file as pushes at media time), so both take the same code path.
Committed words become a chunk at a sentence end (also one Whisper left unpunctuated, see :func:`opens_sentence`),
an utterance end (pause), or after ``max_chunk_s``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from adasr_mm.chunks import TimedChunk

from .asr import SR, ASRConfig, StreamingASR, Word, asr_threads, whisper_for, words_text


@dataclass
class AudioAdapterConfig:
    """How committed words are grouped into chunks and how files are replayed."""

    max_chunk_s: float = field(default=8.0, metadata={"help": "close a chunk after this much speech"})
    min_chunk_words: int = field(default=3, metadata={"help": "a sentence shorter than this waits for more"})
    block_s: float = field(
        default=0.1,
        metadata={"help": "file replay: audio pushed per step (s), as a microphone or network client delivers it; "
                          "larger blocks delay every commit by up to a block (0.5: make-demo delay 1.6-2.1 s vs "
                          "1.1-1.2 s)"},
    )
    max_duration_s: float = field(default=0.0, metadata={"help": "stop reading files after this long (0 = all)"})
    split_at_openers: bool = field(
        default=True,
        metadata={"help": "also close a chunk before a capitalised sentence opener ('And', 'The', 'He', ...) that "
                          "follows a word without a closing mark: Whisper often leaves out the period between two "
                          "sentences but still capitalises the second, and a chunk with two updates in it is where "
                          "the 135M default policy writes only the first"},
    )

    def __post_init__(self) -> None:
        if not self.max_chunk_s > 0:
            raise ValueError(f"max_chunk_s must be > 0, got {self.max_chunk_s}")
        if not 0.05 <= self.block_s <= 10:
            raise ValueError(f"block_s must be in [0.05, 10], got {self.block_s}")
        if self.min_chunk_words < 1:
            raise ValueError(f"min_chunk_words must be >= 1, got {self.min_chunk_words}")
        if self.max_duration_s < 0:
            raise ValueError(f"max_duration_s must be >= 0, got {self.max_duration_s}")


# Words Whisper capitalises only at a sentence start (names, "I" and titles are left out: they are capitalised
# anywhere). Closed-class words, so the list does not grow with the vocabulary of the speech.
SENTENCE_OPENERS = frozenset(
    "A An The And But So Then Or Yet He She It They We You There This That These Those His Her Its Their Our My "
    "Your At In On After Later When While If Now Next Finally Meanwhile Each Every Some".split())


def opens_sentence(prev: Word, word: Word) -> bool:
    """Does ``word`` start a sentence whose period Whisper left out ("... more apples And his sister ...")?"""
    first = word.text.strip().strip("\"'(")
    head = first.rstrip(".,?!;:\"')")
    return head in SENTENCE_OPENERS and not prev.marked


class WordChunker:
    """Groups committed words into sentence chunks (punctuation, pauses, a maximum duration)."""

    def __init__(self, config: AudioAdapterConfig | None = None, source: str = ""):
        self.config = config or AudioAdapterConfig()
        self.source = source
        self._words: list[Word] = []
        self._n = 0

    def _emit(self, words: list[Word]) -> TimedChunk:
        c = TimedChunk(words[0].start, max(words[-1].end, words[0].start), words_text(words), modality="audio",
                       source=self.source, index=self._n,
                       meta={"words": len(words), "asr_confidence": round(float(np.mean([w.probability for w in words])), 3)})
        self._n += 1
        return c

    def add(self, words: list[Word], utterance_end: bool = False) -> list[TimedChunk]:
        out: list[TimedChunk] = []
        for w in words:
            if self.config.split_at_openers and len(self._words) >= self.config.min_chunk_words \
                    and opens_sentence(self._words[-1], w):
                out.append(self._emit(self._words))
                self._words = []
            self._words.append(w)
            long = self._words[-1].end - self._words[0].start >= self.config.max_chunk_s
            sentence = w.ends_sentence and len(self._words) >= self.config.min_chunk_words
            if sentence or long:
                out.append(self._emit(self._words))
                self._words = []
        if utterance_end and self._words:
            out.append(self._emit(self._words))
            self._words = []
        return out

    def flush(self) -> list[TimedChunk]:
        return self.add([], utterance_end=True)

    @property
    def pending_start(self) -> float | None:
        """Start of the first word waiting for its chunk to close, if any."""
        return self._words[0].start if self._words else None


@dataclass
class AudioStreamStats:
    """Figures for the summary line: ASR real-time factor and commit latency (commit time - word end time)."""

    audio_s: float = 0.0
    asr_compute_s: float = 0.0
    words: int = 0
    threads: int = 0  # Whisper's CPU threads (the summary shows what the run really used)
    commit_latencies: list[float] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, float]:
        lat = self.commit_latencies
        return {
            "audio_s": self.audio_s,
            "asr_compute_s": self.asr_compute_s,
            "asr_rtf": self.asr_compute_s / self.audio_s if self.audio_s else 0.0,
            "asr_words": self.words,
            "asr_threads": self.threads,
            "commit_latency_avg_s": float(np.mean(lat)) if lat else 0.0,
            "commit_latency_max_s": float(np.max(lat)) if lat else 0.0,
        }


class AudioStream:
    """Live audio in (any rate/channels/dtype), timed text chunks out.

    ``now``: a callable giving the current stream-clock time, used to measure commit latency (defaults to the
    time of audio received so far, i.e. zero compute time). ``timer``: how ASR compute is measured (see
    :class:`StreamingASR`).
    """

    def __init__(self, asr_model: Any = None, asr_config: ASRConfig | None = None,
                 config: AudioAdapterConfig | None = None, source: str = "", now: Any = None, timer: Any = None):
        self.asr_config = asr_config or ASRConfig()
        model = asr_model if asr_model is not None else whisper_for(self.asr_config)
        self.asr = StreamingASR(model, self.asr_config, timer=timer)
        self.chunker = WordChunker(config, source)
        self.stats = AudioStreamStats(threads=asr_threads(self.asr_config.cpu_threads))
        self._now = now
        self._resampler: Any = None
        self._in_sr: int | None = None

    @property
    def time(self) -> float:
        """Stream time of the audio received so far."""
        return self.asr.stats.audio_s

    @property
    def watermark(self) -> float:
        """No chunk this stream emits later can start before this time (for merging with other modalities)."""
        held = self.chunker.pending_start
        return min(self.asr.pending_from(), held if held is not None else float("inf"))

    def _convert(self, samples: np.ndarray, sample_rate: int) -> np.ndarray:
        from .audio_io import Resampler, to_mono_float32

        if sample_rate == SR and self._resampler is None:
            return to_mono_float32(samples, SR, SR)
        mono = to_mono_float32(samples, sample_rate, sample_rate)  # dtype/channels only
        head = np.zeros(0, np.float32)
        if self._resampler is None or self._in_sr != sample_rate:
            if self._resampler is not None:  # the rate changed mid-stream: drain the old resampler first
                head = self._resampler.flush()
            self._resampler = Resampler(sample_rate, SR)
            self._in_sr = sample_rate
        out = self._resampler.push(mono)
        return np.concatenate([head, out]) if head.size else out

    def _collect(self, update: Any) -> list[TimedChunk]:
        now = self._now() if self._now is not None else self.time
        for w in update.words:
            self.stats.commit_latencies.append(max(0.0, now - w.end))
        self.stats.words += len(update.words)
        chunks = self.chunker.add(update.words, update.utterance_end)
        for c in chunks:
            c.meta["available_at"] = now
        return chunks

    def push(self, samples: np.ndarray, sample_rate: int = SR) -> Iterator[TimedChunk]:
        """Feed audio; yields the chunks it completes (usually none, sometimes one)."""
        x = self._convert(samples, sample_rate)
        update = self.asr.push(x)
        self._sync()
        yield from self._collect(update)

    def finish(self) -> Iterator[TimedChunk]:
        """End of audio: flush the resampler, the ASR buffer and the last partial chunk."""
        if self._resampler is not None:
            tail = self._resampler.flush()
            if tail.size:
                u = self.asr.push(tail)
                yield from self._collect(u)
        update = self.asr.finish()
        self._sync()
        yield from self._collect(update)
        for c in self.chunker.flush():
            c.meta["available_at"] = self._now() if self._now is not None else self.time
            yield c

    def _sync(self) -> None:
        self.stats.audio_s = self.asr.stats.audio_s
        self.stats.asr_compute_s = self.asr.stats.compute_s


class AudioSource:
    """An audio (or video-with-sound) file as a chunk stream: the file is pushed block by block at media time.

    With a bound media-timed clock (``realtime``/``simulated``) each block is pushed when its media time has come,
    so ASR compute and policy thinking share one timeline and commit latency / lag come out as live.
    """

    def __init__(self, path: str | Path, asr_config: ASRConfig | None = None,
                 config: AudioAdapterConfig | None = None):
        from .audio_io import probe_audio

        self.path = str(path)
        self.asr_config = asr_config or ASRConfig()
        self.config = config or AudioAdapterConfig()
        self.info = probe_audio(self.path)  # validates: exists, decodable, has an audio track
        dur = self.info.duration
        if dur is not None and self.config.max_duration_s:
            dur = min(dur, self.config.max_duration_s)
        self.duration: float | None = dur
        self.clock: Any = None
        self.stream: AudioStream | None = None

    def bind_clock(self, clock: Any) -> None:
        self.clock = clock

    def prepare(self) -> None:
        """Load the ASR model now (cached), so loading is not counted as streaming latency."""
        whisper_for(self.asr_config)

    def stats(self) -> dict[str, float]:
        return self.stream.stats.to_dict() if self.stream is not None else {}

    def __iter__(self) -> Iterator[TimedChunk]:
        from .audio_io import iter_audio_blocks

        clock = self.clock
        now = clock.now if clock is not None and clock.media_timed else None
        self.stream = stream = AudioStream(None, self.asr_config, self.config, source=self.path, now=now)
        t = 0.0
        limit = self.config.max_duration_s or float("inf")
        for block in iter_audio_blocks(self.path, self.config.block_s, SR):
            if t >= limit:
                break
            t += len(block) / SR
            if now is not None:
                clock.wait_until(t)
            yield from stream.push(block, SR)
        self.duration = t if self.duration is None else self.duration
        yield from stream.finish()
