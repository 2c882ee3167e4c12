"""Batched streaming decoding: many sessions (rows) in lockstep on one batched KV cache.

Why: a batch-1 :class:`~adasr_mm.session.Session` runs the model once per token for one stream, so G rollouts of
a stream cost G times the prompt prefill and G sequential decodes. Here every row is one session's protocol
program (the same chunk/thought/deep/answer steps, stop sets, caps and forced closures as ``Session``), and one
model call per step serves all rows.

Layout: one transformers ``DynamicCache`` with a batch dimension and a 2-D ``attention_mask`` over its columns.
Every call appends the same number of columns to every row; a row with fewer (or no) tokens that step gets masked
pad columns ("holes") and explicit ``position_ids``, so each row sees exactly its own sequence at its own positions,
as it would at batch 1. Holes are squeezed out (:meth:`BatchEngine.compact`) when they grow, finished rows leave
the cache, and new rows (:meth:`BatchEngine.add`) can join between steps. A group of rows with the same question
prefills the prompt once and copies its cache. Rows can also be driven from outside (:meth:`BatchEngine.attach`,
:meth:`BatchEngine.forward`): that is how :mod:`adasr_mm.continuous` batches independent live sessions.

Scheduling: a step either decodes one token for every row inside a thought, or, once no row is decoding a
streaming thought, prefills every row's pending environment tokens (the closing token of its last thought, forced
closures and the next chunk) in one left-padded call. Rows that finished their thought wait (masked) until then,
so chunk prefills happen once per round instead of once per row.

Not supported by the programmed rows (use ``Session``): KV eviction for streams longer than the context, read-then-think mode, lag-based
forced skips (rows read their chunks as fast as they decode, as a rollout with the instant clock does).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .chunks import TimedChunk
from .errors import InputError
from .events import AnswerEvent, ChunkEvent, DeepEvent, Event, SkipEvent, ThoughtEvent
from .models import forward_cached
from .policy import Generation, PolicyState, StreamingPolicy, TokenGuide
from .protocol import extract_answer
from .session import SessionConfig, SessionResult, session_result


@dataclass
class BatchConfig:
    """How the engine packs rows into one cache."""

    compact_at: float = field(
        default=0.25, metadata={"help": "squeeze masked holes out of the cache when they exceed this fraction"}
    )
    max_rows: int = field(default=64, metadata={"help": "refuse to grow the batch beyond this many rows"})

    def __post_init__(self) -> None:
        if not 0 < self.compact_at <= 1:
            raise ValueError(f"compact_at must be in (0, 1], got {self.compact_at}")
        if self.max_rows < 1:
            raise ValueError(f"max_rows must be >= 1, got {self.max_rows}")


@dataclass
class EngineStats:
    """What the engine actually computed (per-row counters stay as batch-1 would count them)."""

    forward_calls: int = 0
    decode_steps: int = 0
    prefill_steps: int = 0
    positions: int = 0  # batch x width of every call, holes included
    real_tokens: int = 0  # positions that carried a row's token
    shared_prompt_tokens: int = 0  # prompt positions not recomputed thanks to group prefill
    compactions: int = 0


@dataclass
class _Decode:
    """A row's request: decode one response in ``phase`` until a stop id or ``max_tokens``."""

    phase: str
    max_tokens: int
    stops: tuple[int, ...]
    min_tokens: int = 0
    out: list[int] = field(default_factory=list)
    tools: int = 0  # calculator tokens in ``out``


class EngineRow:
    """A batch index of the engine's cache, owned by one :class:`PolicyState`.

    Rows of this base type are driven from outside (a live session's own thread decides what to read and samples
    its tokens; :class:`~adasr_mm.continuous.DecodeScheduler` calls :meth:`BatchEngine.forward`); a
    :class:`BatchRow` runs its protocol program inside :meth:`BatchEngine.step`.
    """

    def __init__(self, state: PolicyState):
        self.state = state


