"""The verdict a person reads in 30 seconds, one machine at a time: at most five short lines, before any detail.

Whether the GPU is faster here, by how much (its 95% interval), from which batch size, for the
notes' loop and for the fastest pipeline, and what the machine was doing while it was measured.
A machine without a GPU gets the same against a reference GPU the project ships, said as another
machine's, with its date and torch. One implementation: the end of a run
(bench/run/summary.py), each machine's page and the fleet's line per machine
(bench/report/) all open with these lines. The terms are defined in docs/glossary.md.
"""

from __future__ import annotations

import math

import pandas as pd

from bench.analysis.derive import crossover_batch_size
from bench.analysis.figures import at_default, fastest_steps, is_gpu, ladder, speedups
from bench.analysis.intervals import BUSY, NO_DIFFERENCE, ratio_estimate, side
from bench.analysis.models import model_size, of_model
from bench.analysis.reference import against_reference
from bench.analysis.words import flops_said, fmt_time

__all__ = ["ANSWER_BATCH", "GLOSSARY", "TO_MEASURE", "headline", "model_headline", "times_said"]

# Where the words of the answer (seed, resident, the ladder, a limit, busy, ...) are defined.
GLOSSARY = "docs/glossary.md"

# The batch size the verdict is told at: the notes' loop used 1,000 (100 and 10,000 are the sweep's
# ends); the nearest measured where 1,000 was not.
ANSWER_BATCH = 1000

# How a verdict without a figure (a model no reference run measured) says what would give it one: the
# end of a run repeats no such line as its last ("In short").
TO_MEASURE = "  To measure it"

# The notes' own training loop, as the verdict names it (the ladder calls it seed).
NOTES_LOOP = "the notes' loop (seed)"


def times_said(x: float, low: float = math.nan, high: float = math.nan, busy: bool = False) -> str:
    """A speedup as words that stay true below 1x, decided on its 95% interval: "3.10x faster (2.9-3.3)",
    "2.00x slower (speedup 0.50x, 0.49-0.51)", "no faster or slower (1.02x, 0.97-1.08: no difference
    measured)"; a figure of one round has no interval and says so: "3.10x faster (1 round)". `busy`:
    one of its figures ran while other work held the machine for most of its run: the ratio, marked,
    and no verdict."""
    where = side(low, high)
    if busy:
        interval = f", {low:.2f}-{high:.2f}" if where is not None else ", 1 round"
        return f"at a speedup of {x:.2f}x ({BUSY}{interval}: no verdict, the load may have made it)"
    if where is None:
        return (f"{x:.2f}x faster" if x >= 1 else f"{1 / x:.2f}x slower") + " (1 round)"
    if where == 0:
        return f"no faster or slower ({x:.2f}x, {low:.2f}-{high:.2f}: {NO_DIFFERENCE})"
    if where > 0:
        return f"{x:.2f}x faster ({low:.2f}-{high:.2f})"
    return f"{1 / x:.2f}x slower (speedup {x:.2f}x, {low:.2f}-{high:.2f})"


def _short(x: float, low: float, high: float, busy: bool) -> str:
    """A speedup for a verdict's line, after a colon: times_said, with no verdict where one round or the load
    leaves none."""
    where = side(low, high)
    if busy:
        interval = f", {low:.2f}-{high:.2f}" if where is not None else ", 1 round"
        return f"speedup {x:.2f}x ({BUSY}{interval}: no verdict)"
    if where is None:
        return f"speedup {x:.2f}x (1 round: no verdict)"
    return times_said(x, low, high)


def _nearest(sizes) -> int:
    """The answer's batch size among `sizes`: 1,000, else the nearest measured."""
    sizes = sorted({int(s) for s in sizes})
    return (
        ANSWER_BATCH if ANSWER_BATCH in sizes else min(sizes, key=lambda s: abs(s - ANSWER_BATCH))
    )


