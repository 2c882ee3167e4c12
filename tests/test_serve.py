"""`adasr-mm serve` end to end: a real uvicorn server on 127.0.0.1 with the real SmolLM2 and Whisper tiny.en,
driven by the official `openai` SDK's Realtime client (no stubs on either side).

The server batches its sessions' model calls (``serve.batching``, the default) and runs the policy in float32, so
each connection's output can be checked token for token against a batch-1 replay of what it read."""

from __future__ import annotations

import base64
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

openai = pytest.importorskip("openai", reason="the serve tests need the openai SDK (pip install adasr-mm[serve])")

ROOT = Path(__file__).resolve().parents[1]
KIT = ROOT.parent / "shared" / "media" / "dev"
SPEECH = KIT / "librispeech_2412-153948-0000.flac"
CAPS = ["policy.max_thought_tokens=8", "policy.max_deep_tokens=16", "policy.max_answer_tokens=8"]
KEY = "test-key-123"


@pytest.fixture(scope="module")
def server():
    from apps.config import load_serve_settings
    from apps.serve import RealtimeServer, serve

    settings = load_serve_settings(None, [*CAPS, "serve.port=0", f"serve.api_key={KEY}", "serve.max_sessions=3",
                                          "serve.max_message_bytes=200000", "policy.dtype=float32",
                                          "asr.cadence=fixed"])  # transcripts must not follow the machine's load
    srv = RealtimeServer(settings, settings.serve)
    uv, thread, url = serve(settings, settings.serve, server=srv, block=False)
    yield srv, url
    uv.should_exit = True
    thread.join(10)


def _client(url: str, key: str = KEY):
    return openai.OpenAI(api_key=key, base_url=f"{url}/v1", websocket_base_url=f"{url.replace('http', 'ws')}/v1")


def _until(conn, kinds: set[str], timeout: float = 120.0) -> list[dict]:
    """Receive events until one of ``kinds`` arrives (the timeout only bounds a hang)."""
    got, end = [], time.monotonic() + timeout
    while time.monotonic() < end:
        ev = json.loads(conn.recv_bytes())
        got.append(ev)
        if ev["type"] in kinds:
            return got
    raise AssertionError(f"no {kinds} within {timeout} s; got {[e['type'] for e in got]}")


def _batch1_replay(policy, question: str, events: list[dict]) -> dict[str, list[str]]:
    """Run what one connection read through a batch-1 session: the same chunk groups and thought lengths (the
    live deadlines and cuts only decide those), the rest with the end marker; greedy, so the texts must match."""
    from adasr_mm.chunks import TimedChunk
    from adasr_mm.session import Session, SessionConfig

    chunks = [TimedChunk.from_dict(e["chunk"]) for e in events if e["type"] == "adasr.chunk"]
    s = Session(policy, question, SessionConfig(max_lag_s=4.0))
    out: dict[str, list[str]] = {"thoughts": [], "deep": [], "answer": []}
    last = -1
    for r in (e for e in events if e["type"] in ("adasr.thought.done", "adasr.skip")):
        group = chunks[r["index"] - r["group"] + 1: r["index"] + 1]
        forced = r.get("forced", False)  # the lag guard's skip: replayed with a lag over the budget
        cap = r["tokens"] + r["tool_tokens"]  # a thought's cap counts the calculator's tokens too
        for ev in s.push_group(group, [-100.0] * len(group) if forced else None, cap=cap):
            if ev.type in ("thought", "skip"):
                out["thoughts"].append(ev.text)
        last = r["index"]
    for ev in s.finish_iter(pending=chunks[last + 1:]):
        if ev.type in ("deep", "answer"):
            out[ev.type].append(ev.text)
    return out


def _served(events: list[dict]) -> dict[str, list[str]]:
    return {"thoughts": [e["text"] for e in events if e["type"] in ("adasr.thought.done", "adasr.skip")],
            "deep": [e["text"] for e in events if e["type"] == "adasr.deep.done"],
            "answer": [e["text"] for e in events if e["type"] == "response.output_text.done"]}


def _speech_24k() -> np.ndarray:
    from adasr_mm.adapters.audio_io import load_audio

    if SPEECH.exists():
        return load_audio(SPEECH, sr=24000)
    return load_audio(ROOT / "samples" / "audio" / "apples.opus", sr=24000)[: 12 * 24000]


