"""RL benchmark: from one SFT start, do HRPO and GRPO raise held-out accuracy, at equal budget, over seeds?

One run, one machine, same data (issue 16, item 3):
1. SFT warm start of the embedded SmolLM2-135M on built-in streaming word problems (``--data``; default the
   standard level), shared by every RL run and reused from the work dir when present.
2. For each seed and advantage (``hrpo``, ``grpo`` = hrpo with lambda 0): RL from the SFT checkpoint with the CPU
   preset's recipe (G rollouts per stream, dynamic sampling, token-level DAPO loss with clip-higher, no KL,
   correctness-gated length reward), ``--rl-steps`` optimizer steps each (equal budget). A held-out probe (greedy,
   first ``--n-probe`` test streams, in-memory float32 model) runs every ``--probe-every`` steps.
3. Held-out evaluation (greedy, stream mode, ``--n-eval`` test streams, saved checkpoints loaded as inference
   loads them) of SFT and of every RL run: accuracy, format, stream/deep tokens, skip rate, delay; accuracy per
   task template (number of updates, operations used) to show where the ceiling is.

Prints the tables, writes ``benchmarks/results/rl.json`` and learning curves ``benchmarks/results/rl_curves.png``
(probe accuracy, reward terms, stream/deep tokens, skip rate per step). ``--lr-sweep 1e-6,1e-5,...`` runs HRPO
seed 0 at each learning rate instead (``rl_lr_sweep.json``/``.png``).

    python benchmarks/rl.py [--data builtin] [--rl-steps 20] [--seeds 0,1,2] [--threads 2] [--work runs/bench-rl]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
ROOT = Path(__file__).resolve().parents[1]
PRESET = ROOT / "configs" / "train" / "text-cpu.yaml"
RESULTS = ROOT / "benchmarks" / "results"
KEYS = ["accuracy", "format", "stream_tokens", "deep_tokens", "skip_rate", "delay_s"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(PRESET), help="train preset whose sft/rl/reward sections are used")
    ap.add_argument("--data", default="builtin", help="builtin (standard level) or builtin:easy")
    ap.add_argument("--sft-steps", type=int, default=None, help="default: the preset's")
    ap.add_argument("--rl-steps", type=int, default=None, help="RL steps per run (default: the preset's)")
    ap.add_argument("--lr", type=float, default=None, help="RL learning rate (default: the preset's)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--advantages", default="hrpo,grpo")
    ap.add_argument("--n-train", type=int, default=256)
    ap.add_argument("--n-eval", type=int, default=64)
    ap.add_argument("--n-probe", type=int, default=16)
    ap.add_argument("--probe-every", type=int, default=5)
    ap.add_argument("--lr-sweep", default="", help="comma list of learning rates: HRPO seed 0 at each")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    ap.add_argument("--work", default=str(ROOT / "runs" / "bench-rl"))
    ap.add_argument("--json", default=None, help="results file (default results/rl.json or rl_lr_sweep.json)")
    ap.add_argument("--report", default="", help="only print the tables and redraw the curves of a results JSON")
    ap.add_argument("overrides", nargs="*", metavar="key=value", help="train config overrides, e.g. rl.max_redraws=0")
    return ap.parse_args(argv)


def load_cfg(args: argparse.Namespace) -> Any:
    from adasr_mm.training.config import load_train_config

    over = [f"train.data={args.data}", f"train.n_train={args.n_train}", f"train.n_eval={args.n_eval}"]
    over += [f"sft.max_steps={args.sft_steps}"] if args.sft_steps else []
    over += [f"rl.max_steps={args.rl_steps}"] if args.rl_steps else []
    over += [f"rl.learning_rate={args.lr}"] if args.lr else []
    return load_train_config(args.config, over + list(args.overrides))


def uptime_load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def template(s: Any) -> str:
    """A word problem's template class: number of updates and the operations used (e.g. ``3 ops, +-/``)."""
    ops = s.meta.get("ops", [])
    return f"{len(ops)} ops, {''.join(sorted({op for op, _ in ops}))}"


