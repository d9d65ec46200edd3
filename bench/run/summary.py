"""The end-of-run answer on one screen, in words, from the report's own figures over the run's rows.

The summary and the report are one implementation: this module reads the run into the report's
tidy rows (bench/analysis/rows.py) and words what bench/analysis/figures.py derives from them
(speedups, crossovers, the CPU by thread count, the seed epoch's breakdown, the ladder). That
imports pandas, once, after the last case: never while anything is timed (docs/design.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

from bench.analysis.derive import mostly_busy
from bench.analysis.intervals import BUSY, interval_said, ratio_estimate
from bench.analysis.words import (
    BY_MODEL_TITLE,
    WIDTH,
    cases,
    faults_said,
    flops_said,
    fmt_time,
    folded,
)
from bench.format import records as fmt
from bench.format.names import CNN_MODEL, FAMILIES, NOISY_IQR_SHARE, SPEEDUP_FAMILIES
from bench.measure.telemetry import OUTSIDE_SHARE

__all__ = ["THREADS_MARGIN", "WIDTH", "end_summary"]

# With one round a figure (no interval), a thread count is said to beat torch's default only by more
# than this.
THREADS_MARGIN = 0.05


def _speed_cell(r) -> str:
    """'1,000: 5.33x (4.90-5.80)', with [the speedup against the CPU's best thread count] where another was best,
    each marked busy where one of its figures ran while other work took a share of the machine."""
    alone = " (1 round)" if r.one_round else " (no round times)"
    said = interval_said(
        r.speedup, r.speedup_low, r.speedup_high, no_interval=alone, busy=bool(r.busy)
    )
    text = f"{int(r.batch_size):,}: {said}"
    if _missing(r.speedup) or not _same(r.best_cpu_threads, r.default_threads):
        best = interval_said(
            r.speedup_vs_best_cpu, r.vs_best_low, r.vs_best_high, no_interval="", busy=bool(r.busy)
        )
        text += f" [{best} at {r.best_cpu_threads} thread{'s' if r.best_cpu_threads != 1 else ''}]"
    return text


def _missing(value) -> bool:
    # (pandas' NA by its type's name: this module imports pandas only inside end_summary)
    return (
        value is None
        or type(value).__name__ == "NAType"
        or (isinstance(value, float) and math.isnan(value))
    )


def _same(a, b) -> bool:
    """Two thread counts, either of which may be unknown: the same only when both are known and equal."""
    return not _missing(a) and not _missing(b) and int(a) == int(b)


def _cpu_name(device: str, default_threads) -> str:
    return device if device != "cpu" else f"cpu-{default_threads}t"


def _in_order(rows):
    """Training first, then inference (the notes' question first), each GPU's and variant's rows together."""
    rank = rows["family"].map({f: i for i, f in enumerate(SPEEDUP_FAMILIES)})
    return rows.assign(_rank=rank).sort_values(["device", "_rank", "variant"], kind="stable")


def _speedup_section(speed, cross, default_threads, busy_run: bool = False) -> list[str]:
    lines = []
    speed, cross = _in_order(speed), _in_order(cross)
    for (device, family, variant), cells in speed.groupby(
        ["device", "family", "variant"], sort=False
    ):
        text = "  ".join(_speed_cell(r) for r in cells.sort_values("batch_size").itertuples())
        lines.append(f"  {device:<7} {family:<9} {variant:<10} {text}")
    if not lines:
        return []
    # On a run the load held, a crossover decided on busy figures is no verdict: the load may have
    # made it.
    crossings = [
        f"  {c.device} {c.family} {c.variant}: "
        + (BUSY_NO_VERDICT if busy_run and c.busy else c.says + (f" ({BUSY})" if c.busy else ""))
        for c in cross.itertuples()
    ]
    return [
        f"GPU speedup over the CPU (CPU time / GPU time, its 95% interval) at torch's default {default_threads} CPU "
        "threads; [in brackets] against another thread count where it was faster:",
        *lines,
        "Crossover: the smallest batch size from which the GPU is faster at every larger one, against the CPU's best:",
        *crossings,
    ]


def _threads_section(frame, choices, default_threads) -> list[str]:
    lines, measured = [], set()
    cpu = frame[frame["device"] == "cpu"]
    for family in ("inference", "train"):
        counts = set(cpu.loc[cpu["family"] == family, "cpu_threads"].dropna().astype(int))
        mine = choices[choices["family"] == family]
        if len(counts) < 2 or mine.empty:
            continue
        measured |= counts
        # Only what ran at more than one count: a ladder step runs at torch's default alone.
        swept = mine.groupby("variant")["threads_measured"].max()
        said: dict[str, list[str]] = {}
        for r in (
            mine.assign(_v=mine["variant"].astype(str))
            .sort_values(["_v", "batch_size"])
            .itertuples()
        ):
            if swept[r.variant] < 2:
                continue
            said.setdefault(r.variant, [])
            if r.threads_measured < 2 or _same(r.best_cpu_threads, r.default_threads):
                continue
            # Decided on the interval of default / best: a count beats torch's only where it is
            # above 1.
            gain = ratio_estimate(
                r.data_default,
                r.data_best,
                numerator_median=r.median_default,
                denominator_median=r.median_best,
            )
            best = int(r.best_cpu_threads)
            if gain.side == 1 or (gain.side is None and gain.value > 1 + THREADS_MARGIN):
                said[r.variant].append(
                    f"batch {int(r.batch_size):,}: {best} thread{'s' if best != 1 else ''}, "
                    f"{gain.said(no_interval=' (1 round: no verdict)', busy=bool(r.busy))} faster than "
                    f"{default_threads}"
                )
        for variant, better in said.items():
            words = (
                "; ".join(better)
                or f"no count measured faster than torch's default {default_threads}"
            )
            lines.append(f"  {family:<9} {variant:<10} {words}")
    if not lines:
        return []
    return [
        f"The CPU by thread count ({', '.join(map(str, sorted(measured)))} measured), where another count was faster "
        f"than torch's default {default_threads} (its 95% interval above 1; one round: by over {THREADS_MARGIN:.0%}):",
        *lines,
    ]


def _breakdown_section(parts, default_threads) -> list[str]:
    lines = []
    order = parts.assign(_gpu=parts["device"] != "cpu").sort_values(
        ["_gpu", "device", "batch_size"]
    )
    for r in order.itertuples():
        name, size, seed = _cpu_name(r.device, default_threads), int(r.batch_size), r.seed_epoch_s
        moving = r.transfer_s if math.isfinite(r.transfer_s) else 0.0
        if r.compute_s + moving > seed:
            # The same training without the loading took longer than with it: noise, not a split.
            lines.append(
                f"  {name:<8} batch {size:>6,}: no split: the resident epoch ({fmt_time(r.compute_s)}) and the copies "
                f"took longer than the seed epoch ({fmt_time(seed)}), so one of them is noise"
            )
            continue
        share = {
            key: f"{fmt_time(v)} ({v / seed:.0%})" if math.isfinite(v) else "not measured"
            for key, v in (
                ("loading", r.loading_s),
                ("transfer", r.transfer_s),
                ("compute", r.compute_s),
            )
        }
        if r.device == "cpu":
            share["transfer"] = "none (no copy on the CPU)"
        lines.append(
            f"  {name:<8} batch {size:>6,}: {fmt_time(seed)} = loading {share['loading']} + "
            f"transfer {share['transfer']} + compute {share['compute']}"
        )
    if not lines:
        return []
    return [
        "Where a seed epoch goes (compute: the resident epoch; transfer: its per-batch copies; loading: the rest):",
        *lines,
    ]


def _ladder_section(steps, best, default_threads, moves: dict | None = None) -> list[str]:
    """Per device and batch size with more than the cheap steps: each step's epoch, its speedup over
    seed and over the step it builds on, a loss above resident's by more than its tolerance, and
    (from `moves`, by device, batch size and step) which limit the step moves its epoch toward."""
    lines = []
    order = steps.assign(_gpu=steps["device"] != "cpu").sort_values(
        ["_gpu", "device", "batch_size", "step"]
    )
    for (device, size), group in order.groupby(["device", "batch_size"], sort=False):
        fastest = best[(best["device"] == device) & (best["batch_size"] == size)]
        if fastest.empty:
            continue
        resident = group.loc[group["pipeline"] == "resident", "loss"]
        cells, worse = [], []
        for r in group.itertuples():
            cell = f"{r.pipeline} {fmt_time(r.median)}"
            if math.isfinite(r.vs_first) and r.pipeline != group["pipeline"].iloc[0]:
                first = interval_said(
                    r.vs_first,
                    r.vs_first_low,
                    r.vs_first_high,
                    no_interval="",
                    busy=r.vs_first_busy,
                )
                cell += f" {first}"
            if math.isfinite(r.vs_base):
                base = interval_said(
                    r.vs_base, r.vs_base_low, r.vs_base_high, no_interval="", busy=r.vs_base_busy
                )
                cell += f" [{base} over {r.builds_on}]"
            faults = faults_said(r.page_faults)
            move = (moves or {}).get((device, size, r.pipeline))
            cells.append(cell + (f" [{faults}]" if faults else "") + (f"; {move}" if move else ""))
            if r.learns_less:
                worse.append(
                    f"{r.pipeline} loss {r.loss:.3f} > resident {resident.iloc[0]:.3f} + {r.loss_tolerance:.0%}"
                )
        top = fastest.iloc[0]
        gain = (
            f", {interval_said(top.vs_first, top.vs_first_low, top.vs_first_high, busy=top.vs_first_busy)} seed"
            if math.isfinite(top.vs_first)
            else ""
        )
        tie = f"; no difference measured from {top.tied_with}" if top.tied_with else ""
        tie += "; one round: no verdict on which is fastest" if top.tie_unknown else ""
        lines.append(
            f"  {_cpu_name(device, default_threads):<8} batch {int(size):>6,}: fastest {top.pipeline}{gain}{tie}"
        )
        lines += [f"    {cell}" for cell in cells]
        if worse:
            lines.append("    learns less: " + "; ".join(worse))
    if not lines:
        return []
    return [
        "The ladder (epoch time, speedup over seed and [over the step it builds on: what its one change buys], "
        "each with its 95% interval):",
        *lines,
    ]


def _load_said(load: fmt.Load | None) -> str | None:
    """The whole run's machine load (format 5), in words; None for a run that has none (or an empty one)."""
    if load is None or not load.write():
        return None
    if load.available is not True:
        return f"the machine's load across the run is unknown ({load.reason or 'not measured'})"
    share = load.outside_share or 0.0
    words = f"other work took {share:.1%} of the machine's CPU time across the run"
    spans, busy = load.intervals, load.busy_intervals
    if load.busy:
        words = f"the machine was not the run's own: {words} (over {OUTSIDE_SHARE:.0%})"
    if spans and busy:
        words += f", over {OUTSIDE_SHARE:.0%} in {busy} of {spans} spans of it"
    return words


def _health(
    frame, measured: int, run: fmt.RunState, passed_over: int = 0, load: fmt.Load | None = None
) -> str:
    health = [f"{measured} of {cases(run.planned_cases or measured + passed_over)} measured"]
    said = _load_said(load)
    if said:
        health.append(said)
    # cases the format's schema refused: named in the warnings, left out of every figure here
    if passed_over:
        health.append(f"{cases(passed_over)} passed over as unreadable (see the warnings)")
    noisy = int(frame["noisy"].sum())
    if noisy:
        health.append(f"{noisy} noisy (IQR over {NOISY_IQR_SHARE:.0%} of the median)")
    suspect = frame[frame["suspect"]]
    # steady, maybe, but not a measurement of the work: the reason of the first
    if not suspect.empty:
        health.append(
            f"{len(suspect)} suspect, their time not following their bytes ({suspect['suspect_reason'].iloc[0]}): "
            f"{', '.join(suspect['name'].head(3))}{', ...' if len(suspect) > 3 else ''}"
        )
    said = {
        "throttled": "with the GPU throttled (power or heat held its clocks down)",
        "busy": f"with the CPU busy with other work (over {OUTSIDE_SHARE:.0%} of it)",
    }
    for flag, words in said.items():
        names = frame.loc[frame[flag], "name"].tolist()
        if names:
            health.append(
                f"{len(names)} {words}: {', '.join(names[:3])}{', ...' if len(names) > 3 else ''}"
            )
    skipped = run.skipped or []
    if skipped:  # (each said on its line as it happened; pytest's own list of them is left out of a bench session)
        health.append(
            f"{len(skipped)} skipped (the first: {skipped[0].reason or 'no reason given'})"
        )
    failed = run.failed or []
    if failed:
        health.append(
            f"{len(failed)} failed and not saved: {', '.join(str(f.name) for f in failed[:3])}"
        )
    if run.complete is False:
        health.append(f"the run is incomplete: {run.ended or 'not every planned case ran'}")
    return "; ".join(health) + "."


BUSY_NO_VERDICT = f"no verdict: decided on figures measured while the machine was busy ({BUSY})"


def _busy_opening(load: fmt.Load, choices, default_threads) -> list[str]:
    """The answer's first lines on a run the load held: how much, what it does to the figures, what to do."""
    share = load.outside_share or 0.0
    spans, busy = load.intervals, load.busy_intervals
    where = f", over {OUTSIDE_SHARE:.0%} in {busy} of {spans} spans of the run" if spans else ""
    lines = [
        f"The machine was busy while this ran: other work took {share:.0%} of its CPU time{where}. Every figure "
        f"below is slower than the machine can do, a ratio one of whose figures ran under that load is marked "
        f"({BUSY}), and no verdict is drawn from it."
    ]
    one = choices[(choices["best_cpu_threads"] == 1) & (choices["default_threads"] != 1)]
    gains = (one["median_default"] / one["median_best"]).dropna() if not one.empty else []
    seen = (
        f" (in this run 1 thread was up to {max(gains):.2f}x faster than {default_threads})"
        if len(gains)
        else ""
    )
    lines.append(
        f"  What to do: rerun it on an idle machine, or with --cpu-threads 1: torch's default {default_threads} "
        f"threads wait for a core whenever other work holds one{seen}."
    )
    return lines


def _wrapped(lines: list[str], width: int | None) -> list[str]:
    """Each line folded at `width` columns (None: as it is), its continuation indented under its own text."""
    if width is None:
        return lines
    return [part for line in lines for part in folded(line, width)]


def end_summary(run: Mapping, *, width: int | None = WIDTH) -> list[str]:
    """The answer for the machine of one saved run (or of the run just made, before it is saved), on one screen:
    speedups and crossovers, the CPU by thread count, where a seed epoch goes, the ladder, and the
    run's health. A run of several models (--model) answers for each alone, after the view of all of
    them against the work an image. Folded at `width` columns, as a terminal shows it (None: a line a
    statement, as tests read it)."""
    from bench.analysis import models as by
    from bench.analysis.headline import GLOSSARY, TO_MEASURE, model_headline
    from bench.analysis.rows import runs_to_frame

    typed = fmt.read_run(run)
    found = typed.benchmarks if isinstance(typed.benchmarks, list) else []
    ours = [b for b in found if isinstance(b, dict) and fmt.Benchmark.read(b).group in FAMILIES]
    frame = runs_to_frame([(Path("this run"), {**run, "benchmarks": ours})])
    state = typed.ours.run or fmt.RunState()
    if frame.empty:
        return [_health_empty(len(ours), state)]
    devices = set(frame["device"].astype(str))
    reference = None
    if devices == {"cpu"}:
        from bench.analysis.reference import load_reference

        reference = load_reference()
    models = by.models_of(frame) or [CNN_MODEL]
    named = models != [CNN_MODEL]
    # The verdict first, in at most five lines a model; the detail after it.
    verdicts = []
    for model in models:
        try:
            verdicts.append(model_headline(frame, reference, model, named))
        # (a fault in the verdict must not take the detail with it: the plugin would lose the whole answer)
        except Exception as exc:
            verdicts.append(
                [
                    f"The verdict could not be worded ({type(exc).__name__}: {exc}); the detail follows."
                ]
            )
    lines: list[str] = []
    for verdict in verdicts:
        lines += [*([""] if lines and verdict else []), *verdict]
    if len(models) > 1:
        lines += ["", *_by_model_section(by.by_model(frame))]
    last: list[str] = []
    for i, model in enumerate(models):
        rows = by.of_model(frame, model)
        heading = f"In detail{f', {model}' if named else ''} (the terms: {GLOSSARY}):"
        detail, said_last = _detail(
            rows, typed, reference, bool(lines), limits_said=models[0] if i else None
        )
        lines += [*(["", heading] if lines else []), *detail]
        # (several models: each one's reference figures close its own detail)
        last, lines = (said_last, lines) if not named else ([], lines + said_last)
    load = typed.ours.load
    lines.append(_health(frame, len(frame), state, passed_over=len(ours) - len(frame), load=load))
    # The detail runs to a screen or more after the verdict: its main figure again, last, where a terminal
    # leaves the eye, with where the rest of it is.
    for model, verdict in zip(models, verdicts, strict=True):
        if verdict[1:2] and not verdict[1].startswith(TO_MEASURE):
            last.append(
                f"In short{f' ({model})' if named else ''}: {verdict[1].strip()} "
                "(the verdict in full: under the heading above)."
            )
    return _wrapped(lines + last, width)


def _detail(
    frame, typed: fmt.Run, reference, after_verdict: bool, limits_said: str | None = None
) -> tuple[list[str], list[str]]:
    """The detail of one model's figures (with the device limits, their figures unless `limits_said` for another
    model, named, already): the lines under its heading, and those said last on the screen (a machine without a
    GPU: the reference GPUs' figures)."""
    from bench.analysis import figures

    threads = typed.default_threads
    devices = set(frame["device"].astype(str))
    cross = figures.crossovers(figures.speedups(frame.iloc[:0]))
    load = typed.ours.load
    busy_run = mostly_busy(load.write() if load is not None else {})
    choices = figures.cpu_choices(frame)
    lines: list[str] = []
    # A run the load held says so before its figures: every verdict below it could be the load's.
    # (the verdict said the load already: its detail keeps what to do about it)
    lines += (
        (_busy_opening(load, choices, threads)[1 if after_verdict else 0 :]) if busy_run else []
    )
    # on a machine without a GPU, the reference GPUs' figures: the last lines on the screen
    last: list[str] = []
    if devices - {"cpu"} and "cpu" in devices:
        speed = figures.speedups(frame)
        cross = figures.crossovers(speed)
        lines += _speedup_section(speed, cross, threads, busy_run)
    elif devices == {"cpu"}:
        from bench.analysis.reference import against_reference, reference_said

        models = set(frame["model"].dropna())
        mine = reference if reference is None else reference[reference["model"].isin(models)]
        last = reference_said(against_reference(frame, mine), busy_run=busy_run) or [
            "No GPU in this run, and no reference runs in this checkout (results/reference/): no speedup to show."
            if reference.empty
            else "No GPU in this run, and no reference GPU figure of the same work (model, family, batch size "
            "and images, this CPU at torch's default thread count): no speedup to show."
        ]
    else:
        lines.append(
            "No CPU cases in this run: no speedup to show (run with --devices cpu,cuda:0 to compare)."
        )
    lines += _threads_section(frame, choices, threads)
    lines += _breakdown_section(figures.breakdown(frame), threads)
    steps = figures.ladder(frame, "train")
    lines += _ladder_section(steps, figures.fastest_steps(steps), threads, _moves(frame))
    lines += _limits_section(frame, cross, said_before=limits_said)
    return lines, last


def _by_model_section(view) -> list[str]:
    """Where model size moves the crossover, on this machine: each model's size, then per step its GPU speedup
    by batch size (or its CPU's time an image, without a GPU) and its crossover."""
    from bench.analysis.headline import times_said

    if view.empty:
        return []
    gpu = (view["measure"] == "speedup").any()
    lines = [
        f"{BY_MODEL_TITLE} (each model by its work an image: "
        + (
            "the GPU's speedup over the CPU at torch's default threads, with its 95% interval):"
            if gpu
            else "no GPU here, so each model's CPU time an image, the median):"
        )
    ]
    for (model, family, variant, device), rows in view.groupby(
        ["model", "family", "variant", "device"], sort=False
    ):
        first = rows.iloc[0]
        size = f"{flops_said(first['flops'])} an image"
        if first["measure"] == "speedup":
            cells = [
                f"{int(r['batch_size']):,}: {times_said(r['value'], r['low'], r['high'])}"
                for _, r in rows.iterrows()
            ]
            said = f"; {first['crossover']}" if first["crossover"] else ""
        else:
            cells = [
                f"{int(r['batch_size']):,}: {fmt_time(r['value'])}" for _, r in rows.iterrows()
            ]
            said = ""
        lines.append(
            f"  {model} ({size}), {family} {variant} on {device}: {'; '.join(cells)}{said}"
        )
    return lines


def _moves(frame) -> dict:
    """(device, batch size, step) -> which limit the training step moves its epoch toward (the CPU at its default)."""
    from bench.analysis import figures
    from bench.analysis import held as held_limits

    rows = held_limits.held(frame)
    rows = rows[
        (rows["family"] == "train") & ((rows["device"] != "cpu") | figures.at_default(rows))
    ]
    return {(r.device, r.batch_size, r.pipeline): r.move for r in rows.itertuples() if r.move}


def _limits_section(frame, cross, *, said_before: str | None = None) -> list[str]:
    """Each device's limits as measured, why its epochs take what they take, and the crossover the limits predict.
    `said_before`: the model whose detail said the limits' figures already: only what they explain of this
    one's."""
    from bench.analysis import held as held_limits

    table = held_limits.limits_table(frame)
    if table.empty:
        return []
    lines = [
        "Against this machine's own limits, measured in this run (every case against them: python -m bench "
        'report, "Each case against its limits"):'
        if said_before is None
        else f"Against this machine's own limits (their figures: in the detail of {said_before} above):"
    ]
    for r in table.to_dict("records"):  # (the table leaves out a column no device has a figure in)
        said = {
            "An operation, eager": "an operation {} eager",
            "Replayed (CUDA graph)": "{} replayed from a CUDA graph",
            "Peak float32": "peak float32 {}",
            "Peak bfloat16": "bfloat16 {}",
            "Memory bandwidth": "memory {}",
            "Copies host-device (fitted)": "copies {}",
        }
        parts = [words.format(r[column]) for column, words in said.items() if r.get(column)]
        if said_before is not None:
            continue  # (the device's figures, and what is not built on, were said with them)
        lines.append(f"  {r['Device']}{' (quick)' * (r['Run'] == 'quick')}: " + "; ".join(parts))
        if r.get("Not built on"):  # no floor, binding limit or why is built on these
            lines.append(f"    not built on: {r['Not built on']}")
    lines += [f"  {said}" for said_of in held_limits.why(frame).values() for said in said_of]
    for p in held_limits.predicted(frame, cross).itertuples():
        if p.predicted:
            lines.append(
                f"  Predicted from the limits, {p.device} {p.family} {p.variant}: {p.predicted} (measured: "
                f"{p.measured or 'no crossover measured'})"
            )
    return lines if lines[1:] else []


def _health_empty(measured: int, run: fmt.RunState) -> str:
    return f"{measured} of {cases(run.planned_cases or measured)} measured; none of them could be read."
