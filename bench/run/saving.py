"""Where a run is saved and what is saved with it: the machine's folder, the journal, a save written whole,
and the machine_info fmnist-bench adds (through bench/format/records.py)."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bench.analysis.words import WIDTH
from bench.format import records as fmt
from bench.format.journal import Journal, JournalError, find_journals, recover
from bench.format.records import fmnist_bench_info
from bench.format.store import is_reference, machine_runs, save_whole, write_whole
from bench.measure.machine import torch_info
from bench.measure.telemetry import PERIOD_S
from bench.run import pbench
from bench.run.context import RunContext
from bench.run.estimate import Profile
from bench.run.state import RunState

__all__ = [
    "Opened",
    "Outputs",
    "allocator_said",
    "keep_finished",
    "load_said",
    "left_empty",
    "route_storage",
    "update_machine_info",
]


def route_storage(config: pytest.Config, key: str) -> Path | None:
    """Saved runs go to results/<machine key>/ unless --benchmark-storage says otherwise.

    One folder per machine, so results/ folders from many machines merge by copying.
    pytest-benchmark reads these options in its own pytest_configure, which runs last, and makes
    the folder there whatever the session does: returns that folder where it did not exist yet, so
    that a session that saved nothing in it (--collect-only) can take it away (left_empty).
    """
    opt = config.option
    made = None
    if opt.benchmark_storage == pbench.DEFAULT_STORAGE:
        folder = config.rootpath / "results" / key
        opt.benchmark_storage = f"file://{folder}"
        made = None if folder.exists() else folder
    # keep every round's time: the report computes percentiles from them
    opt.benchmark_save_data = True
    return made


def left_empty(folder: Path | None) -> None:
    """Take away the machine's results folder this session made where it holds nothing (a session that collected
    its cases and ran none, or stopped before its first case, its journal's folder left empty): an empty
    folder is no machine's results. Only folders are removed, each only when empty."""
    if folder is None or not folder.is_dir() or folder.is_symlink():
        return
    inner = sorted(
        (p for p in folder.rglob("*") if p.is_dir() and not p.is_symlink()), reverse=True
    )
    for path in [*inner, folder]:  # (deepest first)
        with contextlib.suppress(OSError):  # (not empty, or gone: it stays as it is)
            path.rmdir()


@dataclass
class Opened:
    """What the saving side found before the first case: journals of killed runs it saved, and the earlier runs
    of this machine the estimate learns from."""

    notes: list[str] = field(default_factory=list)
    profile: Profile = field(default_factory=Profile)
    profile_note: str = "no earlier run of this machine"


