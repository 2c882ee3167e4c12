"""The streaming policy: any HF causal LM driven chunk by chunk over one growing KV cache.

Why a hand-written decode loop instead of ``model.generate``: the environment interleaves its own tokens (chunks,
forced closures) with the policy's, every position must be processed exactly once (``prefill_tokens`` is counted
from the real model calls and equals the input token count), stop sets and masks change per phase, and training
needs per-token log-probs, ``env_mask`` and phase labels of the very same sequence.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any
from typing import Protocol as _Protocol

import torch

from .calculator import result_for
from .models import forward_cached, load_causal_lm
from .protocol import Protocol, ProtocolConfig, ProtocolTokenIds, add_protocol_tokens

log = logging.getLogger(__name__)

DTYPES = {"auto": None, "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class PolicyConfig:
    """Which model to run and how to decode."""

    policy: str | None = field(
        default=None,
        metadata={"help": "empty/default = the shipped trained adapter; base = the untrained embedded SmolLM2-135M; "
                          "a HF hub id, a local model dir or a PEFT adapter dir"},
    )
    dtype: str = field(default="auto", metadata={"help": "auto (bf16 on CPU/GPU), float32, bfloat16 or float16"})
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda, cuda:N or mps"})
    max_thought_tokens: int = field(default=32, metadata={"help": "cap on one streaming thought (tokens)"})
    max_deep_tokens: int = field(default=256, metadata={"help": "cap on deep reasoning after the stream (tokens)"})
    max_answer_tokens: int = field(default=48, metadata={"help": "cap on the final answer (tokens)"})
    temperature: float = field(default=0.0, metadata={"help": "0 = greedy; > 0 samples"})
    top_p: float = field(default=1.0, metadata={"help": "nucleus sampling mass (with temperature > 0)"})
    seed: int = field(default=0, metadata={"help": "seed for sampling (each session derives its own)"})
    max_context_tokens: int = field(
        default=0, metadata={"help": "KV cache budget; 0 = the model's context length. Older chunks are evicted"}
    )
    calculator: bool = field(
        default=True,
        metadata={"help": "write the exact result after a response's 'a + b =' (a tool: its tokens are input, not "
                          "generated; docs/architecture.md)"},
    )

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        for name in ("max_thought_tokens", "max_deep_tokens", "max_answer_tokens"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_context_tokens < 0:
            raise ValueError(f"max_context_tokens must be >= 0, got {self.max_context_tokens}")


@dataclass
class Generation:
    """One decoded response: its tokens and why it stopped (``stop`` token, ``cap`` or ``eos``)."""

    ids: list[int]
    stop_reason: str
    stop_id: int | None = None
    tools: int = 0  # of ``ids``: calculator results (environment tokens)

    @property
    def generated(self) -> int:
        """Tokens the policy itself wrote (what events and the summary count)."""
        return len(self.ids) - self.tools


class TokenGuide(_Protocol):
    """Optional per-session hook that may override each sampled policy token (training only, e.g. a teacher
    replacing student tokens during distillation rollouts). ``forbidden`` is the phase's mask of tokens the policy
    may not emit; the returned token must not be one of them. ``st.ids`` holds everything before the token."""

    def __call__(self, st: PolicyState, proposed: int, forbidden: torch.Tensor) -> int: ...


class Runner(_Protocol):
    """Serves model calls of many states in shared batched calls (``adasr_mm.continuous.DecodeScheduler``)."""

    def forward(self, st: PolicyState) -> None: ...

    def detach(self, st: PolicyState) -> None: ...

    def settled(self, st: PolicyState) -> None: ...


@dataclass
class PolicyState:
    """Everything one session owns: KV cache, the full token trace with masks, and counters."""

    cache: Any = None
    prompt_len: int = 0
    ids: list[int] = field(default_factory=list)
    env_mask: list[int] = field(default_factory=list)
    phase: list[str] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    pending: int = 0  # trailing positions of ``ids`` not yet in the cache
    next_logits: torch.Tensor | None = None
    cache_len: int = 0
    input_tokens: int = 0  # environment tokens written into the sequence
    prefill_tokens: int = 0  # environment tokens processed by model calls
    decode_tokens: int = 0  # policy tokens processed by model calls
    forward_calls: int = 0
    evicted_tokens: int = 0
    kept_from: int = 0  # trace position where the cached (non-evicted) region after the prompt starts
    reprefill_tokens: int = 0
    segments: list[tuple[int, int]] = field(default_factory=list)  # (start, end) of each chunk+response
    generator: torch.Generator | None = None
    guide: TokenGuide | None = None  # training-time override of sampled tokens (None at inference)
    guided: int = 0  # policy tokens the guide replaced
    tool_tokens: int = 0  # calculator results written inside responses (environment tokens)
    runner: Runner | None = None  # serves this state's model calls batched with other sessions (None: batch 1)
    responding: bool = False  # inside a response: the next model call follows as soon as a token is sampled

    def generated(self, phase: str) -> int:
        return sum(1 for m, p in zip(self.env_mask, self.phase, strict=True) if m and p == phase)


class StreamingPolicy:
    """Wraps a causal LM + tokenizer + :class:`Protocol`; all per-stream state lives in :class:`PolicyState`."""

    def __init__(self, model: Any, tokenizer: Any, config: PolicyConfig | None = None,
                 protocol: ProtocolConfig | None = None, name: str = ""):
        self.config = config or PolicyConfig()
        self.model = model
        # Sessions share the weights but not their caches; they may run on different threads (the app does),
        # so every forward pass takes this lock and concurrent sessions interleave pass by pass.
        self.forward_lock = threading.Lock()
        self.tokenizer = tokenizer
        add_protocol_tokens(tokenizer, model)
        self.protocol = Protocol(tokenizer, protocol)
        self.ids: ProtocolTokenIds = self.protocol.ids
        self.name = name or getattr(model.config, "_name_or_path", "") or type(model).__name__
        self.device = next(model.parameters()).device
        ctx = getattr(model.config, "max_position_embeddings", None) or 4096
        self.max_context = min(self.config.max_context_tokens or ctx, ctx)
        vocab = model.get_output_embeddings().weight.shape[0]
        p = self.ids
        env_only = torch.zeros(vocab, dtype=torch.bool)
        env_only[list(p.env_only)] = True
        # Per-phase masks of tokens the policy may not emit (the protocol is enforced, not hoped for).
        self._masks = {
            "stream": env_only.clone(),
            "deep": env_only.clone(),
            "answer": env_only.clone(),
        }
        self._masks["stream"][[p.think_close, *p.eos]] = True
        self._masks["deep"][[p.eot, p.skip]] = True
        self._masks["answer"][[p.eot, p.skip, p.think_close]] = True
        self._masks = {k: v.to(self.device) for k, v in self._masks.items()}
        self._sessions = 0

    # -- loading ---------------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, config: PolicyConfig | None = None, protocol: ProtocolConfig | None = None
                        ) -> StreamingPolicy:
        config = config or PolicyConfig()
        device = config.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = DTYPES[config.dtype]
        if dtype is None:
            dtype = torch.bfloat16 if device == "cpu" or torch.cuda.is_bf16_supported() else torch.float16
        model, tokenizer = load_causal_lm(config.policy, dtype=dtype, protocol_tokens=False)
        model.to(device)
        model.eval()
        return cls(model, tokenizer, config, protocol, name=config.policy or "default")

    # -- state -----------------------------------------------------------------------------------------------
    def new_state(self, seed: int | None = None) -> PolicyState:
        from transformers import DynamicCache

        self._sessions += 1
        g = torch.Generator(device=self.device)  # sampling stays on the model's device
        g.manual_seed(self.config.seed * 1_000_003 + self._sessions if seed is None else seed)
        return PolicyState(cache=DynamicCache(), generator=g)

    def _append(self, st: PolicyState, ids: list[int], env: int, phase: str, logprobs: list[float] | None = None
                ) -> None:
        st.ids.extend(ids)
        st.env_mask.extend([env] * len(ids))
        st.phase.extend([phase] * len(ids))
        st.logprobs.extend(logprobs if logprobs is not None else [0.0] * len(ids))
        st.pending += len(ids)
        if env == 0:
            st.input_tokens += len(ids)

    def _forward(self, st: PolicyState) -> None:
        """Run the model over the pending positions (env tokens + the last sampled token) onto the cache."""
        if st.pending == 0:
            return
        if st.runner is not None:
            st.runner.forward(st)  # batched with other sessions; same counters and logits as below
            return
        self._forward_alone(st)

    @torch.inference_mode()
    def _forward_alone(self, st: PolicyState) -> None:
        """Batch 1 on the state's own cache."""
        new = st.ids[-st.pending :]
        masks = st.env_mask[-st.pending :]
        x = torch.tensor([new], dtype=torch.long, device=self.device)
        with self.forward_lock:
            out, st.cache = forward_cached(self.model, x, st.cache)
        st.next_logits = out.logits[0, -1].float()
        st.forward_calls += 1
        n_env = sum(1 for m in masks if m == 0)
        st.prefill_tokens += n_env
        st.decode_tokens += len(new) - n_env
        st.cache_len += len(new)
        st.pending = 0

    # -- environment side ------------------------------------------------------------------------------------
    def begin(self, st: PolicyState, question: str) -> None:
        ids = self.protocol.prompt_ids(question)
        if len(ids) + 64 > self.max_context:
            raise ValueError(f"the prompt alone ({len(ids)} tokens) does not fit the context ({self.max_context})")
        self._append(st, ids, 0, "prompt")
        st.prompt_len = len(ids)
        self._forward(st)

    def read(self, st: PolicyState, ids: list[int], phase: str, reserve: int = 0) -> None:
        """Write environment tokens and prefill them (together with any pending policy token).

        ``reserve`` > 0: a response of up to that many tokens follows (room is kept for it in the context)."""
        self._make_room(st, len(ids) + reserve)
        self._append(st, ids, 0, phase)
        st.responding = reserve > 0  # a reserve is room for the response that follows this read
        self._forward(st)

    def write_env(self, st: PolicyState, ids: list[int], phase: str) -> None:
        """Environment-forced tokens (e.g. closing a capped thought); prefilled lazily with the next read."""
        self._append(st, ids, 0, phase)

    def _make_room(self, st: PolicyState, need: int) -> None:
        """Evict the oldest chunk segments if the cache would overflow (long streams), re-prefilling the rest."""
        if st.cache_len + st.pending + need <= self.max_context:
            return
        budget = self.max_context // 2 - st.prompt_len
        keep_from = len(st.ids)
        for start, _end in reversed(st.segments):
            if len(st.ids) - start > budget:
                break
            keep_from = start
        if keep_from <= st.prompt_len or len(st.ids) - keep_from + need + st.prompt_len > self.max_context:
            keep_from = len(st.ids) - st.pending  # nothing fits: keep only the prompt and what is pending
        from transformers import DynamicCache

        if st.runner is not None:
            st.runner.detach(st)  # the batched cache row is dropped; the re-prefilled cache joins at the next call

        kept = st.ids[: st.prompt_len] + st.ids[keep_from:]
        st.evicted_tokens += keep_from - max(st.kept_from, st.prompt_len)  # newly dropped tokens only
        st.kept_from = keep_from
        st.cache = DynamicCache()
        x = torch.tensor([kept[: len(kept) - st.pending]], dtype=torch.long, device=self.device)
        if x.shape[1]:
            with torch.inference_mode(), self.forward_lock:
                out, st.cache = forward_cached(self.model, x, st.cache)
            st.next_logits = out.logits[0, -1].float()
            st.forward_calls += 1
        st.reprefill_tokens += x.shape[1]
        st.cache_len = x.shape[1]
        log.info("context full: evicting up to position %d, re-prefilled %d tokens", keep_from, x.shape[1])

    # -- policy side -----------------------------------------------------------------------------------------
    def _sample(self, st: PolicyState, phase: str, also_forbid: tuple[int, ...] = ()) -> tuple[int, float]:
        logits = st.next_logits
        assert logits is not None, "read() or begin() must come first"
        logprobs = torch.log_softmax(logits, dim=-1)
        masked = logits.masked_fill(self._masks[phase][: logits.shape[0]], float("-inf"))
        if also_forbid:
            masked[list(also_forbid)] = float("-inf")
        t = self.config.temperature
        if t <= 0:
            tok = int(masked.argmax())
        else:
            probs = torch.softmax(masked / t, dim=-1)
            if self.config.top_p < 1.0:
                sp, si = probs.sort(descending=True)
                keep = sp.cumsum(0) - sp < self.config.top_p
                probs = torch.zeros_like(probs).scatter(0, si[keep], sp[keep])
                probs = probs / probs.sum()
            # on the model's device with the session's own generator: only the chosen id crosses to the host
            tok = int(torch.multinomial(probs, 1, generator=st.generator))
        if st.guide is not None:
            forbidden = torch.isneginf(masked)  # the phase mask plus ``also_forbid``
            guided = int(st.guide(st, tok, forbidden))
            if guided != tok:
                if bool(forbidden[guided]):
                    raise ValueError(f"the token guide chose token {guided}, which the {phase} phase forbids")
                st.guided += 1
                tok = guided
        return tok, float(logprobs[tok])  # the policy's own log-prob, also for a guided token

    def iter_generate(self, st: PolicyState, phase: str, max_tokens: int, stop_ids: tuple[int, ...],
                      min_tokens: int = 0) -> Generator[int, None, Generation]:
        """Decode until a stop id (kept, prefilled lazily) or ``max_tokens``, yielding each token as sampled.

        Stop ids are masked for the first ``min_tokens`` tokens. The generator's return value
        (``StopIteration.value``) is the :class:`Generation`.
        """
        out: list[int] = []
        tools = 0
        self._make_room(st, max_tokens + 1)
        st.responding = True
        try:
            while len(out) < max_tokens:
                if st.pending:
                    self._forward(st)
                tok, lp = self._sample(st, phase, stop_ids if len(out) < min_tokens else ())
                self._append(st, [tok], 1, phase, [lp])
                out.append(tok)
                yield tok
                if tok in stop_ids:
                    return Generation(out, "stop", tok, tools)
                tool = self.tool_ids(st, out, phase, max_tokens - len(out))
                out.extend(tool)
                tools += len(tool)
                yield from tool
            return Generation(out, "cap", None, tools)
        finally:  # done, capped, or cut by the caller (generator closed): no model call follows right away
            st.responding = False
            if st.runner is not None:
                st.runner.settled(st)

    @functools.cached_property
    def _equals(self) -> frozenset[int]:
        """Tokens that are an "=" (with or without a leading space marker): the calculator looks only after these
        (found once, on first use: a scan of the vocabulary)."""
        tok = self.tokenizer
        return frozenset(i for t, i in tok.get_vocab().items() if tok.convert_tokens_to_string([t]).strip() == "=")

    def tool_ids(self, st: PolicyState, out: list[int], phase: str, room: int) -> list[int]:
        """The calculator's result after a response ``out`` that just wrote "<expression> =" (written into ``st``
        as environment tokens and returned), or []. ``room``: tokens the response may still take (its cap)."""
        if not (self.config.calculator and out and out[-1] in self._equals):
            return []
        res = result_for(self.text(out))
        ids = self.tokenizer.encode(res, add_special_tokens=False) if res else []
        if not ids or len(ids) >= room:  # keep one token of room for the policy after the result
            return []
        self._append(st, ids, 0, phase)
        st.tool_tokens += len(ids)
        return ids

    def generate(self, st: PolicyState, phase: str, max_tokens: int, stop_ids: tuple[int, ...],
                 min_tokens: int = 0) -> Generation:
        it = self.iter_generate(st, phase, max_tokens, stop_ids, min_tokens)
        while True:
            try:
                next(it)
            except StopIteration as done:
                return done.value

    def release(self, st: PolicyState) -> None:
        """Free the state's KV cache (its token trace stays); a batched state leaves the shared batch."""
        st.cache = None
        if st.runner is not None:
            st.runner.detach(st)

    def text(self, ids: list[int]) -> str:
        return self.protocol.decode(ids)
