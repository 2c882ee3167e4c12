"""Delay of streaming vs read-then-think on the bundled samples: same model, same machine, one run.

Both modes replay each sample on the compute-aware simulated clock (text at 150 words/min), so delays are what a
live user would see, without sleeping. Each (sample, mode) runs ``--repeats`` times; the table shows medians.
Two settings: ``natural`` (the model stops reasoning when it emits EOS / </think>) and ``budget`` (both modes
reason to their full budget: streaming max_deep_tokens after the stream, read-then-think the same total budget
max_deep + chunks x max_thought), which is how a reasoning model that uses its budget behaves.

    python benchmarks/latency.py [--policy DIR] [--repeats 3] [--json benchmarks/results/latency.json]
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

from tqdm import tqdm  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples" / "text"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policy", default=None, help="hub id or local dir (default: embedded SmolLM2-135M)")
    ap.add_argument("--config", default=None, help="YAML config")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "latency.json"))
    ap.add_argument("--settings", default="natural,budget", help="comma list of natural,budget")
    args = ap.parse_args(argv)

    import torch
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    from adasr_mm.adapters.text import TextSource
    from adasr_mm.agent import StreamingAgent
    from adasr_mm.config import load_config

    cfg = load_config(args.config)
    agent = StreamingAgent.from_pretrained(policy=args.policy, config=cfg)
    manifest = json.loads((SAMPLES / "samples.json").read_text())
    modes = ("stream", "read-then-think")
    settings = [x.strip() for x in args.settings.split(",") if x.strip()]
    rows = []
    runs = []
    bar = tqdm(total=len(settings) * len(manifest) * len(modes) * args.repeats, desc="latency", file=sys.stderr)
    for setting, name, meta in ((st, n, m) for st in settings for n, m in manifest.items()):
        agent.config.session.fill_deep_budget = setting == "budget"
        source = TextSource(SAMPLES / name, cfg.text)
        chunks = list(source)
        per_mode = {}
        for mode in modes:
            results = []
            for r in range(args.repeats):
                res = agent.run(meta["question"], chunks, mode=mode, clock="simulated", duration=source.duration)
                s = res.summary.to_dict()
                s.update(sample=name, setting=setting, repeat=r, correct=res.answer.strip() == meta["answer"])
                runs.append(s)
                results.append(s)
                bar.update(1)
            med = {k: statistics.median(x[k] for x in results)
                   for k in ("delay_s", "delay_last_s", "stream_tokens", "deep_tokens", "prefill_per_input", "lag_s")}
            med.update(sample=name, setting=setting, mode=mode, chunks=results[0]["chunks"],
                       accuracy=sum(x["correct"] for x in results) / len(results),
                       input_tokens=results[0]["input_tokens"])
            per_mode[mode] = med
        for mode in modes:
            per_mode[mode]["speedup"] = per_mode["read-then-think"]["delay_s"] / max(1e-9, per_mode[mode]["delay_s"])
            rows.append(per_mode[mode])
    bar.close()

    hdr = ("setting", "sample", "mode", "chunks", "stream tok", "deep tok", "prefill/input", "lag max s", "delay s",
           "delay last s", "acc", "speed-up")
    fmt = "| {:<8} | {:<11} | {:<15} | {:>6} | {:>10} | {:>8} | {:>13} | {:>9} | {:>7} | {:>12} | {:>4} | {:>8} |"
    lines = [fmt.format(*hdr), "|" + "|".join("-" * (len(h) + 2) for h in hdr) + "|"]
    lines[1] = "| " + " | ".join("-" * w for w in (8, 11, 15, 6, 10, 8, 13, 9, 7, 12, 4, 8)) + " |"
    for r in rows:
        lines.append(fmt.format(r["setting"], r["sample"], r["mode"], r["chunks"], int(r["stream_tokens"]), int(r["deep_tokens"]),
                                f"{r['prefill_per_input']:.2f}", f"{r['lag_s']:.2f}", f"{r['delay_s']:.2f}",
                                f"{r['delay_last_s']:.2f}", f"{r['accuracy']:.2f}", f"{r['speedup']:.2f}x"))
    means = {}
    lines.append("")
    for setting in settings:
        ms = statistics.mean(r["delay_s"] for r in rows if r["mode"] == "stream" and r["setting"] == setting)
        mr = statistics.mean(r["delay_s"] for r in rows if r["mode"] == "read-then-think" and r["setting"] == setting)
        means[setting] = {"stream": ms, "read-then-think": mr, "speedup": mr / max(ms, 1e-9)}
        lines.append(f"{setting}: mean delay stream {ms:.2f} s, read-then-think {mr:.2f} s, speed-up {mr / ms:.2f}x")
    lines.append(f"(policy {agent.policy.name}, caps thought/deep/answer {cfg.policy.max_thought_tokens}/"
                 f"{cfg.policy.max_deep_tokens}/{cfg.policy.max_answer_tokens}, {args.repeats} repeats, medians)")
    print("\n".join(lines))
    out = {
        "benchmark": "latency",
        "policy": agent.policy.name,
        "dtype": str(next(agent.policy.model.parameters()).dtype),
        "config": cfg.to_dict()["policy"],
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
                    "torch": torch.__version__, "transformers": transformers.__version__},
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "rows": rows,
        "mean_delay_s": means,
        "runs": runs,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
