"""Synthetic shape videos with exact ground truth, for tests, demos and training data.

A :class:`Scene` is a list of coloured shapes that appear (and maybe move and disappear) on a plain
background, plus question/answer pairs about it. :func:`render_scene` draws it with numpy and writes an H.264 mp4
with PyAV (no ffmpeg binary), optionally with an AAC soundtrack, so the video adapter can be checked against
what really happened: colours, counts, shapes, order and timing.
"""

from __future__ import annotations

import fractions
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SHAPES = ("circle", "square", "triangle")
#: Pure-ish RGB for each colour name; each sits well inside its named region so that H.264 + yuv420p
#: compression cannot push it into a neighbouring name.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (225, 25, 25),
    "orange": (255, 140, 0),
    "yellow": (250, 220, 0),
    "green": (20, 160, 40),
    "cyan": (0, 200, 220),
    "blue": (30, 70, 230),
    "purple": (140, 40, 200),
    "pink": (255, 100, 190),
    "white": (255, 255, 255),
    "black": (15, 15, 15),
    "grey": (128, 128, 128),
    "brown": (140, 80, 30),
}
SHAPE_COLOURS = ("red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink")


@dataclass
class ShapeEvent:
    """One shape: visible from ``t_appear`` until ``t_disappear`` (None = the end); centre (x, y) in [0, 1] of
    the frame, ``size`` a fraction of the frame height, velocity in frame fractions per second."""

    t_appear: float
    t_disappear: float | None
    shape: str
    color: str
    x: float
    y: float
    size: float
    vx: float = 0.0
    vy: float = 0.0

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"shape must be one of {', '.join(SHAPES)}, got {self.shape!r}")
        if self.color not in PALETTE:
            raise ValueError(f"color must be one of {', '.join(PALETTE)}, got {self.color!r}")
        if self.t_appear < 0 or (self.t_disappear is not None and self.t_disappear <= self.t_appear):
            raise ValueError(f"need 0 <= t_appear < t_disappear, got {self.t_appear}, {self.t_disappear}")
        if not 0 < self.size <= 1:
            raise ValueError(f"size must be in (0, 1], got {self.size}")

    def visible(self, t: float) -> bool:
        return self.t_appear <= t and (self.t_disappear is None or t < self.t_disappear)

    def position(self, t: float) -> tuple[float, float]:
        dt = t - self.t_appear
        return self.x + self.vx * dt, self.y + self.vy * dt

    @property
    def name(self) -> str:
        return f"{self.color} {self.shape}"


@dataclass
class Scene:
    """Shapes on a plain background, with questions whose answers follow from the events."""

    duration: float
    events: list[ShapeEvent]
    background: str = "white"
    qa: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.duration > 0:
            raise ValueError(f"duration must be > 0, got {self.duration}")
        if self.background not in PALETTE:
            raise ValueError(f"background must be one of {', '.join(PALETTE)}, got {self.background!r}")

    def visible(self, t: float) -> list[ShapeEvent]:
        return [e for e in self.events if e.visible(t)]

    def to_dict(self) -> dict[str, Any]:
        return {"duration": self.duration, "background": self.background,
                "events": [asdict(e) for e in self.events], "qa": [list(q) for q in self.qa]}


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def scene_questions(events: list[ShapeEvent]) -> list[tuple[str, str]]:
    """Questions answerable from the order, colours and counts of appearances."""
    order = sorted(events, key=lambda e: e.t_appear)
    if not order:
        return [("How many shapes appeared?", "0")]
    qa: list[tuple[str, str]] = [("How many shapes appeared?", str(len(order)))]
    for name in dict.fromkeys(e.name for e in order):
        qa.append((f"How many {name}s appeared?", str(sum(e.name == name for e in order))))
    for colour in dict.fromkeys(e.color for e in order):
        qa.append((f"How many {colour} shapes appeared?", str(sum(e.color == colour for e in order))))
    for a, b in zip(order, order[1:], strict=False):
        if sum(e.name == a.name for e in order) == 1 and b.t_appear > a.t_appear:
            qa.append((f"What appeared right after the {a.name}?", _article(b.name)))
    qa.append(("What was the first shape to appear?", _article(order[0].name)))
    last = order[-1]
    if len(order) < 2 or order[-2].t_appear < last.t_appear:
        qa.append(("What colour was the last shape to appear?", last.color))
    gone = [e for e in order if e.t_disappear is not None]
    qa.append(("How many shapes disappeared?", str(len(gone))))
    movers = [e for e in order if e.vx or e.vy]
    if len(movers) == 1:
        qa.append(("Which shape moved?", f"the {movers[0].name}"))
    return qa


