"""Regenerate the spoken fixtures in samples/audio/ from samples/text/ with espeak-ng (no ffmpeg binary).

    .venv/bin/python samples/audio/render.py    # needs `apt-get install espeak-ng`

Writes apples/train/bakery.opus (the texts read aloud), pauses.flac (three sentences with 3 s digital-silence
gaps) and samples.json (question, answer, spoken text and, for pauses.flac, the measured gaps); and wer/: nine
generated word problems read by three voices, the extra speech the streaming-vs-offline WER is measured on (three
stories are too few words for a ratio of two error rates to mean anything).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import av
import numpy as np
import soundfile as sf

from adasr_mm.adapters.audio_io import TARGET_SR, iter_audio_blocks, to_mono_float32

HERE = Path(__file__).resolve().parent
TEXT_DIR = HERE.parent / "text"
VOICE, SPEED = "en-us", 150
# libopus, 16 kHz mono input: at 32 kbps (application=audio) Whisper tiny.en transcribes it as it does the raw
# espeak output; 24 kbps or application=voip cost it a few words.
OPUS_BITRATE, OPUS_APPLICATION = 32000, "audio"
STORIES = ("apples", "train", "bakery")
# The demo sample (`make demo`) must be heard right by the default ASR (tiny.en) *as it streams*: the first
# utterance is decoded from ~2.5 s of audio with no earlier context. Spoken in one breath from t = 0 (as the other
# stories are), its first sentence came out as "Tom has eye-mappled / I mapled in his basket" (offline on the whole
# file: "five apples") with every voice tried, so the demo could not show the system working. Read sentence by
# sentence, as a person does, with 0.5 s of silence before the first word and 0.6 s between sentences, the same
# en-us voice streams with every quantity right (realtime and instant replay; question and answer unchanged).
# The en-us voice no longer did once the VAD stopped zeroing 4 ms of every block it scored (adapters/asr.py
# StreamingVAD): "Tom has a high map on his basket". Of 12 espeak voices x 2 speeds x 2 lead-ins, en-us+m2 was the
# one whose first sentence streamed right under every ASR variation tried (0.1/0.5 s blocks, VAD never restarted,
# VAD threshold 0.4, fixed cadence, wall-clock cadence): all four quantities right in 6 of 6 runs.
STORY_PAUSES = {"apples": (0.5, 0.6)}  # (leading silence, gap between sentences) in seconds
STORY_VOICES = {"apples": ("en-us+m2", 150)}  # (espeak voice, words per minute); others: VOICE, SPEED
PAUSE_SENTENCES = ("Maria has 7 marbles.", "She gives 3 marbles to her brother.",
                   "Then she finds 5 more marbles.")
PAUSE_S, EDGE_S = 3.0, 0.5
# wer/: test-split word problems (seeds far from any used in training or tests), voices in rotation
WER_PROBLEMS, WER_OFFSET = 9, 900
WER_VOICES = (("en-us", 150), ("en-gb", 160), ("en-us+f3", 140))
SILENCE_THRESHOLD = 0.002  # espeak's own leading/trailing near-silence is trimmed below this before padding


def speak(text: str, tmp: Path, voice: str = VOICE, speed: int = SPEED) -> np.ndarray:
    """espeak-ng's rendering of ``text`` as 16 kHz mono float32."""
    wav = tmp / "speech.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(wav), text], check=True)
    x, sr = sf.read(wav, dtype="int16")
    return to_mono_float32(x, sr, TARGET_SR)


def speak_story(text: str, tmp: Path, lead_s: float, gap_s: float, voice: str = VOICE, speed: int = SPEED
                ) -> np.ndarray:
    """``text`` read sentence by sentence: ``lead_s`` of silence first, ``gap_s`` after each sentence."""
    silence = lambda s: np.zeros(round(s * TARGET_SR), np.float32)  # noqa: E731
    parts = [silence(lead_s)]
    for sentence in re.split(r"(?<=[.?!])\s+", text):
        parts += [trim(speak(sentence, tmp, voice, speed)), silence(gap_s)]
    return np.concatenate(parts)


def write_opus(path: Path, x: np.ndarray) -> None:
    # bitexact: a fixed Ogg serial number and no encoder version tag, so a re-render gives the same bytes
    with av.open(str(path), "w", format="ogg", options={"fflags": "+bitexact"}) as c:
        s = c.add_stream("libopus", rate=TARGET_SR, options={"application": OPUS_APPLICATION})
        s.layout, s.bit_rate, s.format = "mono", OPUS_BITRATE, "flt"
        s.codec_context.open()
        fs = s.codec_context.frame_size
        r = av.AudioResampler(format="flt", layout="mono", rate=TARGET_SR, frame_size=fs)
        frame = av.AudioFrame.from_ndarray(x.reshape(1, -1).astype(np.float32), format="flt", layout="mono")
        frame.sample_rate, frame.pts = TARGET_SR, 0
        for f in r.resample(frame) + r.resample(None):
            c.mux(s.encode(f))
        c.mux(s.encode(None))


