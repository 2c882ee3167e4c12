"""Reward terms, each a registered function of one finished rollout (METHOD.md §3).

Every term returns :class:`RewardTerms` — its value for the whole rollout and its stream/deep parts — so that
``R = sum_k w_k * total_k``, ``R^stream = sum_k w_k * stream_k`` and ``R^deep = sum_k w_k * deep_k`` feed both the
sequence-level (GRPO) and phase-level (HRPO) advantages.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

REWARDS: dict[str, Callable[[Any, RewardConfig], RewardTerms]] = {}


def register_reward(name: str) -> Callable:
    def deco(fn: Callable[[Any, RewardConfig], RewardTerms]) -> Callable[[Any, RewardConfig], RewardTerms]:
        REWARDS[name] = fn
        return fn

    return deco


@dataclass
class RewardConfig:
    """Which terms make the reward and how they are weighted."""

    terms: str = field(default="format,accuracy,adaptive", metadata={"help": "comma list of registered terms"})
    w_format: float = field(default=1.0, metadata={"help": "weight of the format term"})
    w_accuracy: float = field(default=1.0, metadata={"help": "weight of the accuracy term"})
    w_adaptive: float = field(default=1.0, metadata={"help": "weight of the adaptive-thinking cost"})
    w_stream: float = field(default=0.25, metadata={"help": "cost per streaming token (hidden behind the input)"})
    w_deep: float = field(default=1.0, metadata={"help": "cost per deep token (visible latency); must exceed w_stream"})
    length_norm: float = field(default=256.0, metadata={"help": "L: token normaliser of the adaptive cost"})
    w_lag: float = field(default=0.0, metadata={"help": "extra cost per second of lag over the stream (0 = off)"})

    def __post_init__(self) -> None:
        names = [t.strip() for t in self.terms.split(",") if t.strip()]
        unknown = [t for t in names if t not in REWARDS]
        if not names or unknown:
            raise ValueError(f"reward terms {unknown or names} unknown; registered: {', '.join(sorted(REWARDS))}")
        if not self.w_deep > self.w_stream >= 0:
            raise ValueError(f"need w_deep > w_stream >= 0 (deep tokens are visible latency), got "
                             f"w_stream={self.w_stream}, w_deep={self.w_deep}")
        if self.length_norm <= 0:
            raise ValueError(f"length_norm must be > 0, got {self.length_norm}")

    @property
    def names(self) -> list[str]:
        return [t.strip() for t in self.terms.split(",") if t.strip()]

    def weight(self, name: str) -> float:
        return float(getattr(self, f"w_{name}", 1.0))


@dataclass
class RewardTerms:
    total: float
    stream: float
    deep: float


@dataclass
class RolloutOutcome:
    """What the reward terms read from one finished rollout."""

    correct: bool
    format_stream: float
    format_deep: float
    stream_tokens: int
    deep_tokens: int  # deep reasoning + answer
    lag_s: float = 0.0
    answer: str = ""


@register_reward("format")
def format_reward(o: RolloutOutcome, cfg: RewardConfig) -> RewardTerms:
    return RewardTerms(0.5 * (o.format_stream + o.format_deep), o.format_stream, o.format_deep)


@register_reward("accuracy")
def accuracy_reward(o: RolloutOutcome, cfg: RewardConfig) -> RewardTerms:
    a = float(o.correct)
    return RewardTerms(a, a, a)


@register_reward("adaptive")
def adaptive_reward(o: RolloutOutcome, cfg: RewardConfig) -> RewardTerms:
    """Latency-aware thinking cost, only for correct answers (wrong ones are not rewarded for brevity)."""
    if not o.correct:
        return RewardTerms(0.0, 0.0, 0.0)
    s = -cfg.w_stream * o.stream_tokens / cfg.length_norm - cfg.w_lag * o.lag_s
    d = -cfg.w_deep * o.deep_tokens / cfg.length_norm
    return RewardTerms(s + d, s, d)


def score(o: RolloutOutcome, cfg: RewardConfig) -> tuple[tuple[float, float, float], dict[str, float]]:
    """``((R, R_stream, R_deep), {term: weighted total})`` for one rollout."""
    tot = st = dp = 0.0
    parts: dict[str, float] = {}
    for name in cfg.names:
        t = REWARDS[name](o, cfg)
        w = cfg.weight(name)
        tot, st, dp = tot + w * t.total, st + w * t.stream, dp + w * t.deep
        parts[name] = w * t.total
    return (tot, st, dp), parts
