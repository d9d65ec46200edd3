"""Kept for now: `python -m bench.cost` is `python -m bench cost`."""

import sys

from bench.__main__ import run

if __name__ == "__main__":
    sys.exit(run("cost"))
