"""Video adapter: live frames or files -> time windows -> a describer -> :class:`TimedChunk`s of text.

One object, :class:`VideoStream`, serves a webcam (``push(frame, t)``) and a file (:class:`VideoSource` decodes
the file at ``fps`` and pushes the frames at their media times), so both take the same code path. Frames are
grouped into windows of ``window_s`` aligned to multiples of ``window_s``; a window closes when a frame of a later
window arrives (or at ``finish``), is described, and becomes a chunk unless the describer saw nothing new.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from adasr_mm.chunks import TimedChunk

from .describers import DESCRIBERS, Describer, make_describer


@dataclass
class VideoConfig:
    """How video is sampled, windowed and described."""

    fps: float = field(default=2.0, metadata={"help": "frames sampled per second of video"})
    window_s: float = field(default=1.0, metadata={"help": "seconds of video described together (one chunk)"})
    describer: str = field(default="stats", metadata={"help": "stats (weight-free) or caption (an HF model)"})
    caption_model: str = field(default="", metadata={"help": "HF id or local dir of the describer=caption model"})
    caption_device: str = field(default="cpu", metadata={"help": "device of the caption model (cpu, cuda, auto)"})
    caption_dtype: str = field(default="auto", metadata={"help": "auto, float32, bfloat16 or float16"})
    max_side: int = field(default=320, metadata={"help": "downscale frames so max(H, W) <= this (0 = keep)"})
    keep_frames: bool = field(default=True, metadata={"help": "attach each window's frames to its chunk"})
    max_duration_s: float = field(default=0.0, metadata={"help": "stop reading files after this long (0 = all)"})
    backend: str = field(default="auto", metadata={"help": "file decoder: auto (decord, else PyAV), decord, pyav"})
    cut_fps: float = field(default=10.0, metadata={"help": "frames per second the scene-cut detector sees in files "
                                                   "(0 = only the fps frames)"})
    ocr: str = field(default="auto", metadata={"help": "on-screen text with RapidOCR: auto (if installed), on, off"})
    ocr_every_s: float = field(default=2.0, metadata={"help": "read text at most this often (s of media), and only "
                                                      "when the picture changed"})
    faces: str = field(default="auto", metadata={"help": "faces with OpenCV's Haar cascade: auto, on, off"})

    def __post_init__(self) -> None:
        if not (math.isfinite(self.fps) and 0 < self.fps <= 60):
            raise ValueError(f"fps must be in (0, 60], got {self.fps}")
        if not (math.isfinite(self.window_s) and self.window_s > 0):
            raise ValueError(f"window_s must be > 0, got {self.window_s}")
        if self.window_s * self.fps < 1 - 1e-9:
            raise ValueError(f"window_s={self.window_s} holds no frame at fps={self.fps}; use window_s >= "
                             f"{1 / self.fps:g}")
        if self.describer not in DESCRIBERS:
            raise ValueError(f"unknown describer {self.describer!r}; available: {', '.join(sorted(DESCRIBERS))}")
        if self.describer == "caption" and not self.caption_model:
            raise ValueError("describer=caption needs caption_model (a Hugging Face id or a local directory)")
        if self.max_side != 0 and self.max_side < 16:
            raise ValueError(f"max_side must be 0 (keep) or >= 16, got {self.max_side}")
        if not self.max_duration_s >= 0:
            raise ValueError(f"max_duration_s must be >= 0, got {self.max_duration_s}")
        if self.backend not in ("auto", "decord", "pyav"):
            raise ValueError(f"backend must be auto, decord or pyav, got {self.backend!r}")
        if not (math.isfinite(self.cut_fps) and 0 <= self.cut_fps <= 60):
            raise ValueError(f"cut_fps must be in [0, 60], got {self.cut_fps}")
        if not (math.isfinite(self.ocr_every_s) and self.ocr_every_s >= 0):
            raise ValueError(f"ocr_every_s must be >= 0, got {self.ocr_every_s}")
        for name in ("ocr", "faces"):
            if getattr(self, name) not in ("auto", "on", "off"):
                raise ValueError(f"{name} must be auto, on or off, got {getattr(self, name)!r}")

    @property
    def decode_fps(self) -> float:
        """The file sampling rate: ``fps`` times the smallest integer that reaches ``cut_fps``, so the describer's
        frames are a subset of the decoded ones."""
        return self.fps * max(1, math.ceil(self.cut_fps / self.fps - 1e-9))


def describer_from_config(config: VideoConfig) -> Describer:
    """The describer ``config`` names (a caption model is loaded here, so errors come early)."""
    if config.describer == "caption":
        return make_describer("caption", model=config.caption_model, device=config.caption_device,
                              dtype=config.caption_dtype)
    if config.describer == "stats":
        return make_describer("stats", ocr=config.ocr, faces=config.faces, ocr_every_s=config.ocr_every_s)
    return make_describer(config.describer)


def to_rgb_uint8(frame: Any) -> np.ndarray:
    """A live frame as RGB uint8 H x W x 3: accepts grayscale H x W (or H x W x 1), RGBA (alpha dropped),
    channels-first 3 x H x W, and float images in [0, 1]."""
    a = np.asarray(frame)
    if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[-1] > 4:  # channels first (C x H x W)
        a = np.moveaxis(a, 0, -1)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[-1] not in (1, 3, 4):
        raise ValueError(f"a video frame must be H x W (grayscale), H x W x 3 (RGB) or H x W x 4 (RGBA), got "
                         f"shape {a.shape}")
    if a.shape[0] < 2 or a.shape[1] < 2:
        raise ValueError(f"a video frame must be at least 2x2 pixels, got shape {a.shape}")
    if a.dtype == np.uint8:
        pass
    elif a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif a.dtype.kind == "f":
        if not np.isfinite(a).all():
            raise ValueError("the video frame contains NaN or infinite values")
        lo, hi = float(a.min()), float(a.max())
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise ValueError(f"float frames must be in [0, 1], got values in [{lo:.4g}, {hi:.4g}]; pass uint8 "
                             "for 0..255 images")
        a = np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8)
    elif a.dtype == np.uint16:
        a = (a >> 8).astype(np.uint8)
    else:
        raise ValueError(f"unsupported frame dtype {a.dtype}; use uint8 (0..255) or float (0..1)")
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    elif a.shape[-1] == 4:
        a = a[..., :3]
    return np.ascontiguousarray(a)


def resize_max_side(frame: np.ndarray, max_side: int) -> np.ndarray:
    """Downscale (PIL, antialiased) so that max(H, W) <= max_side; smaller frames are returned as they are."""
    from .video_io import target_size

    h, w = frame.shape[:2]
    tw, th = target_size(w, h, max_side)
    if (tw, th) == (w, h):
        return frame
    from PIL import Image

    return np.asarray(Image.fromarray(frame).resize((tw, th), Image.BILINEAR))


@dataclass
class VideoStreamStats:
    """Work done so far: frames in, windows described, chunks out, and where the time went."""

    frames: int = 0  # frames described (at ``fps``)
    watched: int = 0  # frames only the cut detector saw (the denser ``cut_fps`` frames of files)
    windows: int = 0
    chunks: int = 0
    decode_s: float = 0.0  # decoding / converting / resizing frames
    describe_s: float = 0.0
    media_s: float = 0.0  # media time covered by the windows

    def to_dict(self) -> dict[str, float]:
        compute = self.decode_s + self.describe_s
        return {
            "video_frames": self.frames,
            "video_frames_watched": self.watched,
            "video_windows": self.windows,
            "video_chunks": self.chunks,
            "video_decode_s": self.decode_s,
            "video_describe_s": self.describe_s,
            "video_media_s": self.media_s,
            "video_fps_processed": (self.frames + self.watched) / compute if compute > 0 else 0.0,
            "video_rtf": compute / self.media_s if self.media_s > 0 else 0.0,
        }


class VideoStream:
    """Live frames in (any time stamps, non-decreasing), described windows out.

    ``now``: a callable giving the current stream-clock time for ``meta["available_at"]`` (defaults to the media
    time at which the window was closed, i.e. zero compute time).
    """

    def __init__(self, describer: Describer | None = None, config: VideoConfig | None = None, source: str = "",
                 now: Callable[[], float] | None = None) -> None:
        self.config = config or VideoConfig()
        self.describer = describer if describer is not None else describer_from_config(self.config)
        self.source = source
        self.stats = VideoStreamStats()
        self._now = now
        self._win: int | None = None
        self._frames: list[np.ndarray] = []
        self._times: list[float] = []
        self._last_t = -math.inf
        self._shape: tuple[int, ...] | None = None
        self._n = 0

    def _window_of(self, t: float) -> int:
        return int(math.floor(t / self.config.window_s + 1e-9))

    def push(self, frame: Any, t: float, describe: bool = True) -> Iterator[TimedChunk]:
        """Add the frame shown at media time ``t`` (s); returns the chunks of the windows this completes.
        ``describe=False``: a frame only the describer's ``watch`` (the scene-cut detector) sees, not one of the
        window's frames (files are decoded at ``cut_fps``, denser than ``fps``)."""
        t = float(t)
        if not (math.isfinite(t) and t >= 0):
            raise ValueError(f"frame time must be a finite number >= 0, got {t}")
        if t < self._last_t:
            raise ValueError(f"frame times must not decrease: got {t:.3f} s after {self._last_t:.3f} s")
        t0 = time.perf_counter()
        img = resize_max_side(to_rgb_uint8(frame), self.config.max_side)
        if self._shape is not None and img.shape != self._shape:  # the source changed resolution
            from PIL import Image

            h, w = self._shape[:2]
            img = np.asarray(Image.fromarray(img).resize((w, h), Image.BILINEAR))
        self._shape = img.shape
        self.stats.decode_s += time.perf_counter() - t0
        out: list[TimedChunk] = []
        k = self._window_of(t)
        if self._win is not None and k != self._win:
            out += self._close(end=(self._win + 1) * self.config.window_s, now=t)
        self._win = k
        watch = getattr(self.describer, "watch", None)
        if callable(watch):  # after closing the last window: a cut just before this frame belongs to this one
            t0 = time.perf_counter()
            watch(img, t)
            self.stats.describe_s += time.perf_counter() - t0
        self._last_t = t
        if not describe:
            self.stats.watched += 1
            return iter(out)
        self._frames.append(img)
        self._times.append(t)
        self.stats.frames += 1
        return iter(out)

    def finish(self, end: float | None = None) -> Iterator[TimedChunk]:
        """End of video: describe the last (partial) window. ``end``: media end time if known (a file's
        duration); by default the last frame time plus one frame interval."""
        if self._win is None or not self._frames:
            return iter(())
        w_end = (self._win + 1) * self.config.window_s
        stop = end if end is not None else self._last_t + 1.0 / self.config.fps
        stop = min(w_end, max(stop, self._times[0], self._win * self.config.window_s))
        return iter(self._close(end=stop, now=stop))

    def _close(self, end: float, now: float) -> list[TimedChunk]:
        start = self._win * self.config.window_s if self._win is not None else 0.0
        if not self._frames:  # only watched frames fell into this window
            self._win = None
            return []
        frames = np.stack(self._frames)
        times = self._times
        self._frames, self._times = [], []
        self._win = None
        self.stats.windows += 1
        self.stats.media_s += end - start
        t0 = time.perf_counter()
        text = self.describer.describe(frames, list(times))
        self.stats.describe_s += time.perf_counter() - t0
        if not text:
            return []
        chunk = TimedChunk(start=start, end=max(end, start), text=text, modality="video", source=self.source,
                           index=self._n, frames=frames if self.config.keep_frames else None,
                           frame_times=[round(x, 4) for x in times],
                           meta={"available_at": self._now() if self._now is not None else now})
        extra = getattr(self.describer, "last_stats", None)
        if extra:
            chunk.meta["describer"] = dict(extra)
        self._n += 1
        self.stats.chunks += 1
        return [chunk]


