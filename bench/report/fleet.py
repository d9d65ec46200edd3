"""The fleet view: for each headline figure, every machine ranked best first, with its interval and the next one's.

A ranking is one quantity measured the same way on every machine (full runs only, like with like):
the GPU's speedup over its own CPU, the crossover batch size, the fastest training epoch, inference
throughput at batch 1 and at the largest batch, the pinned host-to-device copy, the energy of an
epoch. Each row says by how much it beats the next one, with the 95% interval of that ratio from
both figures' rounds: an interval that includes 1 is no difference measured between them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bench.analysis.cells import device_label, fmt_seconds, marks
from bench.analysis.figures import crossovers, is_gpu, speedups
from bench.analysis.intervals import interval_said, ratio_estimate

__all__ = ["LADDER_BATCH", "Ranking", "rankings"]

# The batch size a headline speedup and the energy of an epoch are taken at: the ladder's (and the
# notes' loop's).
LADDER_BATCH = 1000
# What a headline speedup and crossover pair: the notes' loop for training, a plain compute pass for
# inference.
_HEADLINE = {"train": "seed", "inference": "compute"}
_COLUMNS = [
    "rank",
    "machine_key",
    "label",
    "device",
    "value",
    "cell",
    "low",
    "high",
    "detail",
    "than_next",
    "bar",
]


@dataclass
class Ranking:
    key: str  # its files' names: ranking_<key>*.png, rankings/<key>.html
    title: str
    said: str  # what it is and how it was measured, in a sentence
    unit: str  # the value's axis label
    higher_is_better: bool
    log: bool = True
    rows: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=_COLUMNS))


def _finish(ranking: Ranking, rows: pd.DataFrame, times: bool) -> Ranking:
    """Rank best first (ties by label), each row's ratio over the next one's, and its bar's share of the best."""
    rows = rows.dropna(subset=["value"])
    rows = rows[np.isfinite(rows["value"].astype(float))]
    if rows.empty:
        return ranking
    rows = rows.sort_values(
        ["value", "label", "device"],
        ascending=[not ranking.higher_is_better, True, True],
        kind="stable",
    ).reset_index(drop=True)
    # Equal figures share a rank (1, 1, 3), listed by label.
    rows["rank"] = (
        rows["value"].rank(method="min", ascending=not ranking.higher_is_better).astype(int)
    )
    rows["than_next"] = [
        _than_next(rows, i, ranking.higher_is_better) if times else "" for i in range(len(rows))
    ]
    values = rows["value"].astype(float)
    if ranking.log and (values > 0).all():
        low, high = np.log(values.min()), np.log(values.max())
        share = (np.log(values) - low) / (high - low) if high > low else np.ones(len(values))
    else:
        share = values / values.max() if values.max() > 0 else np.ones(len(values))
    if not ranking.higher_is_better:
        share = 1 - share + (share.min() if len(share) else 0)
    rows["bar"] = (0.05 + 0.95 * np.asarray(share, dtype=float)).round(3)
    ranking.rows = rows[_COLUMNS]
    return ranking


def _than_next(rows: pd.DataFrame, i: int, higher: bool) -> str:
    """This figure over the next-ranked one's, as a ratio of their times with its 95% interval (scaled by their
    units where a rate is ranked: images or bytes differ between runs only by their counts)."""
    if i + 1 >= len(rows):
        return ""
    this, after = rows.iloc[i], rows.iloc[i + 1]
    ratio = this["value"] / after["value"] if higher else after["value"] / this["value"]
    # Times: the next one's rounds over this one's, one estimate with its interval
    # (bench/analysis/intervals.py).
    times = ratio_estimate(after["round_times"], this["round_times"])
    if not math.isfinite(times.value):
        return interval_said(ratio, math.nan, math.nan, no_interval=" (no interval)")
    # A rate's units cancel but for their counts: the figures' ratio over their medians' ratio (1
    # for a time).
    units = ratio / (np.median(after["round_times"]) / np.median(this["round_times"]))
    return interval_said(
        times.value * units, times.low * units, times.high * units, no_interval=" (no interval)"
    )


