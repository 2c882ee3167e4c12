"""Driver for the WhisperLiveKit peer rows of ``benchmarks/audio.py``; runs inside the peer's own venv.

WhisperLiveKit pulls a torchaudio that cannot import here, so it never enters the project's venv: ``audio.py
--peer-venv DIR`` runs this file with ``DIR/bin/python``. It imports nothing from adasr_mm. Input: a JSON list of
16 kHz PCM16 WAV paths (decoded by audio.py with PyAV); output: one JSON object per file with the committed text,
commit latencies and CPU time.

Latency: WhisperLiveKit reports committed *lines* with start/end times, not word times. Each time the committed
word count grows, the new words get the wall time since the feed started as their commit time, and an end time
interpolated linearly inside their line (a line's last word ends at the line end). Audio is fed at real time
(speed 1.0, 0.5 s blocks, as ours), so wall time is stream time.

    WLK/bin/python benchmarks/audio_peer_wlk.py --model DIR --threads 1 files.json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time


def _limit_threads(n: int) -> None:
    """WhisperLiveKit builds ``WhisperModel`` without ``cpu_threads``: give it the same thread count as ours."""
    import faster_whisper

    orig = faster_whisper.WhisperModel.__init__

    def init(self, *a, **kw):  # noqa: ANN001, ANN002, ANN003
        kw["cpu_threads"] = n
        kw["compute_type"] = "int8"
        kw["device"] = "cpu"
        orig(self, *a, **kw)

    faster_whisper.WhisperModel.__init__ = init


def _line_words(lines: list[dict]) -> list[tuple[str, float]]:
    """(word, estimated end time) of every committed word, in order."""
    out = []
    for ln in lines:
        words = (ln.get("text") or "").split()
        if not words:
            continue
        s, e = _secs(ln.get("start", 0)), _secs(ln.get("end", 0))
        for i, w in enumerate(words):
            out.append((w, s + (e - s) * (i + 1) / len(words)))
    return out


def _secs(v) -> float:  # noqa: ANN001
    if isinstance(v, (int, float)):
        return float(v)
    parts = [float(p) for p in str(v).split(":")]
    t = 0.0
    for p in parts:
        t = t * 60 + p
    return t


async def run_file(path: str, kwargs: dict) -> dict:
    from whisperlivekit.test_harness import TestHarness

    commits: list[tuple[float, float]] = []  # (commit wall time, word end)
    seen = [0]
    t0 = [0.0]

    def on_update(state) -> None:  # noqa: ANN001
        words = _line_words(state.lines)
        now = time.perf_counter() - t0[0]
        for _, end in words[seen[0]:]:
            commits.append((now, end))
        seen[0] = max(seen[0], len(words))

    async with TestHarness(**kwargs) as h:
        h.on_update(on_update)
        c0 = time.process_time()
        t0[0] = time.perf_counter()
        await h.feed(path, speed=1.0)
        await h.drain(3)
        final = await h.finish()
        cpu = time.process_time() - c0
    on_update(final)
    lat = [max(0.0, c - e) for c, e in commits]
    return {"path": path, "text": final.committed_text, "lines": len([ln for ln in final.lines if ln.get("text")]),
            "line_texts": [ln["text"] for ln in final.lines if ln.get("text")],
            "cpu_s": cpu, "commit_latency_avg_s": sum(lat) / len(lat) if lat else 0.0,
            "commit_latency_max_s": max(lat) if lat else 0.0, "words": len(lat)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="CTranslate2 Whisper dir (the bundled tiny.en)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("files")
    ap.add_argument("out")
    args = ap.parse_args()
    _limit_threads(args.threads)
    kwargs = {"model_size": args.model, "lan": "en", "backend": "faster-whisper",
              "backend_policy": "localagreement", "pcm_input": True}
    results = []
    for path in json.load(open(args.files)):
        results.append(asyncio.run(run_file(path, kwargs)))
        print(json.dumps({"done": path}), flush=True)
    json.dump(results, open(args.out, "w"), indent=1)


if __name__ == "__main__":
    main()
