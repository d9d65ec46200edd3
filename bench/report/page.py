"""The report's files: summary.csv, report.md, the plots and index.html, written whole into a new folder or not at all."""

from __future__ import annotations

import html
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from bench.analysis import figures
from bench.analysis import held as held_limits
from bench.analysis.answers import answers as machine_answers
from bench.analysis.reference import load_reference
from bench.analysis.rows import CSV_COLUMNS, select_newest
from bench.format.names import NOISY_IQR_SHARE
from bench.report import facts, pages, plots, tables
from bench.report.cache import RowCache
from bench.report.leftovers import left_behind, remove, temporary_prefix

__all__ = ["OutputError", "check_out", "write_report"]

MARKS = (
    f"Marks: ~ a noisy figure (its IQR is over {NOISY_IQR_SHARE:.0%} of its median); (1 round) a figure from one "
    "timed round, whose noise is unknown; (partial) from a run stopped before it finished; quick: from a quick run "
    "(a subset of the data, short sweeps), never mixed with full figures; (throttled) the GPU held its clocks down "
    "by power or heat during the case; (busy) other work used over a tenth of the machine's CPU time during it "
    "or, for a short case, around it; (suspect) a copy whose time did not follow its bytes in its run (slower than a "
    "larger copy, flat across sizes, or slowed by its extra threads; summary.csv's suspect_reason says how): a "
    "broken figure, however steady. "
    "A CPU row names its thread count: cpu 2t ran at 2 threads."
)
# What the report writes, and so all a report folder may hold before it is replaced.
_OUTPUT = re.compile(r"(summary\.csv|report\.md|index\.html|[a-z_]+\.(png|csv))")


class OutputError(Exception):
    """The output folder cannot be written, or holds files the report did not write."""


@dataclass
class _Section:
    title: str
    table: pd.DataFrame | None  # None: the sentence says why there is none
    sentence: str
    plot: str | None = None


# Markdown's markup characters, and $ (GitHub renders $...$ as math): each is backslash-escaped.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|!~#$])")


def md_escape(value) -> str:
    """Text from a run file made inert in Markdown: no markup, no HTML, no table cell or line broken by it."""
    text = " ".join(str(value).split())  # newlines and tabs would end a table row
    text = _MD_SPECIAL.sub(r"\\\1", html.escape(text, quote=False))
    # GitHub links a bare address by itself: a backslash breaks "https://" and "www." apart.
    return text.replace("://", "\\://").replace("www.", "www\\.")


def _md_table(table: pd.DataFrame | None) -> str:
    if table is None:
        return ""
    if table.empty:
        return "_nothing measured_"
    escaped = table.astype(str).map(md_escape)
    escaped.columns = [md_escape(c) for c in table.columns]
    return escaped.to_markdown(index=False, disable_numparse=True)


def _html_table(table: pd.DataFrame | None) -> Markup:
    if table is None:
        return Markup("")
    if table.empty:
        return Markup("<p><em>nothing measured</em></p>")
    # escape=True: every string from a saved run (host, CPU and GPU names, files) is data, not
    # markup.
    return Markup(
        f'<div class="wide">{table.to_html(index=False, escape=True, border=0, classes="t")}</div>'
    )


# A fleet's report adds a folder per machine (each a one-machine report) and its rankings' pages and
# pictures.
_MACHINE_FOLDER = re.compile(r"([a-z0-9]+(-[a-z0-9]+)*-)?[0-9a-f]{8}")  # pages.machine_slug's
_RANKING_FILE = re.compile(r"[a-z0-9_]+\.html|ranking_[a-z0-9_]+_[0-9]+\.(png|csv)")


def _foreign(out: Path) -> list[str]:
    """What in a report folder the report did not write (a link counts as foreign: it is never followed)."""
    foreign = []
    for entry in out.iterdir():
        if entry.is_symlink():
            foreign.append(entry.name)
        elif entry.is_file() and _OUTPUT.fullmatch(entry.name):
            continue
        elif entry.is_dir() and entry.name == "rankings":
            foreign += [
                f"rankings/{p.name}"
                for p in entry.iterdir()
                if p.is_symlink() or not p.is_file() or not _RANKING_FILE.fullmatch(p.name)
            ]
        elif entry.is_dir() and entry.name == "machines":
            for machine in entry.iterdir():
                if (
                    machine.is_symlink()
                    or not machine.is_dir()
                    or not _MACHINE_FOLDER.fullmatch(machine.name)
                ):
                    foreign.append(f"machines/{machine.name}")
                    continue
                foreign += [
                    f"machines/{machine.name}/{p.name}"
                    for p in machine.iterdir()
                    if p.is_symlink() or not p.is_file() or not _OUTPUT.fullmatch(p.name)
                ]
        else:
            foreign.append(entry.name)
    return sorted(foreign)


