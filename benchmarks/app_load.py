"""Load test of the Gradio app: N concurrent sessions with different inputs, each checked for its own trace.

Starts ``python -m apps`` on 127.0.0.1 (a separate process, as a user would), then streams the 8
bundled samples (3 text, 4 spoken, 1 video; instant clock) through the file-mode endpoint with gradio_client,
1, 4 and 8 sessions at a time. Each session is a separate client (its own Gradio session, so its own agent
session). Time to answer = submit -> the page output first shows the final answer; the in-session delay is the
summary's ``delay_s`` (end of stream -> first answer token). Cross-talk check per session: its JSONL has its own
question, only chunks from its own file, and the chunk texts that file gives on its own (text: exact sentences;
video: the describer's chunks computed here; speech: word error rate against the sample's transcript < 0.6).

    python benchmarks/app_load.py [--levels 1,4,8] [--json benchmarks/results/app_load.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
CAPS = ["--max-thought-tokens", "16", "--max-deep-tokens", "64", "--max-answer-tokens", "16"]


def inputs() -> list[dict]:
    out = []
    for kind, names in (("text", ["apples.txt", "train.txt", "bakery.txt"]),
                        ("audio", ["apples.opus", "train.opus", "bakery.opus", "pauses.flac"]),
                        ("video", ["shapes.mp4"])):
        index = json.loads((SAMPLES / kind / "samples.json").read_text())
        for n in names:
            out.append({"kind": kind, "name": n, "path": str(SAMPLES / kind / n), "question": index[n]["question"],
                        "transcript": index[n].get("text", "")})
    return out


def expected_chunks(item: dict) -> list[str] | None:
    if item["kind"] == "text":
        from adasr_mm.adapters.text import chunks_from_text

        return [c.text for c in chunks_from_text(Path(item["path"]).read_text())]
    if item["kind"] == "video":
        from adasr_mm.adapters.video import VideoSource

        return [c.text for c in VideoSource(item["path"])]
    return None


def check(item: dict, events: list[dict], expected: list[str] | None) -> str:
    """'' when the session's trace is its own, else what is wrong."""
    from adasr_mm.adapters.asr import wer

    chunks = [e["chunk"] for e in events if e["type"] == "chunk"]
    if not events or events[-1]["type"] != "summary":
        return "no summary"
    if events[-1]["question"] != item["question"]:
        return f"question {events[-1]['question']!r}"
    if {Path(c["source"]).name for c in chunks} != {item["name"]}:
        return f"chunks from {sorted({Path(c['source']).name for c in chunks})}"
    texts = [c["text"] for c in chunks]
    if expected is not None and texts != expected:
        return "chunk texts differ from the file's own"
    if item["kind"] == "audio" and wer(item["transcript"], " ".join(texts)) >= 0.6:
        return f"transcript mismatch: {' '.join(texts)[:80]!r}"
    return ""


