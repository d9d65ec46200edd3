"""A fleet's report: the index ranks machines per headline figure, each machine has its own page, each ranking its page.

Beyond ONE_PAGE_MACHINES machines the report is a folder of pages: index.html (the rankings' top and
a line per machine), rankings/<figure>.html (every machine ranked, its pictures split so that none
is taller than a few thousand pixels) and machines/<machine>/ (the one-machine report: its answer,
tables and plots). A machine's page depends on its rows alone (and the reference runs), so it is
drawn once and kept in the cache folder under the hash of what it shows; so is each picture of a
ranking (bench/report/kept.py, which uses a kept one only where it is what this user's report drew).
A report whose runs did not change draws nothing again.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from bench.report.cache import code_stamp
from bench.report.fleet import Ranking, rankings
from bench.report.kept import Kept
from bench.report.plots import RANKING_PART, plot_ranking

__all__ = ["ONE_PAGE_MACHINES", "machine_slug", "write_fleet"]

# Up to this many machines the report is one page, as it always was (it reads well for two to four,
# and the committed runs are three: the 2-core VM and two H100s); beyond, a page per machine.
ONE_PAGE_MACHINES = 4
TOP = 10  # the machines a ranking shows on the index; its own page shows them all


def machine_slug(label: str, key: str) -> str:
    """A machine's folder name: its label in safe letters, and a hash of its key (labels are unique, slugs too)."""
    text = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")[:40].strip("-")
    return f"{text or 'machine'}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def _hashes(frame: pd.DataFrame, by: str) -> dict[str, str]:
    """A hash of every row's content per value of `by`, round times included (stable across processes)."""
    flat = frame.drop(columns=["round_times"])
    # Numbers, flags and dates hash as they are; text (object, or pandas 3's str) as text.
    text = [column for column, dtype in flat.dtypes.items() if pd.api.types.is_string_dtype(dtype)]
    flat[text] = flat[text].astype(str)
    rows = pd.util.hash_pandas_object(flat, index=False).to_numpy()
    times = pd.util.hash_pandas_object(frame["round_times"].map(repr), index=False).to_numpy()
    out = {}
    for value, index in frame.groupby(by, sort=False).indices.items():
        out[value] = hashlib.sha256(rows[index].tobytes() + times[index].tobytes()).hexdigest()
    return out


def _machine_page(
    folder: Path, rows: pd.DataFrame, render: Callable, reference: pd.DataFrame
) -> None:
    answers = render(rows, folder, reference=reference, home="../../index.html")
    rows.drop(columns=["round_times"]).to_csv(folder / "summary.csv", index=False)
    # its verdict, where the index shows it: the answer's headline (bench/report/sections.py)
    said = (
        [" ".join(line.strip() for line in answers[0]["headline"])]
        if answers and answers[0]["headline"]
        else []
    )
    # not .json: never taken for a run
    (folder / ".said.txt").write_text(json.dumps(said), encoding="utf-8")


def _ranking_part(folder: Path, ranking: Ranking, part: int, size: int) -> None:
    plot_ranking(ranking, folder, parts=[part], size=size)


def write_fleet(
    frame: pd.DataFrame,
    out: Path,
    *,
    render: Callable,
    page: Callable,
    reference: pd.DataFrame,
    cache: Path | None,
    extra: dict,
) -> dict:
    """The fleet's pages into `out` (a new folder): machines/, rankings/, and what the index shows (returned, for
    `page` to lay out with `extra`). `render(rows, folder, reference=, home=)` writes one machine's
    report and returns its answers; `page(template, folder, **values)` writes a page of the fleet.
    """
    drawn = Kept(cache)
    try:
        stamp = hashlib.sha256((code_stamp() + _reference_hash(reference)).encode()).hexdigest()
        keys = {
            k: hashlib.sha256((stamp + h).encode()).hexdigest()
            for k, h in _hashes(frame, "machine_key").items()
        }
        groups = frame.groupby("machine_key", sort=False)
        drawn.draw([(keys[k], _machine_page, (rows, render, reference)) for k, rows in groups])
        machines = []
        for key, rows in groups:
            first = rows.iloc[0]
            slug = machine_slug(first["label"], key)
            hidden = drawn.link(keys[key], out / "machines" / slug)
            said = json.loads(hidden.get(".said.txt", b"[]").decode("utf-8"))
            machines.append(
                {
                    "label": first["label"],
                    "what": first["what"],
                    "href": f"machines/{slug}/index.html",
                    "slug": slug,
                    "runs": rows["run_file"].nunique(),
                    "said": said[0] if said else "",
                    "newest": rows["run_datetime"].max(),
                }
            )
        slugs = {m["label"]: m["slug"] for m in machines}
        ranked = rankings(frame)
        pictures = {}
        jobs = []
        for ranking in ranked:
            ranking.rows["slug"] = ranking.rows["label"].map(slugs)
            parts = range(1, -(-len(ranking.rows.dropna(subset=["value"])) // RANKING_PART) + 1)
            for part in parts:
                shown = ranking.rows.iloc[(part - 1) * RANKING_PART : part * RANKING_PART]
                # What the picture shows: its rows, its title and count, and the axis every part
                # shares.
                axis = (
                    pd.concat([ranking.rows[c] for c in ("value", "low", "high")])
                    .agg(["min", "max"])
                    .tolist()
                )
                what = (
                    shown.drop(columns=["slug", "machine_key"]).to_csv()
                    + ranking.title
                    + f"{len(ranking.rows)} {axis}"
                )
                key = hashlib.sha256((stamp + what + str(part)).encode()).hexdigest()
                jobs.append((key, _ranking_part, (ranking, part, RANKING_PART)))
                pictures.setdefault(ranking.key, []).append(
                    (key, f"ranking_{ranking.key}_{part}.png")
                )
        drawn.draw(jobs)
        shown = []
        for ranking in ranked:
            if ranking.rows.empty:
                continue  # a figure no machine measured: left out, never a heading over nothing
            for key, _name in pictures.get(ranking.key, []):
                drawn.link(key, out / "rankings")
            said = {
                "key": ranking.key,
                "title": ranking.title,
                "said": ranking.said,
                "count": len(ranking.rows),
                "rows": ranking.rows.drop(columns=["machine_key"]).to_dict("records"),
                "pictures": [name for _, name in pictures.get(ranking.key, [])],
            }
            page("ranking.html.j2", out / "rankings" / f"{ranking.key}.html", ranking=said, **extra)
            shown.append(said)
        drawn.prune()
        # The index opens with the machine that ran last: most often the one the reader just measured.
        dated = [m for m in machines if pd.notna(m["newest"])]
        return {
            "latest": max(dated, key=lambda m: m["newest"]) if dated else None,
            "machines": sorted(machines, key=lambda m: m["label"]),
            "rankings": shown,
            "top": TOP,
            **extra,
        }
    finally:
        drawn.close()


def _reference_hash(reference: pd.DataFrame) -> str:
    if reference is None or reference.empty:
        return "none"
    return hashlib.sha256(
        "".join(sorted(_hashes(reference, "machine_key").values())).encode()
    ).hexdigest()