def per_template(rows: list[dict[str, Any]], samples: list[Any]) -> dict[str, dict[str, float]]:
    by_id = {s.id: template(s) for s in samples}
    out: dict[str, list[float]] = {}
    for r in rows:
        out.setdefault(by_id[r["id"]], []).append(r["accuracy"])
    return {k: {"n": len(v), "accuracy": statistics.mean(v)} for k, v in sorted(out.items())}


def sft_start(cfg: Any, train: list[Any], work: Path) -> tuple[str, dict[str, Any]]:
    from adasr_mm.models import load_causal_lm
    from adasr_mm.training.sft import run_sft

    sft_dir = work / "sft"
    if (sft_dir / "config.json").is_file():
        return str(sft_dir), {"reused": str(sft_dir)}
    model, tok = load_causal_lm("base")  # the untrained SmolLM2, as `adasr-mm train` starts SFT
    info = run_sft(model, tok, train, cfg.sft, str(sft_dir), cfg.adapters.protocol)
    return str(sft_dir), info


def probe_callback(trainer_ref: list[Any], probe: list[Any], cfg: Any, every: int, curve: list[dict]) -> Any:
    """Greedy held-out probe of the in-memory policy before training and every ``every`` steps."""
    from transformers import TrainerCallback

    from adasr_mm.training.evaluate import evaluate_model

    class Probe(TrainerCallback):
        def _probe(self, step: int) -> None:
            tr = trainer_ref[0]
            r = evaluate_model(tr.model, tr.processing_class, probe, cfg, "stream")
            curve.append({"step": step, **{k: r[k] for k in ("accuracy", "format", "deep_tokens",
                                                             "stream_tokens", "skip_rate")}})
            print(f"  probe step {step}: acc {r['accuracy']:.3f} deep {r['deep_tokens']:.1f}", file=sys.stderr)

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self._probe(0)

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if state.global_step % every == 0 or state.global_step == state.max_steps:
                self._probe(state.global_step)

    return Probe()


def rl_run(cfg: Any, sft_dir: str, train: list[Any], test: list[Any], probe: list[Any], work: Path,
           advantage: str, seed: int, lr: float, every: int) -> dict[str, Any]:
    """One RL run from the SFT start; returns its curves, timing and held-out evaluation."""
    from adasr_mm.models import load_causal_lm
    from adasr_mm.training.evaluate import evaluate
    from adasr_mm.training.trainer import HRPOTrainer, RLStageConfig

    name = f"{advantage}-s{seed}-lr{lr:g}"
    rl = RLStageConfig(**{**dataclasses.asdict(cfg.rl), "advantage": advantage, "seed": seed,
                          "learning_rate": lr, "lam": 0.0 if advantage == "grpo" else cfg.rl.lam,
                          "save_steps": 10_000})
    model, tok = load_causal_lm(sft_dir)
    curve: list[dict] = []
    ref: list[Any] = []
    tr = HRPOTrainer(model, tok, train, rl, cfg.reward, str(work / f"rl-{name}"),
                     protocol_config=cfg.adapters.protocol,
                     callbacks=[probe_callback(ref, probe, cfg, every, curve)])
    ref.append(tr)
    load0, t0 = uptime_load(), time.perf_counter()
    tr.train()
    secs = time.perf_counter() - t0
    final = work / f"final-{name}"
    tr.save_model(str(final))
    tok.save_pretrained(str(final))
    logs = [{k: v for k, v in h.items() if isinstance(v, int | float)} for h in tr.state.log_history
            if "hrpo/accuracy" in h]
    rows: list[dict[str, Any]] = []
    ev = evaluate(str(final), test, cfg, "stream", per_sample=rows)
    print(f"{name}: {secs / rl.max_steps:.1f} s/step, held-out {ev}", file=sys.stderr)
    return {"advantage": advantage, "seed": seed, "lr": lr, "steps": rl.max_steps, "seconds": secs,
            "step_s": secs / rl.max_steps, "load_start": load0, "load_end": uptime_load(), "probe": curve,
            "train_logs": logs, "eval": ev, "per_template": per_template(rows, test)}


