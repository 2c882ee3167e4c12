"""On-policy distillation: bounded power rewards, env-masked per-token advantages, TRL loss = -sum sg[r] log p_S / N."""

from __future__ import annotations

import os

import pytest
import torch
from test_hrpo_trainer import exact, samples
from test_sft import assert_marker_rows_scaled

from adasr_mm.advantages import DEEP, ENV, STREAM
from adasr_mm.errors import ConfigError
from adasr_mm.training.opd import (
    OPD_REWARDS,
    OPDStageConfig,
    OPDTrainer,
    check_shared_vocab,
    get_opd_reward,
    phase_weights,
    teacher_token_logprobs,
)

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")


# -- rewards -----------------------------------------------------------------------------------------------------
def logp_grid() -> tuple[torch.Tensor, torch.Tensor]:
    """All pairs of log-probs from certain (0) to impossible (-inf), float64."""
    v = torch.tensor([0.0, -1e-6, -0.01, -0.3, -1.0, -2.5, -7.0, -15.0, -40.0, -200.0, float("-inf")],
                     dtype=torch.float64)
    return torch.meshgrid(v, v, indexing="ij")


@pytest.mark.parametrize("alpha", [0.05, 0.5, 1.0, 5.0, 20.0])
def test_power_reward_is_bounded_and_sign_consistent(alpha):
    lt, ls = logp_grid()
    r = get_opd_reward("power")(lt, ls, alpha)
    lr = get_opd_reward("log-ratio")(lt, ls, alpha)
    assert torch.isfinite(r).all() and r.abs().max() <= 1.0
    assert r[0, -1] == 1.0 and r[-1, 0] == -1.0  # teacher certain / student certain, the other impossible
    same = lt == ls
    assert (r[same] == 0).all()
    # never the opposite sign of the log-ratio; strictly the same sign where p^alpha is representable
    assert (torch.sign(r[~same]) * torch.sign(lr[~same]) >= 0).all()
    moderate = ~same & (lt > -15 / alpha) & (ls > -15 / alpha)
    assert moderate.sum() > 10
    assert (torch.sign(r[moderate]) == torch.sign(lr[moderate])).all()
    assert lr[~torch.isnan(lr)].abs().max() == float("inf")  # what the bounded reward fixes


def test_power_over_alpha_tends_to_the_log_ratio():
    g = torch.Generator().manual_seed(0)
    lt = -torch.rand(1000, generator=g, dtype=torch.float64) * 20
    ls = -torch.rand(1000, generator=g, dtype=torch.float64) * 20
    errs = []
    for alpha in (1e-1, 1e-2, 1e-3, 1e-4, 1e-6):
        r = OPD_REWARDS["power"](lt, ls, alpha) / alpha
        errs.append(float((r - (lt - ls)).abs().max()))
    assert all(b < a for a, b in zip(errs, errs[1:], strict=False)), errs
    # first-order term of (e^{a x} - e^{a y}) / a - (x - y) is a (x^2 - y^2) / 2: error shrinks linearly in alpha
    assert errs[-1] < 1e-3 and errs[-2] / errs[-3] == pytest.approx(0.1, rel=0.05), errs


@pytest.mark.parametrize("kw, message", [
    ({"reward": "kl"}, "unknown opd reward 'kl'; registered: log-ratio, power"),
    ({"alpha": 0}, "alpha must be > 0"),
    ({"num_generations": 1}, "num_generations must be >= 2"),
    ({"teacher_dtype": "int8"}, "teacher_dtype must be one of"),
    ({"deep_weight": -1}, "deep_weight must be >= 0"),
    ({"marker_lr_multiplier": 0.5}, "marker_lr_multiplier must be >= 1"),
    ({"guide_top_k": -1}, "guide_top_k must be >= 0"),
])
def test_bad_opd_config_is_clear(kw, message):
    with pytest.raises(ValueError, match=message):
        OPDStageConfig(**kw)


def test_phase_weights():
    phase = torch.tensor([[ENV, STREAM, STREAM, ENV, DEEP, DEEP, ENV]])
    assert phase_weights(phase, 3.0).tolist() == [[0, 1, 1, 0, 3, 3, 0]]


