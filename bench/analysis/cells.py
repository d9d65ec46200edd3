"""How a figure reads in a table cell, the same in the report's tables and the end-of-run answer: a time, its
marks, the name of what ran."""

from __future__ import annotations

import pandas as pd

from bench.analysis.words import fmt_time

__all__ = [
    "BUSY",
    "NOISY",
    "ONE_ROUND",
    "PARTIAL",
    "RUN_KIND",
    "SUSPECT",
    "THROTTLED",
    "device_label",
    "fmt_seconds",
    "marks",
]

# The marks a figure carries, explained once on the page (see the marks in bench/report/templates/sections.j2).
NOISY, ONE_ROUND, PARTIAL, THROTTLED, BUSY = (
    " ~",
    " (1 round)",
    " (partial)",
    " (throttled)",
    " (busy)",
)
SUSPECT = " (suspect)"
RUN_KIND = {False: "full", True: "quick"}


def fmt_seconds(value: float) -> str:
    """A time in a table cell: fmt_time's words, empty where there is none."""
    return "" if pd.isna(value) else fmt_time(value)


def marks(r) -> str:
    """The marks of a row, in one order: noisy, one round, throttled, busy, suspect."""
    return (
        (NOISY if getattr(r, "noisy", False) else "")
        + (ONE_ROUND if getattr(r, "one_round", False) else "")
        + (THROTTLED if getattr(r, "throttled", False) else "")
        + (BUSY if getattr(r, "busy", False) else "")
        + (SUSPECT if getattr(r, "suspect", False) else "")
    )


def device_label(frame: pd.DataFrame) -> pd.Series:
    """How tables and plots name what ran: "cpu 2t" for the CPU at 2 threads (as in the case ids), else the device."""
    device = frame["device"].astype(str)
    threads = frame["cpu_threads"]
    cpu = (device == "cpu") & threads.notna()
    return device.where(~cpu, "cpu " + threads.astype("string").fillna("") + "t")
