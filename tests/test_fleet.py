"""The report at fleet size: its cache of run files, the fleet's pages and rankings, and the job files that run a fleet."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import matplotlib.image
import pandas as pd
import pytest
import yaml

from bench.analysis.rows import load_frame
from bench.format.store import RunFileWarning
from bench.report import cache as cache_module
from bench.report import kept as kept_module
from bench.report import pages
from bench.report.cache import CacheWarning, RowCache
from bench.report.cli import main as report
from bench.report.kept import Kept
from bench.report.page import OutputError, check_out
from tests.fleet import make_fleet

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
EXAMPLES = ROOT / "examples"


def _equal(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a, b, check_exact=True)


@pytest.mark.parametrize("all_runs", [False, True])
def test_the_cache_gives_what_the_files_give(tmp_path, all_runs):
    paths = [ROOT / "results" / "reference", FIXTURES]
    files = load_frame(paths, all_runs=all_runs)
    cold, warm = RowCache(tmp_path / "cache"), RowCache(tmp_path / "cache")
    _equal(files, load_frame(paths, all_runs=all_runs, cache=cold))
    _equal(files, load_frame(paths, all_runs=all_runs, cache=warm))
    assert cold.read_files > 10 and cold.kept_files == 0
    assert warm.read_files == 0 and warm.kept_files == cold.read_files


def test_a_changed_or_new_file_is_read_again_and_a_removed_one_dropped(tmp_path):
    runs = tmp_path / "runs"
    first, second, third = make_fleet(runs, machines=3)
    load_frame([runs], cache=RowCache(runs / ".report-cache"))
    changed = json.loads(first.read_text())
    for bench in changed["benchmarks"]:
        bench["stats"]["median"] *= 2
        bench["stats"]["data"] = [x * 2 for x in bench["stats"].get("data") or []]
    first.write_text(json.dumps(changed))
    os.utime(
        first, ns=(first.stat().st_atime_ns, first.stat().st_mtime_ns + 10**9)
    )  # a clock's tick later
    third.unlink()
    new = make_fleet(tmp_path / "more", machines=4)[3]
    shutil.move(new.parent, runs / new.parent.name)
    again = RowCache(runs / ".report-cache")
    frame = load_frame([runs], cache=again)
    assert (again.read_files, again.kept_files) == (
        2,
        1,
    )  # the changed and the new one; the unchanged one kept
    _equal(frame, load_frame([runs]))
    assert frame["machine_name"].nunique() == 3 and "fleet-0002" not in set(frame["machine_name"])
    last = RowCache(runs / ".report-cache")
    load_frame([runs], cache=last)
    assert (last.read_files, last.kept_files) == (0, 3)
    assert second.exists()


def test_a_file_that_warns_is_never_kept_and_warns_every_time(tmp_path):
    run = json.loads((FIXTURES / "cpu_quick_run.json").read_text())
    run["datetime"] = "not a date"
    path = tmp_path / "run.json"
    path.write_text(json.dumps(run))
    for _ in range(2):
        cache = RowCache(tmp_path / "cache")
        with pytest.warns(RunFileWarning, match="is not a date"):
            load_frame([path], cache=cache)
        assert cache.read_files == 1 and cache.kept_files == 0


def test_a_broken_cache_or_one_of_another_version_reads_the_files(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    make_fleet(runs, machines=2)
    files = load_frame([runs])
    folder = tmp_path / "cache"
    load_frame([runs], cache=RowCache(folder))
    (folder / "rows.parquet").write_bytes(b"PAR1 not parquet")
    broken = RowCache(folder)
    with pytest.warns(CacheWarning, match="unreadable"):
        _equal(files, load_frame([runs], cache=broken))
    assert broken.read_files == 2
    monkeypatch.setattr(cache_module, "code_stamp", lambda: "another version of the report")
    other = RowCache(folder)
    _equal(files, load_frame([runs], cache=other))  # silently: a new version reads every file again
    assert other.read_files == 2


def test_the_cache_is_stamped_with_every_module_its_rows_and_pages_come_from(tmp_path, monkeypatch):
    # A change to the analysis alone (a column, an answer's words) must read every file again: the stamp once
    # hashed a folder that no longer existed, and the analysis not at all.
    code = tmp_path / "bench"
    for part in ("format", "analysis", "report", "report/templates"):
        (code / part).mkdir(parents=True)
        (code / part / "a.py").write_text("x = 1\n")
    folders = (code / "format", code / "analysis", code / "report", code / "report" / "templates")
    real = [folder.relative_to(ROOT / "bench") for folder in cache_module._STAMPED]
    monkeypatch.setattr(cache_module, "_STAMPED", folders)
    stamps = []
    for changed in (None, *folders):
        if changed is not None:
            (changed / "a.py").write_text("x = 2\n")
        cache_module.code_stamp.cache_clear()
        stamps.append(cache_module.code_stamp())
    cache_module.code_stamp.cache_clear()
    assert len(set(stamps)) == len(stamps)
    assert [str(f) for f in real] == ["format", "analysis", "report", "report/templates"]
    assert all((ROOT / "bench" / f).is_dir() for f in real)


def test_the_cache_folder_is_never_read_as_runs(tmp_path, capsys):
    runs = tmp_path / "runs"
    make_fleet(runs, machines=1)
    for _ in range(2):
        assert report([str(runs), "--out", str(tmp_path / "out")]) == 0
    assert (runs / ".report-cache" / "rows.parquet").is_file()
    assert "warning" not in capsys.readouterr().err


def test_a_crafted_cache_is_refused_before_it_is_read(tmp_path, monkeypatch):
    """The issue's rows.parquet: a few kB of compressed zeros that decode to a list of millions (4x10^8 took a
    report to 21 GB and 133 s). Refused from its footer alone; the files are read instead."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    runs = tmp_path / "runs"
    make_fleet(runs, machines=1, runs=1)
    files = load_frame([runs])
    load_frame([runs], cache=RowCache(tmp_path / "cache"))
    path = tmp_path / "cache" / "rows.parquet"
    table = pq.read_table(path)
    zeros = 10**6
    bomb = pa.ListArray.from_arrays(
        pa.array([0] + [zeros] * table.num_rows, pa.int32()), pa.array(np.zeros(zeros))
    )
    at = table.schema.get_field_index("round_times")
    pq.write_table(table.set_column(at, table.schema.field(at), bomb), path, compression="zstd")
    assert (
        path.stat().st_size < 100_000
    )  # (kept as it was written: its stamp and list of files are the report's)
    monkeypatch.setattr(
        pq.ParquetFile, "read", lambda *a, **k: pytest.fail("the crafted cache was read")
    )
    monkeypatch.setattr(pq, "read_table", lambda *a, **k: pytest.fail("the crafted cache was read"))
    crafted = RowCache(tmp_path / "cache")
    with pytest.warns(
        CacheWarning, match="1,0[0-9,]+ values, more than the run files it lists could give"
    ):
        _equal(files, load_frame([runs], cache=crafted))
    assert crafted.read_files == 1 and crafted.kept_files == 0


