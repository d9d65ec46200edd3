"""A ratio is a claim: one estimate from both figures' rounds, its 95% interval, and what it says.

A ratio of two figures (a GPU's speedup, a ladder step over another, new over old) is the ratio of
their rounds' geometric means, given with the 95% interval of that same estimator: Welch's t
interval on the difference of the mean log round times, as a ratio. Round times are skewed and
positive, so their logs are the scale on which a t interval holds; Welch's form allows the two
figures their own spread; and the t distribution keeps the interval honest with the 3 to 5 rounds
a training or inference case has (a bootstrap of 3 values calls a difference between two equal
figures about one time in ten, measured by simulation; this interval about one in twenty, as it
says). The printed ratio and its interval are one statistic, so the ratio always lies inside its
interval (a ratio of medians beside an interval of means did not: 19 of 354 rows of the committed
runs). An interval that includes 1 is no difference measured; a figure from one round has no
spread, so its ratios get no interval and no verdict.
"""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "BUSY",
    "LEVEL",
    "NO_DIFFERENCE",
    "NO_VERDICT",
    "Ratio",
    "interval_said",
    "ratio_estimate",
    "ratio_interval",
    "side",
    "t_quantile",
]

LEVEL = 0.95
NO_DIFFERENCE = "no difference measured"
NO_VERDICT = "one round: no verdict"
# The mark of a ratio one of whose figures ran while other work took over a tenth of the machine's
# CPU.
BUSY = "busy"


# ---------------------------------------------------------------- Student's t, exactly


