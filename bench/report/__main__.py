"""Run the report stage: python -m bench report [PATHS...] [--out DIR]."""

import sys

from bench.report.cli import main

sys.exit(main())
