"""Describers turn one time window of video frames into the text the streaming policy reads.

The policy only reads text, so a describer is where video becomes language. ``stats`` (the default) says only
what it measured and is fast enough for live video on 2 CPU cores: scene cuts, motion (how much, where),
brightness and dominant colours on any footage; colour shapes (named colour, coarse shape, 3x3 position, tracked
across windows: appeared, disappeared, moved) only while the picture is synthetic-like (flat colour regions with
hard edges), since on camera footage blob "shapes" are noise; faces and on-screen text when the ``[ocr]`` extra is
installed (:mod:`.faces`, :mod:`.ocr`). It returns "" (no chunk) when nothing changed. ``caption`` plugs in any
Hugging Face captioner or vision-language model by id or local directory. Register more with
:func:`register_describer`. See docs/video.md.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Protocol, runtime_checkable

import numpy as np

from adasr_mm.errors import ModelLoadError

from .faces import FaceDetector, FaceTracker, faces_available, faces_sentence
from .ocr import TextTracker, ocr_available, text_sentence
from .scene import (
    CutDetector,
    MotionLevel,
    and_list,
    dominant_colours,
    flatness,
    grid_energy,
    light_word,
    luma,
    thumb,
    where_phrase,
)


@runtime_checkable
class Describer(Protocol):
    """``describe`` gets the frames (N x H x W x 3 RGB uint8) of one window and their times; it may keep state
    across calls (windows arrive in order). Returning "" means "nothing new": no chunk is emitted."""

    def describe(self, frames: np.ndarray, timestamps: list[float]) -> str: ...


def _as_window(frames: np.ndarray) -> np.ndarray:
    """One window as N x H x W x 3 (a single H x W x 3 frame is a window of one)."""
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"frames must be N x H x W x 3, got shape {frames.shape}")
    return frames


DESCRIBERS: dict[str, Callable[..., Describer]] = {}


def register_describer(name: str) -> Callable[[Callable[..., Describer]], Callable[..., Describer]]:
    """Decorator: a class or factory ``(**kwargs) -> Describer`` becomes available as ``name``."""

    def deco(factory: Callable[..., Describer]) -> Callable[..., Describer]:
        DESCRIBERS[name] = factory
        return factory

    return deco


def make_describer(name: str, **kwargs: Any) -> Describer:
    """A new describer by registered name (unknown names list the available ones)."""
    if name not in DESCRIBERS:
        raise ValueError(f"unknown describer {name!r}; available: {', '.join(sorted(DESCRIBERS))}")
    return DESCRIBERS[name](**kwargs)


# ---------------------------------------------------------------------------------------------------- colours

COLOURS = ("red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink", "white", "black", "grey",
           "brown")
_C = {name: i for i, name in enumerate(COLOURS)}


def name_colours(rgb: np.ndarray) -> np.ndarray:
    """Colour-name index (into COLOURS) of each RGB value, by hue/saturation/value rules (any leading shape)."""
    x = np.asarray(rgb, dtype=np.float32) / 255.0
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    mx, mn = x.max(-1), x.min(-1)
    c = mx - mn
    safe = np.where(c > 0, c, 1.0)
    h = np.where(mx == r, ((g - b) / safe) % 6, np.where(mx == g, (b - r) / safe + 2, (r - g) / safe + 4)) * 60
    s = np.where(mx > 0, c / np.maximum(mx, 1e-6), 0)
    v = mx
    out = np.full(r.shape, _C["grey"], np.int8)
    hue = np.select(
        [(h < 15) | (h >= 340), h < 42, h < 70, h < 165, h < 200, h < 255, h < 290],
        [_C["red"], _C["orange"], _C["yellow"], _C["green"], _C["cyan"], _C["blue"], _C["purple"]],
        _C["pink"],
    ).astype(np.int8)
    hue = np.where((hue == _C["pink"]) & (v < 0.7), _C["purple"], hue)
    hue = np.where((hue == _C["red"]) & (s < 0.55) & (v > 0.75), _C["pink"], hue)
    hue = np.where((hue == _C["orange"]) & ((v < 0.62) | (s < 0.45)), _C["brown"], hue)
    hue = np.where((hue == _C["red"]) & (v < 0.45) & (s < 0.8), _C["brown"], hue)
    chromatic = (c >= 0.16) & (s >= 0.25)
    out = np.where(chromatic, hue, out)
    grey = ~chromatic
    out = np.where(grey & (v >= 0.8), _C["white"], out)
    out = np.where(grey & (v < 0.8) & (v >= 0.22), _C["grey"], out)
    out = np.where(v < 0.22, _C["black"], out)
    return out.astype(np.int8)


def _build_lut() -> np.ndarray:
    q = np.arange(32, dtype=np.float32) * 8 + 4  # centre of each 5-bit bin
    grid = np.stack(np.meshgrid(q, q, q, indexing="ij"), -1).reshape(-1, 3)
    return name_colours(grid)


_LUT = _build_lut()  # 32768 entries: (r>>3, g>>3, b>>3) -> colour index


def colour_labels(frame: np.ndarray) -> np.ndarray:
    """Per-pixel colour-name index of an RGB uint8 image (a table lookup: ~1 ms for 320x240)."""
    f = frame.astype(np.uint16)
    return _LUT[((f[..., 0] >> 3) << 10) | ((f[..., 1] >> 3) << 5) | (f[..., 2] >> 3)]


# ---------------------------------------------------------------------------------------------------- blobs


@dataclass
class Blob:
    """A solid region of one colour; geometry in fractions of the frame (x, y = centre)."""

    colour: str
    shape: str
    x: float
    y: float
    w: float
    h: float
    area: float

    @property
    def kind(self) -> str:
        return f"{self.colour} {self.shape}"


def _runs(lab: np.ndarray, ignore: int) -> tuple[np.ndarray, ...]:
    """Horizontal runs of equal labels: (row, start, end, label), skipping label ``ignore``."""
    h, w = lab.shape
    change = np.ones((h, w), bool)
    change[:, 1:] = lab[:, 1:] != lab[:, :-1]
    rows, starts = np.nonzero(change)
    ends = np.empty_like(starts)
    ends[:-1] = np.where(rows[1:] == rows[:-1], starts[1:], w)
    if len(ends):
        ends[-1] = w
    vals = lab[rows, starts]
    keep = vals != ignore
    return rows[keep], starts[keep], ends[keep], vals[keep]


def _components(rows: np.ndarray, starts: np.ndarray, ends: np.ndarray, vals: np.ndarray) -> np.ndarray:
    """Union-find over runs: runs in adjacent rows with the same label and overlapping columns join
    (4-connectivity). Returns a component id per run."""
    n = len(rows)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    bounds = np.searchsorted(rows, np.arange(int(rows[-1]) + 3)).tolist() if n else [0]
    s_l, e_l, v_l = starts.tolist(), ends.tolist(), vals.tolist()
    for r in range(len(bounds) - 2):  # sweep each pair of adjacent rows; runs are sorted by start
        i, i_end, j, j_end = bounds[r], bounds[r + 1], bounds[r + 1], bounds[r + 2]
        while i < i_end and j < j_end:
            if e_l[i] > s_l[j] and e_l[j] > s_l[i] and v_l[i] == v_l[j]:
                a, b = find(i), find(j)
                if a != b:
                    parent[b] = a
            if e_l[i] <= e_l[j]:
                i += 1
            else:
                j += 1
    return np.array([find(i) for i in range(n)], np.int64)


def classify_shape(fill: float, aspect: float, widest_row: float, widest_col: float) -> str:
    """Coarse shape from how much of its bounding box a blob fills and where it is widest (0..1 positions)."""
    square_ish = 0.75 <= aspect <= 1.33
    if fill >= 0.88:
        return "square" if square_ish else "rectangle"
    if fill >= 0.68:
        return "circle" if square_ish else "oval"
    at_edge = min(widest_row, 1 - widest_row) < 0.25 or min(widest_col, 1 - widest_col) < 0.25
    if 0.35 <= fill < 0.68 and at_edge:
        return "triangle"
    return "shape"


def find_blobs(frame: np.ndarray, background: int, min_area: float = 0.002, max_runs: int = 8000,
               max_blobs: int = 12, labels: np.ndarray | None = None) -> list[Blob]:
    """Solid single-colour regions that are not the background colour, largest first.

    Pixels unlike any of their 4 neighbours are dropped first, which removes the thin halo of in-between
    colours that compression leaves around edges (red on white gives a pink rim).
    """
    lab = colour_labels(frame) if labels is None else labels  # ``labels``: the caller's colour_labels(frame)
    h, w = lab.shape
    solid = np.full_like(lab, -1)
    core = lab[1:-1, 1:-1]
    ok = (core == lab[:-2, 1:-1]) & (core == lab[2:, 1:-1]) & (core == lab[1:-1, :-2]) & (core == lab[1:-1, 2:])
    solid[1:-1, 1:-1] = np.where(ok & (core != background), core, -1)
    rows, starts, ends, vals = _runs(solid, -1)
    if len(rows) == 0 or len(rows) > max_runs:  # nothing, or a cluttered natural image: no blobs to name
        return []
    comp = _components(rows, starts, ends, vals)
    lengths = ends - starts
    min_px = max(12.0, min_area * h * w)
    blobs: list[Blob] = []
    _, inv = np.unique(comp, return_inverse=True)
    areas = np.bincount(inv, weights=lengths)
    for k in np.nonzero(areas >= min_px)[0]:
        sel = inv == k
        r, s, e = rows[sel], starts[sel], ends[sel]
        y0, y1 = int(r.min()), int(r.max()) + 1
        x0, x1 = int(s.min()), int(e.max())
        bw, bh = x1 - x0, y1 - y0
        area = float(areas[k])
        fill = area / (bw * bh)
        if fill < 0.3:
            continue
        row_w = np.bincount(r - y0, weights=e - s, minlength=bh)
        col_d = np.zeros(bw + 1)
        np.add.at(col_d, s - x0, 1)
        np.add.at(col_d, e - x0, -1)
        col_w = np.cumsum(col_d)[:bw]
        widest_row = (np.flatnonzero(row_w >= row_w.max() * 0.95).mean() + 0.5) / bh
        widest_col = (np.flatnonzero(col_w >= col_w.max() * 0.95).mean() + 0.5) / bw
        shape = classify_shape(fill, bw / bh, widest_row, widest_col)
        cx = float(((s + e) / 2 * (e - s)).sum() / area)
        cy = float(((r + 0.5) * (e - s)).sum() / area)
        blobs.append(Blob(COLOURS[int(vals[sel][0])], shape, cx / w, cy / h, (bw + 2) / w, (bh + 2) / h,
                          area / (h * w)))
    blobs.sort(key=lambda b: -b.area)
    return blobs[:max_blobs]


def grid_phrase(x: float, y: float) -> str:
    """Position on a 3x3 grid as words: "at the top left", "in the center", "on the right", ..."""
    col = ("left", "center", "right")[min(2, max(0, int(x * 3)))]
    row = ("top", "middle", "bottom")[min(2, max(0, int(y * 3)))]
    if row == "middle" and col == "center":
        return "in the center"
    if row == "middle":
        return f"on the {col}"
    if col == "center":
        return f"at the {row}"
    return f"at the {row} {col}"


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _plural(n: int, kind: str) -> str:
    return f"{n} {kind}" + ("" if n == 1 else "es" if kind.endswith(("sh", "ch", "s", "x")) else "s")


def _direction(dx: float, dy: float) -> str:
    parts = []
    if abs(dy) > 0.5 * abs(dx):
        parts.append("down" if dy > 0 else "up")
    if abs(dx) > 0.5 * abs(dy):
        parts.append("right" if dx > 0 else "left")
    return " and ".join(parts)


# ---------------------------------------------------------------------------------------------------- tracking


@dataclass
class _Track:
    id: int
    colour: str
    x: float
    y: float
    shapes: Counter = field(default_factory=Counter)
    vx: float = 0.0
    vy: float = 0.0
    x_said: float = 0.0  # where the text last placed it (appeared / moved): slow drifts add up to a move
    y_said: float = 0.0
    new: bool = True  # appeared in the current window

    @property
    def shape(self) -> str:
        return self.shapes.most_common(1)[0][0]

    @property
    def kind(self) -> str:
        return f"{self.colour} {self.shape}"


@dataclass
class _Window:
    """What changed during one window."""

    first: bool
    synthetic: bool = True
    cuts: list[float] = field(default_factory=list)
    appeared: list[_Track] = field(default_factory=list)
    disappeared: list[_Track] = field(default_factory=list)
    moved: list[_Track] = field(default_factory=list)
    background: str = ""
    motion: str = "calm"
    light: str = "normal"
    motion_energy: float = 0.0  # mean absolute frame difference, 0..255
    motion_cells: np.ndarray | None = None  # the same on a 3x3 grid
    brightness: float = 0.0  # mean luma of the last frame, 0..255
    flatness: float = 1.0
    news: list[str] = field(default_factory=list)  # faces and on-screen text sentences
    text: list[str] = field(default_factory=list)  # new on-screen text lines

    @property
    def cut(self) -> bool:
        return bool(self.cuts)


@dataclass
class FrameStats:
    """Per-frame measurements the stats describer keeps."""

    background: str
    brightness: float
    small: np.ndarray
    blobs: list[Blob]


def _enabled(flag: bool | str, available: Callable[[], bool], what: str) -> bool:
    """``auto``: on when the optional package is installed; ``on``/True: required; ``off``/False: never."""
    if flag in ("auto", None):
        return available()
    if flag in (True, "on"):
        return True
    if flag in (False, "off"):
        return False
    raise ValueError(f"{what} must be auto, on or off, got {flag!r}")


@register_describer("stats")
class StatsDescriber:
    """Weight-free describer that says only what it measured, as short factual sentences.

    Every window: scene cuts (from every frame the stream shows it, see ``watch``), brightness, motion and where
    it is, faces (OpenCV's bundled Haar cascade) and new on-screen text (RapidOCR), when those extras are
    installed. Colour *shapes* are named only while the picture is synthetic-like (``flatness`` >= ``synthetic``:
    flat colour regions with hard edges, as in rendered shape videos or slides); on camera footage the describer
    reports the dominant colours instead, because blob shapes there are noise. Returns "" when nothing changed.
    Thresholds: ``move`` the displacement (frame fractions) that counts as moving; ``match`` the largest jump
    that is still the same object; ``cut`` the colour-histogram distance of a cut (with a pixel change, see
    :class:`~adasr_mm.adapters.scene.CutDetector`). After each call ``last_stats`` holds the raw measurements.
    """

    def __init__(self, cut: float = 0.2, move: float = 0.04, match: float = 0.25, min_area: float = 0.003,
                 max_side: int = 400, max_objects: int = 8, max_events: int = 6, synthetic: float = 0.9,
                 ocr: bool | str = "auto", faces: bool | str = "auto", ocr_every_s: float = 2.0,
                 ocr_threads: int = 0) -> None:
        self.move, self.match, self.min_area, self.max_side = move, match, min_area, max_side
        self.max_objects, self.max_events, self.synthetic = max_objects, max_events, synthetic
        self.cuts = CutDetector(hist=cut)
        self.faces = FaceTracker(FaceDetector()) if _enabled(faces, faces_available, "faces") else None
        self.text = (TextTracker(_text_reader(ocr_threads), every_s=ocr_every_s)
                     if _enabled(ocr, ocr_available, "ocr") else None)
        self.reset()

    def reset(self) -> None:
        self._tracks: list[_Track] = []
        self._next_id = 0
        self._prev: FrameStats | None = None
        self._windows = 0
        self._levels: tuple[str, str] | None = None
        self._background: str | None = None
        self._busy = False
        self._synthetic = True
        self._motion = MotionLevel()
        self._where = ""
        self._windows_natural = 0
        self._said_brightness = 0.0
        self._watched = False
        self._pending: list[float] = []
        self._latest: np.ndarray | None = None
        self.cuts.reset()
        for part in (self.faces, self.text):
            if part is not None:
                part.reset()
        self.last_stats: dict[str, Any] = {}

    def watch(self, frame: np.ndarray, t: float) -> None:
        """See one frame of the stream (the adapter calls this for every decoded frame, at ``cut_fps``, which can
        be denser than the frames of a window): a cut is timed by the first frame after it."""
        self._watched = True
        self._latest = frame
        if self.cuts.observe(frame):
            self._pending.append(round(float(t), 3))

    # -- per frame
    def _frame(self, frame: np.ndarray, synthetic: bool) -> FrameStats:
        step = max(1, math.ceil(max(frame.shape[:2]) / self.max_side))
        f = frame[::step, ::step] if step > 1 else frame
        lab = colour_labels(f)
        bg = int(np.bincount(lab.ravel(), minlength=len(COLOURS)).argmax())
        small = luma(f[::4, ::4])
        blobs = find_blobs(f, bg, self.min_area, labels=lab) if synthetic else []
        return FrameStats(COLOURS[bg], float(small.mean()), small, blobs)

    def _mode(self, frames: np.ndarray, fresh: bool) -> tuple[bool, float]:
        """Synthetic-like or camera footage, by mean flatness, with hysteresis within a shot."""
        flat = float(np.mean([flatness(thumb(f, 200)) for f in frames]))
        leave = self._synthetic and flat < self.synthetic - 0.05
        enter = not self._synthetic and flat >= self.synthetic
        if fresh or leave or enter:
            self._synthetic = flat >= self.synthetic
        return self._synthetic, flat

    def _cut_times(self, frames: np.ndarray, timestamps: list[float]) -> list[float]:
        """The cuts of this window: from ``watch`` (the stream's denser frames), else from these frames."""
        if not self._watched:
            for f, t in zip(frames, timestamps, strict=True):
                if self.cuts.observe(f):
                    self._pending.append(round(float(t), 3))
        cuts, self._pending = self._pending, []
        return cuts

    def _match(self, blobs: list[Blob]) -> tuple[list[_Track], list[_Track]]:
        """Assign blobs to tracks (same colour; same shape preferred; near the predicted position)."""
        pairs = []
        for ti, t in enumerate(self._tracks):
            for bi, b in enumerate(blobs):
                if b.colour != t.colour:
                    continue
                d = min(math.hypot(b.x - t.x, b.y - t.y), math.hypot(b.x - t.x - t.vx, b.y - t.y - t.vy))
                if d <= self.match:
                    pairs.append((d + (0.0 if b.shape == t.shape else 0.1), ti, bi))
        pairs.sort()
        used_t: set[int] = set()
        used_b: set[int] = set()
        for _, ti, bi in pairs:
            if ti in used_t or bi in used_b:
                continue
            used_t.add(ti)
            used_b.add(bi)
            t, b = self._tracks[ti], blobs[bi]
            t.vx, t.vy = b.x - t.x, b.y - t.y
            t.x, t.y = b.x, b.y
            t.shapes[b.shape] += 1
        gone = [t for i, t in enumerate(self._tracks) if i not in used_t]
        born = []
        for bi, b in enumerate(blobs):
            if bi not in used_b:
                t = _Track(self._next_id, b.colour, b.x, b.y, Counter({b.shape: 1}), x_said=b.x, y_said=b.y)
                self._next_id += 1
                born.append(t)
        self._tracks = [t for t in self._tracks if t not in gone] + born
        return born, gone

    # -- per window
    def _observe(self, frames: np.ndarray, timestamps: list[float]) -> _Window:
        """Run the frames through the cut detector, the tracker, faces and OCR; collect what changed."""
        for t in self._tracks:
            t.new = False
        w = _Window(first=self._windows == 0, cuts=self._cut_times(frames, timestamps))
        self._windows += 1
        w.synthetic, w.flatness = self._mode(frames, w.first or w.cut)
        motion: list[float] = []
        cells = np.zeros((3, 3))
        fs = self._prev
        cuts = list(w.cuts)
        faces_before = self.faces.count if self.faces is not None else 0
        for frame, ts in zip(frames, timestamps, strict=True):
            fs = self._frame(frame, w.synthetic)
            if cuts and cuts[0] <= ts + 1e-6:  # a new shot: everything in it is new
                cuts = []
                self._tracks, w.appeared, w.disappeared = [], [], []
            elif self._prev is not None and fs.small.shape == self._prev.small.shape:
                diff = np.abs(fs.small - self._prev.small)
                motion.append(float(diff.mean()))
                cells += grid_energy(diff)
            born, gone = self._match(fs.blobs)
            w.appeared += born
            w.disappeared += gone  # includes shapes that flashed up within this window: both are reported
            self._prev = fs
            if self.faces is not None:
                self.faces.observe(frame)
        if cuts:  # the cut came after this window's last frame: the next window starts a new shot
            self._tracks = []
        assert fs is not None
        w.moved = [t for t in self._tracks if not t.new and math.hypot(t.x - t.x_said, t.y - t.y_said) > self.move]
        w.background, w.brightness = fs.background, fs.brightness
        w.motion_energy = float(np.mean(motion)) if motion else 0.0
        w.motion_cells = cells
        w.motion = "strong" if w.motion_energy > 15 else "calm"
        w.light = "dark" if fs.brightness < 50 else "normal"
        if self.faces is not None and self.faces.count != faces_before:
            w.news.append(faces_sentence(faces_before, self.faces.faces))
        self._read_text(frames[-1], fs.small, timestamps[-1], w)
        return w

    def _read_text(self, frame: np.ndarray, small: np.ndarray, t: float, w: _Window) -> None:
        if self.text is not None and self.text.due(small, t, w.cut):
            w.text = self.text.observe(frame, small, t)
            if w.text:
                w.news.append(text_sentence(w.text))

    def describe(self, frames: np.ndarray, timestamps: list[float]) -> str:
        frames = _as_window(frames)
        if len(timestamps) != len(frames):
            raise ValueError(f"got {len(frames)} frames but {len(timestamps)} timestamps")
        w = self._observe(frames, [float(t) for t in timestamps])
        self.last_stats = {"motion": round(w.motion_energy, 2), "brightness": round(w.brightness, 1),
                           "scene_cut": w.cut, "cuts": w.cuts, "background": w.background,
                           "objects": len(self._tracks), "synthetic": w.synthetic,
                           "flatness": round(w.flatness, 3),
                           "faces": self.faces.count if self.faces is not None else None, "text": w.text}
        parts = self._synthetic_parts(w) if w.synthetic else self._natural_parts(w, frames[-1])
        return " ".join(parts + w.news)

    def _natural_parts(self, w: _Window, last: np.ndarray) -> list[str]:
        """Camera footage: cuts, light, motion and where it is, dominant colours; no shapes."""
        parts: list[str] = []
        level_before = self._motion.level
        level = self._motion.update(w.motion_energy)
        assert w.motion_cells is not None
        where = where_phrase(w.motion_cells) if level else ""
        if w.first or w.cut or self._background is not None:  # a new shot, or synthetic mode just ended
            frame = self._latest if self._watched and self._latest is not None else last
            parts.append(self._scene_sentence(w, frame))
            self._said_brightness = w.brightness
        elif abs(w.brightness - self._said_brightness) > 35:
            parts.append("It got darker." if w.brightness < self._said_brightness else "It got brighter.")
            self._said_brightness = w.brightness
        if level != level_before or (level and where != self._where):
            parts.append(("The picture is still.", f"Some motion {where}.", f"Strong motion {where}.")[level])
        self._where = where
        self._levels, self._background, self._busy = None, None, False  # synthetic mode starts afresh
        return parts

    def _scene_sentence(self, w: _Window, frame: np.ndarray) -> str:
        f = thumb(frame, 160)
        colours = dominant_colours(colour_labels(f), COLOURS)
        light = light_word(float(luma(f).mean()))
        head = "New scene" if w.cut and not w.first else "Scene"
        return f"{head}: {light + ', ' if light else ''}mostly {and_list(colours)}."

    def _synthetic_parts(self, w: _Window) -> list[str]:
        """Rendered shapes or slides: the background and tracked colour shapes, as the shapes happen."""
        motion_changed = self._levels is not None and w.motion != self._levels[0]
        light_changed = self._levels is not None and w.light != self._levels[1]
        bg_changed = w.background != self._background
        self._levels, self._background = (w.motion, w.light), w.background
        self._motion.level, self._where = 0, ""  # camera mode starts afresh if it comes back
        n_events = len(w.appeared) + len(w.disappeared) + len(w.moved)
        was_busy = self._busy
        self._busy = busy = len(self._tracks) > self.max_objects or n_events > self.max_events
        if busy:  # in a busy scene only entering it is news, not every flicker
            news = not was_busy
            w.appeared, w.disappeared, w.moved = [], [], []
        else:
            news = n_events > 0 or was_busy
        if not (w.first or w.cut or bg_changed or motion_changed or light_changed or news):
            return []
        parts: list[str] = []
        if w.first or w.cut or bg_changed:
            dark = "dark, " if w.light == "dark" else ""
            parts.append(f"{'New scene' if w.cut and not w.first else 'Scene'}: {dark}{w.background} background.")
        elif light_changed:
            parts.append("The scene got dark." if w.light == "dark" else "The scene got brighter.")
        parts += self._shape_events(w)
        if w.motion == "strong":
            parts.append("Strong motion.")
        elif motion_changed:
            parts.append("The motion calmed down.")
        parts += self._visible(w, busy)
        return parts

    def _shape_events(self, w: _Window) -> list[str]:
        parts = [f"{_article(t.kind).capitalize()} appeared {grid_phrase(t.x_said, t.y_said)}." for t in w.appeared]
        parts += [f"The {t.kind} {grid_phrase(t.x, t.y)} disappeared." for t in w.disappeared]
        for t in w.moved:
            where = grid_phrase(t.x, t.y)
            parts.append(f"The {t.kind} moved {_direction(t.x - t.x_said, t.y - t.y_said)} (now {where}).")
            t.x_said, t.y_said = t.x, t.y
        return parts

    def _visible(self, w: _Window, busy: bool) -> list[str]:
        visible = Counter(t.kind for t in sorted(self._tracks, key=lambda t: t.id))
        if busy:
            top = [c for c, _ in Counter(t.colour for t in self._tracks).most_common(3)]
            mostly = f" (mostly {', '.join(top[:-1])} and {top[-1]})" if len(top) > 1 else \
                f" (mostly {top[0]})" if top else ""
            return [f"A busy scene with many coloured regions{mostly}."]
        if visible:
            return ["Visible: " + ", ".join(_plural(n, k) for k, n in visible.items()) + "."]
        if w.disappeared or w.first or w.cut:
            return ["No distinct shapes are visible."]
        return []


@lru_cache(maxsize=4)
def _text_reader(threads: int) -> Any:
    """One OCR engine per process (loading the ONNX sessions takes ~1 s)."""
    from .ocr import TextReader

    return TextReader(threads=threads)


# ---------------------------------------------------------------------------------------------------- caption


@register_describer("caption")
class CaptionDescriber:
    """Any Hugging Face image captioner / vision-language model, by hub id or local directory.

    The middle frame of each window is captioned; a caption equal to the previous one returns "" (nothing new).
    ``prompt`` is the instruction for chat VLMs (or the caption prefix for BLIP-style captioners).
    """

    def __init__(self, model: str = "", device: str = "cpu", dtype: str = "auto", max_new_tokens: int = 30,
                 prompt: str = "", skip_repeats: bool = True) -> None:
        if not model:
            raise ValueError("the caption describer needs a model: a Hugging Face id or a local directory "
                             "(video.caption_model)")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        self.model_name, self.device, self.max_new_tokens = model, device, max_new_tokens
        self.prompt, self.skip_repeats = prompt, skip_repeats
        self._last = ""
        self.processor, self.model = self._load(model, device, dtype)

    @staticmethod
    def _load(name: str, device: str, dtype: str) -> tuple[Any, Any]:
        import torch
        from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

        dtypes = {"auto": "auto", "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
        if dtype not in dtypes:
            raise ValueError(f"dtype must be one of {', '.join(dtypes)}, got {dtype!r}")
        try:
            config = AutoConfig.from_pretrained(name)
            processor = AutoProcessor.from_pretrained(name)
            if config.model_type == "vision-encoder-decoder":
                from transformers import VisionEncoderDecoderModel as cls
            else:
                cls = AutoModelForImageTextToText
            model = cls.from_pretrained(name, dtype=dtypes[dtype])
        except (OSError, ValueError, KeyError) as e:
            raise ModelLoadError(f"cannot load caption model '{name}': {str(e).splitlines()[0][:300]}") from e
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        return processor, model.to(device).eval()

    def _inputs(self, image: Any) -> dict[str, Any]:
        proc = self.processor
        if getattr(proc, "chat_template", None):
            messages = [{"role": "user", "content": [{"type": "image"},
                                                     {"type": "text", "text": self.prompt or
                                                      "Describe this video frame in one short sentence."}]}]
            text = proc.apply_chat_template(messages, add_generation_prompt=True)
            return proc(images=[image], text=text, return_tensors="pt")
        if self.prompt:
            return proc(images=image, text=self.prompt, return_tensors="pt")
        return proc(images=image, return_tensors="pt")

    def describe(self, frames: np.ndarray, timestamps: list[float]) -> str:
        import torch
        from PIL import Image

        frames = _as_window(frames)
        image = Image.fromarray(np.ascontiguousarray(frames[len(frames) // 2]))
        inputs = self._inputs(image).to(self.model.device)
        if "pixel_values" in inputs and inputs["pixel_values"].is_floating_point():
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        ids = inputs.get("input_ids")
        if ids is not None and not self.model.config.is_encoder_decoder and out.shape[1] > ids.shape[1] \
                and bool((out[:, : ids.shape[1]] == ids).all()):
            out = out[:, ids.shape[1]:]
        text = " ".join(self.processor.batch_decode(out, skip_special_tokens=True)[0].split())
        if self.skip_repeats and text == self._last:
            return ""
        self._last = text
        return text


__all__ = ["COLOURS", "DESCRIBERS", "Blob", "CaptionDescriber", "Describer", "StatsDescriber", "classify_shape",
           "colour_labels", "find_blobs", "grid_phrase", "make_describer", "name_colours", "register_describer"]
