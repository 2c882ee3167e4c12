"""Live media (microphone blocks, webcam frames, network clients) as a chunk source for the pipeline.

Handlers call :meth:`LiveSource.push_audio` / :meth:`push_frame` from any thread as media arrives (each push is
stamped with the clock's time) and :meth:`stop` at the end; the pipeline's producer thread iterates the source,
which runs the same :class:`AudioStream` / :class:`VideoStream` adapters as files do. A push never waits for ASR,
the describer or the policy.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

from adasr_mm.chunks import TimedChunk
from adasr_mm.errors import InputError


class LiveSource:
    """Pushed audio and frames in, timed chunks out (``live = True``: the pipeline schedules it by time)."""

    live = True

    def __init__(self, asr_model: Any = None, asr_config: Any = None, audio_config: Any = None,
                 video_config: Any = None, max_stream_s: float = 0.0, names: tuple[str, str] = ("microphone", "webcam"),
                 origin: str = "the client"):
        self.asr_model, self.asr_config, self.audio_config, self.video_config = (
            asr_model, asr_config, audio_config, video_config)
        self.max_stream_s = max_stream_s
        self.names = names
        self.origin = origin  # named in errors about malformed media
        self.duration: float | None = None
        self.clock: Any = None
        self.audio: Any = None
        self.video: Any = None
        self.media: set[str] = set()
        self.ended = False  # no more media accepted
        self.t_stop: float | None = None
        self.notice: str | None = None
        self._inbox: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self._lock = threading.Lock()

    def bind_clock(self, clock: Any) -> None:
        self.clock = clock

    def _now(self) -> float:
        return self.clock.now() if self.clock is not None else 0.0

    # handler side ---------------------------------------------------------------------------------------------
    def push_audio(self, sample_rate: int, samples: Any) -> bool:
        """Queue a block of audio (any rate, channels, dtype); False once the stream has ended."""
        return self._put("audio", sample_rate, samples)

    def push_frame(self, frame: Any, t: float | None = None) -> bool:
        """Queue an RGB frame taken at clock time ``t`` (default: now); False once the stream has ended."""
        return self._put("frame", frame, t)

    def push_text(self, text: str, start: float | None = None, end: float | None = None) -> bool:
        """Queue a text chunk (e.g. typed or sent by a client) spanning ``[start, end]`` (default: now)."""
        return self._put("text", text, start, end)

    def _put(self, kind: str, *payload: Any) -> bool:
        with self._lock:  # stamp and enqueue atomically: frame times must not decrease
            if self.ended:
                return False
            self._inbox.put((kind, self._now(), *payload))
            return True

    def stop(self, notice: str | None = None) -> None:
        """End of the stream: the adapters flush what they hold, then the pipeline answers."""
        with self._lock:
            if self.ended:
                return
            self.ended = True
            self.notice = notice or self.notice
            self.t_stop = self._now()
            self.duration = self.t_stop
            self._inbox.put(("end", self.t_stop))

    def cancel(self) -> None:
        with self._lock:
            self.ended = True
        self._inbox.put(("cancel", 0.0))

    # producer side --------------------------------------------------------------------------------------------
    def _stream(self, kind: str) -> Any:
        if kind == "audio" and self.audio is None:
            from .audio import AudioStream

            self.audio = AudioStream(self.asr_model, self.asr_config, self.audio_config, source=self.names[0],
                                     now=self._now)
        if kind == "frame" and self.video is None:
            from .video import VideoStream, describer_from_config

            self.video = VideoStream(describer_from_config(self.video_config), self.video_config,
                                     source=self.names[1], now=self._now)
        return self.audio if kind == "audio" else self.video

    def _feed(self, kind: str, t: float, payload: list[Any]) -> list[TimedChunk]:
        self.media.add(kind)
        if kind == "text":
            text, start, end = payload
            if not isinstance(text, str) or not text.strip():
                raise InputError(f"bad text data from {self.origin}: a text chunk must be a non-empty string")
            end = t if end is None else float(end)
            return [TimedChunk(min(end, t if start is None else float(start)), end, text.strip(), source="text",
                               meta={"available_at": t})]
        stream = self._stream(kind)
        try:
            if kind == "audio":
                return list(stream.push(payload[1], payload[0]))
            return list(stream.push(payload[0], t if payload[1] is None else payload[1]))
        except ValueError as e:  # malformed samples or frames from a client
            raise InputError(f"bad {kind} data from {self.origin}: {e}") from None

    def __iter__(self) -> Iterator[TimedChunk]:
        n = 0
        while True:
            kind, t, *payload = self._inbox.get()
            if kind == "cancel":
                return
            if kind == "end":
                break
            for c in self._feed(kind, t, payload):
                n += 1
                yield c
            received = max(t, self.audio.time if self.audio is not None else 0.0)
            if self.max_stream_s and received >= self.max_stream_s:
                self.stop(f"Stream limit reached: live streams stop after {self.max_stream_s:g} s "
                          "(max_stream_s); answering on what was received.")
        tail: list[TimedChunk] = []
        if self.audio is not None:
            tail += list(self.audio.finish())
        if self.video is not None:
            tail += list(self.video.finish())
        for c in sorted(tail, key=lambda c: c.start):
            n += 1
            yield c
        if n == 0:
            raise InputError(self._empty_message())

    def _empty_message(self) -> str:
        if not self.media:
            return ("Empty recording: nothing to answer. No audio or video reached the server; allow the "
                    "microphone/camera and record again.")
        what = " and ".join(sorted(self.media))
        return (f"Empty recording: nothing to answer. No speech or visual content was detected in the {what} "
                "received; speak (or show the camera) and try again.")

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for s in (self.audio, self.video):
            if s is not None:
                out.update(s.stats.to_dict())
        return out