def _spread(value: float, q1: float, q3: float, rate: bool) -> str:
    """A figure's middle half of rounds, as it reads: a time's IQR, or the rate over that IQR."""
    if pd.isna(q1) or pd.isna(q3) or q1 == q3:
        return ""
    if not rate:
        return f" (IQR {fmt_seconds(q1)}-{fmt_seconds(q3)})"
    return f" (IQR {_number(value * q1 / q3)}-{_number(value * q3 / q1)})"


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _speedup_ranking(speed: pd.DataFrame, family: str) -> Ranking:
    variant = _HEADLINE[family]
    ranking = Ranking(
        f"speedup_{family}",
        f"GPU speedup over its own CPU: {family} ({variant}, batch {LADDER_BATCH:,})",
        f"The machine's CPU median at torch's default thread count over its GPU's, {family} {variant} at batch "
        f"{LADDER_BATCH:,}, with the 95% interval from both figures' rounds: above 1x the GPU is faster; an interval "
        "that includes 1 is no difference measured.",
        "GPU speedup over the CPU (x)",
        True,
    )
    rows = speed[
        (speed["family"] == family)
        & (speed["variant"] == variant)
        & (speed["batch_size"] == LADDER_BATCH)
    ]
    rows = rows[~rows["quick"].astype(bool)]
    if rows.empty:
        return ranking
    default = rows["speedup"].notna()
    out = rows.assign(
        value=rows["speedup"].where(default, rows["speedup_vs_best_cpu"]),
        low=rows["speedup_low"].where(default, rows["vs_best_low"]),
        high=rows["speedup_high"].where(default, rows["vs_best_high"]),
    )
    out["cell"] = [interval_said(r.value, r.low, r.high) + marks(r) for r in out.itertuples()]
    out["detail"] = [
        f"{r.device_name}; CPU at {'its default' if d else 'its best'} thread count"
        for r, d in zip(out.itertuples(), default, strict=True)
    ]
    return _finish(ranking, out, times=False)


def _crossover_ranking(cross: pd.DataFrame, family: str) -> Ranking:
    variant = _HEADLINE[family]
    ranking = Ranking(
        f"crossover_{family}",
        f"Crossover batch size: {family} ({variant})",
        f"The smallest batch size from which the GPU is faster than the same machine's CPU (at its best thread "
        f"count) at every larger size measured, {family} {variant}; smaller is better: the GPU pays off sooner. A GPU "
        "never faster, or with no verdict (one round), is listed last.",
        "crossover batch size",
        False,
    )
    rows = cross[
        (cross["family"] == family) & (cross["variant"] == variant) & ~cross["quick"].astype(bool)
    ]
    if rows.empty:
        return ranking
    out = rows.assign(value=rows["crossover_batch_size"].astype("float64"), low=np.nan, high=np.nan)
    out["cell"] = [f"{int(v):,}" if pd.notna(v) else "" for v in out["value"]]
    out["detail"] = [f"{r.device_name}: {r.says}" for r in out.itertuples()]
    ranked = _finish(ranking, out, times=False)
    never = out[out["value"].isna()].sort_values("label").assign(cell="none", bar=0.0, than_next="")
    if not never.empty:  # never faster, or no verdict: after every machine that has a crossover
        never["rank"] = len(ranked.rows) + 1  # all alike: after the last that has one
        ranked.rows = (
            pd.concat([ranked.rows, never[_COLUMNS]], ignore_index=True)
            if len(ranked.rows)
            else never[_COLUMNS]
        )
    return ranked


def _per_device(rows: pd.DataFrame, value: pd.Series, best: str) -> pd.DataFrame:
    """Each machine and device's best row by `value` (best: "max" or "min")."""
    rows = rows.assign(value=value).dropna(subset=["value"])
    rows = rows.sort_values("value", ascending=best == "min", kind="stable")
    return rows.assign(device=device_label(rows)).drop_duplicates(["machine_key", "device"])


def _best_per_device(
    ranking: Ranking, rows: pd.DataFrame, value: pd.Series, cell, detail, times: bool = True
) -> Ranking:
    """`ranking` of each machine and device's best row by `value` (as the ranking reads best), each row's cell
    and detail in words from `cell` and `detail`; no interval of its own."""
    rows = _per_device(rows, value, "max" if ranking.higher_is_better else "min")
    rows["cell"] = [cell(r) for r in rows.itertuples()]
    rows["detail"] = [detail(r) for r in rows.itertuples()]
    return _finish(ranking, rows.assign(low=np.nan, high=np.nan), times=times)


