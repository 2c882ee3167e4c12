"""Advantage estimators, selected by name (``@register_advantage``), as in verl.

All take the per-rollout rewards of a batch made of consecutive groups of ``group_size`` rollouts of the same
stream, and per-token phase ids, and return a ``(B, T)`` advantage per token:

- ``grpo``: ``A_i = (R_i - mean_G R) / (std_G R + eps)`` on every policy token of rollout ``i``.
- ``hrpo``: ``A_{i,t} = (1 - lam) * A_i + lam * A_i^{p(t)}`` with ``A_i^p`` the same normalisation of the phase
  reward ``R^p`` (p = stream or deep). ``lam = 0`` is exactly ``grpo``.

Tokens written by the environment (phase id 0: prompt, chunks, forced closures, padding) always get 0.
``std`` is the unbiased group standard deviation and ``eps = 1e-4``, matching TRL's GRPO.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

ENV, STREAM, DEEP = 0, 1, 2  # phase ids per token

AdvantageFn = Callable[["RewardBatch", torch.Tensor, int, "AdvantageConfig"], torch.Tensor]
ADVANTAGES: dict[str, AdvantageFn] = {}


def register_advantage(name: str) -> Callable[[AdvantageFn], AdvantageFn]:
    def deco(fn: AdvantageFn) -> AdvantageFn:
        ADVANTAGES[name] = fn
        return fn

    return deco


def get_advantage(name: str) -> AdvantageFn:
    if name not in ADVANTAGES:
        raise ValueError(f"unknown advantage {name!r}; registered: {', '.join(sorted(ADVANTAGES))}")
    return ADVANTAGES[name]


@dataclass
class AdvantageConfig:
    lam: float = 0.5  # weight of the phase-level term in hrpo
    eps: float = 1e-4

    def __post_init__(self) -> None:
        if not 0.0 <= self.lam <= 1.0:
            raise ValueError(f"lam must be in [0, 1], got {self.lam}")


@dataclass
class RewardBatch:
    """Per-rollout rewards: total ``R``, and the phase rewards ``R^stream``, ``R^deep`` (each shape (B,))."""

    total: torch.Tensor
    stream: torch.Tensor
    deep: torch.Tensor

    @classmethod
    def from_rows(cls, rows: list[tuple[float, float, float]]) -> RewardBatch:
        t = torch.tensor(rows, dtype=torch.float32).reshape(-1, 3)
        return cls(t[:, 0], t[:, 1], t[:, 2])


def group_normalize(x: torch.Tensor, group_size: int, eps: float = 1e-4) -> torch.Tensor:
    """``(x - group mean) / (group std + eps)`` for consecutive groups of ``group_size``."""
    if x.numel() % group_size:
        raise ValueError(f"{x.numel()} rollouts do not split into groups of {group_size}")
    g = x.float().reshape(-1, group_size)
    mean = g.mean(1, keepdim=True)
    std = g.std(1, keepdim=True) if group_size > 1 else torch.zeros_like(mean)
    return ((g - mean) / (std + eps)).reshape(-1)


@register_advantage("grpo")
def grpo(rewards: RewardBatch, phases: torch.Tensor, group_size: int, cfg: AdvantageConfig) -> torch.Tensor:
    a = group_normalize(rewards.total, group_size, cfg.eps)
    return a[:, None].to(phases.device) * (phases != ENV)


@register_advantage("hrpo")
def hrpo(rewards: RewardBatch, phases: torch.Tensor, group_size: int, cfg: AdvantageConfig) -> torch.Tensor:
    a = group_normalize(rewards.total, group_size, cfg.eps)[:, None].to(phases.device)
    a_s = group_normalize(rewards.stream, group_size, cfg.eps)[:, None].to(phases.device)
    a_d = group_normalize(rewards.deep, group_size, cfg.eps)[:, None].to(phases.device)
    phase_term = torch.where(phases == STREAM, a_s, torch.where(phases == DEEP, a_d, torch.zeros_like(a_s)))
    out = (1.0 - cfg.lam) * a + cfg.lam * phase_term
    return out * (phases != ENV)
