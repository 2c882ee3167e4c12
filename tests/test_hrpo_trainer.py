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


@register_reward("test_flat")
def _flat(o, cfg):  # the same for every rollout: a group without signal
    return RewardTerms(1.0, 1.0, 1.0)


def exact(pred: str, gold: str) -> bool:
    return pred.strip() == gold.strip()


def samples(n=2):
    return [Sample(f"s{i}", "How many apples does Tom have?", str(5 + i),
                   chunks=list(chunks_from_text(f"Tom has {5 + i} apples in a box. The sky is very blue today.")))
            for i in range(n)]


def make_trainer(policy, tmp_path, check=exact, **rl):
    # dynamic sampling by reward spread unless a test asks: the tiny random model is never right, so by accuracy
    # every group would be redrawn
    cfg = RLStageConfig(**{"max_steps": 2, "num_generations": 3, "max_thought_tokens": 4, "max_deep_tokens": 6,
                           "max_answer_tokens": 3, "save_steps": 1, "temperature": 1.5, "dynamic_sampling": "reward",
                           **rl})
    return HRPOTrainer(policy.model, policy.tokenizer, samples(), cfg,
                       RewardConfig(terms="format,accuracy,test_brevity"), str(tmp_path / "rl"), check=check)


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


def record_rollouts(tr, log):
    """Record (global step, completion ids of each rollout) as the trainer rolls out."""
    run_group = tr.streamer.run_group

    def spy(sample, seeds):
        group = run_group(sample, seeds)
        log.append((int(tr.state.global_step), [r.completion_ids for r in group]))
        return group

    tr.streamer.run_group = spy


