"""Held-out evaluation of streaming policies: accuracy, tokens per phase, skips, format, delay, both modes."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from tqdm import tqdm


def _eval_config(policy: str | None, cfg: Any) -> Any:
    """The adapters config of a greedy evaluation with the RL caps (what the policy was trained to fit in).

    The scheduler's speed-dependent decisions are off: thoughts cut at a deadline, chunks read together after the
    policy fell behind, skips forced by lag. With them, a loaded machine changed the traces (and the accuracy)
    of one checkpoint from one run to the next. A machine that keeps up never triggers them, so the traces are
    those of a live run that keeps up; the delay is still measured on the simulated clock. What a slow machine
    does to a live run is `benchmarks/realtime.py`'s subject."""
    acfg = cfg.adapters
    acfg.policy.policy = policy
    acfg.policy.max_thought_tokens = cfg.rl.max_thought_tokens
    acfg.policy.max_deep_tokens = cfg.rl.max_deep_tokens
    acfg.policy.max_answer_tokens = cfg.rl.max_answer_tokens
    acfg.policy.temperature = 0.0
    acfg.pipeline.catch_up = acfg.pipeline.deadline = False
    acfg.session.max_lag_s = 0.0
    return acfg


def evaluate(policy: str | None, samples: list[Any], cfg: Any, mode: str = "stream",
             per_sample: list[dict[str, Any]] | None = None) -> dict[str, float]:
    """Greedy sessions on the simulated clock of a saved policy (as inference loads it); means over samples."""
    from adasr_mm.agent import StreamingAgent

    agent = StreamingAgent.from_pretrained(config=_eval_config(policy, cfg))
    label = Path(policy).name if policy else "default"
    return evaluate_agent(agent, samples, mode, label, per_sample)


def evaluate_model(model: Any, tokenizer: Any, samples: list[Any], cfg: Any, mode: str = "stream",
                   per_sample: list[dict[str, Any]] | None = None) -> dict[str, float]:
    """:func:`evaluate` of an in-memory model (e.g. mid-training, in its training dtype); restores train mode."""
    from adasr_mm.agent import StreamingAgent
    from adasr_mm.policy import StreamingPolicy

    acfg = _eval_config(None, cfg)
    was = model.training
    model.eval()
    try:
        agent = StreamingAgent(StreamingPolicy(model, tokenizer, acfg.policy, acfg.protocol, name="probe"), acfg)
        return evaluate_agent(agent, samples, mode, "probe", per_sample)
    finally:
        model.train(was)


def evaluate_agent(agent: Any, samples: list[Any], mode: str = "stream", label: str = "",
                   per_sample: list[dict[str, Any]] | None = None) -> dict[str, float]:
    """Means over ``samples`` of one greedy session each; ``per_sample`` (if given) receives every row."""
    from .data import check_answer

    rows = []
    for s in tqdm(samples, desc=f"eval {label} {mode}", leave=False):
        res = agent.run(s.question, s.chunks, mode=mode, clock="simulated")
        m = res.summary
        rows.append({
            "accuracy": float(check_answer(res.answer, s.answer)),
            "stream_tokens": m.stream_tokens, "deep_tokens": m.deep_tokens + m.answer_tokens,
            "total_tokens": m.stream_tokens + m.deep_tokens + m.answer_tokens,
            "skip_rate": m.skips / max(1, m.chunks), "format": res.format.format,
            "format_violations": m.format_violations, "delay_s": m.delay_s,
        })
        if per_sample is not None:
            per_sample.append({"id": s.id, "answer": res.answer, **rows[-1]})
    return {k: statistics.mean(r[k] for r in rows) for k in rows[0]} | {"n": len(rows)}


def evaluate_and_print(checkpoint: str, cfg: Any, n: int, out: Path | None = None, baseline: str | None = None,
                       modes: tuple[str, ...] = ("stream", "read-then-think"), with_baseline: bool = True,
                       asr_style: float = 0.0, split: str = "test") -> dict[str, Any]:
    """``asr_style`` > 0: the held-out text chunks rewritten as streaming ASR writes them (each change with this
    probability, :mod:`.asr_style`), to measure how much a policy leans on periods, capitals and digits.

    ``split="validation"`` scores runs on streams kept apart from ``test``: pick a seed or recipe there, then
    report ``test`` once for the pick, so the reported number is not the one it was chosen by."""
    from .asr_style import asr_style_sample
    from .pipeline import load_run_samples

    samples = load_run_samples(cfg, split, n)
    if asr_style > 0:
        samples = [asr_style_sample(s, s.chunks, cfg.train.seed, asr_style) if s.modality == "text" else s
                   for s in samples]
    results: dict[str, Any] = {}
    models = [("trained", checkpoint)] + ([("start", baseline)] if with_baseline else [])
    rows: dict[str, list[dict[str, Any]]] = {}
    for label, pol in models:
        for mode in modes:
            rows[f"{label}/{mode}"] = []
            results[f"{label}/{mode}"] = evaluate(pol, samples, cfg, mode, rows[f"{label}/{mode}"])
    keys = ["accuracy", "format", "format_violations", "stream_tokens", "deep_tokens", "total_tokens",
            "skip_rate", "delay_s"]
    print(f"eval on {len(samples)} held-out {cfg.train.modality} streams ({split} split):")
    print("| model/mode | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for name, r in results.items():
        print(f"| {name} | " + " | ".join(f"{r[k]:.3f}" if isinstance(r[k], float) else str(r[k]) for k in keys)
              + " |")
    if out is not None:  # per-sample rows too: a later run can be checked stream by stream
        meta = {"data": cfg.train.data, "split": split, "modality": cfg.train.modality, "n": len(samples),
                "asr_style": asr_style, "asr_style_seed": cfg.train.seed,
                "caps": [cfg.rl.max_thought_tokens, cfg.rl.max_deep_tokens, cfg.rl.max_answer_tokens],
                "calculator": cfg.adapters.policy.calculator}
        out.write_text(json.dumps({**results, "meta": meta, "per_sample": rows}, indent=1))
    return results
