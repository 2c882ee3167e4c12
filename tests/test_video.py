"""Video adapter: frame decoding (decord and PyAV), the stats describer against synthetic ground truth, live
pushes, bad inputs, long files in bounded memory, and the caption describer's plumbing with a tiny random model."""

from __future__ import annotations

import fractions
import json
import logging
import math
import re
import sys
import tracemalloc
from collections import Counter
from pathlib import Path

import av
import numpy as np
import pytest

from adasr_mm.adapters import video_io
from adasr_mm.adapters.describers import (
    COLOURS,
    DESCRIBERS,
    StatsDescriber,
    grid_phrase,
    make_describer,
    name_colours,
    register_describer,
)
from adasr_mm.adapters.synthetic import PALETTE, Scene, ShapeEvent, draw_frame, random_scene, render_scene
from adasr_mm.adapters.video import VideoConfig, VideoSource, VideoStream, to_rgb_uint8
from adasr_mm.adapters.video_io import iter_frames, probe_video
from adasr_mm.chunks import TimedChunk
from adasr_mm.clock import SimulatedClock
from adasr_mm.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples" / "video"
SHAPE_WORDS = re.compile(r"\b(circle|square|triangle|rectangle|oval|shape|blob)s?\b", re.I)


# ------------------------------------------------------------------------------------------------ helpers


def first_window(t: float, fps: float = 2.0, window_s: float = 1.0) -> int:
    """The window whose sampled frames first show something that starts at ``t`` (frames at k/fps)."""
    return int(math.floor(math.ceil(t * fps - 1e-9) / fps / window_s + 1e-9))


def article(name: str) -> str:
    return ("An " if name[0] in "aeiou" else "A ") + name


def visible_counts(text: str) -> Counter:
    """'Visible: 2 red circles, 1 blue square.' -> Counter({'red circle': 2, 'blue square': 1})."""
    listed = text.split("Visible: ", 1)[1].split(".")[0]
    out: Counter = Counter()
    for n, colour, shape in re.findall(r"(\d+) ([a-z]+) ([a-z]+)", listed):
        out[f"{colour} {shape[:-1] if int(n) > 1 else shape}"] = int(n)
    return out


def write_frames(path: Path, frames, times=None, fps: int = 10, pix_fmt: str = "yuv420p", rotation: int = 0,
                 faststart: bool = False, time_base: fractions.Fraction | None = None) -> Path:
    """Encode numpy frames with PyAV (optionally irregular pts in ``time_base`` units, or rotation metadata)."""
    frames = list(frames)
    h, w = frames[0].shape[:2]
    opts = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=opts) as out:
        s = out.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, pix_fmt
        if time_base is not None:
            s.codec_context.time_base = time_base
        if rotation:
            s.set_display_rotation(rotation)
        for i, img in enumerate(frames):
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            if times is not None:
                f.pts, f.time_base = times[i], time_base
            for p in s.encode(f):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return path


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """Rendered random scenes (static and moving, three backgrounds) with their ground truth."""
    d = tmp_path_factory.mktemp("scenes")
    out = []
    for seed, moving, bg in [(0, False, "white"), (1, True, "white"), (2, False, "black"), (3, True, "grey"),
                             (4, False, "white"), (5, True, "white")]:
        sc = random_scene(seed, 10.0, moving=moving, background=bg)
        out.append((sc, render_scene(sc, d / f"scene{seed}.mp4")))
    return out


@pytest.fixture(scope="module")
def scene_chunks(scenes):
    return [list(VideoSource(p, VideoConfig(keep_frames=False))) for _, p in scenes]


# ------------------------------------------------------------------------------------------------ describer


def test_palette_colours_are_named_right():
    rgb = np.array([PALETTE[c] for c in COLOURS], np.uint8)
    assert [COLOURS[i] for i in name_colours(rgb)] == list(COLOURS)


