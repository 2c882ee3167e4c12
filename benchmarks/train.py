"""Training benchmark on this CPU: does a short SFT + HRPO run help, and what does HRPO cost vs GRPO?

One run, same machine, same data:
1. SFT warm start of the embedded SmolLM2-135M on built-in streaming word problems (shared by all RL runs).
2. HRPO vs GRPO step time: the same number of RL steps from the SFT checkpoint, interleaved step by step.
3. Equal budget over ``--seeds`` seeds: HRPO and GRPO each train ``--rl-steps`` steps from the SFT checkpoint;
   final reward terms / accuracy / tokens on held-out streams.
4. Held-out comparison: untrained embedded model vs SFT vs HRPO (stream mode) and read-then-think reasoning tokens.

Prints tables and writes ``benchmarks/results/train.json`` (and the RL metric plots under the work dir).

    python benchmarks/train.py [--sft-steps 60] [--rl-steps 4] [--seeds 3] [--n-train 48] [--n-eval 12]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sft-steps", type=int, default=40)
    ap.add_argument("--rl-steps", type=int, default=4)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--n-train", type=int, default=48)
    ap.add_argument("--n-eval", type=int, default=12)
    ap.add_argument("--work", default=str(ROOT / "runs" / "bench-train"))
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "train.json"))
    args = ap.parse_args(argv)

    import transformers

    transformers.utils.logging.set_verbosity_error()
    from adasr_mm.training.cli import TrainConfig, _load_model, load_run_samples
    from adasr_mm.training.evaluate import evaluate
    from adasr_mm.training.rewards import RewardConfig
    from adasr_mm.training.sft import SFTStageConfig, run_sft
    from adasr_mm.training.trainer import HRPOTrainer, RLStageConfig

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    cfg = TrainConfig()
    cfg.train.n_train, cfg.train.n_eval = args.n_train, args.n_eval
    cfg.rl = RLStageConfig(max_steps=args.rl_steps, num_generations=4, learning_rate=2e-6, max_thought_tokens=16,
                           max_deep_tokens=48, max_answer_tokens=12, save_steps=10_000)
    train = load_run_samples(cfg, "train", args.n_train)
    test = load_run_samples(cfg, "test", args.n_eval)
    out: dict = {"benchmark": "train", "date": time.strftime("%Y-%m-%d %H:%M:%S"), "cpus": os.cpu_count(),
                 "n_train": len(train), "n_eval": len(test), "sft_steps": args.sft_steps, "rl_steps": args.rl_steps}

    # 1. SFT warm start
    sft_dir = work / "sft"
    if not (sft_dir / "config.json").is_file():
        model, tok = _load_model(None)
        out["sft"] = run_sft(model, tok, train, SFTStageConfig(max_steps=args.sft_steps), str(sft_dir))
    print(f"sft: {out.get('sft', 'reused ' + str(sft_dir))}", file=sys.stderr)

    # 2 + 3. HRPO vs GRPO, equal budget, several seeds; step times measured in the same runs
    runs = []
    for seed in range(args.seeds):
        for adv in ("hrpo", "grpo"):
            model, tok = _load_model(str(sft_dir))
            rl = RLStageConfig(**{**cfg.rl.__dict__, "advantage": adv, "seed": seed})
            tr = HRPOTrainer(model, tok, train, rl, RewardConfig(), str(work / f"rl-{adv}-{seed}"))
            t0 = time.perf_counter()
            tr.train()
            secs = time.perf_counter() - t0
            final = work / f"final-{adv}-{seed}"
            tr.save_model(str(final))
            tok.save_pretrained(str(final))
            logs = [h for h in tr.state.log_history if "hrpo/accuracy" in h]
            ev = evaluate(str(final), test, cfg, "stream")
            runs.append({"advantage": adv, "seed": seed, "seconds": secs, "step_s": secs / args.rl_steps,
                         "train_reward_last": logs[-1].get("reward") if logs else None, **{f"eval_{k}": v
                                                                                          for k, v in ev.items()}})
            print(f"{adv} seed {seed}: {secs / args.rl_steps:.1f} s/step, eval {ev}", file=sys.stderr)
    out["rl_runs"] = runs

    # 4. untrained vs SFT vs trained (HRPO seed 0), and read-then-think reasoning length
    base = {mode: evaluate(None, test, cfg, mode) for mode in ("stream", "read-then-think")}
    sft = evaluate(str(sft_dir), test, cfg, "stream")
    hrpo = next(r for r in runs if r["advantage"] == "hrpo" and r["seed"] == 0)
    out["heldout"] = {"untrained/stream": base["stream"], "untrained/read-then-think": base["read-then-think"],
                      "sft/stream": sft,
                      "hrpo/stream": {k.removeprefix("eval_"): v for k, v in hrpo.items() if k.startswith("eval_")}}

    keys = ["accuracy", "format", "stream_tokens", "deep_tokens", "skip_rate", "delay_s"]
    print("| model/mode | " + " | ".join(keys) + " |\n|---" + "|---" * len(keys) + "|")
    for name, r in out["heldout"].items():
        print(f"| {name} | " + " | ".join(f"{r[k]:.3f}" for k in keys) + " |")
    print("\n| advantage | s/step (mean) | eval accuracy (mean ± sd) | eval format | deep tokens | stream tokens |")
    print("|---|---|---|---|---|---|")
    summary = {}
    for adv in ("hrpo", "grpo"):
        rs = [r for r in runs if r["advantage"] == adv]

        def ms(k, rs=rs):
            v = [r[k] for r in rs]
            return statistics.mean(v), (statistics.stdev(v) if len(v) > 1 else 0.0)

        summary[adv] = {k: ms(k) for k in ("step_s", "eval_accuracy", "eval_format", "eval_deep_tokens",
                                           "eval_stream_tokens")}
        s = summary[adv]
        print(f"| {adv} | {s['step_s'][0]:.1f} | {s['eval_accuracy'][0]:.3f} ± {s['eval_accuracy'][1]:.3f} | "
              f"{s['eval_format'][0]:.3f} | {s['eval_deep_tokens'][0]:.1f} | {s['eval_stream_tokens'][0]:.1f} |")
    overhead = summary["hrpo"]["step_s"][0] / summary["grpo"]["step_s"][0] - 1
    print(f"\nHRPO step-time overhead vs GRPO: {overhead * 100:+.1f}% (target <= 5%; rollouts dominate both)")
    out["summary"] = summary
    out["hrpo_overhead"] = overhead
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=1, default=str))
    print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
