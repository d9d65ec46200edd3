"""The journal, whole-file saves and recovery, on real files in a temporary folder."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.format import journal as journal_module
from bench.format import store as store_module
from bench.format.journal import Journal, JournalError, find_journals, main, read_journal, recover
from bench.format.store import save_whole, write_whole

REPO = Path(__file__).resolve().parent.parent


def a_case(name, median=1.0):
    """A finished case as the format takes it (bench/format/schema.py): journal lines that are not one are refused."""
    return {
        "group": "train",
        "name": name,
        "params": {"device": "cpu", "batch_size": 100, "pipeline": "seed"},
        "stats": {"median": median, "rounds": 3},
        "extra_info": {"images": 60000},
    }


def header(save_name="abc_20261127_120000"):
    info = {
        "node": "box",
        "fmnist_bench": {"format": 2},
        "dataset": {"name": "synthetic", "train_images": None},
    }
    return {
        "machine_info": info,
        "commit_info": {"id": "abc"},
        "save_name": save_name,
        "version": "5.3.1",
    }


def test_a_journal_keeps_each_case_as_a_line_and_is_removed_when_the_run_is_saved(tmp_path):
    journal = Journal(tmp_path / "runs")
    journal.start(header())
    journal.add(a_case("a"))
    journal.add(a_case("b"))
    journal.note({"planned_cases": 3})
    journal.note({"skipped": {"name": "c", "reason": "cuda:0: no GPU"}})
    head, cases, noted, problems = read_journal(journal.path)
    assert head.save_name == "abc_20261127_120000" and [c["case"]["name"] for c in cases] == [
        "a",
        "b",
    ]
    assert head.started  # stamped when the run started measuring
    assert noted.planned_cases == 3 and [lost.write() for lost in noted.skipped] == [
        {"name": "c", "reason": "cuda:0: no GPU"}
    ]
    assert noted.pid == os.getpid() and not problems and journal.cases == 2
    journal.close(keep=False)
    assert not journal.path.exists()


@pytest.mark.parametrize("blocker", ["file-in-place", "file-as-parent"])
def test_a_folder_that_cannot_be_written_is_refused_up_front(tmp_path, blocker):
    (tmp_path / "runs").write_text("not a folder")
    folder = tmp_path / "runs" if blocker == "file-in-place" else tmp_path / "runs" / "machine"
    with pytest.raises(JournalError, match="cannot write to"):
        Journal(folder)


def test_a_nearly_full_disk_is_refused_up_front(tmp_path, monkeypatch):
    monkeypatch.setattr(journal_module, "_free_bytes", lambda folder: 1024)
    with pytest.raises(JournalError, match="only 0.0 MiB free"):
        Journal(tmp_path)
    assert not list(tmp_path.iterdir())  # nothing left behind


def test_save_whole_numbers_runs_like_pytest_benchmark_and_never_reuses_a_number(tmp_path):
    (tmp_path / "0007_older.json").write_text("{}")
    first = save_whole(tmp_path, "run", {"benchmarks": []})
    second = save_whole(tmp_path, "run", {"benchmarks": [1]})
    assert (first.name, second.name) == ("0008_run.json", "0009_run.json")
    assert json.loads(second.read_text()) == {"benchmarks": [1]}
    assert (first.stat().st_mode & 0o777) == (
        0o666 & ~_umask()
    )  # as readable as a plain open() makes it
    assert sorted(p.name for p in tmp_path.glob("*.json")) == [
        "0007_older.json",
        "0008_run.json",
        "0009_run.json",
    ]
    assert not list(tmp_path.glob("*.tmp"))


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_concurrent_saves_all_survive_with_distinct_numbers(tmp_path):
    # Separate processes, each with its own run name (as two runs' timestamps differ).
    code = (
        "import sys; from pathlib import Path; from bench.format.store import save_whole; "
        "print(save_whole(Path(sys.argv[1]), 'run' + sys.argv[2], {'i': int(sys.argv[2])}).name)"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path), str(i)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(12)
    ]
    names = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert sorted(int(name[:4]) for name in names) == list(range(1, 13))
    assert sorted(json.loads((tmp_path / name).read_text())["i"] for name in names) == list(
        range(12)
    )


def test_a_failed_write_leaves_neither_a_truncated_run_nor_a_temporary_file(tmp_path, monkeypatch):
    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store_module.os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        save_whole(tmp_path, "run", {"benchmarks": []})
    with pytest.raises(OSError, match="No space left"):
        write_whole(tmp_path / "run.json", b"{}")
    assert [p.name for p in tmp_path.iterdir()] == []


def test_recover_saves_a_dead_runs_cases_as_an_incomplete_run_and_removes_the_journal(tmp_path):
    journal = Journal(tmp_path)
    journal.start(header())
    journal.note({"planned_cases": 4})
    journal.note({"data_used": {"train": 2000}})
    journal.add(a_case("a"))
    journal.note({"data_used": {"train": 2000, "test": 1000}})
    journal.note({"failed": {"name": "b", "reason": "boom"}})
    journal.close(keep=True)  # as a killed process leaves it: closed, its lock gone
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    with journal.path.open(
        "a"
    ) as fh:  # the process that wrote it has ended (this one, which made it, has not)
        fh.write(json.dumps({"pid": int(dead.stdout)}) + "\n")
    leftover = (
        tmp_path / f".saving-{int(dead.stdout)}-0123.tmp"
    )  # a save it was making when it died
    leftover.write_text("{half")
    with journal.path.open("a") as fh:
        fh.write('{"case": {"name": "torn')  # the line it was writing when it died
    saved, said = recover(journal.path)
    assert saved.name == "0001_abc_20261127_120000_partial.json"
    assert (
        "1 finished case saved as" in said and "line 10 is not complete JSON" in said
    )  # (line 2: how it ended)
    run = json.loads(saved.read_text())
    assert [b["name"] for b in run["benchmarks"]] == ["a"]
    ours = run["machine_info"]["fmnist_bench"]["run"]
    assert ours["complete"] is False and ours["planned_cases"] == 4 and ours["finished_cases"] == 1
    assert ours["failed"] == [{"name": "b", "reason": "boom"}] and ours["skipped"] == []
    assert "wall_s" not in ours  # the header's record is from the run's start: not carried over
    dataset = run["machine_info"]["dataset"]
    assert (dataset["train_images"], dataset["test_images"]) == (2000, 1000) and dataset[
        "name"
    ] == "synthetic"
    assert not leftover.exists()
    assert run["machine_info"]["fmnist_bench"]["format"] == 2  # the rest of machine_info is kept
    assert run["commit_info"] == {"id": "abc"} and run["version"] == "5.3.1"
    assert not journal.path.exists()


def test_recover_leaves_a_live_runs_journal_alone(tmp_path):
    journal = Journal(tmp_path)  # held open and locked, as by a running suite
    journal.start(header())
    journal.add(a_case("a"))
    saved, said = recover(journal.path)
    assert saved is None and "still going" in said and journal.path.exists()
    # Another process sees the lock too.
    other = subprocess.run(
        [sys.executable, "-m", "bench", "recover", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert "still going" in other.stdout and journal.path.exists()
    journal.close(keep=False)


def _whole_run(journal: Journal, cases) -> dict:
    """The run a session saves: its record names its journal (bench/run/state.py RunState.journal)."""
    info = header()["machine_info"]
    info["fmnist_bench"]["run"] = {"complete": True, "journal": journal.path.name}
    return {"machine_info": info, "benchmarks": cases}


def test_a_journal_whose_run_was_saved_is_removed_not_saved_again(tmp_path):
    journal = Journal(tmp_path)
    journal.start(header())
    journal.add(a_case("a"))
    path = save_whole(tmp_path, "abc", _whole_run(journal, [a_case("a")]))
    journal.saved_as(path)
    journal.close(keep=True)  # the process died between its save and removing the journal
    saved, said = recover(journal.path)
    assert saved is None and "was saved as" in said and not journal.path.exists()
    assert [p.name for p in tmp_path.glob("*.json")] == ["0001_abc.json"]


def test_a_run_saved_before_its_journal_said_so_is_recognised_by_its_content(tmp_path):
    # SIGKILL after the run file was linked to its number and before the journal's "saved" line.
    journal = Journal(tmp_path)
    journal.start(header())
    journal.add(a_case("a"))
    save_whole(tmp_path, "abc", _whole_run(journal, [a_case("a")]))
    save_whole(
        tmp_path, "other", {**_whole_run(journal, []), "machine_info": header()["machine_info"]}
    )
    journal.close(keep=True)
    saved, said = recover(journal.path)
    assert saved is None and "0001_abc.json" in said and not journal.path.exists()
    assert len(list(tmp_path.glob("*.json"))) == 2  # no partial copy beside the whole run


def test_a_saved_line_naming_a_missing_file_is_not_trusted(tmp_path):
    journal = Journal(tmp_path)
    journal.start(header())
    journal.add(a_case("a"))
    journal.saved_as(tmp_path / "0001_abc.json")  # never written
    journal.close(keep=True)
    saved, said = recover(journal.path)
    assert saved is not None and "no such run of it is there" in said
    assert [b["name"] for b in json.loads(saved.read_text())["benchmarks"]] == ["a"]


def test_save_whole_works_where_the_filesystem_has_no_hard_links(tmp_path, monkeypatch):
    def no_links(src, dst):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(store_module.os, "link", no_links)
    (tmp_path / "0001_taken.json").write_text("{}")
    saved = save_whole(tmp_path, "run", {"n": 1})
    assert saved.name == "0002_run.json" and json.loads(saved.read_text()) == {"n": 1}
    assert not list(tmp_path.glob("*.tmp"))


def test_a_journal_with_nothing_finished_is_removed_not_saved(tmp_path):
    journal = Journal(tmp_path)
    journal.start(header())
    journal.close(keep=True)
    saved, said = recover(journal.path)
    assert saved is None and "nothing to recover" in said and list(tmp_path.iterdir()) == []


def test_find_journals_searches_folders_and_takes_journal_files_as_given(tmp_path):
    deep = tmp_path / "machine" / "Linux-CPython-3.11-64bit"
    deep.mkdir(parents=True)
    (deep / "journal_20261127T120000_1.jsonl").write_text("")
    (deep / "0001_run.json").write_text("{}")
    assert [p.name for p in find_journals([tmp_path])] == ["journal_20261127T120000_1.jsonl"]
    assert find_journals([deep / "0001_run.json"]) == []


def test_the_recover_command_says_what_it_did(tmp_path, capsys):
    assert main([str(tmp_path)]) == 0
    assert "nothing to recover" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main([str(tmp_path / "missing")])
    assert "no such file or folder" in capsys.readouterr().err


# ---------------------------------------------------------------- hostile journals and races (issue 22)


def _dead_journal(folder: Path, *, cases=("a", "b")) -> Path:
    journal = Journal(folder)
    journal.start(header())
    for name in cases:
        journal.add(a_case(name))
    journal.close(keep=True)
    return journal.path


def _append(path: Path, *lines: str) -> None:
    with path.open("a") as fh:
        fh.write("".join(line + "\n" for line in lines))


def test_lines_beyond_reason_are_refused_one_by_one_and_every_good_case_is_kept(tmp_path):
    path = _dead_journal(tmp_path)
    _append(
        path,
        "1" * 5000,  # ValueError from json: more digits than Python converts
        "[" * 100_000,  # RecursionError
        '{"planned_cases": 1e999}',  # infinity: the report would refuse the whole run
        '{"pid": "me"}',
        json.dumps({"case": a_case("a")}),  # a case twice
        json.dumps({"case": {**a_case("c"), "stats": {"median": -1, "rounds": 3}}}),
        json.dumps({"case": a_case("d")}),
    )
    saved, said = recover(path)
    assert saved is not None, said
    run = json.loads(saved.read_text())
    assert [b["name"] for b in run["benchmarks"]] == ["a", "b", "d"]
    assert run["machine_info"]["fmnist_bench"]["run"]["planned_cases"] is None
    for words in ("cannot be read", "planned_cases is not a count", "pid is not a process id", "a second time",
                  "is not one the format takes"):  # fmt: skip
        assert words in said, said
    assert store_module.load_run(saved) is not None  # a run the report takes


def test_a_torn_header_keeps_the_finished_cases_with_the_machine_unknown(tmp_path):
    folder = tmp_path / "lab-a_AMD-EPYC_no-gpu_0123abcd" / "Linux-CPython-3.11-64bit"
    folder.mkdir(parents=True)
    path = folder / "journal_20261202T100000_4242.jsonl"
    whole = json.dumps({"header": header()})
    _append(
        path,
        '{"journal": 1, "pid": 4242}',
        whole[: len(whole) // 2],
        *(json.dumps({"case": a_case(f"c{i}")}) for i in range(12)),
    )
    saved, said = recover(path)
    assert saved is not None and "12 finished cases saved" in said and "header was lost" in said
    run = json.loads(saved.read_text())
    ours = run["machine_info"]["fmnist_bench"]
    assert len(run["benchmarks"]) == 12 and ours["run"]["header_lost"] is True
    assert (
        ours["machine_key"] == "lab-a_AMD-EPYC_no-gpu_0123abcd"
        and saved.name == "0001_recovered_partial.json"
    )


def test_another_machines_journal_is_left_where_it_is_and_named(tmp_path):
    folder = tmp_path / "mine" / "Linux-CPython-3.11-64bit"
    folder.mkdir(parents=True)
    ours = header()
    ours["machine_info"]["fmnist_bench"]["machine_key"] = "mine"
    save_whole(folder, "abc", {"machine_info": ours["machine_info"], "benchmarks": [a_case("x")]})
    journal = Journal(folder)  # copied here from another machine's folder
    theirs = header()
    theirs["machine_info"]["fmnist_bench"]["machine_key"] = "other-box"
    journal.start(theirs)
    journal.add(a_case("a"))
    journal.close(keep=True)
    for said in (
        recover(journal.path, machine_key="mine")[1],
        recover(journal.path)[1],
    ):  # a run; the command
        assert "another machine (other-box)" in said and journal.path.exists(), said
    assert len(list(folder.glob("*.json"))) == 1
    # In its own machine's folder it is recovered.
    home = tmp_path / "other-box" / "Linux-CPython-3.11-64bit"
    home.mkdir(parents=True)
    moved = home / journal.path.name
    journal.path.rename(moved)
    saved, said = recover(moved)
    assert saved is not None and saved.parent == home, said


def _recover_at(barrier, path, results):
    barrier.wait()
    saved, _said = recover(path)
    results.put(saved is not None)


def test_two_recoveries_at_once_save_one_run_every_time(tmp_path):
    import multiprocessing

    context = multiprocessing.get_context("fork")
    for trial in range(20):
        folder = tmp_path / str(trial)
        path = _dead_journal(folder)
        barrier, results = context.Barrier(2), context.Queue()
        workers = [
            context.Process(target=_recover_at, args=(barrier, path, results)) for _ in range(2)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(30)
        assert sorted(results.get(timeout=5) for _ in workers) == [False, True], trial
        assert len(list(folder.glob("*.json"))) == 1 and not path.exists(), trial


def test_a_recovery_racing_starting_runs_never_takes_a_live_journal(tmp_path):
    import multiprocessing

    context = multiprocessing.get_context("fork")
    stop = context.Event()

    def recover_forever():
        while not stop.is_set():
            for journal in find_journals([tmp_path]):
                recover(journal)

    recoverer = context.Process(target=recover_forever)
    recoverer.start()
    try:
        for _ in range(3000):  # the race was found 346 times in 62,292 tries: 0.55%
            journal = Journal(
                tmp_path
            )  # never a BlockingIOError: the journal is locked before it has its name
            assert journal.path.exists()
            journal.close(keep=False)
    finally:
        stop.set()
        recoverer.join(30)
    assert not list(tmp_path.glob("*.json")) and not list(tmp_path.glob(".opening-*"))


def test_a_kill_between_the_link_and_the_saved_line_leaves_one_run(tmp_path):
    script = f"""
