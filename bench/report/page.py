"""The report's files: summary.csv, report.md, the plots and index.html, written whole into a new folder or not at all."""

from __future__ import annotations

import html
import os
import re
import shutil
import tempfile
from pathlib import Path

import pandas as pd
from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup, escape

from bench.analysis import figures
from bench.analysis.models import by_model, models_of, of_model
from bench.analysis.reference import load_reference
from bench.analysis.rows import CSV_COLUMNS, select_newest
from bench.analysis.words import BY_MODEL_TITLE
from bench.format.names import CNN_MODEL
from bench.report import facts, pages, plots, tables
from bench.report.cache import RowCache
from bench.report.leftovers import left_behind, remove, temporary_prefix
from bench.report.sections import Section, marks, reference_note, said_by_model, sections

__all__ = ["OutputError", "check_out", "write_report"]

# What the report writes, and so all a report folder may hold before it is replaced.
_OUTPUT = re.compile(r"(summary\.csv|report\.md|index\.html|[a-z_]+\.(png|csv))")


class OutputError(Exception):
    """The output folder cannot be written, or holds files the report did not write."""


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
# pages.machine_slug's, and model_slug's
_MACHINE_FOLDER = re.compile(r"([a-z0-9]+(-[a-z0-9]+)*-)?[0-9a-f]{8}")
_RANKING_FILE = re.compile(r"[a-z0-9_]+\.html|ranking_[a-z0-9_]+_[0-9]+\.(png|csv)")


def _foreign(out: Path, top: bool = True) -> list[str]:
    """What in a report folder the report did not write (a link counts as foreign: it is never followed). `top`:
    the report's own folder, which may hold a report folder a model (models/<slug>/)."""
    foreign = []
    for entry in out.iterdir():
        if top and entry.is_dir() and not entry.is_symlink() and entry.name == "models":
            for model in entry.iterdir():
                if (
                    model.is_symlink()
                    or not model.is_dir()
                    or not _MACHINE_FOLDER.fullmatch(model.name)
                ):
                    foreign.append(f"models/{model.name}")
                    continue
                foreign += [f"models/{model.name}/{p}" for p in _foreign(model, top=False)]
            continue
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