def test_a_resumed_run_rolls_out_what_the_uninterrupted_run_does(make_tiny_policy, tmp_path):
    """Rollout seeds and data order come from (seed, step, position): resuming at step 2 (epoch 1 of 2 samples)
    replays the uninterrupted run's step-2 rollouts token for token."""
    from transformers import TrainerCallback

    class StopAt(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            control.should_training_stop = state.global_step >= 2

    full, first, resumed = [], [], []
    tr = make_trainer(make_tiny_policy(dtype="float32"), tmp_path / "a", max_steps=3, max_redraws=0)
    record_rollouts(tr, full)
    tr.train()
    tr = make_trainer(make_tiny_policy(dtype="float32"), tmp_path / "b", max_steps=3, max_redraws=0)
    tr.add_callback(StopAt())
    record_rollouts(tr, first)
    tr.train()
    assert [s for s, _ in first] == [0, 1] and first == full[:2]
    tr = make_trainer(make_tiny_policy(dtype="float32"), tmp_path / "b", max_steps=3, max_redraws=0)
    record_rollouts(tr, resumed)
    tr.train(resume_from_checkpoint=str(tmp_path / "b" / "rl" / "checkpoint-2"))
    assert [s for s, _ in resumed] == [2] and resumed == full[2:]
    assert rollout_seed(0, 5, 2) != rollout_seed(0, 5, 3) != rollout_seed(0, 6, 2)


def test_dynamic_sampling_replaces_groups_without_signal(make_tiny_policy, tmp_path):
    # a constant reward: no group ever has signal, so each redraw is tried and the bound stops it
    tr = make_trainer(make_tiny_policy(dtype="float32"), tmp_path, max_redraws=3)
    tr.streamer.reward_config = RewardConfig(terms="test_flat")
    log = []
    record_rollouts(tr, log)
    tr.model.train()
    tr._rollout_func(["<sample:0>"] * 3, tr)
    m = tr._metrics["train"]
    assert len(log) == 4 and m["hrpo/redraws"] == [3.0] and m["hrpo/flat_groups"] == [1.0]
    # with the varying test reward the first group already has signal: no redraw
    tr.streamer.reward_config = RewardConfig(terms="format,accuracy,test_brevity")
    log.clear()
    tr._rollout_func(["<sample:0>"] * 3, tr)
    assert len(log) == 1 and m["hrpo/redraws"][-1] == 0.0 and m["hrpo/flat_groups"][-1] == 0.0


def test_dynamic_sampling_by_accuracy_redraws_groups_all_right_or_all_wrong(make_tiny_policy, tmp_path):
    """DAPO's filter: rewards that differ only in format/length are no signal; mixed correctness is."""
    policy = make_tiny_policy(dtype="float32")
    calls = []

    def every_other(pred: str, gold: str) -> bool:  # the 1st, 3rd, ... rollout checked is right
        calls.append(pred)
        return len(calls) % 2 == 1

    for check, by, redraws in ((exact, "reward", 0.0), (exact, "accuracy", 2.0), (every_other, "accuracy", 0.0)):
        tr = make_trainer(policy, tmp_path / f"{by}{redraws}", check=check, dynamic_sampling=by, max_redraws=2)
        tr.model.train()
        tr._rollout_func(["<sample:0>"] * 3, tr)
        m = tr._metrics["train"]
        assert m["hrpo/redraws"] == [redraws] and m["hrpo/flat_groups"] == [float(redraws > 0)], (by, check)


def test_bad_rl_config():
    with pytest.raises(ValueError, match="registered"):
        RLStageConfig(advantage="ppo")
    with pytest.raises(ValueError, match="num_generations"):
        RLStageConfig(num_generations=1)
    with pytest.raises(ValueError, match="dynamic_sampling must be one of"):
        RLStageConfig(dynamic_sampling="entropy")
    with pytest.raises(ValueError, match="temperature"):
        RLStageConfig(temperature=0)
    assert "test_brevity" in REWARDS


@torch.no_grad()
def objective(model, b):
    """sum_t A_t * log p(o_t) / N over the batch's loss tokens (completion mask times env mask)."""
    was = model.training
    model.eval()
    ids = torch.cat([b["prompt_ids"], b["completion_ids"]], 1)
    att = torch.cat([b["prompt_mask"], b["completion_mask"]], 1)
    n = b["completion_ids"].shape[1]
    logits = model(input_ids=ids, attention_mask=att).logits[:, -n - 1 : -1].float()
    logp = torch.log_softmax(logits, -1).gather(-1, b["completion_ids"][..., None])[..., 0]
    mask = b["completion_mask"] * b["tool_mask"]
    model.train(was)
    return float((b["advantages"] * logp * mask).sum() / mask.sum())


@pytest.mark.slow
def test_two_real_rl_steps_on_the_bundled_model(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

    from adasr_mm.advantages import RewardBatch, get_advantage
    from adasr_mm.models import embedded_policy_dir
    from adasr_mm.policy import StreamingPolicy

    d = embedded_policy_dir()
    tok = AutoTokenizer.from_pretrained(d)
    model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32)
    policy = StreamingPolicy(model, tok)
    tr = make_trainer(policy, tmp_path, learning_rate=1e-4, save_steps=2, num_generations=2)
    scored = []  # per step: (batch, objective before the update, objective after it)
    after_scoring = tr.after_scoring

    def spy(out):  # each step's batch and its objective under the weights that sampled it
        out = after_scoring(out)
        # the batch's advantages are the registered estimator on its own rollouts' rewards and phases
        rewards = RewardBatch.from_rows([r.rewards for r in tr._rollouts])
        want = get_advantage("hrpo")(rewards, tr._phase_tensor(out["advantages"].shape[1]), 2, tr.adv_cfg)
        assert torch.allclose(out["advantages"], want)
        scored.append([out, objective(tr.model, out), None])
        return out

    class AfterUpdate(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            scored[-1][2] = objective(tr.model, scored[-1][0])

    tr.after_scoring = spy
    tr.add_callback(AfterUpdate())
    out = tr.train()
    assert out.global_step == 2 and len(scored) == 2
    batch, before, after = scored[0]
    assert batch["advantages"].abs().sum() > 0
    # the first update (Adam's first step: -lr * sign-like(grad)) raised its own batch's advantage-weighted
    # log-likelihood: the weights moved up the policy gradient, not just anywhere
    assert after > before + 1e-3 * abs(before), (before, after)
    assert (tmp_path / "rl" / "checkpoint-2" / "optimizer.pt").is_file()
    logs = [h for h in tr.state.log_history if "hrpo/stream_tokens" in h]
    assert len(logs) == 2 and all(h["hrpo/stream_tokens"] > 0 for h in logs)


def test_batched_and_session_backends_roll_out_the_same_group(make_tiny_policy):
    """The trainer's default (batched engine) gives each seed the rollout a batch-1 Session gives it."""
    from adasr_mm.training.rollout import StreamingRollout

    policy = make_tiny_policy(dtype="float32")
    cfg = RLStageConfig(max_thought_tokens=4, max_deep_tokens=6, max_answer_tokens=3, temperature=1.5)
    groups = {}
    for backend in ("batched", "session"):
        ro = StreamingRollout(policy.model, policy.tokenizer, cfg.policy_config(),
                              RewardConfig(terms="format,accuracy,test_brevity"), check=exact, backend=backend)
        groups[backend] = ro.run_group(samples()[1], [11, 12, 13, 14])
    for a, b in zip(groups["batched"], groups["session"], strict=True):
        assert (a.completion_ids, a.env_mask, a.phase_ids) == (b.completion_ids, b.env_mask, b.phase_ids)
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-4) and a.rewards == pytest.approx(b.rewards)
    assert len({tuple(r.completion_ids) for r in groups["session"]}) > 1  # the seeds do sample different rollouts
    with pytest.raises(ValueError, match="rollout_backend must be batched or session"):
        RLStageConfig(rollout_backend="vllm")


def test_bf16_rollouts_decode_a_copy_resynced_before_every_step(make_tiny_policy, tmp_path):
    """rollout_dtype=bfloat16: the training weights stay float32, a bf16 copy decodes, and each step's rollouts
    see the weights the previous update produced (not the ones the run started with)."""
    policy = make_tiny_policy(dtype="float32")
    policy.model.get_input_embeddings().weight.requires_grad_(False)  # frozen, as LoRA freezes the base
    tr = make_trainer(policy, tmp_path, rollout_dtype="bfloat16", learning_rate=1e-2)
    dec, run_group = tr.streamer.policy.model, tr.streamer.run_group
    assert dec is not tr.model and next(dec.parameters()).dtype == torch.bfloat16
    rotary = [b for n, b in dec.named_buffers() if "inv_freq" in n]
    assert rotary and all(b.dtype == torch.float32 for b in rotary)
    # frozen bf16 weights send a sliced lm_head input down torch's slow CPU bmm path (0.5 s per prefill call)
    assert all(p.requires_grad for p in dec.parameters())
    seen = []  # per call: (training weights at the call, decode copy == training weights in bf16)

    def spy(sample, seeds):
        pairs = list(zip(dec.parameters(), tr.model.parameters(), strict=True))
        seen.append((torch.cat([s.detach().flatten() for _, s in pairs]).clone(),
                     all(torch.equal(d, s.detach().to(torch.bfloat16)) for d, s in pairs)))
        return run_group(sample, seeds)

    tr.streamer.run_group = spy
    tr.train()
    assert next(tr.model.parameters()).dtype == torch.float32
    steps = [seen[0], seen[-1]]
    assert not torch.equal(steps[0][0], steps[1][0])  # the update moved the weights between the steps
    assert all(synced for _, synced in seen), [synced for _, synced in seen]
    with pytest.raises(ValueError, match="rollout_dtype must be float32 or bfloat16"):
        RLStageConfig(rollout_dtype="int8")