def _from_batch(sizes: list[int], sides: list[int | None]) -> str:
    """From which batch size the GPU is faster at every larger one, decided on intervals, in a few words."""
    pairs = sorted(zip(sizes, sides, strict=True))
    if any(s is None for _, s in pairs):
        return "no verdict (one round)"
    found = crossover_batch_size([b for b, _ in pairs], [2.0 if s == 1 else 0.5 for _, s in pairs])
    if found is None:
        return "at no size"
    if found == pairs[0][0]:
        return "at every size"
    return f"from {found:,} on"


def _by_batch(
    variants: dict[str, pd.DataFrame], low: str, high: str, whose: str, run_busy: bool
) -> str | None:
    """'  by batch size (100-10,000 measured), the GPU is faster: seed at no size; resident at every size'; on a run
    the load held, no verdict for a variant any of whose figures ran busy."""
    said, sizes = [], set()
    for variant, mine in variants.items():
        if mine.empty:
            continue
        sizes |= set(mine["batch_size"].astype(int))
        if run_busy and bool(mine["busy"].astype(bool).any()):
            said.append(f"{variant} no verdict ({BUSY})")
            continue
        sides = [side(lo, hi) for lo, hi in zip(mine[low], mine[high], strict=True)]
        said.append(f"{variant} " + _from_batch(mine["batch_size"].astype(int).tolist(), sides))
    if not said:
        return None
    span = f"{min(sizes):,}-{max(sizes):,}" if len(sizes) > 1 else f"{min(sizes):,}"
    if all(words.endswith("(one round)") for words in said):
        return f"  by batch size ({span} measured), {whose}: no verdict (one round)"
    return f"  by batch size ({span} measured), {whose} is faster: " + "; ".join(said)


def _load_said(rows: pd.DataFrame) -> str:
    """What the machine was doing while the run measured it, in one line."""
    share = rows["run_outside_share"].dropna() if "run_outside_share" in rows else pd.Series()
    if bool(rows["run_busy"].any()):
        took = f"{share.max():.0%} of its CPU time" if len(share) else "most of its CPU time"
        return (
            f"The machine was busy: other work took {took}; a ratio marked {BUSY} decides nothing."
        )
    if len(share):
        return f"The machine was its run's own: other work took {share.max():.0%} of its CPU time."
    return "The machine's load across the run was not measured (a run older than format 5)."


def _own_gpu(rows: pd.DataFrame, device: str, quick: bool) -> list[str]:
    """The verdict of a machine that measured `device` beside its own CPU."""
    speed = speedups(rows)
    speed = speed[(speed["device"] == device) & (speed["family"] == "train")]
    full = speed[speed["quick"] == quick]
    seed = full[full["variant"] == "seed"]
    if seed.empty:
        return []
    size = _nearest(seed["batch_size"])
    at = seed[seed["batch_size"] == size].iloc[0]
    run_busy = bool(rows["run_busy"].any())
    name = at["device_name"] if isinstance(at["device_name"], str) and at["device_name"] else device
    # Against the CPU as the notes' loop runs it, at torch's default thread count; where that count was not
    # run (--cpu-threads 1), against the fastest count measured, said so.
    if pd.notna(at["speedup"]):
        against, ratio = "torch's default threads", ("speedup", "speedup_low", "speedup_high")
    else:
        against, ratio = (
            "its best thread count measured",
            ("speedup_vs_best_cpu", "vs_best_low", "vs_best_high"),
        )
    lines = [
        f"The GPU here, {name} ({device}), against this machine's CPU at {against}:",
        f"  {NOTES_LOOP}, batch {size:,}, on the GPU: "
        + _short(*(at[column] for column in ratio), run_busy and at["busy"]),
    ]
    fastest = _fastest_pair(rows, device, quick, size)
    if fastest:
        lines.append(fastest)
    # (each line against the one baseline the first names: a crossover against another thread count
    # would contradict the seed line above it)
    by_batch = _by_batch(
        {v: full[full["variant"] == v] for v in ("seed", "resident")},
        ratio[1],
        ratio[2],
        "the GPU",
        run_busy,
    )
    if by_batch:
        lines.append(by_batch)
    return lines


