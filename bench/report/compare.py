"""Compare two saved runs of one machine: each case's change, with its noise, and the regressions beyond it."""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from bench.analysis.intervals import ratio_estimate
from bench.analysis.rows import runs_to_frame
from bench.analysis.words import WIDTH, folded
from bench.format import records as fmt
from bench.format.names import AXES, CNN_MODEL, FAMILY_AXES, case_id
from bench.format.store import RunFileWarning, find_run_files, load_run
from bench.report.verdict import (
    DEFAULT_FACTOR,
    FASTER,
    ONE_ROUND,
    SAME,
    SLOWER,
    UNPAIRED,
    VERDICTS,
    as_text,
    environment_changes,
    figure_said,
    marks_of,
    run_state,
    shortened,
    verdict,
)

__all__ = [
    "DEFAULT_FACTOR",
    "VERDICTS",
    "CompareError",
    "compare_runs",
    "environment_changes",
    "main",
    "newest_two",
]


# The newest run of a folder is compared as a run only with at least this many cases: fewer is a run
# of some steps alone (-k compile), whose comparison says nothing of the machine.
MIN_CASES = 3


class CompareError(ValueError):
    """Input that cannot be compared (a missing file, not a run, two machines, quick against full): says which."""


# ---------------------------------------------------------------- loading


def _load(path: Path, role: str) -> dict:
    """One saved run, or a CompareError naming the file and what is wrong with it."""
    if not path.is_file():
        raise CompareError(
            f"{role} {path}: no such file"
            + (" (a folder: give a run's .json)" if path.is_dir() else "")
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RunFileWarning)
        run = load_run(path)
    if run is None:
        # load_run says why in a warning written for a report, which passes the file over; here it
        # is fatal.
        reason = (
            re.sub(r",? skipped\b", "", str(caught[-1].message))
            if caught
            else f"{path}: not a saved run"
        )
        raise CompareError(f"{role} {reason}")
    return run


def _key(run: dict, path: Path) -> str:
    """The machine's key, as the report computes it (a reference run's is never a user's: see load.py)."""
    with warnings.catch_warnings():
        # A malformed field is warned about once, when the cases are read (compare_runs), not here
        # too.
        warnings.simplefilter("ignore", RunFileWarning)
        frame = runs_to_frame([(path, run)], all_runs=True)
    return str(frame["machine_key"].iloc[0]) if len(frame) else ""


def _quick(run: dict) -> bool:
    plan = fmt.read_run(run).ours.plan
    return bool(plan and plan.quick)


def _models(run: dict) -> list[str]:
    """The models a run's cases measured, as tables name them (format 8: each case's model; none named: the notes'
    CNN), in a fixed order: a plan's order of its models is not a difference."""
    found = set()
    for case in fmt.read_run(run).cases():
        if case.group == "limits":
            continue  # a device's limits belong to no model
        info = case.extra.model
        found.add((info.shown if info is not None else None) or CNN_MODEL)
    return sorted(found) or [CNN_MODEL]


def _when(run: dict) -> pd.Timestamp:
    # A run with no readable date counts as the oldest, as in the report's select_newest.
    when = pd.to_datetime(run.get("datetime"), utc=True, errors="coerce")
    return pd.Timestamp.min.tz_localize("UTC") if pd.isna(when) else when


