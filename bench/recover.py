"""Kept for now: `python -m bench.recover` is `python -m bench recover`."""

import sys

from bench.__main__ import run

if __name__ == "__main__":
    sys.exit(run("recover"))
