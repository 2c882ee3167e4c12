"""Load on `adasr-mm serve`: 1, 4, 8 and 16 concurrent Realtime clients streaming real speech at real-time pace.

The server runs as its own process (`adasr-mm serve`, as a user would start it); each client is the project's
`adasr_mm.client.stream_audio` (the official openai SDK underneath) on its own thread, streaming a real recording
from ../shared/media/dev as 24 kHz PCM16 in 100 ms appends, then asking for the answer. Per level: aggregate
policy tokens/s (stream + deep + answer tokens of all sessions / wall time), p50/p95 delay to the first answer
token after the stream ended, ASR commit latency, errors, and audio the server received vs sent.

    python benchmarks/serve_load.py [--levels 1 4 8 16] [--file librispeech_2412-153948-0000.flac]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
KIT = ROOT.parent / "shared" / "media" / "dev"
RESULTS = ROOT / "benchmarks" / "results"
CAPS = ["policy.max_thought_tokens=16", "policy.max_deep_tokens=64", "policy.max_answer_tokens=16"]


def _start_server(port: int, max_sessions: int) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "adasr_mm", "serve", "--port", str(port), "--max-sessions", str(max_sessions),
           "--idle-timeout-s", "300", *CAPS]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    import httpx

    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stdout.read() if proc.stdout else ''}")
        time.sleep(0.5)
    raise RuntimeError("server did not come up")


def _level(n: int, port: int, audio: np.ndarray, question: str) -> dict:
    from adasr_mm.client import pcm16_blocks, stream_audio

    results: list = [None] * n
    errors: list[str] = []

    def client(i: int) -> None:
        try:
            results[i] = stream_audio(pcm16_blocks(audio, 24000, 0.1), question, base_url=f"http://127.0.0.1:{port}/v1")
        except Exception as e:  # noqa: BLE001 - counted as an error of this level
            errors.append(f"{type(e).__name__}: {e}")

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
        time.sleep(0.05)
    for t in threads:
        t.join(1800)
    wall = time.perf_counter() - t0
    done = [r for r in results if r is not None]
    summaries = []
    for r in done:
        ev = next((e for e in reversed(r.events) if e.get("type") == "response.done"), None)
        summaries.append(((ev or {}).get("response") or {}).get("adasr") or {})
        errors += [f"{e.get('code')}: {e.get('message')}" for e in r.errors]
    tokens = sum(s.get("stream_tokens", 0) + s.get("deep_tokens", 0) + s.get("answer_tokens", 0) for s in summaries)
    delays = [s["delay_s"] for s in summaries if "delay_s" in s]
    lat = [s["commit_latency_avg_s"] for s in summaries if s.get("commit_latency_avg_s") is not None]
    heard = [s.get("audio_s", 0.0) for s in summaries]
    sent = len(audio) / 24000
    return {"sessions": n, "completed": len(summaries), "wall_s": wall, "policy_tokens": tokens,
            "tokens_per_s": tokens / wall, "delay_p50_s": float(np.percentile(delays, 50)) if delays else None,
            "delay_p95_s": float(np.percentile(delays, 95)) if delays else None,
            "commit_latency_avg_s": float(np.mean(lat)) if lat else None,
            "audio_received_min_s": min(heard) if heard else 0.0, "audio_sent_s": sent, "errors": errors}


def f(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--levels", type=int, nargs="+", default=[1, 4, 8, 16])
    ap.add_argument("--file", default="librispeech_2412-153948-0000.flac")
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--out", default=str(RESULTS / "serve_load.json"))
    a = ap.parse_args()
    from adasr_mm.adapters.audio_io import load_audio

    path = KIT / a.file
    if not path.exists():
        sys.exit(f"the dev kit file {path} is missing")
    audio = load_audio(path, sr=24000)
    proc = _start_server(a.port, max(a.levels))
    rows = []
    try:
        for n in a.levels:
            row = _level(n, a.port, audio, "What is the speaker describing?")
            rows.append(row)
            print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)
    finally:
        proc.terminate()
        proc.wait(30)
    base = rows[0]["tokens_per_s"] if rows and rows[0]["tokens_per_s"] else None
    print("| sessions | completed | policy tok/s | x one session | delay p50 s | p95 s | commit latency avg s | "
          "audio received/sent s | errors |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        x = f"{r['tokens_per_s'] / base:.2f}" if base else "-"
        print(f"| {r['sessions']} | {r['completed']} | {r['tokens_per_s']:.1f} | {x} | {f(r['delay_p50_s'])} | "
              f"{f(r['delay_p95_s'])} | {f(r['commit_latency_avg_s'])} | {r['audio_received_min_s']:.1f}/"
              f"{r['audio_sent_s']:.1f} | {len(r['errors'])} |")
    Path(a.out).write_text(json.dumps({"rows": rows, "load_avg": os.getloadavg(), "file": a.file}, indent=1))


if __name__ == "__main__":
    main()
