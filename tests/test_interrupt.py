"""Nothing finished is lost: real runs of the suite stopped by signals, crashes and a full disk, in subprocesses."""

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

from bench.analysis.rows import load_frame
from bench.format.journal import find_journals
from tests import harness

REPO = Path(__file__).resolve().parent.parent

# A pytest plugin for the run under test: it acts at a chosen moment of the run.
# FMNIST_TEST_CALL=N: on the Nth call of the resident epoch (with --quick and two resident
# cases: 1 = case 1's warm-up, 2 = its timed round, 3 to 8 = the count of its pipeline's work
# (fmnist_model/work.py: three short epochs, each run once before it is counted; once a run for the
# two: they count the same pipeline), 9 = case 2's warm-up, 10 = its round),
# FMNIST_TEST_AFTER=N: once N cases have finished (between cases);
# FMNIST_TEST_DO: the signal to send to itself (TERM, INT, KILL), or "raise" (the epoch crashes),
# or "nan" (the epoch returns a non-finite loss: a failing check), or "fill" (no file in the run's folder may
# grow any more: the disk is full; FMNIST_TEST_STORE names the folder);
# FMNIST_TEST_DISK=full: every fsync fails as on a full disk (the journal does not fsync; a save does);
# FMNIST_TEST_DURING_SAVE=TERM or INT: that signal arrives while the run is being saved.
PLUGIN = textwrap.dedent(
    """
    import math, os, signal
    import pytest

    DO = os.environ.get("FMNIST_TEST_DO", "")
    CALL = int(os.environ.get("FMNIST_TEST_CALL", "0"))
    AFTER = int(os.environ.get("FMNIST_TEST_AFTER", "0"))
    calls = finished = seed_calls = 0

    def act():
        if DO == "fill":  # the disk fills: no file may grow past the journal's size now (as `ulimit -f` does)
            import glob, resource
            (journal,) = glob.glob(os.path.join(os.environ["FMNIST_TEST_STORE"], "*", "journal_*.jsonl"))
            resource.setrlimit(resource.RLIMIT_FSIZE, (os.path.getsize(journal) + 100, resource.RLIM_INFINITY))
        if DO in ("TERM", "INT", "KILL"):
            os.kill(os.getpid(), getattr(signal, "SIG" + DO))
        if DO == "raise":
            raise RuntimeError("the epoch crashed on purpose")

    def pytest_sessionstart(session):
        import bench.format.journal as journal
        import fmnist_model.loops as train

        if os.environ.get("FMNIST_TEST_DISK") == "full":
            def fsync(fd):
                raise OSError(28, "No space left on device")
            os.fsync = fsync
        during = os.environ.get("FMNIST_TEST_DURING_SAVE")
        if during:
            real_save = journal.save_whole

            def save_whole(*args, **kwargs):
                os.kill(os.getpid(), getattr(signal, "SIG" + during))
                return real_save(*args, **kwargs)
            import sys
            sys.modules["bench.run.saving"].save_whole = save_whole  # what the plugin's save calls
        from fmnist_model.loops import EpochResult
        real = train.train_epoch_resident

        def epoch(*args, **kwargs):
            global calls
            calls += 1
            if calls == CALL:
                act()
                if DO == "nan":
                    return EpochResult(float("nan"), 0, 1)
            return real(*args, **kwargs)

        train.train_epoch_resident = epoch
        real_seed = train.train_epoch_seed

        def seed_epoch(*args, **kwargs):
            # FMNIST_TEST_GROUP_CALL=N: on the Nth DataLoader epoch, SIGTERM to the whole process
            # group, as `timeout` sends it: the DataLoader's worker processes get it too.
            global seed_calls
            seed_calls += 1
            if seed_calls == int(os.environ.get("FMNIST_TEST_GROUP_CALL", "0")):
                # From another process, as from `timeout`: a worker told to stop by its own parent
                # exits quietly, one told by anyone else dies of the signal.
                import subprocess, time
                subprocess.run(["kill", "-TERM", "--", f"-{os.getpgid(0)}"], check=False)
                time.sleep(10)  # the signal's handler raises here
            return real_seed(*args, **kwargs)

        train.train_epoch_seed = seed_epoch

    @pytest.fixture(autouse=True)
    def _teardown_that_fails(request):
        yield
        if os.environ.get("FMNIST_TEST_TEARDOWN") and request.node.name.endswith(os.environ["FMNIST_TEST_TEARDOWN"]):
            raise RuntimeError("teardown failed on purpose")

    def pytest_runtest_logfinish(nodeid, location):
        global finished
        finished += 1
        if finished == AFTER:
            act()
    """
)