def test_stats_chunks_match_ground_truth(scenes, scene_chunks):
    for (sc, path), chunks in zip(scenes, scene_chunks, strict=True):
        by_window = {int(round(c.start)): c.text for c in chunks}
        appeared = sum(c.text.count(" appeared ") for c in chunks)
        assert appeared == len(sc.events), (path.name, [c.text for c in chunks])
        for e in sc.events:  # every shape is named with its colour and shape in the window it appears
            w = first_window(e.t_appear)
            assert f"{article(e.name)} appeared" in by_window.get(w, ""), (path.name, e, by_window)
            if e.t_disappear is not None:
                text = by_window.get(first_window(e.t_disappear), "")
                assert f"The {e.name}" in text and "disappeared" in text, (path.name, e, by_window)
            if e.vx:
                assert any(f"The {e.name} moved right" in c.text for c in chunks), (path.name, by_window)
        final = [c.text for c in chunks if "Visible:" in c.text][-1]
        assert visible_counts(final) == Counter(e.name for e in sc.visible(9.5)), (path.name, final)
        assert f"{sc.background} background" in chunks[0].text


def test_chunk_times_monotonic_and_inside_duration(scenes, scene_chunks):
    for (sc, path), chunks in zip(scenes, scene_chunks, strict=True):
        src_duration = probe_video(path).duration
        assert src_duration == pytest.approx(sc.duration, abs=0.05)
        assert chunks
        for a, b in zip(chunks, chunks[1:], strict=False):
            assert a.end <= b.start + 1e-9 and a.index < b.index
        for c in chunks:
            assert c.modality == "video" and c.source == str(path)
            assert 0 <= c.start < c.end <= src_duration + 1e-6
            assert c.frames is None and c.frame_times and all(c.start <= t < c.end for t in c.frame_times)


def test_static_video_yields_few_chunks(tmp_path):
    static = Scene(8.0, [ShapeEvent(0.0, None, "square", "blue", 0.5, 0.5, 0.3)])
    chunks = list(VideoSource(render_scene(static, tmp_path / "static.mp4")))
    assert 1 <= len(chunks) <= 2
    assert "A blue square appeared in the center" in chunks[0].text
    assert "Visible: 1 blue square." in chunks[0].text
    chunks = list(VideoSource(render_scene(Scene(5.0, [], "grey"), tmp_path / "empty.mp4")))
    assert [c.text for c in chunks] == ["Scene: grey background. No distinct shapes are visible."]


def test_shape_appearing_produces_chunk_in_its_window(tmp_path):
    sc = Scene(6.0, [ShapeEvent(3.2, None, "triangle", "orange", 0.8, 0.2, 0.25)])
    chunks = list(VideoSource(render_scene(sc, tmp_path / "one.mp4"), VideoConfig(keep_frames=True)))
    hit = [c for c in chunks if "appeared" in c.text]
    assert len(hit) == 1 and (hit[0].start, hit[0].end) == (3.0, 4.0)
    assert hit[0].text.startswith("An orange triangle appeared at the top right.")
    assert hit[0].frames.shape == (2, 240, 320, 3) and hit[0].frame_times == [3.0, 3.5]
    d = json.loads(json.dumps(hit[0].to_dict()))  # frames travel as a shape; describer numbers as meta
    assert d["frames_shape"] == [2, 240, 320, 3] and d["meta"]["describer"]["objects"] == 1


def test_identical_windows_say_nothing_new():
    d = StatsDescriber()
    frames = np.stack([draw_frame(Scene(1.0, [ShapeEvent(0, None, "circle", "red", 0.2, 0.2, 0.2)]), 0)] * 2)
    first = d.describe(frames, [0.0, 0.5])
    assert first == ("Scene: white background. A red circle appeared at the top left. Visible: 1 red circle.")
    assert d.describe(frames, [1.0, 1.5]) == ""
    noisy = np.clip(frames.astype(int) + np.random.default_rng(0).integers(-3, 4, frames.shape), 0, 255)
    assert d.describe(noisy.astype(np.uint8), [2.0, 2.5]) == ""


def test_scene_cut_and_camera_like_video():
    from PIL import Image

    rng = np.random.default_rng(0)
    d = StatsDescriber()
    white = np.full((2, 240, 320, 3), 255, np.uint8)
    assert d.describe(white, [0, 0.5]).startswith("Scene: white background.")
    dark = np.full((2, 240, 320, 3), 10, np.uint8)
    assert d.describe(dark, [1, 1.5]).startswith("New scene: dark, black background.")
    low = rng.integers(0, 256, (2, 12, 16, 3), dtype=np.uint8)  # smooth random colour fields
    busy = np.stack([np.asarray(Image.fromarray(x).resize((320, 240), Image.BICUBIC)) for x in low])
    text = d.describe(busy, [2, 2.5])  # not flat: camera-like, so no shapes, only what is measured
    assert text.startswith("New scene: mostly ") and "Strong motion across the picture." in text
    assert not SHAPE_WORDS.search(text) and not d.last_stats["synthetic"]
    still = np.stack([busy[1], busy[1]])
    assert d.describe(still, [3, 3.5]) == "The picture is still."
    assert d.describe(still, [4, 4.5]) == ""  # nothing changed: nothing to say


