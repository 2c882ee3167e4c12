"""benchmarks/demo_transcripts.py: a real ``adasr-mm run --output`` log becomes a replayable transcript, once."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("bench_demo", ROOT / "benchmarks" / "demo_transcripts.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_run_logs_become_transcripts_once_and_replay_as_chunks(tmp_path):
    from adasr_mm.chunks import TimedChunk

    log = tmp_path / "run.jsonl"
    r = subprocess.run([sys.executable, "-m", "adasr_mm", "run", str(ROOT / "samples" / "text" / "apples.txt"),
                        "--question", "How many apples does Tom have now?", "--clock", "instant",
                        "--output", str(log)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    chunks = bench.chunks_of_log(log)
    text = (ROOT / "samples" / "text" / "apples.txt").read_text()
    assert len(chunks) >= 3 and all(c["text"] in text for c in chunks)
    data = {"transcripts": []}
    assert bench.add_logs(data, [log, log]) == 1 and bench.add_logs(data, [log]) == 0
    again = [TimedChunk.from_dict(c) for c in data["transcripts"][0]["chunks"]]
    assert [c.text for c in again] == [c["text"] for c in chunks]
    assert [c.end for c in again] == sorted(c.end for c in again)


def test_committed_transcripts_load():
    data = json.loads((ROOT / "benchmarks" / "data" / "demo_transcripts.json").read_text())
    texts = [tuple(c["text"] for c in t["chunks"]) for t in data["transcripts"]]
    assert len(set(texts)) == len(texts) >= 2
    from adasr_mm.chunks import TimedChunk

    for t in data["transcripts"]:
        assert [TimedChunk.from_dict(c).modality for c in t["chunks"]] == ["audio"] * len(t["chunks"])
