"""Real-time runtime benchmark: the embedded default on real speech and the bundled samples, realtime vs simulated.

For each file, in one run, on the same machine:
- ``asr-only``: the audio producer alone (no policy) -> commit latency baseline;
- ``realtime`` and ``simulated``: the whole pipeline (producer thread + policy) on each clock;
- ``realtime, answer<=2s``: the same with ``--answer-within 2``;
- text files also run ``read-then-think`` (the baseline streaming must beat).

Printed per row: delay to the first answer token after the stream ended and its parts (end known = ASR flush after
the media ended, queue drain, deep decoding, answer), lag avg/max, ASR commit latency (with the policy; the
asr-only row holds the baseline), WER of the streamed transcript, skips. Writes ``benchmarks/results/realtime.json``.

    python benchmarks/realtime.py                # the default set (~12 min on 2 cores)
    python benchmarks/realtime.py --quick        # two short files, for a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
KIT = ROOT.parent / "shared" / "media" / "dev"
RESULTS = ROOT / "benchmarks" / "results"
QUESTION_SPEECH = "What is the speaker talking about?"
SPEECH = ["librivox_sense_sensibility_0870.wav", "librispeech_2412-153948-0000.flac",
          "picovoice_leopard_diarization_3spk.wav"]
LONG = ("librivox_sonnet001.mp3", "librivox_sonnet002.mp3")  # played back to back: one 106 s reading


def _samples() -> list[tuple[str, str, str | None]]:
    """(path, question, reference) of the bundled audio and text samples."""
    out = []
    for kind in ("audio", "text"):
        meta = json.loads((ROOT / "samples" / kind / "samples.json").read_text())
        for name, s in meta.items():
            path = ROOT / "samples" / kind / name
            if path.exists() and name in ("apples.opus", "apples.txt", "bakery.txt"):
                out.append((str(path), s["question"], s.get("text") if kind == "audio" else None))
    return out


def _long_reading(tmp: Path) -> tuple[str, str] | None:
    import numpy as np
    import soundfile as sf

    from adasr_mm.adapters.audio_io import load_audio

    refs = json.loads((KIT / "references.json").read_text())
    if not all((KIT / f).exists() for f in LONG):
        return None
    audio = np.concatenate([load_audio(KIT / f) for f in LONG])
    out = tmp / "sonnets_001_002.wav"
    sf.write(out, audio, 16000, subtype="PCM_16")
    return str(out), " ".join(_ref(refs[f]) for f in LONG)


def _ref(entry) -> str:
    return entry["text"] if isinstance(entry, dict) else str(entry)


def _files(quick: bool, tmp: Path) -> list[tuple[str, str, str | None, str]]:
    """(path, question, reference transcript or None, group)."""
    files: list[tuple[str, str, str | None, str]] = []
    if KIT.exists():
        refs = json.loads((KIT / "references.json").read_text())
        for f in SPEECH[:1] if quick else SPEECH:
            files.append((str(KIT / f), QUESTION_SPEECH, _ref(refs[f]), "kit"))
        if not quick:
            long = _long_reading(tmp)
            if long:
                files.append((long[0], QUESTION_SPEECH, long[1], "kit (106 s)"))
    for path, q, ref in _samples()[: 2 if quick else None]:
        files.append((path, q, ref, "samples"))
    return files


def _transcript(events) -> str:
    from adasr_mm.events import ChunkEvent

    return " ".join(e.chunk.text for e in events if isinstance(e, ChunkEvent) and e.chunk.modality == "audio")


def _asr_only(path: str, cfg, clock_name: str) -> dict:
    from adasr_mm.adapters import open_input
    from adasr_mm.clock import make_clock

    src = open_input(path, "auto", cfg)
    if not hasattr(src, "bind_clock"):
        return {}
    prepare = getattr(src, "prepare", None)
    if callable(prepare):
        prepare()
    clock = make_clock(clock_name)
    clock.reset()
    src.bind_clock(clock)
    chunks = list(src)
    stats = src.stats()
    return {"commit_latency_avg_s": stats.get("commit_latency_avg_s"),
            "commit_latency_max_s": stats.get("commit_latency_max_s"), "asr_rtf": stats.get("asr_rtf"),
            "chunks": len(chunks)}


def _pipeline(agent, path: str, question: str, cfg, clock: str, mode: str = "stream") -> tuple[dict, list]:
    from adasr_mm.adapters import open_input
    from adasr_mm.pipeline import iter_pipeline

    src = open_input(path, "auto", cfg)
    session = agent.session(question, clock=clock, mode=mode)
    t0 = time.perf_counter()
    events = list(iter_pipeline(session, src, getattr(src, "duration", None), cfg.pipeline))
    sm = session.result.summary
    row = {k: getattr(sm, k) for k in ("delay_s", "lag_s", "lag_avg_s", "end_known_s", "drain_s", "deep_s",
                                       "answer_first_s", "deep_cut", "chunks", "thoughts", "skips", "forced_skips",
                                       "caught_up", "cut_thoughts", "stream_tokens", "deep_tokens", "stream_end_s")}
    row.update({k: sm.extra.get(k) for k in ("commit_latency_avg_s", "commit_latency_max_s", "asr_rtf")})
    row["wall_s"] = time.perf_counter() - t0
    return row, events


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="two short files only")
    ap.add_argument("--answer-within", type=float, default=2.0)
    ap.add_argument("--out", default=str(RESULTS / "realtime.json"))
    a = ap.parse_args()

    from tqdm import tqdm

    from adasr_mm.adapters.asr import wer
    from adasr_mm.agent import StreamingAgent
    from adasr_mm.config import load_config
    from adasr_mm.pipeline import configure_threads

    cfg = load_config()
    threads = configure_threads(cfg)
    agent = StreamingAgent.from_pretrained(config=cfg)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        files = _files(a.quick, Path(tmp))
        plan = []
        for path, q, ref, group in files:
            speech = not path.endswith((".txt", ".md"))
            if speech:
                plan += [(path, q, ref, group, "asr-only", "realtime"), (path, q, ref, group, "asr-only", "simulated")]
            plan += [(path, q, ref, group, "stream", "realtime"), (path, q, ref, group, "stream", "simulated"),
                     (path, q, ref, group, f"stream, answer<={a.answer_within:g}s", "realtime")]
            if not speech:
                plan += [(path, q, ref, group, "read-then-think", "realtime"),
                         (path, q, ref, group, "read-then-think", "simulated")]
        for path, q, ref, group, setting, clock in tqdm(plan, desc="runs", unit="run"):
            row = {"file": Path(path).name, "group": group, "setting": setting, "clock": clock}
            if setting == "asr-only":
                row.update(_asr_only(path, cfg, clock))
            else:
                mode = "read-then-think" if setting == "read-then-think" else "stream"
                cfg.pipeline.answer_within_s = a.answer_within if "answer<=" in setting else 0.0
                res, events = _pipeline(agent, path, q, cfg, clock, mode)
                row.update(res)
                if ref:
                    row["wer"] = wer(ref, _transcript(events))
            rows.append(row)
            tqdm.write(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}))
    out = {"rows": rows, "threads": {"asr": threads[0], "torch": threads[1]}, "cores": os.cpu_count(),
           "load_avg": os.getloadavg(), "commit": _git_head()}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1))
    print(table(rows))


def _git_head() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True).stdout.strip()
    except OSError:
        return ""


def _f(v, fmt: str = "{:.2f}") -> str:
    return "-" if v is None else fmt.format(v)


def table(rows: list[dict]) -> str:
    """Markdown table: one row per (file, setting, clock), with the ASR-only commit latency beside the policy's."""
    base = {(r["file"], r["clock"]): r for r in rows if r["setting"] == "asr-only"}
    head = ("| file | setting | clock | delay s | end known + drain s | deep s | answer s | lag avg s | lag max s "
            "| commit lat. avg s (asr-only) | WER | thoughts/skips/forced | caught up |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        if r["setting"] == "asr-only":
            continue
        b = base.get((r["file"], r["clock"]), {})
        lat = _f(r.get("commit_latency_avg_s"))
        if b.get("commit_latency_avg_s") is not None:
            lat += f" ({_f(b['commit_latency_avg_s'])})"
        lines.append(
            f"| {r['file']} | {r['setting']} | {r['clock']} | {_f(r['delay_s'])} | "
            f"{_f(r['end_known_s'] + r['drain_s'])} | {_f(r['deep_s'])} | {_f(r['answer_first_s'])} | "
            f"{_f(r['lag_avg_s'])} | {_f(r['lag_s'])} | {lat} | {_f(r.get('wer'), '{:.3f}')} | "
            f"{r['thoughts']}/{r['skips']}/{r['forced_skips']} | {r['caught_up']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