def test_grid_phrases():
    assert grid_phrase(0.1, 0.1) == "at the top left"
    assert grid_phrase(0.5, 0.5) == "in the center"
    assert grid_phrase(0.9, 0.5) == "on the right"
    assert grid_phrase(0.5, 0.9) == "at the bottom"


def test_describer_registry():
    assert {"stats", "caption"} <= set(DESCRIBERS)
    with pytest.raises(ValueError, match="unknown describer 'nope'; available: .*caption.*stats"):
        make_describer("nope")

    @register_describer("test-constant")
    class Constant:
        def describe(self, frames, timestamps):
            return f"{len(frames)} frames"

    try:
        stream = VideoStream(make_describer("test-constant"), VideoConfig(describer="test-constant"))
        for i in range(5):
            list(stream.push(np.zeros((8, 8, 3), np.uint8), i * 0.5))
        assert [c.text for c in stream.finish()] == ["1 frames"]
    finally:
        DESCRIBERS.pop("test-constant")


# ------------------------------------------------------------------------------------------------ stream & source


def test_live_push_matches_file(scenes, scene_chunks):
    sc, path = scenes[1]  # with a moving shape
    stream = VideoStream(config=VideoConfig(), source="live")
    live: list[TimedChunk] = []
    for t in np.arange(0, sc.duration, 0.5):
        live += stream.push(draw_frame(sc, float(t)), float(t))  # uncompressed frames straight from the scene
    live += stream.finish(sc.duration)
    assert [(c.start, c.end, c.text) for c in live] == [(c.start, c.end, c.text) for c in scene_chunks[1]]
    assert stream.stats.frames == 20 and stream.stats.windows == 10 and stream.stats.chunks == len(live)
    assert all(c.meta["available_at"] >= c.end for c in live)


def test_live_frame_formats_and_odd_sizes():
    img = draw_frame(Scene(1.0, [ShapeEvent(0, None, "square", "green", 0.5, 0.5, 0.4)]), 0, (321, 239))
    variants = {
        "rgb": img,
        "rgba": np.concatenate([img, np.full(img.shape[:2] + (1,), 255, np.uint8)], -1),
        "float": img.astype(np.float32) / 255.0,
        "chw": np.moveaxis(img, -1, 0),
    }
    for name, frame in variants.items():
        stream = VideoStream(config=VideoConfig(max_side=160))
        list(stream.push(frame, 0.0))
        (c,) = list(stream.finish())
        assert c.frames.shape == (1, 119, 160, 3), name
        assert "A green square appeared in the center" in c.text, (name, c.text)
    gray = to_rgb_uint8(np.full((5, 7), 0.5))
    assert gray.shape == (5, 7, 3) and gray.dtype == np.uint8 and (gray == 128).all()
    for bad in (np.zeros((4, 4, 2)), np.zeros((2, 3, 4, 5)), np.zeros((1, 1, 3)), np.full((4, 4, 3), 2.0),
                np.full((4, 4, 3), np.nan), np.zeros((4, 4, 3), np.int64)):
        with pytest.raises(ValueError):
            to_rgb_uint8(bad)
    stream = VideoStream()
    list(stream.push(img, 2.0))
    with pytest.raises(ValueError, match="must not decrease"):
        list(stream.push(img, 1.0))


def test_source_with_simulated_clock_and_stats(scenes):
    _, path = scenes[0]
    src = VideoSource(path, VideoConfig(max_duration_s=6.0))
    clock = SimulatedClock()
    src.bind_clock(clock)
    chunks = list(src)
    assert chunks and all(c.end <= 6.0 for c in chunks) and src.duration == 6.0
    for c in chunks:
        assert c.meta["available_at"] >= c.end - 1e-9
    st = src.stats()
    assert st["video_frames"] == 12 and st["video_media_s"] == pytest.approx(6.0)
    assert st["video_fps_processed"] > 0 and 0 < st["video_rtf"] < 1
    again = list(src)  # a second pass starts from a fresh describer state
    assert [c.text for c in again] == [c.text for c in chunks]


