"""HRPO on TRL: a ``GRPOTrainer`` whose completions are streaming rollouts and whose advantages are per token.

TRL does the parts that are not specific to streaming — batching, the clipped token-level surrogate (DAPO-style
``epsilon``/``epsilon_high``), optional KL, gradient accumulation, checkpoints with optimizer/scheduler/RNG state,
accelerate/DeepSpeed — and offers two hooks this trainer uses: ``rollout_func`` (our streaming rollout returns
prompt/completion ids, log-probs and ``env_mask``, which TRL turns into the loss mask so chunk tokens carry no
gradient) and a ``(B, T)`` ``advantages`` tensor (we replace TRL's sequence-level one with the registered
estimator, ``hrpo`` or ``grpo``).

Dataset rows are just ``{"prompt": "<sample:K>"}``: the rollout function looks sample K up, so any modality
(text chunks, or audio/video chunks cached by ``adasr-mm prepare``) trains through the same path.
"""

from __future__ import annotations

import hashlib
import logging
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
class RLStageConfig:
    """The RL stage (HRPO or GRPO) on streaming rollouts."""

    advantage: str = field(default="hrpo", metadata={"help": "registered advantage: hrpo or grpo"})
    lam: float = field(default=0.5, metadata={"help": "hrpo: weight of the phase-level advantage (0 = grpo)"})
    max_steps: int = field(default=10, metadata={"help": "optimizer steps"})
    num_generations: int = field(default=4, metadata={"help": "G: rollouts per stream (one group)"})
    prompts_per_step: int = field(default=1, metadata={"help": "streams per optimizer step"})
    learning_rate: float = field(default=1e-5, metadata={"help": "AdamW learning rate"})
    epsilon: float = field(default=0.2, metadata={"help": "clip range below 1 (epsilon_low)"})
    epsilon_high: float = field(default=0.28, metadata={"help": "clip range above 1 (clip-higher, DAPO)"})
    beta: float = field(default=0.0, metadata={"help": "KL coefficient (0 = off, no reference model)"})
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
    bf16: bool = field(default=False, metadata={"help": "bf16 mixed precision (GPU)"})
    use_vllm: bool = field(default=False, metadata={"help": "vLLM generation backend (GPU extra; not for CPU)"})

    def __post_init__(self) -> None:
        get_advantage(self.advantage)  # validates the name
        AdvantageConfig(lam=self.lam)
        if self.num_generations < 2:
            raise ValueError(f"num_generations must be >= 2 (a group needs a baseline), got {self.num_generations}")
        for k in ("max_steps", "prompts_per_step", "save_steps", "logging_steps", "max_thought_tokens",
                  "max_deep_tokens", "max_answer_tokens"):
            if getattr(self, k) < 1:
                raise ValueError(f"{k} must be >= 1, got {getattr(self, k)}")
        if not 0 < self.epsilon < 1 or self.epsilon_high < self.epsilon:
            raise ValueError(f"need 0 < epsilon < 1 and epsilon_high >= epsilon, got {self.epsilon}/{self.epsilon_high}")
        if self.temperature <= 0:
            raise ValueError(f"rollouts must sample: temperature must be > 0, got {self.temperature}")
        if self.use_vllm:
            raise ValueError("use_vllm: the vLLM rollout backend is not implemented yet; use the HF backend")


def rollout_seed(base: int, step: int, index: int) -> int:
    """Per-rollout seed from (run seed, global step, position): identical after a resume."""
    h = hashlib.sha256(f"{base}:{step}:{index}".encode()).digest()
    return int.from_bytes(h[:4], "little")


def _grpo_args(cfg: RLStageConfig, output_dir: str, extra: dict[str, Any] | None = None) -> Any:
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
        epsilon=cfg.epsilon,
        epsilon_high=cfg.epsilon_high,
        beta=cfg.beta,
        scale_rewards="group",
        logging_steps=cfg.logging_steps,
        save_steps=cfg.save_steps,
        save_strategy="steps",
        save_only_model=False,
        report_to=[],
        seed=cfg.seed,
        use_cpu=use_cpu,
        bf16=cfg.bf16 and not use_cpu,
        activation_checkpointing=cfg.gradient_checkpointing,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        log_completions=False,
        disable_tqdm=False,
        dataloader_num_workers=0,
    )
    kw.update(extra or {})
    return GRPOConfig(**kw)


