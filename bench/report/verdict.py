"""What comparing two runs decides: each case's verdict (its ratio's interval and the factor a change must pass),
and what changed around the runs (commit, torch, driver, machine)."""

from __future__ import annotations

import json
import math

import pandas as pd

from bench.analysis.intervals import Ratio
from bench.analysis.words import fmt_time
from bench.format import records as fmt

__all__ = [
    "DEFAULT_FACTOR",
    "FASTER",
    "ONE_ROUND",
    "SAME",
    "SLOWER",
    "UNPAIRED",
    "VERDICTS",
    "environment_changes",
    "run_state",
    "as_text",
    "figure_said",
    "marks_of",
    "shortened",
    "verdict",
]


# asv compare's default factor: a change under 10% is not reported, whatever the interval says. It
# is also the noise line of docs/design.md (an IQR over 10% of the median is noisy), so a flagged
# change clears that too.
DEFAULT_FACTOR = 1.10


SLOWER, FASTER, SAME, ONE_ROUND, UNPAIRED = (
    "slower",
    "faster",
    "same within noise",
    "can't tell (one round)",
    "unpaired",
)
# In the order the table lists them: regressions first.
VERDICTS = (SLOWER, FASTER, SAME, ONE_ROUND, UNPAIRED)


def verdict(ratio: Ratio, old_rounds: int, new_rounds: int, factor: float) -> tuple[str, str]:
    """(verdict, why) for one case measured in both runs, from NEW/OLD (`ratio`: the same estimate and interval
    the table prints) and each run's rounds.

    Beyond the noise means both: the ratio is beyond `factor`, and its 95% interval lies wholly on that side of
    1. A verdict is never stronger than its interval: an interval that includes 1 is no difference measured,
    however far the ratio (a rule of "every round apart" decided 3 rounds against 3 at p = 0.1, and printed
    "faster" beside "0.19-1.17, no difference measured").
    """
    if min(old_rounds, new_rounds) < 2:
        side = "OLD" if old_rounds < 2 else "NEW"
        if old_rounds == new_rounds:
            side = "both"
        return ONE_ROUND, f"{side}: one round, no spread to weigh the change against"
    if not math.isfinite(ratio.value) or ratio.side is None:
        return ONE_ROUND, "no round times kept: no spread to weigh the change against"
    if 1 / factor <= ratio.value <= factor:
        return SAME, f"under {factor:.2f}x"
    if ratio.side == 0:
        return SAME, "its 95% interval includes 1"
    return (SLOWER if ratio.side == 1 else FASTER), f"beyond {factor:.2f}x and its 95% interval"


def _facts(run: dict) -> dict[str, str]:
    """What a run ran on and with, as text: what the environment lines compare."""
    saved = fmt.read_run(run)
    info = saved.machine_info or fmt.MachineInfo()
    torch_ = info.torch or fmt.TorchFacts()
    ours = saved.ours
    commit = saved.commit_info or fmt.CommitInfo()
    facts = {
        "commit": (as_text(commit.id)[:12] or "unknown") + (" (dirty)" if commit.dirty else ""),
        "torch": as_text(torch_.version),
        "CUDA runtime": as_text(torch_.cuda_runtime),
        "cuDNN": as_text(torch_.cudnn),
        "GPU driver": ", ".join(sorted({as_text(g.driver_version) for g in info.gpus or []})),
        "python": as_text(info.python_version),
        "CPU capability": as_text(torch_.cpu_capability),
        "torch threads": as_text(torch_.threads),
        "dataset": as_text(info.dataset and info.dataset.name),
        "format": as_text(ours.format),
        # Before format 4 no run held the allocator: glibc as it was, what --host-allocator default
        # records.
        "host allocator": as_text(ours.host_allocator and ours.host_allocator.mode) or "default",
        "run": run_state(run) or "complete",
        # How busy the machine was: across the whole run (format 5; whole percents, so that noise in
        # the tenths is no change), and the cases that saw other work on the CPU, or a GPU
        # throttled.
        "machine load": _load(ours.load),
        "cases busy": _flagged(saved, "busy"),
        "cases throttled": _flagged(saved, "throttled"),
        "cases suspect": _suspect(run),
    }
    for key, value in (ours.plan.write() if ours.plan else {}).items():
        facts[f"plan.{key}"] = json.dumps(value, separators=(",", ":"), sort_keys=True)
    return facts


def environment_changes(
    old: dict, new: dict
) -> tuple[list[tuple[str, str, str]], list[tuple[str, str]]]:
    """([(fact, old, new) that differ], [(fact, value) the same in both]), over versions, driver, commit, data, plan."""
    a, b = _facts(old), _facts(new)
    changed, same = [], []
    for fact in [*a, *(f for f in b if f not in a)]:
        x, y = a.get(fact, ""), b.get(fact, "")
        if x != y:
            changed.append((fact, x or "(none)", y or "(none)"))
        elif x:
            same.append((fact, x))
    return changed, same


def as_text(value) -> str:
    """An axis value as text for a case's identity: missing is empty, 100.0 is 100."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _flagged(run: fmt.Run, flag: str) -> str:
    cases = run.cases()
    return f"{sum(flag in case.extra.marks() for case in cases)} of {len(cases)}"


def _load(load: fmt.Load | None) -> str:
    if load is None or load.available is not True:
        return "not measured"
    share = load.outside_share or 0.0
    return f"other work {share:.0%}" + (" (busy)" if load.busy else "")


def _suspect(run: dict) -> str:
    """How many of the run's copies are suspect (their time not growing with their bytes: load._mark_suspects)."""
    import warnings

    # (load is the report's reader; verdict is read by compare only)
    from bench.analysis.rows import runs_to_frame

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # compare has said what it passes over already
        frame = runs_to_frame([("run", run)], all_runs=True)
    return f"{int(frame['suspect'].sum()) if not frame.empty else 0} of {len(frame)}"


def run_state(run: dict) -> str:
    """'' for a whole run, else how a partial run ended (what says why a case is missing from it)."""
    state = fmt.read_run(run).ours.run
    if state is not None and state.complete is False:
        return f"stopped early: {state.ended or 'incomplete'}"
    return ""


def marks_of(case) -> str:
    """What the run says of the machine while the case ran (busy with other work, a GPU throttled), and whether
    its figure is suspect (a copy whose time did not follow its bytes in its run:
    bench/analysis/derive.py)."""
    return ", ".join(flag for flag in ("busy", "throttled", "suspect") if bool(case.get(flag)))


# An IQR over this share of the median is noisy (docs/design.md): a figure shows its spread only then, so
# that compare's table fits a terminal (the ratio's interval carries the rest of the noise).
NOISY_IQR = 0.10


def figure_said(median: float, iqr_share: float, rounds) -> str:
    """'151 ms (3)': a case's median and its rounds, '8.93 ms ±12% (100)' where its IQR is wide."""
    if pd.isna(median):
        return "-"
    if pd.isna(rounds) or rounds < 2:
        return f"{fmt_time(median)} (1)"
    noisy = not pd.isna(iqr_share) and iqr_share > NOISY_IQR
    return f"{fmt_time(median)}{f' ±{iqr_share:.0%}' if noisy else ''} ({rounds})"


def shortened(text: str, width: int = 70) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
