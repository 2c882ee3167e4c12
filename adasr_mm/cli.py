"""``adasr-mm`` command line. Subcommands beyond ``run`` are contributed by other packages through the
``adasr_mm.commands`` entry-point group (so the core never imports training/ or apps/)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from importlib.metadata import entry_points

from . import __version__
from .config import parse_args_with_overrides
from .errors import AdasrError

Command = tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]


def _quiet_libraries(debug: bool) -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not debug:
        try:
            import transformers

            transformers.utils.logging.set_verbosity_error()
            transformers.utils.logging.disable_progress_bar()
        except ImportError:  # pragma: no cover
            pass


# -- run -----------------------------------------------------------------------------------------------------------
def _add_run(p: argparse.ArgumentParser) -> None:
    from .adapters import supported
    from .config import AdasrConfig, add_config_flags

    p.add_argument("input", help=f"media file to stream: {supported()}")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. policy.temperature=0.7")
    p.add_argument("--question", "-q", required=True, help="the question to answer about the stream")
    p.add_argument("--config", help="YAML config file (sections: see configs/default.yaml)")
    p.add_argument("--output", "-o", help="write every event as JSON lines to this file (last line: summary)")
    p.add_argument("--quiet", action="store_true", help="print only the summary line")
    add_config_flags(p, AdasrConfig(), skip={"system_prompt"})


def _run(args: argparse.Namespace) -> int:
    from .config import apply_config_flags, load_config
    from .runner import run_media

    bad = [o for o in args.overrides if "=" not in o]
    if bad:
        raise AdasrError(f"unexpected argument {bad[0]!r}: only one INPUT is accepted; overrides are key=value")
    cfg = apply_config_flags(load_config(args.config, args.overrides), args)
    run_media(args.input, args.question, cfg, output=args.output, quiet=args.quiet)
    return 0


BUILTIN: dict[str, tuple[str, Command]] = {
    "run": ("stream a media file through the policy and print the live trace and answer", (_add_run, _run)),
}


def _plugin_commands() -> dict[str, tuple[str, Command]]:
    found: dict[str, tuple[str, Command]] = {}
    for ep in entry_points(group="adasr_mm.commands"):
        try:
            help_, add, fn = ep.load()()
        except Exception as e:  # a broken optional plugin must not break `run`
            logging.getLogger(__name__).debug("command %s unavailable: %s", ep.name, e)
            continue
        found[ep.name] = (help_, (add, fn))
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="adasr-mm", description="Streaming reasoning over live audio, video and text.")
    parser.add_argument("--version", action="version", version=f"adasr-mm {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and library logs")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_, (add, fn)) in {**BUILTIN, **_plugin_commands()}.items():
        p = sub.add_parser(name, help=help_, description=help_)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
        add(p)
        p.set_defaults(func=fn)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parse_args_with_overrides(parser, argv)
    debug = bool(getattr(args, "debug", False))
    _quiet_libraries(debug)
    try:
        return int(args.func(args) or 0)
    except AdasrError as e:
        if debug:
            raise
        print(f"adasr-mm: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("adasr-mm: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