def check_out(out: Path) -> None:
    """Refuse, before any work, an output that is a file, holds files the report did not write, or can't be written."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out}: exists and is not a folder")
    if out.is_dir():
        foreign = _foreign(out)
        if foreign:
            raise OutputError(
                f"--out {out}: holds what the report did not write ({', '.join(foreign[:5])}); "
                "it replaces the whole folder, so choose an empty or new one"
            )
    parent = out.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"--out {out}: cannot write in {parent}")


def _sections(
    frame: pd.DataFrame,
    out: Path,
    cross_machine: bool,
    reference: pd.DataFrame | None = None,
    in_fleet: bool = False,
) -> tuple[list[dict], list[_Section]]:
    choices = figures.cpu_choices(frame)
    speed = figures.speedups(frame)
    cross = figures.crossovers(speed)
    parts = figures.breakdown(frame)
    threads = tables.threads_table(frame, choices)
    has_gpu = bool(figures.is_gpu(frame["device"]).any())
    several = frame["machine_key"].nunique() > 1
    no_gpu = "There is no GPU in these runs: only CPU figures are shown."
    has_energy = bool(frame["energy_j"].notna().any())
    energy_notes = "; ".join(facts.energy_notes(frame))
    # The reference GPUs a machine without one is held against: the shipped runs, read here if not
    # among the input.
    given = frame[frame["reference"]]
    if figures.is_gpu(given["device"]).any():
        reference = given
    elif reference is None:
        reference = load_reference()
    answers = machine_answers(frame, speed, cross, parts, reference)
    held, peaks = held_limits.held(frame), held_limits.device_limits(frame)
    for machine in answers:
        speed_here = machine["speedups"]
        machine["table"] = (
            None if speed_here.empty else tables.speedup_table(speed_here, with_machine=False)
        )
    sections = [
        _Section(
            "Training epoch time",
            tables.train_table(frame),
            "Median time of one epoch over the training set, per device, pipeline and batch size; lower is "
            "better. seed is the notes' DataLoader + ToTensor + .to(device) loop; resident keeps the uint8 set "
            "on the device. A quick run's epoch is a subset (its images are named) and has its own rows and panels.",
            plots.plot_epoch_time(frame, out / "epoch_time.png"),
        ),
        _Section(
            "Inference",
            tables.inference_table(frame),
            "Throughput: images per second over a pass (the test split; at the smallest batch sizes, its first "
            "batches). Latency: where measured, the p50 and p99 of single batches timed one at a time (n of "
            "them); else the mean time per batch of a pass. compute has the input on the device already, "
            "end_to_end moves each batch from the host and the labels back.",
            plots.plot_inference(frame, out / "inference_throughput.png"),
        ),
        _Section(
            "The optimisation ladder: training",
            tables.ladder_table(figures.ladder(frame, "train"), "train"),
            "Where more than the cheap steps ran (by default at batch size 1,000): each step's epoch, its "
            "speedup over seed on the same device and (in parentheses) over the step it builds on, which is "
            "what its one change buys. loader tunes seed's DataLoader; resident keeps the data on the "
            "device; each step after it is resident plus one change, except channels_last_bf16 (bf16 on "
            "channels_last) and compile_cuda_graph (the CUDA graph of the compiled step). On a GPU each step "
            "says how busy its profiled epoch kept the GPU and how many operations a step ran: a small share "
            "is an epoch bound by launching kernels, a large one by the kernels themselves. On a CPU it "
            "names the operation that took the profiled epoch longest by its own time, and its share: "
            "torch.compile's generated code is counted as one. Runs since "
            "format 4 hold the C library's "
            "allocator in one condition (--host-allocator keep: freed blocks kept for reuse), so no case "
            "pays for the page faults the cases before it left; in older runs, or with --host-allocator "
            "default, a step whose process touched fresh memory often has its page faults a round given: "
            "that cost carries from case to case, so it can differ between steps. A step whose loss is "
            "above resident's by more than its tolerance is marked (learns less): a fast epoch that learns "
            "less is not a result. compile and cuda_graph were prepared (compiled or captured) before their "
            "epochs; that time is given on its own. Each step is the machine's newest figure of it: where a "
            'later run measured some steps only, a step compared with one from another run says so ("seed and '
            'resident from another run"), a ratio across runs, weaker on a noisy machine than one within a run.',
        ),
        _Section(
            "The optimisation ladder: inference",
            tables.ladder_table(figures.ladder(frame, "inference"), "inference"),
            "compute mode, where more than inference_mode ran: throughput, its speedup over the first step "
            "and over the step it builds on, and the share of predicted labels that agree with the CPU's float32 "
            "labels from the same weights. A step compared with one from another run says so, as above.",
        ),
        _Section(
            "Transfer bandwidth",
            tables.transfer_table(frame),
            "GB/s of one copy by size: h2d host to device, d2h back, h2h a host memory copy (the CPU's "
            "memory-bandwidth reference, not a PCIe copy). Where NVML reported the PCIe link, the share of its "
            "theoretical bandwidth is given and drawn as a dashed line.",
            plots.plot_transfer(frame, out / "transfer_bandwidth.png"),
        ),
        _Section(
            "GPU speedup over the CPU",
            tables.speedup_table(speed) if has_gpu else None,
            "The same machine's CPU median at torch's default thread count divided by the GPU's, with its 95% "
            "interval from both figures' rounds: above 1x the GPU is faster, and an interval that includes 1 is no "
            "difference measured. Where another CPU thread count was faster, [in brackets] the speedup against that best "
            "count; the plot is against the best. Quick figures are paired only with quick ones of the same run."
            if has_gpu
            else no_gpu,
            plots.plot_speedup(speed, out / "speedup.png"),
        ),
        _Section(
            "Crossover batch size",
            tables.crossover_table(cross) if has_gpu else None,
            "Against the CPU at its best thread count measured: the smallest batch size from which the GPU is "
            "faster at every larger size measured, in words that hold for every size; best speedup is against "
            "that CPU too."
            if has_gpu
            else no_gpu,
        ),
        _Section(
            "Where an epoch's time goes",
            tables.breakdown_table(parts),
            "The seed epoch split three ways: compute is the resident epoch (same training, data already on the "
            "device); host-to-device copies is the number of batches times the measured time to copy one "
            "float32 batch from pageable memory (interpolated between the transfer sizes; none on the CPU); "
            "data loading is the rest (DataLoader, PIL + ToTensor, collation, per-batch syncs). Derived, not "
            "measured directly.",
            plots.plot_breakdown(parts, out / "epoch_breakdown.png"),
        ),
        _Section(
            "The machine's limits",
            held_limits.limits_table(frame) if not peaks.empty else None,
            "What each device can do at most, measured in the run by the limits family (from format 6): the "
            "fixed cost of one operation (a chain of small in-place multiplies run back to back: Python, the "
            "dispatcher and a launch; on CUDA also replayed from a CUDA graph), the arithmetic peak (a square "
            "matrix product, per dtype, of the side where its rate stops growing), the memory bandwidth (bytes copied a second: "
            "a 1 GiB copy within a GPU's memory, the largest host-to-host copy on the CPU) and the host-device "
            "copies as a fixed cost plus bytes over bandwidth, fitted to the transfer family's sizes, with the "
            "size from which a copy reaches half that bandwidth. A limit measured while other work took a "
            "share of the machine, or one a case of its run ran faster than, is named as not built on."
            if not peaks.empty
            else "No run here measured its limits (the limits family came with format 6).",
            plots.plot_limits(held, peaks, out / "limits.png"),
        ),
        _Section(
            "Each case against its limits",
            held_limits.held_table(frame) if not held.empty else None,
            "Every training and inference case held against the limits its run measured before it: its FLOPs "
            "counted by torch's flop counter (forward and backward), achieved FLOP/s and its share of the peak "
            "of its precision, and three floors, each what one limit alone says the case must take at least: "
            "arithmetic (FLOPs over the peak), per-operation (the operations a step runs, counted, times the "
            "measured cost of one; a CUDA graph's replayed cost for cuda_graph; not counted under torch.compile, "
            "which fuses them) and copies (each copy between host and device the case makes, by the fitted copy "
            "model). A floor built on a limit its run does not trust is named (floors not trusted); the highest "
            "of the others is the binding limit; time / floor is how far the case is from it. The last column says "
            "which limit the step moves its case toward over the step it builds on; a column no case fills is left out."
            if not held.empty
            else "No case here was held against its limits (from format 6, where the run "
            "measured its device's limits before the case).",
        ),
        _Section(
            "Crossover predicted from the limits",
            held_limits.predicted_table(frame, cross) if has_gpu and not held.empty else None,
            "Each side's binding floor (the highest its run trusts) taken as its time: the batch size from which the limits alone say the "
            "GPU wins, beside the crossover measured (against the CPU at its best thread count). A prediction, "
            "not a measurement: where the two differ, the time beyond the floors decides."
            if has_gpu and not held.empty
            else no_gpu
            if not has_gpu
            else "No case here was held against its limits.",
        ),
        _Section(
            "Energy",
            facts.energy_table(frame) if has_energy else None,
            "What a case's timed rounds cost in energy, from the device that ran them: a GPU's total-energy "
            "counter (NVML), the CPU packages' RAPL counters (the whole socket, other work included). "
            "Train: joules per epoch and mean power; inference: joules per 1,000 images and images per joule. "
            "≈ marks a figure from under 2 s of timed rounds, which the counter's updates make approximate."
            + (f" Where energy is missing: {energy_notes}." if energy_notes else "")
            if has_energy
            else "No energy was measured in these runs"
            + (f": {energy_notes}." if energy_notes else "."),
        ),
        _Section(
            "Where an epoch's time goes, measured",
            tables.profiled_table(frame, parts),
            "One extra, untimed epoch of each step at the ladder's batch size under torch.profiler, summed by "
            "phase: data (a DataLoader batch or a resident gather), h2d copies, forward, backward, optimizer "
            "(graph: a CUDA graph's replay of all three). On a GPU the device's own spans, else the host's. "
            "It covers an epoch's first images (Images profiled: 10,000, and 3,000 for the DataLoader steps "
            "since the seed's per-image events made its profile slow; a whole epoch's profile of the seed "
            "pipeline held 8 GB), and includes the profiler's overhead: its phases' shares are the measure, "
            "not its sum. On a GPU the backward and optimizer phases' device spans read near 0 (their kernels "
            "are launched outside the range's GPU annotation): the ladder's busy share counts them. For seed "
            "the derived split of the section above is given beside it.",
        ),
        _Section(
            "Machines side by side",
            facts.machines_table(frame),
            "The headline figure of each family per machine and device, from full runs; like with like: a host "
            "memory copy and a PCIe copy have their own columns."
            + (
                ""
                if several
                else " There is one machine in these runs; copy other machines' results folders in to compare."
                if not in_fleet
                else " The fleet's index ranks this machine among the others."
            ),
            plots.plot_machines(frame, out / "machines.png"),
        ),
    ]
    if not threads.empty:
        sections.insert(
            4,
            _Section(
                "CPU threads",
                threads,
                "Where a CPU ran a family at several thread counts: per variant and batch size, the fastest count "
                "measured and its speedup over torch's default count (median at the default / at the best).",
            ),
        )
    ratio = facts.energy_ratio_table(frame)
    if not ratio.empty:
        at = next(i for i, x in enumerate(sections) if x.title == "Energy") + 1
        sections.insert(
            at,
            _Section(
                "GPU energy against the CPU's",
                ratio,
                "The same machine's CPU (at torch's default thread count) energy over its GPU's for the same work: "
                "above 1x the GPU spends less energy.",
            ),
        )
    if cross_machine:
        sections.append(
            _Section(
                "GPUs against other machines' CPUs",
                facts.cross_machine_table(figures.cross_machine_speedups(frame)),
                "Asked for with --cross-machine: each GPU's full-run median against every other machine's CPU at "
                "that CPU's fastest thread count, for the same family, variant, batch size and images.",
            )
        )
    sections.append(
        _Section(
            "Machines and runs",
            facts.machine_facts(frame),
            "Every machine in the report under its label (unique here: a name given with --machine-name, else "
            "its CPU and GPU models, with the host or a short key added where two would read the same), and "
            "the runs whose figures are shown. Host allocator: keep where the run held glibc to keeping "
            "freed blocks (--host-allocator keep, from format 4), default where the C library ran as it is.",
        )
    )
    for section in sections:
        if section.plot is not None:
            section.plot = Path(section.plot).name
    return answers, sections


def _env(autoescape: bool = True) -> Environment:
    return Environment(
        loader=PackageLoader("bench.report", "templates"),
        autoescape=autoescape,
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )


def _render(
    frame: pd.DataFrame,
    out: Path,
    cross_machine: bool = False,
    *,
    reference: pd.DataFrame | None = None,
    home: str | None = None,
) -> list[dict]:
    """One page of the machines in `frame` into `out`: index.html, report.md and the plots; its answers.
    `home`: a link back to the fleet's index, on a machine's own page."""
    answers, sections = _sections(frame, out, cross_machine, reference, in_fleet=home is not None)
    env = _env()
    # HTML: Jinja escapes every value (autoescape); tables come escaped from pandas.
    page = env.get_template("index.html.j2").render(
        home=home,
        marks=MARKS,
        partial=facts.partial_note(frame),
        answers=[{**a, "table_html": _html_table(a["table"])} for a in answers],
        sections=[{**vars(s), "table_html": _html_table(s.table)} for s in sections],
    )
    (out / "index.html").write_text(page, encoding="utf-8")
    # Markdown: every string escaped here, in one place; the template only lays them out.
    md_env = Environment(
        loader=env.loader, autoescape=False, undefined=StrictUndefined, keep_trailing_newline=True
    )
    text = md_env.get_template("report.md.j2").render(
        marks=md_escape(MARKS),
        partial=md_escape(facts.partial_note(frame)),
        answers=[
            {
                "label": md_escape(a["label"]),
                "said": [md_escape(s) for s in a["said"]],
                "missing": [
                    {"text": md_escape(m["text"]), "command": m["command"]} for m in a["missing"]
                ],
                "table_md": _md_table(a["table"]),
            }
            for a in answers
        ],
        sections=[
            {
                "title": md_escape(s.title),
                "sentence": md_escape(s.sentence),
                "plot": s.plot,
                "table_md": _md_table(s.table),
            }
            for s in sections
        ],
    )
    (out / "report.md").write_text(re.sub(r"\n{3,}", "\n\n", text), encoding="utf-8")
    return answers


def _page(template: str, path: Path, **values) -> None:
    """One page of the fleet from its template: HTML autoescaped, Markdown from values escaped here."""
    path.parent.mkdir(parents=True, exist_ok=True)
    markdown = template.endswith(".md.j2")
    text = _env(autoescape=not markdown).get_template(template).render(md=md_escape, **values)
    path.write_text(re.sub(r"\n{3,}", "\n\n", text) if markdown else text, encoding="utf-8")


def write_report(
    frame: pd.DataFrame, out: Path, *, cross_machine: bool = False, cache: Path | None = None
) -> list[Path]:
    """Write summary.csv, report.md, the plots (each with its data as .csv) and index.html as the folder `out`.

    Everything is written into a new folder beside `out`, which replaces `out` only once all of it
    was written: a failure leaves the previous report as it was. summary.csv holds every row of
    `frame`; the rest uses each machine's newest figure of each benchmark. Beyond ONE_PAGE_MACHINES
    machines the index ranks them and each machine has its page (bench/report/pages.py); `cache` is
    where their drawn pages and pictures are kept.
    """
    # a link to the report folder: replace the folder, keep the link
    out = Path(os.path.realpath(out))
    _tidy(out)
    check_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    new = Path(tempfile.mkdtemp(prefix=temporary_prefix(f".{out.name}-new"), dir=out.parent))
    old = None  # where the previous report waits while the new one is moved in
    try:
        new.chmod(0o755)  # mkdtemp's folder is private; a report is for reading
        frame[CSV_COLUMNS].to_csv(new / "summary.csv", index=False)
        newest = select_newest(frame)
        if newest["machine_key"].nunique() <= pages.ONE_PAGE_MACHINES:
            _render(newest, new, cross_machine)
        else:
            _fleet(newest, new, cross_machine, cache)
        if out.exists():
            old = Path(
                tempfile.mkdtemp(prefix=temporary_prefix(f".{out.name}-old"), dir=out.parent)
            )
            old.rmdir()
            out.rename(old)
        new.rename(out)
    except BaseException:
        if old is not None and old.exists() and not out.exists():
            # the swap failed between its two renames: the previous report goes back
            old.rename(out)
        shutil.rmtree(new, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return sorted(out.iterdir())


def _tidy(out: Path) -> None:
    """What a killed report left beside `out`: its new folder, half written, removed; the previous report it had
    moved aside to swap the new one in, put back where `out` is missing (else removed: `out` is
    newer)."""
    for moved in left_behind(out.parent, f".{out.name}-old"):
        if not out.exists():
            try:
                moved.rename(out)
                continue
            except OSError:
                pass
        remove([moved])
    remove(left_behind(out.parent, f".{out.name}-new"))


def _fleet(frame: pd.DataFrame, out: Path, cross_machine: bool, cache: Path | None) -> None:
    """The fleet's index and report.md over its machines' and rankings' pages."""
    reference = load_reference(None if cache is None else RowCache(cache / "reference"))
    cross = None
    if cross_machine:
        cross = _html_table(facts.cross_machine_table(figures.cross_machine_speedups(frame)))
    values = pages.write_fleet(
        frame,
        out,
        render=_render,
        page=_page,
        reference=reference,
        cache=cache,
        extra={
            "marks": MARKS,
            "partial": facts.partial_note(frame),
            "cross": cross,
            "runs": frame["run_file"].nunique(),
        },
    )
    _page("fleet.html.j2", out / "index.html", **values)
    _page("fleet.md.j2", out / "report.md", **values)