class BatchRow(EngineRow):
    """One session inside the engine: its :class:`PolicyState`, its protocol program and its events."""

    def __init__(self, engine: BatchEngine, question: str, chunks: Sequence[TimedChunk], state: PolicyState):
        super().__init__(state)
        self.engine = engine
        self.question = question
        self.chunks = list(chunks)
        self.events: list[Event] = []
        self.result: SessionResult | None = None
        self.request: _Decode | None = None
        self._t0 = time.perf_counter()
        self._program = self._run()
        self.request = next(self._program)

    @property
    def done(self) -> bool:
        return self.result is not None

    @property
    def decoding(self) -> bool:
        """Inside a response: the pending positions are its own last sampled token (and a calculator result)."""
        st = self.state
        return self.request is not None and bool(self.request.out) and st.pending >= 1

    def _now(self) -> float:
        return time.perf_counter() - self._t0

    def _text(self, gen: Generation) -> str:
        return self.engine.policy.text(gen.ids[:-1] if gen.stop_reason == "stop" else gen.ids)

    def _run(self) -> Generator[_Decode, Generation, None]:
        """The protocol of ``Session._push``/``_finish`` (stream mode), one yield per response."""
        p, cfg, st = self.engine.policy, self.engine.policy.config, self.state
        for index, chunk in enumerate(self.chunks):
            chunk.index = index if chunk.index is None else chunk.index
            ids = p.protocol.chunk_ids(chunk)
            t = self._now()
            seg_start = len(st.ids)
            p.write_env(st, ids, "stream")
            self.events.append(ChunkEvent(index, chunk, t, t, t, len(ids), 0.0))
            gen = yield _Decode("stream", cfg.max_thought_tokens, (p.ids.eot, p.ids.skip))
            capped = gen.stop_reason == "cap"
            if capped:
                p.write_env(st, [p.ids.eot], "stream")
            st.segments.append((seg_start, len(st.ids)))
            if gen.stop_id == p.ids.skip:
                self.events.append(SkipEvent(index, t, self._now(), tokens=gen.generated, text=self._text(gen),
                                             tool_tokens=gen.tools))
            else:
                self.events.append(ThoughtEvent(index, self._text(gen), gen.generated, t, self._now(), capped,
                                                tool_tokens=gen.tools))
        t_end = self._now()
        end_ids = p.protocol.end_ids(self.question)
        p.write_env(st, end_ids, "deep")
        budget = cfg.max_deep_tokens
        fill = budget if self.engine.session_config.fill_deep_budget else 0
        gen = yield _Decode("deep", budget, (p.ids.think_close, *p.ids.eos), fill)
        closed = gen.stop_id == p.ids.think_close
        if not closed:
            p.write_env(st, [p.ids.think_close], "deep")
        self.events.append(DeepEvent(self._text(gen), gen.generated, t_end, t_end, t_end, self._now(),
                                     len(end_ids), closed, gen.tools))
        gen = yield _Decode("answer", cfg.max_answer_tokens, p.ids.eos)
        t_first = self._now()
        if gen.stop_reason == "cap":
            p.write_env(st, [p.ids.eos[0]], "answer")
        text = self._text(gen)
        answer = extract_answer(text)
        t_done = self._now()
        self.events.append(AnswerEvent(text, answer, gen.generated, t_first, t_done, t_first - t_end, t_done - t_end,
                                       gen.tools))
        self.result = session_result(p, self.question, "stream", "batched", len(self.chunks), self.events,
                                     [0.0] * len(self.chunks), st, answer,
                                     (t_end, t_first - t_end, t_done - t_end), t_done, {})
        self.events.append(self.result.summary)

    def sample(self) -> None:
        """Sample the next token from this row's logits; finish the response on a stop id or the cap."""
        req, st, p = self.request, self.state, self.engine.policy
        assert req is not None
        tok, lp = p._sample(st, req.phase, req.stops if len(req.out) < req.min_tokens else ())
        p._append(st, [tok], 1, req.phase, [lp])
        req.out.append(tok)
        if tok not in req.stops:
            tool = p.tool_ids(st, req.out, req.phase, req.max_tokens - len(req.out))
            req.out.extend(tool)
            req.tools += len(tool)
        if tok in req.stops:
            self._advance(Generation(req.out, "stop", tok, req.tools))
        elif len(req.out) >= req.max_tokens:
            self._advance(Generation(req.out, "cap", None, req.tools))

    def _advance(self, gen: Generation) -> None:
        try:
            self.request = self._program.send(gen)
        except StopIteration:
            self.request = None