def _links(page: Path) -> list[str]:
    return re.findall(r'href="([^"#]+)"', page.read_text(encoding="utf-8"))


def _expected_speedups(runs: Path) -> dict[str, float]:
    """Each constructed machine's train seed speedup at batch 1,000 from its newest run file, computed here."""
    out = {}
    for path in sorted(runs.glob("*/0002_fleet.json")):
        run = json.loads(path.read_text())
        medians = {b["params"]["device"]: b["stats"]["median"] for b in run["benchmarks"]
                   if b["name"].endswith("-1000-seed]")}  # fmt: skip
        out[run["machine_info"]["fmnist_bench"]["machine_name"]] = (
            medians["cpu"] / medians["cuda:0"]
        )
    return out


def test_a_fleet_is_ranked_with_a_page_per_machine(tmp_path, monkeypatch):
    """The scale test, at a size a test affords: 7 machines of 2 runs, rankings split 3 machines a picture."""
    monkeypatch.setattr(pages, "RANKING_PART", 3)
    runs, out = tmp_path / "runs", tmp_path / "out"
    make_fleet(runs, machines=7, runs=2)
    assert report([str(runs), "--out", str(out)]) == 0
    index = out / "index.html"
    machines = sorted((out / "machines").iterdir())
    assert len(machines) == 7 and all(
        (m / "index.html").is_file() and (m / "epoch_time.png").is_file() for m in machines
    )
    linked = [link for link in _links(index) if link.startswith("machines/")]
    assert {Path(link).parent.name for link in linked} == {m.name for m in machines}
    for link in _links(index):
        assert (out / link).is_file(), link
    for page in (out / "rankings").glob("*.html"):
        for link in _links(page):
            assert (page.parent / link).resolve().is_file(), (page.name, link)
    # The ranking's order and figures are the ones the run files give.
    expected = _expected_speedups(runs)
    parts = sorted((out / "rankings").glob("ranking_speedup_train_*.csv"))
    assert len(parts) == 3  # 7 machines, 3 a picture
    ranked = pd.concat([pd.read_csv(p) for p in parts])
    names = [label.split(" ")[0] for label in ranked["machine"]]
    assert names == sorted(expected, key=expected.get, reverse=True)
    assert ranked["value"].tolist() == pytest.approx([expected[n] for n in names], rel=1e-12)
    assert ranked["rank"].tolist() == list(range(1, 8))
    for picture in out.rglob("*.png"):
        height, width = matplotlib.image.imread(picture).shape[:2]
        assert height <= 4000 and width <= 4000, picture
    # Nothing is drawn again when nothing changed, and the report is the same.
    drawn = {p: p.stat().st_ino for p in (runs / ".report-cache" / "drawn").rglob(".done")}
    before = index.read_text(encoding="utf-8")
    assert report([str(runs), "--out", str(out)]) == 0
    assert {p: p.stat().st_ino for p in (runs / ".report-cache" / "drawn").rglob(".done")} == drawn
    assert index.read_text(encoding="utf-8") == before


