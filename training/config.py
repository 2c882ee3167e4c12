"""The training run's configuration: one dataclass per section, loaded from a YAML preset plus overrides.

Separate from the CLI so that the pipeline, the evaluation and the benchmarks build and read configs without
importing argument parsing (nothing imports from ``cli.py``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from adasr_mm.config import AdasrConfig, load_yaml, parse_override, sections, update_config
from adasr_mm.errors import ConfigError

from .lora import LoraStageConfig
from .opd import OPDStageConfig
from .rewards import RewardConfig
from .tasks import BUILTIN_SOURCES
from .trainer import RLStageConfig

STAGES = ("sft", "opd", "rl")  # the order they run in: warm start, distillation from a teacher, RL


@dataclass
class TrainRunConfig:
    """What to train, on which data, and where to write it."""

    modality: str = field(default="text", metadata={"help": "text, audio or video"})
    data: str = field(default="builtin", metadata={"help": f"{BUILTIN_SOURCES}, gsm-symbolic[:LANG], a JSONL file, or a HF datasets id/dir"})
    n_train: int = field(default=32, metadata={"help": "training samples"})
    n_eval: int = field(default=16, metadata={"help": "held-out samples for the final evaluation (0 = skip)"})
    stages: str = field(default="sft,rl", metadata={"help": "comma list of stages, in order: sft, opd, rl"})
    policy: str | None = field(default=None, metadata={
        "help": "starting model: hub id, model dir or adapter dir; empty = the untrained embedded SmolLM2 (base)"})
    output_dir: str = field(default="", metadata={"help": "run directory (default runs/train-<modality>)"})
    cache_dir: str = field(default="", metadata={"help": "chunk cache for audio/video (default user cache)"})
    seed: int = field(default=0, metadata={"help": "global seed"})
    mix: str = field(default="", metadata={
        "help": "a mixed training set, comma list of modality:source=n (text:builtin=128,audio:builtin:easy=32); "
                "replaces modality/data/n_train for training, not for the held-out evaluation"})

    def __post_init__(self) -> None:
        if self.modality not in ("text", "audio", "video"):
            raise ValueError(f"modality must be text, audio or video, got {self.modality!r}")
        st = self.stage_list
        bad = [s for s in st if s not in STAGES]
        if bad or not st or len(set(st)) < len(st) or st != sorted(st, key=STAGES.index):
            raise ValueError(f"stages must be a comma list of {', '.join(STAGES)} in this order, without repeats, "
                             f"got {self.stages!r}")
        self.mix_parts()  # validates
        if self.n_train < 1 or self.n_eval < 0:
            raise ValueError(f"need n_train >= 1 and n_eval >= 0, got {self.n_train}/{self.n_eval}")

    def mix_parts(self) -> list[tuple[str, str, int]]:
        """``train.mix`` as ``[(modality, source, n)]`` (empty when unset)."""
        parts = []
        for item in (x.strip() for x in self.mix.split(",")):
            if not item:
                continue
            spec, eq, n = item.rpartition("=")
            modality, colon, source = spec.partition(":")
            if not (eq and colon and source and n.strip().isdigit() and int(n) >= 1):
                raise ValueError(f"train.mix part {item!r} must look like modality:source=n (text:builtin=64)")
            if modality not in ("text", "audio", "video"):
                raise ValueError(f"train.mix part {item!r}: modality must be text, audio or video")
            parts.append((modality, source, int(n)))
        return parts

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
    lora: LoraStageConfig = field(default_factory=LoraStageConfig)
    adapters: AdasrConfig = field(default_factory=AdasrConfig)

    def to_dict(self) -> dict[str, Any]:
        d = {k: dataclasses.asdict(v) for k, v in sections(self).items() if k != "adapters"}
        d["adapters"] = self.adapters.to_dict()
        return d

    def validate(self) -> None:
        """Checks across sections, once flags and overrides are in (a section cannot know which stages run)."""
        if "opd" in self.train.stage_list and not self.opd.teacher:
            raise ConfigError("opd.teacher is required when the opd stage runs: pass --teacher ID|DIR "
                              "(a model sharing the student's tokenizer) or set opd.teacher")


def load_train_config(path: str | None, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Defaults, then the YAML file (if any), then ``section.key=value`` overrides (``adapters.*`` included)."""
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
