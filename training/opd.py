"""On-policy distillation (OPD) of a streaming policy from a teacher, with bounded power rewards (PowerOPD).

The student writes its own streaming rollouts — the very same :class:`~.rollout.StreamingRollout` as HRPO: chunks
injected by the environment, one KV cache per stream — and a teacher scores each rollout's interleaved sequence
(prompt + chunks + thoughts + deep reasoning + answer) in one no-grad forward pass. Every policy token ``o_t``
(``env_mask == 1``) gets a reward from the probability of the *sampled* token under teacher and student; chunk
and marker tokens the environment wrote get exactly 0. The loss is the plain policy gradient

    L = -(1/N) * sum_t w_{p(t)} * sg[r_t] * log p_S(o_t)        (N = policy tokens per accumulation window)

with no baseline and no ratio clipping. Rewards (registry, ``@register_opd_reward``):

- ``log-ratio`` (vanilla OPD): ``r_t = log p_T(o_t) - log p_S(o_t)``, the single-sample reverse-KL estimate;
  unbounded, so rare tokens with tiny ``p_S`` or ``p_T`` dominate the gradient.
- ``power`` (PowerOPD, Zhao et al., 2026): ``r_t = p_T(o_t)^a - p_S(o_t)^a`` with ``a = alpha > 0``. Bounded in
  [-1, 1] and sign-consistent with the log-ratio (same sign, since ``x -> x^a`` is increasing); ``r_t / a`` tends
  to the log-ratio as ``a -> 0`` (Box-Cox), so alpha trades the log-ratio's fidelity for bounded gradients.

Why on TRL's ``GRPOTrainer`` instead of a custom loop: HRPO already runs there (checkpoints with optimizer/RNG state,
resume, accelerate, logging) and its loss reduces to exactly ``L`` above. With ``num_iterations = 1``, gradient
accumulation 1 and one generation per optimizer step, TRL takes the "old" log-probs as ``per_token_logps.detach()``
(``grpo_trainer.py`` ``_compute_loss``), so the importance ratio is exactly 1: the clipped surrogate
``-min(ratio * A, clip(ratio) * A)`` has value ``-A`` and gradient ``-A * grad log p_S`` (clipping never acts, for
any ``epsilon``). ``loss_type="dapo"`` divides the masked sum by the number of loss-mask tokens (``env_mask`` times
the padding mask) of the accumulation window, and ``beta = 0`` loads no reference model. ``tests/test_opd.py``
checks the gradient against a hand-written ``-sum sg[r] log p_S / N``. TRL requires groups of >= 2 rollouts per
stream (``num_generations``); OPD needs no group — the repeats are just more rollouts with different seeds.

``p_S`` in the reward is the probability the rollout recorded when it sampled the token: the raw model's
``log_softmax`` (no temperature, no protocol mask), computed with the current weights (on-policy: one rollout
batch per optimizer step), i.e. the same quantity the loss differentiates (we run TRL's loss at temperature 1).
Sampling at ``temperature != 1`` therefore makes the rollouts slightly off-policy but leaves ``r_t`` and the loss
consistent. The teacher runs in its own dtype on its own device and must share the student's tokenizer after the
protocol tokens are added (the student's token ids are scored under the teacher as they are).

Phase weighting (optional, ``deep_weight``): ``w = 1`` on streaming tokens and ``deep_weight`` on deep-reasoning
and answer tokens, mirroring HRPO's latency-aware weighting (deep tokens are visible latency, ``w_deep > w_stream``
in the adaptive reward): ``deep_weight = reward.w_deep / reward.w_stream`` (4 by default) makes the student match
the teacher hardest where its tokens cost the user time. The default 1 is plain OPD.

Teacher-guided rollouts (optional, ``guide_top_k = k > 0``): the estimator above only reaches tokens the student
samples, and an untrained student practically never samples the protocol markers (new tokens with mean-initialised
embeddings), so plain OPD cannot teach it the protocol. With a guide, the teacher vets each sampled token during
the rollout: inside the teacher's top-k it stays, otherwise a teacher sample from its top-k replaces it
(speculative knowledge distillation, Xu et al., 2025). The reward and loss are unchanged and use the student's own
log-prob of whatever token is in the sequence, so replaced tokens (``p_T`` high, ``p_S`` low: ``r_t > 0``) pull
the student toward the teacher exactly where it strays. The rollouts are then partly the teacher's (off-policy
for the replaced tokens; ``opd/guided_rate`` logs the fraction) and cost one extra teacher forward per sampled
token. Use it from an untrained or weak student; ``k = 0`` (default) is pure on-policy OPD.

Logged per step (prefix ``opd/``): per-token reward mean/min/max over policy tokens, teacher-student agreement
(fraction of policy tokens whose sampled token is the teacher's argmax), the single-sample reverse-KL estimate
``mean(log p_S - log p_T)`` (comparable across reward types), guided rate (with a guide), teacher scoring
seconds, stream/deep tokens, rollout accuracy/format/skip rate; the Trainer adds ``grad_norm`` (before clipping)
and ``loss``.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from adasr_mm.advantages import DEEP, STREAM
from adasr_mm.errors import ConfigError
from adasr_mm.models import forward_cached

from .rewards import RewardConfig
from .sample import Sample
from .trainer import RolloutStageConfig, streaming_trainer_classes

OPDRewardFn = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]
OPD_REWARDS: dict[str, OPDRewardFn] = {}
TEACHER_DTYPES = ("auto", "float32", "bfloat16", "float16")


def register_opd_reward(name: str) -> Callable[[OPDRewardFn], OPDRewardFn]:
    """Register ``fn(teacher_logp, student_logp, alpha) -> r`` (elementwise, log-probs of the sampled tokens)."""

    def deco(fn: OPDRewardFn) -> OPDRewardFn:
        OPD_REWARDS[name] = fn
        return fn

    return deco


def get_opd_reward(name: str) -> OPDRewardFn:
    if name not in OPD_REWARDS:
        raise ValueError(f"unknown opd reward {name!r}; registered: {', '.join(sorted(OPD_REWARDS))}")
    return OPD_REWARDS[name]


@register_opd_reward("power")
def power_reward(teacher_logp: torch.Tensor, student_logp: torch.Tensor, alpha: float) -> torch.Tensor:
    """``p_T^a - p_S^a`` in [-1, 1]; written as ``expm1(a log p_T) - expm1(a log p_S)`` to stay exact for small a."""
    return torch.expm1(alpha * teacher_logp) - torch.expm1(alpha * student_logp)


@register_opd_reward("log-ratio")
def log_ratio_reward(teacher_logp: torch.Tensor, student_logp: torch.Tensor, alpha: float) -> torch.Tensor:
    """Vanilla OPD: ``log p_T - log p_S`` (unbounded; ``alpha`` is ignored)."""
    return teacher_logp - student_logp


@dataclass
class OPDStageConfig(RolloutStageConfig):
    """On-policy distillation from a teacher on the student's own streaming rollouts (PowerOPD by default)."""

    num_generations: int = field(default=2, metadata={"help": "rollouts per stream (TRL needs >= 2; no baseline)"})
    prompts_per_step: int = field(default=2, metadata={"help": "streams per optimizer step"})
    teacher: str = field(default="", metadata={
        "help": "teacher model (hub id or dir) sharing the student's tokenizer; required when the opd stage runs"})
    reward: str = field(default="power", metadata={"help": "registered per-token reward: power or log-ratio"})
    alpha: float = field(default=5.0, metadata={"help": "power reward exponent a > 0 (a -> 0: the log-ratio / a)"})
    deep_weight: float = field(default=1.0, metadata={
        "help": "weight of deep+answer tokens relative to streaming tokens (1 = plain OPD)"})
    teacher_dtype: str = field(default="auto", metadata={
        "help": "teacher dtype: auto (float32 on CPU, bf16/fp16 on GPU), float32, bfloat16 or float16"})
    teacher_device: str = field(default="auto", metadata={"help": "teacher device: auto (= the student's), cpu, cuda:N"})
    max_grad_norm: float = field(default=1.0, metadata={
        "help": "gradient clipping (0 = off); the logged grad_norm is measured before clipping"})
    marker_lr_multiplier: float = field(default=1.0, metadata={
        "help": "scale the update of the protocol-token embedding rows (as in SFT): > 1 lets a student that has "
                "not learned the markers (untrained, mean-initialised rows) actually move them; 1 = plain"})
    guide_top_k: int = field(default=0, metadata={
        "help": "teacher-guided rollouts: a sampled student token outside the teacher's top-k is replaced by a "
                "teacher sample from its top-k (speculative KD); 0 = pure on-policy rollouts"})

    def __post_init__(self) -> None:
        super().__post_init__()
        get_opd_reward(self.reward)  # validates the name
        if not self.alpha > 0:
            raise ValueError(f"alpha must be > 0 (alpha -> 0 is the log-ratio: use reward=log-ratio), got {self.alpha}")
        if self.deep_weight < 0:
            raise ValueError(f"deep_weight must be >= 0, got {self.deep_weight}")
        if self.teacher_dtype not in TEACHER_DTYPES:
            raise ValueError(f"teacher_dtype must be one of {', '.join(TEACHER_DTYPES)}, got {self.teacher_dtype!r}")
        if self.max_grad_norm < 0:
            raise ValueError(f"max_grad_norm must be >= 0, got {self.max_grad_norm}")
        if not (self.marker_lr_multiplier >= 1 and math.isfinite(self.marker_lr_multiplier)):
            raise ValueError(f"marker_lr_multiplier must be >= 1, got {self.marker_lr_multiplier}")
        if self.guide_top_k < 0:
            raise ValueError(f"guide_top_k must be >= 0 (0 = off), got {self.guide_top_k}")

    def loss_args(self) -> dict[str, Any]:
        # temperature 1: the loss differentiates the raw log p_S, the quantity the reward compares with log p_T
        return {"beta": 0.0, "temperature": 1.0, "max_grad_norm": self.max_grad_norm}


