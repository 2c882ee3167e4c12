"""The app starts on a busy machine: Gradio's own startup check gives up after one 3 s request, which a loaded
machine can miss; `apps.launch` waits patiently instead (and never falls back to a share link)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture
def busy_cores():
    """One busy-looping process per core for the duration of the test."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 2)]
    yield
    for p in procs:
        p.kill()
        p.wait()


def test_app_starts_while_every_core_is_busy(busy_cores, make_tiny_policy):
    import httpx

    from adasr_mm.agent import StreamingAgent
    from apps.config import load_settings
    from apps.engine import Engine
    from apps.launch import launch

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    settings = load_settings(None, ["app.port=0"])
    engine = Engine(settings, agent=StreamingAgent(make_tiny_policy(), settings))
    demo, engine, url = launch(settings, block=False, engine=engine)
    try:
        assert url.startswith("http://127.0.0.1:")
        assert not getattr(demo, "share_url", None)  # no share link, even though the check ran under load
        r = httpx.get(url, timeout=60)
        assert r.status_code == 200 and "gradio" in r.text.lower()
    finally:
        demo.close()
        engine.close()


def test_the_startup_check_retries_until_the_server_answers(monkeypatch):
    """The patient check keeps trying through timeouts and refusals (Gradio's returns False on the first)."""
    import httpx

    from apps import launch as launch_mod

    calls = []

    def head(url, timeout, verify):
        calls.append(url)
        if len(calls) < 3:
            raise httpx.ConnectTimeout("busy") if len(calls) == 1 else httpx.ConnectError("not yet")
        return httpx.Response(200)

    monkeypatch.setattr(httpx, "head", head)
    monkeypatch.setattr(launch_mod.time, "sleep", lambda s: None)
    assert launch_mod._patient_url_ok("http://127.0.0.1:1/", budget_s=30)
    assert len(calls) == 3
