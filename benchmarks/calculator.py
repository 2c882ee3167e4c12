"""The calculator tool side by side: one policy with and without it on the same held-out streams, paired.

Every stream runs twice, greedy on the simulated clock with the evaluation's settings (``adasr-mm eval``): once with
``policy.calculator`` off (the policy writes every digit itself) and once on (the runtime writes the exact result
after "a op b ="). Greedy evaluation does not depend on the machine's speed, so the two runs differ only in the
tool. Prints, per data set, right answers either way, the paired split and a two-sided sign test; writes JSON.

    python benchmarks/calculator.py [--data builtin:novel builtin ...] [--split validation] [--n 192]
                                    [--policy DIR] [--asr-style 1] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact sign test of ``wins`` against ``losses`` (ties left out)."""
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(wins, losses) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def run_set(agent, samples: list, label: str) -> list[dict]:
    """Both runs of every sample: answers, right or not, tokens, calculator tokens."""
    from tqdm import tqdm

    from adasr_mm.training.data import check_answer

    rows = []
    for s in tqdm(samples, desc=f"calculator {label}", file=sys.stderr):
        row = {"id": s.id, "gold": s.answer}
        for name, on in (("off", False), ("on", True)):
            agent.policy.config.calculator = on
            res = agent.run(s.question, s.chunks, mode="stream", clock="simulated")
            row[name] = {"answer": res.answer, "right": bool(check_answer(res.answer, s.answer)),
                         "generated": res.summary.stream_tokens + res.summary.deep_tokens + res.summary.answer_tokens,
                         "tool_tokens": res.state.tool_tokens, "delay_s": round(res.summary.delay_s, 3)}
        rows.append(row)
    return rows


def summarize(rows: list[dict]) -> dict:
    off = sum(r["off"]["right"] for r in rows)
    on = sum(r["on"]["right"] for r in rows)
    only_on = sum(r["on"]["right"] and not r["off"]["right"] for r in rows)
    only_off = sum(r["off"]["right"] and not r["on"]["right"] for r in rows)
    n = len(rows)
    return {"n": n, "right_off": off, "right_on": on, "only_on": only_on, "only_off": only_off,
            "p_sign": float(f"{sign_test(only_on, only_off):.3g}"),
            "generated_off": round(sum(r["off"]["generated"] for r in rows) / n, 2),
            "generated_on": round(sum(r["on"]["generated"] for r in rows) / n, 2),
            "tool_tokens_on": round(sum(r["on"]["tool_tokens"] for r in rows) / n, 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", nargs="+", default=["builtin:novel", "builtin"])
    ap.add_argument("--split", default="validation")
    ap.add_argument("--n", type=int, default=192)
    ap.add_argument("--policy", default="", help="policy dir or id; empty = the shipped adapter")
    ap.add_argument("--asr-style", type=float, default=0.0, help="text chunks as streaming ASR writes them")
    ap.add_argument("--config", default=str(ROOT / "configs" / "train" / "default-policy.yaml"))
    ap.add_argument("--json", default=str(RESULTS / "calculator.json"))
    args = ap.parse_args(argv)

    import transformers

    transformers.utils.logging.set_verbosity_error()
    from adasr_mm.agent import StreamingAgent
    from adasr_mm.training.asr_style import asr_style_sample
    from adasr_mm.training.config import load_train_config
    from adasr_mm.training.data import load_samples
    from adasr_mm.training.evaluate import _eval_config

    cfg = load_train_config(args.config, [])
    agent = StreamingAgent.from_pretrained(config=_eval_config(args.policy or None, cfg))
    out = {"benchmark": "calculator", "date": time.strftime("%Y-%m-%d %H:%M:%S"), "policy": args.policy or "shipped",
           "split": args.split, "asr_style": args.asr_style, "sets": {}, "rows": {}}
    print("| data | streams | right, policy alone | right, with calculator | only with / only without | sign test p "
          "| generated tokens alone / with | calculator tokens |")
    print("|---|---|---|---|---|---|---|---|")
    for data in args.data:
        samples = load_samples(data, args.split, "text", limit=args.n)
        if args.asr_style > 0:
            samples = [asr_style_sample(s, s.chunks, cfg.train.seed, args.asr_style) for s in samples]
        rows = run_set(agent, samples, data)
        s = out["sets"][data] = summarize(rows)
        out["rows"][data] = rows
        print(f"| {data} | {s['n']} | {s['right_off']} ({s['right_off'] / s['n']:.3f}) | {s['right_on']} "
              f"({s['right_on'] / s['n']:.3f}) | {s['only_on']} / {s['only_off']} | {s['p_sign']:.2g} | "
              f"{s['generated_off']} / {s['generated_on']} | {s['tool_tokens_on']} |", flush=True)
    Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
