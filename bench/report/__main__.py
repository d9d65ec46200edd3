"""Run the report stage: python -m bench report [PATHS...] [--out DIR]."""

import sys

from bench.__main__ import run

# the report's drawing processes import this module again: they must not run it
if __name__ == "__main__":
    sys.exit(run("report"))
