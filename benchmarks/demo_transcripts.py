"""The demo's answer per Whisper transcript: policies side by side on every transcript the audio adapter wrote.

``make demo`` streams ``samples/audio/apples.opus`` in real time. Whisper's pass cadence follows compute time, so
runs differ in how the sentences fall into chunks (a period kept or not, two updates run into one chunk), and a
run's answer mixes the ASR's luck with the policy's reading. This replays each distinct transcript that real runs
produced (their chunks, times and availability as logged by ``adasr-mm run --output``) through every policy on
the simulated clock, greedy, so the policies differ only in what they make of the same chunks.

    python benchmarks/demo_transcripts.py [--policy LABEL=DIR ...] [--add-logs RUN.jsonl ...] [--json PATH]

A policy may carry config overrides after its dir: ``--policy "alone=default policy.calculator=false"``.

``--add-logs`` adds the transcripts of new run logs to ``benchmarks/data/demo_transcripts.json`` (deduplicated by
chunk text) before replaying.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "benchmarks" / "data" / "demo_transcripts.json"
RESULTS = ROOT / "benchmarks" / "results"


def chunks_of_log(path: Path) -> list[dict]:
    """The chunk events of one ``adasr-mm run --output`` log, as chunk dicts."""
    events = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [e["chunk"] for e in events if e.get("type") == "chunk"]


def add_logs(data: dict, logs: list[Path]) -> int:
    """Append the transcripts of ``logs`` not yet in ``data``; returns how many were new."""
    seen = {tuple(c["text"] for c in t["chunks"]) for t in data["transcripts"]}
    new = 0
    for log in logs:
        chunks = chunks_of_log(log)
        key = tuple(c["text"] for c in chunks)
        if chunks and key not in seen:
            seen.add(key)
            data["transcripts"].append({"from": str(log), "chunks": chunks})
            new += 1
    return new


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policy", nargs="+", default=["shipped=default"], metavar="LABEL=POLICY [key=value ...]")
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--add-logs", nargs="*", default=[], metavar="RUN.jsonl")
    ap.add_argument("--json", default=str(RESULTS / "demo_transcripts.json"))
    args = ap.parse_args(argv)
    data = json.loads(Path(args.data).read_text())
    if args.add_logs:
        print(f"added {add_logs(data, [Path(p) for p in args.add_logs])} transcripts", file=sys.stderr)
        Path(args.data).write_text(json.dumps(data, indent=1) + "\n")

    import transformers
    from tqdm import tqdm

    transformers.utils.logging.set_verbosity_error()
    from adasr_mm.agent import StreamingAgent
    from adasr_mm.chunks import TimedChunk
    from adasr_mm.config import load_config
    from adasr_mm.training.data import check_answer

    pairs = [p.split("=", 1) if "=" in p else (p, p) for p in args.policy]
    runs: dict[str, list[str]] = {}
    for label, policy in pairs:
        policy, *overrides = policy.split()
        agent = StreamingAgent.from_pretrained(config=load_config(None, [f"policy.policy={policy}",
                                                                         "policy.temperature=0", *overrides]))
        runs[label] = []
        for t in tqdm(data["transcripts"], desc=f"demo transcripts {label}", file=sys.stderr):
            chunks = [TimedChunk.from_dict(c) for c in t["chunks"]]
            res = agent.run(data["question"], chunks, clock="simulated", duration=chunks[-1].end)
            runs[label].append(res.answer)
        del agent
    labels = list(runs)
    print("| # | chunks (as Whisper wrote them) | " + " | ".join(labels) + " |")
    print("|---" * (2 + len(labels)) + "|")
    for i, t in enumerate(data["transcripts"]):
        cells = [f"**{runs[lb][i]}**" if check_answer(runs[lb][i], data["answer"]) else runs[lb][i] for lb in labels]
        print(f"| {i} | {' / '.join(c['text'] for c in t['chunks'])} | " + " | ".join(cells) + " |")
    right = {lb: sum(check_answer(a, data["answer"]) for a in runs[lb]) for lb in labels}
    print("| | right of " + str(len(data["transcripts"])) + " | " + " | ".join(str(right[lb]) for lb in labels) + " |")
    out = {"benchmark": "demo_transcripts", "date": time.strftime("%Y-%m-%d %H:%M:%S"), "policies": dict(pairs),
           "question": data["question"], "answer": data["answer"], "right": right,
           "answers": runs, "transcripts": [[c["text"] for c in t["chunks"]] for t in data["transcripts"]]}
    Path(args.json).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
