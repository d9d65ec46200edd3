"""Kept for now: `python -m bench.check_gpu` is `python -m bench check-gpu`."""

import sys

from bench.__main__ import run

if __name__ == "__main__":
    sys.exit(run("check-gpu"))