def run_suite(tmp_path, *args, env=None, preexec_fn=None):
    (tmp_path / "sigplugin.py").write_text(PLUGIN)
    environment = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}", **(env or {})}
    return harness.run(
        [sys.executable, "-m", "pytest", "bench", "-p", "no:cacheprovider", "-p", "sigplugin", "--quick",
         "--devices", "cpu", "-k", "train and resident", "--data-root", str(tmp_path / "no-data"),
         "--benchmark-autosave", f"--benchmark-storage=file://{tmp_path / 'store'}", *args],
        cwd=REPO, env=environment, capture_output=True, text=True, timeout=300, preexec_fn=preexec_fn,
    )  # fmt: skip


def saved_runs(tmp_path):
    return sorted((tmp_path / "store").glob("*/[0-9][0-9][0-9][0-9]_*.json"))


def the_run(tmp_path):
    runs = saved_runs(tmp_path)
    assert len(runs) == 1, runs
    return runs[0], json.loads(runs[0].read_text())


@pytest.mark.parametrize("sig", ["TERM", "INT"])
@pytest.mark.parametrize(
    "moment",
    [{"FMNIST_TEST_CALL": "9"}, {"FMNIST_TEST_CALL": "10"}, {"FMNIST_TEST_AFTER": "1"}],
    ids=["in-a-warmup", "in-a-timed-round", "between-cases"],
)
def test_a_stopped_run_saves_every_finished_case_and_drops_the_one_cut_short(tmp_path, sig, moment):
    result = run_suite(tmp_path, env={"FMNIST_TEST_DO": sig, **moment})
    assert result.returncode == pytest.ExitCode.INTERRUPTED, (
        result.stdout[-3000:] + result.stderr[-3000:]
    )
    path, run = the_run(tmp_path)
    assert path.name.endswith("_partial.json")  # named as what it is
    # Case 1 finished; case 2 was cut short (or never started) and is not saved as if measured.
    assert [b["name"] for b in run["benchmarks"]] == [
        "test_train_epoch[cpu-2t-100-resident]".replace("2t", f"{_threads(run)}t")
    ]
    assert (
        run["benchmarks"][0]["stats"]["rounds"] == 1
        and run["benchmarks"][0]["extra_info"]["loss"] > 0
    )
    ours = run["machine_info"]["fmnist_bench"]["run"]
    assert ours["complete"] is False and ours["finished_cases"] == 1 and ours["planned_cases"] == 2
    assert ours["ended"].startswith(f"stopped by SIG{sig}")
    assert not find_journals([tmp_path / "store"])  # the run was saved: its journal is gone
    assert "the run is incomplete" in " ".join(
        result.stdout.split()
    )  # the end-of-run summary says so
    assert (
        "fixture was not used" not in result.stdout + result.stderr
    )  # a cut-short case is dropped quietly
    frame = load_frame([path])  # the report reads it
    assert len(frame) == 1 and frame["family"].tolist() == ["train"]


def _threads(run):
    return run["machine_info"]["torch"]["threads"]