def _beta_fraction(x: float, a: float, b: float) -> float:
    """The continued fraction of the regularized incomplete beta function (modified Lentz's method, as in
    Numerical Recipes' betacf); it converges quickly for x < (a + 1) / (a + b + 2)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1 / (d if abs(d) > tiny else tiny)
    value = d
    for m in range(1, 10_000):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1 + numerator * d
            d = 1 / (d if abs(d) > tiny else tiny)
            c = 1 + numerator / c
            c = c if abs(c) > tiny else tiny
            value *= d * c
        if abs(d * c - 1) < 3e-16:
            break
    return value


def _log_beta_inverse(a: float, b: float) -> float:
    """log(1 / B(a, b)) = lgamma(a + b) - lgamma(a) - lgamma(b). For Student's t (b = 1/2) at many degrees of
    freedom the two large lgammas cancel to a few units, losing their digits: there the difference
    is taken from its asymptotic series, log(Gamma(a + 1/2) / Gamma(a)) = log(a) / 2 - 1 / (8a) + 1
    / (192a^3) + O(a^-5)."""
    if b == 0.5 and a > 1e4:
        return 0.5 * math.log(a) - 1 / (8 * a) + 1 / (192 * a**3) - math.lgamma(0.5)
    return math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)


def _incomplete_beta(x: float, y: float, a: float, b: float) -> float:
    """I_x(a, b), the regularized incomplete beta function, for 0 <= x <= 1 and y = 1 - x (given apart: where x
    is near 1, 1 - x computed from it would lose the digits the tail lives in)."""
    if x <= 0:
        return 0.0
    if y <= 0:
        return 1.0
    # log(x) from y where x is near 1 (and the reverse): the small one carries the digits.
    log_x = math.log1p(-y) if y < 0.5 else math.log(x)
    log_y = math.log1p(-x) if x < 0.5 else math.log(y)
    log_front = _log_beta_inverse(a, b) + a * log_x + b * log_y
    if x < (a + 1) / (a + b + 2):
        return math.exp(log_front) * _beta_fraction(x, a, b) / a
    return 1 - math.exp(log_front) * _beta_fraction(y, b, a) / b


def _upper_tail(t: float, df: float) -> float:
    """P(T > t) for t >= 0: I_x(df/2, 1/2) / 2 at x = df / (df + t^2)."""
    return _incomplete_beta(df / (df + t * t), t * t / (df + t * t), df / 2, 0.5) / 2


def _density(t: float, df: float) -> float:
    log_scale = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    return math.exp(log_scale - (df + 1) / 2 * math.log1p(t * t / df))


# Past this many degrees of freedom the quantile is the normal's plus Cornish and Fisher's expansion
# in 1/df, whose next term is below 1e-20 there; the incomplete beta's continued fraction would need
# tens of thousands of terms. (Welch's degrees of freedom never come near: at most the two figures'
# rounds together, a few hundred.)
_EXPANDED_DF = 1e5


def _expanded(z: float, df: float) -> float:
    """Student's t quantile from the normal's z (Cornish-Fisher, as in Abramowitz and Stegun 26.7.5)."""
    g = (
        (z**3 + z) / 4,
        (5 * z**5 + 16 * z**3 + 3 * z) / 96,
        (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384,
        (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160,
    )
    return z + sum(term / df ** (k + 1) for k, term in enumerate(g))


@functools.lru_cache(maxsize=4096)
def t_quantile(p: float, df: float) -> float:
    """The p quantile (0.5 <= p < 1) of Student's t with `df` degrees of freedom, any df > 0, whole or not.

    Exact to about 1e-11: Newton's method on the upper tail (an incomplete beta function), kept
    inside a bracket that bisection falls back to; past _EXPANDED_DF, the normal's quantile and its
    expansion. Written here, not taken from scipy, because it is the record stage's only use of it
    (tests/test_intervals.py holds it against the closed forms at 1 and 2 degrees of freedom, the
    normal's limit and the density integrated numerically). Welch's degrees of freedom are seldom
    whole: a table interpolated between whole ones was up to 41% too wide near 1.5.
    """
    if not 0.5 <= p < 1:
        raise ValueError(f"p must be in [0.5, 1), got {p}")
    if not (df > 0 and math.isfinite(df)):
        raise ValueError(f"degrees of freedom must be positive and finite, got {df}")
    if p == 0.5:
        return 0.0
    if df > _EXPANDED_DF:
        return _expanded(statistics.NormalDist().inv_cdf(p), df)
    target = 1 - p
    low, high = 0.0, 2.0
    # the tail falls as t grows: widen until it is below the target
    while _upper_tail(high, df) > target:
        low, high = high, high * 2
    t = (low + high) / 2
    for _ in range(200):
        tail = _upper_tail(t, df)
        if tail == target:
            return t
        if tail > target:
            low = t
        else:
            high = t
        step = t + (tail - target) / _density(t, df)
        step = step if low < step < high else (low + high) / 2
        if abs(step - t) <= 1e-15 * t or high - low <= 1e-15 * high:
            return step
        t = step
    return t


# ---------------------------------------------------------------- a ratio and its interval


@dataclass(frozen=True)
class Ratio:
    """numerator / denominator as one estimate and its 95% interval (nan, nan where there is none)."""

    value: float
    low: float
    high: float

    @property
    def side(self) -> int | None:
        return side(self.low, self.high)

    def said(self, no_interval: str = " (1 round)", busy: bool = False) -> str:
        return interval_said(self.value, self.low, self.high, no_interval=no_interval, busy=busy)


def _logs(values) -> list[float]:
    if values is None or isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        return []
    return [
        math.log(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v) and v > 0
    ]


def _positive(value) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def ratio_estimate(
    numerator: Sequence[float] | None,
    denominator: Sequence[float] | None,
    *,
    numerator_median: float | None = None,
    denominator_median: float | None = None,
) -> Ratio:
    """numerator / denominator from each figure's rounds: the ratio of their geometric means, with the 95%
    interval of that ratio (Welch's t on their logs) where each has two rounds or more.

    With fewer rounds the ratio is still of the rounds there are (one round: that round), with no
    interval; a figure that kept no round times (format 1) is taken at its median, given as
    `*_median`.
    """
    a, b = _logs(numerator), _logs(denominator)
    if not a and _positive(numerator_median):
        a = [math.log(numerator_median)]
    if not b and _positive(denominator_median):
        b = [math.log(denominator_median)]
    if not a or not b:
        return Ratio(math.nan, math.nan, math.nan)
    mean_a, mean_b = statistics.fmean(a), statistics.fmean(b)
    value = math.exp(mean_a - mean_b)
    if len(a) < 2 or len(b) < 2:
        return Ratio(value, math.nan, math.nan)
    var_a = statistics.variance(a, mean_a) / len(a)
    var_b = statistics.variance(b, mean_b) / len(b)
    spread = var_a + var_b
    if spread == 0:
        return Ratio(value, value, value)
    df = spread**2 / (
        (var_a**2 / (len(a) - 1) if var_a else 0) + (var_b**2 / (len(b) - 1) if var_b else 0)
    )
    half = t_quantile(1 - (1 - LEVEL) / 2, df) * math.sqrt(spread)
    return Ratio(value, math.exp(mean_a - mean_b - half), math.exp(mean_a - mean_b + half))


def ratio_interval(
    numerator: Sequence[float] | None, denominator: Sequence[float] | None
) -> tuple[float, float]:
    """The 95% interval of ratio_estimate(numerator, denominator); (nan, nan) where either has fewer than two rounds."""
    found = ratio_estimate(numerator, denominator)
    return found.low, found.high


def side(low: float, high: float) -> int | None:
    """1 where the interval is above 1, -1 below it, 0 where it includes 1 (no difference measured), None where
    there is no interval (one round: no verdict)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return None
    return 1 if low > 1 else -1 if high < 1 else 0


def interval_said(
    value: float, low: float, high: float, *, no_interval: str = " (1 round)", busy: bool = False
) -> str:
    """A ratio with its interval: '5.33x (4.90-5.80)', '1.02x (0.97-1.08, no difference measured)', or, with no
    interval, the ratio and `no_interval` ('5.33x (1 round)'; a table that marks one-round figures
    itself gives ''). `busy`: one of its two figures ran while other work took a share of the
    machine, said on the ratio itself ('10.51x (8.35-13.10, busy)'): the load, not the devices, may
    have made it what it is."""
    if value is None or not math.isfinite(value):
        return "-"
    where = side(low, high)
    mark = f", {BUSY}" if busy else ""
    if where is None:
        if busy:  # in the same parentheses as what it says of its interval: "5.33x (1 round, busy)"
            return f"{value:.2f}x" + (
                f"{no_interval[:-1]}, {BUSY})" if no_interval.endswith(")") else f" ({BUSY})"
            )
        return f"{value:.2f}x{no_interval}"
    return f"{value:.2f}x ({low:.2f}-{high:.2f}{', ' + NO_DIFFERENCE if where == 0 else ''}{mark})"
