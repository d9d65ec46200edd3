"""Kept for now: `python -m bench.check_telemetry` is `python -m bench check-telemetry`."""

import sys

from bench.__main__ import run

if __name__ == "__main__":
    sys.exit(run("check-telemetry"))
