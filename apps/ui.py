"""The Gradio Blocks page: question + preset, Live (microphone, webcam, Stop) and File tabs, trace and answer.

Handlers never compute: they hand media to the connection's run (:mod:`apps.runs`) and render what it has so
far, so every connection's session is independent and the page stays responsive while the model works.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from adasr_mm.adapters import supported_extensions
from adasr_mm.errors import AdasrError

from . import render
from .engine import Engine
from .runs import Run

log = logging.getLogger(__name__)

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
UPLOAD_TYPES = list(supported_extensions())  # from the adapter registry: every file type `adasr-mm run` opens
POLL_S = 0.25  # how often a waiting handler re-renders a changing run


def presets(samples: Path = SAMPLES) -> dict[str, tuple[str, str | None]]:
    """Preset label -> (question, sample file or None) from the bundled ``samples/*/samples.json``."""
    out: dict[str, tuple[str, str | None]] = {"(type your own question)": ("", None)}
    for kind in ("audio", "video", "text"):
        index = samples / kind / "samples.json"
        if not index.is_file():
            continue
        for name, info in json.loads(index.read_text(encoding="utf-8")).items():
            path = samples / kind / name
            if path.is_file() and info.get("question"):
                out[f"{name} ({kind}): {info['question']}"] = (info["question"], str(path))
    return out


class View:
    """Renders a connection's run into the page's outputs (status, trace, answer, metrics, timeline, jsonl)."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def live(self, run: Run | None, message: str = "") -> tuple[Any, ...]:
        """The fast-changing outputs; the timeline and JSONL are left alone until the run is done."""
        if run is None:
            return (message or render.status_md(None), gr.skip(), gr.skip(), gr.skip())
        events, partial = run.snapshot()
        status = render.status_md(run)
        if message:
            status = f"{message}  \n{status}"
        return (status, render.trace_html(events, partial), render.answer_html(events, partial),
                render.metrics_html(events, run.t_stop))

    def full(self, run: Run | None, message: str = "") -> tuple[Any, ...]:
        head = self.live(run, message)
        if run is not None and not run.done:
            return (*head, gr.skip(), gr.skip())
        if run is None or not run.events:  # nothing (or a failure): clear the previous run's downloads
            return (*head, None, None)
        if not run.artifacts:
            out = run.out_dir or self.engine.workdir
            out.mkdir(parents=True, exist_ok=True)
            events, _ = run.snapshot()
            run.artifacts = {
                "timeline": render.timeline_png(events, out / f"timeline-{run.id}.png", title=run.question,
                                                 media_axis=run.kind == "live" or run.clock.media_timed),
                "jsonl": render.write_jsonl(events, out / f"events-{run.id}.jsonl"),
            }
        return (*head, run.artifacts["timeline"], run.artifacts["jsonl"])

    def follow(self, run: Run) -> Iterator[tuple[Any, ...]]:
        """Yield renders while ``run`` changes (at most every :data:`POLL_S`), the last one once it is done."""
        shown = None
        while True:
            version, done = run.version, run.done
            if version != shown:
                shown = version
                yield self.full(run)
            if done:
                return
            run.wait_change(version, timeout=1.0)
            time.sleep(POLL_S)  # deltas change the run per token: re-render at a human rate


def build_app(engine: Engine) -> gr.Blocks:
    """The page; one :class:`~apps.engine.Connection` per browser session (its key lives in ``gr.State``)."""
    app = engine.settings.app
    view = View(engine)
    choices = presets()
    limit_note = (f"Limits: uploads ≤ {app.max_upload_mb:g} MB, streams ≤ {app.max_stream_s:g} s. "
                  f"Policy: `{engine.agent.policy.name}`.")
    with gr.Blocks(title="adasr-mm", delete_cache=(600, 3600)) as demo:
        gr.Markdown("## adasr-mm — the model thinks while the media plays, and answers right after it stops\n"
                    + limit_note)
        key = gr.State(None, delete_callback=engine.release)
        with gr.Row():
            question = gr.Textbox(label="Question", placeholder="e.g. How many apples does Tom have now?",
                                  elem_id="question", scale=3)
            preset = gr.Dropdown(list(choices), value=None, label="Preset", elem_id="preset", scale=2)
        with gr.Tabs():
            with gr.Tab("Live", id="live", elem_id="tab-live"):
                with gr.Row():
                    mic = gr.Audio(sources=["microphone"], streaming=True, type="numpy", label="Microphone",
                                   elem_id="mic")
                    # unmirrored: Gradio mirrors the frames it sends along with the preview, and the describer
                    # should see the world (and on-screen text) as it is
                    cam = gr.Image(sources=["webcam"], streaming=True, type="numpy", label="Webcam",
                                   elem_id="cam", webcam_options=gr.WebcamOptions(mirror=False))
                stop = gr.Button("Stop and answer", variant="primary", elem_id="stop")
            with gr.Tab("File", id="file", elem_id="tab-file"):
                upload = gr.File(label="Audio, video or text file", file_types=UPLOAD_TYPES, type="filepath",
                                 elem_id="upload")
                with gr.Row():
                    clock = gr.Radio(["realtime", "instant"], value=app.file_clock, label="Clock",
                                     elem_id="clock")
                    run_file = gr.Button("Stream the file", variant="primary", elem_id="run-file")
        status = gr.Markdown(render.status_md(None), elem_id="status")
        with gr.Row():
            gr.Markdown("**Live trace** — chunks as they arrive, thoughts under them, skips dimmed")
            gr.Markdown("**Deep reasoning and answer** · live metrics")
        with gr.Row():
            trace = gr.HTML(render.trace_html([]), label="Live trace", elem_id="trace")
            with gr.Column():
                answer = gr.HTML(render.answer_html([]), label="Answer", elem_id="answer")
                metrics = gr.HTML(render.metrics_html([]), label="Metrics", elem_id="metrics")
        with gr.Row():
            timeline = gr.Image(label="Timeline", type="filepath", interactive=False, elem_id="timeline")
            jsonl = gr.File(label="Events (JSONL)", interactive=False, elem_id="events-file")

        live_out = [status, trace, answer, metrics]
        full_out = [*live_out, timeline, jsonl]

        def pick_preset(label: str | None) -> tuple[Any, Any]:
            q, path = choices.get(label or "", ("", None))
            return (q or gr.skip(), path or gr.skip())

        def on_record(q: str, request: gr.Request) -> tuple[Any, ...]:
            conn = engine.connection(request.session_hash)
            conn.armed = True
            run = conn.open_live()
            if run is None and (q or "").strip():
                try:
                    run = engine.start_live(conn, q)
                    conn.armed = False
                except AdasrError as e:
                    return (*view.live(conn.run, f"**Error:** {e}"), request.session_hash)
            msg = "" if (q or "").strip() else "**Type a question first**, then record."
            return (*view.live(run or conn.run, msg), request.session_hash)

        def on_media(kind: str, data: Any, q: str, request: gr.Request) -> tuple[Any, ...]:
            conn = engine.connection(request.session_hash)
            if data is None:
                return view.live(conn.run)
            if not (q or "").strip():
                return view.live(None, "**Type a question first:** the stream is ignored until there is one.")
            try:
                run = engine.live_run_for(conn, kind, q)
            except AdasrError as e:
                return view.live(conn.run, f"**Error:** {e}")
            if run is not None:
                if kind == "audio":
                    sr, samples = data
                    run.push_audio(int(sr), samples)
                else:
                    run.push_frame(data)
            return view.live(run or conn.run)

        def on_audio(data: Any, q: str, request: gr.Request) -> tuple[Any, ...]:
            return on_media("audio", data, q, request)

        def on_frame(data: Any, q: str, request: gr.Request) -> tuple[Any, ...]:
            return on_media("frame", data, q, request)

        def on_stop(request: gr.Request) -> Iterator[tuple[Any, ...]]:
            conn = engine.connection(request.session_hash)
            run = conn.run
            if run is None:
                yield (*view.full(None, "Nothing to stop: record first (or upload a file)."), request.session_hash)
                return
            if run.kind == "live":
                run.stop()  # type: ignore[attr-defined]
            for out in view.follow(run):
                yield (*out, request.session_hash)

        def on_file(path: str | None, q: str, clk: str, request: gr.Request) -> Iterator[tuple[Any, ...]]:
            conn = engine.connection(request.session_hash)
            problem = check_upload(path, q, app.max_upload_bytes)
            if problem:
                yield (*view.full(None, f"**Error:** {problem}"), request.session_hash)
                return
            try:
                run = engine.start_file(conn, q, str(path), clk if clk in ("realtime", "instant") else "instant")
            except AdasrError as e:
                yield (*view.full(None, f"**Error:** {e}"), request.session_hash)
                return
            for out in view.follow(run):
                yield (*out, request.session_hash)

        limit = dict(concurrency_limit=app.concurrency_limit)
        preset.change(pick_preset, [preset], [question, upload], queue=False)
        mic.start_recording(on_record, [question], [*live_out, key], **limit)
        mic.stream(on_audio, [mic, question], live_out, stream_every=app.audio_every_s,
                   time_limit=int(app.max_stream_s) + 5, api_visibility="private", **limit)
        mic.stop_recording(on_stop, None, [*full_out, key], **limit)
        cam.stream(on_frame, [cam, question], live_out, stream_every=app.video_every_s,
                   time_limit=int(app.max_stream_s) + 5, api_visibility="private", **limit)
        stop.click(on_stop, None, [*full_out, key], api_name="stop", **limit)
        run_file.click(on_file, [upload, question, clock], [*full_out, key], api_name="run_file", **limit)
        def on_unload(request: gr.Request) -> None:
            engine.release(request.session_hash)

        demo.unload(on_unload)
    return demo


def check_upload(path: str | None, question: str, max_bytes: int) -> str:
    """A clear reason the upload cannot be streamed, or ''. (Gradio refuses oversize uploads itself; this also
    covers clients that bypass the page.)"""
    if not (question or "").strip():
        return "Type a question first."
    if not path:
        return "Choose a file to upload first."
    if not os.path.isfile(path):
        return "The upload did not arrive; try again."
    size = os.path.getsize(path)
    if size > max_bytes:
        return (f"The file is {size / 2**20:.1f} MB; uploads are limited to {max_bytes / 2**20:g} MB "
                "(max_upload_mb).")
    if size == 0:
        return "The file is empty."
    return ""
