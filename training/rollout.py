"""Streaming rollouts for RL: the inference session code, sampling, with the trace TRL needs.

A rollout is one :class:`~adasr_mm.session.Session` over a sample's chunks (KV cache reused across chunks,
chunks written by the environment), so training optimises exactly what inference runs. From the session's
token trace we return prompt/completion ids, per-token sampling log-probs, ``env_mask`` (0 on environment
tokens: chunks, markers, forced closures) and per-token phase ids (0 env, 1 stream, 2 deep+answer).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from adasr_mm.advantages import DEEP, ENV, STREAM
from adasr_mm.policy import DTYPES, PolicyConfig, StreamingPolicy
from adasr_mm.session import Session, SessionConfig, SessionResult

from .rewards import RewardConfig, RolloutOutcome, score
from .sample import Sample


@dataclass
class Rollout:
    sample: Sample
    prompt_ids: list[int]
    completion_ids: list[int]
    env_mask: list[int]
    phase_ids: list[int]
    logprobs: list[float]
    answer: str
    correct: bool
    outcome: RolloutOutcome
    rewards: tuple[float, float, float] = (0.0, 0.0, 0.0)  # R, R_stream, R_deep
    parts: dict[str, float] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    guided: int = 0  # policy tokens a guide (e.g. the OPD teacher) replaced


def _phase_ids(env_mask: list[int], phases: list[str]) -> list[int]:
    out = []
    for m, p in zip(env_mask, phases, strict=True):
        out.append(ENV if not m else STREAM if p == "stream" else DEEP)
    return out


def rollout_from_result(sample: Sample, res: SessionResult, reward_cfg: RewardConfig, check: Any) -> Rollout:
    st = res.state
    n = st.prompt_len
    correct = bool(check(res.answer, sample.answer))
    s = res.summary
    o = RolloutOutcome(correct=correct, format_stream=res.format.format_stream, format_deep=res.format.format_deep,
                       stream_tokens=s.stream_tokens, deep_tokens=s.deep_tokens + s.answer_tokens, lag_s=s.lag_s,
                       answer=res.answer)
    rewards, parts = score(o, reward_cfg)
    return Rollout(sample=sample, prompt_ids=st.ids[:n], completion_ids=st.ids[n:], env_mask=st.env_mask[n:],
                   phase_ids=_phase_ids(st.env_mask[n:], st.phase[n:]), logprobs=st.logprobs[n:],
                   answer=res.answer, correct=correct, outcome=o, rewards=rewards, parts=parts,
                   summary=s.to_dict(), guided=st.guided)


ROLLOUT_BACKENDS = ("batched", "session")


def _decode_model(model: Any, dtype: str) -> Any:
    """The model rollouts decode: ``model`` itself when it already has ``dtype`` (float32 training decodes the
    trained weights), else an eval-mode copy whose parameters, not buffers, are cast (rotary frequencies stay
    float32, as when the policy is loaded in that dtype); :meth:`StreamingRollout.sync_weights` refreshes it."""
    want = DTYPES[dtype]
    if want is None or next(model.parameters()).dtype == want:
        return model
    dec = copy.deepcopy(model).eval()
    for p in dec.parameters():
        # requires_grad stays (and becomes) True: the policy's calls run under inference_mode anyway, and on CPU
        # (torch 2.13) a bf16 F.linear of a sliced 3-D input with a weight that does not require grad takes a
        # bmm path that copies the weight per row: the lm_head of one G = 8 chunk prefill cost 0.5 s, not 3 ms
        p.requires_grad_(True)
        p.data = p.data.to(want)
    dec.config.dtype = want
    return dec


class StreamingRollout:
    """Runs rollouts of a (training) model through the streaming policy; backend "hf" (this process)."""

    def __init__(self, model: Any, tokenizer: Any, policy_config: PolicyConfig, reward_config: RewardConfig,
                 protocol_config: Any = None, check: Any = None, backend: str = "batched"):
        if backend not in ROLLOUT_BACKENDS:
            raise ValueError(f"rollout backend must be one of {', '.join(ROLLOUT_BACKENDS)}, got {backend!r}")
        self.backend = backend
        # guide_factory() -> a fresh per-rollout TokenGuide (see adasr_mm.policy), or None: plain sampling
        self.guide_factory: Callable[[], Any] | None = None
        self.model = model
        self.policy = StreamingPolicy(_decode_model(model, policy_config.dtype), tokenizer, policy_config,
                                      protocol_config, name="train")
        self.reward_config = reward_config
        if check is None:
            from .data import check_answer as check
        self.check = check

    def sync_weights(self) -> None:
        """Copy the trained weights into the decode copy (a no-op when the trained model decodes itself).

        Call after every optimizer step, before the next rollouts, as RL with a separate inference engine does."""
        dec = self.policy.model
        if dec is self.model:
            return
        with torch.no_grad():
            for d, s in zip(dec.parameters(), self.model.parameters(), strict=True):
                d.copy_(s)

    def run_group(self, sample: Sample, seeds: list[int]) -> list[Rollout]:
        """One rollout of ``sample`` per seed (a GRPO group): decoded in lockstep by the batched engine
        (:func:`adasr_mm.batch.run_batched`: prompt and chunks prefilled once, same traces as ``Session`` per
        seed), or one ``Session`` each at batch size 1 with ``backend="session"``."""
        if self.backend == "session":
            return [self.run(sample, s) for s in seeds]
        if not sample.chunks:
            raise ValueError(f"sample {sample.id} has no chunks (run `adasr-mm prepare` for audio/video)")
        from adasr_mm.batch import run_batched

        results = run_batched(self.policy, [(sample.question, sample.chunks, s) for s in seeds],
                              guide_factory=self.guide_factory)
        return [rollout_from_result(sample, r, self.reward_config, self.check) for r in results]

    def run(self, sample: Sample, seed: int) -> Rollout:
        if not sample.chunks:
            raise ValueError(f"sample {sample.id} has no chunks (run `adasr-mm prepare` for audio/video)")
        model = self.policy.model
        was_training = model.training
        model.eval()
        try:
            session = Session(self.policy, sample.question, SessionConfig(max_lag_s=0.0), clock="instant", seed=seed)
            if self.guide_factory is not None:
                session.state.guide = self.guide_factory()
            for c in sample.chunks:
                for _ in session.push(c):
                    pass
            res = session.finish()
        finally:
            model.train(was_training)
        return rollout_from_result(sample, res, self.reward_config, self.check)
