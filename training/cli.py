"""``adasr-mm train`` / ``eval`` / ``prepare`` (registered as plugin commands: the core never imports training).

This module only parses arguments and calls the library (:mod:`.config`, :mod:`.pipeline`, :mod:`.evaluate`);
nothing imports from it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from adasr_mm.config import update_config
from adasr_mm.errors import ConfigError

from .config import TrainConfig, load_train_config


# -- train -------------------------------------------------------------------------------------------------------
def add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. rl.max_steps=5 reward.w_deep=2")
    p.add_argument("--modality", choices=("text", "audio", "video"), help="stream modality to train on")
    p.add_argument("--config", help="train YAML (see configs/train/)")
    p.add_argument("--stage", choices=("sft", "opd", "rl", "both"),
                   help="run only one stage, or both = sft,rl (default: the config's train.stages)")
    p.add_argument("--advantage", help="registered advantage estimator (hrpo, grpo)")
    p.add_argument("--teacher", help="opd: teacher model (hub id or dir) sharing the student's tokenizer")
    p.add_argument("--opd-reward", help="opd: registered per-token reward (power, log-ratio)")
    p.add_argument("--alpha", type=float, help="opd: exponent of the power reward (> 0)")
    p.add_argument("--guide-top-k", type=int, help="opd: teacher-guided rollouts, replace student tokens outside "
                                                   "the teacher's top-k (0 = pure on-policy)")
    p.add_argument("--output-dir", help="run directory")
    p.add_argument("--policy", help="starting model (hub id or dir); default: embedded SmolLM2")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in the run directory")


def _apply_train_flags(cfg: TrainConfig, a: argparse.Namespace) -> TrainConfig:
    t: dict[str, Any] = {}
    if a.modality:
        t["modality"] = a.modality
    if a.stage:
        t["stages"] = "sft,rl" if a.stage == "both" else a.stage
    if a.output_dir:
        t["output_dir"] = a.output_dir
    if a.policy:
        t["policy"] = a.policy
    update_config(cfg, {"train": t})  # type: ignore[arg-type]
    if a.advantage:
        update_config(cfg, {"rl": {"advantage": a.advantage}})  # type: ignore[arg-type]
    opd = {k: v for k, v in (("teacher", a.teacher), ("reward", a.opd_reward), ("alpha", a.alpha),
                             ("guide_top_k", a.guide_top_k)) if v is not None}
    if opd:
        update_config(cfg, {"opd": opd})  # type: ignore[arg-type]
    cfg.validate()
    return cfg


def run_train(a: argparse.Namespace) -> int:
    from .pipeline import run_pipeline

    run_pipeline(_apply_train_flags(load_train_config(a.config, a.overrides), a), resume=a.resume)
    return 0


def train_command() -> tuple[str, Any, Any]:
    return ("train the streaming policy: SFT warm start, on-policy distillation (opt.), HRPO/GRPO RL",
            add_train_args, run_train)


# -- eval --------------------------------------------------------------------------------------------------------
def add_eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.add_argument("--checkpoint", required=True,
                   help="model dir or adapter dir to evaluate; 'default' = the shipped policy, 'base' = untrained")
    p.add_argument("--modality", choices=("text", "audio", "video"), default=None)
    p.add_argument("--mode", choices=("stream", "read-then-think", "both"), default="both")
    p.add_argument("--config", help="train YAML (data, caps, adapters)")
    p.add_argument("--n", type=int, default=16, help="held-out samples")
    p.add_argument("--split", choices=("test", "validation"), default="test",
                   help="held-out split: choose among runs on 'validation', report 'test' for the one chosen")
    p.add_argument("--baseline", default="base",
                   help="starting checkpoint to compare with (base = the untrained embedded model, '' = none)")
    p.add_argument("--output", help="write the results as JSON")
    p.add_argument("--asr-style", type=float, default=0.0, metavar="P",
                   help="rewrite the held-out text chunks as streaming ASR writes them: each chunk loses its "
                        "closing mark, its capital, its digits (as words), each with probability P, and neighbours "
                        "merge with probability P/2 (0 = as is)")


def run_eval(a: argparse.Namespace) -> int:
    cfg = load_train_config(a.config, a.overrides)
    if a.modality:
        update_config(cfg, {"train": {"modality": a.modality}})  # type: ignore[arg-type]
    if a.checkpoint not in ("default", "base") and not Path(a.checkpoint).is_dir():
        raise ConfigError(f"--checkpoint {a.checkpoint!r} is not a directory (or 'default' / 'base')")
    if a.n < 1:
        raise ConfigError(f"--n must be >= 1, got {a.n}")
    if not 0 <= a.asr_style <= 1:
        raise ConfigError(f"--asr-style must be in [0, 1], got {a.asr_style}")
    from .evaluate import evaluate_and_print

    modes = ("stream", "read-then-think") if a.mode == "both" else (a.mode,)
    evaluate_and_print(a.checkpoint, cfg, a.n, Path(a.output) if a.output else None,
                       baseline=a.baseline or None,
                       modes=modes, with_baseline=a.baseline != "", asr_style=a.asr_style, split=a.split)
    return 0


def eval_command() -> tuple[str, Any, Any]:
    return ("evaluate a checkpoint on held-out streams vs the starting model", add_eval_args, run_eval)


def prepare_command() -> tuple[str, Any, Any]:
    from .prepare import add_prepare_args, run_prepare

    return ("run the (frozen) audio/video adapters once and cache the chunk streams", add_prepare_args, run_prepare)
