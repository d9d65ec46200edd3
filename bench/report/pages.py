"""A fleet's report: the index ranks machines per headline figure, each machine has its own page, each ranking its page.

Beyond ONE_PAGE_MACHINES machines the report is a folder of pages: index.html (the rankings' top and
a line per machine), rankings/<figure>.html (every machine ranked, its pictures split so that none
is taller than a few thousand pixels) and machines/<machine>/ (the one-machine report: its answer,
tables and plots). A machine's page depends on its rows alone (and the reference runs), so it is
drawn once and kept in the cache folder under the hash of what it shows; so is each picture of a
ranking. A report whose runs did not change draws nothing again.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import re
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd

from bench.report.cache import CacheWarning, code_stamp
from bench.report.fleet import Ranking, rankings
from bench.report.plots import RANKING_PART, plot_ranking

__all__ = ["ONE_PAGE_MACHINES", "machine_slug", "write_fleet"]

# Up to this many machines the report is one page, as it always was (it reads well for two to four, and the
# committed runs are three: the 2-core VM and two H100s); beyond, a page per machine.
ONE_PAGE_MACHINES = 4
TOP = 10  # the machines a ranking shows on the index; its own page shows them all
_KEEP_DAYS = 14  # a drawn page or picture no report used for this long leaves the cache


def machine_slug(label: str, key: str) -> str:
    """A machine's folder name: its label in safe letters, and a hash of its key (labels are unique, slugs too)."""
    text = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")[:40].strip("-")
    return f"{text or 'machine'}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def _hashes(frame: pd.DataFrame, by: str) -> dict[str, str]:
    """A hash of every row's content per value of `by`, round times included (stable across processes)."""
    flat = frame.drop(columns=["round_times"])
    text = flat.select_dtypes(include="object").columns  # numbers, flags and dates hash as they are; text as text
    flat[text] = flat[text].astype(str)
    rows = pd.util.hash_pandas_object(flat, index=False).to_numpy()
    times = pd.util.hash_pandas_object(frame["round_times"].map(repr), index=False).to_numpy()
    out = {}
    for value, index in frame.groupby(by, sort=False).indices.items():
        out[value] = hashlib.sha256(rows[index].tobytes() + times[index].tobytes()).hexdigest()
    return out


class _Drawn:
    """Folders drawn once and kept under the hash of what they show (or, with no cache, drawn into a scratch folder)."""

    def __init__(self, cache: Path | None):
        self.scratch = cache is None
        if cache is not None:
            try:
                (cache / "drawn").mkdir(parents=True, exist_ok=True)
            except OSError as exc:  # the report is drawn all the same, and kept nowhere
                warnings.warn(f"{cache}: the report's cache cannot be written ({exc}): every page is drawn again "
                              "next time", CacheWarning, stacklevel=3)  # fmt: skip
                self.scratch = True
        self.root = Path(tempfile.mkdtemp(prefix="fmnist-report-")) if self.scratch else cache / "drawn"

    def folder(self, key: str) -> Path:
        return self.root / key[:2] / key

    def missing(self, keys) -> list[str]:
        """The keys not drawn yet; the drawn ones are marked used now, so that no report prunes them meanwhile."""
        out, now = [], time.time()
        for key in keys:
            try:
                os.utime(self.folder(key) / ".done", (now, now))
            except OSError:
                out.append(key)
        return out

    def draw(self, jobs: list[tuple[str, Callable, tuple]]) -> None:
        """Run each (key, function, args) whose folder is not drawn: function(folder, *args), in parallel on this
        machine's cores where there are many, each into a new folder moved into place whole."""
        todo = [(k, f, a) for k, f, a in jobs if k in set(self.missing(k for k, _, _ in jobs))]
        if not todo:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        workers = min(os.cpu_count() or 1, len(todo))
        started = time.perf_counter()
        if workers > 1 and len(todo) >= 8:
            # spawn, not fork: the report may run in a process that has started threads (torch's, a test's).
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                for done, _ in enumerate(pool.map(_draw_one, [(self, *job) for job in todo], chunksize=4), start=1):
                    _progress(done, len(todo), started)
        else:
            for done, job in enumerate(todo, start=1):
                _draw_one((self, *job))
                _progress(done, len(todo), started)

    def prune(self) -> None:
        """Drop what no report used for _KEEP_DAYS days (missing() marks what a report uses as it starts)."""
        now = time.time()
        if self.scratch or not self.root.is_dir():
            return
        for done in self.root.glob("*/*/.done"):
            try:
                if now - done.stat().st_mtime > _KEEP_DAYS * 86400:
                    shutil.rmtree(done.parent, ignore_errors=True)
            except OSError:  # another report pruned it first
                continue

    def link(self, key: str, into: Path) -> None:
        """The drawn folder's files into `into`: hard links where the file system allows, else copies. The drawn
        files are read-only, so that a report's file changed in place cannot change what later reports show."""
        into.mkdir(parents=True, exist_ok=True)
        for source in self.folder(key).iterdir():
            if source.name.startswith("."):
                continue
            try:
                os.link(source, into / source.name)
            except OSError:
                shutil.copy2(source, into / source.name)

    def close(self) -> None:
        if self.scratch:
            shutil.rmtree(self.root, ignore_errors=True)