# -- trainer on tiny random models -------------------------------------------------------------------------------
def tiny_lm(embedded_dir, hidden=32, layers=2, seed=0, extra_tokens=()):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(embedded_dir)
    if extra_tokens:
        tok.add_tokens(list(extra_tokens))
    conf = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden,
                       num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                       max_position_embeddings=2048, tie_word_embeddings=True)
    return LlamaForCausalLM(conf), tok


def make_opd(embedded_dir, tmp_path, **opd):
    student, s_tok = tiny_lm(embedded_dir)
    teacher = tiny_lm(embedded_dir, hidden=48, layers=3, seed=1)  # a different size, same tokenizer
    cfg = OPDStageConfig(**{"max_steps": 2, "num_generations": 2, "prompts_per_step": 1, "max_thought_tokens": 4,
                            "max_deep_tokens": 6, "max_answer_tokens": 3, "save_steps": 1, "temperature": 1.0,
                            **opd})
    return OPDTrainer(student, s_tok, samples(), cfg, output_dir=str(tmp_path / "opd"), teacher=teacher, check=exact)


def student_logps(model, r):
    x = torch.tensor([r.prompt_ids + r.completion_ids])
    logits = model(input_ids=x).logits[0, len(r.prompt_ids) - 1 : -1].float()
    return torch.log_softmax(logits, -1).gather(-1, torch.tensor(r.completion_ids)[:, None])[:, 0]


def test_teacher_scores_the_interleaved_sequence(embedded_dir):
    teacher, tok = tiny_lm(embedded_dir, hidden=48, layers=3, seed=1)
    prompt, completion = tok("Question: apples?")["input_ids"], tok(" Tom has 5 apples. 5")["input_ids"]
    lt, top1 = teacher_token_logprobs(teacher, prompt, completion)
    with torch.no_grad():
        full = torch.log_softmax(teacher(input_ids=torch.tensor([prompt + completion])).logits[0].float(), -1)
    want = torch.stack([full[len(prompt) + t - 1, c] for t, c in enumerate(completion)])
    assert lt.shape == (len(completion),) and torch.allclose(lt, want, atol=1e-5)
    assert top1.tolist() == [int(full[len(prompt) + t - 1].argmax()) == c for t, c in enumerate(completion)]


def test_advantages_are_weighted_teacher_rewards_and_chunk_tokens_contribute_zero(embedded_dir, tmp_path):
    tr = make_opd(embedded_dir, tmp_path, reward="power", alpha=0.05, deep_weight=2.0)
    tr.model.train()
    batch = tr._generate_and_score_completions([{"prompt": "<sample:0>"}] * 2)
    adv = batch["advantages"]
    assert adv.shape == batch["completion_ids"].shape
    for i, r in enumerate(tr._rollouts):
        n = len(r.completion_ids)
        lt, _ = teacher_token_logprobs(tr.teacher, r.prompt_ids, r.completion_ids)
        ls = torch.tensor(r.logprobs)
        with torch.no_grad():  # on-policy: the rollout's p_S is the current model's probability of the token
            recomputed = student_logps(tr.model, r)
        pol = torch.tensor(r.env_mask).bool()
        assert torch.allclose(ls[pol], recomputed[pol], atol=1e-4)
        w = torch.tensor([{ENV: 0.0, STREAM: 1.0, DEEP: 2.0}[p] for p in r.phase_ids])
        want = (torch.exp(0.05 * lt.double()) - torch.exp(0.05 * ls.double())).float() * w
        assert torch.allclose(adv[i, :n], want, atol=1e-6)
        assert (adv[i, :n][~pol] == 0).all() and (adv[i, n:] == 0).all()
        assert (adv[i, :n][pol] != 0).any() and (~pol).sum() > 10  # chunks are in the completion, masked
    # loss and gradients do not change when chunk-token advantages are set to anything at all
    tr.current_gradient_accumulation_steps = 1  # set by Trainer.train's loop; we call compute_loss directly

    def loss_and_grad(b):
        tr.model.zero_grad()
        loss = tr.compute_loss(tr.model, b)
        loss.backward()
        return loss.detach(), torch.cat([p.grad.flatten() for p in tr.model.parameters() if p.grad is not None])

    env = torch.zeros_like(adv, dtype=torch.bool)
    for i, r in enumerate(tr._rollouts):
        env[i, : len(r.env_mask)] = torch.tensor(r.env_mask) == 0
    l0, g0 = loss_and_grad(batch)
    l1, g1 = loss_and_grad({**batch, "advantages": adv.masked_fill(env, 1e6)})
    assert torch.equal(l0, l1) and torch.equal(g0, g1)

    # TRL's clipped surrogate at ratio 1 with loss_type dapo is exactly -sum_t sg[A_t] log p_S(o_t) / N
    tr.model.zero_grad()
    n_policy = sum(sum(r.env_mask) for r in tr._rollouts)
    manual = -sum((adv[i, : len(r.completion_ids)].detach() * torch.tensor(r.env_mask) * student_logps(tr.model, r))
                  .sum() for i, r in enumerate(tr._rollouts)) / n_policy
    manual.backward()
    g_manual = torch.cat([p.grad.flatten() for p in tr.model.parameters() if p.grad is not None])
    assert g0.abs().max() > 0
    assert torch.allclose(g0, g_manual, rtol=1e-4, atol=1e-7 * float(g0.abs().max()))