def test_up_to_four_machines_the_report_stays_one_page(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "out"
    make_fleet(runs, machines=pages.ONE_PAGE_MACHINES)
    assert report([str(runs), "--out", str(out)]) == 0
    assert not (out / "machines").exists()
    assert '<section class="answer"' in (out / "index.html").read_text(encoding="utf-8")


def test_the_reference_runs_never_make_a_fleet_and_the_newest_run_answers_first(tmp_path):
    # The default results/ holds the shipped reference runs beside the user's: with them, one machine of
    # the user's own made five, a fleet ranking the user last. They are what a CPU-only machine is held
    # against, never machines of the user's.
    runs, out = tmp_path / "results", tmp_path / "out"
    make_fleet(runs / "mine", machines=2)  # fleet-0001's run is a minute newer
    (runs / "reference").symlink_to(ROOT / "results" / "reference")
    assert report([str(runs), "--out", str(out)]) == 0
    assert not (out / "machines").exists() and not (out / "rankings").exists()
    page = (out / "index.html").read_text(encoding="utf-8")
    answers = re.findall(r'<section class="answer"[^>]*>\s*<h2>([^<]*)</h2>', page)
    assert len(answers) == 2 and answers[0].startswith("fleet-0001"), answers
    assert (
        "reference:" not in page.split("Every figure")[1]
    )  # no reference machine among the figures
    assert "are not among the machines here" in page
    summary = pd.read_csv(out / "summary.csv")
    assert not summary["reference"].any() and summary["machine_key"].nunique() == 2


def test_a_figure_no_machine_of_the_fleet_measured_has_no_ranking(tmp_path):
    # Five machines without a GPU: no speedup and no crossover to rank, so none is on the index, never a
    # heading over "No machine measured this".
    runs, out = tmp_path / "runs", tmp_path / "out"
    for path in make_fleet(runs, machines=pages.ONE_PAGE_MACHINES + 1):
        run = json.loads(path.read_text())
        run["benchmarks"] = [b for b in run["benchmarks"] if b["params"]["device"] == "cpu"]
        path.write_text(json.dumps(run))
    assert report([str(runs), "--out", str(out)]) == 0
    index = (out / "index.html").read_text(encoding="utf-8")
    assert "No machine measured this" not in index and "GPU speedup" not in index
    assert "Fastest training epoch" in index and not list((out / "rankings").glob("speedup_*"))


def test_a_fleet_report_folder_holds_only_what_the_report_writes(tmp_path):
    out = tmp_path / "out"
    (out / "machines" / "fleet-0001-abcd1234").mkdir(parents=True)
    (out / "machines" / "fleet-0001-abcd1234" / "index.html").write_text("")
    (out / "rankings").mkdir()
    (out / "rankings" / "ranking_speedup_train_1.png").write_bytes(b"")
    check_out(out)  # a fleet report's own files: replaced
    (out / "machines" / "fleet-0001-abcd1234" / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="notes.txt"):
        check_out(out)


def test_the_slurm_files_are_bash_and_submit_one_array_per_node_type(tmp_path):
    for script in ("fleet.sbatch", "submit.sh"):
        subprocess.run(["bash", "-n", str(EXAMPLES / "slurm" / script)], check=True)
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "sbatch").write_text('#!/bin/sh\necho "$@" >> "$SUBMITTED"\n')
    (fake / "sbatch").chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{fake}:{os.environ['PATH']}",
        "SUBMITTED": str(tmp_path / "submitted"),
    }
    submit = str(EXAMPLES / "slurm" / "submit.sh")
    subprocess.run([submit, "h100", "cpu-large"], check=True, env=env)
    lines = (tmp_path / "submitted").read_text().splitlines()
    assert (
        len(lines) == 2
        and "--constraint=h100 --array=1-5%1" in lines[0]
        and "NODE_TYPE=cpu-large" in lines[1]
    )
    assert f"FMNIST_BENCH_DIR={ROOT}," in lines[0] or f"FMNIST_BENCH_DIR={ROOT} " in lines[0]
    assert all(line.endswith("fleet.sbatch") for line in lines)
    bad = [
        ({}, []),
        ({"RUNS": "five"}, ["h100"]),
        ({"RUNS": "0"}, ["h100"]),
        ({}, ["a b"]),
        ({}, [""]),
    ]
    for bad_env, args in [*bad, ({}, ["h100", ""])]:
        done = subprocess.run(
            [submit, *args], env={**env, **bad_env}, capture_output=True, text=True
        )
        assert done.returncode == 2 and done.stderr, args
    assert (
        len((tmp_path / "submitted").read_text().splitlines()) == 2
    )  # (nothing more was submitted)


