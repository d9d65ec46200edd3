"""Kept for now: `python -m bench.check_warmup` is `python -m bench check-warmup`."""

import sys

from bench.__main__ import run

if __name__ == "__main__":
    sys.exit(run("check-warmup"))
