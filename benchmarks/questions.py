"""Questions about real recordings: does a policy answer what the media says? Policies side by side, one run.

The held-out evals (``adasr-mm eval``) score streams drawn from the templates a policy trained on. A user asks
their own question about their own recording. ``benchmarks/data/kit_questions.json`` holds questions written
about the dev kit's real speech and GRID video (``../shared/media/dev``) from its reference transcripts, each
with every answer form a reader would accept (``check_answer``: numbers numerically, text case-, punctuation-
and article-insensitively). Each file is transcribed once (the audio adapter, streaming Whisper, exactly as
``adasr-mm run`` reads it) and the same chunks go to every policy on the simulated clock, greedy, so the
policies differ only in what they make of the same transcript. Prints a table per question and a summary, and
writes JSON.

    python benchmarks/questions.py [--policy LABEL=DIR ...] [--kit DIR] [--json PATH]

``--policy shipped=default`` (the default) is the shipped adapter; ``base`` is the untrained SmolLM2; a dir is
any saved policy or adapter.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
KIT = ROOT.parent / "shared" / "media" / "dev"
QUESTIONS = ROOT / "benchmarks" / "data" / "kit_questions.json"
RESULTS = ROOT / "benchmarks" / "results"


def transcribe(agent, kit: Path, files: list[str]) -> dict[str, list]:
    """Each file's chunks, read once through the media adapters (``adasr-mm run``'s path)."""
    return {f: list(agent.open(kit / f)) for f in files}


def ask(agent, question: dict, chunks: list) -> dict:
    from adasr_mm.training.data import check_answer

    res = agent.run(question["question"], chunks, clock="simulated", duration=chunks[-1].end if chunks else None)
    return {"answer": res.answer, "correct": any(check_answer(res.answer, a) for a in question["answers"]),
            "delay_s": res.summary.delay_s, "thoughts": res.summary.thoughts, "skips": res.summary.skips}


def _sets(questions: list[dict]) -> dict[str, list[int]]:
    """Question indices per set (the sets were written at different times: see the JSON's ``about``), and all."""
    sets: dict[str, list[int]] = {}
    for i, q in enumerate(questions):
        sets.setdefault(q.get("set", "-"), []).append(i)
    return {**sets, "all": list(range(len(questions)))} if len(sets) > 1 else sets


def table(questions: list[dict], runs: dict[str, list[dict]], transcripts: dict[str, str]) -> list[str]:
    labels = list(runs)
    lines = ["| set | file | question | accepted | " + " | ".join(labels) + " |", "|---" * (4 + len(labels)) + "|"]
    for i, q in enumerate(questions):
        cells = [f"{'**' if runs[lb][i]['correct'] else ''}{runs[lb][i]['answer'][:40]}"
                 f"{'**' if runs[lb][i]['correct'] else ''}" for lb in labels]
        lines.append(f"| {q.get('set', '-')} | {q['file'][:24]} | {q['question']} | {' / '.join(q['answers'][:2])} | "
                     + " | ".join(cells) + " |")
    lines += ["", "| policy | set | right | of | accuracy | delay median s |", "|---|---|---|---|---|---|"]
    for lb in labels:
        for name, idx in _sets(questions).items():
            rs = [runs[lb][i] for i in idx]
            right = sum(r["correct"] for r in rs)
            lines.append(f"| {lb} | {name} | {right} | {len(rs)} | {right / len(rs):.3f} | "
                         f"{statistics.median(r['delay_s'] for r in rs):.2f} |")
    lines += ["", "What the audio adapter heard:"] + [f"- {f}: {t}" for f, t in transcripts.items()]
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policy", nargs="+", default=["shipped=default"], metavar="LABEL=POLICY [key=value ...]",
                    help="policies to compare: default (shipped), base (untrained), a dir or hub id; config "
                         "overrides may follow: 'alone=default policy.calculator=false'")
    ap.add_argument("--config", default=None,
                    help="YAML config (ASR model, caps; threads: asr.cpu_threads / pipeline.torch_threads, split "
                         "between Whisper and torch as adasr-mm run does)")
    ap.add_argument("--kit", default=str(KIT))
    ap.add_argument("--questions", default=str(QUESTIONS))
    ap.add_argument("--json", default=str(RESULTS / "questions.json"))
    args = ap.parse_args(argv)
    kit = Path(args.kit)
    if not (kit / "references.json").is_file():
        print(f"questions: no dev kit at {kit} (references.json missing)", file=sys.stderr)
        return 2

    import torch
    import transformers
    from tqdm import tqdm

    transformers.utils.logging.set_verbosity_error()
    from adasr_mm.agent import StreamingAgent
    from adasr_mm.config import load_config

    questions = json.loads(Path(args.questions).read_text())["questions"]
    pairs = [p.split("=", 1) if "=" in p else (p, p) for p in args.policy]
    files = sorted({q["file"] for q in questions})
    runs: dict[str, list[dict]] = {}
    chunks: dict[str, list] = {}
    for label, spec in pairs:
        policy, *overrides = spec.split()  # "default policy.calculator=false": a policy and its config overrides
        cfg = load_config(args.config, [f"policy.policy={policy}", "policy.temperature=0", *overrides])
        agent = StreamingAgent.from_pretrained(config=cfg)
        if not chunks:
            chunks = transcribe(agent, kit, files)
        runs[label] = [ask(agent, q, chunks[q["file"]])
                       for q in tqdm(questions, desc=f"questions {label}", file=sys.stderr)]
        del agent
    transcripts = {f: " | ".join(c.text for c in cs) for f, cs in chunks.items()}
    print("\n".join(table(questions, runs, transcripts)))
    print(f"(greedy, simulated clock, torch threads {torch.get_num_threads()}, load {os.getloadavg()[0]:.1f})")
    out = {"benchmark": "questions", "date": time.strftime("%Y-%m-%d %H:%M:%S"), "policies": dict(pairs),
           "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                       "python": platform.python_version(), "torch": torch.__version__},
           "summary": {lb: {name: sum(rs[i]["correct"] for i in idx) / len(idx)
                            for name, idx in _sets(questions).items()} for lb, rs in runs.items()},
           "transcripts": transcripts,
           "runs": {lb: [{**q, **r} for q, r in zip(questions, rs, strict=True)] for lb, rs in runs.items()}}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
