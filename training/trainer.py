"""HRPO on TRL: a ``GRPOTrainer`` whose completions are streaming rollouts and whose advantages are per token.

TRL does the parts that are not specific to streaming — batching, the clipped token-level surrogate (DAPO-style
``epsilon``/``epsilon_high``), optional KL, gradient accumulation, checkpoints with optimizer/scheduler/RNG state,
accelerate/DeepSpeed — and offers two hooks this trainer uses: ``rollout_func`` (our streaming rollout returns
prompt/completion ids, log-probs and ``env_mask``, which TRL turns into the loss mask so chunk tokens carry no
gradient) and a ``(B, T)`` ``advantages`` tensor (we replace TRL's sequence-level one with the registered
estimator, ``hrpo`` or ``grpo``).

The rollout/metrics plumbing lives in a base class (``StreamingGRPOTrainer``) whose only abstract part is
``_token_advantages``: HRPO fills it from the advantage registry, on-policy distillation (``training/opd.py``)
from per-token teacher rewards, so both stages train on the very same streaming rollouts.

Dataset rows are just ``{"prompt": "<sample:K>"}``: the rollout function looks sample K up, so any modality
(text chunks, or audio/video chunks cached by ``adasr-mm prepare``) trains through the same path.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from adasr_mm.advantages import AdvantageConfig, RewardBatch, get_advantage
from adasr_mm.policy import PolicyConfig

from .rewards import RewardConfig
from .rollout import Rollout, StreamingRollout
from .sample import Sample

log = logging.getLogger(__name__)


@dataclass
class RolloutStageConfig:
    """What every stage that trains on streaming rollouts (RL, OPD) shares: budget, sampling, caps, hardware."""

    max_steps: int = field(default=10, metadata={"help": "optimizer steps"})
    num_generations: int = field(default=4, metadata={"help": "G: rollouts per stream (one group)"})
    prompts_per_step: int = field(default=1, metadata={"help": "streams per optimizer step"})
    learning_rate: float = field(default=1e-5, metadata={"help": "AdamW learning rate"})
    temperature: float = field(default=1.0, metadata={"help": "rollout sampling temperature"})
    top_p: float = field(default=1.0, metadata={"help": "rollout nucleus sampling"})
    max_thought_tokens: int = field(default=24, metadata={"help": "cap per streaming thought in rollouts"})
    max_deep_tokens: int = field(default=64, metadata={"help": "cap on deep reasoning in rollouts"})
    max_answer_tokens: int = field(default=16, metadata={"help": "cap on the answer in rollouts"})
    save_steps: int = field(default=5, metadata={"help": "checkpoint every N steps"})
    logging_steps: int = field(default=1, metadata={"help": "log every N steps"})
    seed: int = field(default=0, metadata={"help": "seed for data order and rollout sampling"})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "trade compute for memory"})
    use_cpu: bool = field(default=False, metadata={"help": "force CPU even when CUDA is available"})
    calculator: bool = field(default=False, metadata={
        "help": "rollouts with the calculator tool (its results are input tokens, never trained on); off, as the "
                "shipped recipe trained, the policy writes every digit itself"})
    bf16: bool = field(default=False, metadata={
        "help": "bf16 mixed precision (autocast) for the loss forward/backward, float32 master weights: on a GPU, "
                "or on a CPU with AMX (2x faster there; slow on CPUs without native bf16)"})
    rollout_backend: str = field(default="batched", metadata={
        "help": "batched: the G rollouts of a stream decode in lockstep on one KV cache (adasr_mm.batch); "
                "session: one Session per rollout at batch size 1 (same traces, slower)"})
    rollout_dtype: str = field(default="float32", metadata={
        "help": "float32: rollouts decode the trained weights as they are; bfloat16: a bf16 copy, re-synced before "
                "every step's rollouts, decodes them (what the CPU inference default runs; 1.3-1.5x faster batched "
                "rollouts on CPUs with AMX, see docs/batching.md; the sampling and training log-probs then differ "
                "by bf16 rounding and no importance-sampling correction is applied)"})

    def __post_init__(self) -> None:
        if self.num_generations < 2:
            raise ValueError(f"num_generations must be >= 2 (TRL's GRPOTrainer samples groups of >= 2 rollouts "
                             f"per stream), got {self.num_generations}")
        for k in ("max_steps", "prompts_per_step", "save_steps", "logging_steps", "max_thought_tokens",
                  "max_deep_tokens", "max_answer_tokens"):
            if getattr(self, k) < 1:
                raise ValueError(f"{k} must be >= 1, got {getattr(self, k)}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.rollout_dtype not in ("float32", "bfloat16"):
            raise ValueError(f"rollout_dtype must be float32 or bfloat16, got {self.rollout_dtype!r}")
        if self.rollout_backend not in ("batched", "session"):
            raise ValueError(f"rollout_backend must be batched or session, got {self.rollout_backend!r}")
        if self.temperature <= 0:
            raise ValueError(f"rollouts must sample: temperature must be > 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")

    def policy_config(self) -> PolicyConfig:
        """Decoding settings of the rollouts (``dtype`` = ``rollout_dtype``: see :class:`StreamingRollout`)."""
        return PolicyConfig(max_thought_tokens=self.max_thought_tokens, max_deep_tokens=self.max_deep_tokens,
                            max_answer_tokens=self.max_answer_tokens, temperature=self.temperature,
                            top_p=self.top_p, dtype=self.rollout_dtype, calculator=self.calculator)

    def loss_args(self) -> dict[str, Any]:
        """The stage's ``GRPOConfig`` loss settings (overridden per stage)."""
        return {}


