"""Text on screen: RapidOCR (PP-OCRv4 detection + recognition ONNX models shipped inside the
``rapidocr-onnxruntime`` wheel, Apache-2.0), run offline on onnxruntime.

:class:`TextReader` reads the lines in one frame; :class:`TextTracker` decides when to read (the first frame, a
scene cut, or a picture that changed since the last read, at most every ``every_s`` seconds of media time) and
which lines are news (not seen before, up to OCR jitter), so a slide shown for a minute is reported once.
Optional: install the ``[ocr]`` extra.
"""

from __future__ import annotations

import difflib
import importlib.util
import re
from collections import deque
from dataclasses import dataclass

import numpy as np

from adasr_mm.errors import ModelLoadError


def ocr_available() -> bool:
    """True when rapidocr-onnxruntime can be imported (its models ship in the wheel)."""
    return importlib.util.find_spec("rapidocr_onnxruntime") is not None


def normalise_line(text: str) -> str:
    """Lowercase, no spaces (OCR drops or adds them), no surrounding punctuation: the de-duplication key."""
    return re.sub(r"\s+", "", text).strip(".,;:!?'\"").lower()


class TextReader:
    """Lines of text in an RGB frame, top to bottom. ``min_score``: recognition confidence below which a line is
    dropped; ``det_side``: the detector's input size (longer side), which bounds its cost; ``threads``:
    onnxruntime intra-op threads (0 = its default, all cores)."""

    def __init__(self, min_score: float = 0.6, det_side: int = 640, threads: int = 0) -> None:
        try:
            from rapidocr_onnxruntime import RapidOCR
        except ImportError as e:
            raise ModelLoadError("on-screen text needs RapidOCR: pip install 'adasr-mm[ocr]'") from e
        kw = {"intra_op_num_threads": threads} if threads > 0 else {}
        self.engine = RapidOCR(det_limit_side_len=det_side, det_limit_type="max", use_cls=False, **kw)
        self.min_score = min_score

    def read(self, frame: np.ndarray) -> list[str]:
        return self.read_scored(frame)[0]

    def read_scored(self, frame: np.ndarray) -> tuple[list[str], float]:
        """The lines (reading order) and their mean recognition confidence (0 when there is no line)."""
        bgr = np.ascontiguousarray(np.asarray(frame)[..., ::-1])
        result, _ = self.engine(bgr)
        lines, scores = [], []
        for box, text, score in result or []:
            text = " ".join(str(text).split())
            if float(score) >= self.min_score and len(normalise_line(text)) >= 2:
                top = min(p[1] for p in box)
                left = min(p[0] for p in box)
                lines.append((round(top / 8), left, text))  # same row band: left to right
                scores.append(float(score))
        return [t for _, _, t in sorted(lines)], float(np.mean(scores)) if scores else 0.0


@dataclass
class _Read:
    t: float
    small: np.ndarray


class TextTracker:
    """When to run OCR and which lines are new. ``change``: the fraction of pixels whose luma moved by more than
    ``level`` (0..255) since the last read that counts as a changed picture (a new word on a slide is a small
    area; camera noise moves many pixels a little); ``similar``: string similarity above which a line counts as
    already seen (OCR reads the same line slightly differently from frame to frame)."""

    def __init__(self, reader: TextReader, every_s: float = 2.0, change: float = 0.002, level: float = 24.0,
                 similar: float = 0.9, memory: int = 200) -> None:
        self.reader, self.every_s, self.change, self.similar = reader, every_s, change, similar
        self.level = level
        self.decisive = 0.03
        self._memory = memory
        self.reset()

    def reset(self) -> None:
        self._last: _Read | None = None
        self._seen: deque[str] = deque(maxlen=self._memory)
        self.reads = 0
        self.mirrored: bool | None = None  # decided by the first picture with text

    def due(self, small: np.ndarray, t: float, cut: bool) -> bool:
        """Should the frame at ``t`` (``small``: its downscaled luma) be read?"""
        last = self._last
        if last is None:
            return True
        if t - last.t < self.every_s - 1e-6:
            return False
        if cut or small.shape != last.small.shape:
            return True
        return float((np.abs(small - last.small) > self.level).mean()) >= self.change

    def observe(self, frame: np.ndarray, small: np.ndarray, t: float) -> list[str]:
        """Read ``frame`` and return its lines not seen before (in reading order)."""
        self._last = _Read(t, small)
        self.reads += 1
        new = []
        for line in self._lines(frame):
            key = normalise_line(line)
            if any(difflib.SequenceMatcher(None, key, s).ratio() >= self.similar for s in self._seen):
                continue
            self._seen.append(key)
            new.append(line)
        return new


    def _lines(self, frame: np.ndarray) -> list[str]:
        """Webcams (and the browser's webcam widget) often send mirrored pictures, and mirrored text still
        reads as confident nonsense ("29lqq6" for "Seven"). Until a picture with text decides it, both
        orientations are read and the more confident one wins; a clear win fixes the orientation."""
        if self.mirrored is not None:
            return self.reader.read(frame[:, ::-1] if self.mirrored else frame)
        lines, score = self.reader.read_scored(frame)
        if not lines:
            return lines
        flipped, score_flipped = self.reader.read_scored(frame[:, ::-1])
        if abs(score - score_flipped) >= self.decisive:
            self.mirrored = score_flipped > score
        return flipped if score_flipped > score else lines


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (characters): the numerator of the character error rate."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def text_sentence(lines: list[str]) -> str:
    quoted = "; ".join(f'"{line}"' for line in lines)
    return f"Text on screen: {quoted}."


__all__ = ["TextReader", "TextTracker", "edit_distance", "normalise_line", "ocr_available", "text_sentence"]
