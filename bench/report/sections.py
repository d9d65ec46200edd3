"""The report's sections declared as data: each one's title, table, plot and when it is shown; their words are in templates/sections.j2."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from jinja2 import Environment, PackageLoader, StrictUndefined

from bench.analysis import figures
from bench.analysis import held as held_limits
from bench.analysis.answers import answers as machine_answers
from bench.analysis.reference import load_reference
from bench.format.names import NOISY_IQR_SHARE
from bench.report import facts, plots, tables

__all__ = [
    "SECTIONS",
    "Facts",
    "Section",
    "SectionSpec",
    "answers_of",
    "marks",
    "reference_note",
    "said_by_model",
    "sections",
]


@dataclass
class Section:
    """One section as the page shows it."""

    title: str
    table: pd.DataFrame | None  # None: the sentence says why there is none
    sentence: str
    plot: str | None = None


@dataclass(frozen=True)
class Facts:
    """What the sections' tables, plots and words are made from: the figures, computed once for all of them."""

    frame: pd.DataFrame
    out: Path
    speed: pd.DataFrame
    cross: pd.DataFrame
    parts: pd.DataFrame
    threads: pd.DataFrame
    held: pd.DataFrame
    peaks: pd.DataFrame
    energy_ratio: pd.DataFrame
    has_gpu: bool
    has_energy: bool
    energy_notes: str
    several: bool
    in_fleet: bool
    cross_machine: bool

    @classmethod
    def of(cls, frame: pd.DataFrame, out: Path, cross_machine: bool, in_fleet: bool) -> Facts:
        choices = figures.cpu_choices(frame)
        speed = figures.speedups(frame)
        return cls(
            frame=frame,
            out=out,
            speed=speed,
            cross=figures.crossovers(speed),
            parts=figures.breakdown(frame),
            threads=tables.threads_table(frame, choices),
            held=held_limits.held(frame),
            peaks=held_limits.device_limits(frame),
            energy_ratio=facts.energy_ratio_table(frame),
            has_gpu=bool(figures.is_gpu(frame["device"]).any()),
            has_energy=bool(frame["energy_j"].notna().any()),
            energy_notes="; ".join(facts.energy_notes(frame)),
            several=frame["machine_key"].nunique() > 1,
            in_fleet=in_fleet,
            cross_machine=cross_machine,
        )

    @property
    def has_held(self) -> bool:
        return not self.held.empty

    @property
    def has_limits(self) -> bool:
        return not self.peaks.empty


def _always(_: Facts) -> bool:
    return True


@dataclass(frozen=True)
class SectionSpec:
    """A section of the report: `key` names its words' macro in templates/sections.j2; `table` and `plot` make its
    parts from the Facts (a table of None: the words say why there is none); `shown` says whether it is on the page
    at all."""

    key: str
    title: str
    table: Callable[[Facts], pd.DataFrame | None]
    plot: Callable[[Facts], Path | None] | None = None
    shown: Callable[[Facts], bool] = _always


def _picture(
    draw: Callable[[Facts, Path], Path | None], name: str
) -> Callable[[Facts], Path | None]:
    """A section's plot, drawn into the report folder under `name`."""
    return lambda f: draw(f, f.out / name)