# -- teacher -----------------------------------------------------------------------------------------------------
def check_shared_vocab(student_tok: Any, teacher_tok: Any, teacher_name: str = "teacher") -> None:
    """Raise a :class:`ConfigError` naming both vocabularies unless the two tokenizers map ids identically."""
    s, t = student_tok.get_vocab(), teacher_tok.get_vocab()
    if s == t:
        return
    s_inv = {i: w for w, i in s.items()}
    t_inv = {i: w for w, i in t.items()}
    diff = [i for i in sorted(set(s_inv) | set(t_inv)) if s_inv.get(i) != t_inv.get(i)][:3]
    shown = "; ".join(f"id {i}: student {s_inv.get(i)!r} vs teacher {t_inv.get(i)!r}" for i in diff)
    raise ConfigError(
        f"teacher {teacher_name!r} does not share the student's tokenizer (after adding the protocol tokens): "
        f"student vocabulary {len(s)} tokens, teacher vocabulary {len(t)} tokens; first differences: {shown}. "
        "OPD scores the student's token ids under the teacher, so pick a teacher of the same model family")


def _teacher_dtype(name: str, device: torch.device) -> torch.dtype:
    if name != "auto":
        return getattr(torch, name)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def load_teacher(spec: str) -> tuple[Any, Any]:
    """Load a teacher (hub id or dir, offline-friendly) with the protocol tokens added, in float32."""
    from adasr_mm.models import load_causal_lm

    if not spec:
        raise ConfigError("opd.teacher is required when the opd stage runs: pass --teacher ID|DIR")
    return load_causal_lm(spec, what="teacher")


