"""Training metrics: a JSONL log written as training runs, and PNG plots drawn from it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from transformers import TrainerCallback


class JsonlMetricsCallback(TrainerCallback):
    """Appends every ``on_log`` dict (with step and stage) to ``metrics.jsonl``; flushed per line."""

    def __init__(self, path: str | Path, stage: str):
        self.path = Path(path)
        self.stage = stage
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
        if not logs or not state.is_world_process_zero:
            return
        row = {"stage": self.stage, "step": int(state.global_step)}
        for k, v in logs.items():
            try:
                row[k] = float(v)
            except (TypeError, ValueError):
                continue
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    p = Path(path)
    if not p.is_file():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


PLOTS = {
    "rewards.png": ("reward per term (RL)", ["rewards/format/mean", "rewards/accuracy/mean", "rewards/adaptive/mean",
                                             "reward", "hrpo/reward_stream", "hrpo/reward_deep"]),
    "tokens.png": ("tokens per phase per rollout (RL, OPD)", ["hrpo/stream_tokens", "hrpo/deep_tokens",
                                                              "opd/stream_tokens", "opd/deep_tokens"]),
    "accuracy.png": ("accuracy, format and skip rate of rollouts (RL, OPD)",
                     ["hrpo/accuracy", "hrpo/format_stream", "hrpo/format_deep", "hrpo/skip_rate",
                      "opd/accuracy", "opd/format_stream", "opd/format_deep", "opd/skip_rate"]),
    "opd.png": ("OPD: token reward, teacher agreement, log-ratio, guided rate",
                ["opd/reward_mean", "opd/reward_min", "opd/reward_max", "opd/agreement", "opd/reverse_kl",
                 "opd/guided_rate"]),
    "grad_norm.png": ("gradient norm before clipping", ["grad_norm"]),
    "loss.png": ("training loss", ["loss"]),
}


def plot_metrics(path: str | Path, out_dir: str | Path) -> list[Path]:
    """One PNG per panel in :data:`PLOTS` (only series that were logged)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(path)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for fname, (title, keys) in PLOTS.items():
        fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=110)
        drawn = False
        for key in keys:
            stages = sorted({r["stage"] for r in rows if key in r})  # e.g. loss: one line per stage
            for stage in stages:
                pts = [(r["step"], r[key]) for r in rows if r["stage"] == stage and key in r]
                xs, ys = zip(*pts, strict=True)
                ax.plot(xs, ys, marker="o", ms=3, label=f"{key} ({stage})" if len(stages) > 1 else key)
                drawn = True
        if not drawn:
            plt.close(fig)
            continue
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / fname)
        plt.close(fig)
        written.append(out / fname)
    return written