def _lazy_grpo_trainer() -> type:
    from trl import GRPOTrainer

    class HRPOTrainer(GRPOTrainer):
        """GRPOTrainer with streaming rollouts and per-token (phase-level) advantages."""

        def __init__(self, model: Any, tokenizer: Any, samples: list[Sample], rl: RLStageConfig,
                     reward: RewardConfig, output_dir: str, protocol_config: Any = None,
                     grpo_overrides: dict[str, Any] | None = None, callbacks: list[Any] | None = None,
                     check: Any = None):
            from datasets import Dataset

            if not samples:
                raise ValueError("no training samples")
            self.samples = samples
            self.rl = rl
            self.reward_cfg = reward
            self.adv_cfg = AdvantageConfig(lam=rl.lam)
            self._rollouts: list[Rollout] = []
            pcfg = PolicyConfig(max_thought_tokens=rl.max_thought_tokens, max_deep_tokens=rl.max_deep_tokens,
                                max_answer_tokens=rl.max_answer_tokens, temperature=rl.temperature, top_p=rl.top_p,
                                dtype="float32")
            self.streamer = StreamingRollout(model, tokenizer, pcfg, reward, protocol_config, check)
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

        # TRL calls this with the per-process prompts of one generation batch (each stream repeated G times).
        def _rollout_func(self, prompts: list[Any], trainer: Any) -> dict[str, Any]:
            step = int(self.state.global_step)
            self._rollouts = []
            for j, p in enumerate(prompts):
                text = p if isinstance(p, str) else p[-1]["content"]
                k = int(text.removeprefix("<sample:").removesuffix(">"))
                self._rollouts.append(self.streamer.run(self.samples[k], rollout_seed(self.rl.seed, step, j)))
            rs = self._rollouts
            return {
                "prompt_ids": [r.prompt_ids for r in rs],
                "completion_ids": [r.completion_ids for r in rs],
                "logprobs": [r.logprobs for r in rs],
                "env_mask": [r.env_mask for r in rs],
                "rollout_index": list(range(len(rs))),
            }

        def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
            out = super()._generate_and_score_completions(inputs)
            from accelerate.utils import gather_object

            local = self._rollouts
            rows = gather_object([r.rewards for r in local])  # groups may span processes: normalise globally
            phases = [torch.tensor(r.phase_ids, dtype=torch.long) for r in local]
            width = out["completion_ids"].shape[1]
            phase = torch.zeros(len(local), width, dtype=torch.long)
            for i, p in enumerate(phases):
                phase[i, : min(width, len(p))] = p[:width]
            G = self.num_generations
            fn = get_advantage(self.rl.advantage)
            start = self.accelerator.process_index * len(local)
            # per-rollout scalars over the global batch, then the local (B, T) slice
            rb = RewardBatch.from_rows(rows)
            full_phase = torch.zeros(len(rows), width, dtype=torch.long)
            full_phase[start : start + len(local)] = phase
            adv = fn(rb, full_phase, G, self.adv_cfg)[start : start + len(local)]
            out["advantages"] = adv.to(out["completion_ids"].device)
            m = self._metrics["train" if self.model.training else "eval"]
            n = max(1, len(local))
            m["hrpo/accuracy"].append(sum(r.correct for r in local) / n)
            m["hrpo/format_stream"].append(sum(r.outcome.format_stream for r in local) / n)
            m["hrpo/format_deep"].append(sum(r.outcome.format_deep for r in local) / n)
            m["hrpo/stream_tokens"].append(sum(r.outcome.stream_tokens for r in local) / n)
            m["hrpo/deep_tokens"].append(sum(r.outcome.deep_tokens for r in local) / n)
            m["hrpo/skip_rate"].append(sum(r.summary["skips"] / max(1, r.summary["chunks"]) for r in local) / n)
            m["hrpo/reward_stream"].append(sum(r.rewards[1] for r in local) / n)
            m["hrpo/reward_deep"].append(sum(r.rewards[2] for r in local) / n)
            return out

    return HRPOTrainer


def HRPOTrainer(*args: Any, **kwargs: Any) -> Any:  # noqa: N802 - a factory that reads like the class
    """Build an HRPO trainer (TRL is imported only when training)."""
    return _lazy_grpo_trainer()(*args, **kwargs)