def newest_two(folder: Path) -> tuple[Path, Path]:
    """(OLD, NEW) in a machine's folder: its newest full run and the newest earlier full run that shares its cases
    (_sharing), or the same of its quick runs if it has no two full.

    Quick runs measure other work (2,000-image epochs, one round), so they are compared only with
    each other; as in the report, a full run is preferred over a quick one.
    """
    runs = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RunFileWarning)
        for path, _found_under in find_run_files([folder]):
            run = load_run(path)
            if run is not None:
                runs.append((path, run))
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    machines = sorted({_key(run, path) for path, run in runs})
    if len(machines) > 1:
        raise CompareError(
            f"{folder} holds runs of {len(machines)} machines ({', '.join(machines)}): give two runs of one of "
            "them as files (OLD.json NEW.json), or of two with --force"
        )
    for quick in (False, True):
        kind = sorted((r for r in runs if _quick(r[1]) is quick), key=lambda r: _when(r[1]))
        if len(kind) >= 2:
            return _sharing(folder, kind)
    full = sum(1 for r in runs if _quick(r[1]) is False)
    raise CompareError(
        f"{folder}:\n  {full} full and {len(runs) - full} quick run{'s' if len(runs) - full != 1 else ''} here: "
        "compare needs two of one kind (a quick run measures\n  other work). Two default runs give a "
        "verdict: run pytest bench --benchmark-autosave again,\n  then compare."
    )


def _measured(path: Path, run: dict) -> set[str]:
    """What a run measured, as compare pairs it (family, axes, quick, dataset), not by test name."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RunFileWarning)  # (said when the pair itself is read)
        return set(_cases(path, run).index)


def _sharing(folder: Path, kind: list[tuple[Path, dict]]) -> tuple[Path, Path]:
    """(OLD, NEW) of one kind of run: NEW the newest run of at least MIN_CASES cases (a newer run of some steps
    alone, `-k compile`, is passed over with a note), OLD the newest earlier run of the same models
    that shares at least half of NEW's cases, else the one that shares the most."""
    measured = [(path, run, _measured(path, run)) for path, run in kind]
    at = len(measured) - 1
    while at > 0 and len(measured[at][2]) < MIN_CASES:
        at -= 1
    if len(measured[at][2]) < MIN_CASES or at == 0:
        path, _run, cases = measured[-1]
        raise CompareError(
            f"{folder}: no run but the oldest has {MIN_CASES} cases or more to compare as a run (the newest, "
            f"{path.name}, has {len(cases)}); give two runs as files (OLD.json NEW.json)"
        )
    for path, _run, cases in measured[at + 1 :]:
        print(
            f"note: {path.name} has {len(cases)} case{'s' if len(cases) != 1 else ''}, too few to compare as a run: "
            f"comparing the newest run with {MIN_CASES} or more",
            file=sys.stderr,
        )
    # Only a run of the same models is compared with NEW (one model's time is not another's): a run of
    # the CNN and another model after a run of that model alone pairs with an earlier run of both. NEW is
    # the newest run that has such an earlier run (a newer run of other models is passed over, said so).
    newest = measured[at][0]
    while at > 0:
        new_path, new_run, mine = measured[at]
        models = _models(new_run)
        same = [(path, run, cases) for path, run, cases in measured[:at] if _models(run) == models]
        if same:
            break
        at -= 1
    else:
        raise CompareError(
            f"{folder}: no earlier run of {newest.name}'s models, nor two runs of other models alike: compare "
            "needs two runs of the same models; give two runs as files (OLD.json NEW.json)"
        )
    if new_path != newest:
        print(
            f"note: no earlier run measured {newest.name}'s models: comparing {new_path.name}, the newest run "
            "with an earlier run of its models",
            file=sys.stderr,
        )
    shared = [(len(mine & cases), path) for path, _run, cases in same]
    enough = [path for n, path in shared if n * 2 >= len(mine)]
    if enough:
        return enough[-1], new_path
    most, path = max(shared, key=lambda item: item[0])
    if most == 0:
        raise CompareError(f"{folder}: no earlier run shares a case with {new_path.name}")
    return path, new_path


# ---------------------------------------------------------------- statistics


# ---------------------------------------------------------------- pairing


def _case(row) -> str:
    axes = FAMILY_AXES.get(row["family"], AXES)
    model = as_text(row["model"])
    # (a case of the CNN, or a device limit, names no model: the cases a run always had)
    said = f"{model} " if model not in ("", CNN_MODEL) else ""
    return f"{row['family']} {said}{case_id({axis: as_text(row[axis]) for axis in axes})}"