def file_frames(path: str | Path, config: VideoConfig, describer: Any
                ) -> Generator[tuple[float, np.ndarray, bool], None, None]:
    """(time, frame, described?) from a file: at ``decode_fps`` when the describer watches every frame (for
    cuts), else at ``fps``; the first frame at or after each k / fps is a described one."""
    from .video_io import iter_frames

    dense = callable(getattr(describer, "watch", None))
    frames = iter_frames(path, config.decode_fps if dense else config.fps, config.max_side, backend=config.backend)
    next_k = 0
    try:
        for t, frame in frames:
            on_grid = t >= next_k / config.fps - 1e-4
            if on_grid:
                next_k = math.floor((t + 1e-4) * config.fps) + 1
            yield t, frame, on_grid
    finally:
        frames.close()  # type: ignore[attr-defined]


class VideoSource:
    """A video file as a chunk stream: decoded at ``fps`` and pushed through a :class:`VideoStream`.

    The file is probed on construction (missing, unreadable, no video track or no frames raise InputError). With
    a bound media-timed clock (``realtime``/``simulated``) each chunk is released at its window end, so describer
    compute and policy thinking share one timeline.
    """

    def __init__(self, path: str | Path, config: VideoConfig | None = None, describer: Describer | None = None
                 ) -> None:
        from .video_io import probe_video

        self.path = str(path)
        self.config = config or VideoConfig()
        self.info = probe_video(self.path)
        dur = self.info.duration
        if self.config.max_duration_s:
            dur = min(dur, self.config.max_duration_s) if dur is not None else None
        self.duration: float | None = dur
        self.describer = describer if describer is not None else describer_from_config(self.config)
        self.clock: Any = None
        self.stream: VideoStream | None = None

    def bind_clock(self, clock: Any) -> None:
        self.clock = clock

    def stats(self) -> dict[str, float]:
        return self.stream.stats.to_dict() if self.stream is not None else {}

    def _release(self, chunks: Iterator[TimedChunk]) -> Iterator[TimedChunk]:
        clock = self.clock
        for c in chunks:
            if clock is not None and clock.media_timed:
                clock.wait_until(c.end)
                c.meta["available_at"] = clock.now()
            yield c

    def __iter__(self) -> Iterator[TimedChunk]:
        cfg = self.config
        reset = getattr(self.describer, "reset", None)
        if callable(reset):
            reset()  # a second pass starts from a blank state
        timed = self.clock is not None and self.clock.media_timed
        self.stream = stream = VideoStream(self.describer, cfg, source=self.path,
                                           now=self.clock.now if timed else None)
        limit = cfg.max_duration_s or math.inf
        frames = file_frames(self.path, cfg, self.describer)
        last_t = -1.0
        while True:
            t0 = time.perf_counter()
            item = next(frames, None)
            stream.stats.decode_s += time.perf_counter() - t0
            if item is None:
                break
            t, frame, describe = item
            if t >= limit:
                frames.close()
                break
            last_t = t
            yield from self._release(stream.push(frame, t, describe=describe))
        interval = 1.0 / (self.info.fps or cfg.fps)
        end = max(self.duration or 0.0, min(last_t + interval, limit))
        if cfg.max_duration_s:
            end = min(end, cfg.max_duration_s)
        self.duration = max(self.duration or 0.0, end)
        yield from self._release(stream.finish(end))


__all__ = ["VideoConfig", "VideoSource", "VideoStream", "VideoStreamStats",
           "describer_from_config", "file_frames", "resize_max_side", "to_rgb_uint8"]