# In the order the page shows them.
SECTIONS = (
    SectionSpec(
        "train",
        "Training epoch time",
        lambda f: tables.train_table(f.frame),
        _picture(lambda f, path: plots.plot_epoch_time(f.frame, path), "epoch_time.png"),
    ),
    SectionSpec(
        "inference",
        "Inference",
        lambda f: tables.inference_table(f.frame),
        _picture(lambda f, path: plots.plot_inference(f.frame, path), "inference_throughput.png"),
    ),
    SectionSpec(
        "ladder_train",
        "The optimisation ladder: training",
        lambda f: tables.ladder_table(figures.ladder(f.frame, "train"), "train"),
    ),
    SectionSpec(
        "ladder_inference",
        "The optimisation ladder: inference",
        lambda f: tables.ladder_table(figures.ladder(f.frame, "inference"), "inference"),
    ),
    SectionSpec("threads", "CPU threads", lambda f: f.threads, shown=lambda f: not f.threads.empty),
    SectionSpec(
        "transfer",
        "Transfer bandwidth",
        lambda f: tables.transfer_table(f.frame),
        _picture(lambda f, path: plots.plot_transfer(f.frame, path), "transfer_bandwidth.png"),
    ),
    SectionSpec(
        "speedup",
        "GPU speedup over the CPU",
        lambda f: tables.speedup_table(f.speed) if f.has_gpu else None,
        _picture(lambda f, path: plots.plot_speedup(f.speed, path), "speedup.png"),
    ),
    SectionSpec(
        "crossover",
        "Crossover batch size",
        lambda f: tables.crossover_table(f.cross) if f.has_gpu else None,
    ),
    SectionSpec(
        "breakdown",
        "Where an epoch's time goes",
        lambda f: tables.breakdown_table(f.parts),
        _picture(lambda f, path: plots.plot_breakdown(f.parts, path), "epoch_breakdown.png"),
    ),
    SectionSpec(
        "limits",
        "The machine's limits",
        lambda f: held_limits.limits_table(f.frame) if f.has_limits else None,
        _picture(lambda f, path: plots.plot_limits(f.held, f.peaks, path), "limits.png"),
    ),
    SectionSpec(
        "held",
        "Each case against its limits",
        lambda f: held_limits.held_table(f.frame) if f.has_held else None,
    ),
    SectionSpec(
        "predicted",
        "Crossover predicted from the limits",
        lambda f: (
            held_limits.predicted_table(f.frame, f.cross) if f.has_gpu and f.has_held else None
        ),
    ),
    SectionSpec(
        "energy", "Energy", lambda f: facts.energy_table(f.frame) if f.has_energy else None
    ),
    SectionSpec(
        "energy_ratio",
        "GPU energy against the CPU's",
        lambda f: f.energy_ratio,
        shown=lambda f: not f.energy_ratio.empty,
    ),
    SectionSpec(
        "profiled",
        "Where an epoch's time goes, measured",
        lambda f: tables.profiled_table(f.frame, f.parts),
    ),
    SectionSpec(
        "machines",
        "Machines side by side",
        lambda f: facts.machines_table(f.frame),
        _picture(lambda f, path: plots.plot_machines(f.frame, path), "machines.png"),
    ),
    SectionSpec(
        "cross_machine",
        "GPUs against other machines' CPUs",
        lambda f: facts.cross_machine_table(figures.cross_machine_speedups(f.frame)),
        shown=lambda f: f.cross_machine,
    ),
    SectionSpec("runs", "Machines and runs", lambda f: facts.machine_facts(f.frame)),
)


def _words():
    """templates/sections.j2 as a module: a macro a section, and the marks."""
    env = Environment(
        loader=PackageLoader("bench.report", "templates"),
        autoescape=False,  # plain text: the page and report.md each escape it as they need
        undefined=StrictUndefined,
    )
    return env.get_template("sections.j2").module


def _said(macro, *args) -> str:
    """A macro's words as one line: the template's line breaks and indents are only its layout."""
    return " ".join(str(macro(*args)).split())


def said_by_model(gpu: bool, cpu: bool) -> str:
    """The words of the view across models (bench/report/page.py): `gpu`, some of its models have a GPU's
    speedups; `cpu`, some only their CPU's time."""
    return _said(_words().by_model, gpu, cpu)


def marks() -> str:
    """The marks a figure may carry, explained once at the top of the page."""
    return _said(_words().marks, NOISY_IQR_SHARE)


def reference_note(frame: pd.DataFrame, reference: pd.DataFrame | None) -> str:
    """What the page says of the reference runs: that it shows only them, or that they are not its machines."""
    if frame["reference"].all():
        return _said(_words().reference_only)
    if reference is not None and not reference.empty:
        return _said(_words().reference_apart, reference["machine_key"].nunique())
    return ""


def _headline(said: list[str]) -> list[str]:
    """What is shown first where an answer has no verdict (bench/analysis/headline.py found nothing to hold a
    GPU against): the answer's first sentence, with the line of figures it introduces."""
    first = said[:1]
    if first and first[0].endswith(":"):
        return said[:2]
    return first