def test_the_slurm_job_cuts_a_long_name_by_characters_in_a_posix_locale(tmp_path):
    """LC_ALL=C makes bash's ${NAME:0:64} count bytes: a name of non-ASCII letters was cut mid-character."""
    record = tmp_path / "argv"
    python = (
        tmp_path / "python"
    )  # the job's interpreter: runs what the job asks of Python, records the run's line
    python.write_text(
        f'#!/bin/sh\n[ "$1" = -c ] && exec {sys.executable} "$@"\nprintf "%s\\n" "$@" > {record}\n'
    )
    python.chmod(0o755)
    node_type = "\u30e9" * 25  # 25 characters, 75 bytes in UTF-8
    env = {
        "PATH": os.environ["PATH"],
        "LC_ALL": "C",
        "PYTHON": str(python),
        "FMNIST_BENCH_DIR": str(tmp_path),
    }
    env["NODE_TYPE"] = node_type
    subprocess.run(
        ["bash", str(EXAMPLES / "slurm" / "fleet.sbatch")], env=env, check=True, capture_output=True
    )
    argv = record.read_bytes().decode("utf-8").splitlines()  # (a cut character would not decode)
    name = argv[argv.index("--machine-name") + 1]
    assert name.startswith(node_type + "-") and len(name) <= 64