def random_scene(seed: int, duration: float = 8.0, n_shapes: int | None = None, moving: bool = False,
                 background: str = "white") -> Scene:
    """A reproducible scene: shapes on a 3x3 grid (never overlapping), appearing at distinct times.

    ``moving`` adds one shape that slides along an otherwise empty row (so tracks never cross).
    """
    if not duration >= 2:
        raise ValueError(f"duration must be >= 2 s, got {duration}")
    rng = random.Random(seed)
    cells = [(c, r) for r in range(3) for c in range(3)]
    lane = rng.randrange(3) if moving else None
    if lane is not None:
        cells = [(c, r) for c, r in cells if r != lane]
    # distinct appearance times at least 0.8 s apart, none in the last second
    slots = np.arange(0.5, duration - 1.0, 0.8).round(2).tolist()
    room = min(len(cells), len(slots) - (lane is not None))
    n = n_shapes if n_shapes is not None else rng.randint(min(3, room), min(6, room))
    if not 0 <= n <= room:
        raise ValueError(f"n_shapes must be in [0, {room}] for a {duration:g} s scene, got {n}")
    colours = [c for c in SHAPE_COLOURS if c != background]
    rng.shuffle(cells)
    times = sorted(rng.sample(slots, n + (lane is not None)))
    mover_t = times.pop(rng.randrange(len(times))) if lane is not None else None
    events: list[ShapeEvent] = []
    for i in range(n):
        col, row = cells[i]
        t0 = times[i]
        t1 = None
        if rng.random() < 0.25 and t0 + 2.5 < duration - 0.5:
            t1 = round(rng.uniform(t0 + 1.5, duration - 0.5), 2)
        events.append(ShapeEvent(t0, t1, rng.choice(SHAPES), rng.choice(colours),
                                 x=(col + 0.5) / 3, y=(row + 0.5) / 3, size=rng.choice((0.16, 0.2, 0.24))))
    if lane is not None and mover_t is not None:
        speed = min(0.15, 0.62 / max(duration - mover_t, 1.0))  # slow enough to track, stays inside the frame
        events.append(ShapeEvent(mover_t, None, rng.choice(SHAPES), rng.choice(colours), x=0.18,
                                 y=(lane + 0.5) / 3, size=0.18, vx=round(speed, 3)))
    events.sort(key=lambda e: e.t_appear)
    return Scene(duration=duration, events=events, background=background, qa=scene_questions(events))


def _shape_mask(shape: str, cx: float, cy: float, side: float, h: int, w: int) -> tuple[tuple[slice, slice],
                                                                                       np.ndarray] | None:
    """Pixel mask of one shape inside its bounding box (clipped to the frame), or None if off-screen."""
    r = side / 2
    x0, x1 = int(np.floor(cx - r)), int(np.ceil(cx + r)) + 1
    y0, y1 = int(np.floor(cy - r)), int(np.ceil(cy + r)) + 1
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x0 >= x1 or y0 >= y1:
        return None
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32) + 0.5
    if shape == "circle":
        m = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
    elif shape == "square":
        m = (np.abs(xx - cx) <= r) & (np.abs(yy - cy) <= r)
    else:  # apex-up isosceles triangle filling half its bounding box
        frac = (yy - (cy - r)) / side
        m = (frac >= 0) & (frac <= 1) & (np.abs(xx - cx) <= frac * r)
    return (slice(y0, y1), slice(x0, x1)), m


def draw_frame(scene: Scene, t: float, size: tuple[int, int] = (320, 240)) -> np.ndarray:
    """The scene at time ``t`` as an RGB uint8 (height, width, 3) image; later shapes are drawn on top."""
    w, h = size
    img = np.empty((h, w, 3), np.uint8)
    img[:] = PALETTE[scene.background]
    for e in scene.visible(t):
        x, y = e.position(t)
        got = _shape_mask(e.shape, x * w, y * h, e.size * h, h, w)
        if got is not None:
            sl, m = got
            img[sl][m] = PALETTE[e.color]
    return img


def _audio_frames(audio: np.ndarray, sample_rate: int, frame_size: int) -> list[Any]:
    import av

    x = np.asarray(audio, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"audio must be mono 1-D float samples, got shape {x.shape}")
    out = []
    for i in range(0, len(x), frame_size):
        piece = np.ascontiguousarray(x[i:i + frame_size])[None]
        f = av.AudioFrame.from_ndarray(piece, format="fltp", layout="mono")
        f.sample_rate = sample_rate
        f.pts = i
        f.time_base = fractions.Fraction(1, sample_rate)
        out.append(f)
    return out


