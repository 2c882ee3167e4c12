"""Video decoding for the video adapter: any file decord or PyAV can open becomes upright RGB frames at a fixed
sampling rate.

Frames are sampled by real presentation time (the first frame at or after each k/fps), so variable-frame-rate
files are timed right, and only the sampled frames are converted to RGB (and downscaled by the decoder's own
scaler, before the copy), so a 2-hour file costs no more memory than a small batch. decord is tried first (it
seeks between far-apart samples); PyAV decodes what decord cannot open, takes over if decord fails mid-file, and
is the only backend when decord is not installed. ``ADASR_MM_VIDEO_BACKEND=pyav`` (or ``backend="pyav"``) forces
it. Both backends return the same frames: rotation metadata is applied and times start at the container start.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np

from adasr_mm.errors import InputError

log = logging.getLogger(__name__)

BACKENDS = ("auto", "decord", "pyav")
BACKEND_ENV = "ADASR_MM_VIDEO_BACKEND"
_EPS = 1e-4  # seconds: a frame this close before a sample time counts as "at" it (float pts rounding)
_BATCH = 8  # frames per decord get_batch call
_MAX_BAD_IN_A_ROW = 16


@dataclass
class VideoInfo:
    """What :func:`probe_video` found: the first real video track (cover art is not video).

    ``width``/``height`` are display sizes (after rotation); ``rotation`` is the counter-clockwise angle in
    {0, 90, 180, 270} that makes coded frames upright.
    """

    path: str
    duration: float | None
    fps: float | None
    width: int
    height: int
    rotation: int
    has_audio: bool
    codec: str
    start: float = 0.0  # first frame time, relative to the container start (where audio starts too)


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return str(text)[:200]


def _is_cover_art(stream: Any) -> bool:
    try:
        return bool(stream.disposition & av.stream.Disposition.attached_pic)
    except (AttributeError, TypeError):
        return False


def _open(path: str | Path) -> tuple[Any, Any]:
    """Open ``path`` and return (container, first video stream), or raise a specific InputError."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"video file '{path}' does not exist")
    if p.is_dir():
        raise InputError(f"'{path}' is a directory, not a video file")
    if p.stat().st_size == 0:
        raise InputError(f"'{path}' is not a readable video file: the file is empty")
    try:
        container = av.open(str(p), mode="r", metadata_errors="ignore")
    except (av.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise InputError(f"'{path}' is not a readable video file: {_reason(e)}") from e
    video = [s for s in container.streams.video if not _is_cover_art(s)]
    if not video:
        kinds = sorted({s.type for s in container.streams}) or ["no streams"]
        container.close()
        raise InputError(f"'{path}' has no video track (it contains: {', '.join(kinds)})")
    return container, video[0]


def _container_start(container: Any) -> float:
    st = container.start_time
    return st / av.time_base if st is not None and st > 0 else 0.0


def _declared_duration(container: Any, stream: Any) -> float | None:
    durs = []
    if stream.duration is not None and stream.time_base is not None:
        durs.append(float(stream.duration * stream.time_base))
    if container.duration is not None:
        durs.append(container.duration / av.time_base)
    return max(durs) if durs else None


def _rotation_from_tag(stream: Any) -> int:
    """Old-style 'rotate' metadata (clockwise degrees), for files whose frames carry no display matrix."""
    try:
        return -int(float(stream.metadata.get("rotate", 0)))
    except (TypeError, ValueError):
        return 0


def _norm_rotation(deg: float) -> int:
    return int(round(deg / 90.0)) % 4 * 90


def _frames(container: Any, stream: Any, path: str) -> Generator[Any, None, None]:
    """Decoded frames; demux/decode errors after some good frames end the stream with a warning."""
    packets = container.demux(stream)
    good = bad_in_a_row = 0
    last_error = ""
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            break
        except (av.FFmpegError, EOFError) as e:  # the demuxer cannot go on: damaged container
            if good == 0:
                raise InputError(f"'{path}' is not a readable video file: {_reason(e)}") from e
            log.warning("'%s': stopped reading video after %d frames: %s", path, good, _reason(e))
            return
        try:
            decoded = packet.decode()
        except (av.FFmpegError, EOFError) as e:
            bad_in_a_row += 1
            last_error = _reason(e)
            if bad_in_a_row >= _MAX_BAD_IN_A_ROW:
                if good == 0:
                    raise InputError(f"'{path}' is not a readable video file: {last_error}") from e
                log.warning("'%s': stopped after %d frames: %d undecodable packets in a row (%s)",
                            path, good, bad_in_a_row, last_error)
                return
            continue
        bad_in_a_row = 0
        for frame in decoded:
            good += 1
            yield frame
    if good == 0 and last_error:
        raise InputError(f"'{path}' is not a readable video file: {last_error}")


def probe_video(path: str | Path) -> VideoInfo:
    """Describe the first video track, decoding its first frame so that broken or empty files fail here."""
    container, stream = _open(path)
    try:
        first = None
        gen = _frames(container, stream, str(path))
        try:
            first = next(gen, None)
        finally:
            gen.close()
        if first is None:
            raise InputError(f"'{path}' contains no video frames (its video track is empty)")
        rot = getattr(first, "rotation", 0) or _rotation_from_tag(stream)
        rotation = _norm_rotation(rot)
        w, h = first.width, first.height
        if rotation in (90, 270):
            w, h = h, w
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else None
        t0 = _container_start(container)
        start = max(0.0, float(first.time) - t0) if first.time is not None else 0.0
        dur = _declared_duration(container, stream)
        return VideoInfo(path=str(path), duration=dur, fps=fps if fps and math.isfinite(fps) else None,
                         width=int(w), height=int(h), rotation=rotation,
                         has_audio=bool(container.streams.audio), codec=stream.codec_context.name, start=start)
    finally:
        container.close()


def target_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(width, height) scaled so that the longer side is at most ``max_side`` (0 = unchanged); aspect kept."""
    if max_side <= 0 or max(width, height) <= max_side:
        return width, height
    s = max_side / max(width, height)
    return max(1, round(width * s)), max(1, round(height * s))


def _rotate(a: np.ndarray, rotation: int) -> np.ndarray:
    return np.ascontiguousarray(np.rot90(a, k=rotation // 90)) if rotation else a


def _pick(ts: np.ndarray, fps: float) -> np.ndarray:
    """Indices into sorted ``ts`` of the first frame at or after each k/fps (each frame at most once)."""
    if ts.size == 0:
        return np.zeros(0, np.int64)
    samples = np.arange(0, math.floor(float(ts[-1]) * fps + _EPS) + 1) / fps
    idx = np.searchsorted(ts, samples - _EPS, side="left")
    return np.unique(idx[idx < ts.size])


def _choose_backend(backend: str | None) -> str:
    """An explicit decord/pyav wins; otherwise (None or "auto") the environment variable, then auto."""
    name = (backend or "auto").strip().lower()
    where = "argument"
    if name == "auto" and os.environ.get(BACKEND_ENV):
        name, where = os.environ[BACKEND_ENV].strip().lower(), BACKEND_ENV
    if name not in BACKENDS:
        raise ValueError(f"unknown video backend {name!r} (from {where}); expected one of {', '.join(BACKENDS)}")
    if name in ("auto", "decord"):
        try:
            import decord  # noqa: F401
        except Exception as e:  # not installed, or a broken wheel
            if name == "decord":
                raise InputError(f"video backend 'decord' is not available ({e}); use 'pyav'") from e
            return "pyav"
        return "decord"
    return name


def iter_frames(path: str | Path, fps: float = 2.0, max_side: int = 0, backend: str | None = None
                ) -> Iterator[tuple[float, np.ndarray]]:
    """Yield (time_s, RGB uint8 HxWx3 upright frame) sampled at ``fps``, downscaled so max(H, W) <= max_side.

    The file is probed (missing/unreadable/no-video/empty errors raised) at call time; decoding is lazy. A
    truncated or damaged file yields what decodes and stops with a logged warning; InputError if nothing does.
    """
    try:
        fps = float(fps)
    except (TypeError, ValueError):
        fps = math.nan
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    if isinstance(max_side, bool) or not isinstance(max_side, (int, np.integer)) or max_side < 0:
        raise ValueError(f"max_side must be an integer >= 0 (0 = full size), got {max_side!r}")
    info = probe_video(path)
    name = _choose_backend(backend)
    if name == "decord":
        return _decord_frames(info, fps, int(max_side))
    return _pyav_frames(info, fps, int(max_side))


def _decord_frames(info: VideoInfo, fps: float, max_side: int) -> Generator[tuple[float, np.ndarray], None, None]:
    import decord

    w, h = target_size(info.width, info.height, max_side)
    try:
        kw = {"width": w, "height": h} if (w, h) != (info.width, info.height) else {}
        vr = decord.VideoReader(info.path, ctx=decord.cpu(0), **kw)
        n = len(vr)
        ts = vr.get_frame_timestamp(np.arange(n))[:, 0].astype(np.float64) if n else np.zeros(0)
    except Exception as e:  # decord cannot open it: let PyAV try
        log.debug("decord cannot open '%s' (%s); decoding with PyAV", info.path, _reason(e))
        yield from _pyav_frames(info, fps, max_side)
        return
    if n == 0 or not np.isfinite(ts).all():
        del vr
        yield from _pyav_frames(info, fps, max_side)
        return
    order = np.argsort(ts, kind="stable")
    ts = ts[order] - ts[order[0]] + info.start
    picked = _pick(ts, fps)
    last_t = -1.0
    try:
        for b in range(0, len(picked), _BATCH):
            sel = picked[b:b + _BATCH]
            try:
                batch = vr.get_batch(order[sel].tolist()).asnumpy()
            except Exception as e:  # a damaged region: PyAV goes on from here (or stops with a warning)
                log.debug("decord failed in '%s' after %.2f s (%s); continuing with PyAV",
                          info.path, max(last_t, 0.0), _reason(e))
                yield from _pyav_frames(info, fps, max_side, after=last_t)
                return
            if batch.shape[1:3] != (h, w) and batch.shape[1:3] == (w, h):  # decord ignored the rotation
                batch = np.rot90(batch, k=info.rotation // 90, axes=(1, 2))
            for i, j in enumerate(sel):
                last_t = float(ts[j])
                yield last_t, batch[i].copy()  # a copy: a kept frame must not pin its whole batch
    finally:
        del vr


def _pyav_frames(info: VideoInfo, fps: float, max_side: int, after: float = -1.0
                 ) -> Generator[tuple[float, np.ndarray], None, None]:
    """PyAV decoding; ``after``: resume point (seek there and yield only frames later than it)."""
    container, stream = _open(info.path)
    try:
        stream.thread_type = "AUTO"
        t0 = _container_start(container)
        if after > 0:
            try:
                container.seek(int((after + t0) / stream.time_base), stream=stream, backward=True)
            except (av.FFmpegError, OSError):
                pass  # cannot seek: decode from the start, skipping frames up to ``after``
        w, h = target_size(info.width, info.height, max_side)
        cw, ch = (h, w) if info.rotation in (90, 270) else (w, h)  # scale in coded orientation
        scale = (w, h) != (info.width, info.height)
        k_next = 0 if after < 0 else math.floor((after + _EPS) * fps) + 1
        last_t, got = after, 0
        for frame in _frames(container, stream, info.path):
            if frame.time is None:
                continue
            t = max(0.0, float(frame.time) - t0)
            if t <= last_t or t < k_next / fps - _EPS:
                continue
            a = frame.to_ndarray(format="rgb24", width=cw, height=ch) if scale else frame.to_ndarray(format="rgb24")
            yield t, _rotate(a, info.rotation)
            got += 1
            last_t = t
            k_next = math.floor((t + _EPS) * fps) + 1
        if got == 0 and after < 0:
            raise InputError(f"could not decode any video frame from '{info.path}'")
        if info.duration is not None and last_t < info.duration - 2.0 - 0.01 * info.duration:
            log.warning("'%s': decoded video up to %.2f s but the file declares %.2f s; it may be truncated",
                        info.path, last_t, info.duration)
    finally:
        container.close()


__all__ = ["BACKENDS", "BACKEND_ENV", "VideoInfo", "iter_frames", "probe_video", "target_size"]