def test_the_ci_matrix_runs_commands_the_project_accepts(tmp_path):
    workflow = yaml.safe_load((EXAMPLES / "ci" / "github-actions.yml").read_text())
    bench, final = workflow["jobs"]["bench"], workflow["jobs"]["report"]
    assert "self-hosted" in bench["runs-on"] and len(bench["strategy"]["matrix"]["runner"]) >= 2
    assert final["needs"] == "bench"
    step = next(step for step in bench["steps"] if step.get("name") == "Benchmark")
    assert (
        "${{" not in step["run"]
    )  # the runner's name comes through the environment, never into the script
    # The command as the runner's shell runs it, with a runner's name (bash expands ${MACHINE:0:64}).
    shown = subprocess.run(["bash", "-c", "printf '%s\\n' " + step["run"].split(" ", 1)[1]], capture_output=True,
                           text=True, env={**os.environ, "MACHINE": "gpu-h100-runner-7"}, check=True)  # fmt: skip
    command = shown.stdout.split()
    assert command[:4] == ["-m", "pytest", "bench", "--benchmark-autosave"]
    # Its options, as pytest bench takes them (collected only, nothing run or saved).
    options = command[4:]
    assert options == ["--machine-name", "gpu-h100-runner-7"]
    checkout = _checkout(
        tmp_path
    )  # pytest-benchmark makes the machine's (empty) folder: not in this checkout's
    done = subprocess.run([sys.executable, "-m", "pytest", "bench", "--collect-only", "-q", "-p", "no:cacheprovider",
                           *options], cwd=checkout, capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    reported = next(s["run"] for s in final["steps"] if s.get("name") == "Report").split()
    assert reported[1:5] == ["-m", "bench", "report", "results"]


def _checkout(tmp_path: Path) -> Path:
    """A checkout of the project, as a cluster's shared storage holds it (its results/ empty)."""
    checkout = tmp_path / "checkout"
    for part in ("bench", "fmnist_model", "examples"):
        shutil.copytree(ROOT / part, checkout / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", checkout)
    return checkout


def test_n_machines_save_into_one_tree_at_once(tmp_path):
    """The job file itself, four tasks at once on this machine: three node types, one of them twice. Every run
    is saved, each machine into its own folder, and the report reads them all as a fleet."""
    checkout = _checkout(tmp_path)
    env = {**os.environ, "PYTHON": sys.executable, "FMNIST_BENCH_DIR": str(checkout),
           "BENCH_ARGS": "--quick --devices cpu -k test_transfer -p no:cacheprovider"}  # fmt: skip
    tasks = [
        subprocess.Popen(["bash", str(checkout / "examples" / "slurm" / "fleet.sbatch")], env={**env, "NODE_TYPE": t,
                         "SLURM_ARRAY_TASK_ID": str(i)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for i, t in enumerate(["type-a", "type-b", "type-c", "type-a"])
    ]  # fmt: skip
    for task in tasks:
        output, _ = task.communicate(timeout=600)
        assert task.returncode == 0, output[-3000:]
    results = checkout / "results"
    folders = sorted(p for p in results.iterdir() if p.is_dir())
    assert [f.name.split("-")[1] for f in folders] == ["a", "b", "c"]
    runs = {f.name: sorted(f.rglob("*.json")) for f in folders}
    assert sorted(len(r) for r in runs.values()) == [1, 1, 2]
    twice = next(r for r in runs.values() if len(r) == 2)
    assert [p.name[:4] for p in twice] == [
        "0001",
        "0002",
    ]  # two saves at once into one folder: both numbered
    frame = load_frame([results], all_runs=True)
    assert frame["run_file"].nunique() == 4 and frame["machine_key"].nunique() == 3
    out = tmp_path / "report"
    assert report([str(results), "--out", str(out)]) == 0
    page = (out / "index.html").read_text(encoding="utf-8")
    assert all(f"<h2>type-{t}-" in page for t in "abc")  # three machines: one page, an answer each


def test_a_cache_that_cannot_be_used_is_refused_or_passed_by(tmp_path, monkeypatch, capsys):
    _small_fleets(monkeypatch)
    runs = tmp_path / "runs"
    make_fleet(runs, machines=SMALL_FLEET)
    (tmp_path / "file").write_text("")
    for bad in (["--cache", str(tmp_path / "file")], ["--cache", str(tmp_path / "out" / "c")],
                ["--cache", str(tmp_path / "c"), "--no-cache"]):  # fmt: skip
        with pytest.raises(SystemExit) as stopped:
            report([str(runs), "--out", str(tmp_path / "out"), *bad])
        assert stopped.value.code == 2
    assert not (tmp_path / "out").exists()
    # A cache that cannot be written (under a file, so even root cannot): the report is written all the same.
    capsys.readouterr()
    assert (
        report(
            [str(runs), "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "file" / "cache")]
        )
        == 0
    )
    err = capsys.readouterr().err
    machines = list((tmp_path / "out" / "machines").iterdir())
    assert "the report's cache" in err and len(machines) == SMALL_FLEET


# What the cache's and the kept pages' tests need is a fleet's pages, not many of them: two machines over a
# threshold of one make the same folders, rankings and kept pages as five over four, in half the time.
SMALL_FLEET = 2


def _small_fleets(monkeypatch) -> None:
    monkeypatch.setattr(pages, "ONE_PAGE_MACHINES", SMALL_FLEET - 1)


def _read_only(*args, **kwargs):
    raise PermissionError(13, "Read-only file system")


def _reported_fleet(tmp_path: Path, monkeypatch, out: str) -> tuple[Path, Path]:
    """A small fleet's runs reported once into `out` (this user's cache key under tmp_path): the runs, and the
    folder of the pages the report drew."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    _small_fleets(monkeypatch)
    runs = tmp_path / "runs"
    make_fleet(runs, machines=SMALL_FLEET)
    assert report([str(runs), "--out", str(tmp_path / out)]) == 0
    return runs, runs / ".report-cache" / "drawn"


def test_a_damaged_cache_or_one_that_cannot_be_stamped_is_a_warning_and_the_report_is_written(
    tmp_path, monkeypatch, capsys
):
    runs, drawn = _reported_fleet(tmp_path, monkeypatch, "out")
    kept = {p: p.stat().st_ino for p in drawn.rglob(".done")}
    # Marking a kept page used fails (a read-only tree, another user's cache): the page is used all the same.
    monkeypatch.setattr(kept_module.os, "utime", _read_only)
    assert report([str(runs), "--out", str(tmp_path / "out")]) == 0
    assert {p: p.stat().st_ino for p in drawn.rglob(".done")} == kept  # nothing drawn again
    monkeypatch.undo()
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    _small_fleets(monkeypatch)
    # Every shard a file: no page can be kept, each is drawn for this report alone, said once.
    for shard in list(drawn.iterdir()):
        shutil.rmtree(shard)
        shard.write_text("not a folder")
    capsys.readouterr()
    assert report([str(runs), "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert (
        err.count("a page could not be kept in the report's cache") == 1
        and "drawn for this report alone" in err
    )
    assert len(list((tmp_path / "out" / "machines").iterdir())) == SMALL_FLEET
    assert all((m / "index.html").is_file() for m in (tmp_path / "out" / "machines").iterdir())


def _children(pid: int) -> set[int]:
    """The processes `pid` started (its drawing workers, the resource tracker)."""
    try:
        return {
            int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        }
    except OSError:
        return set()


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _await(condition, what: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {seconds} s for {what}")
        time.sleep(0.05)


@pytest.mark.skipif(
    not Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").exists(), reason="Linux's /proc"
)
def test_a_killed_fleet_report_leaves_no_process_and_the_next_report_removes_its_temporaries(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    runs, out = tmp_path / "runs", tmp_path / "out"
    make_fleet(runs, machines=8)  # eight pages and the ranking pictures: drawn by workers
    drawn = runs / ".report-cache" / "drawn"
    for stop in (signal.SIGTERM, signal.SIGKILL):
        command = [sys.executable, "-m", "bench", "report", str(runs), "--out", str(out)]
        started = subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        pid = started.pid
        _await(
            lambda pid=pid: len(_children(pid)) >= 2 and any(drawn.glob("*/.drawing-*")),
            "the workers drawing",
        )
        its = _children(pid)
        started.send_signal(stop)
        _, err = started.communicate(timeout=120)
        _await(
            lambda its=its: not any(_running(p) for p in its),
            "the report's workers and tracker to end",
        )
        if stop == signal.SIGTERM:  # stopped as Ctrl-C stops it: its own new folder removed
            assert (
                started.returncode == 128 + stop
                and "report: stopped by SIGTERM: nothing written" in err
            )
            assert not list(tmp_path.glob(".out-*"))
    assert list(tmp_path.glob(".out-new-*")) and list(
        drawn.glob("*/.drawing-*")
    )  # what SIGKILL left
    assert report([str(runs), "--out", str(out)]) == 0
    assert not list(tmp_path.glob(".out-*")) and not list(drawn.glob("*/.drawing-*"))
    assert len(list((out / "machines").iterdir())) == 8


def test_a_cache_folder_planted_as_a_link_is_never_written_through(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    _small_fleets(monkeypatch)
    runs, elsewhere = tmp_path / "runs", tmp_path / "elsewhere"
    make_fleet(runs, machines=SMALL_FLEET)
    elsewhere.mkdir()
    (runs / ".report-cache").symlink_to(elsewhere)
    assert report([str(runs), "--out", str(tmp_path / "out")]) == 0
    assert "a link, not a folder of the results' own" in capsys.readouterr().err and not os.listdir(
        elsewhere
    )
    (runs / ".report-cache").unlink()
    (runs / ".report-cache").mkdir()
    (runs / ".report-cache" / "drawn").symlink_to(elsewhere)
    assert report([str(runs), "--out", str(tmp_path / "out")]) == 0
    assert "a link, not a folder of the cache's own" in capsys.readouterr().err and not os.listdir(
        elsewhere
    )


def test_a_file_given_twice_is_read_once(tmp_path):
    runs = tmp_path / "runs"
    first = make_fleet(runs, machines=2)[0]
    (tmp_path / "linked").symlink_to(runs)
    once = load_frame([runs], all_runs=True)
    for paths in ([runs, first], [runs, tmp_path / "linked"]):
        _equal(once, load_frame(paths, all_runs=True))
        _equal(once, load_frame(paths, all_runs=True, cache=RowCache(tmp_path / "cache")))


def _draw(folder: Path, text: str) -> None:
    (folder / "index.html").write_text(text)
    (folder / ".said.txt").write_text(json.dumps([text]))


def _kept_file(kept: Kept, key: str, name: str = "index.html") -> Path:
    return kept.placed[key] / name


def test_what_another_report_drew_meanwhile_is_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    first, second = Kept(tmp_path / "cache"), Kept(tmp_path / "cache")
    first.draw([("ab" * 32, _draw, ("first",))])
    second.place = kept_module._Place(second.place.root, second.place.scratch, second.place.key)
    kept_module._draw_into(
        second.place, second.place.root, "ab" * 32, _draw, ("second",)
    )  # one key, twice at once
    assert _kept_file(first, "ab" * 32).read_text() == "first"  # the first whole one is kept
    assert first.link("ab" * 32, tmp_path / "out") == {".said.txt": b'["first"]'}
    assert (tmp_path / "out" / "index.html").read_text() == "first" and os.listdir(
        tmp_path / "out"
    ) == ["index.html"]
    # Read-only: a report's file changed in place (a link to the cache's) is refused, not passed on to later reports.
    assert _kept_file(first, "ab" * 32).stat().st_mode & 0o222 == 0
    for kept in (first, second):
        kept.close()


def test_a_kept_page_is_used_only_as_this_user_drew_it(tmp_path, monkeypatch):
    """Edited, linked elsewhere, sealed by another user's key, or its manifest forged: never placed, drawn again."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    key = "cd" * 32
    kept = Kept(tmp_path / "cache")
    kept.draw([(key, _draw, ("clean",))])
    folder = kept.placed[key]
    kept.close()
    page = folder / "index.html"
    page.chmod(0o644)
    page.write_text("<script>document.title='XSS'</script>")
    (folder / "secret.html").symlink_to("/etc/passwd")
    again = Kept(tmp_path / "cache")
    again.draw([(key, _draw, ("clean",))])
    with pytest.warns(CacheWarning, match="a kept page is not what the report drew"):
        said = again.link(key, tmp_path / "out")
    assert said == {".said.txt": b'["clean"]'} and os.listdir(tmp_path / "out") == ["index.html"]
    assert (
        tmp_path / "out" / "index.html"
    ).read_text() == "clean" and page.read_text() == "clean"  # (redrawn)
    again.close()
    page.chmod(0o644)
    page.write_text("<script>document.title='XSS'</script>")
    # Its manifest forged to match the edit: the seal is this user's key's, which the forger does not have.
    manifest = json.loads((folder / ".done").read_text())
    manifest["files"]["index.html"] = hashlib.sha256(page.read_bytes()).hexdigest()
    (folder / ".done").write_text(json.dumps(manifest))
    forged = Kept(tmp_path / "cache")
    forged.draw([(key, _draw, ("clean",))])
    assert _kept_file(forged, key).read_text() == "clean"  # drawn again in its place
    forged.close()
    # The same cache read by another user (another key): none of it is used, and nothing is said.
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "another-user"))
    other = Kept(tmp_path / "cache")
    other.draw([(key, _draw, ("clean",))])
    assert (
        other.placed[key].parent.parent == tmp_path / "cache" / "drawn"
        and other.placed[key] != folder
    )
    other.close()


def test_a_copied_tree_with_tampered_pages_and_a_planted_link_gives_a_report_of_its_own(
    tmp_path, monkeypatch, capsys
):
    """The issue's probe: edited drawn pages, rows.parquet removed, a link to /etc/passwd in a drawn folder."""
    runs, drawn = _reported_fleet(tmp_path, monkeypatch, "first")
    for page in drawn.rglob("index.html"):
        page.chmod(0o644)
        page.write_text(
            page.read_text().replace("</body>", "<script>document.title='XSS'</script></body>")
        )
    (runs / ".report-cache" / "rows.parquet").unlink()
    (next(drawn.glob("*/*")) / "secret.html").symlink_to("/etc/passwd")
    capsys.readouterr()
    assert report([str(runs), "--out", str(tmp_path / "out")]) == 0
    assert "a kept page is not what the report drew" in capsys.readouterr().err
    written = list((tmp_path / "out").rglob("*"))
    assert len(list((tmp_path / "out" / "machines").iterdir())) == SMALL_FLEET
    assert not any(p.is_symlink() for p in written) and not any(
        p.name == "secret.html" for p in written
    )
    assert not any(b"<script>document.title" in p.read_bytes() for p in written if p.is_file())
