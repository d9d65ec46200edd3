"""A ratio is a claim: its 95% interval from both figures' rounds (a bootstrap of the medians), and what it says.

A ratio of two medians (a GPU's speedup, a ladder step over another, new over old) is given with
the interval a bootstrap over each figure's own rounds puts around it: resample each figure's
rounds with replacement, take the ratio of the two medians, and keep the middle 95% of those
ratios. An interval that includes 1 is no difference measured; a figure from one round has no
spread to resample, so its ratios get no interval and no verdict.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["LEVEL", "NO_DIFFERENCE", "NO_VERDICT", "RESAMPLES", "interval_said", "ratio_interval", "side"]

NO_DIFFERENCE = "no difference measured"
NO_VERDICT = "one round: no verdict"

LEVEL = 0.95
# Resamples per interval: the 2.5th and 97.5th percentiles of 2,000 ratios move by about 1% of the
# interval's width from one seed to another; the seed is fixed, so one run's report is the same each time.
RESAMPLES = 2000
_MOST_ROUNDS = 2000  # more rounds than this are thinned evenly: the interval is of the medians, not of every round


def _rounds(values) -> np.ndarray | None:
    if values is None or (isinstance(values, float) and math.isnan(values)):
        return None
    rounds = np.asarray([v for v in values if isinstance(v, (int, float)) and math.isfinite(v) and v > 0], dtype=float)
    if len(rounds) > _MOST_ROUNDS:
        rounds = rounds[np.linspace(0, len(rounds) - 1, _MOST_ROUNDS).astype(int)]
    return rounds if len(rounds) >= 2 else None


def ratio_interval(numerator: Sequence[float] | None, denominator: Sequence[float] | None) -> tuple[float, float]:
    """The 95% interval of median(numerator) / median(denominator), from each figure's rounds; (nan, nan) where
    either has fewer than two rounds."""
    a, b = _rounds(numerator), _rounds(denominator)
    if a is None or b is None:
        return math.nan, math.nan
    rng = np.random.default_rng(0)
    top = np.median(a[rng.integers(0, len(a), size=(RESAMPLES, len(a)))], axis=1)
    bottom = np.median(b[rng.integers(0, len(b), size=(RESAMPLES, len(b)))], axis=1)
    tail = (1 - LEVEL) / 2 * 100
    low, high = np.percentile(top / bottom, [tail, 100 - tail])
    return float(low), float(high)


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
