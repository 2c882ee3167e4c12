"""The app's pieces that need no model: settings and flags, rendering, upload checks, presets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from adasr_mm.chunks import TimedChunk
from adasr_mm.errors import ConfigError
from adasr_mm.events import AnswerEvent, ChunkEvent, DeepEvent, SkipEvent, ThoughtEvent, event_from_json

ROOT = Path(__file__).resolve().parents[1]


def parse(argv: list[str]):
    from adasr_mm.cli import build_parser
    from apps.cli import settings_from_args

    return settings_from_args(build_parser().parse_args(["app", *argv]))


def test_defaults_bind_localhost_and_never_share():
    s = parse([])
    assert (s.app.host, s.app.port, s.app.share) == ("127.0.0.1", 7860, False)
    s = parse(["--share", "--port", "7861", "--max-upload-mb", "5", "--max-stream-s", "30", "--asr", "base",
               "--max-deep-tokens", "16", "app.max_runs=2"])
    assert s.app.share and s.app.port == 7861 and s.app.max_upload_bytes == 5 * 2**20
    assert (s.app.max_stream_s, s.app.max_runs, s.asr.model, s.policy.max_deep_tokens) == (30, 2, "base", 16)


def test_bad_settings_name_the_problem():
    with pytest.raises(ConfigError, match="max_upload_mb must be > 0"):
        parse(["--max-upload-mb", "0"])
    with pytest.raises(ConfigError, match="unknown config key app.nope"):
        parse(["app.nope=1"])
    with pytest.raises(ConfigError, match="file_clock"):
        parse(["--file-clock", "simulated"])


def test_app_yaml_loads():
    s = parse(["--config", str(ROOT / "configs" / "app.yaml")])
    assert s.app.host == "127.0.0.1" and not s.app.share and s.policy.max_deep_tokens == 128


def test_module_entry_point_help():
    out = subprocess.run([sys.executable, "-m", "apps", "--help"], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 0 and "--max-stream-s" in out.stdout and "--share" in out.stdout


def events():
    c0 = TimedChunk(0.0, 2.0, "Tom has <b>5</b> apples.", modality="audio", index=0)
    c1 = TimedChunk(2.0, 4.0, "A dog barks.", modality="video", index=1)
    return [ChunkEvent(0, c0, 2.0, 2.0, 2.1, 12, 0.0), ThoughtEvent(0, "five apples", 4, 2.1, 2.3),
            ChunkEvent(1, c1, 4.0, 4.6, 4.7, 8, 0.6), SkipEvent(1, 4.7, 4.8),
            DeepEvent("5 apples", 3, 5.0, 5.0, 5.1, 5.4, 1), AnswerEvent("\\boxed{5}", "5", 4, 5.5, 5.7, 0.5, 0.7)]


def test_trace_escapes_media_text_and_dims_skips():
    from apps import render

    html = render.trace_html(events(), {"stream:2": "writing"})
    assert "<b>5</b>" not in html and "&lt;b&gt;5&lt;/b&gt;" in html
    assert html.count('class="ev chunk"') == 2 and 'class="ev skip"' in html and "lag 0.6s" in html
    assert "writing…" in html and "opacity" in render.CSS.split("#trace .skip")[1].split("}")[0]
    ans = render.answer_html(events())
    assert 'class="answer-value">5<' in ans and "0.50 s after the stream ended" in ans
    m = render.metrics(events(), t_stop=5.0)
    assert (m["chunks"], m["thoughts"], m["skips"], m["deep tokens"], m["stop → answer (s)"]) == (2, 1, 1, 3, 0.5)


def test_timeline_png_and_jsonl(tmp_path):
    from apps import render

    png = render.timeline_png(events(), tmp_path / "t.png", title="q")
    assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    path = render.write_jsonl(events(), tmp_path / "e.jsonl")
    back = [event_from_json(line) for line in Path(path).read_text().splitlines()]
    assert [e.type for e in back] == ["chunk", "thought", "chunk", "skip", "deep", "answer"]
    assert json.loads(Path(path).read_text().splitlines()[0])["chunk"]["text"].startswith("Tom has")


def test_upload_checks(tmp_path):
    from apps.ui import check_upload

    f = tmp_path / "a.wav"
    f.write_bytes(b"x" * 2000)
    assert check_upload(str(f), "", 10_000) == "Type a question first."
    assert check_upload(None, "q", 10_000) == "Choose a file to upload first."
    assert "limited to" in check_upload(str(f), "q", 1000)
    (tmp_path / "e.txt").write_bytes(b"")
    assert check_upload(str(tmp_path / "e.txt"), "q", 1000) == "The file is empty."
    assert check_upload(str(f), "q", 10_000) == ""


def test_presets_come_from_the_bundled_samples():
    from apps.ui import presets

    p = presets()
    video = [v for k, v in p.items() if k.startswith("shapes.mp4")]
    assert video and video[0][0] == "How many red circles appeared?" and Path(video[0][1]).is_file()
    assert any(k.startswith("apples.opus") for k in p)