def test_a_real_recording_streamed_at_real_time_with_a_concurrent_text_session(server):
    from adasr_mm.client import pcm16_blocks

    srv, url = server
    audio = _speech_24k()
    other: dict = {"sent": []}
    audio_ended = threading.Event()

    def text_session():  # a second connection at the same time, streaming text chunks while the audio plays
        with _client(url).realtime.connect(model="adasr-mm") as conn:
            _until(conn, {"session.created"})
            conn.session.update(session={"type": "realtime", "instructions": "How many cats are there?"})
            _until(conn, {"session.updated"})
            i = 0  # keep both sessions busy for the whole recording, then end together (so their calls overlap)
            while not audio_ended.is_set() and i < 60:
                s = "There are 3 cats." if i == 0 else f"Then {i % 5 + 1} more cats arrive."
                conn.send({"type": "conversation.item.create", "item": {"type": "message", "role": "user", "content": [
                    {"type": "input_text", "text": s, "adasr": {"start": i * 0.5, "end": (i + 1) * 0.5}}]}})
                other["sent"].append(s)
                i += 1
                time.sleep(0.5)
            audio_ended.wait(300)
            conn.send({"type": "response.create"})
            other["events"] = _until(conn, {"response.done"}, 300)

    t = threading.Thread(target=text_session)
    t.start()
    with _client(url).realtime.connect(model="adasr-mm") as conn:
        assert _until(conn, {"session.created"})[-1]["session"]["type"] == "realtime"
        conn.session.update(session={"type": "realtime", "instructions": "What is the speaker describing?",
                                     "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000}}}})
        assert _until(conn, {"session.updated"})[-1]["session"]["audio"]["input"]["format"]["rate"] == 24000
        events: list[dict] = []
        reader = threading.Thread(target=lambda: events.extend(_until(conn, {"response.done"}, 300)))
        reader.start()
        t0 = time.monotonic()
        for i, block in enumerate(pcm16_blocks(audio, 24000, 0.1)):  # real-time pace
            time.sleep(max(0.0, t0 + i * 0.1 - time.monotonic()))
            conn.input_audio_buffer.append(audio=base64.b64encode(block).decode())
        audio_ended.set()
        conn.send({"type": "response.create"})
        reader.join(300)
    t.join(300)
    kinds = [e["type"] for e in events]
    for k in ("conversation.item.input_audio_transcription.delta",
              "conversation.item.input_audio_transcription.completed", "input_audio_buffer.speech_started",
              "adasr.chunk", "response.created", "response.output_text.delta", "response.output_text.done",
              "response.done"):
        assert k in kinds, k
    assert "adasr.thought.done" in kinds or "adasr.skip" in kinds or "adasr.deep.done" in kinds
    transcript = " ".join(e["transcript"] for e in events
                          if e["type"] == "conversation.item.input_audio_transcription.completed").lower()
    assert len(transcript.split()) >= 8  # real speech was heard (not a stock phrase)
    done = events[-1]["response"]
    assert done["status"] == "completed" and done["usage"]["output_token_details"]["deep_tokens"] >= 1
    # the text session got only its own events: its chunks, no transcription of the other's audio
    theirs = other["events"]
    assert theirs[-1]["type"] == "response.done"
    texts = [e["chunk"]["text"] for e in theirs if e["type"] == "adasr.chunk"]
    assert texts == other["sent"] and len(texts) >= 4
    assert not [e for e in theirs if e["type"].startswith("conversation.item.input_audio_transcription")]
    assert all(e["chunk"]["modality"] == "audio" for e in events if e["type"] == "adasr.chunk")
    # no cross-talk inside the shared batch either: each connection wrote exactly what it writes alone
    import httpx

    health = httpx.get(f"{url}/health").json()
    assert health["batching"] and health["scheduler"]["max_rows"] >= 2  # precondition: calls were shared
    policy = srv.agent.policy
    assert _served(events) == _batch1_replay(policy, "What is the speaker describing?", events)
    assert _served(theirs) == _batch1_replay(policy, "How many cats are there?", theirs)


def _error_after(conn, send) -> dict:
    send()
    ev = _until(conn, {"error"}, 30)[-1]["error"]
    assert ev["message"] and ev["code"] and ev["type"]
    return ev


def test_bad_input_gets_error_events_and_the_connection_survives(server):
    _, url = server
    with _client(url).realtime.connect(model="adasr-mm") as conn:
        _until(conn, {"session.created"})
        raw = conn.send_raw
        assert _error_after(conn, lambda: raw("this is not json"))["code"] == "invalid_json"
        assert _error_after(conn, lambda: raw(json.dumps({"type": "nope.nothing"})))["code"] == "unknown_event_type"
        # media before the question
        ev = _error_after(conn, lambda: conn.input_audio_buffer.append(audio=base64.b64encode(b"\0\0" * 100).decode()))
        assert ev["code"] == "session_not_configured"
        bad_rate = {"type": "realtime", "audio": {"input": {"format": {"type": "audio/pcm", "rate": 44100}}}}
        assert _error_after(conn, lambda: conn.session.update(session=bad_rate))["code"] == "invalid_sample_rate"
        ulaw_16k = {"type": "realtime", "audio": {"input": {"format": {"type": "audio/pcmu", "rate": 16000}}}}
        assert _error_after(conn, lambda: conn.session.update(session=ulaw_16k))["code"] == "invalid_sample_rate"
        opus = {"type": "realtime", "audio": {"input": {"format": {"type": "audio/opus"}}}}
        assert _error_after(conn, lambda: conn.session.update(session=opus))["code"] == "invalid_audio_format"
        long_prompt = {"type": "realtime", "audio": {"input": {"transcription": {"prompt": "x" * 301}}}}
        assert _error_after(conn, lambda: conn.session.update(session=long_prompt))["code"] == "invalid_value"
        for language, message in (("de", "this Whisper model is English-only"), (7, "must be a string")):
            update = {"type": "realtime", "audio": {"input": {"transcription": {"language": language}}}}
            ev = _error_after(conn, lambda u=update: conn.session.update(session=u))
            assert ev["code"] == "invalid_value" and message in ev["message"], ev
        for shape in ("loud", {"input": 3}, {"input": {"format": "pcm"}}):  # not objects where objects belong
            ev = _error_after(conn, lambda s=shape: raw(json.dumps({"type": "session.update", "session": {"audio": s}})))
            assert ev["code"] == "invalid_value" and "must be an object" in ev["message"]
        conn.session.update(session={"type": "realtime", "instructions": "What was said?"})
        _until(conn, {"session.updated"})
        ev = _error_after(conn, lambda: raw(json.dumps({"type": "input_audio_buffer.append", "audio": "%%%not-b64",
                                                        "event_id": "evt_1"})))
        assert ev["code"] == "invalid_audio" and ev["event_id"] == "evt_1"
        odd = base64.b64encode(b"\0" * 3).decode()
        assert _error_after(conn, lambda: conn.input_audio_buffer.append(audio=odd))["code"] == "invalid_audio"
        big = base64.b64encode(b"\0" * 300_000).decode()
        assert _error_after(conn, lambda: conn.input_audio_buffer.append(audio=big))["code"] == "message_too_large"
        # still alive: a valid stream still gets an answer
        conn.send({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
                   "content": [{"type": "input_text", "text": "The sky was blue all day."}]}})
        conn.send({"type": "response.create"})
        assert _until(conn, {"response.done"}, 300)[-1]["response"]["status"] == "completed"


@pytest.mark.parametrize("kind, subtype", [("audio/pcmu", "ULAW"), ("audio/pcma", "ALAW")])
def test_telephone_audio_in_g711_is_transcribed(server, kind, subtype):
    """A phone line's 8 kHz G.711 (what telephony bridges send), encoded by libsndfile, not by this project."""
    import io

    import soundfile as sf

    from adasr_mm.adapters.audio_io import load_audio

    _, url = server
    audio = load_audio(SPEECH, sr=8000) if SPEECH.exists() else load_audio(
        ROOT / "samples" / "audio" / "apples.opus", sr=8000)[: 12 * 8000]
    buf = io.BytesIO()
    sf.write(buf, audio, 8000, format="RAW", subtype=subtype)
    data = buf.getvalue()
    assert len(data) == len(audio)  # one byte per sample: G.711, not PCM16
    with _client(url).realtime.connect(model="adasr-mm") as conn:
        _until(conn, {"session.created"})
        conn.session.update(session={"type": "realtime", "instructions": "What is the speaker describing?",
                                     "audio": {"input": {"format": {"type": kind},
                                                         "transcription": {"prompt": "antecedents",
                                                                           "language": " EN"}}}})
        updated = _until(conn, {"session.updated"})[-1]["session"]["audio"]["input"]
        assert updated["format"] == {"type": kind}
        assert updated["transcription"]["prompt"] == "antecedents" and updated["transcription"]["language"] == "en"
        for i in range(0, len(data), 1600):  # 0.2 s per append, as fast as the socket takes them
            conn.input_audio_buffer.append(audio=base64.b64encode(data[i: i + 1600]).decode())
        conn.send({"type": "response.create"})
        events = _until(conn, {"response.done"}, 300)
    assert not [e for e in events if e["type"] == "error"]
    transcript = " ".join(e["transcript"] for e in events
                          if e["type"] == "conversation.item.input_audio_transcription.completed").lower()
    # "antecedents" read as "antecedence" over the phone line without the transcription prompt (hotwords)
    expected = "reader excuse antecedents native country narrative" if SPEECH.exists() else "apple"
    assert all(w in transcript for w in expected.split()), transcript


def test_api_key_is_checked_at_connect_and_models_and_health_answer(server):
    import httpx

    _, url = server
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    with pytest.raises(Exception):  # noqa: B017 - the SDK raises its websockets handshake error
        with _client(url, "wrong-key").realtime.connect(model="adasr-mm") as conn:
            conn.recv_bytes()
    ws_url = f"{url.replace('http', 'ws')}/v1/realtime?model=adasr-mm"
    with pytest.raises(InvalidStatus) as denied:  # no Authorization header at all: 401 with the API's error
        connect(ws_url).recv(5)
    assert denied.value.response.status_code == 401
    assert json.loads(denied.value.response.body)["error"]["code"] == "invalid_api_key"
    with connect(ws_url, additional_headers={"Authorization": f"Bearer {KEY}"}) as ok:
        assert json.loads(ok.recv(30))["type"] == "session.created"
    assert httpx.get(f"{url}/health").json()["status"] == "ok"
    assert httpx.get(f"{url}/v1/models").status_code == 401
    models = _client(url).models.list()
    assert [m.id for m in models.data] and models.data[0].owned_by == "adasr-mm"


def test_a_client_that_goes_away_mid_stream_leaves_the_shared_batch(server):
    srv, url = server
    with _client(url).realtime.connect(model="adasr-mm") as conn:
        _until(conn, {"session.created"})
        conn.session.update(session={"type": "realtime", "instructions": "How many cats are there?"})
        _until(conn, {"session.updated"})
        conn.send({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
                   "content": [{"type": "input_text", "text": "There are 3 cats."}]}})
        _until(conn, {"adasr.chunk"})  # read: the session holds a row of the batched cache
        (rs,) = [r for r in srv.sessions if r.instructions == "How many cats are there?"]
    rs.worker.join(120)  # the connection closed: the server cancels the session, its worker ends
    srv.batcher.sync()
    assert srv.batcher.sessions == 0


def test_batching_can_be_turned_off(server):
    from apps.config import load_serve_settings
    from apps.serve import RealtimeServer

    srv, _ = server
    assert srv.batcher is not None  # on by default
    settings = load_serve_settings(None, ["serve.batching=false"])
    off = RealtimeServer(settings, settings.serve, agent=srv.agent, asr_model=srv.asr_model)
    assert off.batcher is None


def test_non_loopback_without_a_key_is_refused():
    from adasr_mm.errors import ConfigError
    from apps.config import load_serve_settings
    from apps.serve import RealtimeServer

    settings = load_serve_settings(None, ["serve.host=0.0.0.0"])
    with pytest.raises(ConfigError, match="api-key"):
        RealtimeServer(settings, settings.serve, agent=object(), asr_model=object())
