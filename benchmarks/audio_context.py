"""How much of the streaming-vs-offline WER gap is context? Sentence-level decoding with growing lookahead.

The streaming adapter must commit a sentence soon after it ends, so Whisper decodes it with the audio heard so far
(left context) and ~0.3 s after it; offline Whisper decodes the whole file in one 30 s window. This benchmark
isolates that difference with an oracle segmentation (sentence ends from the offline word timestamps): each
sentence is decoded from the start of the file up to ``lookahead`` seconds past its end (same model, greedy, no
prompt) and only its own words are kept. Pooled WER over the bundled spoken samples for each lookahead, next to
offline and the real streaming adapter in the same run. If even several seconds of lookahead stay well above
offline, the gap is not a commit-policy bug but what committing early costs with this model on these files.

    python benchmarks/audio_context.py [--asr tiny.en] [--lookahead 0.3 1 2 3 5] [--json ...]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tqdm import tqdm  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples" / "audio"


def sentence_decode(model, audio, ends: list[float], lookahead: float, sr: int) -> str:
    """Each sentence decoded from the file start to ``end + lookahead``; its own words kept (by start time)."""
    out, prev = [], 0.0
    for e in ends:
        buf = audio[: int(min(len(audio) / sr, e + lookahead) * sr)]
        segs, _ = model.transcribe(buf, language="en", beam_size=1, temperature=0.0, word_timestamps=True,
                                   condition_on_previous_text=False)
        words = [w for s in segs for w in (s.words or []) if prev - 0.1 < w.start < e - 0.05]
        out.append("".join(w.word for w in words))
        prev = words[-1].end if words else e
    return " ".join(x.strip() for x in out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--asr", default="tiny.en")
    ap.add_argument("--lookahead", type=float, nargs="+", default=[0.3, 1.0, 2.0, 3.0, 5.0])
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "audio_context.json"))
    args = ap.parse_args(argv)

    from adasr_mm.adapters.asr import (
        ASRConfig,
        load_whisper,
        normalize_words,
        pooled_wer,
        transcribe_offline,
        wer,
        words_text,
    )
    from adasr_mm.adapters.audio import AudioStream
    from adasr_mm.adapters.audio_io import TARGET_SR, iter_audio_blocks, load_audio

    manifest = json.loads((SAMPLES / "samples.json").read_text())
    model = load_whisper(args.asr)
    texts: dict[str, dict[str, str]] = {}  # setting -> file -> transcript

    def add(setting: str, name: str, text: str) -> None:
        texts.setdefault(setting, {})[name] = text

    for name in tqdm(manifest, desc="files"):
        audio = load_audio(SAMPLES / name)
        words = transcribe_offline(model, audio)
        add("offline (whole file)", name, words_text(words))
        stream = AudioStream(model, ASRConfig(model=args.asr), source=name)
        for block in iter_audio_blocks(SAMPLES / name, 0.5, TARGET_SR):
            list(stream.push(block, TARGET_SR))
        list(stream.finish())
        add("streaming adapter (default)", name, words_text(stream.asr.committed))
        ends = [w.end for w in words if w.text.strip().endswith((".", "?", "!"))]
        if words and (not ends or ends[-1] < words[-1].end):
            ends.append(words[-1].end)
        for la in args.lookahead:
            add(f"sentence decode, lookahead {la:g} s", name, sentence_decode(model, audio, ends, la, TARGET_SR))

    rows = {s: {n: wer(manifest[n]["text"], t) for n, t in ts.items()} for s, ts in texts.items()}
    pooled = {s: pooled_wer((manifest[n]["text"], t) for n, t in ts.items()) for s, ts in texts.items()}
    total = sum(len(normalize_words(m["text"])) for m in manifest.values())
    offline = pooled["offline (whole file)"]
    names = list(manifest)
    print(f"\nWhisper {args.asr}, greedy; pooled WER over {len(names)} files ({total} words)")
    print("| setting | pooled WER | x offline | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 3) + "|")
    for s, r in rows.items():
        print(f"| {s} | {pooled[s]:.3f} | {pooled[s] / offline:.2f} | " + " | ".join(f"{r[n]:.3f}" for n in names)
              + " |")
    out = {"benchmark": "audio_context", "asr": args.asr, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
           "words": total, "pooled_wer": pooled, "per_file_wer": rows}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
