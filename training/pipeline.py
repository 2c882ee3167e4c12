"""The training pipeline as a library: data -> SFT warm start -> OPD (optional) -> RL -> held-out evaluation.

``adasr-mm train`` parses flags into a :class:`~.config.TrainConfig` and calls :func:`run_pipeline`; the
benchmarks call the same functions, so there is one way to load run data and one model loader
(:func:`adasr_mm.models.load_causal_lm`).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adasr_mm.errors import AdasrError
from adasr_mm.models import load_causal_lm

from .config import TrainConfig
from .lora import apply_lora, save_policy


def load_run_samples(cfg: TrainConfig, split: str, n: int) -> list[Any]:
    """``n`` samples of ``split`` from ``cfg.train.data``, media turned into cached chunks (``prepare``).

    A training set with ``train.mix`` is the concatenation of its parts, shuffled with the run's seed.
    """
    parts = cfg.train.mix_parts() if split == "train" else []
    if not parts:
        return _load_part(cfg, cfg.train.data, cfg.train.modality, split, n)
    samples = [s for mod, src, k in parts for s in _load_part(cfg, src, mod, split, k)]
    random.Random(cfg.train.seed).shuffle(samples)
    return samples


def _load_part(cfg: TrainConfig, source: str, modality: str, split: str, n: int) -> list[Any]:
    from .data import load_samples

    samples = load_samples(source, split=split, modality=modality, limit=n)
    if not samples:
        raise AdasrError(f"no {split} samples from {source!r}")
    if any(s.chunks is None for s in samples):
        from .prepare import default_cache_dir, prepare

        cache = Path(cfg.train.cache_dir) if cfg.train.cache_dir else default_cache_dir()
        report = prepare(samples, cfg.adapters, cache)
        for sid, msg in report.failed:
            print(f"prepare: skipped sample {sid}: {msg}")
        samples = [s for s in report.samples if s.chunks]
        if not samples:
            raise AdasrError(f"every {split} sample from {source!r} failed preparation; see the messages above")
    return samples


def last_checkpoint(d: Path) -> str | None:
    cks = sorted(d.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]) if p.name[11:].isdigit() else -1)
    return str(cks[-1]) if cks else None


def _already_done(resume: bool, stage_dir: Path, name: str) -> bool:
    """On resume, a stage whose saved model (or adapter) exists is not run again."""
    if resume and ((stage_dir / "config.json").is_file() or (stage_dir / "adapter_config.json").is_file()):
        print(f"{name}: already done ({stage_dir}), skipping")
        return True
    return False


def _train_and_save(trainer: Any, tok: Any, resume_dir: Path | None, save_dir: Path, cfg: TrainConfig) -> Any:
    """Train (from the last checkpoint in ``resume_dir`` if any) and save model/adapter + tokenizer."""
    res = trainer.train(resume_from_checkpoint=last_checkpoint(resume_dir) if resume_dir else None)
    save_policy(trainer.model, tok, save_dir, cfg.lora)
    return res


def _load_stage_model(cfg: TrainConfig, policy: str | None) -> tuple[Any, Any]:
    """The stage's starting model; with ``lora.enabled`` wrapped in (or continuing) a LoRA adapter."""
    model, tok = load_causal_lm(policy or "base", keep_adapter=cfg.lora.enabled)
    if cfg.lora.enabled:
        model = apply_lora(model, tok, cfg.lora)
    return model, tok


@dataclass
class PipelineResult:
    """Where a run wrote its outputs."""

    output_dir: Path
    final: Path
    metrics: Path
    plots: list[Path] = field(default_factory=list)
    eval: dict[str, Any] | None = None
    seconds: float = 0.0


def _run_sft(cfg: TrainConfig, samples: list[Any], policy: str | None, out: Path, metrics: Path,
             resume: bool) -> str:
    sft_dir = out / "sft"
    if not _already_done(resume, sft_dir, "sft"):
        from .metrics import JsonlMetricsCallback
        from .sft import build_sft_trainer

        model, tok = _load_stage_model(cfg, policy)
        trainer = build_sft_trainer(model, tok, samples, cfg.sft, str(sft_dir), cfg.adapters.protocol)
        trainer.add_callback(JsonlMetricsCallback(metrics, "sft"))
        res = _train_and_save(trainer, tok, sft_dir if resume else None, sft_dir, cfg)
        print(f"sft: {res.global_step} steps, train loss {res.training_loss:.3f} -> {sft_dir}")
    return str(sft_dir)


def _run_opd(cfg: TrainConfig, samples: list[Any], policy: str | None, out: Path, metrics: Path,
             resume: bool) -> str:
    opd_dir = out / "opd"
    if not _already_done(resume, opd_dir, "opd"):
        from .metrics import JsonlMetricsCallback
        from .opd import OPDTrainer

        model, tok = _load_stage_model(cfg, policy)
        ck_dir = out / "opd-checkpoints"
        trainer = OPDTrainer(model, tok, samples, cfg.opd, cfg.reward, str(ck_dir),
                             protocol_config=cfg.adapters.protocol, callbacks=[JsonlMetricsCallback(metrics, "opd")])
        res = _train_and_save(trainer, tok, ck_dir if resume else None, opd_dir, cfg)
        print(f"opd: {res.global_step} steps from teacher {cfg.opd.teacher} ({cfg.opd.reward}) -> {opd_dir}")
    return str(opd_dir)


def _run_rl(cfg: TrainConfig, samples: list[Any], policy: str | None, out: Path, metrics: Path,
            resume: bool) -> str:
    from .metrics import JsonlMetricsCallback
    from .trainer import HRPOTrainer

    model, tok = _load_stage_model(cfg, policy)
    rl_dir = out / "rl-checkpoints"
    trainer = HRPOTrainer(model, tok, samples, cfg.rl, cfg.reward, str(rl_dir),
                          protocol_config=cfg.adapters.protocol, callbacks=[JsonlMetricsCallback(metrics, "rl")])
    _train_and_save(trainer, tok, rl_dir if resume else None, out / "final", cfg)
    return str(out / "final")


STAGE_RUNNERS = {"sft": _run_sft, "opd": _run_opd, "rl": _run_rl}


def run_pipeline(cfg: TrainConfig, resume: bool = False) -> PipelineResult:
    """Run the configured stages in order, each starting from the previous one's model; then evaluate."""
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    cfg.validate()
    tc = cfg.train
    out = Path(tc.output_dir or f"runs/train-{tc.modality}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1, default=str))
    metrics = out / "metrics.jsonl"
    if not resume and metrics.exists():
        metrics.unlink()
    from .metrics import plot_metrics

    samples = load_run_samples(cfg, "train", tc.n_train)
    print(f"train: {len(samples)} {tc.modality} samples; stages {tc.stage_list}; run dir {out}")
    policy = tc.policy
    t0 = time.time()
    for stage in tc.stage_list:
        policy = STAGE_RUNNERS[stage](cfg, samples, policy, out, metrics, resume)
    final = out / "final"
    if policy is not None and Path(policy) != final:  # the last stage saved elsewhere (sft, opd)
        shutil.copytree(policy, final, dirs_exist_ok=True)
    res = PipelineResult(out, final, metrics, plot_metrics(metrics, out / "plots"), seconds=time.time() - t0)
    print(f"train: done in {res.seconds:.0f}s; final model {final}; metrics {metrics}; "
          f"plots {', '.join(p.name for p in res.plots) or 'none'}")
    if tc.n_eval:
        from .evaluate import evaluate_and_print

        res.eval = evaluate_and_print(str(final), cfg, tc.n_eval, out / "eval.json", baseline=tc.policy or "base")
    return res