def _answers(
    frame: pd.DataFrame, reference: pd.DataFrame, quick: bool, speed: pd.DataFrame | None = None
) -> list[dict]:
    """Each machine's answer from `frame` alone (its speedups, crossovers and epoch splits computed from it, unless
    `speed` gives its speedups), with its speedup table; `quick`: these are the quick-run answers of
    machines that have full runs."""
    if frame.empty:
        return []
    speed = figures.speedups(frame) if speed is None else speed
    found = machine_answers(
        frame, speed, figures.crossovers(speed), figures.breakdown(frame), reference
    )
    for machine in found:
        speed_here = machine["speedups"]
        machine["table"] = (
            None if speed_here.empty else tables.speedup_table(speed_here, with_machine=False)
        )
        machine["quick"] = quick
        if not machine.get("headline"):
            machine["headline"] = _headline(machine["said"])
    return found


def answers_of(
    frame: pd.DataFrame, reference: pd.DataFrame, speed: pd.DataFrame | None = None
) -> tuple[list[dict], list[dict]]:
    """The answers per machine, the newest run's machine first (the machine that just ran); and apart, the quick-run
    answers of machines that also have full runs, whose answer uses their full figures only (a quick
    epoch is a subset: another quantity)."""
    quick = frame["quick"].astype(bool)
    has_full = frame["machine_key"].isin(frame.loc[~quick, "machine_key"])
    set_apart = quick & has_full
    # (the speedups of the whole frame, where no machine's quick figures are set apart)
    main = _answers(
        frame[~set_apart], reference, quick=False, speed=None if set_apart.any() else speed
    )
    apart = _answers(frame[set_apart], reference, quick=True)
    # A machine whose CPU ran only in its quick run: its full answer says where that speedup is.
    quick_cpu = set(frame.loc[quick & has_full & (frame["device"] == "cpu"), "machine_key"])
    full_cpu = set(frame.loc[~quick & (frame["device"] == "cpu"), "machine_key"])
    words = _words()
    for machine in main:
        if machine["machine_key"] in quick_cpu - full_cpu:
            for line in machine["missing"]:
                if line["command"].startswith("pytest bench --devices cpu,"):
                    line["text"] = _said(words.cpu_only_quick)
    newest = frame.groupby("machine_key")["run_datetime"].max()
    mine = frame.groupby("machine_key")["reference"].all().eq(False)

    def order(machine: dict) -> tuple:
        when = newest.get(machine["machine_key"])
        stamp = when.timestamp() if isinstance(when, pd.Timestamp) and pd.notna(when) else 0.0
        return (not mine.get(machine["machine_key"], False), -stamp)

    return sorted(main, key=order), sorted(apart, key=order)


def sections(
    frame: pd.DataFrame,
    out: Path,
    cross_machine: bool,
    reference: pd.DataFrame | None = None,
    in_fleet: bool = False,
) -> tuple[list[dict], list[dict], list[Section]]:
    """The page's answers per machine (and, apart, the quick-run answers of machines with full runs), then its
    sections, each with its table, words and plot (drawn into `out`). A section with nothing to show
    (no table, or an empty one, and no plot) is left out."""
    known = Facts.of(frame, out, cross_machine, in_fleet)
    # The reference GPUs a machine without one is held against: the shipped runs, read here if not
    # among the input.
    given = frame[frame["reference"]]
    if figures.is_gpu(given["device"]).any():
        reference = given
    elif reference is None or not figures.is_gpu(reference["device"]).any():
        reference = load_reference()
    answers, quick = answers_of(frame, reference, known.speed)
    words = _words()
    shown = []
    for spec in SECTIONS:
        if not spec.shown(known):
            continue
        table = spec.table(known)
        plot = spec.plot(known) if spec.plot is not None else None
        if plot is None and (table is None or table.empty):
            continue
        sentence = _said(getattr(words, spec.key), known)
        shown.append(
            Section(spec.title, table, sentence, None if plot is None else Path(plot).name)
        )
    return answers, quick, shown