def test_two_real_opd_steps_on_tiny_models(embedded_dir, tmp_path):
    tr = make_opd(embedded_dir, tmp_path, reward="log-ratio", learning_rate=1e-3)
    before = {n: p.detach().clone() for n, p in tr.model.named_parameters()}
    teacher_before = {n: p.detach().clone() for n, p in tr.teacher.named_parameters()}
    out = tr.train()
    assert out.global_step == 2
    changed = [n for n, p in tr.model.named_parameters() if not torch.equal(p.detach(), before[n])]
    assert len(changed) == len(before), "every student weight gets a gradient from the distillation loss"
    assert all(torch.equal(p, teacher_before[n]) for n, p in tr.teacher.named_parameters()), "teacher is frozen"
    assert (tmp_path / "opd" / "checkpoint-2" / "optimizer.pt").is_file()
    logs = [h for h in tr.state.log_history if "opd/reward_mean" in h]
    assert len(logs) == 2
    # the logged reward statistics are those of the last step's rollouts: r_t = log p_T(o_t) - log p_S(o_t) on
    # policy tokens only, p_S as recorded when sampling, p_T from the (frozen) teacher
    r = torch.cat([(teacher_token_logprobs(tr.teacher, x.prompt_ids, x.completion_ids)[0]
                    - torch.tensor(x.logprobs))[torch.tensor(x.env_mask, dtype=torch.bool)] for x in tr._rollouts])
    last = logs[-1]
    assert r.min() < 0 < r.max()
    assert (last["opd/reward_mean"], last["opd/reward_min"], last["opd/reward_max"]) == pytest.approx(
        (r.mean().item(), r.min().item(), r.max().item()), abs=1e-4)
    for h in logs:
        assert 0 <= h["opd/agreement"] <= 1 and h["grad_norm"] > 0
        assert h["opd/stream_tokens"] > 0 and h["opd/deep_tokens"] > 0
        # reverse KL estimate = -(mean log-ratio reward) for this reward
        assert h["opd/reverse_kl"] == pytest.approx(-h["opd/reward_mean"], abs=1e-4)


def test_teacher_with_another_vocabulary_is_a_clear_error(embedded_dir, tmp_path):
    student, s_tok = tiny_lm(embedded_dir)
    teacher = tiny_lm(embedded_dir, seed=1, extra_tokens=("<|not-in-student|>",))
    n = len(s_tok)
    with pytest.raises(ConfigError, match=r"does not share the student's tokenizer") as e:
        OPDTrainer(student, s_tok, samples(), OPDStageConfig(teacher="tiny-other"), teacher=teacher,
                   output_dir=str(tmp_path / "x"))
    msg = str(e.value)
    assert "'tiny-other'" in msg and "<|not-in-student|>" in msg and f"id {n}:" in msg
    assert f"student vocabulary {len(s_tok)} tokens, teacher vocabulary {len(s_tok) + 1} tokens" in msg
    check_shared_vocab(s_tok, s_tok)  # identical vocabularies pass