def trim(x: np.ndarray) -> np.ndarray:
    loud = np.nonzero(np.abs(x) > SILENCE_THRESHOLD)[0]
    return x[loud[0]: loud[-1] + 1]


def silent_runs(x: np.ndarray, sr: int, min_s: float = 1.0) -> list[list[float]]:
    """[start_s, end_s] of every run of exact digital zeros at least ``min_s`` long."""
    edges = np.diff(np.concatenate([[0], (x == 0).astype(np.int8), [0]]))
    starts, ends = np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0]
    return [[round(float(s) / sr, 3), round(float(e) / sr, 3)]
            for s, e in zip(starts, ends, strict=True) if e - s >= min_s * sr]


def decoded_seconds(path: Path) -> float:
    return sum(b.size for b in iter_audio_blocks(path)) / TARGET_SR


def main() -> int:
    if shutil.which("espeak-ng") is None:
        print("render.py: espeak-ng not found, nothing regenerated (install it: apt-get install espeak-ng)",
              file=sys.stderr)
        return 0
    qa = json.loads((TEXT_DIR / "samples.json").read_text())
    meta: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in STORIES:
            text = (TEXT_DIR / f"{name}.txt").read_text().strip()
            x = speak_story(text, Path(tmp), *STORY_PAUSES[name], *STORY_VOICES.get(name, (VOICE, SPEED))) \
                if name in STORY_PAUSES else speak(text, Path(tmp))
            out = HERE / f"{name}.opus"
            write_opus(out, x)
            print(f"{out.name}: {x.size / TARGET_SR:.2f} s spoken, {decoded_seconds(out):.2f} s decoded, "
                  f"{out.stat().st_size} bytes")
            meta[out.name] = {**qa[f"{name}.txt"], "text": text}

        gap = np.zeros(round(PAUSE_S * TARGET_SR), np.float32)
        edge = np.zeros(round(EDGE_S * TARGET_SR), np.float32)
        parts = [edge]
        for i, sentence in enumerate(PAUSE_SENTENCES):
            parts += [trim(speak(sentence, Path(tmp))), gap if i < len(PAUSE_SENTENCES) - 1 else edge]
        pcm = np.round(np.concatenate(parts) * 32767).astype(np.int16)
    out = HERE / "pauses.flac"
    sf.write(out, pcm, TARGET_SR, format="FLAC", subtype="PCM_16")
    pauses = silent_runs(pcm, TARGET_SR, min_s=PAUSE_S - 0.01)  # sentence gaps, not the edges
    print(f"{out.name}: {pcm.size / TARGET_SR:.2f} s, {decoded_seconds(out):.2f} s decoded, pauses {pauses}, "
          f"{out.stat().st_size} bytes")
    meta[out.name] = {"question": "How many marbles does Maria have now?", "answer": "9",
                      "text": " ".join(PAUSE_SENTENCES), "pauses": pauses}
    (HERE / "samples.json").write_text(json.dumps(meta, indent=2) + "\n")
    render_wer_set()
    return 0


def voiced_word_problems(n: int, offset: int) -> list[tuple[Any, str, int]]:
    """(sample, voice, words per minute) of ``n`` test-split word problems, read by WER_VOICES in rotation
    (the committed wer/ set here, the benchmark's ``--espeak`` set from another offset)."""
    from adasr_mm.training.tasks import word_problems

    return [(s, *WER_VOICES[i % len(WER_VOICES)]) for i, s in enumerate(word_problems("test", n, offset=offset))]


def render_wer_set() -> None:
    out_dir = HERE / "wer"
    out_dir.mkdir(exist_ok=True)
    meta: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (s, voice, speed) in enumerate(voiced_word_problems(WER_PROBLEMS, WER_OFFSET)):
            out = out_dir / f"problem{i}.opus"
            x = speak(s.context or "", Path(tmp), voice, speed)
            write_opus(out, x)
            print(f"wer/{out.name} ({voice}): {x.size / TARGET_SR:.2f} s, {out.stat().st_size} bytes")
            meta[out.name] = {"question": s.question, "answer": s.answer, "text": s.context, "voice": voice,
                              "words_per_minute": speed}
    (out_dir / "samples.json").write_text(json.dumps(meta, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
