"""``adasr-mm app``: start the Gradio app (registered through the ``adasr_mm.commands`` entry point).

Also what ``python -m apps.gradio_app`` runs. Every runtime setting is a flag as for ``adasr-mm run``
(``--policy``, ``--asr``, ``--max-thought-tokens`` ...), plus the ``app`` section: ``--host``, ``--port``,
``--max-upload-mb``, ``--max-stream-s`` ...; ``--share`` is the only way to get a public link.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .config import AppSettings, load_settings

log = logging.getLogger(__name__)

SWITCH_INTERVAL_S = 0.001  # Python's default is 0.005


def add_app_args(p: argparse.ArgumentParser) -> None:
    from adasr_mm.config import add_config_flags

    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. app.max_runs=4")
    p.add_argument("--config", help="YAML config (runtime sections plus 'app:'; see configs/app.yaml)")
    p.add_argument("--share", action="store_true", default=None,
                   help="also create a public Gradio share link (never done without this flag)")
    add_config_flags(p, AppSettings(), skip={"system_prompt", "share"})


def settings_from_args(args: argparse.Namespace) -> AppSettings:
    from adasr_mm.config import apply_config_flags
    from adasr_mm.errors import ConfigError

    bad = [o for o in args.overrides if "=" not in o]
    if bad:
        raise ConfigError(f"unexpected argument {bad[0]!r}: overrides are section.key=value")
    settings = apply_config_flags(load_settings(args.config, args.overrides), args)
    if args.share:
        settings.app.share = True
    return settings  # type: ignore[return-value]


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


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
    demo.launch(server_name=app.host, server_port=port, share=app.share, prevent_thread_lock=not block,
                max_file_size=f"{app.max_upload_bytes}b", allowed_paths=allowed, show_error=True, quiet=not block,
                ssr_mode=False, inbrowser=False, css=CSS, footer_links=[])
    url = getattr(demo, "local_url", None) or f"http://{app.host}:{port}/"
    return demo, engine, url


def run_app(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    print(f"adasr-mm app: loading models (policy {settings.policy.policy or 'embedded SmolLM2-135M'}, "
          f"ASR {settings.asr.model}) ...", flush=True)
    launch(settings, block=True)
    return 0


def app_command() -> tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]:
    """Entry point for ``adasr_mm.commands``: (help, add_args, run)."""
    return ("start the Gradio app: live microphone/webcam or a file, live thoughts and answer",
            add_app_args, run_app)