def test_sigterm_from_outside_while_running_saves_what_finished(tmp_path):
    (tmp_path / "sigplugin.py").write_text("")
    args = [sys.executable, "-m", "pytest", "bench", "-p", "no:cacheprovider", "--quick", "--devices", "cpu",
            "--data-root", str(tmp_path / "no-data"), "--benchmark-autosave",
            f"--benchmark-storage=file://{tmp_path / 'store'}"]  # fmt: skip
    proc = harness.popen(
        args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("[ 3/"):  # three cases have finished: stop it as `timeout` would
            proc.send_signal(signal.SIGTERM)
            break
    out = "".join(seen) + proc.stdout.read()
    assert proc.wait(timeout=120) == pytest.ExitCode.INTERRUPTED, out[-3000:]
    _path, run = the_run(tmp_path)
    ours = run["machine_info"]["fmnist_bench"]["run"]
    assert ours["complete"] is False and ours["ended"] == "stopped by SIGTERM"
    assert 3 <= len(run["benchmarks"]) == ours["finished_cases"] < ours["planned_cases"]
    assert all(b["stats"]["rounds"] >= 1 for b in run["benchmarks"])


def test_sigterm_to_the_process_group_in_a_case_with_dataloader_workers_saves_what_finished(
    tmp_path,
):
    # `timeout` signals the run's whole process group: the tuned loader's workers die with it,
    # and torch's SIGCHLD handler raises for each dead worker. On the H100 host a run stopped
    # so during the loader case saved nothing; here the run must still save and exit 2.
    result = run_suite(
        tmp_path,
        "-k",
        "(train and loader) or (transfer and h2h and float32)",
        env={"FMNIST_TEST_GROUP_CALL": "2"},  # the loader case's timed epoch (1: its warm-up)
        preexec_fn=os.setsid,  # its own process group, so the signal reaches no one else
    )
    out = result.stdout + result.stderr
    assert result.returncode == pytest.ExitCode.INTERRUPTED, out[-3000:]
    assert "is killed by signal" not in out, out[-3000:]
    _path, run = the_run(tmp_path)
    ours = run["machine_info"]["fmnist_bench"]["run"]
    assert (
        ours["ended"] == "stopped by SIGTERM"
        and ours["finished_cases"] == len(run["benchmarks"]) >= 1
    )
    assert all(b["group"] == "transfer" for b in run["benchmarks"])


def test_a_killed_run_leaves_a_journal_that_recover_and_the_next_run_turn_into_a_saved_run(
    tmp_path,
):
    result = run_suite(tmp_path, env={"FMNIST_TEST_DO": "KILL", "FMNIST_TEST_AFTER": "1"})
    assert result.returncode == -signal.SIGKILL
    assert not saved_runs(tmp_path)  # nothing was saved...
    (journal,) = find_journals([tmp_path / "store"])  # ...but the finished case is on disk
    recovered = subprocess.run(
        [sys.executable, "-m", "bench", "recover", str(tmp_path / "store")],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert recovered.returncode == 0, recovered.stderr
    assert "1 finished case saved as" in recovered.stdout
    path, run = the_run(tmp_path)
    assert path.name.endswith("_partial.json") and len(run["benchmarks"]) == 1
    assert run["machine_info"]["fmnist_bench"]["run"]["complete"] is False
    assert run["machine_info"]["fmnist_bench"]["run"]["planned_cases"] == 2
    dataset = run["machine_info"]["dataset"]  # what the finished case had, from the journal
    assert dataset["train_images"] == 2000 and dataset["test_images"] is None
    assert run["machine_info"]["fmnist_bench"]["run"]["ended"].startswith("killed")
    assert not journal.exists()
    assert len(load_frame([path])) == 1

    # Killed again; this time the next run of the suite recovers it before it starts.
    path.unlink()
    run_suite(tmp_path, env={"FMNIST_TEST_DO": "KILL", "FMNIST_TEST_AFTER": "1"})
    again = run_suite(tmp_path)
    assert again.returncode == 0, again.stdout[-3000:]
    assert (
        "an earlier run was killed" in again.stdout and "1 finished case saved as" in again.stdout
    )
    assert len(saved_runs(tmp_path)) == 2 and not find_journals([tmp_path / "store"])


def test_a_crashing_case_is_dropped_the_others_saved_and_the_run_marked_incomplete(tmp_path):
    result = run_suite(tmp_path, env={"FMNIST_TEST_DO": "raise", "FMNIST_TEST_CALL": "2"})
    assert result.returncode == pytest.ExitCode.TESTS_FAILED
    _path, run = the_run(tmp_path)
    assert [b["params"]["batch_size"] for b in run["benchmarks"]] == [1000]
    ours = run["machine_info"]["fmnist_bench"]["run"]
    assert ours["complete"] is False
    assert ours["failed"][0]["name"].endswith("-100-resident]")
    assert "the epoch crashed on purpose" in ours["failed"][0]["reason"]


def test_a_teardown_that_fails_after_the_case_finished_is_said_in_the_saved_run(tmp_path):
    result = run_suite(tmp_path, env={"FMNIST_TEST_TEARDOWN": "-100-resident]"})
    assert result.returncode == pytest.ExitCode.TESTS_FAILED
    _path, run = the_run(tmp_path)
    assert len(run["benchmarks"]) == 2  # both were measured before
    ours = run["machine_info"]["fmnist_bench"]["run"]
    assert ours["complete"] is False
    (failed,) = ours["failed"]
    assert failed["when"] == "teardown" and "teardown failed on purpose" in failed["reason"]
    assert failed["figure"].startswith("kept")


def test_a_case_whose_check_fails_leaves_no_figure_behind(tmp_path):
    # The epoch's timed round returns a NaN loss: the case fails after pytest-benchmark has
    # its stats; they must not be saved as a result.
    result = run_suite(tmp_path, env={"FMNIST_TEST_DO": "nan", "FMNIST_TEST_CALL": "2"})
    assert result.returncode == pytest.ExitCode.TESTS_FAILED
    path, run = the_run(tmp_path)
    assert [b["params"]["batch_size"] for b in run["benchmarks"]] == [1000]
    assert "non-finite loss" in run["machine_info"]["fmnist_bench"]["run"]["failed"][0]["reason"]
    frame = load_frame([path])  # nor in the report, which says the run is partial
    assert frame["batch_size"].tolist() == [1000] and frame["partial"].all()


def test_a_save_that_fails_keeps_the_journal_leaves_no_truncated_file_and_fails_the_run(tmp_path):
    result = run_suite(tmp_path, env={"FMNIST_TEST_DISK": "full"})
    assert result.returncode == pytest.ExitCode.INTERNAL_ERROR, (
        result.stdout[-3000:] + result.stderr[-3000:]
    )
    assert "could not save the run" in result.stdout and "No space left on device" in result.stdout
    assert "python -m bench recover" in result.stdout
    assert not saved_runs(tmp_path)
    assert not list((tmp_path / "store").glob("*/.*.tmp"))  # no half-written file either
    (journal,) = find_journals([tmp_path / "store"])
    recovered = subprocess.run(
        [sys.executable, "-m", "bench", "recover", str(journal)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    _path, run = the_run(tmp_path)
    assert len(run["benchmarks"]) == 2
    assert (
        run["machine_info"]["fmnist_bench"]["run"]["planned_cases"] == 2
    )  # from the journal, not the start


def test_a_disk_that_fills_during_a_run_stops_it_cleanly_and_every_case_whose_line_printed_is_recovered(
    tmp_path,
):
    """The issue's probe, `ulimit -f` partway through a run: it ended in 95 INTERNALERROR lines, and recovery
    called it killed."""
    store = tmp_path / "store"
    result = run_suite(
        tmp_path,
        env={"FMNIST_TEST_DO": "fill", "FMNIST_TEST_AFTER": "1", "FMNIST_TEST_STORE": str(store)},
    )
    said = result.stdout + result.stderr
    assert result.returncode == pytest.ExitCode.INTERRUPTED and "INTERNALERROR" not in said, said[
        -3000:
    ]
    # (a line wider than a terminal's 100 columns is folded: read as one text)
    out = " ".join(result.stdout.split())
    assert (
        "was measured, but its journal line could not be written ([Errno 27] File too large" in out
    )
    assert "The run stopped: its journal could not be written" in out and "bench recover" in out
    printed = [
        line for line in result.stdout.splitlines() if re.match(r"\[ *[0-9]+/2\]", line)
    ]  # a case's line
    assert len(printed) == 1 and not saved_runs(tmp_path)  # (the save could not grow a file either)
    (journal,) = find_journals([store])
    command = [sys.executable, "-m", "bench", "recover", str(store)]
    recovered = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert recovered.returncode == 0 and "not complete JSON" not in recovered.stdout, (
        recovered.stdout
    )
    _path, run = the_run(tmp_path)
    assert len(run["benchmarks"]) == len(printed)
    ended = run["machine_info"]["fmnist_bench"]["run"]["ended"]
    assert ended.startswith(
        "stopped: its journal could not be written (File too large); its save failed"
    ) and ("killed" not in ended)


@pytest.mark.parametrize("sig", ["TERM", "INT"])
def test_a_signal_during_the_save_neither_cuts_it_short_nor_saves_twice(tmp_path, sig):
    result = run_suite(tmp_path, env={"FMNIST_TEST_DURING_SAVE": sig})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    path, run = the_run(tmp_path)
    assert (
        run["machine_info"]["fmnist_bench"]["run"]["complete"] is True
        and len(run["benchmarks"]) == 2
    )
    assert not path.name.endswith("_partial.json")
    assert not find_journals([tmp_path / "store"])  # nothing left for a later run to save again


@pytest.mark.parametrize("make", ["file", "missing-parent-file"])
def test_a_storage_folder_that_cannot_be_written_is_a_usage_error_before_any_case(tmp_path, make):
    blocker = tmp_path / "store"
    blocker.write_text("a file where the runs should go")
    storage = blocker if make == "file" else blocker / "deeper"
    result = harness.run(
        [sys.executable, "-m", "pytest", "bench", "-p", "no:cacheprovider", "--quick", "--devices", "cpu",
         "--benchmark-autosave", f"--benchmark-storage=file://{storage}"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == pytest.ExitCode.USAGE_ERROR
    assert "--benchmark-storage: cannot write to" in result.stderr and str(blocker) in result.stderr
    assert "[1/" not in result.stdout  # no case ran


def test_an_interrupt_whose_traceback_has_an_entry_without_a_line_is_still_reported():
    # What a stop signal can leave on Python 3.11: a frame caught at its start has tb_lineno None,
    # and pytest's report of the interrupt failed on it (exit 1 and pytest's own traceback).
    from bench.run.state import Interrupted, drop_lineless_entries

    def raise_it():
        raise Interrupted("SIGTERM")

    try:
        try:
            raise ValueError("the cause, also with a lineless entry")
        except ValueError as cause:
            cause.__traceback__ = types.TracebackType(
                cause.__traceback__, sys._getframe(), 10**6, -1
            )
            raise_it()
    except Interrupted as exc:
        lineless = types.TracebackType(exc.__traceback__.tb_next, sys._getframe(), 10**6, -1)
        exc.__traceback__.tb_next = lineless  # between the test's frame and raise_it's
        excinfo = pytest.ExceptionInfo.from_exception(exc)
    assert lineless.tb_lineno is None
    with pytest.raises(TypeError):  # what pytest's terminal reporter met
        excinfo.getrepr(funcargs=True)
    drop_lineless_entries(excinfo)
    text = str(excinfo.getrepr(funcargs=True))
    assert "stopped by SIGTERM" in text and "raise_it" in text and "the cause" in text
    assert all(entry.lineno is not None for entry in excinfo.traceback)


@pytest.mark.skipif(not hasattr(signal, "SIGCHLD"), reason="no SIGCHLD here")
@pytest.mark.parametrize("stopped", [False, True])
def test_sigchld_is_put_back_after_a_whole_run_but_not_after_a_stopped_one(stopped):
    from bench.run.state import RunState, install_stop_signals

    def torchs(signum, frame):  # stands for torch's DataLoader handler
        raise AssertionError("not to be called here")

    before = signal.signal(signal.SIGCHLD, torchs)
    try:
        run = RunState()
        hold, restore = install_stop_signals(run)
        if stopped:
            run.ended = "stopped by SIGTERM"
        hold()  # the save: children are let go quietly
        assert signal.getsignal(signal.SIGCHLD) == signal.SIG_DFL
        restore()
        assert signal.getsignal(signal.SIGCHLD) == (signal.SIG_DFL if stopped else torchs)
    finally:
        signal.signal(signal.SIGCHLD, before)


def test_a_journal_with_lines_beyond_reason_is_recovered_by_the_next_run_keeping_its_cases(
    tmp_path,
):
    result = run_suite(tmp_path, env={"FMNIST_TEST_DO": "KILL", "FMNIST_TEST_AFTER": "1"})
    assert result.returncode == -signal.SIGKILL
    (journal,) = find_journals([tmp_path / "store"])
    with journal.open(
        "a"
    ) as fh:  # crafted: a 5,000-digit number, 100,000 nested brackets, an infinite count
        fh.write("1" * 5000 + "\n" + "[" * 100_000 + "\n" + '{"planned_cases": 1e999}\n')
    again = run_suite(tmp_path)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "1 finished case saved as" in again.stdout and "cannot be read" in again.stdout
    recovered = [p for p in saved_runs(tmp_path) if p.name.endswith("_partial.json")]
    assert (
        len(recovered) == 1 and len(load_frame(recovered)) == 1
    )  # the case kept, a run the report takes
    assert not find_journals([tmp_path / "store"])
