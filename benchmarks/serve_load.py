"""Load on `adasr-mm serve`: 1, 4, 8 and 16 concurrent Realtime clients streaming real speech at real-time pace,
with continuous batching on and off side by side.

One server process per setting (`adasr-mm serve serve.batching=true|false`, as a user would start it), both
started up front; at each level the clients run against "off" and then "on", so both see the same machine load.
Each client is the project's `adasr_mm.client.stream_audio` (the official openai SDK underneath) on its own
thread, streaming a real recording from ../shared/media/dev as 24 kHz PCM16 in 100 ms appends, then asking for
the answer. Per level and setting: aggregate policy tokens/s (stream + deep + answer tokens of all sessions / wall
time), p50/p95 delay to the first answer token after the stream ended, ASR commit latency, errors, audio the
server received vs sent, and (batching on) the scheduler's rows per model call.

    python benchmarks/serve_load.py [--levels 1 4 8 16] [--batching off on] [--file librispeech_2412-153948-0000.flac]
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


def _start_server(port: int, max_sessions: int, batching: bool) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "adasr_mm", "serve", "--port", str(port), "--max-sessions", str(max_sessions),
           "--idle-timeout-s", "300", *CAPS, f"serve.batching={str(batching).lower()}"]
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


def _scheduler(port: int) -> dict:
    import httpx

    return httpx.get(f"http://127.0.0.1:{port}/health", timeout=10).json().get("scheduler") or {}


def _level(n: int, port: int, audio: np.ndarray, question: str) -> dict:
    from adasr_mm.client import pcm16_blocks, stream_audio

    before = _scheduler(port)

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
    after = _scheduler(port)
    calls = {k: after.get(k, 0) - before.get(k, 0) for k in ("decode_calls", "prefill_calls", "prompt_calls",
                                                             "rows_served", "sub_batch_calls", "gather_timeouts")}
    batched = calls["decode_calls"] + calls["prefill_calls"]
    return {"sessions": n, "completed": len(summaries), "wall_s": wall, "policy_tokens": tokens,
            "tokens_per_s": tokens / wall, "delay_p50_s": float(np.percentile(delays, 50)) if delays else None,
            "delay_p95_s": float(np.percentile(delays, 95)) if delays else None,
            "commit_latency_avg_s": float(np.mean(lat)) if lat else None,
            "audio_received_min_s": min(heard) if heard else 0.0, "audio_sent_s": sent, "errors": errors,
            "scheduler": {**calls, "rows_per_call": calls["rows_served"] / batched if batched else None} if after
            else None, "load_avg_1m": os.getloadavg()[0]}


def f(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def table(rows: list[dict]) -> str:
    """The markdown table: per level, batching off and on; x one session = tok/s over the same setting's 1-session
    row, on/off = on's tok/s over off's at the same level."""
    one = {r["batching"]: r["tokens_per_s"] for r in rows if r["sessions"] == 1}
    off = {r["sessions"]: r["tokens_per_s"] for r in rows if not r["batching"]}
    out = ["| sessions | batching | completed | policy tok/s | x one session | on/off | delay p50 s | p95 s | "
           "commit latency avg s | audio received/sent s | rows/call | errors | load 1m |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        base = one.get(r["batching"])
        x = f"{r['tokens_per_s'] / base:.2f}" if base else "-"
        vs = f"{r['tokens_per_s'] / off[r['sessions']]:.2f}" if r["batching"] and off.get(r["sessions"]) else "-"
        rpc = (r.get("scheduler") or {}).get("rows_per_call")
        out.append(f"| {r['sessions']} | {'on' if r['batching'] else 'off'} | {r['completed']} | "
                   f"{r['tokens_per_s']:.1f} | {x} | {vs} | {f(r['delay_p50_s'])} | {f(r['delay_p95_s'])} | "
                   f"{f(r['commit_latency_avg_s'])} | {r['audio_received_min_s']:.1f}/{r['audio_sent_s']:.1f} | "
                   f"{f(rpc)} | {len(r['errors'])} | {r['load_avg_1m']:.1f} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--levels", type=int, nargs="+", default=[1, 4, 8, 16])
    ap.add_argument("--batching", nargs="+", choices=["off", "on"], default=["off", "on"],
                    help="settings to compare (each gets its own server process); each level runs them in this order")
    ap.add_argument("--file", default="librispeech_2412-153948-0000.flac")
    ap.add_argument("--port", type=int, default=8765, help="first port; the second server uses the next one")
    ap.add_argument("--out", default=str(RESULTS / "serve_load.json"))
    ap.add_argument("--no-warmup", dest="warmup", action="store_false",
                    help="skip the unrecorded first session per server")
    a = ap.parse_args()
    from adasr_mm.adapters.audio_io import load_audio

    path = KIT / a.file
    if not path.exists():
        sys.exit(f"the dev kit file {path} is missing")
    audio = load_audio(path, sr=24000)
    ports = {mode: a.port + i for i, mode in enumerate(a.batching)}
    procs: dict[str, subprocess.Popen] = {}
    rows = []
    try:
        for mode, port in ports.items():
            procs[mode] = _start_server(port, max(a.levels), mode == "on")
        if a.warmup:  # first calls (Whisper, torch allocations) are not load: one unrecorded session per server
            for mode, port in ports.items():
                w = _level(1, port, audio, "What is the speaker describing?")
                print(f"warm-up ({mode}): {w['completed']} session, {len(w['errors'])} errors", flush=True)
        for n in a.levels:
            for mode in a.batching:
                row = {"batching": mode == "on", **_level(n, ports[mode], audio, "What is the speaker describing?")}
                rows.append(row)
                print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}),
                      flush=True)
    finally:
        for proc in procs.values():
            proc.terminate()
            proc.wait(30)
    print(table(rows))
    Path(a.out).write_text(json.dumps({"rows": rows, "load_avg": os.getloadavg(), "file": a.file,
                                       "audio_s": len(audio) / 24000, "caps": CAPS}, indent=1))


if __name__ == "__main__":
    main()