@torch.no_grad()
def teacher_token_logprobs(teacher: Any, prompt_ids: list[int], completion_ids: list[int]
                           ) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward pass over the interleaved sequence: ``(log p_T(o_t), argmax_T == o_t)`` per completion token."""
    device = next(teacher.parameters()).device
    n = len(completion_ids)
    x = torch.tensor([prompt_ids + completion_ids], dtype=torch.long, device=device)
    logits = teacher(input_ids=x, logits_to_keep=n + 1).logits[0, :-1].float()  # position i predicts token i+1
    target = x[0, -n:]
    logp = torch.log_softmax(logits, dim=-1).gather(-1, target[:, None])[:, 0]
    return logp.cpu(), (logits.argmax(-1) == target).cpu()


class TeacherGuide:
    """Per-rollout :class:`~adasr_mm.policy.TokenGuide`: the teacher vets every token the student samples.

    Why: the sampled-token rewards only reach tokens the student samples, and an untrained student practically
    never samples the protocol markers (new tokens), so pure OPD cannot teach them. Following speculative
    knowledge distillation (Xu et al., 2025), a proposal inside the teacher's top-k is kept (the rollout stays the
    student's wherever the teacher finds it plausible) and any other is replaced by a sample from the teacher's
    top-k (same phase mask). Replaced tokens then get the usual reward ``p_T^a - p_S^a`` > 0 on the student's
    own log-prob: the student is pulled toward the teacher's choice exactly where it strays. The teacher keeps
    its own KV cache and catches up on the trace (chunks included) lazily, one forward per sampled token.
    """

    def __init__(self, teacher: Any, top_k: int):
        self.teacher = teacher
        self.top_k = top_k
        self.device = next(teacher.parameters()).device
        self.cache: Any = None
        self.seen = 0

    @torch.inference_mode()
    def __call__(self, st: Any, proposed: int, forbidden: torch.Tensor) -> int:
        if st.evicted_tokens:  # the student's context was cut: the teacher would see a different sequence
            return proposed
        from transformers import DynamicCache

        if self.cache is None:
            self.cache = DynamicCache()
        x = torch.tensor([st.ids[self.seen :]], dtype=torch.long, device=self.device)
        out, self.cache = forward_cached(self.teacher, x, self.cache)
        self.seen = len(st.ids)
        logits = out.logits[0, -1].float()
        n = min(logits.shape[0], forbidden.shape[0])
        logits = logits[:n].masked_fill(forbidden[:n].to(self.device), float("-inf"))
        top = logits.topk(min(self.top_k, n))
        allowed = torch.isfinite(top.values)
        ids = top.indices[allowed]
        if proposed in ids.tolist() or not len(ids):
            return proposed
        probs = torch.softmax(top.values[allowed], dim=-1).cpu()
        return int(ids[int(torch.multinomial(probs, 1, generator=st.generator))])


def phase_weights(phase: torch.Tensor, deep_weight: float) -> torch.Tensor:
    """Per-token weight: 1 on streaming tokens, ``deep_weight`` on deep+answer tokens, 0 on environment tokens."""
    return (phase == STREAM).float() + deep_weight * (phase == DEEP).float()


@functools.cache
def _opd_trainer_class() -> type:
    base = streaming_trainer_classes()[0]

    class OPDTrainer(base):  # type: ignore[misc, valid-type]
        """Streaming rollouts of the student, advantages ``w_{p(t)} * r_t`` from the teacher (see module doc)."""

        metric_prefix = "opd"

        def __init__(self, model: Any, tokenizer: Any, samples: list[Sample], opd: OPDStageConfig,
                     reward: RewardConfig | None = None, output_dir: str = "runs/opd",
                     teacher: tuple[Any, Any] | None = None, protocol_config: Any = None,
                     grpo_overrides: dict[str, Any] | None = None, callbacks: list[Any] | None = None,
                     check: Any = None):
            t_model, t_tok = teacher if teacher is not None else load_teacher(opd.teacher)
            from adasr_mm.protocol import add_protocol_tokens

            add_protocol_tokens(tokenizer, model)
            add_protocol_tokens(t_tok, t_model)
            check_shared_vocab(tokenizer, t_tok, opd.teacher or type(t_model).__name__)
            from .sft import marker_boost_callbacks

            callbacks = [*(callbacks or []), *marker_boost_callbacks(model, tokenizer, opd.marker_lr_multiplier)]
            super().__init__(model, tokenizer, samples, opd, reward or RewardConfig(), output_dir, protocol_config,
                             grpo_overrides, callbacks, check)
            device = self.accelerator.device if opd.teacher_device == "auto" else torch.device(opd.teacher_device)
            self.teacher = t_model.to(device=device, dtype=_teacher_dtype(opd.teacher_dtype, device)).eval()
            self.teacher.requires_grad_(False)
            self.opd_reward = get_opd_reward(opd.reward)
            if opd.guide_top_k:
                self.streamer.guide_factory = lambda: TeacherGuide(self.teacher, opd.guide_top_k)

        def _token_advantages(self, out: dict[str, Any], phase: torch.Tensor) -> torch.Tensor:
            t0 = time.perf_counter()
            rewards = torch.zeros(phase.shape, dtype=torch.float32)
            agree, kl, values = [], [], []
            for i, r in enumerate(self._rollouts):
                lt, top1 = teacher_token_logprobs(self.teacher, r.prompt_ids, r.completion_ids)
                ls = torch.tensor(r.logprobs, dtype=torch.float32)
                pol = torch.tensor(r.env_mask, dtype=torch.bool)
                # float64: p^a of both models can agree to ~1e-8 (float32 would round the difference to 0)
                rt = self.opd_reward(lt.double(), ls.double(), self.rl.alpha).float()
                rt = torch.where(pol, rt, torch.zeros_like(rt))
                n = min(len(rt), phase.shape[1])
                rewards[i, :n] = rt[:n]
                values.append(rt[pol])
                agree.append(top1[pol].float())
                kl.append((ls - lt)[pol])
            adv = rewards * phase_weights(phase, self.rl.deep_weight)
            v = torch.cat(values)
            if v.numel():
                self.log_metric("opd/reward_mean", v.mean().item())
                self.log_metric("opd/reward_min", v.min().item())
                self.log_metric("opd/reward_max", v.max().item())
                self.log_metric("opd/agreement", torch.cat(agree).mean().item())
                self.log_metric("opd/reverse_kl", torch.cat(kl).mean().item())
                if self.rl.guide_top_k:
                    self.log_metric("opd/guided_rate", sum(r.guided for r in self._rollouts) / v.numel())
            self.log_metric("opd/teacher_seconds", time.perf_counter() - t0)
            return adv

    return OPDTrainer


def OPDTrainer(*args: Any, **kwargs: Any) -> Any:  # noqa: N802 - a factory that reads like the class
    """Build an OPD trainer: ``OPDTrainer(model, tokenizer, samples, OPDStageConfig(teacher=...), ...)``."""
    return _opd_trainer_class()(*args, **kwargs)
