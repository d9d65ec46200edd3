"""Run the report stage: python -m bench report [PATHS...] [--out DIR]."""

import sys

from bench.__main__ import run

sys.exit(run("report"))
