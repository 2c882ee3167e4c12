"""How much of the streaming-vs-offline WER gap is lookahead? An oracle bound on the dev kit's real speech.

A streamer that commits a word within ~2 s decodes it with ~1-2 s of the audio after it; offline Whisper decodes
it inside a 30 s window with everything after it. This benchmark isolates that one difference with an oracle that
gets everything else for free: the file is cut at the pauses of the offline transcript (a gap >= ``--min-gap``
between two words, or a sentence end), and the words between two cuts are taken from offline Whisper itself
(:func:`transcribe_offline`: the same model, settings, full 30 s window, all the audio before them) run on the
file up to ``lookahead`` seconds after the segment's last word. Every word thus has *at least* that lookahead (the
segment's earlier words more), the whole left context and unlimited compute: no commit rule, pass timing or
encoder window of a real streamer can do better at that lookahead, short of luck. The real streaming adapter
(the defaults at fixed pass intervals: deterministic) runs beside it in the same run, with its commit latency.

If the oracle at the streamer's latency stays above a WER target, the target needs more lookahead than the latency
target allows with this model on this kit: the gap is not a streaming-policy bug.

    python benchmarks/audio_context.py [--asr base] [--lookahead 0.5 1 2 3 5] [--kit DIR] [--json ...]
    python benchmarks/audio_context.py --plot results/audio_context*.json [--png results/audio_context.png]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# benchmarks/audio.py: the same kit files and the same streamer as the main ASR benchmark
from audio import KIT, ROOT, SETTINGS, files, stream_file  # noqa: E402
from tqdm import tqdm  # noqa: E402

SENTENCE_END = (".", "?", "!")


def cuts(words: list, min_gap: float) -> list[tuple[float, float]]:
    """(last word's end, boundary) per segment: a boundary lies mid-gap after a word followed by >= ``min_gap``
    of silence or ending a sentence, so a word's timing jitter between decodes (~0.1 s) cannot move it across."""
    out = []
    for w, nxt in zip(words, words[1:], strict=False):
        if nxt.start - w.end >= min_gap or w.text.strip().endswith(SENTENCE_END):
            out.append((w.end, (w.end + nxt.start) / 2))
    return out + [(words[-1].end, float("inf"))] if words else []


def lookahead_decode(model, audio, cfg, segs: list[tuple[float, float]], lookahead: float, sr: int) -> str:  # noqa: ANN001
    """Each segment's words from offline Whisper on the audio up to ``lookahead`` s past the segment's end."""
    from adasr_mm.adapters.asr import transcribe_offline, words_text

    out, lo = [], float("-inf")
    for end, hi in segs:
        decoded = transcribe_offline(model, audio[: int(min(len(audio) / sr, end + lookahead) * sr)], cfg)
        out += [w for w in decoded if lo <= (w.start + w.end) / 2 < hi]
        lo = hi
    return words_text(out)


def summarize(rows: list[dict]) -> dict[str, dict]:
    """Per setting: errors pooled over the files, x offline, the worst file's ratio, commit latency."""
    words = sum(r["words"] for r in rows)
    off = sum(r["errors"]["offline"] for r in rows)
    summary = {}
    for k in rows[0]["texts"]:
        err = sum(r["errors"][k] for r in rows)
        per = [r["errors"][k] / r["errors"]["offline"] for r in rows if r["errors"]["offline"]]
        lat = [x for r in rows for x in r.get("latencies", {}).get(k, [])]
        summary[k] = {"errors": err, "wer": err / words, "ratio": err / off if off else None,
                      "max_file_ratio": max(per) if per else None,
                      "latency_avg_s": sum(lat) / len(lat) if lat else None,
                      "latency_max_s": max(lat) if lat else None,
                      "per_file_errors": {r["file"]: r["errors"][k] for r in rows if r["errors"][k]}}
    return summary


def curves(summary: dict[str, dict], key: str = "ratio") -> tuple[list[tuple[float, float]], dict[str, tuple]]:
    """A run's oracle as (lookahead s, ``key``) by lookahead, and its streams as name -> (latency avg s, ``key``)."""
    oracle = sorted((float(k.split("lookahead ")[1].removesuffix(" s")), s[key]) for k, s in summary.items()
                    if k.startswith("oracle, lookahead "))
    streams = {k.removeprefix("stream "): (s["latency_avg_s"], s[key]) for k, s in summary.items()
               if k.startswith("stream ")}
    return oracle, streams


def plot(paths: list[str], png: str) -> None:
    """Stored runs side by side: x offline (pooled and worst file) against lookahead / commit latency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, target, title in ((axes[0], "ratio", 1.1, "pooled WER, x offline"),
                                   (axes[1], "max_file_ratio", 1.3, "worst file, x offline")):
        for i, path in enumerate(paths):
            d = json.loads(Path(path).read_text())
            label = f"{d['asr']}, beam {d.get('beam_size', 1)} (offline {d['summary']['offline']['errors']} err.)"
            oracle, streams = curves(d["summary"], key)
            color = f"C{i}"
            ax.plot(*zip(*oracle, strict=True), marker="o", color=color, label=f"oracle: {label}")
            for name, (lat, y) in streams.items():
                ax.scatter([lat], [y], marker="s", color=color, edgecolor="k", zorder=3)
                ax.annotate(name, (lat, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        ax.axhline(target, color="k", ls="--", lw=1, label="the target")
        ax.axvline(2.0, color="grey", ls=":", lw=1, label="latency target 2 s")
        ax.set_xlabel("oracle: lookahead s (lines) / stream: commit latency avg s (squares)")
        ax.set_title(f"{title} (target {target:g}x)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("what committing early costs: oracle bound vs the streamer, dev kit exact-reference speech")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    print(f"wrote {png}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--asr", default="tiny.en", help="Whisper model (tiny.en, base or a local CTranslate2 dir)")
    ap.add_argument("--kit", default=str(KIT), help="the dev kit (its exact-reference speech files are used)")
    ap.add_argument("--lookahead", type=float, nargs="+", default=[0.5, 1.0, 2.0, 3.0, 5.0])
    ap.add_argument("--min-gap", type=float, default=0.2, help="silence between two words that makes a cut")
    ap.add_argument("--settings", nargs="+", default=["fixed-1", "fixed-1.5"], choices=list(SETTINGS),
                    help="streaming-adapter rows beside the oracle (fixed cadences are deterministic)")
    ap.add_argument("--beam-size", type=int, default=1, help="Whisper beam for offline, oracle and stream alike")
    ap.add_argument("--threads", type=int, default=1, help="Whisper CPU threads")
    ap.add_argument("--block-s", type=float, default=0.1)
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "audio_context.json"))
    ap.add_argument("--plot", nargs="+", metavar="JSON", help="only draw these stored runs side by side (--png)")
    ap.add_argument("--png", default=str(ROOT / "benchmarks" / "results" / "audio_context.png"))
    args = ap.parse_args(argv)
    if args.plot:
        plot(args.plot, args.png)
        return 0

    from adasr_mm.adapters.asr import (
        ASRConfig,
        load_whisper,
        normalize_words,
        transcribe_offline,
        word_edits,
        words_text,
    )
    from adasr_mm.adapters.audio_io import TARGET_SR, load_audio

    todo = [t for t in files(Path(args.kit), samples=False) if t[0] == "kit"]
    if not todo:
        print(f"no exact-reference speech in {args.kit}", file=sys.stderr)
        return 2
    cfg = ASRConfig(model=args.asr, cpu_threads=args.threads, beam_size=args.beam_size)
    model = load_whisper(args.asr, "cpu", "auto", args.threads)
    rows = []
    for _, name, path, ref in tqdm(todo, desc="files"):
        audio = load_audio(path)
        offline = transcribe_offline(model, audio, cfg)
        segs = cuts(offline, args.min_gap)
        row = {"file": name, "reference": ref, "segments": len(segs), "texts": {"offline": words_text(offline)}}
        for la in args.lookahead:
            row["texts"][f"oracle, lookahead {la:g} s"] = lookahead_decode(model, audio, cfg, segs, la, TARGET_SR)
        for s in args.settings:
            r = stream_file(path, dataclasses.replace(cfg, **SETTINGS[s]), model, time.process_time, args.block_s)
            row["texts"][f"stream {s}"] = r["text"]
            row.setdefault("latencies", {})[f"stream {s}"] = r["latencies"]
        row["errors"] = {k: word_edits(ref, t)[0] for k, t in row["texts"].items()}
        row["words"] = len(normalize_words(ref))
        rows.append(row)

    words = sum(r["words"] for r in rows)
    summary = summarize(rows)
    print(f"\nWhisper {args.asr} (beam {args.beam_size}), {len(rows)} exact-reference kit files ({words} words), "
          f"cuts at gaps >= {args.min_gap:g} s or sentence ends ({sum(r['segments'] for r in rows)} segments); "
          f"1.1x offline allows {int(1.1 * summary['offline']['errors'])} errors")
    print("| setting | errors | WER | x offline | max file ratio | commit latency avg / max s |")
    print("|---|---|---|---|---|---|")
    for k, s in summary.items():
        lat = "-" if s["latency_avg_s"] is None else f"{s['latency_avg_s']:.2f} / {s['latency_max_s']:.2f}"
        print(f"| {k} | {s['errors']} | {s['wer']:.3f} | {s['ratio']:.2f} | {s['max_file_ratio']:.2f} | {lat} |")
    out = {"benchmark": "audio_context", "asr": args.asr, "beam_size": args.beam_size, "threads": args.threads,
           "min_gap": args.min_gap, "date": time.strftime("%Y-%m-%d %H:%M:%S"), "words": words, "summary": summary,
           "rows": [{k: v for k, v in r.items() if k != "latencies"} for r in rows]}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
