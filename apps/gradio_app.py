"""``python -m apps.gradio_app [flags]``: the same app as ``adasr-mm app`` without the ``adasr-mm`` command."""

from __future__ import annotations

import argparse
import sys

from .cli import add_app_args, run_app


def main(argv: list[str] | None = None) -> int:
    import logging

    from adasr_mm.errors import AdasrError

    p = argparse.ArgumentParser(prog="python -m apps.gradio_app", description="adasr-mm Gradio app")
    p.add_argument("--debug", action="store_true", help="show tracebacks and library logs")
    add_app_args(p)
    args = p.parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