def _cases(path: Path, run: dict) -> pd.DataFrame:
    """One run's cases: identity, label, stats and round times, indexed by identity."""
    frame = runs_to_frame([(path, run)], all_runs=True)
    # every round's time, as the run kept them: the ratio's interval needs them
    frame["data"] = frame["round_times"]
    # required by the saved-run format (bench/format/schema.py)
    frame["rounds"] = frame["rounds"].astype(int)
    # A GPU case runs at torch's default thread count, whatever it was: not part of its identity (as
    # select_newest).
    identity = frame.assign(cpu_threads=frame["cpu_threads"].where(frame["device"] == "cpu"))
    # A quick figure (2,000-image epoch, one round) is another measurement than a full one, on other
    # data too.
    # A limit's matrix product is searched for its size in each run: products of other sides are other work
    # (their times differ by the cube of the side), so they are not paired.
    columns = ["family", *AXES, "quick", "dataset", "limit_size"]
    frame["identity"] = [
        "|".join(as_text(v) for v in values) for values in identity[columns].itertuples(index=False)
    ]
    frame["same_work"] = [
        "|".join(as_text(v) for v in values)
        for values in identity[["family", *AXES]].itertuples(index=False)
    ]
    frame["case"] = [_case(row) for _, row in frame.iterrows()]
    doubled = frame["identity"].duplicated(keep="last")
    for name in frame.loc[doubled, "name"]:
        warnings.warn(
            f"{path}: {name} measures a case measured again later in the run: the later figure is kept",
            RunFileWarning,
            stacklevel=2,
        )
    return frame[~doubled].set_index("identity")


def _unpaired_why(
    row: pd.Series, other: pd.DataFrame, here: str, there: str, there_state: str
) -> str:
    match = other[other["same_work"] == row["same_work"]]
    if len(match):
        # Said OLD first, whichever side this row is from: a case's two rows then read the same.
        old, new = (row, match.iloc[0]) if here == "OLD" else (match.iloc[0], row)
        if bool(old["quick"]) != bool(new["quick"]):
            kinds = {True: "quick", False: "full"}
            return f"{kinds[bool(old['quick'])]} in OLD, {kinds[bool(new['quick'])]} in NEW: not the same work"
        if as_text(old["limit_size"]) != as_text(new["limit_size"]):
            return (
                f"a product of side {as_text(old['limit_size'])} in OLD, {as_text(new['limit_size'])} in NEW: "
                "not the same work (the report compares their FLOP/s)"
            )
        return f"dataset {old['dataset']} in OLD, {new['dataset']} in NEW"
    return f"only in {here}" + (f" ({there} {there_state})" if there_state else "")


