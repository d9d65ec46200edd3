"""A ratio is a claim: its 95% interval from both figures' rounds, and what it says.

A ratio of two medians (a GPU's speedup, a ladder step over another, new over old) is given
with a 95% interval from each figure's own rounds: Welch's t interval on the difference of the
mean log round times, as a ratio. Round times are skewed and positive, so their logs are the
scale on which a t interval holds; Welch's form allows the two figures their own spread; and
the t distribution keeps the interval honest with the 3 to 5 rounds a training or inference case
has (a bootstrap of 3 values calls a difference between two equal figures about one time in ten,
measured by simulation; this interval about one in twenty, as it says). An interval that includes
1 is no difference measured; a figure from one round has no spread, so its ratios get no interval
and no verdict.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["LEVEL", "NO_DIFFERENCE", "NO_VERDICT", "interval_said", "ratio_interval", "side"]

LEVEL = 0.95
NO_DIFFERENCE = "no difference measured"
NO_VERDICT = "one round: no verdict"

# Student's t at 97.5% (two-sided 95%) for 1 to 30 degrees of freedom; past 30, the normal's 1.96 plus a
# correction (Cornish-Fisher's first term), within 0.1% of the exact value. Written here so the record
# stage needs no scipy.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)  # fmt: skip


def _t975(df: float) -> float:
    if df < 1:
        return _T975[0]
    if df <= len(_T975):
        low = _T975[int(df) - 1]
        high = _T975[min(int(df), len(_T975) - 1)]
        return low + (high - low) * (df - int(df))  # between two whole degrees of freedom: interpolated
    z = 1.959964
    return z + (z**3 + z) / (4 * df)


def _logs(values) -> list[float] | None:
    if values is None or isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        return None
    logs = [math.log(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v) and v > 0]
    return logs if len(logs) >= 2 else None


def ratio_interval(numerator: Sequence[float] | None, denominator: Sequence[float] | None) -> tuple[float, float]:
    """The 95% interval of numerator / denominator from each figure's rounds (Welch's t on their logs);
    (nan, nan) where either has fewer than two rounds."""
    a, b = _logs(numerator), _logs(denominator)
    if a is None or b is None:
        return math.nan, math.nan
    mean_a, mean_b = sum(a) / len(a), sum(b) / len(b)
    var_a = sum((x - mean_a) ** 2 for x in a) / (len(a) - 1) / len(a)
    var_b = sum((x - mean_b) ** 2 for x in b) / (len(b) - 1) / len(b)
    spread = var_a + var_b
    if spread == 0:
        return math.exp(mean_a - mean_b), math.exp(mean_a - mean_b)
    df = spread**2 / ((var_a**2 / (len(a) - 1) if var_a else 0) + (var_b**2 / (len(b) - 1) if var_b else 0))
    half = _t975(df) * math.sqrt(spread)
    return math.exp(mean_a - mean_b - half), math.exp(mean_a - mean_b + half)


def side(low: float, high: float) -> int | None:
    """1 where the interval is above 1, -1 below it, 0 where it includes 1 (no difference measured), None where
    there is no interval (one round: no verdict)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return None
    return 1 if low > 1 else -1 if high < 1 else 0


def interval_said(value: float, low: float, high: float, *, no_interval: str = " (1 round)") -> str:
    """A ratio with its interval: '5.33x (4.90-5.80)', '1.02x (0.97-1.08, no difference measured)', or, with no
    interval, the ratio and `no_interval` ('5.33x (1 round)'; a table that marks one-round figures itself gives '')."""
    if value is None or not math.isfinite(value):
        return "-"
    where = side(low, high)
    if where is None:
        return f"{value:.2f}x{no_interval}"
    return f"{value:.2f}x ({low:.2f}-{high:.2f}{', ' + NO_DIFFERENCE if where == 0 else ''})"