def test_audio_and_video_streams_distil_through_the_same_rollout(embedded_dir, tmp_path):
    from adasr_mm.chunks import TimedChunk
    from adasr_mm.training.sample import Sample

    av = [Sample("av", "What shape appears?", "circle", chunks=[
        TimedChunk(0.0, 1.0, "A red circle appears in the centre.", modality="video"),
        TimedChunk(0.4, 1.6, "Look at the shape now.", modality="audio"),
        TimedChunk(1.0, 2.0, "The circle moves to the left.", modality="video")])]
    tr = make_opd(embedded_dir, tmp_path, reward="log-ratio")
    tr.samples = av
    tr.model.train()
    batch = tr._generate_and_score_completions([{"prompt": "<sample:0>"}] * 2)
    for i, r in enumerate(tr._rollouts):
        pol = torch.tensor(r.env_mask).bool()
        assert r.summary["chunks"] == 3 and (~pol).sum() > 10
        assert (batch["advantages"][i, : len(pol)][~pol] == 0).all()
        assert (batch["advantages"][i, : len(pol)][pol] != 0).all()  # log-ratio: every policy token is scored


def test_teacher_guided_rollouts_keep_every_policy_token_in_the_teachers_top_k(embedded_dir, tmp_path):
    k = 3
    tr = make_opd(embedded_dir, tmp_path, reward="power", guide_top_k=k)
    tr.model.train()
    batch = tr._generate_and_score_completions([{"prompt": "<sample:0>"}] * 2)
    policy = tr.streamer.policy
    close = policy.ids.think_close
    guided = 0
    for i, r in enumerate(tr._rollouts):
        x = torch.tensor([r.prompt_ids + r.completion_ids])
        with torch.no_grad():
            t_logits = tr.teacher(input_ids=x).logits[0, len(r.prompt_ids) - 1 : -1].float()
            recomputed = student_logps(tr.model, r)
        after_close = False
        for t, (tok, m, ph) in enumerate(zip(r.completion_ids, r.env_mask, r.phase_ids, strict=True)):
            if m:
                phase = "stream" if ph == STREAM else "answer" if after_close else "deep"
                masked = t_logits[t].masked_fill(policy._masks[phase][: t_logits.shape[1]], float("-inf"))
                assert tok in masked.topk(k).indices.tolist(), (t, phase)
            after_close = after_close or tok == close
        pol = torch.tensor(r.env_mask).bool()
        # the reward and the loss use the student's own log-prob, also of the tokens the teacher chose
        assert torch.allclose(torch.tensor(r.logprobs)[pol], recomputed[pol], atol=1e-4)
        assert (batch["advantages"][i, : len(pol)][~pol] == 0).all()
        guided += r.guided
    assert guided > 0  # a random tiny student strays from a random tiny teacher's top-3
    assert 0 < tr._metrics["train"]["opd/guided_rate"][-1] <= 1


def test_a_guide_that_accepts_everything_leaves_rollouts_unchanged(embedded_dir, tmp_path):
    plain = make_opd(embedded_dir, tmp_path / "a")
    vocab = plain.model.get_output_embeddings().weight.shape[0]
    guided = make_opd(embedded_dir, tmp_path / "b", guide_top_k=vocab)
    for tr in (plain, guided):
        tr.model.train()
        tr._generate_and_score_completions([{"prompt": "<sample:0>"}] * 2)
    for a, b in zip(plain._rollouts, guided._rollouts, strict=True):
        assert a.completion_ids == b.completion_ids and b.guided == 0


def test_marker_rows_take_larger_opd_steps(embedded_dir, tmp_path):
    """marker_lr_multiplier scales the protocol rows' update as in SFT (same rollouts, same gradients)."""
    from adasr_mm.protocol import PROTOCOL_TOKENS

    deltas = {}
    for k in (1.0, 4.0):
        tr = make_opd(embedded_dir, tmp_path / f"k{k}", reward="log-ratio", max_steps=1, learning_rate=1e-3,
                      marker_lr_multiplier=k)
        emb = tr.model.get_input_embeddings().weight
        before = emb.detach().clone()
        tr.train()
        deltas[k] = emb.detach() - before
    assert_marker_rows_scaled(deltas, [tr.processing_class.convert_tokens_to_ids(t) for t in PROTOCOL_TOKENS])
