"""Where a streaming Whisper pass's CPU goes: the encoder per window, the decoder per token, and one real stream.

Why: on 1 thread, base streams the kit at RTF ~0.22 against a 0.2 target, and the cheaper-pass ideas (a forced
prefix for the committed words, a shorter prompt, fewer committed seconds kept as context) all hinge on these
unit costs. Measured with CTranslate2 directly on one recording (process CPU time, median of ``--repeat``):

- encoder: one call for a window of 5 / 10 / 15 / 20 / 30 s (faster-whisper pads every decode to 30 s; the
  adapter encodes >= 10 s, and redoes an uncertain flush with the full 30 s);
- decoder: greedy decodes of the first 2 / 4 / 6 / 8 s of the file (10 s window), as time per generated token
  (least squares over the clips) and the fixed cost per call; the same 8 s clip with its first words forced as a
  prefix (after the start-of-transcript token: what faster-whisper's ``prefix`` does) and with 40 tokens of
  previous text as the prompt (before it);
- stream: the defaults at a fixed pass every 1.5 s of speech on the whole file (0.1 s blocks): the share of
  compute in encoder / decoder / word alignment, tokens per decode and 30 s encodes.

    OMP_NUM_THREADS=1 python benchmarks/asr_cost.py [--asr tiny.en base] [--file librivox_sonnet001.mp3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
KIT = ROOT.parent / "shared" / "media" / "dev"
SR = 16000


def _cpu(fn: Any, repeat: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeat):
        t = time.process_time()
        out = fn()
        times.append(time.process_time() - t)
    return statistics.median(times), out


def _encoder_output(model: Any, audio: np.ndarray, window_s: float) -> Any:
    import ctranslate2

    feats = model.feature_extractor(audio)
    frames = int(window_s * 100)
    x = np.zeros((1, feats.shape[0], frames), np.float32)
    n = min(frames, feats.shape[-1])
    x[0, :, :n] = feats[:, :n]
    return model.model.encode(ctranslate2.StorageView.from_array(x), to_cpu=False)


def unit_costs(model: Any, audio: np.ndarray, repeat: int) -> dict[str, Any]:
    """Encoder per window, decoder per token (and per call), forced prefix vs prompt."""
    from faster_whisper.tokenizer import Tokenizer

    tok = Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language="en")
    sot = list(tok.sot_sequence)
    _encoder_output(model, audio, 30)  # warm-up: the first call allocates
    enc_s = {w: _cpu(lambda w=w: _encoder_output(model, audio, w), repeat)[0] for w in (5, 10, 15, 20, 30)}

    def gen(enc: Any, prompt: list[int]) -> list[int]:
        r = model.model.generate(enc, [prompt], return_scores=True, return_no_speech_prob=True)
        return r[0].sequences_ids[0]

    points = []
    for clip in (2, 4, 6, 8):
        enc = _encoder_output(model, audio[: clip * SR], 10)
        t, ids = _cpu(lambda enc=enc: gen(enc, sot + [tok.timestamp_begin]), repeat)
        points.append((len(ids), t))
    n, t = np.array(points, float).T
    per_token, fixed = np.polyfit(n, t, 1)
    enc = _encoder_output(model, audio[: 8 * SR], 10)
    plain_s, ids = _cpu(lambda: gen(enc, sot + [tok.timestamp_begin]), repeat)
    text = [i for i in ids if i < tok.eot]
    forced = text[: len(text) // 2]
    prefix_s, ids_p = _cpu(lambda: gen(enc, sot + [tok.timestamp_begin] + forced), repeat)
    later = gen(_encoder_output(model, audio[8 * SR : 20 * SR], 15), sot + [tok.timestamp_begin])
    prev = [i for i in later if i < tok.eot][:40]  # real previous text: the words that follow the clip
    prompt_s, ids_q = _cpu(lambda: gen(enc, [tok.sot_prev] + prev + sot + [tok.timestamp_begin]), repeat)
    return {
        "encoder_s": enc_s, "decode_points": points, "per_token_s": float(per_token), "per_call_s": float(fixed),
        "clip8": {"plain_s": plain_s, "tokens": len(ids), "prefix_tokens": len(forced), "prefix_s": prefix_s,
                  "prefix_out_tokens": len(ids_p), "prompt_tokens": len(prev), "prompt_s": prompt_s,
                  "prompt_out_tokens": len(ids_q)},
    }


def stream_breakdown(model: Any, name: str, audio: np.ndarray) -> dict[str, Any]:
    """The defaults at a fixed 1.5 s cadence on the whole file, with CTranslate2's calls timed."""
    from adasr_mm.adapters import asr as A

    cost, calls, tokens = Counter(), Counter(), Counter()
    inner = model.model

    class Timed:
        def __getattr__(self, k: str) -> Any:
            f = getattr(inner, k)
            if not callable(f):
                return f

            def timed(*a: Any, **kw: Any) -> Any:
                t = time.process_time()
                r = f(*a, **kw)
                cost[k] += time.process_time() - t
                calls[k] += 1
                if k == "encode":
                    tokens["full_window"] += int(a[0].shape[-1] >= 3000)
                if k == "generate":
                    tokens["prompt"] += len(a[1][0])
                    tokens["generated"] += len(r[0].sequences_ids[0])
                return r
            return timed

    cfg = A.ASRConfig(model=name, cadence="fixed", min_chunk_s=1.5, cpu_threads=1)
    model.model = Timed()
    try:
        s = A.StreamingASR(model, cfg, timer=time.process_time)
        for i in range(0, len(audio), SR // 10):
            s.push(audio[i : i + SR // 10])
        s.finish()
    finally:
        model.model = inner
    total = s.stats.compute_s
    return {"compute_s": total, "rtf": total / (len(audio) / SR),
            "share": {k: cost[k] / total for k in ("encode", "generate", "align")},
            "calls": dict(calls), "tokens": dict(tokens)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--asr", nargs="+", default=["tiny.en", "base"])
    p.add_argument("--file", default="librivox_sonnet001.mp3", help="a file of the dev kit (or any audio path)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "asr_cost.json"))
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from adasr_mm.adapters.asr import load_whisper
    from adasr_mm.adapters.audio_io import load_audio

    path = Path(args.file) if Path(args.file).exists() else KIT / args.file
    if not path.exists():
        raise SystemExit(f"{path}: not found (the dev kit is read from {KIT})")
    audio = load_audio(str(path))
    from audio import machine  # its sibling: the same host record as the audio benchmark's

    res: dict[str, Any] = {"file": path.name, "threads": 1, "timer": "process CPU", "machine": machine(),
                           "models": {}}
    for name in tqdm(args.asr, desc="models"):
        model = load_whisper(name, "cpu", "int8", 1)
        res["models"][name] = {"unit": unit_costs(model, audio, args.repeat),
                               "stream": stream_breakdown(model, name, audio)}
    print(report(res))
    Path(args.json).write_text(json.dumps(res, indent=1))
    return 0


def report(res: dict[str, Any]) -> str:
    rows = ["| model | encoder 5 / 10 / 15 / 20 / 30 s window (ms) | decoder ms per token | per call | 8 s clip: "
            "plain / half forced as prefix / with a prompt (ms) |", "|---|---|---|---|---|"]
    for name, r in res["models"].items():
        u, c = r["unit"], r["unit"]["clip8"]
        enc = " / ".join(f"{1000 * v:.0f}" for v in u["encoder_s"].values())
        rows.append(f"| {name} | {enc} | {1000 * u['per_token_s']:.1f} | {1000 * u['per_call_s']:.0f} | "
                    f"{1000 * c['plain_s']:.0f} ({c['tokens']} tok) / {1000 * c['prefix_s']:.0f} "
                    f"({c['prefix_tokens']} forced, {c['prefix_out_tokens']} out) / {1000 * c['prompt_s']:.0f} "
                    f"({c['prompt_tokens']} prompt, {c['prompt_out_tokens']} out) |")
    rows += ["", "| model | stream RTF | encoder | decoder | alignment | decodes | generated tokens per decode | "
             "prompt tokens per decode | 30 s encodes |", "|---|---|---|---|---|---|---|---|---|"]
    for name, r in res["models"].items():
        s = r["stream"]
        n = max(1, s["calls"].get("generate", 0))
        sh = s["share"]
        rows.append(f"| {name} | {s['rtf']:.3f} | {sh['encode']:.0%} | {sh['generate']:.0%} | {sh['align']:.0%} | "
                    f"{n} | {s['tokens'].get('generated', 0) / n:.1f} | {s['tokens'].get('prompt', 0) / n:.1f} | "
                    f"{s['tokens'].get('full_window', 0)} |")
    cpu = res.get("machine", {}).get("cpu", "CPU not recorded")
    return "\n".join(rows) + f"\n({res['file']}, 1 thread of {cpu}, int8, process CPU time; stream: the defaults, " \
        "a pass every 1.5 s of speech, 0.1 s blocks)"


if __name__ == "__main__":
    sys.exit(main())
