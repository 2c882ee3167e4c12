"""Streaming ASR vs offline Whisper on the bundled spoken samples: same files, same model, one run.

For each file: offline faster-whisper (whole file; time and WER against the known text) and the streaming adapter
replayed on the compute-aware simulated clock (blocks pushed at media time; ASR compute advances the clock):
real-time factor (compute / audio duration), commit latency (simulated commit time minus the word's end time,
average and max over words) and WER. Two streaming settings: ``default`` (adaptive pass cadence targeting
RTF 0.15) and ``low-latency`` (a pass every 0.5 s of speech, no cadence adaptation).

    python benchmarks/audio.py [--asr tiny.en] [--repeats 1] [--json benchmarks/results/audio.json]
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
    "low-latency": {"min_chunk_s": 0.5, "target_rtf": 0.0},
}


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
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "audio.json"))
    args = ap.parse_args(argv)

    from adasr_mm.adapters.asr import ASRConfig, load_whisper, transcribe_offline, wer, words_text
    from adasr_mm.adapters.audio_io import load_audio

    base = ASRConfig(model=args.asr)
    model = load_whisper(base.model, base.device, base.compute_type, base.cpu_threads)
    manifest = json.loads((SAMPLES / "samples.json").read_text())
    rows = []
    bar = tqdm(total=len(manifest) * (1 + len(SETTINGS)) * args.repeats, desc="audio", file=sys.stderr)
    for name, meta in manifest.items():
        path = SAMPLES / name
        audio = load_audio(path)
        dur = len(audio) / 16000
        offs = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            words = transcribe_offline(model, audio, base)
            offs.append(time.perf_counter() - t0)
            bar.update(1)
        off_text = words_text(words)
        row = {"file": name, "duration_s": dur, "offline_s": statistics.median(offs),
               "offline_rtf": statistics.median(offs) / dur, "offline_wer": wer(meta["text"], off_text),
               "offline_text": off_text}
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

    hdr = "| file | dur s | offline s | offline WER | setting | stream RTF | commit lat avg s | max s | stream WER | chunks |"
    lines = [hdr, "|" + "---|" * 10]
    for r in rows:
        for i, setting in enumerate(SETTINGS):
            s = r[setting]
            first = (r["file"], f"{r['duration_s']:.1f}", f"{r['offline_s']:.2f}", f"{r['offline_wer']:.3f}") if i == 0 \
                else ("", "", "", "")
            lines.append("| " + " | ".join([*first, setting, f"{s['asr_rtf']:.3f}", f"{s['commit_latency_avg_s']:.2f}",
                                            f"{s['commit_latency_max_s']:.2f}", f"{s['wer']:.3f}", str(s["chunks"])])
                         + " |")
    total = sum(r["duration_s"] for r in rows)
    lines.append("")
    for setting in SETTINGS:
        rtf = sum(r[setting]["asr_rtf"] * r["duration_s"] for r in rows) / total
        lat = sum(r[setting]["commit_latency_avg_s"] * r["duration_s"] for r in rows) / total
        w_s = statistics.mean(r[setting]["wer"] for r in rows)
        w_o = statistics.mean(r["offline_wer"] for r in rows)
        lines.append(f"{setting}: RTF {rtf:.3f} (target <= 0.15), commit latency avg {lat:.2f} s (target <= 1.5), "
                     f"WER stream {w_s:.3f} vs offline {w_o:.3f}")
    lines.append(f"(ASR {args.asr} int8 on {os.cpu_count()} cores, simulated clock, 0.5 s blocks)")
    print("\n".join(lines))
    out = {"benchmark": "audio", "asr": args.asr, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
           "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
           "settings": SETTINGS, "rows": rows}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
