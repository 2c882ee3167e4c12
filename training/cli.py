"""``adasr-mm train`` / ``eval`` / ``prepare`` (registered as plugin commands: the core never imports training)."""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adasr_mm.config import AdasrConfig, load_yaml, parse_override, sections, update_config
from adasr_mm.errors import AdasrError, ConfigError

from .opd import OPDStageConfig
from .rewards import RewardConfig
from .trainer import RLStageConfig

STAGES = ("sft", "opd", "rl")  # the order they run in: warm start, distillation from a teacher, RL


@dataclass
class TrainRunConfig:
    """What to train, on which data, and where to write it."""

    modality: str = field(default="text", metadata={"help": "text, audio or video"})
    data: str = field(default="builtin", metadata={"help": "builtin (or builtin:easy), a JSONL file, or a HF datasets id/dir"})
    n_train: int = field(default=32, metadata={"help": "training samples"})
    n_eval: int = field(default=16, metadata={"help": "held-out samples for the final evaluation (0 = skip)"})
    stages: str = field(default="sft,rl", metadata={"help": "comma list of stages, in order: sft, opd, rl"})
    policy: str | None = field(default=None, metadata={"help": "starting model (hub id/dir); empty = embedded"})
    output_dir: str = field(default="", metadata={"help": "run directory (default runs/train-<modality>)"})
    cache_dir: str = field(default="", metadata={"help": "chunk cache for audio/video (default user cache)"})
    seed: int = field(default=0, metadata={"help": "global seed"})

    def __post_init__(self) -> None:
        if self.modality not in ("text", "audio", "video"):
            raise ValueError(f"modality must be text, audio or video, got {self.modality!r}")
        st = self.stage_list
        bad = [s for s in st if s not in STAGES]
        if bad or not st or len(set(st)) < len(st) or st != sorted(st, key=STAGES.index):
            raise ValueError(f"stages must be a comma list of {', '.join(STAGES)} in this order, without repeats, "
                             f"got {self.stages!r}")
        if self.n_train < 1 or self.n_eval < 0:
            raise ValueError(f"need n_train >= 1 and n_eval >= 0, got {self.n_train}/{self.n_eval}")

    @property
    def stage_list(self) -> list[str]:
        return [s.strip() for s in self.stages.split(",") if s.strip()]


def _sft_config() -> Any:
    from .sft import SFTStageConfig

    return SFTStageConfig()


