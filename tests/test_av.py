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
    src = open_input(str(VIDEO / "shapes_speech.mp4"), "av", load_config())
    src.bind_clock(SimulatedClock())
    chunks = list(src)
    kinds = [c.modality for c in chunks]
    assert "audio" in kinds and "video" in kinds
    switches = sum(a != b for a, b in zip(kinds, kinds[1:], strict=False))
    assert switches >= 3, kinds  # interleaved, not one modality after the other
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