def compare_runs(
    old: tuple[Path, dict], new: tuple[Path, dict], *, factor: float = DEFAULT_FACTOR
) -> pd.DataFrame:
    """One row per case of either run: old and new median, IQR share and rounds, new/old ratio, verdict, why.

    Cases are paired by family, every axis in params, quick or full, and dataset, never by test name
    (format 2 added the thread count to the names). Rows come regressions first (VERDICTS' order),
    the largest changes first within a verdict.
    """
    a, b = _cases(*old), _cases(*new)
    rows = []
    for identity in [*a.index, *(i for i in b.index if i not in a.index)]:
        o = a.loc[identity] if identity in a.index else None
        n = b.loc[identity] if identity in b.index else None
        row = {
            "case": (n if n is not None else o)["case"],
            "family": (n if n is not None else o)["family"],
        }
        for side, r in (("old", o), ("new", n)):
            row[f"{side}_median"] = r["median"] if r is not None else np.nan
            row[f"{side}_iqr_share"] = r["iqr"] / r["median"] if r is not None else np.nan
            row[f"{side}_rounds"] = r["rounds"] if r is not None else pd.NA
            row[f"{side}_marks"] = marks_of(r) if r is not None else ""
        if o is None or n is None:
            here, there, other, state = (
                ("OLD", "NEW", b, run_state(new[1]))
                if n is None
                else ("NEW", "OLD", a, run_state(old[1]))
            )
            row.update(
                ratio=np.nan,
                ratio_low=np.nan,
                ratio_high=np.nan,
                verdict=UNPAIRED,
                why=_unpaired_why(o if n is None else n, other, here, there, state),
            )
        else:
            # new/old with its 95% interval, one estimate from both runs' rounds
            # (bench/analysis/intervals.py); the verdict is decided on that same interval.
            ratio = ratio_estimate(
                n["data"], o["data"], numerator_median=n["median"], denominator_median=o["median"]
            )
            said, why = verdict(ratio, int(o["rounds"]), int(n["rounds"]), factor)
            row.update(
                ratio=ratio.value, ratio_low=ratio.low, ratio_high=ratio.high, verdict=said, why=why
            )
        rows.append(row)
    table = pd.DataFrame(rows)
    table["_order"] = table["verdict"].map(VERDICTS.index)
    table["_size"] = -np.abs(np.log(table["ratio"].astype("float64"))).fillna(0)
    table = table.sort_values(["_order", "_size", "case"], kind="stable").drop(
        columns=["_order", "_size"]
    )
    table["old_rounds"] = table["old_rounds"].astype("Int64")
    table["new_rounds"] = table["new_rounds"].astype("Int64")
    return table.reset_index(drop=True)


# ---------------------------------------------------------------- environment


# ---------------------------------------------------------------- rendering


# Each side of a changed fact is cut to this, so that the fact and both sides fit WIDTH.
_FACT_SIDE = 38


def _header(old_path: Path, old: dict, new_path: Path, new: dict) -> list[str]:
    """The machine, the two runs and what changed between them."""
    frame = runs_to_frame([(old_path, old)], all_runs=True)
    lines = [
        f"machine: {frame['host'].iloc[0]} · {frame['what'].iloc[0]}"
        if len(frame)
        else "machine: unknown"
    ]
    for role, path, run in (("OLD", old_path, old), ("NEW", new_path, new)):
        when = _when(run)
        date = (
            "no date"
            if when == pd.Timestamp.min.tz_localize("UTC")
            else when.strftime("%Y-%m-%d %H:%M UTC")
        )
        said = f"{role}: {path} ({date}, {'quick' if _quick(run) else 'full'})"
        # (a saved run's name alone is some 90 columns: its folder on one line, its name under it)
        lines += (
            [said]
            if len(said) <= WIDTH
            else [
                f"{role}: {date}, {'quick' if _quick(run) else 'full'}, {path.parent}{os.sep}",
                f"    {path.name}",
            ]
        )
    if _when(old) > _when(new):
        lines.append("note: OLD is the later run; ratios are still NEW/OLD as given")
    changed, same = environment_changes(old, new)
    if changed:
        lines.append("changed between the runs:")
        width = max(len(fact) for fact, _, _ in changed)
        lines += [
            f"  {fact:<{width}}  {shortened(x, _FACT_SIDE)} -> {shortened(y, _FACT_SIDE)}"
            for fact, x, y in changed
        ]
    else:
        lines.append("changed between the runs: nothing recorded")
    shown = [f"{fact} {value}" for fact, value in same if not fact.startswith("plan.")]
    lines += folded(
        "same in both: "
        + ", ".join(shown)
        + ("; the rest of the plan" if any(f.startswith("plan.") for f, _ in same) else "")
    )
    return lines