class BatchEngine:
    """Rows decoded in lockstep on one batched cache: ``add`` rows, ``step`` until done, ``remove`` finished ones."""

    def __init__(self, policy: StreamingPolicy, config: BatchConfig | None = None,
                 session_config: SessionConfig | None = None):
        self.policy = policy
        self.config = config or BatchConfig()
        self.session_config = session_config or SessionConfig()
        if self.session_config.mode != "stream":
            raise ValueError("the batched engine runs stream mode only; use Session for read-then-think")
        self.rows: list[Any] = []  # row i (a BatchRow, or an EngineRow driven from outside) owns batch index i
        self.cache: Any = None
        self.mask: torch.Tensor | None = None  # (rows, columns) 1 = a real position of that row
        self.stats = EngineStats()
        self.pad_id = int(policy.tokenizer.pad_token_id or 0)

    # -- rows joining and leaving ----------------------------------------------------------------------------
    def add(self, question: str, chunks: Sequence[TimedChunk], seeds: Sequence[int | None] = (None,)
            ) -> list[BatchRow]:
        """Add one row per seed for this stream; the prompt is prefilled once and shared by the new rows."""
        if not isinstance(question, str) or not question.strip():
            raise InputError("the question is empty: pass --question TEXT")
        if not chunks:
            raise InputError("the stream has no chunks")
        if not seeds:
            raise ValueError("seeds: need at least one row")
        if len(self.rows) + len(seeds) > self.config.max_rows:
            raise ValueError(f"batch full: {len(self.rows)} rows + {len(seeds)} > max_rows={self.config.max_rows}")
        p = self.policy
        states = [p.new_state(s) for s in seeds]
        first = states[0]
        p.begin(first, question.strip())  # batch-1 prefill of the shared prompt onto first.cache
        self.stats.forward_calls += 1
        self.stats.positions += first.prompt_len
        self.stats.real_tokens += first.prompt_len
        for st in states[1:]:
            _copy_prefix(first, st)
            self.stats.shared_prompt_tokens += first.prompt_len
        layers = [(layer.keys, layer.values) for layer in _layers(first.cache)]
        for st in states:
            st.cache = None  # the engine owns the (batched) cache
        self._join(layers, len(states), first.prompt_len)
        rows = [BatchRow(self, question.strip(), [_fresh(c) for c in chunks], st) for st in states]
        self.rows.extend(rows)
        return rows

    def attach(self, st: PolicyState) -> EngineRow:
        """Join a state that has its own batch-1 cache of ``cache_len`` positions (a live session after its prompt
        prefill); the engine takes the cache over. The caller drives the row: :meth:`forward`, :meth:`remove`."""
        if len(self.rows) >= self.config.max_rows:
            raise ValueError(f"batch full: {len(self.rows)} rows = max_rows")
        layers = [(layer.keys, layer.values) for layer in _layers(st.cache)]
        if not layers or layers[0][0].shape[2] != st.cache_len:
            raise ValueError("the state's cache does not hold its cache_len positions")
        st.cache = None
        self._join(layers, 1, st.cache_len)
        row = EngineRow(st)
        self.rows.append(row)
        return row

    def remove(self, row: EngineRow) -> None:
        """Take a row out of the batch (finished or abandoned); its trace and result stay on the row."""
        keep = [i for i, r in enumerate(self.rows) if r is not row]
        if len(keep) == len(self.rows):
            raise ValueError("row is not in this engine")
        self.rows = [self.rows[i] for i in keep]
        if not self.rows:
            self.cache, self.mask = None, None
            return
        idx = torch.tensor(keep, device=self.policy.device)
        for layer in _layers(self.cache):
            layer.batch_select_indices(idx)
        self.mask = self.mask[idx]
        self._trim()

    def _join(self, layers: list[tuple[torch.Tensor, torch.Tensor]], copies: int, length: int) -> None:
        """Append ``copies`` rows holding ``layers`` (batch 1, ``length`` columns), left-padding the shorter side."""
        dev = self.policy.device
        if self.cache is None:
            from transformers import DynamicCache

            self.cache = DynamicCache(ddp_cache_data=[(k.expand(copies, -1, -1, -1).contiguous(),
                                                       v.expand(copies, -1, -1, -1).contiguous()) for k, v in layers])
            self.mask = torch.ones(copies, length, dtype=torch.long, device=dev)
            return
        width = max(self.mask.shape[1], length)
        for layer, (k, v) in zip(_layers(self.cache), layers, strict=True):
            layer.keys = torch.cat([_lpad(layer.keys, width), _lpad(k, width).expand(copies, -1, -1, -1)], 0)
            layer.values = torch.cat([_lpad(layer.values, width), _lpad(v, width).expand(copies, -1, -1, -1)], 0)
        new = torch.ones(copies, length, dtype=torch.long, device=dev)
        self.mask = torch.cat([_lpad_mask(self.mask, width), _lpad_mask(new, width)], 0)

    # -- stepping --------------------------------------------------------------------------------------------
    def pending(self) -> bool:
        return any(not r.done for r in self.rows)

    def step(self) -> None:
        """Sample every row that has fresh logits, then run one model call (decode or prefill step)."""
        for r in self.rows:
            if r.request is not None and r.state.pending == 0:
                r.sample()
        for r in [r for r in self.rows if r.done]:
            self.remove(r)
        if not self.rows:
            return
        decoding = [r for r in self.rows if r.decoding]
        waiting = [r for r in self.rows if r.state.pending and not r.decoding]
        if not decoding and not waiting:
            return
        in_thought = any(r.request.phase == "stream" for r in decoding)
        if waiting and not in_thought:
            self.compact()
            self.forward(decoding + waiting)
            self.stats.prefill_steps += 1
        else:
            self.forward(decoding)
            self.stats.decode_steps += 1

    def run(self, progress: bool = False) -> None:
        """Step until every row has finished (rows leave the cache as they finish)."""
        from tqdm import tqdm

        bar = tqdm(desc="batched decode", unit="step", disable=not progress, leave=False)
        while self.pending():
            self.step()
            bar.update(1)
        bar.close()

    @torch.inference_mode()
    def forward(self, rows: Sequence[EngineRow], sub_batch: bool = False) -> None:
        """One model call: ``rows`` feed their pending positions, left-padded to a common width.

        The other rows get masked pad columns (holes). ``sub_batch=False`` computes them as pad tokens (cheap at
        width 1, where the step is dominated by the weights); ``sub_batch=True`` runs the model on a copy of the
        chosen rows' cache only and appends the holes without computing them (a chunk prefill of one session must
        not cost a prefill for every row). If the call fails, the cache, mask and states are as before.
        """
        chosen = {id(r) for r in rows}
        for r in rows:
            st = r.state
            if st.cache_len + st.pending > self.policy.max_context:
                raise InputError(f"a row outgrew the context ({self.policy.max_context} tokens); the batched "
                                 "engine does not evict: use Session or a shorter stream")
        width = max(r.state.pending for r in rows)
        sub_batch = sub_batch and len(chosen) < len(self.rows)
        members = [(b, r) for b, r in enumerate(self.rows) if not sub_batch or id(r) in chosen]
        ids, blk, pos = [], [], []
        for _, r in members:
            st = r.state
            n = st.pending if id(r) in chosen else 0
            ids.append([self.pad_id] * (width - n) + (st.ids[-n:] if n else []))
            blk.append([0] * (width - n) + [1] * n)
            pos.append([st.cache_len] * (width - n) + list(range(st.cache_len, st.cache_len + n)))
        dev = self.policy.device
        x = torch.tensor(ids, dtype=torch.long, device=dev)
        new_mask = torch.tensor(blk, dtype=torch.long, device=dev)
        before = self.mask.shape[1]
        if sub_batch:
            from transformers import DynamicCache

            idx = torch.tensor([b for b, _ in members], device=dev)
            old = self.mask.index_select(0, idx)
            used = old.any(0).nonzero()
            first = int(used[0]) if len(used) else before  # leading columns none of the chosen rows uses
            cache = DynamicCache(ddp_cache_data=[(layer.keys.index_select(0, idx)[:, :, first:],
                                                  layer.values.index_select(0, idx)[:, :, first:])
                                                 for layer in _layers(self.cache)])
            mask = torch.cat([old[:, first:], new_mask], 1)
        else:
            cache, mask = self.cache, torch.cat([self.mask, new_mask], 1)
        try:
            with self.policy.forward_lock:
                out, out_cache = forward_cached(self.policy.model, x, cache, attention_mask=mask,
                                                position_ids=torch.tensor(pos, dtype=torch.long, device=dev))
        except BaseException:
            if not sub_batch:  # the model appends to the shared cache layer by layer: undo a partial call
                for layer in _layers(self.cache):
                    layer.keys, layer.values = layer.keys[:, :, :before], layer.values[:, :, :before]
            raise
        if sub_batch:
            for layer, part in zip(_layers(self.cache), _layers(out_cache), strict=True):
                layer.keys = _append_rows(layer.keys, part.keys[:, :, -width:], idx)
                layer.values = _append_rows(layer.values, part.values[:, :, -width:], idx)
            full = self.mask.new_zeros(len(self.rows), width)
            full[idx] = new_mask
            self.mask = torch.cat([self.mask, full], 1)
        else:
            self.cache, self.mask = out_cache, mask
        logits = out.logits[:, -1].float()
        s = self.stats
        s.forward_calls += 1
        s.positions += x.numel()
        s.real_tokens += sum(r.state.pending for r in rows)
        for k, (_, r) in enumerate(members):
            if id(r) in chosen:
                _account(r.state, logits[k])

    # -- keeping the cache dense -----------------------------------------------------------------------------
    def _trim(self) -> None:
        """Drop leading columns that no row uses (after rows left)."""
        used = self.mask.any(0).nonzero()
        first = int(used[0]) if len(used) else self.mask.shape[1]
        if first:
            for layer in _layers(self.cache):
                layer.keys, layer.values = layer.keys[:, :, first:], layer.values[:, :, first:]
            self.mask = self.mask[:, first:]

    def compact(self) -> None:
        """Squeeze the holes out when they exceed ``compact_at`` of the cache: each row's real columns keep their
        order (keys carry their rotary positions, so moving them changes nothing) and are right-aligned."""
        real = self.mask.bool()
        total = real.numel()
        if total == 0 or 1 - real.sum().item() / total < self.config.compact_at:
            return
        width = int(real.sum(1).max())
        order = torch.sort(real.to(torch.int8), dim=1, stable=True).indices[:, -width:]
        for layer in _layers(self.cache):
            b, h, _, d = layer.keys.shape
            g = order[:, None, :, None].expand(b, h, width, d)
            layer.keys, layer.values = layer.keys.gather(2, g), layer.values.gather(2, g)
        self.mask = self.mask.gather(1, order)
        self.stats.compactions += 1


