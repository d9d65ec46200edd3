"""Kept for now: `python -m bench.check_allocator` is `python -m bench check-allocator`."""

import sys

from bench.__main__ import run

if __name__ == "__main__":
    sys.exit(run("check-allocator"))
