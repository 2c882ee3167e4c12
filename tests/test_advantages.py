"""Advantage math against hand-computed values on a 3-rollout group."""

import math

import pytest
import torch

from adasr_mm.advantages import (
    DEEP,
    ENV,
    STREAM,
    AdvantageConfig,
    RewardBatch,
    get_advantage,
    group_normalize,
)

# rollouts i = 0, 1, 2 of one stream: (R, R_stream, R_deep)
ROWS = [(2.0, 1.0, 3.0), (1.0, 1.0, 1.0), (0.0, 4.0, 2.0)]
PHASES = torch.tensor([
    [ENV, STREAM, STREAM, ENV, DEEP, DEEP],
    [ENV, STREAM, ENV, DEEP, DEEP, ENV],   # trailing ENV = padding
    [ENV, ENV, STREAM, STREAM, DEEP, DEEP],
])


def test_group_normalize_by_hand():
    # R = (2, 1, 0): mean 1, unbiased std 1 -> (1, 0, -1) / (1 + eps)
    a = group_normalize(torch.tensor([2.0, 1.0, 0.0]), 3, eps=1e-4)
    assert torch.allclose(a, torch.tensor([1.0, 0.0, -1.0]) / (1 + 1e-4))
    # R_stream = (1, 1, 4): mean 2, std sqrt(3) -> (-1, -1, 2) / sqrt(3)
    b = group_normalize(torch.tensor([1.0, 1.0, 4.0]), 3, eps=0.0)
    assert torch.allclose(b, torch.tensor([-1.0, -1.0, 2.0]) / math.sqrt(3))
    with pytest.raises(ValueError, match="groups of 3"):
        group_normalize(torch.ones(4), 3)


def test_hrpo_by_hand():
    rb = RewardBatch.from_rows(ROWS)
    lam = 0.5
    adv = get_advantage("hrpo")(rb, PHASES, 3, AdvantageConfig(lam=lam, eps=0.0))
    a = [1.0, 0.0, -1.0]                                   # global
    a_s = [-1 / math.sqrt(3), -1 / math.sqrt(3), 2 / math.sqrt(3)]  # stream phase
    a_d = [1.0, -1.0, 0.0]                                 # deep: (3, 1, 2), mean 2, std 1
    expected = torch.zeros(3, 6)
    for i in range(3):
        for t in range(6):
            p = int(PHASES[i, t])
            if p == STREAM:
                expected[i, t] = (1 - lam) * a[i] + lam * a_s[i]
            elif p == DEEP:
                expected[i, t] = (1 - lam) * a[i] + lam * a_d[i]
    assert torch.allclose(adv, expected, atol=1e-6)
    assert adv[0, 1].item() == pytest.approx(0.5 * 1 + 0.5 * (-1 / math.sqrt(3)))
    assert adv[2, 4].item() == pytest.approx(0.5 * -1 + 0.5 * 0.0)


@pytest.mark.parametrize("eps", [0.0, 1e-4])
def test_hrpo_with_lambda_zero_is_exactly_grpo(eps):
    rb = RewardBatch.from_rows(ROWS + [(5.0, 0.0, 1.0), (5.0, 2.0, 2.0), (-3.0, 1.0, 0.5)])
    phases = torch.cat([PHASES, PHASES.flip(1)])
    h = get_advantage("hrpo")(rb, phases, 3, AdvantageConfig(lam=0.0, eps=eps))
    g = get_advantage("grpo")(rb, phases, 3, AdvantageConfig(eps=eps))
    assert torch.equal(h, g)


def test_environment_tokens_get_zero_and_policy_tokens_their_advantage():
    rb = RewardBatch.from_rows(ROWS)
    policy = PHASES != ENV
    g = get_advantage("grpo")(rb, PHASES, 3, AdvantageConfig(lam=0.7))
    h = get_advantage("hrpo")(rb, PHASES, 3, AdvantageConfig(lam=0.7))
    assert torch.all(g[~policy] == 0) and torch.all(h[~policy] == 0)
    # grpo: every policy token of rollout i carries A_i = (R_i - mean) / (std + eps) = (1, 0, -1) / (1 + 1e-4)
    expected = (torch.tensor([1.0, 0.0, -1.0]) / (1 + 1e-4))[:, None].expand(3, 6) * policy
    assert torch.allclose(g, expected, atol=1e-7, rtol=0)
    # hrpo at lam = 0.7: the phase term makes every policy token's advantage non-zero here
    assert torch.all(h[policy] != 0)


def test_unknown_advantage_and_bad_lambda():
    with pytest.raises(ValueError, match="registered: grpo, hrpo"):
        get_advantage("ppo")
    with pytest.raises(ValueError, match="lam"):
        AdvantageConfig(lam=1.5)