def _layers(cache: Any) -> list[Any]:
    from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

    layers = list(cache.layers)
    for layer in layers:
        if type(layer) is not DynamicLayer or isinstance(layer, DynamicSlidingWindowLayer):
            raise NotImplementedError(f"batched decoding supports plain DynamicCache layers, not {type(layer).__name__}")
    return layers


def _append_rows(t: torch.Tensor, new: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Append ``new``'s columns (B_sub, H, W, D) to the rows ``idx`` of ``t`` (B, H, T, D); zeros elsewhere."""
    block = t.new_zeros(t.shape[0], t.shape[1], new.shape[2], t.shape[3])
    block[idx] = new
    return torch.cat([t, block], 2)


def _lpad(t: torch.Tensor, width: int) -> torch.Tensor:
    """Left-pad a (B, H, T, D) cache tensor with zero columns to ``width``."""
    extra = width - t.shape[2]
    if extra <= 0:
        return t
    return torch.cat([t.new_zeros(t.shape[0], t.shape[1], extra, t.shape[3]), t], 2)


def _lpad_mask(m: torch.Tensor, width: int) -> torch.Tensor:
    extra = width - m.shape[1]
    return m if extra <= 0 else torch.cat([m.new_zeros(m.shape[0], extra), m], 1)


def _copy_prefix(src: PolicyState, dst: PolicyState) -> None:
    """Give ``dst`` the trace and counters ``src`` has after its prompt prefill (as if it had run it itself)."""
    for name in ("ids", "env_mask", "phase", "logprobs"):
        setattr(dst, name, list(getattr(src, name)))
    for name in ("prompt_len", "pending", "next_logits", "cache_len", "input_tokens", "prefill_tokens",
                 "decode_tokens", "forward_calls"):
        setattr(dst, name, getattr(src, name))


def _fresh(c: TimedChunk) -> TimedChunk:
    """Rows index their chunks; copy so rows (and callers) never share mutable chunk objects."""
    from dataclasses import replace

    return replace(c)


def _same_chunks(a: Sequence[TimedChunk], b: Sequence[TimedChunk]) -> bool:
    """Same stream: the same chunk objects, or chunks that render to the same text and times."""
    return len(a) == len(b) and all(x is y or (x.text, x.start, x.end, x.modality) == (y.text, y.start, y.end,
                                                                                       y.modality)
                                    for x, y in zip(a, b, strict=True))


def _account(st: PolicyState, logits: torch.Tensor) -> None:
    """Bookkeeping of one row after a model call, exactly as ``StreamingPolicy._forward_alone`` counts it."""
    masks = st.env_mask[len(st.env_mask) - st.pending :]
    n_env = sum(1 for m in masks if m == 0)
    st.next_logits = logits
    st.forward_calls += 1
    st.prefill_tokens += n_env
    st.decode_tokens += st.pending - n_env
    st.cache_len += st.pending
    st.pending = 0


def run_batched(policy: StreamingPolicy, jobs: Sequence[tuple[str, Sequence[TimedChunk], int | None]],
                config: BatchConfig | None = None, progress: bool = False,
                guide_factory: Callable[[], TokenGuide] | None = None) -> list[SessionResult]:
    """Run streaming sessions batched; ``jobs`` are (question, chunks, seed), results come back in job order.

    Consecutive jobs with the same question and chunks (the G rollouts of one stream, as TRL lists them) form one
    group that prefills its prompt once. Each result is what ``Session`` over those chunks would return with that
    seed (same trace, masks, phases, log-probs and counters), so ``rollout_from_result`` takes it unchanged.
    ``guide_factory`` gives every row its own token guide (as ``StreamingRollout.guide_factory`` does).
    """
    engine = BatchEngine(policy, config, SessionConfig(max_lag_s=0.0))
    rows: list[BatchRow] = []
    i = 0
    while i < len(jobs):
        q, chunks, _ = jobs[i]
        j = i
        while j < len(jobs) and jobs[j][0] == q and _same_chunks(jobs[j][1], chunks):
            j += 1
        rows.extend(engine.add(q, chunks, [s for _, _, s in jobs[i:j]]))
        i = j
    if guide_factory is not None:
        for r in rows:
            r.state.guide = guide_factory()
    model = policy.model
    was_training = model.training
    model.eval()
    try:
        engine.run(progress)
    finally:
        model.train(was_training)
    out = [r.result for r in rows]
    assert all(r is not None for r in out)
    return out  # type: ignore[return-value]