def _rate_cell(r) -> str:
    return _number(r.value) + _spread(r.value, r.q1, r.q3, True) + marks(r)


def _figure_rankings(full: pd.DataFrame) -> list[Ranking]:
    train = full[full["family"] == "train"]
    compute = full[(full["family"] == "inference") & (full["variant"] == "compute")]
    fastest = Ranking(
        "fastest_epoch",
        "Fastest training epoch",
        "Each machine and device's fastest epoch of the training set, whichever pipeline and batch size "
        "gave it (its median, with the IQR of its rounds).",
        "one epoch (s, median)",
        False,
    )
    out = [
        _best_per_device(
            fastest,
            train,
            train["median"],
            lambda r: fmt_seconds(r.median) + _spread(r.median, r.q1, r.q3, False) + marks(r),
            lambda r: f"{r.pipeline}, batch {r.batch_size:,}",
        )
    ]
    for key, title, pick in (
        ("inference_batch1", "Inference at batch 1", lambda r: r[r["batch_size"] == 1]),
        ("inference_largest", "Inference at the largest batch", _largest),
    ):
        ranking = Ranking(
            key,
            f"{title} (images/s)",
            f"{title}: images per second over a compute pass (the model and input already on the "
            "device), median with the IQR of its rounds.",
            "images/s (median)",
            True,
        )
        rows = pick(compute)
        out.append(
            _best_per_device(
                ranking,
                rows,
                rows["images_per_s"],
                _rate_cell,
                lambda r: f"batch {r.batch_size:,}",
            )
        )
    pinned = full[
        (full["family"] == "transfer") & (full["direction"] == "h2d") & (full["memory"] == "pinned")
    ]
    ranking = Ranking(
        "h2d_pinned",
        "Pinned host-to-device copy (GB/s)",
        "Each GPU's fastest copy from pinned host memory to the device, at whichever size gave it, and "
        "its share of the PCIe link's theoretical bandwidth where NVML gave the link.",
        "GB/s (median)",
        True,
    )
    out.append(
        _best_per_device(
            ranking,
            pinned,
            pinned["gbps"],
            _rate_cell,
            lambda r: (
                f"{r.size:,} images, {r.dtype}"
                + (f", {r.link_share:.0%} of the link" if pd.notna(r.link_share) else "")
            ),
        )
    )
    energy = train[(train["pipeline"] == "resident") & (train["batch_size"] == LADDER_BATCH)]
    energy = energy[energy["energy_j"] > 0]
    ranking = Ranking(
        "energy_epoch",
        f"Energy of a resident epoch at batch {LADDER_BATCH:,} (J)",
        "What one resident training epoch cost in energy on the device that ran it (a GPU's NVML "
        "counter, the CPU packages' RAPL counters), where measured; lower is better.",
        "J per epoch",
        False,
    )
    out.append(
        _best_per_device(
            ranking,
            energy,
            energy["energy_j"],
            lambda r: f"{r.value:.3g} J" + (" ≈" if r.energy_note else "") + marks(r),
            lambda r: f"{r.mean_power_w:.0f} W" if pd.notna(r.mean_power_w) else "",
            times=False,
        )
    )
    return out


def _largest(rows: pd.DataFrame) -> pd.DataFrame:
    largest = rows.groupby(["machine_key", "device"])["batch_size"].transform("max")
    return rows[rows["batch_size"] == largest]


def rankings(frame: pd.DataFrame) -> list[Ranking]:
    """Every headline ranking of `frame` (each machine's newest figures), in the order the fleet view shows them;
    a ranking no machine measured has no rows."""
    # (consolidated once: a frame of a column at a time made pandas warn on every ranking built from it)
    full = frame[~frame["quick"].astype(bool)].copy()
    headline = full[full["variant"].isin(_HEADLINE.values()) | ~full["family"].isin(_HEADLINE)]
    speed = speedups(headline[headline["family"].isin(_HEADLINE)])
    cross = crossovers(speed)
    out = [_speedup_ranking(speed, f) for f in _HEADLINE] + [
        _crossover_ranking(cross, f) for f in _HEADLINE
    ]
    out += _figure_rankings(full)
    gpu = is_gpu(full["device"]).any()
    return [r for r in out if gpu or not r.key.startswith(("speedup", "crossover", "h2d"))]
