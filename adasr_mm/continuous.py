"""Continuous batching across live sessions: one thread owns the model and serves every session's model calls.

Why: at batch 1, concurrent sessions share the model pass by pass through the forward lock, so 8 sessions get
~1.6x one session's throughput on 2 cores, while a batched decode step costs little more than a batch-1 step.
Each session keeps all of its logic on its own thread (:class:`~adasr_mm.session.Session` and the pipeline's
``Scheduler``: catch-up, deadline-aware caps, end of stream, events and summary are the same code as at batch 1);
only its model calls go through a :class:`DecodeScheduler` (``PolicyState.runner``), which runs every session's
pending positions on :class:`~adasr_mm.batch.BatchEngine`'s one batched KV cache and hands each session its
logits, with the counters batch 1 would have. Sessions join with their first call and leave with
``StreamingPolicy.release`` at any time.

One scheduler iteration is one model call:
- a new session's prompt prefill runs alone (batch 1) and its cache joins the batch;
- a *decode* call takes every session with one pending token (the last sampled one); it first waits, up to
  ``gather_s``, for the sessions that were served by the previous call and are still inside a response (their
  threads are sampling and come back at once), so the rows stay in lockstep instead of splitting into groups;
- a *prefill* call takes sessions with several pending tokens (a chunk read, the end-of-stream read), left-padded;
  only those rows are computed (a copy of their cache), the others get uncomputed masked holes, which the engine
  squeezes out when they grow.
Prefill and decode calls alternate when both are waiting: a chunk waits at most one decode call and a thought
pauses for at most one prefill call. They are not merged into one call: a left-padded call costs rows x width
positions, so decoding 8 rows inside a 32-token prefill would cost ~3x the two separate calls (measured in
docs/batching.md).

Failures stay with their session: a call that raises is retried row by row and only the rows that fail again get
the error (raised on their own thread); the engine's cache is left as it was before the failed call.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from .batch import BatchConfig, BatchEngine, EngineRow
from .policy import PolicyState, StreamingPolicy

log = logging.getLogger(__name__)


@dataclass
class SchedulerStats:
    """What the scheduler ran (the engine's own :class:`~adasr_mm.batch.EngineStats` counts positions)."""

    decode_calls: int = 0
    prefill_calls: int = 0
    prompt_calls: int = 0  # new sessions' prompt prefills (batch 1)
    rows_served: int = 0  # sum over decode and prefill calls of the rows computed
    max_rows: int = 0  # most rows in one call
    sub_batch_calls: int = 0  # calls that computed only the chosen rows
    gather_timeouts: int = 0  # decode calls that stopped waiting for an expected session
    retried_calls: int = 0  # failed calls retried row by row
    failed_rows: int = 0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        calls = self.decode_calls + self.prefill_calls
        d["rows_per_call"] = round(self.rows_served / calls, 3) if calls else 0.0
        return d


class _Request:
    __slots__ = ("state", "done", "error")

    def __init__(self, state: PolicyState):
        self.state = state
        self.done = False
        self.error: BaseException | None = None


class DecodeScheduler:
    """Owns the policy's model calls for every attached session; see the module docstring for the policy.

    Attach a session with ``Session(..., batcher=scheduler)`` (or ``state.runner = scheduler``). Thread-safe:
    every session calls from its own thread and blocks until its call is done; nothing else needs a lock.
    """

    def __init__(self, policy: StreamingPolicy, config: BatchConfig | None = None, gather_s: float = 0.05):
        self.policy = policy
        self.engine = BatchEngine(policy, config)
        self.gather_s = gather_s
        self.stats = SchedulerStats()
        self._cond = threading.Condition()
        self._queue: dict[int, _Request] = {}  # id(state) -> its waiting call, in arrival order
        self._leaving: list[PolicyState] = []
        self._rows: dict[int, EngineRow] = {}  # id(state) -> its engine row (scheduler thread only)
        self._served: list[PolicyState] = []  # states the previous call served
        self._last_prefill = False
        self._closed = False
        self._detaches = self._detached = 0  # detach requests made / processed
        self._thread = threading.Thread(target=self._main, name="adasr-decode", daemon=True)
        self._thread.start()

    @classmethod
    def for_sessions(cls, policy: StreamingPolicy, sessions: int) -> DecodeScheduler:
        """A scheduler whose batch holds up to ``sessions`` concurrent sessions (a server's session limit)."""
        return cls(policy, BatchConfig(max_rows=max(BatchConfig().max_rows, sessions)))

    # -- the sessions' side (their own threads) --------------------------------------------------------------
    def forward(self, st: PolicyState) -> None:
        """Run the state's pending positions in the next suitable batched call; block until done."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("DecodeScheduler.forward called from the scheduler thread")
        req = _Request(st)
        with self._cond:
            if self._closed:
                raise RuntimeError("the decode scheduler is closed")
            self._queue[id(st)] = req
            self._cond.notify_all()
            self._cond.wait_for(lambda: req.done)
        if req.error is not None:
            raise req.error

    def detach(self, st: PolicyState) -> None:
        """The state leaves the batch (session over, or its cache is rebuilt after an eviction); asynchronous."""
        with self._cond:
            self._leaving.append(st)
            self._detaches += 1
            self._cond.notify_all()

    def settled(self, st: PolicyState) -> None:
        """The state left a response: the scheduler need not wait for its next call."""
        with self._cond:
            self._cond.notify_all()

    def close(self) -> None:
        """Stop the thread; waiting and later calls raise."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(30)

    def sync(self) -> None:
        """Block until every detach requested so far has been processed (tests, shutdown)."""
        with self._cond:
            target = self._detaches
            self._cond.wait_for(lambda: self._detached >= target or self._closed)

    @property
    def sessions(self) -> int:
        """Sessions holding a row of the batched cache."""
        return len(self._rows)

    # -- the scheduler thread -------------------------------------------------------------------------------
    def _expected(self) -> list[PolicyState]:
        """Sessions served by the previous call that are inside a response and have not asked again yet."""
        return [st for st in self._served if st.responding and id(st) not in self._queue]

    def _choose(self) -> tuple[str, list[_Request]]:
        """Which waiting calls run next (under the lock; may wait for expected sessions to come back)."""
        prompts = [r for r in self._queue.values() if id(r.state) not in self._rows and r.state.cache_len == 0]
        if prompts:
            return "prompt", prompts[:1]
        prefill = [r for r in self._queue.values() if r.state.pending > 1]
        decode = [r for r in self._queue.values() if r.state.pending == 1]
        if prefill and (not decode or not self._last_prefill):
            widest = max(r.state.pending for r in prefill)  # narrower reads would pay its width: next round
            return "prefill", [r for r in prefill if 2 * r.state.pending >= widest]
        end = time.monotonic() + self.gather_s
        while not self._closed and self._expected():
            left = end - time.monotonic()
            if left <= 0:
                self.stats.gather_timeouts += 1
                break
            self._cond.wait(left)
        return "decode", [r for r in self._queue.values() if r.state.pending == 1]

    def _main(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._closed or bool(self._queue) or bool(self._leaving))
                if self._closed:
                    break
                kind, batch = self._choose() if self._queue else ("", [])
                for r in batch:
                    del self._queue[id(r.state)]
                # taken after choosing: a session that detached (eviction) and then asked for a call while
                # _choose waited must leave before its new cache joins
                leaving, self._leaving = self._leaving, []
            try:
                for st in leaving:
                    self._leave(st)
                if batch:
                    self._serve(kind, batch)
            except BaseException as e:  # noqa: BLE001 - never lose the thread; the calls of this round get it
                log.exception("decode scheduler round failed")
                for r in batch:
                    if not r.done:
                        r.error = e
            with self._cond:
                self._detached += len(leaving)
                for r in batch:
                    r.done = True
                self._served = [r.state for r in batch if r.error is None]
                self._cond.notify_all()
        with self._cond:
            for r in self._queue.values():
                r.error, r.done = RuntimeError("the decode scheduler was closed"), True
            self._queue.clear()
            self._cond.notify_all()

    def _leave(self, st: PolicyState) -> None:
        row = self._rows.pop(id(st), None)
        if row is not None:
            self.engine.remove(row)

    def _serve(self, kind: str, batch: list[_Request]) -> None:
        s = self.stats
        if kind == "prompt":  # a new session: batch 1 on its own cache, which then joins the batch
            st = batch[0].state
            try:
                self.policy._forward_alone(st)
                self._rows[id(st)] = self.engine.attach(st)
            except Exception as e:  # noqa: BLE001 - this session's failure only
                batch[0].error = e
            s.prompt_calls += 1
            self._last_prefill = True
            return
        for r in batch:
            if id(r.state) not in self._rows:  # its cache was rebuilt at batch 1 (eviction): join again
                try:
                    self._rows[id(r.state)] = self.engine.attach(r.state)
                except Exception as e:  # noqa: BLE001 - e.g. the batch is full: this session's failure only
                    r.error = e
        batch = [r for r in batch if r.error is None]
        if not batch:
            return
        rows = [self._rows[id(r.state)] for r in batch]
        self._last_prefill = kind == "prefill"
        if kind == "prefill":
            s.prefill_calls += 1
        else:
            s.decode_calls += 1
        s.rows_served += len(rows)
        s.max_rows = max(s.max_rows, len(rows))
        try:
            self._call(rows)
        except Exception as e:  # noqa: BLE001 - find the rows that fail on their own
            if len(rows) == 1:
                batch[0].error = e
                s.failed_rows += 1
                return
            log.warning("batched call of %d rows failed (%s); retrying row by row", len(rows), e)
            s.retried_calls += 1
            for r, row in zip(batch, rows, strict=True):
                try:
                    self.engine.forward([row], sub_batch=True)
                except Exception as e1:  # noqa: BLE001 - this session's failure only
                    r.error = e1
                    s.failed_rows += 1

    def _call(self, rows: list[EngineRow]) -> None:
        """One engine call; only the chosen rows are computed when the others would be wasted work."""
        n, total = len(rows), len(self.engine.rows)
        width = max(r.state.pending for r in rows)
        # a hole in a prefill costs a row's whole prefill; at width 1 a batched step barely grows with a few holes
        sub = n < total and (width > 1 or 4 * (total - n) >= total)
        self.engine.compact()
        self.engine.forward(rows, sub_batch=sub)
        self.stats.sub_batch_calls += sub
