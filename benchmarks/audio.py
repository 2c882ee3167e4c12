"""Streaming ASR vs offline Whisper on the bundled spoken samples: same files, same model, one run.

For each file: offline faster-whisper (whole file; time and WER against the known text) and the streaming adapter
replayed on the compute-aware simulated clock (blocks pushed at media time; ASR compute advances the clock):
real-time factor (compute / audio duration), commit latency (simulated commit time minus the word's end time,
average and max over words) and WER. Files: the four fixtures of ``samples/audio`` ("stories"), the nine of
``samples/audio/wer`` (generated word problems, three voices), those 13 back to back as one long stream, and with
``--espeak N`` N more word problems rendered now with espeak-ng (another seed range, same three voices) for a
larger sample. WERs are pooled over words.
Settings: ``default`` (10 s warm-up, adaptive pass cadence targeting RTF 0.15), ``no-warmup`` (commits from
the first pause) and ``low-latency`` (no warm-up, a pass every 0.5 s of speech, no cadence adaptation).

    python benchmarks/audio.py [--asr tiny.en] [--repeats 1] [--espeak 30] [--json benchmarks/results/audio.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tqdm import tqdm  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples" / "audio"

SETTINGS = {
    "default": {},
    "no-warmup": {"warmup_s": 0.0},
    "low-latency": {"warmup_s": 0.0, "min_chunk_s": 0.5, "target_rtf": 0.0},
}
ESPEAK_OFFSET = 500  # test-split seeds of the --espeak set (the committed wer/ set starts at 900)


def files(espeak: int, cache: Path) -> list[tuple[str, str, Path, dict]]:
    """(group, name, path, meta) of every benchmarked file."""
    out = [("stories", name, SAMPLES / name, meta)
           for name, meta in json.loads((SAMPLES / "samples.json").read_text()).items()]
    out += [("wer", f"wer/{name}", SAMPLES / "wer" / name, meta)
            for name, meta in json.loads((SAMPLES / "wer" / "samples.json").read_text()).items()]
    # one long stream: the 13 committed files back to back with 1 s gaps (how a warm-up amortises)
    import numpy as np
    import soundfile as sf

    from adasr_mm.adapters.audio_io import load_audio

    cache.mkdir(parents=True, exist_ok=True)
    gap = np.zeros(16000, np.float32)
    long_path = cache / "long-13.wav"
    sf.write(long_path, np.concatenate([x for _, _, p, _ in out for x in (load_audio(p), gap)]), 16000)
    out.append(("long", "long-13.wav", long_path, {"text": " ".join(m["text"] for *_, m in out)}))
    if espeak:
        sys.path.insert(0, str(SAMPLES))
        from render import speak, voiced_word_problems

        for i, (s, voice, speed) in enumerate(voiced_word_problems(espeak, ESPEAK_OFFSET)):
            path = cache / f"p{i:02d}-{voice}.wav"
            if not path.is_file():
                sf.write(path, speak(s.context or "", cache, voice, speed), 16000)
            out.append(("espeak", f"espeak/{path.name}", path, {"text": s.context, "voice": voice}))
    return out


def stream_file(path: Path, asr_cfg, model) -> dict:
    from adasr_mm.adapters.asr import words_text
    from adasr_mm.adapters.audio import AudioStream
    from adasr_mm.adapters.audio_io import TARGET_SR, iter_audio_blocks
    from adasr_mm.clock import SimulatedClock

    clock = SimulatedClock()
    stream = AudioStream(model, asr_cfg, source=str(path), now=clock.now)
    chunks = []
    t = 0.0
    for block in iter_audio_blocks(path, 0.5, TARGET_SR):
        t += len(block) / TARGET_SR
        clock.wait_until(t)
        chunks += list(stream.push(block, TARGET_SR))
    chunks += list(stream.finish())
    stats = stream.stats.to_dict()
    return {"text": words_text(stream.asr.committed), "chunks": len(chunks), "duration_s": t, **stats,
            "asr_passes": stream.asr.stats.passes, "max_buffer_s": stream.asr.stats.max_buffer_s}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--asr", default="tiny.en")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--espeak", type=int, default=0, metavar="N",
                    help="also render N word problems with espeak-ng (needs the binary)")
    ap.add_argument("--cache", default=str(ROOT / "runs" / "bench-audio-espeak"))
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "audio.json"))
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
    from adasr_mm.adapters.audio_io import load_audio

    base = ASRConfig(model=args.asr)
    model = load_whisper(base.model, base.device, base.compute_type, base.cpu_threads)
    todo = files(args.espeak, Path(args.cache))
    rows = []
    bar = tqdm(total=len(todo) * (1 + len(SETTINGS)) * args.repeats, desc="audio", file=sys.stderr)
    for group, name, path, meta in todo:
        audio = load_audio(path)
        dur = len(audio) / 16000
        offs = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            words = transcribe_offline(model, audio, base)
            offs.append(time.perf_counter() - t0)
            bar.update(1)
        off_text = words_text(words)
        row = {"group": group, "file": name, "duration_s": dur, "reference": meta["text"],
               "words": len(normalize_words(meta["text"])),
               "offline_s": statistics.median(offs), "offline_rtf": statistics.median(offs) / dur,
               "offline_wer": wer(meta["text"], off_text), "offline_text": off_text}
        for setting, over in SETTINGS.items():
            cfg = dataclasses.replace(base, **over)
            runs = []
            for _ in range(args.repeats):
                runs.append(stream_file(path, cfg, model))
                bar.update(1)
            r = runs[len(runs) // 2]
            row[setting] = {**{k: statistics.median(x[k] for x in runs) for k in
                               ("asr_rtf", "commit_latency_avg_s", "commit_latency_max_s")},
                            "wer": wer(meta["text"], r["text"]), "text": r["text"], "chunks": r["chunks"],
                            "passes": r["asr_passes"], "max_buffer_s": r["max_buffer_s"]}
        rows.append(row)
    bar.close()

    names = list(SETTINGS)
    lines = ["| file | dur s | offline s | offline WER | " + " | ".join(f"{s} WER" for s in names) + " |",
             "|" + "---|" * (4 + len(names))]
    for r in rows:
        lines.append(f"| {r['file']} | {r['duration_s']:.1f} | {r['offline_s']:.2f} | {r['offline_wer']:.3f} | "
                     + " | ".join(f"{r[s]['wer']:.3f}" for s in names) + " |")
    lines += ["", "| files | setting | words | offline WER | stream WER | ratio | stream RTF | commit latency avg s "
              "| max s |", "|" + "---|" * 9]
    groups = {"stories": ["stories"], "stories+wer (the test's set)": ["stories", "wer"],
              "the 13 as one long stream": ["long"]}
    if args.espeak:
        groups["espeak"] = ["espeak"]
        # an offline repetition loop (more errors than words) swamps any pooled ratio: also show it without
        groups["espeak, no offline loop"] = ["espeak", "no-loop"]
    summary = {}
    for label, gs in groups.items():
        sel = [r for r in rows if r["group"] in gs and ("no-loop" not in gs or r["offline_wer"] <= 1.0)]
        total = sum(r["duration_s"] for r in sel)
        off = pooled_wer((r["reference"], r["offline_text"]) for r in sel)
        for setting in names:
            st = pooled_wer((r["reference"], r[setting]["text"]) for r in sel)
            rtf = sum(r[setting]["asr_rtf"] * r["duration_s"] for r in sel) / total
            lat = sum(r[setting]["commit_latency_avg_s"] * r["duration_s"] for r in sel) / total
            mx = max(r[setting]["commit_latency_max_s"] for r in sel)
            summary.setdefault(label, {})[setting] = {"offline_wer": off, "stream_wer": st, "ratio": st / off,
                                                      "asr_rtf": rtf, "commit_latency_avg_s": lat,
                                                      "commit_latency_max_s": mx}
            lines.append(f"| {label} ({len(sel)}) | {setting} | {sum(r['words'] for r in sel)} | {off:.3f} | "
                         f"{st:.3f} | {st / off:.2f} | {rtf:.3f} | {lat:.2f} | {mx:.2f} |")
    lines.append(f"(ASR {args.asr} int8 on {os.cpu_count()} cores, simulated clock, 0.5 s blocks; targets: ratio "
                 "<= 1.15, RTF <= 0.15, commit latency avg <= 1.5 s)")
    print("\n".join(lines))
    out = {"benchmark": "audio", "asr": args.asr, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
           "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
           "settings": SETTINGS, "summary": summary, "rows": rows}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
