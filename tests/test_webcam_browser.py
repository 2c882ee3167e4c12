"""The app's webcam path through a real browser: headless Debian Chromium whose fake camera plays a y4m rendered
here from known content (a slide with large text), a real Gradio server with the embedded SmolLM2, and the real
video describer with RapidOCR. The trace must show the slide's text: the frames went browser -> Gradio stream ->
engine -> video adapter -> OCR -> chunk -> policy -> page. Screenshots go to runs/test-artifacts/app/.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from adasr_mm.adapters.ocr import edit_distance
from adasr_mm.adapters.synthetic import draw_slide, write_y4m

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("ADASR_TEST_ARTIFACTS", ROOT / "runs" / "test-artifacts" / "app"))
CAPS = ["policy.max_thought_tokens=8", "policy.max_deep_tokens=24", "policy.max_answer_tokens=12", "app.port=0"]
SLIDE = ["Seven apples", "Room B214"]


def squash(text: str) -> str:
    return re.sub(r"\s+", "", text).lower()


@pytest.fixture(scope="module")
def server():
    pytest.importorskip("rapidocr_onnxruntime", reason="slide text needs the [ocr] extra (RapidOCR)")
    os.environ["GRADIO_HEARTBEAT_INTERVAL"] = "2"
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from apps.config import load_settings
    from apps.launch import launch

    settings = load_settings(None, [*CAPS, "video.ocr=on"])
    demo, engine, url = launch(settings, block=False)
    yield engine, url.rstrip("/")
    demo.close()
    engine.close()


@pytest.fixture(scope="module")
def camera(tmp_path_factory) -> Path:
    """A y4m the fake camera loops: the slide, 640x480, 10 frames at 10 fps (Chromium reads it as-is)."""
    frame = draw_slide(SLIDE, (640, 480), text_px=64)
    return write_y4m([frame] * 10, tmp_path_factory.mktemp("cam") / "slide.y4m", fps=10)


@pytest.fixture(scope="module")
def browser_page(server, camera):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"browser tests need Debian chromium at {CHROMIUM} (apt-get install chromium)")
    pw = pytest.importorskip("playwright.sync_api", reason="browser tests need playwright (pip install playwright)")
    _, url = server
    with pw.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream", f"--use-file-for-fake-video-capture={camera}"])
        ctx = browser.new_context(viewport={"width": 1300, "height": 1400})
        ctx.grant_permissions(["microphone", "camera"], origin=url)
        page = ctx.new_page()
        page.goto(url)
        page.wait_for_selector("#question textarea")
        try:
            yield page
        finally:
            browser.close()


def test_webcam_slide_text_reaches_the_trace(server, browser_page):
    engine, _ = server
    page = browser_page
    page.fill("#question textarea", "Which room is on the slide?")
    page.get_by_role("button", name="Click to Access Webcam").click()
    page.wait_for_selector("#cam button.capture-button", timeout=60_000)
    page.click("#cam button.capture-button")  # start streaming frames
    page.wait_for_function("document.querySelector('#trace').innerText.includes('Text on screen')",
                           timeout=120_000)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "webcam-slide-streaming.png"), full_page=True)
    page.click("#stop")
    page.wait_for_selector("#answer .final", timeout=120_000)
    page.screenshot(path=str(ARTIFACTS / "webcam-slide-answer.png"), full_page=True)
    href = page.get_attribute("#events-file a[href]", "href")
    events = [json.loads(x) for x in page.request.get(href).text().splitlines() if x.strip()]
    chunks = [e["chunk"] for e in events if e["type"] == "chunk"]
    assert chunks and {c["modality"] for c in chunks} == {"video"} and {c["source"] for c in chunks} == {"webcam"}
    read = [line for c in chunks for line in (c.get("meta", {}).get("describer", {}).get("text") or [])]
    assert len(read) == len(SLIDE)  # read once, not once per frame
    trace = page.inner_text("#trace")
    assert all(f'"{got}"' in trace for got in read), trace
    ref, hyp = squash(" ".join(SLIDE)), squash(" ".join(read))
    assert edit_distance(ref, hyp) <= 0.1 * len(ref), (SLIDE, read)  # OCR may misread a letter ("Ro0m")
    assert events[-1]["type"] == "summary" and events[-1]["video_frames"] >= 2