def test_config_validation():
    for kw in ({"fps": 0}, {"fps": 100}, {"window_s": 0}, {"window_s": 0.2, "fps": 2}, {"describer": "x"},
               {"describer": "caption"}, {"max_side": 8}, {"max_duration_s": -1}, {"backend": "cv2"}):
        with pytest.raises(ValueError):
            VideoConfig(**kw)
    assert VideoConfig(window_s=0.5, fps=4).window_s == 0.5
    sample = SAMPLES / "shapes.mp4"
    for kw in ({"fps": 0}, {"fps": float("nan")}, {"max_side": -1}, {"backend": "opencv"}):
        with pytest.raises(ValueError):
            iter_frames(sample, **kw)


# ------------------------------------------------------------------------------------------------ decoding


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_backends_decode_the_same(scenes, scene_chunks, backend, monkeypatch):
    sc, path = scenes[3]
    other = "_pyav_frames" if backend == "decord" else "_decord_frames"

    def unexpected(*a, **k):
        raise AssertionError(f"{other} used for backend={backend}")

    monkeypatch.setattr(video_io, other, unexpected)  # no silent fallback: this backend decodes it all
    frames = list(iter_frames(path, fps=2.0, max_side=160, backend=backend))
    assert [round(t, 3) for t, _ in frames] == [k / 2 for k in range(20)]
    assert all(f.shape == (120, 160, 3) and f.dtype == np.uint8 for _, f in frames)
    chunks = list(VideoSource(path, VideoConfig(backend=backend, keep_frames=False)))
    assert [c.text for c in chunks] == [c.text for c in scene_chunks[3]]


def test_env_var_forces_pyav(scenes, monkeypatch):
    _, path = scenes[0]

    def no_decord(*a, **k):
        raise AssertionError("decord used despite ADASR_MM_VIDEO_BACKEND=pyav")

    monkeypatch.setattr(video_io, "_decord_frames", no_decord)
    monkeypatch.setenv("ADASR_MM_VIDEO_BACKEND", "pyav")
    assert len(list(iter_frames(path))) == 20
    monkeypatch.setenv("ADASR_MM_VIDEO_BACKEND", "bogus")
    with pytest.raises(ValueError, match="ADASR_MM_VIDEO_BACKEND"):
        iter_frames(path)
    monkeypatch.delenv("ADASR_MM_VIDEO_BACKEND")
    monkeypatch.setitem(sys.modules, "decord", None)  # decord not importable: PyAV takes over silently
    assert len(list(iter_frames(path))) == 20


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_rotation_metadata_gives_upright_frames(tmp_path, rotation):
    coded = np.full((240, 320, 3), 255, np.uint8)
    coded[:60, :80] = PALETTE["red"]  # a red block at the coded top left
    path = write_frames(tmp_path / "rot.mp4", [coded] * 10, rotation=rotation)
    info = probe_video(path)
    assert info.rotation == rotation % 360
    expected = np.rot90(coded, k=rotation // 90)
    assert (info.height, info.width) == expected.shape[:2]
    for backend in ("decord", "pyav"):
        _, frame = next(iter(iter_frames(path, backend=backend)))
        assert frame.shape == expected.shape, backend
        assert np.abs(frame.astype(int) - expected).mean() < 3, backend


def test_variable_frame_rate_uses_real_timestamps(tmp_path):
    times_ms = [0, 100, 150, 1000, 1100, 2500, 2600, 2700, 4000]
    frames = [np.full((48, 64, 3), 20 * i, np.uint8) for i in range(len(times_ms))]
    path = write_frames(tmp_path / "vfr.mp4", frames, times=times_ms, time_base=fractions.Fraction(1, 1000))
    for backend in ("decord", "pyav"):
        got = list(iter_frames(path, fps=2.0, backend=backend))
        # first frame at or after 0, 0.5 (-> 1.0), 1.0, 1.5 / 2.0 / 2.5 (-> 2.5), 3.0 / 3.5 / 4.0 (-> 4.0)
        assert [round(t, 3) for t, _ in got] == [0.0, 1.0, 2.5, 4.0], backend
        assert [int(f.mean()) for _, f in got] == pytest.approx([0, 60, 100, 160], abs=3)


def test_odd_size_file(tmp_path):
    sc = Scene(2.0, [ShapeEvent(0.0, None, "circle", "purple", 0.5, 0.5, 0.4)])
    path = write_frames(tmp_path / "odd.mp4", [draw_frame(sc, i / 10, (321, 239)) for i in range(20)],
                        pix_fmt="yuv444p")
    info = probe_video(path)
    assert (info.width, info.height) == (321, 239)
    for backend in ("decord", "pyav"):
        chunks = list(VideoSource(path, VideoConfig(backend=backend, max_side=200)))
        assert chunks[0].frames.shape[1:] == (149, 200, 3)
        assert "A purple circle appeared in the center" in chunks[0].text


def test_bad_inputs(tmp_path, scenes):
    with pytest.raises(InputError, match="does not exist"):
        probe_video(tmp_path / "missing.mp4")
    with pytest.raises(InputError, match="is a directory"):
        VideoSource(tmp_path)
    (tmp_path / "notes.mp4").write_text("this is not a video\n" * 20)
    with pytest.raises(InputError, match="notes.mp4' is not a readable video file"):
        VideoSource(tmp_path / "notes.mp4")
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(InputError, match="is not a readable video file: the file is empty"):
        iter_frames(tmp_path / "empty.mp4")
    data = scenes[0][1].read_bytes()  # the index (moov) is at the end: cutting it leaves nothing readable
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="cut.mp4' is not a readable video file"):
        VideoSource(tmp_path / "cut.mp4")