def _rows(table: pd.DataFrame) -> list[list[str]]:
    """Each case as the table prints it: its id (its family heads its rows), old, new, new/old, and the
    machine's state (marks)."""
    rows = []
    for _, r in table.iterrows():
        # (the verdict says whether the interval includes 1: not said again beside it)
        ratio = (
            "-"
            if pd.isna(r["ratio"])
            else f"{r['ratio']:.2f}"
            if pd.isna(r["ratio_low"]) or pd.isna(r["ratio_high"])
            else f"{r['ratio']:.2f} ({r['ratio_low']:.2f}-{r['ratio_high']:.2f})"
        )
        # The machine's state while each run measured the case: a verdict on a busy run is weak.
        if r["old_marks"] and r["old_marks"] == r["new_marks"]:
            marks = f"both {r['old_marks']}"
        else:
            marks = "; ".join(
                f"{side} {m}" for side, m in (("old", r["old_marks"]), ("new", r["new_marks"])) if m
            )
        rows.append(
            [
                str(r["case"]).removeprefix(f"{r['family']} "),
                figure_said(r["old_median"], r["old_iqr_share"], r["old_rounds"]),
                figure_said(r["new_median"], r["new_iqr_share"], r["new_rounds"]),
                ratio,
                marks,
            ]
        )
    return rows


def _table(table: pd.DataFrame) -> list[str]:
    """The cases by verdict, regressions first, and by why within it: a line a verdict and why with its count,
    then its cases by family, in columns. A case whose id is too long for its column has its figures
    on the line under it; marks too wide to follow the figures go under them."""
    rows = _rows(table)
    head = ["case", "old", "new", "new/old", ""]
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(4)]
    # The figures' columns as wide as they need; the case's what is left of WIDTH.
    widths[0] = min(widths[0], WIDTH - 4 - sum(w + 2 for w in widths[1:4]))

    def line(cells: list[str]) -> list[str]:
        figures = "  ".join(c.ljust(w) for c, w in zip(cells[1:4], widths[1:], strict=True))
        if len(cells[0]) <= widths[0]:
            said = [f"    {cells[0].ljust(widths[0])}  {figures}"]
        else:
            said = [f"    {cells[0]}", f"    {' ' * widths[0]}  {figures}"]
        if cells[4] and len(f"{said[-1]}  {cells[4]}") <= WIDTH:
            said[-1] += f"  {cells[4]}"
        elif cells[4]:
            said += folded(" " * 6 + cells[4], indent=" " * 6)
        return [s.rstrip() for s in said]

    lines = line(head)
    families, whys = table["family"].tolist(), table["why"].tolist()
    for name in VERDICTS:
        at = [i for i, v in enumerate(table["verdict"]) if v == name]
        # A verdict's cases a line a reason ("under 1.10x", "its 95% interval includes 1")
        for why in dict.fromkeys(whys[i] for i in at):
            group = [i for i in at if whys[i] == why]
            lines += folded(f"{name} ({len(group)}): {why}")
            for family in dict.fromkeys(families[i] for i in group):
                lines.append(f"  {family}")
                lines += [part for i in group if families[i] == family for part in line(rows[i])]
    return lines


