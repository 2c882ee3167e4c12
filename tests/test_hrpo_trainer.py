"""HRPOTrainer on TRL: env-masked loss, per-token advantages, and a real update on the bundled model."""

from __future__ import annotations

import os

import pytest
import torch

from adasr_mm.adapters.text import chunks_from_text
from adasr_mm.training.rewards import REWARDS, RewardConfig, RewardTerms, register_reward
from adasr_mm.training.sample import Sample
from adasr_mm.training.trainer import HRPOTrainer, RLStageConfig, rollout_seed

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")


@register_reward("test_brevity")
def _brevity(o, cfg):  # varies between sampled rollouts (answer text), so a group has non-zero advantages
    h = (sum(map(ord, o.answer)) % 17) / 17.0
    s, d = -o.stream_tokens / 64.0 + h, -o.deep_tokens / 64.0 - h / 2
    return RewardTerms(s + d, s, d)


def exact(pred: str, gold: str) -> bool:
    return pred.strip() == gold.strip()


def samples(n=2):
    return [Sample(f"s{i}", "How many apples does Tom have?", str(5 + i),
                   chunks=list(chunks_from_text(f"Tom has {5 + i} apples in a box. The sky is very blue today.")))
            for i in range(n)]


def make_trainer(policy, tmp_path, **rl):
    cfg = RLStageConfig(**{"max_steps": 2, "num_generations": 3, "max_thought_tokens": 4, "max_deep_tokens": 6,
                           "max_answer_tokens": 3, "save_steps": 1, "temperature": 1.5, **rl})
    return HRPOTrainer(policy.model, policy.tokenizer, samples(), cfg,
                       RewardConfig(terms="format,accuracy,test_brevity"), str(tmp_path / "rl"), check=exact)


def test_chunk_tokens_contribute_exactly_zero_loss(make_tiny_policy, tmp_path):
    policy = make_tiny_policy(dtype="float32")
    tr = make_trainer(policy, tmp_path)
    tr.model.train()
    batch = tr._generate_and_score_completions([{"prompt": "<sample:0>"}] * 3)
    adv = batch["advantages"]
    phases = torch.zeros_like(adv, dtype=torch.long)
    for i, r in enumerate(tr._rollouts):
        phases[i, : len(r.phase_ids)] = torch.tensor(r.phase_ids)
    env = phases == 0
    assert adv.shape == batch["completion_ids"].shape  # (B, T): per-token advantages
    assert torch.all(adv[env] == 0) and torch.any(adv[~env] != 0)
    # TRL's loss mask is our env_mask on the real (unpadded) completion positions
    real = batch["completion_mask"].bool()
    assert torch.equal(batch["tool_mask"][real].bool(), torch.cat([torch.tensor(r.env_mask) for r in tr._rollouts]).bool())
    # loss and gradients do not change when chunk-token advantages are set to anything at all
    tr.current_gradient_accumulation_steps = 1  # set by Trainer.train's loop; we call compute_loss directly

    def loss_and_grad(b):
        tr.model.zero_grad()
        loss = tr.compute_loss(tr.model, b)
        loss.backward()
        g = torch.cat([p.grad.flatten() for p in tr.model.parameters() if p.grad is not None])
        return loss.detach(), g

    l0, g0 = loss_and_grad(batch)
    poisoned = dict(batch)
    poisoned["advantages"] = adv.masked_fill(env, 1e6)
    l1, g1 = loss_and_grad(poisoned)
    assert torch.equal(l0, l1) and torch.equal(g0, g1)


def test_rollout_seeds_survive_a_resume():
    assert rollout_seed(0, 5, 2) == rollout_seed(0, 5, 2)
    assert len({rollout_seed(0, s, i) for s in range(10) for i in range(8)}) == 80


def test_bad_rl_config():
    with pytest.raises(ValueError, match="registered"):
        RLStageConfig(advantage="ppo")
    with pytest.raises(ValueError, match="num_generations"):
        RLStageConfig(num_generations=1)
    with pytest.raises(ValueError, match="temperature"):
        RLStageConfig(temperature=0)
    assert "test_brevity" in REWARDS


@pytest.mark.slow
def test_two_real_rl_steps_on_the_bundled_model(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from adasr_mm.models import embedded_policy_dir
    from adasr_mm.policy import StreamingPolicy

    d = embedded_policy_dir()
    tok = AutoTokenizer.from_pretrained(d)
    model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32)
    policy = StreamingPolicy(model, tok)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    tr = make_trainer(policy, tmp_path, learning_rate=1e-4, save_steps=2, num_generations=2)
    out = tr.train()
    assert out.global_step == 2
    changed = [n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])]
    assert changed, "two RL steps with non-zero advantages must move the weights"
    assert (tmp_path / "rl" / "checkpoint-2" / "optimizer.pt").is_file()
    logs = [h for h in tr.state.log_history if "hrpo/stream_tokens" in h]
    assert len(logs) == 2 and all(h["hrpo/stream_tokens"] > 0 for h in logs)