def test_audio_only_files_have_no_video_track(tmp_path):
    import soundfile as sf

    sf.write(tmp_path / "tone.wav", np.zeros(16000, np.float32), 16000)
    with av.open(str(tmp_path / "tone.m4a"), "w") as out:
        s = out.add_stream("aac", rate=16000, layout="mono")
        f = av.AudioFrame.from_ndarray(np.zeros((1, 16000), np.float32), format="fltp", layout="mono")
        f.sample_rate = 16000
        for p in list(s.encode(f)) + list(s.encode()):
            out.mux(p)
    for name in ("tone.wav", "tone.m4a"):
        with pytest.raises(InputError, match=f"{name}' has no video track"):
            VideoSource(tmp_path / name)


def test_zero_frames(tmp_path):
    path = tmp_path / "zero.avi"
    with av.open(str(path), "w") as out:
        s = out.add_stream("mpeg4", rate=10)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        out.start_encoding()
    with pytest.raises(InputError, match="zero.avi' contains no video frames"):
        VideoSource(path)


def test_truncated_file_yields_what_decodes(tmp_path, caplog):
    sc = random_scene(7, 10.0)
    frames = [draw_frame(sc, i / 10) for i in range(100)]
    path = write_frames(tmp_path / "fast.mp4", frames, faststart=True)  # index first, then the frames
    data = path.read_bytes()
    cut = tmp_path / "fast_cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    for backend in ("decord", "pyav"):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="adasr_mm.adapters.video_io"):
            got = list(iter_frames(cut, backend=backend))
        assert 2 <= len(got) < 20, backend
        assert any("truncated" in r.getMessage() for r in caplog.records), backend
    chunks = list(VideoSource(cut))
    assert chunks and chunks[-1].end <= 10.0
    garbled = bytearray(data)  # damaged bytes in the middle of the frames: decode around them, no crash
    mid = len(garbled) // 2
    garbled[mid:mid + 400] = bytes(400)
    (tmp_path / "garbled.mp4").write_bytes(bytes(garbled))
    assert len(list(iter_frames(tmp_path / "garbled.mp4"))) >= 15


def test_two_hour_file_in_bounded_memory(tmp_path):
    import psutil

    long = Scene(7200.0, [ShapeEvent(3600.0, 3660.0, "circle", "red", 0.5, 0.5, 0.5)])
    path = render_scene(long, tmp_path / "long.mp4", size=(64, 48), fps=1)
    assert probe_video(path).duration == pytest.approx(7200, abs=1)
    proc = psutil.Process()
    rss0 = proc.memory_info().rss
    tracemalloc.start()
    try:
        n = 0
        last = -1.0
        for t, f in iter_frames(path, fps=1.0):
            assert t > last and f.shape == (48, 64, 3)
            last, n = t, n + 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n == 7200 and last == 7199.0
    assert peak < 5e6, f"python-side peak {peak / 1e6:.1f} MB"
    assert proc.memory_info().rss - rss0 < 100e6
    src = VideoSource(path, VideoConfig(fps=1.0, window_s=60.0, keep_frames=False))
    chunks = list(src)
    assert [c.start for c in chunks] == [0.0, 3600.0, 3660.0]
    assert "A red circle appeared in the center" in chunks[1].text and "disappeared" in chunks[2].text
    assert src.stats()["video_rtf"] < 0.01