import os, signal, sys
sys.path.insert(0, {str(REPO)!r})
from pathlib import Path
from bench.format.journal import Journal
from bench.format.store import save_whole
from tests.test_journal import a_case, header
journal = Journal(Path({str(tmp_path)!r}))
journal.start(header())
journal.add(a_case("a"))
info = header()["machine_info"]
info["fmnist_bench"]["run"] = {{"complete": True, "journal": journal.path.name}}
save_whole(journal.folder, "abc", {{"machine_info": info, "benchmarks": [a_case("a")]}})
os.kill(os.getpid(), signal.SIGKILL)  # before journal.saved_as(...)
"""
    for _trial in range(3):
        result = subprocess.run(
            [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True
        )
        assert result.returncode == -9, result.stderr
    journals = find_journals([tmp_path])
    assert len(journals) == 3 and len(list(tmp_path.glob("*.json"))) == 3
    for journal in journals:
        saved, said = recover(journal)
        assert saved is None and "was saved as" in said
    assert len(list(tmp_path.glob("*.json"))) == 3 and not find_journals([tmp_path])


def test_an_unreadable_journal_is_named_not_a_crash(tmp_path, monkeypatch, capsys):
    from bench.report import cli

    path = _dead_journal(tmp_path / "runs")
    real_open = Path.open

    def refuse(self, *args, **kw):
        if self.name == path.name:
            raise PermissionError(13, "Permission denied")
        return real_open(self, *args, **kw)

    monkeypatch.setattr(Path, "open", refuse)
    assert journal_module.journal_state(path) == "cannot be read: Permission denied"
    (tmp_path / "runs" / "run.json").write_text(
        (REPO / "tests/fixtures/cpu_quick_run.json").read_text()
    )
    assert cli.main([str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 0
    assert "cannot be read: Permission denied: left alone" in capsys.readouterr().err


def test_a_fifo_named_like_a_run_beside_a_dead_journal_does_not_hang_recovery(tmp_path):
    path = _dead_journal(tmp_path)
    os.mkfifo(tmp_path / "0001_x.json")
    saved, said = recover(path)  # would block on opening the FIFO
    assert saved is not None and saved.name == "0002_abc_20261127_120000_partial.json", said


def test_crafted_fields_never_cost_the_other_cases_or_make_a_run_the_report_refuses(tmp_path):
    path = _dead_journal(tmp_path)
    _append(
        path,
        json.dumps(
            {"case": {**a_case("e"), "fullname": [1]}, "finished": 5}
        ),  # unhashable name; a number as a date
        json.dumps({"skipped": 5, "failed": {"name": "f", "reason": "boom"}}),
        json.dumps({"header": {**header(), "commit_info": "x"}}),
    )
    saved, said = recover(path)
    assert saved is not None, said
    run = json.loads(saved.read_text())
    assert [b["name"] for b in run["benchmarks"]] == ["a", "b", "e"]
    ours = run["machine_info"]["fmnist_bench"]["run"]
    assert ours["skipped"] == [] and ours["failed"] == [{"name": "f", "reason": "boom"}]
    assert store_module.load_run(saved) is not None  # commit_info and datetime made readable


# ---------------------------------------------------------------- a disk that fills during a run (issue 32)


def test_a_line_the_disk_cannot_take_is_cut_off_and_the_journal_says_how_the_run_ended(tmp_path):
    import resource

    journal = Journal(tmp_path)
    journal.start(header())
    journal.add(a_case("a"))
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    # As `ulimit -f` or a full disk: the next line gets part of the way (Python ignores SIGXFSZ: EFBIG).
    resource.setrlimit(resource.RLIMIT_FSIZE, (journal.path.stat().st_size + 100, hard))
    try:
        with pytest.raises(JournalError, match="File too large"):
            journal.add(a_case("b"))
        with pytest.raises(JournalError):  # nothing after a line that is missing
            journal.note({"planned_cases": 3})
        journal.ended(
            "stopped: its journal could not be written (File too large)"
        )  # in place: no room needed
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    journal.close(keep=True)
    assert journal.path.read_bytes().endswith(
        b"}\n"
    )  # no torn line for a later one to be glued onto
    _head, cases, noted, problems = read_journal(journal.path)
    assert [c["case"]["name"] for c in cases] == ["a"] and not problems and journal.cases == 1
    saved, said = recover(journal.path)
    ended = json.loads(saved.read_text())["machine_info"]["fmnist_bench"]["run"]["ended"]
    assert (
        ended
        == "stopped: its journal could not be written (File too large); recovered from its journal"
    )


def test_a_whole_record_glued_after_a_torn_one_is_kept(tmp_path):
    path = _dead_journal(tmp_path, cases=("a",))
    with path.open(
        "a"
    ) as fh:  # a line torn by an older writer, the next one written straight after it
        fh.write(
            '{"case": {"name": "torn", "stats": {"median": 0.'
            + json.dumps({"case": a_case("b")})
            + "\n"
        )
    saved, said = recover(path)
    run = json.loads(saved.read_text())
    assert [b["name"] for b in run["benchmarks"]] == ["a", "b"]
    assert "begins with a torn record (skipped), then a whole one (read)" in said
    # Nothing said how it ended: killed, as before.
    assert run["machine_info"]["fmnist_bench"]["run"]["ended"].startswith(
        "killed: the process ended without saving"
    )
