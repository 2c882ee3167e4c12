"""Start the Gradio app: load the models once, build the page, serve it on a (by default loopback) port."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .config import AppSettings

SWITCH_INTERVAL_S = 0.001  # Python's default is 0.005
#: How long the startup self-check may wait for the local URL to answer (Gradio's own: one 3 s try).
STARTUP_CHECK_S = 60.0


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _patient_url_ok(url: str, budget_s: float = STARTUP_CHECK_S) -> bool:
    """Gradio's startup check, tolerant of a busy machine: retry timeouts until ``budget_s`` has passed.

    Gradio (6.x ``networking.url_ok``) gives up at the first HEAD that takes over 3 s, then refuses to start
    without a share link; on two loaded cores that first request can take longer. Same success codes as Gradio's.
    """
    import httpx

    deadline = time.monotonic() + budget_s
    while True:
        try:
            r = httpx.head(url, timeout=10, verify=False)
            if r.status_code in (200, 401, 301, 302, 303, 307, 308):
                return True
        except (ConnectionError, httpx.ConnectError, httpx.TimeoutException):
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.5)


@contextlib.contextmanager
def patient_startup_check() -> Iterator[None]:
    """Swap Gradio's startup URL check for :func:`_patient_url_ok` while ``launch()`` runs."""
    from gradio import networking

    original = networking.url_ok
    networking.url_ok = _patient_url_ok
    try:
        yield
    finally:
        networking.url_ok = original


def launch(settings: AppSettings, block: bool = True, engine: Any = None) -> tuple[Any, Any, str]:
    """Load the models once, build the page and serve it; returns (demo, engine, local url).

    ``block=False`` returns once the server is up (tests, benchmarks); call ``demo.close()`` and
    ``engine.close()`` to stop.
    """
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from .engine import Engine
    from .render import CSS
    from .ui import SAMPLES, build_app

    app = settings.app
    # The policy's forward passes are Python-heavy and hold the GIL most of the time; a short switch interval
    # lets the server's event loop (page loads, uploads, heartbeats) in between, so the page stays responsive
    # while sessions compute.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    engine = engine or Engine(settings)
    demo = build_app(engine)
    demo.queue(default_concurrency_limit=app.concurrency_limit, max_size=app.max_queue)
    port = app.port or free_port(app.host)
    allowed = [str(p) for p in (SAMPLES, engine.workdir) if Path(p).is_dir()]
    with patient_startup_check():
        demo.launch(server_name=app.host, server_port=port, share=app.share, prevent_thread_lock=not block,
                    max_file_size=f"{app.max_upload_bytes}b", allowed_paths=allowed, show_error=True,
                    quiet=not block, ssr_mode=False, inbrowser=False, css=CSS, footer_links=[])
    url = getattr(demo, "local_url", None) or f"http://{app.host}:{port}/"
    return demo, engine, url
