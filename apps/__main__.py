"""``python -m apps [flags]``: the Gradio app without the ``adasr-mm`` command."""

import sys

from .cli import main

sys.exit(main())
