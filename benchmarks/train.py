"""Training benchmark on this CPU: does a short SFT + HRPO run help, and what does HRPO cost vs GRPO?

One run, same machine, same data:
1. SFT warm start of the embedded SmolLM2-135M on built-in streaming word problems (shared by all RL runs).
2. HRPO vs GRPO step time: the same number of RL steps from the SFT checkpoint, interleaved step by step.
3. Equal budget over ``--seeds`` seeds: HRPO and GRPO each train ``--rl-steps`` steps from the SFT checkpoint;
   final reward terms / accuracy / tokens on held-out streams.
4. Held-out comparison: untrained embedded model vs SFT vs HRPO (stream mode) and read-then-think reasoning tokens.

Prints tables and writes ``benchmarks/results/train.json`` (and the RL metric plots under the work dir).

    python benchmarks/train.py [--data builtin:easy] [--sft-steps 80] [--rl-steps 4] [--seeds 3] [--n-train 96]
                               [--n-eval 16] [--threads 1]

``--opd``: on-policy distillation instead (issue #8). Teacher = a policy trained by the HRPO CPU preset
(``configs/train/text-cpu.yaml``, via ``adasr-mm train``; ``--teacher DIR`` reuses one), student = the untrained
embedded SmolLM2-135M. The same OPD budget (steps, rollouts, learning rate) runs with the bounded ``power`` reward
and with the vanilla ``log-ratio``; held-out built-in streams (test split, greedy, stream mode) score teacher,
untrained student and both distilled students; max gradient norm (before clipping) and step time come from the
same runs. ``--student-sft-steps N`` first warm-starts the student with N preset SFT steps (OPD where it belongs,
between SFT and RL). ``--guide-top-k K`` runs both rewards with teacher-guided rollouts (student tokens outside
the teacher's top-K are replaced by a teacher sample), which is what lets OPD teach an untrained student the
protocol markers it never samples. Writes ``benchmarks/results/train_opd[_sft<N>][_guided<K>].json``.

    python benchmarks/train.py --opd --threads 1 [--student-sft-steps 20] [--guide-top-k 5] [--teacher DIR]
                               [--opd-steps 8] [--opd-lr 5e-5] [--alpha 5]
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
    ap.add_argument("--data", default="builtin:easy", help="built-in task level (builtin = the standard level)")
    ap.add_argument("--sft-steps", type=int, default=80)
    ap.add_argument("--sft-lr", type=float, default=1e-4)
    ap.add_argument("--rl-steps", type=int, default=4)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--n-train", type=int, default=None, help="default 96 (--opd: the preset's)")
    ap.add_argument("--n-eval", type=int, default=None, help="default 16 (--opd: the preset's)")
    ap.add_argument("--work", default=str(ROOT / "runs" / "bench-train"))
    ap.add_argument("--json", default=None, help="results file (default results/train.json or train_opd.json)")
    ap.add_argument("--opd", action="store_true", help="run the on-policy distillation benchmark instead")
    ap.add_argument("--teacher", help="opd: teacher dir (default: train one with the HRPO CPU preset)")
    ap.add_argument("--teacher-sft-steps", type=int, default=None, help="opd: preset SFT steps (default preset)")
    ap.add_argument("--teacher-rl-steps", type=int, default=None, help="opd: preset HRPO steps (default preset)")
    ap.add_argument("--opd-steps", type=int, default=8)
    ap.add_argument("--opd-lr", type=float, default=5e-5)
    ap.add_argument("--alpha", type=float, default=5.0)
    ap.add_argument("--marker-lr-multiplier", type=float, default=1.0,
                    help="opd: scale the protocol-token embedding rows' updates (as the SFT preset does with 20)")
    ap.add_argument("--guide-top-k", type=int, default=0,
                    help="opd: teacher-guided rollouts for both rewards (0 = pure on-policy)")
    ap.add_argument("--student-sft-steps", type=int, default=0,
                    help="opd: warm-start the student with this many preset SFT steps first (0 = untrained student)")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch CPU threads (0 = torch's default; 1 avoids thrashing on a CPU shared with other jobs)")
    args = ap.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.opd:
        return run_opd(args)
    args.n_train, args.n_eval = args.n_train or 96, args.n_eval or 16
    args.json = args.json or str(ROOT / "benchmarks" / "results" / "train.json")

    import transformers

    transformers.utils.logging.set_verbosity_error()
    from adasr_mm.models import load_causal_lm as _load_model
    from adasr_mm.training.config import TrainConfig
    from adasr_mm.training.evaluate import evaluate
    from adasr_mm.training.pipeline import load_run_samples
    from adasr_mm.training.rewards import RewardConfig
    from adasr_mm.training.sft import SFTStageConfig, run_sft
    from adasr_mm.training.trainer import HRPOTrainer, RLStageConfig

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    cfg = TrainConfig()
    cfg.train.n_train, cfg.train.n_eval, cfg.train.data = args.n_train, args.n_eval, args.data
    cfg.rl = RLStageConfig(max_steps=args.rl_steps, num_generations=4, learning_rate=2e-6, max_thought_tokens=16,
                           max_deep_tokens=48, max_answer_tokens=12, save_steps=10_000)
    train = load_run_samples(cfg, "train", args.n_train)
    test = load_run_samples(cfg, "test", args.n_eval)
    out: dict = {"benchmark": "train", "date": time.strftime("%Y-%m-%d %H:%M:%S"), "cpus": os.cpu_count(),
                 "n_train": len(train), "n_eval": len(test), "sft_steps": args.sft_steps, "rl_steps": args.rl_steps,
                 "data": args.data, "sft_lr": args.sft_lr}

    # 1. SFT warm start
    sft_dir = work / "sft"
    if not (sft_dir / "config.json").is_file():
        model, tok = _load_model(None)
        out["sft"] = run_sft(model, tok, train, SFTStageConfig(max_steps=args.sft_steps, learning_rate=args.sft_lr), str(sft_dir))
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
    sft = {mode: evaluate(str(sft_dir), test, cfg, mode) for mode in ("stream", "read-then-think")}
    hrpo = next(r for r in runs if r["advantage"] == "hrpo" and r["seed"] == 0)
    out["heldout"] = {"untrained/stream": base["stream"], "untrained/read-then-think": base["read-then-think"],
                      "sft/stream": sft["stream"], "sft/read-then-think": sft["read-then-think"],
                      "hrpo/stream": {k.removeprefix("eval_"): v for k, v in hrpo.items() if k.startswith("eval_")},
                      "hrpo/read-then-think": evaluate(str(work / "final-hrpo-0"), test, cfg, "read-then-think")}

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


PRESET = ROOT / "configs" / "train" / "text-cpu.yaml"


def train_teacher(work: Path, args: argparse.Namespace) -> tuple[str, float]:
    """The teacher: ``adasr-mm train`` with the HRPO CPU preset (SFT warm start + HRPO); reused if present."""
    final = work / "teacher" / "final"
    if args.teacher:
        return args.teacher, 0.0
    if (final / "config.json").is_file():
        print(f"teacher: reusing {final}", file=sys.stderr)
        return str(final), 0.0
    from adasr_mm.cli import main as cli

    over = ["train.n_eval=0"]
    over += [f"sft.max_steps={args.teacher_sft_steps}"] if args.teacher_sft_steps else []
    over += [f"rl.max_steps={args.teacher_rl_steps}"] if args.teacher_rl_steps else []
    t0 = time.perf_counter()
    if cli(["train", "--config", str(PRESET), "--output-dir", str(work / "teacher"), *over]) != 0:
        raise SystemExit("teacher training failed")
    return str(final), time.perf_counter() - t0


def run_opd(args: argparse.Namespace) -> int:
    import torch
    import transformers
    from transformers import TrainerCallback

    transformers.utils.logging.set_verbosity_error()
    from adasr_mm.models import load_causal_lm as _load_model
    from adasr_mm.training.config import load_train_config
    from adasr_mm.training.evaluate import evaluate
    from adasr_mm.training.opd import OPDStageConfig, OPDTrainer
    from adasr_mm.training.pipeline import load_run_samples

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []

        def on_step_begin(self, *a, **k):
            self.t0 = time.perf_counter()

        def on_step_end(self, *a, **k):
            self.times.append(time.perf_counter() - self.t0)

    class PeakRSS:
        """Samples this process's resident memory every 50 ms while a run trains (peak, in MB)."""

        def __enter__(self) -> PeakRSS:
            import threading

            import psutil

            self.proc, self.peak, self.stop = psutil.Process(), 0, threading.Event()
            self.thread = threading.Thread(target=self._loop, daemon=True)
            self.thread.start()
            return self

        def _loop(self) -> None:
            while not self.stop.wait(0.05):
                self.peak = max(self.peak, self.proc.memory_info().rss)

        def __exit__(self, *exc: object) -> None:
            self.stop.set()
            self.thread.join()

    work = Path(args.work).with_name(Path(args.work).name + "-opd")
    work.mkdir(parents=True, exist_ok=True)
    teacher_dir, teacher_s = train_teacher(work, args)
    tconf = Path(teacher_dir).parent / "config.json"  # written by `adasr-mm train` next to final/
    tcfg = json.loads(tconf.read_text()) if tconf.is_file() else {}
    cfg = load_train_config(str(PRESET), [])  # data, sizes, SFT settings and eval caps: the preset's
    train = load_run_samples(cfg, "train", args.n_train or cfg.train.n_train)
    test = load_run_samples(cfg, "test", args.n_eval or cfg.train.n_eval)
    out: dict = {"benchmark": "train_opd", "date": time.strftime("%Y-%m-%d %H:%M:%S"), "cpus": os.cpu_count(),
                 "student_sft_steps": args.student_sft_steps,
                 "teacher": teacher_dir, "teacher_train_s": teacher_s,
                 "teacher_steps": {k: tcfg.get(k, {}).get("max_steps") for k in ("sft", "rl")},
                 "teacher_data": tcfg.get("train", {}).get("data"), "data": cfg.train.data,
                 "n_train": len(train), "n_eval": len(test),
                 "opd_steps": args.opd_steps, "opd_lr": args.opd_lr, "alpha": args.alpha,
                 "guide_top_k": args.guide_top_k, "marker_lr_multiplier": args.marker_lr_multiplier,
                 "torch_threads": torch.get_num_threads(), "runs": {}}
    heldout = {"teacher (SFT+HRPO preset)": evaluate(teacher_dir, test, cfg, "stream"),
               "student untrained": evaluate(None, test, cfg, "stream")}
    student = None  # the embedded model
    tag = (f"-sft{args.student_sft_steps}" if args.student_sft_steps else "") + \
        (f"-guided{args.guide_top_k}" if args.guide_top_k else "")
    if args.student_sft_steps:  # OPD where the issue puts it: after a (short) SFT warm start
        import dataclasses

        from adasr_mm.training.sft import SFTStageConfig, run_sft

        student = str(work / f"student-sft{args.student_sft_steps}")
        if not (Path(student) / "config.json").is_file():
            model, tok = _load_model(None)
            sft = SFTStageConfig(**{**dataclasses.asdict(cfg.sft), "max_steps": args.student_sft_steps})
            out["student_sft"] = run_sft(model, tok, train, sft, student)
        heldout[f"student SFT {args.student_sft_steps} steps (OPD start)"] = evaluate(student, test, cfg, "stream")
    teacher = _load_model(teacher_dir)
    for reward in ("power", "log-ratio"):
        model, tok = _load_model(student)
        opd = OPDStageConfig(teacher=teacher_dir, reward=reward, alpha=args.alpha, max_steps=args.opd_steps,
                             learning_rate=args.opd_lr, num_generations=2, prompts_per_step=2,
                             guide_top_k=args.guide_top_k, marker_lr_multiplier=args.marker_lr_multiplier,
                             max_thought_tokens=cfg.rl.max_thought_tokens, max_deep_tokens=cfg.rl.max_deep_tokens,
                             max_answer_tokens=cfg.rl.max_answer_tokens, save_steps=10_000)
        timer = StepTimer()
        tr = OPDTrainer(model, tok, train, opd, cfg.reward, str(work / f"opd-{reward}{tag}"), teacher=teacher,
                        callbacks=[timer], grpo_overrides={"save_strategy": "no"})  # no 1.4 GB checkpoints
        with PeakRSS() as mem:
            tr.train()
        final = work / f"student-{reward}{tag}"
        tr.save_model(str(final))
        tok.save_pretrained(str(final))
        logs = [h for h in tr.state.log_history if "opd/reward_mean" in h]
        label = f"student + OPD {reward}" + (f" (alpha={args.alpha:g})" if reward == "power" else "") + \
            (f", guided top-{args.guide_top_k}" if args.guide_top_k else "") + \
            (f", markers x{args.marker_lr_multiplier:g}" if args.marker_lr_multiplier != 1 else "")
        heldout[label] = evaluate(str(final), test, cfg, "stream")
        out["runs"][reward] = {
            "step_s": timer.times, "mean_step_s": statistics.mean(timer.times), "peak_rss_mb": mem.peak / 2**20,
            "grad_norm": [h["grad_norm"] for h in logs], "max_grad_norm": max(h["grad_norm"] for h in logs),
            **{k: [h[f"opd/{k}"] for h in logs] for k in ("reward_mean", "reward_min", "reward_max", "agreement",
                                                         "reverse_kl", "format_stream", "format_deep",
                                                         *(["guided_rate"] if args.guide_top_k else []))},
        }
        r = out["runs"][reward]
        print(f"opd {reward}: {r['mean_step_s']:.1f} s/step, max grad norm {r['max_grad_norm']:.3g}, "
              f"reverse KL {r['reverse_kl'][0]:.2f} -> {r['reverse_kl'][-1]:.2f}", file=sys.stderr)
        del tr, model
    out["heldout"] = heldout

    keys = ["format", "accuracy", "format_violations", "stream_tokens", "deep_tokens", "skip_rate"]
    print(f"\nheld-out: {len(test)} test-split built-in text streams, greedy, stream mode; OPD: {args.opd_steps} "
          f"steps x 4 rollouts, lr {args.opd_lr:g}, same budget for both rewards"
          + (f", teacher-guided rollouts (top-{args.guide_top_k})" if args.guide_top_k else ""))
    print("| model | " + " | ".join(keys) + " | max grad norm | s/step | peak RSS MB | train reverse KL first -> last |")
    print("|---" * (len(keys) + 5) + "|")
    for name, r in heldout.items():
        run = next((out["runs"][k] for k in out["runs"] if f"OPD {k}" in name), None)
        extra = (f"{run['max_grad_norm']:.3g} | {run['mean_step_s']:.1f} | {run['peak_rss_mb']:.0f} | "
                 f"{run['reverse_kl'][0]:.2f} -> {run['reverse_kl'][-1]:.2f}") if run else "- | - | - | -"
        print(f"| {name} | " + " | ".join(f"{r[k]:.3f}" for k in keys) + f" | {extra} |")
    p, lr_ = out["runs"]["power"], out["runs"]["log-ratio"]
    print(f"\npower vs log-ratio: max grad norm {p['max_grad_norm']:.3g} vs {lr_['max_grad_norm']:.3g} "
          f"({lr_['max_grad_norm'] / max(p['max_grad_norm'], 1e-30):.0f}x), mean step {p['mean_step_s']:.1f} s vs "
          f"{lr_['mean_step_s']:.1f} s, peak RSS {p['peak_rss_mb']:.0f} vs {lr_['peak_rss_mb']:.0f} MB (whole process, "
          "teacher and rollouts included; the second run inherits the allocator's pool)")
    name = "train_opd" + (f"_sft{args.student_sft_steps}" if args.student_sft_steps else "") + \
        (f"_guided{args.guide_top_k}" if args.guide_top_k else "") + ".json"
    path = Path(args.json or ROOT / "benchmarks" / "results" / name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1, default=str))
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
