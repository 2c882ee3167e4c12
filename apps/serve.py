"""``adasr-mm serve``: the OpenAI-Realtime-compatible WebSocket server (Starlette on uvicorn).

Endpoints: ``GET /health``, ``GET /v1/models``, ``WS /v1/realtime?model=...``. The models (policy, Whisper) are
loaded once; each WebSocket connection owns one :class:`~apps.realtime.RealtimeSession` (its own KV cache row, live
source and pipeline worker). With ``serve.batching`` (default) one
:class:`~adasr_mm.continuous.DecodeScheduler` runs every session's model calls batched. Safety: binds 127.0.0.1 by default; an API key (``Authorization: Bearer``) is
required for any other interface; bounded message size, session count, idle time and session length.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import threading
from typing import Any

from adasr_mm.errors import ConfigError

from .config import ServeConfig
from .realtime import RealtimeSession, new_id

log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _unauthorized() -> Any:
    """The OpenAI API's answer to a missing or wrong key (HTTP 401), for HTTP routes and the WebSocket handshake."""
    from starlette.responses import JSONResponse

    return JSONResponse({"error": {"type": "invalid_request_error", "code": "invalid_api_key",
                                   "message": "missing or wrong API key"}}, status_code=401)


class RealtimeServer:
    """Owns the models and the live sessions; builds the ASGI app."""

    def __init__(self, settings: Any, serve: ServeConfig, agent: Any = None, asr_model: Any = None):
        if not serve.api_key and not is_loopback(serve.host):
            raise ConfigError(f"serving on {serve.host} (not loopback) needs --api-key: anyone who can reach the "
                              "port could use the models")
        from adasr_mm.adapters.asr import whisper_for
        from adasr_mm.agent import StreamingAgent
        from adasr_mm.continuous import DecodeScheduler
        from adasr_mm.pipeline import configure_threads

        configure_threads(settings)
        self.settings, self.serve = settings, serve
        self.agent = agent if agent is not None else StreamingAgent.from_pretrained(config=settings)
        self.asr_model = asr_model if asr_model is not None else whisper_for(settings.asr)
        self.batcher = DecodeScheduler.for_sessions(self.agent.policy, serve.max_sessions) if serve.batching else None
        self.sessions: set[RealtimeSession] = set()
        self._lock = threading.Lock()

    # -- HTTP ---------------------------------------------------------------------------------------------------
    def _authorized(self, headers: Any) -> bool:
        if not self.serve.api_key:
            return True
        auth = headers.get("authorization", "")
        return auth.startswith("Bearer ") and hmac.compare_digest(auth[7:].strip(), self.serve.api_key)

    async def health(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        body: dict[str, Any] = {"status": "ok", "sessions": len(self.sessions), "max_sessions": self.serve.max_sessions,
                                "batching": self.batcher is not None}
        if self.batcher is not None:
            body["scheduler"] = self.batcher.stats.to_dict()
        return JSONResponse(body)

    async def models(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        if not self._authorized(request.headers):
            return _unauthorized()
        return JSONResponse({"object": "list", "data": [
            {"id": self.agent.policy.name, "object": "model", "created": 0, "owned_by": "adasr-mm"}]})

    # -- WebSocket ----------------------------------------------------------------------------------------------
    async def realtime(self, ws: Any) -> None:
        if not self._authorized(ws.headers):  # the handshake fails with HTTP 401 and the JSON error body
            if "websocket.http.response" in ws.scope.get("extensions", {}):
                await ws.send_denial_response(_unauthorized())
            else:  # an ASGI server without the denial extension answers a close before accept with 403
                await ws.close(code=1008, reason="missing or wrong API key")
            return
        await ws.accept()
        loop = asyncio.get_running_loop()
        out: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

        def emit(ev: dict[str, Any]) -> None:  # called from the pipeline worker thread
            loop.call_soon_threadsafe(out.put_nowait, ev)

        rs = RealtimeSession(self.agent, self.settings, self.asr_model, emit, self.serve.max_session_s, self.batcher)
        with self._lock:
            busy = len(self.sessions) >= self.serve.max_sessions
            if not busy:
                self.sessions.add(rs)
        if busy:
            rs.error("server_busy", f"the server is busy: {self.serve.max_sessions} sessions are open "
                     "(max_sessions); try again later", kind="server_error")
            await self._flush(ws, out)
            await ws.close(code=1013)
            return
        sender = asyncio.create_task(self._send_loop(ws, out))
        try:
            rs.start()
            await self._receive_loop(ws, rs)
        finally:
            rs.cancel()
            with self._lock:
                self.sessions.discard(rs)
            out.put_nowait(None)
            await asyncio.gather(sender, return_exceptions=True)

    async def _receive_loop(self, ws: Any, rs: RealtimeSession) -> None:
        from starlette.websockets import WebSocketDisconnect

        while True:
            try:
                msg = await asyncio.wait_for(ws.receive(), timeout=self.serve.idle_timeout_s)
            except TimeoutError:
                rs.error("idle_timeout", f"no message for {self.serve.idle_timeout_s:g} s; closing the session")
                await asyncio.sleep(0.1)
                await ws.close(code=1000)
                return
            except WebSocketDisconnect:
                return
            if msg["type"] == "websocket.disconnect":
                return
            data = msg.get("text") if msg.get("text") is not None else msg.get("bytes")
            if data is None:
                continue
            if len(data) > self.serve.max_message_bytes:
                rs.error("message_too_large", f"message of {len(data)} bytes is over the limit of "
                         f"{self.serve.max_message_bytes} (max_message_bytes); split the audio into smaller appends")
                continue
            await asyncio.to_thread(rs.handle, data)

    async def _send_loop(self, ws: Any, out: asyncio.Queue) -> None:
        while True:
            ev = await out.get()
            if ev is None:
                return
            try:
                await ws.send_text(json.dumps(ev, ensure_ascii=False))
            except Exception:  # noqa: BLE001 - the client went away; the receive loop ends the session
                return

    async def _flush(self, ws: Any, out: asyncio.Queue) -> None:
        while not out.empty():
            ev = out.get_nowait()
            if ev is not None:
                await ws.send_text(json.dumps(ev))

    def app(self) -> Any:
        from starlette.applications import Starlette
        from starlette.routing import Route, WebSocketRoute

        return Starlette(routes=[Route("/health", self.health), Route("/v1/models", self.models),
                                 WebSocketRoute("/v1/realtime", self.realtime)])


def serve(settings: Any, config: ServeConfig, server: RealtimeServer | None = None, block: bool = True) -> Any:
    """Start uvicorn on ``config.host:port``; with ``block=False`` return (uvicorn server, thread, url)."""
    import uvicorn

    srv = server or RealtimeServer(settings, config)
    port = config.port
    if port == 0:
        from .launch import free_port

        port = free_port(config.host)
    # uvicorn's own frame limit is a backstop far above ours: our limit answers with an error event instead of
    # dropping the connection
    ucfg = uvicorn.Config(srv.app(), host=config.host, port=port, log_level="warning", lifespan="off",
                          ws_max_size=max(16 * config.max_message_bytes, 16 * 2**20), ws="websockets-sansio")
    server_ = uvicorn.Server(ucfg)
    url = f"http://{config.host}:{port}"
    if block:
        print(f"adasr-mm serve: listening on {url} (WebSocket {url.replace('http', 'ws')}/v1/realtime)", flush=True)
        server_.run()
        return server_
    t = threading.Thread(target=server_.run, daemon=True, name="adasr-serve")
    t.start()
    import time

    for _ in range(600):
        if server_.started:
            break
        time.sleep(0.05)
    return server_, t, url


__all__ = ["RealtimeServer", "ServeConfig", "serve", "new_id"]
