"""What comparing two runs decides: each case's verdict (a rank test over both runs' rounds and the factor a change
must pass), and what changed around the runs (commit, torch, driver, machine)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from functools import lru_cache

import pandas as pd

from bench.record import format as fmt
from bench.record.names import FAMILIES
from bench.record.words import fmt_time

__all__ = [
    "DEFAULT_FACTOR",
    "FASTER",
    "ONE_ROUND",
    "P_THRESHOLD",
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


# asv compare's default factor: a change under 10% is not reported, whatever a test says. It is also
# the noise line of docs/design.md (an IQR over 10% of the median is noisy), so a flagged change clears that too.
DEFAULT_FACTOR = 1.10


# The rank test's two-sided level. A comparison has about 50 cases: at 0.05 the test alone would call
# two or three of them different by chance; 0.01 still lets 5 against 5 rounds (transfer's minimum,
# smallest p 2/252 = 0.008) reach it. asv uses 0.002, over hundreds of benchmarks and every commit.
P_THRESHOLD = 0.01


# Both sides need this many rounds for the rank test; fewer, and only the ranges can be compared.
_RANK_TEST_ROUNDS = 3


# Above this many rounds on a side the normal approximation replaces the exact distribution (as asv does).
_EXACT_ROUNDS = 20


SLOWER, FASTER, SAME, ONE_ROUND, UNPAIRED = (
    "slower",
    "faster",
    "same within noise",
    "can't tell (one round)",
    "unpaired",
)
# In the order the table lists them: regressions first.
VERDICTS = (SLOWER, FASTER, SAME, ONE_ROUND, UNPAIRED)


@lru_cache(maxsize=64)
def _u_counts(m: int, n: int) -> tuple[int, ...]:
    """How many orderings of m against n distinct values give each U (Mann & Whitney 1947's recurrence)."""
    # counts[j] holds the distribution for (i, j) as i grows: f(i, j) = f(i, j-1) + f(i-1, j) shifted by j.
    counts = [[1] for _ in range(n + 1)]
    for _ in range(m):
        new = [[1]]
        for j in range(1, n + 1):
            left, up = new[j - 1], counts[j]
            dist = [0] * max(len(left), len(up) + j)
            for u, c in enumerate(left):
                dist[u] += c
            for u, c in enumerate(up):
                dist[u + j] += c
            new.append(dist)
        counts = new
    return tuple(counts[n])


def _p_of_u(u: float, m: int, n: int) -> float:
    """Two-sided p of a U statistic: exact up to 20 rounds a side, else the normal approximation."""
    low = min(u, m * n - u)
    if max(m, n) <= _EXACT_ROUNDS:
        counts = _u_counts(m, n)
        # Half-counted ties make U a half-integer: rounding up is the conservative side.
        return min(1.0, 2 * sum(counts[: math.ceil(low) + 1]) / math.comb(m + n, m))
    sigma = math.sqrt(m * n * (m + n + 1) / 12)  # without a tie correction, which only makes p larger
    z = (low - m * n / 2 + 0.5) / sigma
    return min(1.0, math.erfc(-z / math.sqrt(2)))


def _rank_test(old: Sequence[float], new: Sequence[float]) -> tuple[float, float]:
    """(p, the smallest p these round counts can give) of a two-sided Mann-Whitney U test.

    Written here, after asv's statistics.py, because scipy is not a dependency and this is its only use.
    """
    m, n = len(old), len(new)
    u = sum(1.0 if x > y else 0.5 if x == y else 0.0 for x in old for y in new)
    return _p_of_u(u, m, n), _p_of_u(0, m, n)


def verdict(old: pd.Series, new: pd.Series, factor: float) -> tuple[str, str]:
    """(verdict, why) for one case measured in both runs.

    Beyond the noise means both: the medians differ by more than `factor`, and the rounds say the
    runs differ: a rank test on the round times where it can reach P_THRESHOLD at these round
    counts, else (3 against 3 rounds: its smallest p is 0.1) every round of one run beyond every
    round of the other. The rank test, not the IQRs: IQRs of 3 to 5 rounds are two of those rounds,
    and a test gives the chance of a change this large from noise alone.
    """
    if min(old["rounds"], new["rounds"]) < 2:
        side = "OLD" if old["rounds"] < 2 else "NEW"
        if min(old["rounds"], new["rounds"]) == max(old["rounds"], new["rounds"]):
            side = "both"
        return ONE_ROUND, f"{side}: one round, no spread to weigh the change against"
    ratio = new["median"] / old["median"]
    direction = SLOWER if ratio > 1 else FASTER
    if 1 / factor <= ratio <= factor:
        return SAME, f"under {factor:.2f}x"
    old_data, new_data = old["data"], new["data"]
    if min(len(old_data), len(new_data)) >= _RANK_TEST_ROUNDS:
        p, p_min = _rank_test(old_data, new_data)
        if p_min < P_THRESHOLD:
            if p < P_THRESHOLD:
                return direction, f"rank test p={p:.2g}"
            return SAME, f"rounds overlap: rank test p={p:.2g}"
    rounds = f"{old['rounds']} and {new['rounds']} rounds, too few for a rank test"
    apart = new["min"] > old["max"] if direction == SLOWER else new["max"] < old["min"]
    if apart:
        return direction, f"every round {direction} ({rounds})"
    return SAME, f"rounds overlap ({rounds})"


def _facts(run: dict) -> dict[str, str]:
    """What a run ran on and with, as text: what the environment lines compare."""
    info = run["machine_info"]
    torch_ = info.get("torch") if isinstance(info.get("torch"), dict) else {}
    ours = fmt.fmnist_bench(run)
    commit = run.get("commit_info") if isinstance(run.get("commit_info"), dict) else {}
    dataset = info.get("dataset") if isinstance(info.get("dataset"), dict) else {}
    gpus = [g for g in info.get("gpus") or [] if isinstance(g, dict)]
    facts = {
        "commit": (as_text(commit.get("id"))[:12] or "unknown") + (" (dirty)" if commit.get("dirty") else ""),
        "torch": as_text(torch_.get("version")),
        "CUDA runtime": as_text(torch_.get("cuda_runtime")),
        "cuDNN": as_text(torch_.get("cudnn")),
        "GPU driver": ", ".join(sorted({as_text(g.get("driver_version")) for g in gpus})),
        "python": as_text(info.get("python_version")),
        "CPU capability": as_text(torch_.get("cpu_capability")),
        "torch threads": as_text(torch_.get("threads")),
        "dataset": as_text(dataset.get("name")),
        "format": as_text(ours.get("format")),
        # Before format 4 no run held the allocator: glibc as it was, what --host-allocator default records.
        "host allocator": as_text(
            (ours.get("host_allocator") or {}).get("mode") if isinstance(ours.get("host_allocator"), dict) else None
        )
        or "default",
        "run": run_state(run) or "complete",
        # How busy the machine was: across the whole run (format 5; whole percents, so that noise in the
        # tenths is no change), and the cases that saw other work on the CPU, or a GPU throttled.
        "machine load": _load(run),
        "cases busy": _flagged(run, "busy"),
        "cases throttled": _flagged(run, "throttled"),
        "cases suspect": _suspect(run),
    }
    plan = ours.get("plan") if isinstance(ours.get("plan"), dict) else {}
    for key, value in plan.items():
        facts[f"plan.{key}"] = json.dumps(value, separators=(",", ":"), sort_keys=True)
    return facts


def environment_changes(old: dict, new: dict) -> tuple[list[tuple[str, str, str]], list[tuple[str, str]]]:
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


def _flagged(run: dict, flag: str) -> str:
    ours = [b for b in fmt.benchmarks(run) if b.get("group") in FAMILIES]
    return f"{sum(flag in fmt.case_marks(b) for b in ours)} of {len(ours)}"


def _load(run: dict) -> str:
    load = fmt.run_load(run)
    if load.get("available") is not True:
        return "not measured"
    share = load.get("outside_share") or 0.0
    return f"other work {share:.0%}" + (" (busy)" if load.get("busy") else "")


def _suspect(run: dict) -> str:
    """How many of the run's copies are suspect (their time not growing with their bytes: load._mark_suspects)."""
    import warnings

    from bench.report.load import runs_to_frame  # (load is the report's reader; verdict is read by compare only)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # compare has said what it passes over already
        frame = runs_to_frame([("run", run)], all_runs=True)
    return f"{int(frame['suspect'].sum()) if not frame.empty else 0} of {len(frame)}"


def run_state(run: dict) -> str:
    """'' for a whole run, else how a partial run ended (what says why a case is missing from it)."""
    state = fmt.run_state(run)
    if isinstance(state, dict) and state.get("complete") is False:
        return f"stopped early: {state.get('ended') or 'incomplete'}"
    return ""


def marks_of(case) -> str:
    """What the run says of the machine while the case ran (busy with other work, a GPU throttled), and whether
    its figure is suspect (a copy whose time did not follow its bytes in its run: bench/record/derive.py)."""
    return ", ".join(flag for flag in ("busy", "throttled", "suspect") if bool(case.get(flag)))


def figure_said(median: float, iqr_share: float, rounds) -> str:
    if pd.isna(median):
        return "-"
    if pd.isna(rounds) or rounds < 2:
        return f"{fmt_time(median)} (1)"
    return f"{fmt_time(median)} ±{iqr_share:.0%} ({rounds})"


def shortened(text: str, width: int = 70) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
