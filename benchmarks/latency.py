"""Delay to the first answer token, streaming vs read-then-think: same model, natural stopping, one run.

The claim adasr-mm exists for: a policy that thinks while the stream plays answers sooner after the stream ends
than the same policy reading everything first. Measured with the shipped default policy (or ``--policy``), greedy,
natural stopping (the model ends its reasoning itself; no budget forcing, no masked stop tokens), on

- built-in standard-level word problems padded with distractors to 4, 8, 16 and 32 sentences (the same problems
  at every length, so only the stream length changes), and
- GSM-Symbolic problems (``train.data=gsm-symbolic``, held-out templates), when the package is installed,

both on the compute-aware ``simulated`` clock (text at 150 words/min), plus a ``realtime`` check of the simulated
clock on the shorter streams. Prints tables, writes JSON and a PNG of delay vs stream length.

    python benchmarks/latency.py [--policy default|base|DIR] [--n 8] [--lengths 4,8,16,32] [--gsm 16]
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
RESULTS = ROOT / "benchmarks" / "results"
MODES = ("stream", "read-then-think")


def _run(agent, sample, mode: str, clock: str) -> dict:
    from adasr_mm.training.data import check_answer

    res = agent.run(sample.question, sample.chunks, mode=mode, clock=clock, duration=sample.chunks[-1].end)
    s = res.summary
    return {"id": sample.id, "mode": mode, "clock": clock, "chunks": s.chunks, "delay_s": s.delay_s,
            "correct": bool(check_answer(res.answer, sample.answer)), "answer": res.answer,
            "stream_tokens": s.stream_tokens, "deep_tokens": s.deep_tokens, "answer_tokens": s.answer_tokens,
            "skips": s.skips, "format_violations": s.format_violations}


def _summarise(runs: list[dict]) -> dict:
    return {"n": len(runs), "accuracy": statistics.mean(r["correct"] for r in runs),
            "delay_s": statistics.median(r["delay_s"] for r in runs),
            "delay_mean_s": statistics.mean(r["delay_s"] for r in runs),
            "stream_tokens": statistics.mean(r["stream_tokens"] for r in runs),
            "deep_tokens": statistics.mean(r["deep_tokens"] + r["answer_tokens"] for r in runs)}


def _table(groups: dict[str, dict[str, dict]]) -> list[str]:
    lines = ["| stream | mode | n | accuracy | delay median s | delay mean s | stream tok | deep+answer tok | "
             "rtt / stream delay |", "|---|---|---|---|---|---|---|---|---|"]
    for name, by_mode in groups.items():
        ratio = by_mode["read-then-think"]["delay_s"] / max(1e-9, by_mode["stream"]["delay_s"])
        for mode in MODES:
            r = by_mode[mode]
            lines.append(f"| {name} | {mode} | {r['n']} | {r['accuracy']:.2f} | {r['delay_s']:.2f} | "
                         f"{r['delay_mean_s']:.2f} | {r['stream_tokens']:.1f} | {r['deep_tokens']:.1f} | "
                         + (f"{ratio:.2f}x |" if mode == "stream" else "|"))
    return lines


def _plot(groups: dict[str, dict[str, dict]], lengths: list[int], path: Path, policy: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for mode, marker in zip(MODES, ("o", "s"), strict=True):
        ys = [groups[f"{n} sentences"][mode]["delay_s"] for n in lengths]
        accs = [groups[f"{n} sentences"][mode]["accuracy"] for n in lengths]
        ax.plot(lengths, ys, marker=marker, label=mode)
        ax2.plot(lengths, accs, marker=marker, label=mode)
    for a, title, yl in ((ax, "delay to first answer token", "seconds after the stream ended (median)"),
                         (ax2, "accuracy", "fraction correct")):
        a.set_xscale("log", base=2)
        a.set_xticks(lengths, [str(n) for n in lengths])
        a.set_xlabel("stream length (sentences, 150 words/min)")
        a.set_ylabel(yl)
        a.set_title(title)
        a.grid(alpha=0.3)
        a.legend()
    fig.suptitle(f"streaming vs read-then-think, {policy}, natural stopping, simulated clock")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policy", default="default", help="default (shipped), base (untrained), a dir or hub id")
    ap.add_argument("--config", default=None, help="YAML config (caps, threads)")
    ap.add_argument("--n", type=int, default=8, help="problems per stream length")
    ap.add_argument("--lengths", default="4,8,16,32")
    ap.add_argument("--gsm", type=int, default=16, help="GSM-Symbolic test problems (0 = skip)")
    ap.add_argument("--realtime", type=int, default=2,
                    help="problems per length (of the two shortest) also run on the realtime clock")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--json", default=str(RESULTS / "latency.json"))
    ap.add_argument("--png", default=str(RESULTS / "latency.png"))
    args = ap.parse_args(argv)

    import torch
    import transformers

    torch.set_num_threads(args.threads)
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    from adasr_mm.agent import StreamingAgent
    from adasr_mm.config import load_config
    from adasr_mm.training.tasks import make_word_problem

    cfg = load_config(args.config, [f"policy.policy={args.policy}", "policy.temperature=0"])
    agent = StreamingAgent.from_pretrained(config=cfg)
    lengths = [int(x) for x in args.lengths.split(",")]
    sets = {f"{n} sentences": [make_word_problem(1_000_000 + i, "standard", n_sentences=n) for i in range(args.n)]
            for n in lengths}
    if args.gsm:
        try:
            from adasr_mm.training.data import load_samples

            sets["GSM-Symbolic"] = load_samples("gsm-symbolic", split="test", modality="text", limit=args.gsm)
        except Exception as e:  # noqa: BLE001 - optional data: say why and go on
            print(f"latency: GSM-Symbolic skipped: {e}", file=sys.stderr)
    rt_lengths = lengths[:2]
    total = sum(len(v) for v in sets.values()) * 2 + len(rt_lengths) * args.realtime * 2
    bar = tqdm(total=total, desc="latency", file=sys.stderr)
    runs: list[dict] = []
    for name, samples in sets.items():
        for s in samples:
            for mode in MODES:
                runs.append({"set": name, **_run(agent, s, mode, "simulated")})
                bar.update(1)
    for n in rt_lengths:
        for s in sets[f"{n} sentences"][: args.realtime]:
            for mode in MODES:
                runs.append({"set": f"{n} sentences", **_run(agent, s, mode, "realtime")})
                bar.update(1)
    bar.close()

    groups = {name: {m: _summarise([r for r in runs if r["set"] == name and r["mode"] == m
                                    and r["clock"] == "simulated"]) for m in MODES} for name in sets}
    lines = _table(groups)
    check = ["", "| stream | mode | id | simulated delay s | realtime delay s | realtime / simulated |",
             "|---|---|---|---|---|---|"]
    for r in (r for r in runs if r["clock"] == "realtime"):
        sim = next(x for x in runs if x["clock"] == "simulated" and x["id"] == r["id"] and x["mode"] == r["mode"])
        check.append(f"| {r['set']} | {r['mode']} | {r['id']} | {sim['delay_s']:.2f} | {r['delay_s']:.2f} | "
                     f"{r['delay_s'] / max(1e-9, sim['delay_s']):.2f} |")
    print("\n".join(lines + check))
    print(f"(policy {agent.policy.name}, greedy, natural stopping, caps thought/deep/answer "
          f"{cfg.policy.max_thought_tokens}/{cfg.policy.max_deep_tokens}/{cfg.policy.max_answer_tokens}, "
          f"torch threads {torch.get_num_threads()}, load {os.getloadavg()[0]:.1f})")
    _plot(groups, lengths, Path(args.png), agent.policy.name)
    out = {"benchmark": "latency", "policy": agent.policy.name, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
           "config": cfg.to_dict()["policy"], "load_end": os.getloadavg(),
           "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                       "python": platform.python_version(), "torch": torch.__version__},
           "groups": groups, "runs": runs}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.json} and {args.png}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