def render(
    old_path: Path,
    old: dict,
    new_path: Path,
    new: dict,
    table: pd.DataFrame,
    factor: float,
    every: bool = False,
) -> str:
    """The environment lines, the table and the summary, as printed, no line over WIDTH columns. A case that
    can't be told (one round) is counted, not listed, unless `every`: a quick run has nothing else."""
    one_round = table["verdict"] == ONE_ROUND
    told = table[~one_round] if not every else table
    lines = []
    if one_round.any() and not (table["verdict"].isin((SLOWER, FASTER, SAME))).any():
        # Nothing measured twice: said first, with what would give a verdict, not rows of "can't tell".
        lines += folded(
            f"No verdict: the {int(one_round.sum())} cases both runs measured have one round"
            + (" each (--quick)" if _quick(old) and _quick(new) else " in one run or both")
            + ": no spread to weigh a change against; a verdict needs two default runs "
            "(`pytest bench --benchmark-autosave`, twice)."
        )
    lines += _header(old_path, old, new_path, new)
    lines.append("")
    if len(told):
        lines += _table(told)
        lines.append("")
        lines += folded(
            "old, new: median time per round, ±IQR as a share of it where over 10%, (rounds); new/old: the ratio of the "
            "rounds' geometric means with its 95% interval, over 1 is slower (throughput included: a "
            f"time). Beyond the noise: over {factor:.2f}x, and the interval wholly on that side of 1."
        )
        lines += folded(
            "marks: busy, other work used over a tenth of the machine's CPU time during (or around) the "
            "case; throttled, the GPU held its clocks down (telemetry); suspect, a copy whose time did "
            "not follow its bytes in its run"
        )
    counts = table["verdict"].value_counts()
    lines += folded(", ".join(f"{counts.get(v, 0)} {v}" for v in VERDICTS))
    if one_round.any() and not every:
        lines.append(
            f"(the {int(one_round.sum())} that can't be told are not listed: --all lists them)"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------- command


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench compare",
        description=__doc__,
        epilog="Exit status: 0; 1 with --fail-on-regression when a case got slower beyond the noise; 2 for bad input.",
    )
    parser.add_argument(
        "old",
        type=Path,
        help="the earlier saved run (.json), or a machine's folder to compare its newest run with the earlier one that shares its cases",
    )
    parser.add_argument("new", type=Path, nargs="?", help="the later saved run (.json)")
    parser.add_argument(
        "--factor",
        type=float,
        default=DEFAULT_FACTOR,
        help=f"the smallest change reported, as a ratio (default {DEFAULT_FACTOR})",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="compare runs of two machines (each case's ratio is then machine against machine)",
    )
    parser.add_argument(
        "--all",
        action="store_true",
        help="list every case, those that can't be told (one round) too; by default they are counted",
    )
    parser.add_argument(
        "--fail-on-regression",
        action="store_true",
        help="exit 1 when a case got slower beyond the noise (for CI)",
    )
    args = parser.parse_args(argv)
    if not (math.isfinite(args.factor) and args.factor > 1):
        parser.error(f"--factor {args.factor}: must be a ratio above 1, such as 1.10")
    try:
        if args.new is None:
            if not args.old.is_dir():
                raise CompareError(
                    f"{args.old}: one argument must be a machine's folder; give OLD and NEW runs otherwise"
                )
            args.old, args.new = newest_two(args.old)
        if args.old.resolve() == args.new.resolve():
            raise CompareError(f"OLD and NEW are the same file ({args.new})")
        old, new = _load(args.old, "OLD"), _load(args.new, "NEW")
        keys = _key(old, args.old), _key(new, args.new)
        if keys[0] != keys[1] and not args.force:
            raise CompareError(
                f"OLD is a run of machine {keys[0]!r} and NEW of {keys[1]!r}: this compares one machine before and "
                "after a change; --force compares them anyway"
            )
        if _quick(old) != _quick(new):
            quick = "OLD" if _quick(old) else "NEW"
            raise CompareError(
                f"{quick} is a quick run (2,000-image epochs, one round) and the other a full one: no case of one is "
                "the same work as the other's; compare two quick runs or two full runs"
            )
        models = _models(old), _models(new)
        if models[0] != models[1]:
            raise CompareError(
                f"OLD measured {', '.join(models[0])} and NEW {', '.join(models[1])}: one model's time is not "
                "another's; compare two runs of the same models (python -m bench report gives each model its page)"
            )
    except CompareError as exc:
        parser.error(str(exc))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RunFileWarning)
        table = compare_runs((args.old, old), (args.new, new), factor=args.factor)
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    print(render(args.old, old, args.new, new, table, args.factor, every=args.all))
    return 1 if args.fail_on_regression and (table["verdict"] == SLOWER).any() else 0


if __name__ == "__main__":
    sys.exit(main())
