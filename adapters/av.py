"""Audio + video of one file as one chunk stream, merged by start time.

Both adapters are driven from a single media-time loop (audio blocks and sampled frames interleaved by their
timestamps), so on a media-timed clock neither modality runs ahead of the other. Speech chunks are only known
once the ASR commits them (a second or two after the words were spoken), so a visual chunk is held back until
the audio stream's *watermark* (the time before which no new speech chunk can start) has passed its start:
the session then reads chunks in start order, the way METHOD.md defines the merged stream.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from adasr_mm.chunks import TimedChunk

from .asr import SR, ASRConfig
from .audio import AudioAdapterConfig, AudioStream
from .video import VideoConfig, VideoStream, describer_from_config, file_frames

#: Longest a visual chunk waits for the ASR: a late speech commit may then arrive after it (out of start order).
MAX_HOLD_S = 4.0


class AVSource:
    """Chunks from a file's soundtrack (streaming ASR) and frames (describer), in start-time order."""

    def __init__(self, path: str | Path, asr_config: ASRConfig | None = None,
                 audio_config: AudioAdapterConfig | None = None, video_config: VideoConfig | None = None):
        from .audio_io import probe_audio
        from .video_io import probe_video

        self.path = str(path)
        self.asr_config = asr_config or ASRConfig()
        self.audio_config = audio_config or AudioAdapterConfig()
        self.video_config = video_config or VideoConfig()
        self.video_info = probe_video(self.path)  # raises InputError: unreadable / no video track
        self.audio_info = probe_audio(self.path)  # raises InputError: no audio track
        durs = [d for d in (self.video_info.duration, self.audio_info.duration) if d]
        dur = max(durs) if durs else None
        limit = self.video_config.max_duration_s or self.audio_config.max_duration_s
        self.duration: float | None = min(dur, limit) if dur and limit else dur
        self.clock: Any = None
        self.audio: AudioStream | None = None
        self.video: VideoStream | None = None

    def bind_clock(self, clock: Any) -> None:
        self.clock = clock

    def prepare(self) -> None:
        """Load the ASR model now (cached), so loading is not counted as streaming latency."""
        from .asr import whisper_for

        whisper_for(self.asr_config)

    def stats(self) -> dict[str, float]:
        out: dict[str, float] = {}
        if self.audio is not None:
            out.update(self.audio.stats.to_dict())
        if self.video is not None:
            out.update(self.video.stats.to_dict())
        return out

    def __iter__(self) -> Iterator[TimedChunk]:
        from .audio_io import iter_audio_blocks

        clock = self.clock
        timed = clock is not None and clock.media_timed
        now = clock.now if timed else None
        vcfg = self.video_config
        self.audio = audio = AudioStream(None, self.asr_config, self.audio_config, source=self.path, now=now)
        describer = describer_from_config(vcfg)
        self.video = video = VideoStream(describer, vcfg, source=self.path, now=now)
        limit = self.duration if self.duration and (vcfg.max_duration_s or self.audio_config.max_duration_s) \
            else math.inf

        def audio_items() -> Iterator[tuple[float, str, Any]]:
            t = 0.0
            for block in iter_audio_blocks(self.path, self.audio_config.block_s, SR):
                t += len(block) / SR
                yield t, "a", block

        def video_items() -> Iterator[tuple[float, str, Any]]:
            frames = file_frames(self.path, vcfg, describer)  # denser than fps when the describer times cuts
            while True:
                t0 = time.perf_counter()
                item = next(frames, None)
                video.stats.decode_s += time.perf_counter() - t0
                if item is None:
                    return
                yield item[0], "v", item[1:]

        held: list[tuple[float, int, TimedChunk]] = []  # visual chunks waiting for the audio watermark
        seq = 0
        last_v = 0.0
        for t, kind, payload in heapq.merge(audio_items(), video_items(), key=lambda x: x[0]):
            if t >= limit:
                break
            if timed:
                clock.wait_until(t)
            if kind == "a":
                speech = list(audio.push(payload, SR))
            else:
                speech = []
                last_v = t
                for c in video.push(payload[0], t, describe=payload[1]):
                    heapq.heappush(held, (c.start, seq, c))
                    seq += 1
            for c in speech:  # audio chunks arrive in start order; visual ones that began earlier go first
                while held and held[0][0] <= c.start:
                    yield heapq.heappop(held)[2]
                yield c
            # a visual chunk waits for speech that may still start before it, but never more than MAX_HOLD_S
            mark = max(audio.watermark, t - MAX_HOLD_S)
            while held and held[0][0] <= mark:
                yield heapq.heappop(held)[2]
        interval = 1.0 / (self.video_info.fps or vcfg.fps)
        for c in video.finish(min(max(self.duration or 0.0, last_v + interval), limit)):
            heapq.heappush(held, (c.start, seq, c))
            seq += 1
        for c in audio.finish():
            while held and held[0][0] <= c.start:
                yield heapq.heappop(held)[2]
            yield c
        while held:
            yield heapq.heappop(held)[2]
