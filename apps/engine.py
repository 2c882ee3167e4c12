"""The shared engine (models loaded once) and the per-connection state of the app.

Every browser connection (Gradio session hash) gets a :class:`Connection` holding its current run; a run owns one
agent :class:`~adasr_mm.session.Session`, exactly as the Python API's sessions. The policy's weights are shared.
With ``app.batching`` (default) one :class:`~adasr_mm.continuous.DecodeScheduler` runs every run's model calls
batched on one KV cache; without it each session has its own cache and forward passes go through one lock, so
concurrent sessions interleave token by token instead of oversubscribing the cores.
Runs get an explicit :class:`~apps.runs.RunContext` (agent, settings, ASR model, an end callback), never the
engine itself.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from adasr_mm.errors import AdasrError

from .config import AppSettings
from .runs import FileRun, LiveRun, Run, RunContext

log = logging.getLogger(__name__)

#: A media push after this long without one from the same source starts a new live stream (a new recording).
NEW_STREAM_GAP_S = 2.0


class BusyError(AdasrError):
    """Every run slot is taken."""


class Connection:
    """One browser connection: its current run and where its downloads are written."""

    def __init__(self, key: str, out_dir: Path):
        self.key = key
        self.out_dir = out_dir
        self.run: Run | None = None
        self.lock = threading.Lock()
        self.last_push: dict[str, float] = {}
        self.armed = False  # the microphone reported a new recording: the next audio starts a run

    def open_live(self) -> LiveRun | None:
        run = self.run
        return run if isinstance(run, LiveRun) and not run.ended else None

    def close(self) -> None:
        run, self.run = self.run, None
        if run is not None:
            run.cancel()
        shutil.rmtree(self.out_dir, ignore_errors=True)


class Engine:
    """Loads the policy and the ASR model once; hands out connections and run slots."""

    def __init__(self, settings: AppSettings, agent: Any = None, asr_model: Any = None):
        from adasr_mm.adapters.asr import whisper_for
        from adasr_mm.agent import StreamingAgent
        from adasr_mm.continuous import DecodeScheduler
        from adasr_mm.pipeline import configure_threads

        configure_threads(settings)  # ASR and policy on separate cores
        self.settings = settings
        self.agent = agent if agent is not None else StreamingAgent.from_pretrained(config=settings)
        self.agent.config = settings
        self.asr_model = asr_model if asr_model is not None else whisper_for(settings.asr)
        self.batcher = (DecodeScheduler.for_sessions(self.agent.policy, settings.app.max_runs)
                        if settings.app.batching else None)
        self.context = RunContext(self.agent, settings, self.asr_model, on_finished=self.run_finished,
                                  batcher=self.batcher)
        self.workdir = Path(tempfile.mkdtemp(prefix="adasr-app-"))
        self._conns: dict[str, Connection] = {}
        self._runs: set[Run] = set()
        self._lock = threading.Lock()

    # -- connections ------------------------------------------------------------------------------------------
    def connection(self, key: str) -> Connection:
        with self._lock:
            conn = self._conns.get(key)
            if conn is None:
                safe = "".join(ch for ch in key if ch.isalnum())[:40] or "anon"
                out = self.workdir / safe
                out.mkdir(parents=True, exist_ok=True)
                conn = self._conns[key] = Connection(key, out)
            return conn

    def release(self, key: str | None) -> None:
        """The browser went away: cancel its run and drop its state and files (idempotent)."""
        if not key:
            return
        with self._lock:
            conn = self._conns.pop(key, None)
        if conn is not None:
            conn.close()
            log.info("released connection %s (%d left)", key[:8], self.live_connections)

    @property
    def live_connections(self) -> int:
        with self._lock:
            return len(self._conns)

    @property
    def active_runs(self) -> int:
        with self._lock:
            return len(self._runs)

    # -- runs -------------------------------------------------------------------------------------------------
    def _begin(self, conn: Connection, make: Any) -> Run:
        old = conn.run
        if old is not None and not old.done:
            old.cancel()
        with self._lock:
            limit = self.settings.app.max_runs
            busy = len(self._runs) - (1 if old in self._runs else 0)
            if busy >= limit:
                raise BusyError(f"The server is busy: {limit} streams are running (max_runs). "
                                "Try again in a moment.")
            run = make()
            run.out_dir = conn.out_dir
            self._runs.add(run)
        conn.run = run
        return run.start()

    def start_live(self, conn: Connection, question: str) -> LiveRun:
        run = self._begin(conn, lambda: LiveRun(self.context, question))
        assert isinstance(run, LiveRun)
        return run

    def start_file(self, conn: Connection, question: str, path: str, clock: str) -> FileRun:
        run = self._begin(conn, lambda: FileRun(self.context, question, path, clock))
        assert isinstance(run, FileRun)
        return run

    def live_run_for(self, conn: Connection, kind: str, question: str) -> LiveRun | None:
        """The live run a media push from ``kind`` (audio/frame) belongs to, starting one for a new stream.

        After Stop the browser may keep sending (the microphone is still on): those pushes are dropped until the
        source pauses for :data:`NEW_STREAM_GAP_S` or a new recording starts.
        """
        with conn.lock:
            now = time.monotonic()
            last = conn.last_push.get(kind)
            conn.last_push[kind] = now
            run = conn.open_live()
            if run is not None:
                return run
            fresh = last is None or now - last > NEW_STREAM_GAP_S or (kind == "audio" and conn.armed)
            if not fresh:
                return None
            if kind == "audio":
                conn.armed = False
            return self.start_live(conn, question)

    def run_finished(self, run: Run) -> None:
        with self._lock:
            self._runs.discard(run)

    def close(self) -> None:
        with self._lock:
            keys = list(self._conns)
        for k in keys:
            self.release(k)
        if self.batcher is not None:
            self.batcher.close()
        shutil.rmtree(self.workdir, ignore_errors=True)