def _env(autoescape: bool = True) -> Environment:
    env = Environment(
        loader=PackageLoader("bench.report", "templates"),
        autoescape=autoescape,
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters["options_whole"] = _options_whole
    return env


# An option as it is typed (--cpu-threads, --benchmark-autosave): a browser breaks a line after its hyphens,
# and a person copying "--" from one line and "cpu-threads" from the next gets neither.
_OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def _options_whole(text: str) -> Markup:
    """`text` escaped, each option in it kept on one line (span.opt: white-space nowrap)."""
    return Markup(
        _OPTION.sub(lambda m: f'<span class="opt">{m.group(0)}</span>', str(escape(text)))
    )


def _render(
    frame: pd.DataFrame,
    out: Path,
    cross_machine: bool = False,
    *,
    reference: pd.DataFrame | None = None,
    home: str | None = None,
    models: dict | None = None,
    by_model: pd.DataFrame | None = None,
) -> list[dict]:
    """One page of the machines in `frame` into `out`: index.html, report.md and the plots; its answers.
    `home`: a link back to the fleet's index, on a machine's own page. `models`: the page's model and
    links to the other models' pages; `by_model`: the view of the models against the work an image
    (bench/analysis/models.py by_model), shown after the answers."""
    # One block per dtype: rows built a column at a time are a block per column, and every filter and
    # sort of the page's hundreds would take each block apart (a third of a page's drawing).
    frame = frame.copy()
    answers, quick, shown = sections(
        frame, out, cross_machine, reference, in_fleet=home is not None
    )
    note = "" if home is not None else reference_note(frame, reference)
    models = models or {"model": "", "links": []}
    across = _by_model_section(by_model, out)
    env = _env()
    # HTML: Jinja escapes every value (autoescape); tables come escaped from pandas.
    page = env.get_template("index.html.j2").render(
        home=home,
        marks=marks(),
        note=note,
        partial=facts.partial_note(frame),
        models=models,
        across=_across(across),
        answers=[{**a, "table_html": _html_table(a["table"])} for a in answers],
        quick=[{**a, "table_html": _html_table(a["table"])} for a in quick],
        sections=[{**vars(s), "table_html": _html_table(s.table)} for s in shown],
    )
    (out / "index.html").write_text(page, encoding="utf-8")
    # Markdown: every string escaped here, in one place; the template only lays them out.
    md_env = Environment(
        loader=env.loader, autoescape=False, undefined=StrictUndefined, keep_trailing_newline=True
    )
    text = md_env.get_template("report.md.j2").render(
        marks=md_escape(marks()),
        note=md_escape(note),
        partial=md_escape(facts.partial_note(frame)),
        models={
            "model": md_escape(models["model"]),
            "links": [
                {"label": md_escape(link["label"]), "href": link["href"]}
                for link in models["links"]
            ],
        },
        across=_across(across, md_escape),
        answers=[_md_answer(a) for a in answers],
        quick=[_md_answer(a) for a in quick],
        sections=[
            {
                "title": md_escape(s.title),
                "sentence": md_escape(s.sentence),
                "plot": s.plot,
                "table_md": _md_table(s.table),
            }
            for s in shown
        ],
    )
    (out / "report.md").write_text(re.sub(r"\n{3,}", "\n\n", text), encoding="utf-8")
    return answers


def _by_model_section(view: pd.DataFrame | None, out: Path) -> Section | None:
    """The view across models (where model size moves the crossover), as a section: its table and plot."""
    if view is None or view.empty:
        return None
    plot = plots.plot_by_model(view, out / "by_model.png")
    measures = set(view["measure"])
    return Section(
        BY_MODEL_TITLE,
        tables.by_model_table(view),
        said_by_model("speedup" in measures, measures != {"speedup"}),
        None if plot is None else Path(plot).name,
    )


def _across(section: Section | None, escape_text=None) -> dict | None:
    """The view across models as a template takes it: its table as HTML and as Markdown, its words as they are
    (HTML templates escape them) or through `escape_text` (report.md)."""
    if section is None:
        return None
    said = escape_text or (lambda text: text)
    return {
        "title": said(section.title),
        "sentence": said(section.sentence),
        "plot": section.plot,
        "table_html": _html_table(section.table),
        "table_md": _md_table(section.table),
    }


def _md_answer(answer: dict) -> dict:
    """An answer's words for report.md, every string from a run escaped."""
    return {
        "label": md_escape(answer["label"]),
        "headline": [md_escape(s) for s in answer["headline"]],
        "said": [md_escape(s) for s in answer["said"] if s not in answer["headline"]],
        "missing": [
            {"text": md_escape(m["text"]), "command": m["command"]} for m in answer["missing"]
        ],
        "table_md": _md_table(answer["table"]),
    }


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
        shown, reference = own_or_reference(frame)
        shown[CSV_COLUMNS].to_csv(new / "summary.csv", index=False)
        _models(select_newest(shown), new, cross_machine, cache, reference)
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


def model_slug(model: str) -> str:
    """A model's folder name, made as a machine's is (pages.machine_slug): its label in safe letters and a hash
    of it."""
    return pages.machine_slug(model, model)


def _models(
    frame: pd.DataFrame,
    out: Path,
    cross_machine: bool,
    cache: Path | None,
    reference: pd.DataFrame | None,
) -> None:
    """The report of each model apart (bench/analysis/models.py: one model's figures are never another's): the
    first (the notes' CNN where measured) in `out`, each other in out/models/<slug>/, linked both ways;
    and where a machine measured several, the first page shows them against the work an image."""
    found = models_of(frame) or [CNN_MODEL]
    links = {model: f"models/{model_slug(model)}/index.html" for model in found[1:]}
    view = by_model(frame) if len(found) > 1 else None
    for model in found:
        rows = of_model(frame, model)
        folder = out if model == found[0] else out / "models" / model_slug(model)
        folder.mkdir(parents=True, exist_ok=True)
        theirs = None if reference is None else of_model(reference, model)
        others = {
            "model": model if len(found) > 1 or model != CNN_MODEL else "",
            "links": (
                [{"label": m, "href": href} for m, href in links.items()]
                if model == found[0]
                else [{"label": f"{found[0]} and every model", "href": "../../index.html"}]
            ),
        }
        view_here = view if model == found[0] else None
        if rows["machine_key"].nunique() <= pages.ONE_PAGE_MACHINES:
            _render(
                rows, folder, cross_machine, reference=theirs, models=others, by_model=view_here
            )
        else:
            _fleet(rows, folder, cross_machine, cache, theirs, models=others, by_model=view_here)


def own_or_reference(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The machines the report shows, and the reference runs a machine without a GPU is held against.

    The project's reference runs (results/reference/, read with the default `results/`) are what a
    CPU-only machine is compared with, never machines of the user's fleet: where any run of the
    user's own is given, the report shows those machines alone. Given only reference runs (a fresh
    checkout, or `results/reference` itself, as docs/report/ is built), it shows them, labelled so.
    """
    mine = frame["reference"].eq(False).to_numpy()
    if not mine.any():
        return frame, None
    given = select_newest(frame[~mine])
    return frame[mine], given if not given.empty else None


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


def _fleet(
    frame: pd.DataFrame,
    out: Path,
    cross_machine: bool,
    cache: Path | None,
    reference: pd.DataFrame | None = None,
    *,
    models: dict | None = None,
    by_model: pd.DataFrame | None = None,
) -> None:
    """The fleet's index and report.md over its machines' and rankings' pages; `models` and `by_model` as for
    one page (_render)."""
    if reference is None or not figures.is_gpu(reference["device"]).any():
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
            "marks": marks(),
            "partial": facts.partial_note(frame),
            "cross": cross,
            "runs": frame["run_file"].nunique(),
            "models": models or {"model": "", "links": []},
            "across": _across(_by_model_section(by_model, out)),
        },
    )
    _page("fleet.html.j2", out / "index.html", **values)
    _page("fleet.md.j2", out / "report.md", **values)