def _fastest_pair(rows: pd.DataFrame, device: str, quick: bool, size: int) -> str | None:
    """Each side's fastest training step that learned as well as resident, at `size`: the GPU's over the CPU's."""
    best = fastest_steps(ladder(rows, "train"))
    best = best[(best["quick"] == quick) & (best["batch_size"] == size)]
    gpu, cpu = best[best["device"] == device], best[best["device"] == "cpu"]
    if gpu.empty or cpu.empty:
        return None
    g, c = gpu.iloc[0], cpu.iloc[0]
    ratio = ratio_estimate(
        c["round_times"],
        g["round_times"],
        numerator_median=c["median"],
        denominator_median=g["median"],
    )
    busy = bool(rows["run_busy"].any()) and bool(g["busy"] or c["busy"])
    return (
        f"  at their fastest, the GPU's {g['pipeline']} over the CPU's {c['pipeline']}: "
        + _short(ratio.value, ratio.low, ratio.high, busy)
    )


def _against_reference(rows: pd.DataFrame, reference: pd.DataFrame | None) -> list[str]:
    """The verdict of a machine without a GPU: its CPU against the reference GPU of the same training work."""
    pairs = against_reference(rows, reference)
    train = pairs[pairs["family"] == "train"] if not pairs.empty else pairs
    seed = train[train["variant"] == "seed"] if not train.empty else train
    if seed.empty:
        return []
    size = _nearest(seed["batch_size"])
    at = seed[seed["batch_size"] == size].iloc[0]
    run_busy = bool(rows["run_busy"].any())
    # The reference runs these figures come from: their dates and torch builds (one, or a span).
    dates = sorted({pd.Timestamp(w).strftime("%Y-%m-%d") for w in train["when"] if pd.notna(w)})
    when = " to ".join(dict.fromkeys([dates[0], dates[-1]])) if dates else "undated"
    builds = sorted({str(t) for t in train["torch"] if pd.notna(t) and str(t)}) or ["?"]
    # A machine that has GPUs but ran without them (--devices cpu) is not a machine without one.
    has = sorted({g for g in rows["gpus"].dropna().astype(str) if g}) if "gpus" in rows else []
    here = (
        f"No GPU measured in this run (this machine has {', '.join(has)})" if has else "No GPU here"
    )
    lines = [
        f"{here}. Reference: another machine's {at['device_name']} "
        f"({when}, torch {', '.join(builds)})",
        f"  {NOTES_LOOP}, batch {size:,}, on that GPU: "
        + _short(at["speedup"], at["low"], at["high"], run_busy and at["busy"]),
    ]
    fastest = train[(train["variant"] == "fastest") & (train["batch_size"] == size)]
    if not fastest.empty:
        f = fastest.iloc[0]
        lines.append(
            f"  at their fastest, its {f['gpu_pipeline']} over this CPU's {f['cpu_pipeline']}: "
            + _short(f["speedup"], f["low"], f["high"], run_busy and f["busy"])
        )
    by_batch = _by_batch(
        {v: train[train["variant"] == v] for v in ("seed", "resident")},
        "low",
        "high",
        "that GPU",
        run_busy,
    )
    if by_batch:
        lines.append(by_batch)
    return lines


def headline(rows: pd.DataFrame, reference: pd.DataFrame | None = None) -> list[str]:
    """At most five lines for the machine of `rows` (one machine's rows): the verdict, then its load.

    Full figures where the machine has any (a quick run's never sit beside them), else the quick
    ones, said so. An empty list where there is nothing to say a verdict on (no training figure of
    the notes' loop on both sides)."""
    if rows.empty:
        return []
    # full figures where there are any; a quick run's only where no full figure gives a verdict
    kinds = [True] if rows["quick"].all() else [False, True]
    for quick in kinds:
        lines = _verdict(rows[rows["quick"] == quick], reference, quick)
        if lines:
            load = _load_said(rows[rows["quick"] == quick])
            if quick:
                load = f"A quick run: a subset of the data, one round. {load}"
            return [*lines[:4], load]
    return []


