"""Run the report stage: python -m bench report [PATHS...] [--out DIR]."""

import sys

from bench.__main__ import run

if (
    __name__ == "__main__"
):  # the report's drawing processes import this module again: they must not run it
    sys.exit(run("report"))