class Outputs:
    """Where the run is saved, and what became of it: the journal of its finished cases, the save (whole, numbered
    under a lock, named partial when incomplete), and what kept it from being saved. One per session."""

    def __init__(self) -> None:
        self.journal: Journal | None = None
        self.saved = False
        self.errors: list[str] = []  # what kept the run from being saved, said at its end
        self.save_failed: str | None = (
            None  # why the save itself failed, in a few words (for the journal)
        )
        self.journal_failed: str | None = (
            None  # why the journal could not be written: the run stopped there
        )

    def open(
        self, config: pytest.Config, machine_key: str, run: RunState, machine_id: str | None = None
    ) -> Opened:
        """Before any case: prove that where results go can be written, and start the journal there."""
        opt = config.option
        json_path = opt.benchmark_json
        if isinstance(json_path, (str, os.PathLike)):
            parent = Path(json_path).resolve().parent
            if not parent.is_dir() or not os.access(parent, os.W_OK):
                raise pytest.UsageError(
                    f"--benchmark-json: cannot write {json_path}: {parent} is not a writable folder"
                )
        opened = Opened()
        folder = pbench.storage_folder(opt.benchmark_storage)
        if folder is None:  # elasticsearch: pytest-benchmark's own save, without a journal
            return opened
        runs = pbench.machine_folder(folder)
        if is_reference(runs):
            raise pytest.UsageError(
                f"--benchmark-storage: {folder} is a folder of the project's reference runs: a run of "
                "this machine is saved apart from them (the default, results/<machine>/, or a folder of "
                "your own)"
            )
        disabled = opt.benchmark_disable and not opt.benchmark_enable  # as pytest-benchmark decides
        if (opt.benchmark_save or opt.benchmark_autosave) and not disabled and not opt.collectonly:
            try:
                self.journal = Journal(runs)
            except JournalError as exc:
                raise pytest.UsageError(f"--benchmark-storage: {exc}") from None
            run.journal = self.journal.path.name
            # A killed run of this machine left its journal: save what it finished before going on.
            # Another machine's journal copied here stays where it is; one that cannot be read is
            # named, never this run's end.
            for journal in find_journals([runs]):
                if journal != self.journal.path:
                    try:
                        said = recover(journal, machine_key=machine_key)[1]
                    except Exception as exc:  # noqa: BLE001 - one journal's problem, named; the run goes on
                        said = f"{journal}: could not recover: {type(exc).__name__}: {exc}"
                    opened.notes.append(f"fmnist-bench: an earlier run was killed: {said}")
        # Earlier runs of this machine tell how long this one will take (all of them; see
        # Profile.from_runs). A folder given with --benchmark-storage may hold runs of other names:
        # only this machine's teach it. A machine renamed (--machine-name) is the same machine: its
        # runs under its other names, in the folders beside this one, teach it too.
        earlier = [
            (name, run_)
            for name, run_ in machine_runs(runs)
            if fmt.read_run(run_).ours.machine_key in (machine_key, None)
        ]
        elsewhere = _runs_renamed(folder, runs.name, machine_key, machine_id)
        if earlier or elsewhere:
            opened.profile = Profile.from_runs(earlier + elsewhere)
            count = len(earlier) + len(elsewhere)
            opened.profile_note = (
                f"from {count} earlier run{'s' if count != 1 else ''} of this machine"
            )
            if elsewhere:
                folders = sorted({name.split("/")[0] for name, _ in elsewhere})
                opened.profile_note += (
                    f", {len(elsewhere)} of them saved under another name ({', '.join(folders)})"
                )
        return opened

    def write(self, journal_write, run: RunState, session: pytest.Session | None) -> bool:
        """journal_write(journal), where the run keeps one; False where the journal could not take it. A
        journal that cannot be written (its disk filled, `ulimit -f`) stops the run there, cleanly: no
        later case is measured, the finished ones are saved (or stay in the journal for `python -m bench
        recover`), and the journal says how the run ended, so that recovery does not call it killed."""
        if self.journal is None:
            return True
        try:
            journal_write(self.journal)
        except JournalError as exc:
            if self.journal_failed is None:
                self.journal_failed = str(exc)
                if run.ended is None:  # (short: the saved run's words, never a long path)
                    run.ended = f"stopped: its journal could not be written ({exc.strerror})"
                self.journal.ended(run.ended)
                # pytest stops after the case under way (or before collecting)
                if session is not None:
                    session.shouldstop = f"fmnist-bench: the journal could not be written ({exc})"
            return False
        return True

    def start(self, session: pytest.Session, run: RunState) -> None:
        """Save through the suite (whole, numbered under a lock, named partial when incomplete), write
        --benchmark-json whole, and start the journal."""
        config = session.config
        if pbench.session_of(config) is None:
            return
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None and reporter.verbosity <= 0:
            reporter.showfspath = False  # a line per case says more than a file name and its dots
        if self.journal is not None:
            folder = self.journal.folder

            def save(output_json: dict, save_name: str) -> None:
                # Named as a recovered run is, so `ls` tells it from a whole one.
                if not run.complete:
                    save_name = f"{save_name}_partial"
                try:
                    path = save_whole(folder, save_name, output_json)
                except OSError as exc:
                    self.errors.append(f"could not save the run in {folder}: {exc}")
                    self.save_failed = exc.strerror or str(exc)
                    return
                self.saved = True
                try:
                    self.journal.saved_as(
                        path
                    )  # should the journal outlive this process, recovery knows
                except (
                    JournalError
                ):  # (a full disk) the run is saved; its journal goes next, and names it
                    pass
                pbench.say_saved(config, _said_in("Saved benchmark data in:", path))

            pbench.save_through(config, save)

        def write_json(path: Path, output_json: dict) -> None:
            try:
                write_whole(path, pbench.dumps(output_json, ensure_ascii=True, indent=4).encode())
            except OSError as exc:
                self.errors.append(f"could not write {path}: {exc}")
                return
            pbench.say_saved(config, _said_in("Wrote benchmark data in:", path), purple=True)

        pbench.write_json_through(config, write_json)
        # A journal that cannot take its header stops the run before it collects a case.
        self.write(lambda journal: journal.start(pbench.run_header(config)), run, session)

    def finish(self, session: pytest.Session, run: RunState, say) -> None:
        """The journal goes once the run is saved; kept, and said with `say`, when it is not."""
        journal = self.journal
        if self.journal_failed is not None:
            saved = "are saved" if self.saved else "are not saved"
            self.errors.insert(
                0,
                f"The run stopped: its journal could not be written ({self.journal_failed}); the cases "
                f"it finished {saved}",
            )
        if journal is not None:
            kept = journal.cases > 0 and not self.saved
            if kept:  # recovery reads how it ended, rather than calling it killed
                how = run.ended or "its cases finished"
                journal.ended(
                    f"{how}; its save failed ({self.save_failed})" if self.save_failed else how
                )
            journal.close(keep=kept)
            if kept:
                self.errors.append(
                    f"The {journal.cases} finished cases are kept in {journal.path}; once the folder can "
                    f"take them, `python -m bench recover {journal.folder}` saves them as a run"
                )
        if self.errors:
            say("fmnist-bench: " + ". ".join(self.errors) + ".")
            if session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
                session.exitstatus = pytest.ExitCode.INTERNAL_ERROR

    def close(self) -> None:
        """At the session's very end: a journal still open goes, kept where it holds cases the run did not save."""
        if self.journal is not None:
            self.journal.close(keep=self.journal.cases > 0 and not self.saved)


