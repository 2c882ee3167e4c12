"""People in the picture: OpenCV's bundled Haar face cascade, with hysteresis so the count does not flicker.

The cascade ships inside the ``opencv-python-headless`` wheel (``cv2.data.haarcascades``; OpenCV 4.x, the 5.x
wheels dropped the data files), so it runs offline. It finds frontal faces only; a profile or a face smaller than
``min_size`` of the frame is not counted. Optional: install the ``[ocr]`` extra (it brings OpenCV).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import numpy as np

from adasr_mm.errors import ModelLoadError

CASCADE = "haarcascade_frontalface_default.xml"


def faces_available() -> bool:
    """True when OpenCV (with its bundled cascades) can be imported."""
    return importlib.util.find_spec("cv2") is not None


@dataclass
class Face:
    """A detected face; centre and size in fractions of the frame."""

    x: float
    y: float
    w: float
    h: float


def _load_cascade():
    try:
        import cv2
    except ImportError as e:
        raise ModelLoadError("face detection needs OpenCV: pip install 'adasr-mm[ocr]' "
                             "(or opencv-python-headless<5)") from e
    data = getattr(cv2, "data", None)
    path = f"{data.haarcascades}{CASCADE}" if data is not None else ""
    cascade = cv2.CascadeClassifier(path) if path else None
    if cascade is None or cascade.empty():
        raise ModelLoadError(f"OpenCV {cv2.__version__} has no bundled {CASCADE} (OpenCV 5 wheels dropped "
                             "cv2.data); install opencv-python-headless<5")
    return cv2, cascade


class FaceDetector:
    """Frontal faces in an RGB frame. ``min_size``: smallest face side as a fraction of the shorter frame side;
    ``neighbors``: the cascade's minNeighbors (higher = fewer false faces)."""

    def __init__(self, min_size: float = 0.1, neighbors: int = 5, max_side: int = 240) -> None:
        self.cv2, self.cascade = _load_cascade()
        self.min_size, self.neighbors, self.max_side = min_size, neighbors, max_side

    def detect(self, frame: np.ndarray) -> list[Face]:
        step = max(1, -(-max(frame.shape[:2]) // self.max_side))
        f = frame[::step, ::step]
        grey = self.cv2.equalizeHist(self.cv2.cvtColor(np.ascontiguousarray(f), self.cv2.COLOR_RGB2GRAY))
        h, w = grey.shape
        side = max(12, int(self.min_size * min(h, w)))
        boxes = self.cascade.detectMultiScale(grey, scaleFactor=1.15, minNeighbors=self.neighbors,
                                              minSize=(side, side))
        faces = [Face((x + bw / 2) / w, (y + bh / 2) / h, bw / w, bh / h) for x, y, bw, bh in boxes]
        return sorted(faces, key=lambda f: f.x)


class FaceTracker:
    """Turns per-frame detections into stable news: the face count changes only after ``hold`` consecutive
    frames agree on the new count, so one missed or spurious detection says nothing."""

    def __init__(self, detector: FaceDetector, hold: int = 2) -> None:
        self.detector, self.hold = detector, hold
        self.reset()

    def reset(self) -> None:
        self.count = 0  # the stable (reported) count
        self.faces: list[Face] = []
        self._candidate, self._streak = 0, 0

    def observe(self, frame: np.ndarray) -> bool:
        """Detect in one frame; True when the stable count changed."""
        faces = self.detector.detect(frame)
        n = len(faces)
        if n == self.count:
            self._streak = 0
            if n:
                self.faces = faces
            return False
        self._streak = self._streak + 1 if n == self._candidate else 1
        self._candidate = n
        if self._streak < self.hold:
            return False
        self.count, self.faces, self._streak = n, faces, 0
        return True


def _where(x: float) -> str:
    return ("on the left", "in the center", "on the right")[min(2, max(0, int(x * 3)))]


def faces_sentence(before: int, faces: list[Face]) -> str:
    """The news when the stable face count went from ``before`` to ``len(faces)``."""
    n = len(faces)
    if n == 0:
        return "No face is visible any more." if before > 1 else "The face left the picture."
    if n == 1:
        verb = "appeared" if before == 0 else "is visible now"
        return f"A face {verb} {_where(faces[0].x)}." if before == 0 else f"One face {verb}, {_where(faces[0].x)}."
    places = ", ".join(_where(f.x).split()[-1] for f in faces)
    words = {2: "Two", 3: "Three", 4: "Four"}
    return f"{words.get(n, str(n))} faces are visible ({places})."


__all__ = ["Face", "FaceDetector", "FaceTracker", "faces_available", "faces_sentence"]