def _verdict(mine: pd.DataFrame, reference: pd.DataFrame | None, quick: bool) -> list[str]:
    devices = mine["device"].astype(str)
    gpus = sorted(set(devices[is_gpu(devices)]))
    for device in gpus:
        lines = _own_gpu(mine, device, quick)
        if lines:
            return lines
    return [] if gpus else _against_reference(mine, reference)


def _size_said(rows: pd.DataFrame) -> str:
    """A model's size as the verdict names it: parameters and forward FLOPs an image, where the run recorded them."""
    parameters, flops = model_size(rows)
    parts = []
    if pd.notna(parameters):
        parts.append(f"{int(parameters):,} parameters")
    if pd.notna(flops):
        parts.append(f"{flops_said(flops)} an image forward")
    return f" ({', '.join(parts)})" if parts else ""


def _cpu_said(rows: pd.DataFrame, quick: bool) -> list[str]:
    """What this machine's CPU measured of a model no reference GPU ran, in one line: its training epoch with the
    notes' loop at the answer's batch size, and its fastest step over it with the interval."""
    kind = rows[rows["quick"] == quick]
    train = kind[(kind["family"] == "train") & (kind["device"] == "cpu") & at_default(kind)]
    seed = train[train["pipeline"] == "seed"]
    if seed.empty:
        return []
    size = _nearest(seed["batch_size"])
    first = seed[seed["batch_size"] == size].iloc[0]
    images = first["images"]
    epoch = f"an epoch of {int(images):,} images" if pd.notna(images) else "an epoch"
    said = f"  its CPU, batch {size:,}: {epoch} in {fmt_time(first['median'])} with {NOTES_LOOP}"
    # its fastest step, where the ladder ran at that size (--pipelines may leave it out)
    steps = ladder(kind, "train")
    best = fastest_steps(steps[steps["device"] == "cpu"])
    best = best[best["batch_size"] == size]
    if not best.empty and best.iloc[0]["pipeline"] != "seed":
        b = best.iloc[0]
        busy = bool(rows["run_busy"].any()) and bool(b["vs_first_busy"])
        said += f"; its fastest, {b['pipeline']}, over seed: " + _short(
            b["vs_first"], b["vs_first_low"], b["vs_first_high"], busy
        )
    return [said]


def model_headline(
    rows: pd.DataFrame, reference: pd.DataFrame | None, model: str, named: bool
) -> list[str]:
    """The verdict for one model of one machine's rows (bench/analysis/models.py of_model: never mixed with
    another's): held against the reference runs of that model alone. `named`: its first line opens with the
    model and its size (a run of any model but the notes' CNN, or of several). The project's reference
    runs are of the CNN: a machine without a GPU that measured another model is told how to measure its
    GPU speedup."""
    mine = of_model(rows, model)
    theirs = None if reference is None else of_model(reference, model)
    lines = headline(mine, theirs)
    own = mine[mine["model"].eq(model)]
    if not named or own.empty:
        return lines
    name = f"{model}{_size_said(own)}"
    if not lines and not is_gpu(own["device"].astype(str)).any():
        options = next((o for o in own["model_options"].dropna() if o), "")
        quick = bool(own["quick"].all())
        load = _load_said(own)
        # a user's module goes with the command: the GPU machine imports it as this one did
        module = options.split()[1].partition(":")[0] if options.startswith("--model ") else ""
        bring = "" if module in ("torchvision", "") else f" (with {module} there)"
        lines = [
            "No GPU here, and no reference GPU run of this model: no speedup to show.",
            *_cpu_said(mine, quick),
            f"{TO_MEASURE} on a machine with a GPU{bring}: pytest bench {options} --benchmark-autosave",
            f"A quick run: a subset of the data, one round. {load}" if quick else load,
        ]
    if lines:
        lines[0] = f"{name}: {lines[0]}"
    return lines
