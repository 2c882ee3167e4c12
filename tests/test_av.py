"""Audio + video files: auto modality, merging by start time, and `adasr-mm run` on the bundled video."""

import json
from pathlib import Path

import pytest
from test_cli import assert_clean_error, cli

from adasr_mm.adapters import open_input
from adasr_mm.clock import SimulatedClock
from adasr_mm.config import load_config

VIDEO = Path(__file__).resolve().parents[1] / "samples" / "video"
AUDIO = Path(__file__).resolve().parents[1] / "samples" / "audio"


def test_auto_modality_looks_inside_containers():
    cfg = load_config()
    assert type(open_input(str(VIDEO / "shapes.mp4"), "auto", cfg)).__name__ == "VideoSource"
    assert type(open_input(str(VIDEO / "shapes_speech.mp4"), "auto", cfg)).__name__ == "AVSource"
    assert type(open_input(str(VIDEO / "shapes_speech.mp4"), "audio", cfg)).__name__ == "AudioSource"
    assert type(open_input(str(VIDEO / "shapes_speech.mp4"), "video", cfg)).__name__ == "VideoSource"


@pytest.mark.slow
def test_av_file_interleaves_speech_and_visual_chunks_in_start_order():
    src = open_input(str(VIDEO / "shapes_speech.mp4"), "av", load_config(None, ["asr.cadence=fixed"]))
    src.bind_clock(SimulatedClock())
    chunks = list(src)
    kinds = [c.modality for c in chunks]
    assert "audio" in kinds and "video" in kinds
    # interleaved, not one modality after the other: speech (0-3.2 s; one or two chunks, depending on whether
    # the ASR warm-up joins its two short sentences) sits between visual chunks
    first, last = kinds.index("audio"), len(kinds) - 1 - kinds[::-1].index("audio")
    assert "video" in kinds[:first] and "video" in kinds[last + 1 :], kinds
    starts = [c.start for c in chunks]
    assert starts == sorted(starts)
    assert all(0 <= c.start <= c.end <= src.duration + 0.05 for c in chunks)
    speech = " ".join(c.text for c in chunks if c.modality == "audio").lower()
    assert "red circles" in speech
    st = src.stats()
    assert st["asr_words"] >= 4 and st["video_frames"] >= 18


def test_av_needs_both_tracks():
    from adasr_mm.errors import InputError

    with pytest.raises(InputError, match="has no audio track"):
        open_input(str(VIDEO / "shapes.mp4"), "av", load_config())
    with pytest.raises(InputError, match="has no video track"):
        open_input(str(AUDIO / "pauses.flac"), "av", load_config())


@pytest.mark.slow
def test_run_on_the_bundled_video_answers(tmp_path):
    meta = json.loads((VIDEO / "samples.json").read_text())["shapes.mp4"]
    out = tmp_path / "ev.jsonl"
    r = cli("run", VIDEO / "shapes.mp4", "-q", meta["question"], "-o", out, "--max-thought-tokens", "8",
            "--max-deep-tokens", "24", "--max-answer-tokens", "8")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    chunks = [x["chunk"] for x in lines if x["type"] == "chunk"]
    assert chunks and all(c["modality"] == "video" for c in chunks)
    assert any("red circle" in c["text"] for c in chunks)
    assert [x["type"] for x in lines][-2:] == ["answer", "summary"]
    assert lines[-1]["video_frames"] == 20 and "[video" in r.stdout


def test_video_bad_inputs_via_cli(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes((VIDEO / "shapes.mp4").read_bytes()[:300])
    assert_clean_error(cli("run", bad, "-q", "Q?", "--modality", "video"), "is not a readable video file")
    assert_clean_error(cli("run", AUDIO / "pauses.flac", "-q", "Q?", "--modality", "video"), "has no video track")


@pytest.mark.slow
def test_late_speech_commits_after_later_visual_chunks_still_replay(tmp_path, make_tiny_policy):
    """Held-out style file: speech re-committed late (context re-decoding) lands after a later visual chunk."""
    import av
    import numpy as np

    from adasr_mm.adapters.audio_io import load_audio
    from adasr_mm.replay import replay
    from adasr_mm.session import Session

    speech = load_audio(AUDIO / "pauses.flac")
    path = tmp_path / "held.mp4"
    with av.open(str(path), "w") as c:
        vs = c.add_stream("libx264", rate=15)
        vs.width, vs.height, vs.pix_fmt = 160, 120, "yuv420p"
        a = c.add_stream("aac", rate=16000)
        a.layout = "mono"
        for i in range(13 * 15):
            img = np.full((120, 160, 3), 240, np.uint8)
            if i > 45:
                img[20:50, 20:50] = (220, 30, 30)
            if i > 120:
                img[60:100, 100:140] = (30, 60, 220)
            for p in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
        fr = av.AudioFrame.from_ndarray(speech[None, :], format="flt", layout="mono")
        fr.sample_rate = 16000
        rs = av.AudioResampler(format="fltp", layout="mono", rate=16000)
        for f in [*rs.resample(fr), *rs.resample(None)]:
            for p in a.encode(f):
                c.mux(p)
        for p in a.encode(None):
            c.mux(p)
    src = open_input(str(path), "auto", load_config())
    policy = make_tiny_policy(max_thought_tokens=2, max_deep_tokens=2, max_answer_tokens=2)
    res = replay(Session(policy, "How many marbles?", clock="simulated"), src)
    mods = [e.chunk.modality for e in res.events if e.type == "chunk"]
    assert mods.count("video") >= 2 and mods.count("audio") >= 2
    for m in ("audio", "video"):  # each modality stays in start order; late speech may follow later visuals
        starts = [e.chunk.start for e in res.events if e.type == "chunk" and e.chunk.modality == m]
        assert starts == sorted(starts)
    assert res.summary.answer_tokens >= 1