@dataclass
class RLStageConfig(RolloutStageConfig):
    """The RL stage (HRPO or GRPO) on streaming rollouts."""

    advantage: str = field(default="hrpo", metadata={"help": "registered advantage: hrpo or grpo"})
    lam: float = field(default=0.5, metadata={"help": "hrpo: weight of the phase-level advantage (0 = grpo)"})
    epsilon: float = field(default=0.2, metadata={"help": "clip range below 1 (epsilon_low)"})
    epsilon_high: float = field(default=0.28, metadata={"help": "clip range above 1 (clip-higher, DAPO)"})
    beta: float = field(default=0.0, metadata={"help": "KL coefficient (0 = off, no reference model)"})
    num_generations: int = field(default=8, metadata={"help": "G: rollouts per stream (one group); AdaSR uses 12"})
    max_redraws: int = field(default=2, metadata={
        "help": "dynamic sampling: a group without signal (see dynamic_sampling) is replaced by a group of "
                "another stream, at most this many times per group (0 = off)"})
    dynamic_sampling: str = field(default="accuracy", metadata={
        "help": "what a group without signal is: accuracy (DAPO: all G rollouts right or all wrong) or reward "
                "(all G got the same R, R_stream, R_deep)"})

    def __post_init__(self) -> None:
        get_advantage(self.advantage)  # validates the name
        AdvantageConfig(lam=self.lam)
        super().__post_init__()
        if not 0 < self.epsilon < 1 or self.epsilon_high < self.epsilon:
            raise ValueError(f"need 0 < epsilon < 1 and epsilon_high >= epsilon, got {self.epsilon}/{self.epsilon_high}")
        if self.max_redraws < 0:
            raise ValueError(f"max_redraws must be >= 0 (0 = no dynamic sampling), got {self.max_redraws}")
        if self.dynamic_sampling not in SIGNALS:
            raise ValueError(f"dynamic_sampling must be one of {sorted(SIGNALS)}, got {self.dynamic_sampling!r}")

    def loss_args(self) -> dict[str, Any]:
        return {"epsilon": self.epsilon, "epsilon_high": self.epsilon_high, "beta": self.beta,
                "temperature": self.temperature}


def rollout_seed(base: int, step: int, index: int) -> int:
    """Per-rollout seed from (run seed, global step, position): identical after a resume."""
    h = hashlib.sha256(f"{base}:{step}:{index}".encode()).digest()
    return int.from_bytes(h[:4], "little")


def _grpo_args(cfg: RolloutStageConfig, output_dir: str, extra: dict[str, Any] | None = None) -> Any:
    from trl import GRPOConfig

    use_cpu = cfg.use_cpu or not torch.cuda.is_available()
    batch = cfg.num_generations * cfg.prompts_per_step
    kw: dict[str, Any] = dict(
        output_dir=output_dir,
        max_steps=cfg.max_steps,
        learning_rate=cfg.learning_rate,
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=1,
        num_generations=cfg.num_generations,
        loss_type="dapo",
        scale_rewards="group",
        logging_steps=cfg.logging_steps,
        save_steps=cfg.save_steps,
        save_strategy="steps",
        save_only_model=False,
        report_to=[],
        seed=cfg.seed,
        use_cpu=use_cpu,
        bf16=cfg.bf16,
        activation_checkpointing=cfg.gradient_checkpointing,
        top_p=cfg.top_p,
        log_completions=False,
        disable_tqdm=False,
        dataloader_num_workers=0,
    )
    kw.update(cfg.loss_args())
    kw.update(extra or {})
    return GRPOConfig(**kw)