def mean_sd(xs: list[float]) -> tuple[float, float]:
    return statistics.mean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def _run_name(r: dict[str, Any], runs: list[dict[str, Any]]) -> str:
    """'HRPO', or 'HRPO lr 5e-06' when the runs differ in learning rate (an lr sweep: one row per rate)."""
    return r["advantage"].upper() + (f" lr {r['lr']:g}" if len({x["lr"] for x in runs}) > 1 else "")


def summary_table(sft_eval: dict[str, Any], runs: list[dict[str, Any]]) -> str:
    lines = ["| model | n seeds | " + " | ".join(KEYS) + " |", "|---" * (len(KEYS) + 2) + "|",
             "| SFT (start) | - | " + " | ".join(f"{sft_eval[k]:.3f}" for k in KEYS) + " |"]
    for name in dict.fromkeys(_run_name(r, runs) for r in runs):
        rs = [r for r in runs if _run_name(r, runs) == name]
        cells = []
        for k in KEYS:
            m, sd = mean_sd([r["eval"][k] for r in rs])
            cells.append(f"{m:.3f} ± {sd:.3f}")
        lines.append(f"| {name} ({rs[0]['steps']} steps) | {len(rs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def template_table(sft_rows: dict[str, Any], runs: list[dict[str, Any]]) -> str:
    cols = ["SFT"] + [f"{_run_name(r, runs)} s{r['seed']}" for r in runs]
    lines = ["| template (updates, ops) | n | " + " | ".join(cols) + " |", "|---" * (len(cols) + 2) + "|"]
    for t, v in sft_rows.items():
        cells = [f"{v['accuracy']:.2f}"] + [f"{r['per_template'].get(t, {}).get('accuracy', float('nan')):.2f}"
                                             for r in runs]
        lines.append(f"| {t} | {v['n']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def by_updates(per_tpl: dict[str, dict[str, float]]) -> dict[str, tuple[int, float]]:
    """Per-template accuracy pooled by number of updates, and over templates with a division (n, accuracy)."""
    groups: dict[str, list[tuple[int, float]]] = {}
    for t, v in per_tpl.items():
        n_ops, ops = t.split(" ops, ")
        groups.setdefault(f"{n_ops} update{'s' * (n_ops != '1')}", []).append((v["n"], v["accuracy"]))
        if "/" in ops:
            groups.setdefault("with a division", []).append((v["n"], v["accuracy"]))
    return {k: (sum(n for n, _ in g), sum(n * a for n, a in g) / sum(n for n, _ in g)) for k, g in groups.items()}


def updates_table(sft_rows: dict[str, Any], runs: list[dict[str, Any]]) -> str:
    """Accuracy by number of updates: where the 135M policy's ceiling is, before and after RL (mean over seeds)."""
    names = list(dict.fromkeys(_run_name(r, runs) for r in runs))
    sft = by_updates(sft_rows)
    lines = ["| problems | n | SFT | " + " | ".join(f"{n} (mean of seeds)" for n in names) + " |",
             "|---" * (len(names) + 3) + "|"]
    for k in sorted(sft, key=lambda k: (k.startswith("with"), k)):
        cells = [statistics.mean(by_updates(r["per_template"])[k][1] for r in runs if _run_name(r, runs) == n)
                 for n in names]
        lines.append(f"| {k} | {sft[k][0]} | {sft[k][1]:.2f} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")
    return "\n".join(lines)


CURVES = [("probe accuracy (held-out, greedy)", "probe", "accuracy"),
          ("rollout reward (mean)", "train", "reward"),
          ("rollout accuracy", "train", "hrpo/accuracy"),
          ("deep tokens per rollout", "train", "hrpo/deep_tokens"),
          ("stream tokens per rollout", "train", "hrpo/stream_tokens"),
          ("skip rate of rollouts", "train", "hrpo/skip_rate"),
          ("groups without signal after redraws", "train", "hrpo/flat_groups"),
          ("format reward (mean)", "train", "rewards/format/mean")]


def plot_curves(runs: list[dict[str, Any]], path: Path, label: str = "advantage") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 4, figsize=(16, 7), dpi=100)
    for ax, (title, src, key) in zip(axes.flat, CURVES, strict=True):
        for r in runs:
            pts = [(p["step"], p[key]) for p in (r["probe"] if src == "probe" else r["train_logs"]) if key in p]
            if pts:
                xs, ys = zip(*pts, strict=True)
                style = "-" if r["advantage"] == "hrpo" else "--"
                tag = f"{r['advantage']} s{r['seed']}" if label == "advantage" else f"lr {r['lr']:g}"
                ax.plot(xs, ys, style, marker="o", ms=3, label=tag)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("RL step")
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report:
        out = json.loads(Path(args.report).read_text())
        report(out, Path(args.report).with_name(Path(args.report).stem + "_curves.png"),
               "lr" if "sweep" in Path(args.report).stem else "advantage")
        return 0
    import torch
    import transformers

    if args.threads:
        torch.set_num_threads(args.threads)
    transformers.utils.logging.set_verbosity_error()
    from adasr_mm.training.evaluate import evaluate
    from adasr_mm.training.pipeline import load_run_samples

    cfg = load_cfg(args)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    train = load_run_samples(cfg, "train", args.n_train)
    test = load_run_samples(cfg, "test", args.n_eval)
    probe = test[: args.n_probe]
    out: dict[str, Any] = {"benchmark": "rl", "date": time.strftime("%Y-%m-%d %H:%M:%S"), "cpus": os.cpu_count(),
                           "torch_threads": torch.get_num_threads(), "load_start": uptime_load(),
                           "data": args.data, "n_train": len(train), "n_eval": len(test), "n_probe": len(probe),
                           "config": {k: dataclasses.asdict(getattr(cfg, k)) for k in ("sft", "rl", "reward")}}
    t0 = time.perf_counter()
    sft_dir, out["sft"] = sft_start(cfg, train, work)
    sft_rows: list[dict[str, Any]] = []
    out["sft_eval"] = evaluate(sft_dir, test, cfg, "stream", per_sample=sft_rows)
    out["sft_per_template"] = per_template(sft_rows, test)
    print(f"sft: {out['sft']}\nsft held-out: {out['sft_eval']}", file=sys.stderr)
    sweep = [float(x) for x in args.lr_sweep.split(",") if x.strip()]
    if sweep:
        jobs = [("hrpo", 0, lr) for lr in sweep]
    else:
        jobs = [(adv, int(s), cfg.rl.learning_rate) for s in args.seeds.split(",")
                for adv in args.advantages.split(",")]
    stem = "rl_lr_sweep" if sweep else "rl"
    path = Path(args.json or RESULTS / f"{stem}.json")
    out["runs"] = []
    for adv, seed, lr in jobs:  # results are written after every run: an interrupted benchmark keeps what it did
        out["runs"].append(rl_run(cfg, sft_dir, train, test, probe, work, adv, seed, lr, args.probe_every))
        out["seconds"], out["load_end"] = time.perf_counter() - t0, uptime_load()
        path.write_text(json.dumps(out, indent=1))
    report(out, RESULTS / f"{stem}_curves.png", "lr" if sweep else "advantage")
    return 0


def report(out: dict[str, Any], png: Path, label: str = "advantage") -> None:
    """Print the tables and draw the curves of a results dict (``--report FILE`` redraws from the JSON)."""
    runs = out["runs"]
    plot_curves(runs, png, label)
    print(f"\nheld-out ({out['n_eval']} {out['data']} test streams, greedy, stream mode); load {out['load_start']} -> "
          f"{out.get('load_end')}; {out.get('seconds', 0) / 60:.0f} min\n")
    print(summary_table(out["sft_eval"], runs))
    print("\naccuracy per template\n")
    print(template_table(out["sft_per_template"], runs))
    print("\naccuracy by number of updates\n")
    print(updates_table(out["sft_per_template"], runs))
    deltas = [r["eval"]["accuracy"] - out["sft_eval"]["accuracy"] for r in runs]
    print("\n" + " ".join(f"{r['advantage']}_s{r['seed']}_lr{r['lr']:g}_delta_acc={d:+.3f}"
                          for r, d in zip(runs, deltas, strict=True)))

if __name__ == "__main__":
    raise SystemExit(main())