def _progress(done: int, total: int, started: float) -> None:
    if total >= 20 and (done == total or done % max(1, total // 10) == 0):
        print(f"report: drew {done:,} of {total:,} pages and pictures ({time.perf_counter() - started:.0f} s)",
              file=sys.stderr, flush=True)  # fmt: skip


def _draw_one(job) -> None:
    drawn, key, function, args = job
    final = drawn.folder(key)
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{key[:12]}-", dir=final.parent))
    try:
        function(work, *args)
        for drawn_file in work.iterdir():
            drawn_file.chmod(0o444)
        (work / ".done").touch()
        work.chmod(0o755)  # mkdtemp's folder is private; a shared results tree's reports share it
        try:
            work.rename(final)
        except OSError:
            if (final / ".done").is_file():
                return  # another report drew the same meanwhile: theirs is kept, and ours is the same
            shutil.rmtree(final, ignore_errors=True)  # a drawing that never finished (its process was killed)
            work.rename(final)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _machine_page(folder: Path, rows: pd.DataFrame, render: Callable, reference: pd.DataFrame) -> None:
    answers = render(rows, folder, reference=reference, home="../../index.html")
    rows.drop(columns=["round_times"]).to_csv(folder / "summary.csv", index=False)
    said = answers[0]["said"] if answers else []
    (folder / ".said.txt").write_text(json.dumps(said[:1]), encoding="utf-8")  # not .json: never taken for a run


def _ranking_part(folder: Path, ranking: Ranking, part: int, size: int) -> None:
    plot_ranking(ranking, folder, parts=[part], size=size)


def write_fleet(frame: pd.DataFrame, out: Path, *, render: Callable, page: Callable, reference: pd.DataFrame,
                cache: Path | None, extra: dict) -> dict:  # fmt: skip
    """The fleet's pages into `out` (a new folder): machines/, rankings/, and what the index shows (returned, for
    `page` to lay out with `extra`). `render(rows, folder, reference=, home=)` writes one machine's report and
    returns its answers; `page(template, folder, **values)` writes a page of the fleet."""
    drawn = _Drawn(cache)
    try:
        stamp = hashlib.sha256((code_stamp() + _reference_hash(reference)).encode()).hexdigest()
        keys = {k: hashlib.sha256((stamp + h).encode()).hexdigest() for k, h in _hashes(frame, "machine_key").items()}
        groups = frame.groupby("machine_key", sort=False)
        drawn.draw([(keys[k], _machine_page, (rows, render, reference)) for k, rows in groups])
        machines = []
        for key, rows in groups:
            first = rows.iloc[0]
            slug = machine_slug(first["label"], key)
            drawn.link(keys[key], out / "machines" / slug)
            said = json.loads((drawn.folder(keys[key]) / ".said.txt").read_text(encoding="utf-8"))
            machines.append({"label": first["label"], "what": first["what"], "href": f"machines/{slug}/index.html",
                             "slug": slug, "runs": rows["run_file"].nunique(), "said": said[0] if said else "",
                             "newest": rows["run_datetime"].max()})  # fmt: skip
        slugs = {m["label"]: m["slug"] for m in machines}
        ranked = rankings(frame)
        pictures = {}
        jobs = []
        for ranking in ranked:
            ranking.rows["slug"] = ranking.rows["label"].map(slugs)
            parts = range(1, -(-len(ranking.rows.dropna(subset=["value"])) // RANKING_PART) + 1)
            for part in parts:
                shown = ranking.rows.iloc[(part - 1) * RANKING_PART : part * RANKING_PART]
                # What the picture shows: its rows, its title and count, and the axis every part shares.
                axis = pd.concat([ranking.rows[c] for c in ("value", "low", "high")]).agg(["min", "max"]).tolist()
                what = (
                    shown.drop(columns=["slug", "machine_key"]).to_csv() + ranking.title + f"{len(ranking.rows)} {axis}"
                )
                key = hashlib.sha256((stamp + what + str(part)).encode()).hexdigest()
                jobs.append((key, _ranking_part, (ranking, part, RANKING_PART)))
                pictures.setdefault(ranking.key, []).append((key, f"ranking_{ranking.key}_{part}.png"))
        drawn.draw(jobs)
        shown = []
        for ranking in ranked:
            for key, _name in pictures.get(ranking.key, []):
                drawn.link(key, out / "rankings")
            said = {"key": ranking.key, "title": ranking.title, "said": ranking.said, "count": len(ranking.rows),
                    "rows": ranking.rows.drop(columns=["machine_key"]).to_dict("records"),
                    "pictures": [name for _, name in pictures.get(ranking.key, [])]}  # fmt: skip
            page("ranking.html.j2", out / "rankings" / f"{ranking.key}.html", ranking=said, **extra)
            shown.append(said)
        drawn.prune()
        return {"machines": sorted(machines, key=lambda m: m["label"]), "rankings": shown, "top": TOP, **extra}
    finally:
        drawn.close()


def _reference_hash(reference: pd.DataFrame) -> str:
    if reference is None or reference.empty:
        return "none"
    return hashlib.sha256("".join(sorted(_hashes(reference, "machine_key").values())).encode()).hexdigest()
