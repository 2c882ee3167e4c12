"""One OpenAI-Realtime-compatible session: client events in, adasr-mm's pipeline, server events out.

The wire shapes follow the GA OpenAI Realtime API for what adasr-mm does (``docs/realtime-api.md`` has the
mapping): the question is the session's ``instructions``; audio arrives as base64 PCM16 (or 8 kHz G.711) through
``input_audio_buffer.append``; text chunks and video frames through ``conversation.item.create``;
``response.create`` ends the stream and asks for the answer. adasr-mm's own events (chunk read, thought, skip,
deep reasoning) use types under ``adasr.`` that standard clients ignore.

Transport-free: :class:`RealtimeSession` takes parsed client events and emits server events through a callback,
so the ASGI endpoint (``apps/serve.py``) only moves JSON between the socket and this object.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import io
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np

from adasr_mm.adapters.asr import check_language
from adasr_mm.adapters.audio_io import decode_g711
from adasr_mm.clock import LiveClock
from adasr_mm.errors import AdasrError, ConfigError, InputError
from adasr_mm.events import (
    AnswerEvent,
    ChunkEvent,
    DeepEvent,
    DeltaEvent,
    Event,
    SkipEvent,
    SummaryEvent,
    ThoughtEvent,
)

log = logging.getLogger(__name__)

#: accepted input formats -> their sample rates (the first is the default): PCM16, and telephony's 8 kHz G.711
FORMATS = {"audio/pcm": (24000, 16000), "audio/pcmu": (8000,), "audio/pcma": (8000,)}
_G711 = {"audio/pcmu": "mu", "audio/pcma": "a"}
#: audio.input.transcription fields -> the ASR config field each sets, and what it holds
TRANSCRIPTION = {"prompt": ("hotwords", "names and terms the speech will contain"),
                 "language": ("language", "the spoken language's code, e.g. en")}
#: adasr-mm settings a client may change per session (``session.adasr``): section.key -> type
CLIENT_SETTINGS = {"max_thought_tokens": ("policy", int), "max_deep_tokens": ("policy", int),
                   "max_answer_tokens": ("policy", int), "answer_within_s": ("pipeline", float)}


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


def _member(obj: dict[str, Any], name: str, *path: str) -> Any:
    """``obj[path[0]][path[1]]...`` (None when a key is absent); a non-object on the way is the client's error."""
    for key in path:
        if not isinstance(obj, dict):
            raise ClientError("invalid_value", f"{name} must be an object, got {type(obj).__name__}")
        obj, name = obj.get(key), f"{name}.{key}"
        if obj is None:
            return None
    return obj