@dataclass
class TrainConfig:
    train: TrainRunConfig = field(default_factory=TrainRunConfig)
    sft: Any = field(default_factory=_sft_config)
    opd: OPDStageConfig = field(default_factory=OPDStageConfig)
    rl: RLStageConfig = field(default_factory=RLStageConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    adapters: AdasrConfig = field(default_factory=AdasrConfig)

    def to_dict(self) -> dict[str, Any]:
        import dataclasses

        d = {k: dataclasses.asdict(v) for k, v in sections(self).items() if k != "adapters"}
        d["adapters"] = self.adapters.to_dict()
        return d

    def validate(self) -> None:
        """Checks across sections, once flags and overrides are in (a section cannot know which stages run)."""
        if "opd" in self.train.stage_list and not self.opd.teacher:
            raise ConfigError("opd.teacher is required when the opd stage runs: pass --teacher ID|DIR "
                              "(a model sharing the student's tokenizer) or set opd.teacher")


def load_train_config(path: str | None, overrides: list[str]) -> TrainConfig:
    cfg = TrainConfig()
    tree = load_yaml(path) if path else {}
    adapters = tree.pop("adapters", None)
    update_config(cfg, tree)
    if adapters:
        update_config(cfg.adapters, adapters)
    for item in overrides:
        if item.startswith("adapters."):
            name, key, value = parse_override(cfg.adapters, item.removeprefix("adapters."))
            update_config(cfg.adapters, {name: {key: value}})
        else:
            name, key, value = parse_override(cfg, item)  # type: ignore[arg-type]
            update_config(cfg, {name: {key: value}})  # type: ignore[arg-type]
    return cfg


# -- data --------------------------------------------------------------------------------------------------------
def load_run_samples(cfg: TrainConfig, split: str, n: int) -> list[Any]:
    from .data import load_samples

    samples = load_samples(cfg.train.data, split=split, modality=cfg.train.modality, limit=n)
    if not samples:
        raise AdasrError(f"no {split} samples from {cfg.train.data!r}")
    if any(s.chunks is None for s in samples):
        from .prepare import default_cache_dir, prepare

        cache = Path(cfg.train.cache_dir) if cfg.train.cache_dir else default_cache_dir()
        report = prepare(samples, cfg.adapters, cache)
        for sid, msg in report.failed:
            print(f"prepare: skipped sample {sid}: {msg}")
        samples = [s for s in report.samples if s.chunks]
        if not samples:
            raise AdasrError(f"every {split} sample failed preparation; see the messages above")
    return samples


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


def _load_model(policy: str | None, what: str = "policy") -> tuple[Any, Any]:
    """A float32 HF causal LM and its tokenizer with the protocol tokens added (``what`` names it in errors)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from adasr_mm.models import resolve_policy_path
    from adasr_mm.protocol import add_protocol_tokens

    path = resolve_policy_path(policy)
    try:
        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    except (OSError, ValueError) as e:
        raise AdasrError(f"cannot load {what} {policy or path!r}: {str(e).splitlines()[0]}") from e
    add_protocol_tokens(tok, model)
    return model, tok


def _last_checkpoint(d: Path) -> str | None:
    cks = sorted(d.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]) if p.name[11:].isdigit() else -1)
    return str(cks[-1]) if cks else None


def _already_done(a: argparse.Namespace, stage_dir: Path, name: str) -> bool:
    """On ``--resume``, a stage whose saved model exists is not run again."""
    if a.resume and (stage_dir / "config.json").is_file():
        print(f"{name}: already done ({stage_dir}), skipping")
        return True
    return False


def _train_and_save(trainer: Any, tok: Any, resume_dir: Path | None, save_dir: Path) -> Any:
    """Train (from the last checkpoint in ``resume_dir`` if any) and save model + tokenizer to ``save_dir``."""
    res = trainer.train(resume_from_checkpoint=_last_checkpoint(resume_dir) if resume_dir else None)
    trainer.save_model(str(save_dir))
    tok.save_pretrained(str(save_dir))
    return res


def run_train(a: argparse.Namespace) -> int:
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    cfg = _apply_train_flags(load_train_config(a.config, a.overrides), a)
    tc = cfg.train
    out = Path(tc.output_dir or f"runs/train-{tc.modality}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1, default=str))
    metrics = out / "metrics.jsonl"
    if not a.resume and metrics.exists():
        metrics.unlink()
    from .metrics import JsonlMetricsCallback, plot_metrics

    samples = load_run_samples(cfg, "train", tc.n_train)
    print(f"train: {len(samples)} {tc.modality} samples; stages {tc.stage_list}; run dir {out}")
    policy = tc.policy
    t0 = time.time()
    if "sft" in tc.stage_list:
        sft_dir = out / "sft"
        if not _already_done(a, sft_dir, "sft"):
            from .sft import build_sft_trainer

            model, tok = _load_model(policy)
            trainer = build_sft_trainer(model, tok, samples, cfg.sft, str(sft_dir), cfg.adapters.protocol)
            trainer.add_callback(JsonlMetricsCallback(metrics, "sft"))
            res = _train_and_save(trainer, tok, sft_dir if a.resume else None, sft_dir)
            print(f"sft: {res.global_step} steps, train loss {res.training_loss:.3f} -> {sft_dir}")
        policy = str(sft_dir)
    if "opd" in tc.stage_list:
        opd_dir = out / "opd"
        if not _already_done(a, opd_dir, "opd"):
            from .opd import OPDTrainer

            model, tok = _load_model(policy)
            ck_dir = out / "opd-checkpoints"
            trainer = OPDTrainer(model, tok, samples, cfg.opd, cfg.reward, str(ck_dir),
                                 protocol_config=cfg.adapters.protocol,
                                 callbacks=[JsonlMetricsCallback(metrics, "opd")])
            res = _train_and_save(trainer, tok, ck_dir if a.resume else None, opd_dir)
            print(f"opd: {res.global_step} steps from teacher {cfg.opd.teacher} ({cfg.opd.reward}) -> {opd_dir}")
        policy = str(opd_dir)
    if "rl" in tc.stage_list:
        from .trainer import HRPOTrainer

        model, tok = _load_model(policy)
        rl_dir = out / "rl-checkpoints"
        trainer = HRPOTrainer(model, tok, samples, cfg.rl, cfg.reward, str(rl_dir),
                              protocol_config=cfg.adapters.protocol,
                              callbacks=[JsonlMetricsCallback(metrics, "rl")])
        _train_and_save(trainer, tok, rl_dir if a.resume else None, out / "final")
        policy = str(out / "final")
    elif policy is not None:
        final = out / "final"
        if Path(policy) != final:
            import shutil

            shutil.copytree(policy, final, dirs_exist_ok=True)
    pngs = plot_metrics(metrics, out / "plots")
    print(f"train: done in {time.time() - t0:.0f}s; final model {out / 'final'}; metrics {metrics}; "
          f"plots {', '.join(p.name for p in pngs) or 'none'}")
    if tc.n_eval:
        from .evaluate import evaluate_and_print

        evaluate_and_print(str(out / "final"), cfg, tc.n_eval, out / "eval.json", baseline=tc.policy)
    return 0


def train_command() -> tuple[str, Any, Any]:
    return ("train the streaming policy: SFT warm start, on-policy distillation (opt.), HRPO/GRPO RL",
            add_train_args, run_train)


# -- eval --------------------------------------------------------------------------------------------------------
def add_eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.add_argument("--checkpoint", required=True, help="model dir to evaluate")
    p.add_argument("--modality", choices=("text", "audio", "video"), default=None)
    p.add_argument("--mode", choices=("stream", "read-then-think", "both"), default="both")
    p.add_argument("--config", help="train YAML (data, caps, adapters)")
    p.add_argument("--n", type=int, default=16, help="held-out samples")
    p.add_argument("--baseline", default="embedded", help="starting checkpoint to compare with ('' = none)")
    p.add_argument("--output", help="write the results as JSON")


def run_eval(a: argparse.Namespace) -> int:
    cfg = load_train_config(a.config, a.overrides)
    if a.modality:
        update_config(cfg, {"train": {"modality": a.modality}})  # type: ignore[arg-type]
    if not Path(a.checkpoint).is_dir():
        raise ConfigError(f"--checkpoint {a.checkpoint!r} is not a directory")
    from .evaluate import evaluate_and_print

    modes = ("stream", "read-then-think") if a.mode == "both" else (a.mode,)
    evaluate_and_print(a.checkpoint, cfg, a.n, Path(a.output) if a.output else None,
                       baseline=None if a.baseline == "" else (None if a.baseline == "embedded" else a.baseline),
                       modes=modes, with_baseline=a.baseline != "")
    return 0


def eval_command() -> tuple[str, Any, Any]:
    return ("evaluate a checkpoint on held-out streams vs the starting model", add_eval_args, run_eval)


def prepare_command() -> tuple[str, Any, Any]:
    from .prepare import add_prepare_args, run_prepare

    return ("run the (frozen) audio/video adapters once and cache the chunk streams", add_prepare_args, run_prepare)