def keep_finished(session: pytest.Session, run: RunState, bench_ids, exitstatus) -> None:
    """How the run ended, and only the cases that finished and passed their checks kept for the save."""
    if run.ended is None and exitstatus == pytest.ExitCode.INTERRUPTED:
        run.ended = "interrupted"
    elif run.ended is None and (session.shouldstop or session.shouldfail):
        run.ended = f"stopped early: {session.shouldstop or session.shouldfail}"
    # A case cut short (no rounds, or fewer than planned) or one that failed would be saved as if
    # measured.
    finished = {id(s) for s in run.finished}
    pbench.keep_benchmarks(session.config, lambda b: id(b) in finished, bench_ids)


def update_machine_info(
    context: RunContext, run: RunState, load: dict, data_used: dict, machine_info: dict
) -> None:
    """What fmnist-bench adds to pytest-benchmark's machine_info: torch, NVML's GPUs, the data, and its own
    record (`load`: how busy the machine was across the run)."""
    plan, machine = context.plan, context.machine
    machine_info["torch"] = torch_info()
    machine_info["torch"]["threads"] = (
        plan.default_threads
    )  # torch's own choice, not the last case's
    machine_info["nvml"] = machine.nvml
    machine_info["gpus"] = machine.gpus
    # untyped: records.Dataset declares train_images and test_images without `always`, so a Dataset made here
    # would leave out the nulls the format writes for a split no case used
    machine_info["dataset"] = {
        "name": plan.dataset_name,
        "requested": plan.dataset,
        "root": plan.data_root,
        # The images each split really held in this run (null: no case of this run used it).
        "train_images": data_used.get("train"),
        "test_images": data_used.get("test"),
        "files": context.data_files,  # the real files' own counts, when the real set was used
    }
    machine_info["fmnist_bench"] = fmnist_bench_info(
        machine_key=machine.key,
        machine_name=machine.name,
        plan=plan.summary(),
        budget_options=context.budget_source,
        telemetry_period_s=PERIOD_S if context.telemetry else None,
        host_allocator=context.host_allocator,
        run=run.record(),
        machine_id=machine.id,
        load=load,
    )


def _runs_renamed(
    folder: Path, interpreter: str, machine_key: str, machine_id: str | None
) -> list[tuple[str, dict]]:
    """('<folder>/<file>', run) of this machine's runs saved beside `folder` under another of its names: the
    folders whose key is its own but for the name (its CPU, GPUs and the first 8 digits of its id),
    each run's full id matching. The folder name is a label (--machine-name changes it); the id is the machine."""
    if not machine_id or not folder.parent.is_dir():
        return []
    try:
        beside = sorted(folder.parent.iterdir())
    except OSError:  # a folder that cannot be listed holds nothing this run can learn from
        return []
    # What the machine is (its CPU and GPU models, its id's digits): its key less its name (a name never holds
    # "_": bench/measure/machine.py). Machines that share one home folder share its id, so the id alone
    # could take another machine's runs.
    what = machine_key.split("_", 1)[-1]
    found = []
    for other in beside:
        if other == folder or other.name.split("_", 1)[-1] != what or is_reference(other):
            continue
        for name, run_ in machine_runs(other / interpreter):
            if fmt.read_run(run_).ours.machine_id == machine_id:
                found.append((f"{other.name}/{name}", run_))
    return found


def _said_in(what: str, path: Path) -> str:
    """pytest-benchmark's line for a file written, its folder and its name on two lines where one would pass
    100 columns (a run's name alone, commit and date in it, is some 90)."""
    line = f"{what} {path}"
    return line if len(line) <= WIDTH else f"{what} {path.parent}{os.sep}\n    {path.name}"


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
    """The header's words for the C library allocator the run is held to (machine_info.fmnist_bench.host_allocator)."""
    held = fmt.HostAllocator.read(record)
    preload = f"; LD_PRELOAD={held.preload}" if held.preload else ""
    if held.mode == "keep":
        how = "" if held.how == "mmap threshold" else f" ({held.how})"
        return (
            f"{held.library}, keeping freed blocks up to {held.keep_bytes >> 20:,} MiB for reuse{how} "
            f"(--host-allocator keep){preload}"
        )
    why = f": {held.reason}" if held.reason else " (--host-allocator default)"
    return (
        f"{held.library or 'unknown'} as it is{why}; CPU cases' page faults depend on the cases before them"
        + preload
    )
