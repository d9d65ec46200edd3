"""Where a run is saved and what is saved with it: the machine's folder, the journal, a save written whole,
and the machine_info fmnist-bench adds (through bench/record/format.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.measure.machine import torch_info
from bench.measure.telemetry import PERIOD_S
from bench.record import format as fmt
from bench.record.format import fmnist_bench_info
from bench.record.journal import Journal, JournalError, find_journals, recover
from bench.record.store import is_reference, machine_runs, save_whole, write_whole
from bench.run import pbench
from bench.run.estimate import Profile

__all__ = [
    "after_save",
    "allocator_said",
    "before_save",
    "load_said",
    "open_outputs",
    "route_storage",
    "session_start",
    "update_machine_info",
]


def route_storage(config: pytest.Config, key: str) -> None:
    """Saved runs go to results/<machine key>/ unless --benchmark-storage says otherwise.

    One folder per machine, so results/ folders from many machines merge by copying.
    pytest-benchmark reads these options in its own pytest_configure, which runs last.
    """
    opt = config.option
    if opt.benchmark_storage == pbench.DEFAULT_STORAGE:
        opt.benchmark_storage = f"file://{config.rootpath / 'results' / key}"
    opt.benchmark_save_data = (
        True  # keep every round's time: the report computes percentiles from them
    )


def open_outputs(config: pytest.Config, suite) -> None:
    """Before any case: prove that where results go can be written, and start the journal there."""
    opt = config.option
    json_path = opt.benchmark_json
    if isinstance(json_path, (str, os.PathLike)):
        parent = Path(json_path).resolve().parent
        if not parent.is_dir() or not os.access(parent, os.W_OK):
            raise pytest.UsageError(
                f"--benchmark-json: cannot write {json_path}: {parent} is not a writable folder"
            )
    folder = pbench.storage_folder(opt.benchmark_storage)
    if folder is None:  # elasticsearch: pytest-benchmark's own save, without a journal
        return
    runs = pbench.machine_folder(folder)
    if is_reference(runs):
        raise pytest.UsageError(
            f"--benchmark-storage: {folder} is a folder of the project's reference runs: a run of this machine is "
            "saved apart from them (the default, results/<machine>/, or a folder of your own)"
        )
    disabled = opt.benchmark_disable and not opt.benchmark_enable  # as pytest-benchmark decides
    if (opt.benchmark_save or opt.benchmark_autosave) and not disabled and not opt.collectonly:
        try:
            suite.journal = Journal(runs)
        except JournalError as exc:
            raise pytest.UsageError(f"--benchmark-storage: {exc}") from None
        suite.run.journal = suite.journal.path.name
        # A killed run of this machine left its journal: save what it finished before going on.
        # Another machine's journal copied here stays where it is; one that cannot be read is named,
        # never this run's end.
        for journal in find_journals([runs]):
            if journal != suite.journal.path:
                try:
                    said = recover(journal, machine_key=suite.machine["machine_key"])[1]
                except Exception as exc:  # noqa: BLE001 - one journal's problem, named; the run goes on
                    said = f"{journal}: could not recover: {type(exc).__name__}: {exc}"
                suite.notes.append(f"fmnist-bench: an earlier run was killed: {said}")
    # Earlier runs of this machine tell how long this one will take (all of them; see
    # Profile.from_runs). A folder given with --benchmark-storage may hold runs of other names: only
    # this machine's teach it.
    key = suite.machine["machine_key"]
    earlier = [
        (name, run)
        for name, run in machine_runs(runs)
        if fmt.fmnist_bench(run).get("machine_key") in (key, None)
    ]
    if earlier:
        suite.profile = Profile.from_runs(earlier)
        suite.profile_note = (
            f"from {len(earlier)} earlier run{'s' if len(earlier) != 1 else ''} of this machine"
        )


def session_start(session: pytest.Session, suite) -> None:
    """Save through the suite (whole, numbered under a lock, named partial when incomplete) and start the journal."""
    config = session.config
    if pbench.session_of(config) is None:
        return
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and reporter.verbosity <= 0:
        reporter.showfspath = False  # a line per case says more than a file name and its dots
    if suite.journal is not None:
        folder = suite.journal.folder

        def save(output_json: dict, save_name: str) -> None:
            if (
                not suite.run.complete
            ):  # named as a recovered run is, so `ls` tells it from a whole one
                save_name = f"{save_name}_partial"
            try:
                path = save_whole(folder, save_name, output_json)
            except OSError as exc:
                suite.save_errors.append(f"could not save the run in {folder}: {exc}")
                suite.save_failed = exc.strerror or str(exc)
                return
            suite.saved = True
            try:
                suite.journal.saved_as(
                    path
                )  # should the journal outlive this process, recovery knows
            except (
                JournalError
            ):  # (a full disk) the run is saved; its journal goes next, and names it anyway
                pass
            pbench.say_saved(config, f"Saved benchmark data in: {path}")

        pbench.save_through(config, save)

    def write_json(path: Path, output_json: dict) -> None:
        try:
            write_whole(path, pbench.dumps(output_json, ensure_ascii=True, indent=4).encode())
        except OSError as exc:
            suite.save_errors.append(f"could not write {path}: {exc}")
            return
        pbench.say_saved(config, f"Wrote benchmark data in: {path}", purple=True)

    pbench.write_json_through(config, write_json)
    # A journal that cannot take its header stops the run before it collects a case
    # (Suite.to_journal).
    suite.to_journal(lambda journal: journal.start(pbench.run_header(config)))


def before_save(session: pytest.Session, suite, exitstatus) -> None:
    """How the run ended, and only the cases that finished and passed their checks kept for the save."""
    suite.hold_signals()  # from here a stop signal is ignored: the save is not cut short
    suite.load.stop()
    pbench.drop_unstarted(suite.current)
    if suite.run.ended is None and exitstatus == pytest.ExitCode.INTERRUPTED:
        suite.run.ended = "interrupted"
    elif suite.run.ended is None and (session.shouldstop or session.shouldfail):
        suite.run.ended = f"stopped early: {session.shouldstop or session.shouldfail}"
    # A case cut short (no rounds, or fewer than planned) or one that failed would be saved as if
    # measured.
    finished = {id(s) for s in suite.run.finished}
    pbench.keep_benchmarks(session.config, lambda b: id(b) in finished, suite.bench_ids)


def after_save(session: pytest.Session, suite) -> None:
    """The journal goes once the run is saved; kept, and said, when it is not."""
    journal = suite.journal
    if suite.journal_failed is not None:
        saved = (
            "the cases it finished are saved"
            if suite.saved
            else "the cases it finished are not saved"
        )
        stopped = (
            f"The run stopped: its journal could not be written ({suite.journal_failed}); {saved}"
        )
        suite.save_errors.insert(0, stopped)
    if journal is not None:
        kept = journal.cases > 0 and not suite.saved
        if kept:  # recovery reads how it ended, rather than calling it killed
            how = suite.run.ended or "its cases finished"
            journal.ended(
                f"{how}; its save failed ({suite.save_failed})" if suite.save_failed else how
            )
        journal.close(keep=kept)
        if kept:
            suite.save_errors.append(
                f"The {journal.cases} finished cases are kept in {journal.path}; once the folder can take them, "
                f"`python -m bench recover {journal.folder}` saves them as a run"
            )
    if suite.save_errors:
        suite.write("fmnist-bench: " + ". ".join(suite.save_errors) + ".")
        if session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
            session.exitstatus = pytest.ExitCode.INTERNAL_ERROR


def update_machine_info(suite, machine_info: dict) -> None:
    """What fmnist-bench adds to pytest-benchmark's machine_info: torch, NVML's GPUs, the data, and its own record."""
    plan, machine = suite.plan, suite.machine
    machine_info["torch"] = torch_info()
    machine_info["torch"]["threads"] = (
        plan.default_threads
    )  # torch's own choice, not the last case's
    machine_info["nvml"] = machine["nvml"]
    machine_info["gpus"] = machine["gpus"]
    machine_info["dataset"] = {
        "name": plan.dataset_name,
        "requested": plan.dataset,
        "root": plan.data_root,
        # The images each split really held in this run (null: no case of this run used it).
        "train_images": suite.data_used.get("train"),
        "test_images": suite.data_used.get("test"),
        "files": suite.data_files,  # the real files' own counts, when the real set was used
    }
    machine_info["fmnist_bench"] = fmnist_bench_info(
        machine_key=machine["machine_key"],
        machine_name=machine["machine_name"],
        plan=plan.summary(),
        budget_options=suite.budget_source,
        telemetry_period_s=PERIOD_S if suite.telemetry else None,
        host_allocator=suite.host_allocator,
        run=suite.run.record(),
        machine_id=machine["machine_id"],
        load=suite.load.record(),
    )


def load_said(before: tuple[float, int] | None) -> str:
    """The header's words for how busy the machine was before the first case (Linux's 1-minute load average)."""
    if before is None:
        return "fmnist-bench: machine load before the run: not readable here (no /proc/loadavg)"
    one, cpus = before
    words = f"fmnist-bench: machine load before the run: {one:.2f} on {cpus} CPU{'s' if cpus != 1 else ''} (1-minute average)"
    # This process counts for at most one CPU of the average; the rest over half the CPUs is other
    # work. The run goes on: it measures that work over the whole run and flags the cases it touches
    # (bench/measure/load.py).
    if one - 1 >= cpus / 2:
        words += "; other work is running: the run measures how much and flags the cases it touches"
    return words


def allocator_said(record: dict) -> str:
    """The header's words for the C library allocator the run is held to."""
    preload = f"; LD_PRELOAD={record['preload']}" if record.get("preload") else ""
    if record.get("mode") == "keep":
        how = "" if record.get("how") == "mmap threshold" else f" ({record.get('how')})"
        return (
            f"{record['library']}, keeping freed blocks up to {record['keep_bytes'] >> 20:,} MiB for reuse{how} "
            f"(--host-allocator keep){preload}"
        )
    why = f": {record['reason']}" if record.get("reason") else " (--host-allocator default)"
    return (
        f"{record.get('library', 'unknown')} as it is{why}; CPU cases' page faults depend on the cases before them"
        + preload
    )