# ------------------------------------------------------------------------------------------------ synthetic & samples


def test_random_scene_is_reproducible_with_consistent_answers():
    a, b = random_scene(11, 8.0, moving=True), random_scene(11, 8.0, moving=True)
    assert a == b and len(a.events) >= 4
    qa = dict(a.qa)
    assert qa["How many shapes appeared?"] == str(len(a.events))
    last = max(a.events, key=lambda e: e.t_appear)
    assert qa.get("What colour was the last shape to appear?", last.color) == last.color
    for e in a.events:
        assert qa[f"How many {e.name}s appeared?"] == str(sum(x.name == e.name for x in a.events))
    assert random_scene(11, 8.0, n_shapes=2).events.__len__() == 2
    with pytest.raises(ValueError):
        ShapeEvent(1.0, 0.5, "circle", "red", 0.5, 0.5, 0.2)


def test_committed_samples_are_described_right():
    meta = json.loads((SAMPLES / "samples.json").read_text())
    assert set(meta) == {"shapes.mp4", "shapes_speech.mp4"}
    for name, m in meta.items():
        path = SAMPLES / name
        info = probe_video(path)
        assert (info.width, info.height) == (320, 240) and 8 <= info.duration <= 10.5
        assert info.has_audio == (name == "shapes_speech.mp4")
        chunks = list(VideoSource(path))
        assert m["question"] == "How many red circles appeared?"
        assert sum(c.text.count("A red circle appeared") for c in chunks) == int(m["answer"])
        assert len(m["events"]) == sum(c.text.count(" appeared ") for c in chunks)
    assert (SAMPLES / "shapes.mp4").stat().st_size < 500_000
    assert (SAMPLES / "shapes_speech.mp4").stat().st_size < 700_000


# ------------------------------------------------------------------------------------------------ caption


@pytest.fixture(scope="module")
def tiny_caption_model(tmp_path_factory):
    """A random-weight 1-layer BLIP with a 65-word tokenizer, built and saved locally (no downloads)."""
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipProcessor
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

    d = tmp_path_factory.mktemp("tinyblip")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "red", "circle", "blue", "square", "the"]
    (d / "vocab.txt").write_text("\n".join(words + [f"w{i}" for i in range(54)]) + "\n")
    tok = BertTokenizer(vocab=str(d / "vocab.txt"))
    proc = BlipProcessor(image_processor=BlipImageProcessorPil(size={"height": 32, "width": 32}), tokenizer=tok)
    small = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}
    cfg = BlipConfig(text_config={**small, "vocab_size": len(tok), "max_position_embeddings": 64,
                                  "bos_token_id": tok.cls_token_id, "pad_token_id": tok.pad_token_id,
                                  "sep_token_id": tok.sep_token_id, "eos_token_id": tok.sep_token_id},
                     vision_config={**small, "image_size": 32, "patch_size": 8}, projection_dim=32)
    import torch

    torch.manual_seed(0)
    model_dir = d / "model"
    BlipForConditionalGeneration(cfg).save_pretrained(model_dir)
    proc.save_pretrained(model_dir)
    return str(model_dir)


@pytest.fixture
def one_torch_thread():
    """Tiny ops gain nothing from threads, and on a loaded 2-core machine OpenMP barriers cost ~ms each."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_caption_describer_plumbing(tiny_caption_model, scenes, one_torch_thread):
    from adasr_mm.errors import ModelLoadError

    d = make_describer("caption", model=tiny_caption_model, max_new_tokens=5)
    frames = np.stack([draw_frame(scenes[0][0], t) for t in (0.0, 0.5)])
    text = d.describe(frames, [0.0, 0.5])
    assert isinstance(text, str) and text
    assert d.describe(frames, [1.0, 1.5]) == ""  # the same caption again is nothing new
    cfg = VideoConfig(describer="caption", caption_model=tiny_caption_model, keep_frames=False,
                      max_duration_s=3.0)
    chunks = list(VideoSource(scenes[0][1], cfg))
    assert chunks and all(isinstance(c.text, str) and c.text for c in chunks)
    with pytest.raises(ModelLoadError, match="cannot load caption model"):
        make_describer("caption", model=str(Path(tiny_caption_model).parent / "nowhere"))
