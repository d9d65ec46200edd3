"""Run the report stage: python -m bench.report [PATHS...] [--out DIR]."""

import sys

from .cli import main

sys.exit(main())