def render_scene(scene: Scene, path: str | Path, size: tuple[int, int] = (320, 240), fps: int = 10,
                 audio: np.ndarray | None = None, sample_rate: int = 16000, crf: int = 23) -> Path:
    """Write ``scene`` as an H.264/yuv420p mp4 (plus AAC audio if given); returns the path.

    Frames whose content did not change are not redrawn, so long static scenes render at encoder speed.
    """
    import av

    w, h = size
    if w < 16 or h < 16 or w % 2 or h % 2:
        raise ValueError(f"size must be even and >= 16 in both dimensions (yuv420p), got {size}")
    if not 1 <= fps <= 120:
        raise ValueError(f"fps must be in [1, 120], got {fps}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = max(1, int(round(scene.duration * fps)))
    with av.open(str(path), mode="w") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.options = {"crf": str(crf), "preset": "veryfast"}
        aframes: list[Any] = []
        if audio is not None:
            as_ = out.add_stream("aac", rate=sample_rate, layout="mono")
            aframes = _audio_frames(audio, sample_rate, 1024)
        ai = 0
        last_key: Any = None
        frame: Any = None
        for i in range(n):
            t = i / fps
            vis = scene.visible(t)
            key = tuple((id(e), e.position(t)) for e in vis)
            if key != last_key:
                frame = av.VideoFrame.from_ndarray(draw_frame(scene, t, size), format="rgb24")
                last_key = key
            frame.pts = i
            for p in vs.encode(frame):
                out.mux(p)
            while ai < len(aframes) and aframes[ai].pts / sample_rate <= t + 1.0 / fps:
                for p in as_.encode(aframes[ai]):
                    out.mux(p)
                ai += 1
        for p in vs.encode():
            out.mux(p)
        if aframes:
            for f in aframes[ai:]:
                for p in as_.encode(f):
                    out.mux(p)
            for p in as_.encode():
                out.mux(p)
    return path


# ---------------------------------------------------------------------------------------------------- slides


@dataclass
class Slide:
    """Lines of text shown from ``start`` to ``end`` (s), dark on a light background (a lecture slide)."""

    start: float
    end: float
    lines: list[str]


def draw_slide(lines: list[str], size: tuple[int, int] = (640, 360), text_px: int = 0,
               background: tuple[int, int, int] = (245, 245, 240), ink: tuple[int, int, int] = (20, 20, 60)
               ) -> np.ndarray:
    """One slide as RGB uint8: the lines left-aligned, spread over the frame. ``text_px``: glyph height
    (default: a tenth of the frame height). Uses Pillow's bundled font, so it renders the same everywhere."""
    from PIL import Image, ImageDraw, ImageFont

    w, h = size
    px = text_px or max(10, h // 10)
    font = ImageFont.load_default(size=px)
    img = Image.new("RGB", (w, h), background)
    draw = ImageDraw.Draw(img)
    step = int(px * 1.8)
    y = max(px // 2, (h - step * len(lines)) // 2)
    for line in lines:
        draw.text((w // 12, y), line, font=font, fill=ink)
        y += step
    return np.asarray(img)


def render_slides(slides: list[Slide], path: str | Path, size: tuple[int, int] = (640, 360), fps: int = 10,
                  crf: int = 23) -> Path:
    """An H.264 mp4 of ``slides`` (a blank slide where none is shown), through PyAV; returns the path."""
    import av

    w, h = size
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    duration = max(s.end for s in slides)
    cache: dict[int, Any] = {}
    with av.open(str(path), mode="w") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.options = {"crf": str(crf), "preset": "veryfast"}
        for i in range(int(round(duration * fps))):
            t = i / fps
            k = next((j for j, s in enumerate(slides) if s.start <= t < s.end), -1)
            if k not in cache:
                cache[k] = av.VideoFrame.from_ndarray(draw_slide(slides[k].lines if k >= 0 else [], size),
                                                      format="rgb24")
            frame = cache[k]
            frame.pts = i
            for p in vs.encode(frame):
                out.mux(p)
        for p in vs.encode():
            out.mux(p)
    return path


def write_y4m(frames: list[np.ndarray], path: str | Path, fps: int = 30) -> Path:
    """Frames (RGB uint8, even sizes) as an uncompressed YUV4MPEG2 4:2:0 file, e.g. for Chromium's fake camera
    (``--use-file-for-fake-video-capture``). BT.601 limited range, as Chromium expects."""
    h, w = frames[0].shape[:2]
    if w % 2 or h % 2:
        raise ValueError(f"y4m 4:2:0 needs even sizes, got {w}x{h}")
    path = Path(path)
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for rgb in frames:
            x = rgb.astype(np.float32)
            r, g, b = x[..., 0], x[..., 1], x[..., 2]
            y = 16 + 0.257 * r + 0.504 * g + 0.098 * b
            u = 128 - 0.148 * r - 0.291 * g + 0.439 * b
            v = 128 + 0.439 * r - 0.368 * g - 0.071 * b
            sub = [c.reshape(h // 2, 2, w // 2, 2).mean((1, 3)) for c in (u, v)]
            f.write(b"FRAME\n")
            for plane in (y, *sub):
                f.write(np.clip(np.rint(plane), 0, 255).astype(np.uint8).tobytes())
    return path


__all__ = ["PALETTE", "SHAPES", "Scene", "ShapeEvent", "Slide", "draw_frame", "draw_slide", "random_scene",
           "render_scene", "render_slides", "scene_questions", "write_y4m"]
