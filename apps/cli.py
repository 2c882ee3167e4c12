"""``adasr-mm app``: start the Gradio app (registered through the ``adasr_mm.commands`` entry point).

Also what ``python -m apps`` runs. Every runtime setting is a flag as for ``adasr-mm run``
(``--policy``, ``--asr``, ``--max-thought-tokens`` ...), plus the ``app`` section: ``--host``, ``--port``,
``--max-upload-mb``, ``--max-stream-s`` ...; ``--share`` is the only way to get a public link.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from .config import AppSettings, load_settings

log = logging.getLogger(__name__)


def _check_overrides(overrides: list[str]) -> None:
    from adasr_mm.errors import ConfigError

    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise ConfigError(f"unexpected argument {bad[0]!r}: overrides are section.key=value")


def add_app_args(p: argparse.ArgumentParser) -> None:
    from adasr_mm.config import add_config_flags

    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. app.max_runs=4")
    p.add_argument("--config", help="YAML config (runtime sections plus 'app:'; see configs/app.yaml)")
    p.add_argument("--share", action="store_true", default=None,
                   help="also create a public Gradio share link (never done without this flag)")
    add_config_flags(p, AppSettings(), skip={"system_prompt", "share"})


def settings_from_args(args: argparse.Namespace) -> AppSettings:
    from adasr_mm.config import apply_config_flags

    _check_overrides(args.overrides)
    settings = apply_config_flags(load_settings(args.config, args.overrides), args)
    if args.share:
        settings.app.share = True
    return settings  # type: ignore[return-value]


def run_app(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    print(f"adasr-mm app: loading models (policy {settings.policy.policy or 'default (trained LoRA on SmolLM2-135M)'}, "
          f"ASR {settings.asr.model}) ...", flush=True)
    from .launch import launch

    launch(settings, block=True)
    return 0


def app_command() -> tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]:
    """Entry point for ``adasr_mm.commands``: (help, add_args, run)."""
    return ("start the Gradio app: live microphone/webcam or a file, live thoughts and answer",
            add_app_args, run_app)


def add_serve_args(p: argparse.ArgumentParser) -> None:
    from adasr_mm.config import add_config_flags

    from .config import ServeSettings

    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. serve.max_sessions=4")
    p.add_argument("--config", help="YAML config (runtime sections plus 'serve:')")
    add_config_flags(p, ServeSettings(), skip={"system_prompt"})


def run_serve(args: argparse.Namespace) -> int:
    from adasr_mm.config import apply_config_flags

    from .config import load_serve_settings
    from .serve import serve

    _check_overrides(args.overrides)
    settings = apply_config_flags(load_serve_settings(args.config, args.overrides), args)
    serve(settings, settings.serve, block=True)  # type: ignore[attr-defined]
    return 0


def serve_command() -> tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]:
    """Entry point for ``adasr_mm.commands``: ``adasr-mm serve``."""
    return ("serve the OpenAI-Realtime-compatible WebSocket API (/v1/realtime) on 127.0.0.1",
            add_serve_args, run_serve)


def main(argv: list[str] | None = None) -> int:
    """``python -m apps [flags]``: the same app as ``adasr-mm app`` without the ``adasr-mm`` command."""
    from adasr_mm.config import parse_args_with_overrides
    from adasr_mm.errors import AdasrError

    p = argparse.ArgumentParser(prog="python -m apps", description="adasr-mm Gradio app")
    p.add_argument("--debug", action="store_true", help="show tracebacks and library logs")
    add_app_args(p)
    args = parse_args_with_overrides(p, argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return run_app(args)
    except AdasrError as e:
        if args.debug:
            raise
        print(f"adasr-mm app: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