def _mean(xs: list[float]) -> float:
    return sum(xs) / max(1, len(xs))


def _differ(xs: list[Any]) -> bool:
    return any(x != xs[0] for x in xs[1:])


# What dynamic sampling calls a group with signal. "reward": not every rollout got the same (R, R_stream, R_deep)
# (else all advantages are 0). "accuracy" (DAPO): some rollouts right and some wrong. Format and length terms
# almost always differ a little, so under "reward" an all-wrong group still trains, and on what is left (format
# favours a skip over a thought that hits its cap) the policy learned to skip (docs/training-rl.md).
SIGNALS: dict[str, Callable[[list[Rollout]], bool]] = {
    "reward": lambda group: _differ([r.rewards for r in group]),
    "accuracy": lambda group: _differ([r.correct for r in group]),
}


def group_has_signal(group: list[Rollout], by: str) -> bool:
    """Whether a group of rollouts carries the learning signal ``by`` names (a key of ``SIGNALS``)."""
    return SIGNALS[by](group)


def redraw_index(base: int, step: int, group: int, attempt: int, n: int) -> int:
    """Deterministic replacement stream for dynamic sampling (same after a resume, like the rollout seeds)."""
    return rollout_seed(base, step, -(1 + group * 1000 + attempt)) % n


@functools.cache
def streaming_trainer_classes() -> tuple[type, type]:
    """``(StreamingGRPOTrainer, HRPOTrainer)``, built on first use so that TRL is imported only when training."""
    from .trl_compat import streaming_grpo_base

    base = streaming_grpo_base()

    class StreamingGRPOTrainer(base):  # type: ignore[misc, valid-type]
        """GRPOTrainer whose completions are streaming rollouts; subclasses supply per-token advantages."""

        metric_prefix = "stream"

        def __init__(self, model: Any, tokenizer: Any, samples: list[Sample], rl: RolloutStageConfig,
                     reward: RewardConfig, output_dir: str, protocol_config: Any = None,
                     grpo_overrides: dict[str, Any] | None = None, callbacks: list[Any] | None = None,
                     check: Any = None):
            from datasets import Dataset

            if not samples:
                raise ValueError("no training samples")
            self.samples = samples
            self.rl = rl
            self.reward_cfg = reward
            self._rollouts: list[Rollout] = []
            self.streamer = StreamingRollout(model, tokenizer, rl.policy_config(), reward, protocol_config, check,
                                             rl.rollout_backend)
            dataset = Dataset.from_list([{"prompt": f"<sample:{i}>"} for i in range(len(samples))])
            terms = reward.names

            def make_term(name: str) -> Any:
                def term(prompts: list[str], completions: list[Any], rollout_index: list[int], **_: Any) -> list[float]:
                    return [self._rollouts[i].parts.get(name, 0.0) for i in rollout_index]

                term.__name__ = name
                return term

            args = _grpo_args(rl, output_dir, grpo_overrides)
            super().__init__(model=model, reward_funcs=[make_term(t) for t in terms], args=args,
                             train_dataset=dataset, processing_class=tokenizer, rollout_func=self._rollout_func,
                             callbacks=callbacks)
            self.reward_weights = torch.ones(len(terms))  # parts are already weighted

        def _group(self, k: int, step: int, first: int) -> list[Rollout]:
            seeds = [rollout_seed(self.rl.seed, step, first + i) for i in range(self.num_generations)]
            return self.streamer.run_group(self.samples[k], seeds)

        def _has_signal(self, group: list[Rollout]) -> bool:
            return group_has_signal(group, getattr(self.rl, "dynamic_sampling", "reward"))  # OPD: no such field

        def _rollout_group(self, k: int, step: int, g: int) -> tuple[list[Rollout], int]:
            """G rollouts of stream ``k``; with dynamic sampling, other streams while the group has no signal."""
            G = self.num_generations  # noqa: N806 - the paper's symbol
            group = self._group(k, step, g * G)
            draws = 0
            while draws < getattr(self.rl, "max_redraws", 0) and not self._has_signal(group):
                draws += 1
                k = redraw_index(self.rl.seed, step, g, draws, len(self.samples))
                group = self._group(k, step, (1_000 * draws + g) * G)
            return group, draws

        # TRL calls this with the per-process prompts of one generation batch (each stream repeated G times).
        def _rollout_func(self, prompts: list[Any], trainer: Any) -> dict[str, Any]:
            step = int(self.state.global_step)
            G = self.num_generations  # noqa: N806
            self.streamer.sync_weights()  # a bf16 decode copy decodes the weights of this step
            self._rollouts = []
            redraws = flat = 0
            for g in range(len(prompts) // G):
                p = prompts[g * G]
                text = p if isinstance(p, str) else p[-1]["content"]
                group, draws = self._rollout_group(int(text.removeprefix("<sample:").removesuffix(">")), step, g)
                self._rollouts.extend(group)
                redraws += draws
                flat += not self._has_signal(group)
            if hasattr(self.rl, "max_redraws"):  # RL only: OPD needs no reward spread within a group
                self.log_metric(f"{self.metric_prefix}/redraws", redraws)
                self.log_metric(f"{self.metric_prefix}/flat_groups", flat / max(1, len(prompts) // G))
            rs = self._rollouts
            return {
                "prompt_ids": [r.prompt_ids for r in rs],
                "completion_ids": [r.completion_ids for r in rs],
                "logprobs": [r.logprobs for r in rs],
                "env_mask": [r.env_mask for r in rs],
                "rollout_index": list(range(len(rs))),
            }

        def _phase_tensor(self, width: int) -> torch.Tensor:
            """(B, width) phase ids of the local rollouts (0 env/padding, 1 stream, 2 deep+answer)."""
            phase = torch.zeros(len(self._rollouts), width, dtype=torch.long)
            for i, r in enumerate(self._rollouts):
                p = torch.tensor(r.phase_ids[:width], dtype=torch.long)
                phase[i, : len(p)] = p
            return phase

        def _token_advantages(self, out: dict[str, Any], phase: torch.Tensor) -> torch.Tensor:
            """(B, T) advantages of the local rollouts; 0 on environment tokens."""
            raise NotImplementedError

        def after_scoring(self, out: dict[str, Any]) -> dict[str, Any]:
            phase = self._phase_tensor(out["completion_ids"].shape[1])
            out["advantages"] = self._token_advantages(out, phase).to(out["completion_ids"].device)
            local, p = self._rollouts, self.metric_prefix
            self.log_metric(f"{p}/accuracy", _mean([float(r.correct) for r in local]))
            self.log_metric(f"{p}/format_stream", _mean([r.outcome.format_stream for r in local]))
            self.log_metric(f"{p}/format_deep", _mean([r.outcome.format_deep for r in local]))
            self.log_metric(f"{p}/stream_tokens", _mean([r.outcome.stream_tokens for r in local]))
            self.log_metric(f"{p}/deep_tokens", _mean([r.outcome.deep_tokens for r in local]))
            self.log_metric(f"{p}/skip_rate", _mean([r.summary["skips"] / max(1, r.summary["chunks"])
                                                     for r in local]))
            return out

    class HRPOTrainer(StreamingGRPOTrainer):
        """GRPOTrainer with streaming rollouts and per-token (phase-level) advantages."""

        metric_prefix = "hrpo"

        def __init__(self, *args: Any, **kwargs: Any):
            super().__init__(*args, **kwargs)
            self.adv_cfg = AdvantageConfig(lam=self.rl.lam)

        def _token_advantages(self, out: dict[str, Any], phase: torch.Tensor) -> torch.Tensor:
            from accelerate.utils import gather_object

            local = self._rollouts
            rows = gather_object([r.rewards for r in local])  # groups may span processes: normalise globally
            width = phase.shape[1]
            start = self.accelerator.process_index * len(local)
            # per-rollout scalars over the global batch, then the local (B, T) slice
            full_phase = torch.zeros(len(rows), width, dtype=torch.long)
            full_phase[start : start + len(local)] = phase
            fn = get_advantage(self.rl.advantage)
            adv = fn(RewardBatch.from_rows(rows), full_phase, self.num_generations, self.adv_cfg)
            self.log_metric("hrpo/reward_stream", _mean([r.rewards[1] for r in local]))
            self.log_metric("hrpo/reward_deep", _mean([r.rewards[2] for r in local]))
            return adv[start : start + len(local)]

    return StreamingGRPOTrainer, HRPOTrainer


def HRPOTrainer(*args: Any, **kwargs: Any) -> Any:  # noqa: N802 - a factory that reads like the class
    """Build an HRPO trainer (TRL is imported only when training)."""
    return streaming_trainer_classes()[1](*args, **kwargs)