class ClientError(Exception):
    """A client event the session cannot take: answered with an ``error`` event, the connection stays up."""

    def __init__(self, code: str, message: str, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.code, self.message, self.kind = code, message, kind


class RealtimeSession:
    """One connection's state: its question, audio format, live source and the pipeline worker."""

    def __init__(self, agent: Any, settings: Any, asr_model: Any, emit: Callable[[dict[str, Any]], None],
                 max_session_s: float = 600.0, batcher: Any = None):
        """``batcher``: the server's shared decode scheduler (None: this session runs at batch 1)."""
        self.agent, self.settings, self.asr_model = agent, settings, asr_model
        self.batcher = batcher
        self.emit = emit
        self.max_session_s = max_session_s
        self.id = new_id("sess")
        self.instructions = ""
        self.format, self.rate = "audio/pcm", 24000
        self.overrides: dict[str, Any] = {}
        self.transcription = {key: getattr(settings.asr, key) for key, _ in TRANSCRIPTION.values()}
        self.source: Any = None
        self.worker: threading.Thread | None = None
        self.response_id: str | None = None
        self.item_id: str | None = None
        self.closed = False
        self._text: list[str] = []
        self.t0 = time.monotonic()
        self._lock = threading.Lock()

    # -- session description -------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "object": "realtime.session", "type": "realtime", "model": self.agent.policy.name,
                "instructions": self.instructions, "output_modalities": ["text"],
                "audio": {"input": {"format": self._format(),
                                    "transcription": {"model": self.settings.asr.model, **{
                                        name: self.transcription[key] for name, (key, _) in TRANSCRIPTION.items()}},
                                    "turn_detection": None}},
                "adasr": dict(self.overrides)}

    def _set_transcription(self, name: str, value: Any) -> None:
        key, what = TRANSCRIPTION[name]
        if not isinstance(value, str):
            raise ClientError("invalid_value", f"audio.input.transcription.{name} must be a string ({what})")
        try:  # the ASR config's own checks and normal form; a language also against the server's Whisper
            asr = dataclasses.replace(self.settings.asr, **{key: value})
            if key == "language":
                check_language(self.asr_model, asr.language)
        except (ValueError, ConfigError) as e:
            raise ClientError("invalid_value", f"audio.input.transcription.{name}: {e}") from None
        self.transcription[key] = getattr(asr, key)

    def _format(self) -> dict[str, Any]:
        return {"type": self.format, "rate": self.rate} if self.format == "audio/pcm" else {"type": self.format}

    def start(self) -> None:
        self.emit({"type": "session.created", "session": self.describe()})

    # -- client events --------------------------------------------------------------------------------------
    def handle(self, raw: str | bytes) -> None:
        """Apply one client message; any problem becomes an ``error`` event (the connection stays open)."""
        event_id = None
        try:
            try:
                ev = json.loads(raw)
            except (ValueError, UnicodeDecodeError):
                raise ClientError("invalid_json", "the message is not valid JSON") from None
            if not isinstance(ev, dict) or not isinstance(ev.get("type"), str):
                raise ClientError("invalid_event", "a client event must be a JSON object with a string 'type'")
            event_id = ev.get("event_id")
            handler = HANDLERS.get(ev["type"])
            if handler is None:
                raise ClientError("unknown_event_type", f"unknown or unsupported event type {ev['type']!r}; "
                                  f"supported: {', '.join(sorted(HANDLERS))}")
            if time.monotonic() - self.t0 > self.max_session_s:
                raise ClientError("session_expired", f"the session is older than {self.max_session_s:g} s "
                                  "(max_session_s); open a new one")
            handler(self, ev)
        except ClientError as e:
            self.error(e.code, e.message, event_id, e.kind)
        except AdasrError as e:
            self.error("invalid_input", str(e), event_id)
        except Exception as e:  # noqa: BLE001 - a message no check foresaw must not end the connection
            log.exception("realtime session %s: client event failed", self.id)
            self.error("server_error", f"could not handle the event ({type(e).__name__}: {e})", event_id,
                       "server_error")

    def error(self, code: str, message: str, event_id: str | None = None, kind: str = "invalid_request_error"
              ) -> None:
        self.emit({"type": "error", "event_id": new_id("event"),
                   "error": {"type": kind, "code": code, "message": message, "param": None,
                             "event_id": event_id}})

    def _session_update(self, ev: dict[str, Any]) -> None:
        s = ev.get("session")
        if not isinstance(s, dict):
            raise ClientError("invalid_value", "session.update needs a 'session' object")
        if self.source is not None:
            raise ClientError("session_started", "the stream has started: settings can no longer change")
        fmt = _member(s, "session", "audio", "input", "format")
        if fmt is not None:
            self._set_format(fmt)
        for name in TRANSCRIPTION:
            value = _member(s, "session", "audio", "input", "transcription", name)
            if value is not None:
                self._set_transcription(name, value)
        if "instructions" in s:
            if not isinstance(s["instructions"], str):
                raise ClientError("invalid_value", "instructions must be a string (the question)")
            self.instructions = s["instructions"].strip()
        ext = s.get("adasr") or {}
        if not isinstance(ext, dict):
            raise ClientError("invalid_value", "session.adasr must be an object")
        for k, v in ext.items():
            if k not in CLIENT_SETTINGS:
                raise ClientError("invalid_value", f"unknown adasr setting {k!r}; supported: "
                                  f"{', '.join(CLIENT_SETTINGS)}")
            try:
                val = CLIENT_SETTINGS[k][1](v)
            except (TypeError, ValueError):
                raise ClientError("invalid_value", f"adasr.{k} must be a number, got {v!r}") from None
            if val < 0 or (CLIENT_SETTINGS[k][1] is int and val < 1):
                raise ClientError("invalid_value", f"adasr.{k} is out of range: {v!r}")
            self.overrides[k] = val
        self.emit({"type": "session.updated", "event_id": new_id("event"), "session": self.describe()})

    def _set_format(self, fmt: Any) -> None:
        if not isinstance(fmt, dict):
            raise ClientError("invalid_value", "session.audio.input.format must be an object")
        kind = fmt.get("type", "audio/pcm")
        if kind not in FORMATS:
            raise ClientError("invalid_audio_format", f"audio format {kind!r} is not supported; use "
                              "{'type': 'audio/pcm', 'rate': 24000 or 16000}, {'type': 'audio/pcmu'} or "
                              "{'type': 'audio/pcma'}")
        rate = fmt.get("rate", FORMATS[kind][0])
        if rate not in FORMATS[kind]:
            raise ClientError("invalid_sample_rate", f"{kind} rate {rate!r} is not supported; use "
                              f"{' or '.join(map(str, FORMATS[kind]))}")
        self.format, self.rate = kind, int(rate)

    def _need_stream(self) -> Any:
        if self.response_id is not None:
            raise ClientError("stream_ended", "the stream has ended (response.create was sent); open a new session")
        if self.source is None:
            if not self.instructions:
                raise ClientError("session_not_configured", "send session.update with 'instructions' (the "
                                  "question) before streaming media")
            self._open()
        return self.source

    def _append(self, ev: dict[str, Any]) -> None:
        audio = ev.get("audio")
        if not isinstance(audio, str):
            raise ClientError("invalid_value", "input_audio_buffer.append needs 'audio' (base64, in the session's "
                              "audio format)")
        try:
            pcm = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            raise ClientError("invalid_audio", "'audio' is not valid base64") from None
        g711 = _G711.get(self.format)
        if g711 is None and len(pcm) % 2:
            raise ClientError("invalid_audio", f"'audio' is not PCM16: {len(pcm)} bytes is an odd count")
        src = self._need_stream()
        samples = decode_g711(pcm, g711) if g711 else np.frombuffer(pcm, dtype="<i2")
        if samples.size and not src.push_audio(self.rate, samples):
            raise ClientError("stream_ended", "the stream has ended; no more audio is accepted")

    def _commit(self, ev: dict[str, Any]) -> None:
        self._need_stream()
        self.emit({"type": "input_audio_buffer.committed", "event_id": new_id("event"),
                   "previous_item_id": self.item_id, "item_id": new_id("item")})

    def _clear(self, ev: dict[str, Any]) -> None:
        self.emit({"type": "input_audio_buffer.cleared", "event_id": new_id("event")})

    def _item_create(self, ev: dict[str, Any]) -> None:
        item = ev.get("item")
        if not isinstance(item, dict) or not isinstance(item.get("content"), list):
            raise ClientError("invalid_value", "conversation.item.create needs an 'item' with a 'content' list")
        for part in item["content"]:
            if not isinstance(part, dict):
                raise ClientError("invalid_value", "each content part must be an object")
            ext = part.get("adasr") or {}
            if part.get("type") == "input_text":
                self._text_part(part, ext)
            elif part.get("type") == "input_image":
                self._image_part(part, ext)
            else:
                raise ClientError("invalid_value", f"content type {part.get('type')!r} is not supported; use "
                                  "input_text or input_image")
        self.emit({"type": "conversation.item.created", "event_id": new_id("event"),
                   "item": {"id": item.get("id") or new_id("item"), "type": "message", "role": "user",
                            "status": "completed", "content": item["content"]}})

    def _text_part(self, part: dict[str, Any], ext: dict[str, Any]) -> None:
        text = part.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ClientError("invalid_value", "input_text needs a non-empty 'text'")
        if ext.get("role") == "question" or (not self.instructions and ext.get("role") != "chunk"):
            if self.source is not None:
                raise ClientError("session_started", "the question must come before the stream starts")
            self.instructions = text.strip()
            return
        src = self._need_stream()
        start, end = ext.get("start"), ext.get("end")
        src.push_text(text, None if start is None else float(start), None if end is None else float(end))

    def _image_part(self, part: dict[str, Any], ext: dict[str, Any]) -> None:
        url = part.get("image_url")
        if not isinstance(url, str) or not url.startswith("data:image/") or "," not in url:
            raise ClientError("invalid_image", "input_image needs 'image_url' as a data URL "
                              "(data:image/png;base64,...)")
        try:
            from PIL import Image

            img = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1], validate=True)))
            frame = np.asarray(img.convert("RGB"))
        except Exception:  # noqa: BLE001 - any undecodable image is the client's problem
            raise ClientError("invalid_image", "input_image is not a decodable image") from None
        t = ext.get("timestamp")
        self._need_stream().push_frame(frame, None if t is None else float(t))

    def _response_create(self, ev: dict[str, Any]) -> None:
        if self.response_id is not None:
            raise ClientError("response_in_progress", "a response was already requested for this session")
        self._need_stream()
        self.response_id = new_id("resp")
        self.item_id = new_id("item")
        self.emit({"type": "response.created", "event_id": new_id("event"),
                   "response": {"id": self.response_id, "object": "realtime.response", "status": "in_progress",
                                "output": [], "output_modalities": ["text"]}})
        self.source.stop()

    def _response_cancel(self, ev: dict[str, Any]) -> None:
        self.cancel()

    # -- the stream -----------------------------------------------------------------------------------------
    def _config(self) -> Any:
        cfg = dataclasses.replace(self.settings, asr=dataclasses.replace(self.settings.asr, **self.transcription))
        by_section: dict[str, dict[str, Any]] = {}
        for k, v in self.overrides.items():
            by_section.setdefault(CLIENT_SETTINGS[k][0], {})[k] = v
        try:
            for section, vals in by_section.items():
                cfg = dataclasses.replace(cfg, **{section: dataclasses.replace(getattr(cfg, section), **vals)})
        except (TypeError, ValueError) as e:
            raise ConfigError(f"bad adasr setting: {e}") from None
        return cfg

    def _open(self) -> None:
        from adasr_mm.adapters.live import LiveSource
        from adasr_mm.session import Session

        cfg = self._config()
        clock = LiveClock()
        self.session = Session(self.agent.policy, self.instructions, cfg.session, clock, emit_deltas=True,
                               batcher=self.batcher)
        self.source = LiveSource(self.asr_model, cfg.asr, cfg.audio, cfg.video, self.max_session_s,
                                 names=("client audio", "client frames"))
        self.source.bind_clock(clock)
        self._cfg = cfg
        self.worker = threading.Thread(target=self._run, name=f"adasr-rt-{self.id[-6:]}", daemon=True)
        self.worker.start()

    def _run(self) -> None:
        from adasr_mm.pipeline import iter_pipeline

        try:
            for ev in iter_pipeline(self.session, self.source, None, self._cfg.pipeline, live=True):
                if self.closed:
                    return
                self._forward(ev)
        except InputError as e:
            self.error("invalid_input", str(e))
            self._done("failed", str(e))
        except Exception as e:  # noqa: BLE001 - a failure ends this session only
            log.exception("realtime session %s failed", self.id)
            self.error("server_error", f"internal error ({type(e).__name__}: {e})", kind="server_error")
            self._done("failed", str(e))
        finally:  # however it ended: free the KV cache, leave the shared batch
            self.agent.policy.release(self.session.state)

    def _forward(self, ev: Event) -> None:
        if self.response_id is None and isinstance(ev, (DeepEvent, AnswerEvent, SummaryEvent)):
            self.response_id, self.item_id = new_id("resp"), new_id("item")  # the stream ended by a limit
            self.emit({"type": "response.created", "event_id": new_id("event"),
                       "response": {"id": self.response_id, "object": "realtime.response",
                                    "status": "in_progress", "output": [], "output_modalities": ["text"]}})
        for out in server_events(ev, self):
            self.emit(out)

    def _done(self, status: str, reason: str = "") -> None:
        if self.response_id is None:
            self.response_id = new_id("resp")
        self.emit({"type": "response.done", "event_id": new_id("event"),
                   "response": {"id": self.response_id, "object": "realtime.response", "status": status,
                                "status_details": {"reason": reason} if reason else None, "output": []}})

    def cancel(self) -> None:
        """Stop the stream and the worker (``response.cancel`` or the connection went away)."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
        if self.source is not None:
            self.source.cancel()
        if self.response_id is not None:
            self._done("cancelled", "client_cancelled")


def server_events(ev: Event, rs: RealtimeSession) -> list[dict[str, Any]]:
    """The server events for one adasr-mm event (standard types where one fits, ``adasr.*`` otherwise)."""
    eid = new_id("event")
    if isinstance(ev, DeltaEvent):
        if ev.phase == "answer":
            rs._text.append(ev.text)
            return [{"type": "response.output_text.delta", "event_id": eid, "response_id": rs.response_id,
                     "item_id": rs.item_id, "output_index": 0, "content_index": 0, "delta": ev.text}]
        kind = "thought" if ev.phase == "stream" else "deep"
        return [{"type": f"adasr.{kind}.delta", "event_id": eid, "index": ev.index, "delta": ev.text, "t": ev.t}]
    d = ev.to_dict()
    if isinstance(ev, ChunkEvent):
        out = [{"type": "adasr.chunk", "event_id": eid, **{k: v for k, v in d.items() if k != "type"}}]
        c = ev.chunk
        if c.modality == "audio":
            item = new_id("item")
            ms = (int(c.start * 1000), int(c.end * 1000))
            out = [{"type": "input_audio_buffer.speech_started", "event_id": new_id("event"), "audio_start_ms": ms[0],
                    "item_id": item},
                   {"type": "input_audio_buffer.speech_stopped", "event_id": new_id("event"), "audio_end_ms": ms[1],
                    "item_id": item},
                   {"type": "input_audio_buffer.committed", "event_id": new_id("event"), "item_id": item,
                    "previous_item_id": None},
                   {"type": "conversation.item.input_audio_transcription.delta", "event_id": new_id("event"),
                    "item_id": item, "content_index": 0, "delta": c.text},
                   {"type": "conversation.item.input_audio_transcription.completed", "event_id": new_id("event"),
                    "item_id": item, "content_index": 0, "transcript": c.text,
                    "adasr": {"start": c.start, "end": c.end}}] + out
        return out
    if isinstance(ev, ThoughtEvent):
        return [{"type": "adasr.thought.done", "event_id": eid, **{k: v for k, v in d.items() if k != "type"}}]
    if isinstance(ev, SkipEvent):
        return [{"type": "adasr.skip", "event_id": eid, **{k: v for k, v in d.items() if k != "type"}}]
    if isinstance(ev, DeepEvent):
        return [{"type": "adasr.deep.done", "event_id": eid, **{k: v for k, v in d.items() if k != "type"}}]
    if isinstance(ev, AnswerEvent):
        return [{"type": "response.output_text.done", "event_id": eid, "response_id": rs.response_id,
                 "item_id": rs.item_id, "output_index": 0, "content_index": 0, "text": ev.text,
                 "adasr": {"answer": ev.answer, "delay_s": ev.delay_s}}]
    if isinstance(ev, SummaryEvent):
        usage = {"total_tokens": ev.stream_tokens + ev.deep_tokens + ev.answer_tokens + ev.input_tokens,
                 "input_tokens": ev.input_tokens,
                 "output_tokens": ev.stream_tokens + ev.deep_tokens + ev.answer_tokens,
                 "output_token_details": {"stream_tokens": ev.stream_tokens, "deep_tokens": ev.deep_tokens,
                                          "answer_tokens": ev.answer_tokens}}
        text = "".join(rs._text)
        output = [{"id": rs.item_id, "object": "realtime.item", "type": "message", "role": "assistant",
                   "status": "completed", "content": [{"type": "output_text", "text": text}]}]
        return [{"type": "response.done", "event_id": eid,
                 "response": {"id": rs.response_id, "object": "realtime.response", "status": "completed",
                              "output": output, "usage": usage, "adasr": d}}]
    return []


HANDLERS: dict[str, Callable[[RealtimeSession, dict[str, Any]], None]] = {
    "session.update": RealtimeSession._session_update,
    "input_audio_buffer.append": RealtimeSession._append,
    "input_audio_buffer.commit": RealtimeSession._commit,
    "input_audio_buffer.clear": RealtimeSession._clear,
    "conversation.item.create": RealtimeSession._item_create,
    "response.create": RealtimeSession._response_create,
    "response.cancel": RealtimeSession._response_cancel,
}
