"""Kept for now: `python -m bench.compare` is `python -m bench compare`."""

import sys

from bench.__main__ import run

if __name__ == "__main__":
    sys.exit(run("compare"))