def start_server(port: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "TOKENIZERS_PARALLELISM": "false",
           "GRADIO_HEARTBEAT_INTERVAL": "2"}
    cmd = [sys.executable, "-m", "apps", "--port", str(port), *CAPS, "app.max_runs=8"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    for _ in range(600):
        if proc.poll() is not None:
            raise SystemExit(f"the app exited with {proc.returncode}; see {log}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("the app did not come up in 5 minutes")


def connect(url: str):
    """One client = one browser-like connection (its own Gradio session). Made before the clock starts: a
    page load is not part of answering; a generous timeout because under load the server answers slowly."""
    from gradio_client import Client

    return Client(url, verbose=False, httpx_kwargs={"timeout": 120})


def one_session(url: str, item: dict, client=None) -> dict:
    from gradio_client import handle_file

    client = client or connect(url)
    try:
        t0 = time.perf_counter()
        job = client.submit(handle_file(item["path"]), item["question"], "instant", api_name="/run_file")
        t_answer = None
        while not job.done():
            outs = job.outputs()
            if t_answer is None and outs and 'class="final"' in str(outs[-1][2]):
                t_answer = time.perf_counter() - t0
            time.sleep(0.05)
        status, _trace, answer, _m, _png, jsonl = job.result()
        t_done = time.perf_counter() - t0
        if t_answer is None and 'class="final"' in str(answer):
            t_answer = t_done
        events = [json.loads(x) for x in Path(jsonl).read_text().splitlines()] if jsonl else []
        return {"name": item["name"], "status": status, "t_answer": t_answer, "t_done": t_done, "events": events}
    finally:
        client.close()


def level(url: str, items: list[dict], expected: list, n: int) -> dict:
    clients = [connect(url) for _ in items]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(n) as pool:
        rows = list(pool.map(lambda ic: one_session(url, *ic), zip(items, clients, strict=True)))
    wall = time.perf_counter() - t0
    problems = {}
    for item, row, exp in zip(items, rows, expected, strict=True):
        why = check(item, row["events"], exp) if row["t_answer"] is not None else f"no answer: {row['status']}"
        if why:
            problems[item["name"]] = why
    tta = np.array([r["t_answer"] or np.nan for r in rows], float)
    delay = np.array([r["events"][-1]["delay_s"] if r["events"] else np.nan for r in rows], float)
    return {"concurrent": n, "sessions": len(rows), "answered": int(np.isfinite(tta).sum()),
            "own_trace": len(rows) - len(problems), "problems": problems,
            "tta_p50_s": float(np.nanpercentile(tta, 50)), "tta_p95_s": float(np.nanpercentile(tta, 95)),
            "delay_p50_s": float(np.nanpercentile(delay, 50)), "delay_p95_s": float(np.nanpercentile(delay, 95)),
            "wall_s": wall, "per_session": [{"name": r["name"], "t_answer": r["t_answer"], "t_done": r["t_done"]}
                                            for r in rows]}


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.arange(len(results))
    fig, ax = plt.subplots(figsize=(5, 3), dpi=100)
    ax.bar(x - 0.2, [r["tta_p50_s"] for r in results], 0.4, label="p50")
    ax.bar(x + 0.2, [r["tta_p95_s"] for r in results], 0.4, label="p95")
    ax.set_xticks(x, [f"{r['concurrent']} at once" for r in results])
    ax.set_ylabel("time to answer (s)")
    ax.set_title("8 sessions (text, speech, video), instant clock", fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--levels", default="1,4,8", help="sessions at a time (each level runs all 8 inputs)")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "app_load.json"))
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from apps.launch import free_port

    items = inputs()
    expected = [expected_chunks(it) for it in items]
    port = a.port or free_port("127.0.0.1")
    log = ROOT / "runs" / "app_load_server.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    proc = start_server(port, log)
    startup = time.perf_counter() - t
    url = f"http://127.0.0.1:{port}/"
    results = []
    try:
        one_session(url, items[0])  # warm-up (first-call allocations), not counted
        for n in [int(x) for x in a.levels.split(",")]:
            r = level(url, items, expected, n)
            results.append(r)
            print(f"{n} at once: answered {r['answered']}/{r['sessions']}, own trace {r['own_trace']}/"
                  f"{r['sessions']}, time to answer p50 {r['tta_p50_s']:.1f}s p95 {r['tta_p95_s']:.1f}s, "
                  f"delay p50 {r['delay_p50_s']:.2f}s p95 {r['delay_p95_s']:.2f}s {r['problems'] or ''}",
                  flush=True)
        alive = urllib.request.urlopen(url, timeout=5).status == 200
    finally:
        proc.terminate()
        proc.wait(30)
    out = Path(a.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
              "server": {"startup_s": startup, "caps": CAPS, "clock": "instant", "still_serving": alive},
              "inputs": [it["name"] for it in items], "levels": results}
    out.write_text(json.dumps(result, indent=1) + "\n")
    plot(results, out.with_suffix(".png"))
    print("\n| sessions at once | sessions | answered | own trace | time to answer p50 s | p95 s "
          "| delay p50 s | p95 s |\n|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['concurrent']} | {r['sessions']} | {r['answered']} | {r['own_trace']} | {r['tta_p50_s']:.1f} "
              f"| {r['tta_p95_s']:.1f} | {r['delay_p50_s']:.2f} | {r['delay_p95_s']:.2f} |")


if __name__ == "__main__":
    threading.current_thread().name = "app-load"
    main()
