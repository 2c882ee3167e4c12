"""A small client for ``adasr-mm serve``: stream a file (or any PCM16 blocks) and collect the answer.

A thin wrapper over the official ``openai`` SDK's Realtime client (``pip install adasr-mm[serve]``), so the same
code works against any server speaking those event shapes. Sync (:func:`stream_audio`, :func:`stream_file`) and
async (:func:`astream_audio`).

    from adasr_mm.client import stream_file
    result = stream_file("talk.wav", "What is the speaker's main point?", base_url="http://127.0.0.1:8000/v1")
    print(result.answer, result.transcript)
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

RATE = 24000


@dataclass
class RealtimeResult:
    """What one streamed session produced."""

    answer: str = ""
    transcript: list[str] = field(default_factory=list)
    thoughts: list[str] = field(default_factory=list)
    usage: dict[str, Any] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list, repr=False)


def _openai(base_url: str, api_key: str, asynchronous: bool = False) -> Any:
    try:
        import openai
    except ImportError:
        raise ImportError("the adasr-mm client needs the openai SDK: pip install 'adasr-mm[serve]'") from None
    ws = base_url.replace("http://", "ws://").replace("https://", "wss://")
    cls = openai.AsyncOpenAI if asynchronous else openai.OpenAI
    return cls(api_key=api_key, base_url=base_url, websocket_base_url=ws)


def pcm16_blocks(audio: np.ndarray, rate: int = RATE, block_s: float = 0.1) -> Iterable[bytes]:
    """Float audio in [-1, 1] at ``rate`` as little-endian PCM16 blocks of ``block_s``."""
    n = max(1, int(rate * block_s))
    pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2")
    for i in range(0, len(pcm), n):
        yield pcm[i : i + n].tobytes()


def _collect(result: RealtimeResult, ev: dict[str, Any]) -> bool:
    """Record one server event; True when the response is complete."""
    result.events.append(ev)
    kind = ev.get("type", "")
    if kind == "conversation.item.input_audio_transcription.completed":
        result.transcript.append(ev.get("transcript", ""))
    elif kind == "adasr.thought.done":
        result.thoughts.append(ev.get("text", ""))
    elif kind == "response.output_text.done":
        result.answer = (ev.get("adasr") or {}).get("answer") or ev.get("text", "")
    elif kind == "error":
        result.errors.append(ev.get("error", {}))
    elif kind == "response.done":
        result.usage = (ev.get("response") or {}).get("usage") or {}
        return True
    return False


def stream_audio(blocks: Iterable[bytes], question: str, *, rate: int = RATE, block_s: float = 0.1,
                 base_url: str = "http://127.0.0.1:8000/v1", api_key: str = "local", model: str = "adasr-mm",
                 realtime: bool = True, on_event: Callable[[dict[str, Any]], None] | None = None) -> RealtimeResult:
    """Send PCM16 ``blocks`` (``block_s`` each; paced in real time unless ``realtime=False``), then ask for the
    answer; returns everything the server sent."""
    import json
    import threading

    client = _openai(base_url, api_key)
    result = RealtimeResult()
    done = threading.Event()
    with client.realtime.connect(model=model) as conn:
        conn.session.update(session={"type": "realtime", "instructions": question,
                                     "audio": {"input": {"format": {"type": "audio/pcm", "rate": rate}}}})

        def receive() -> None:
            while not done.is_set():
                ev = json.loads(conn.recv_bytes())
                if on_event is not None:
                    on_event(ev)
                if _collect(result, ev):
                    done.set()

        reader = threading.Thread(target=receive, daemon=True)
        reader.start()
        t0 = time.monotonic()
        for i, block in enumerate(blocks):
            if realtime:
                time.sleep(max(0.0, t0 + i * block_s - time.monotonic()))
            conn.input_audio_buffer.append(audio=base64.b64encode(block).decode())
        conn.send({"type": "response.create"})
        done.wait(600)
    return result


def stream_file(path: str, question: str, **kw: Any) -> RealtimeResult:
    """Decode any audio file (PyAV), resample to 24 kHz mono and :func:`stream_audio` it."""
    from .adapters.audio_io import load_audio

    audio = load_audio(path, sr=RATE)
    return stream_audio(pcm16_blocks(audio, RATE, kw.get("block_s", 0.1)), question, rate=RATE, **kw)


async def astream_audio(blocks: Iterable[bytes], question: str, *, rate: int = RATE, block_s: float = 0.1,
                        base_url: str = "http://127.0.0.1:8000/v1", api_key: str = "local", model: str = "adasr-mm",
                        realtime: bool = True) -> RealtimeResult:
    """The async twin of :func:`stream_audio` (``openai.AsyncOpenAI``)."""
    import asyncio
    import json

    client = _openai(base_url, api_key, asynchronous=True)
    result = RealtimeResult()
    async with client.realtime.connect(model=model) as conn:
        await conn.session.update(session={"type": "realtime", "instructions": question,
                                           "audio": {"input": {"format": {"type": "audio/pcm", "rate": rate}}}})

        async def receive() -> None:
            while not _collect(result, json.loads(await conn.recv_bytes())):
                pass

        reader = asyncio.create_task(receive())
        for block in blocks:
            await conn.input_audio_buffer.append(audio=base64.b64encode(block).decode())
            if realtime:
                await asyncio.sleep(block_s)
        await conn.send({"type": "response.create"})
        await asyncio.wait_for(reader, 600)
    return result
