"""The state of a running session: which cases finished, failed or were skipped, and how the run ended."""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.format.records import run_record
from bench.measure.clock import Stopwatch, process_age

__all__ = [
    "Interrupted",
    "RunState",
    "drop_lineless_entries",
    "install_stop_signals",
    "quiet_children",
]

# What `timeout`, CI cancellation, `docker stop` and Slurm send (SIGTERM), and what a closed
# terminal sends (SIGHUP). Ctrl-C (SIGINT) already raises KeyboardInterrupt.
STOP_SIGNALS = tuple(
    s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s is not None
)


class Interrupted(KeyboardInterrupt):
    """A stop signal turned into what Ctrl-C raises: pytest then ends the session, and the run is saved."""

    def __init__(self, signame: str) -> None:
        super().__init__(f"stopped by {signame}")


@dataclass
class RunState:
    """What happened to the planned cases; recorded in the saved run's machine_info.fmnist_bench.run."""

    planned: int = 0
    # from the command's start
    stopwatch: Stopwatch = field(default_factory=lambda: Stopwatch(already=process_age()))
    # pytest-benchmark's stats of each case that passed
    finished: list = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    ended: str | None = None  # why the run stopped early, if it did
    cases_s: float = 0.0  # the finished cases' own time (their calls)
    # the journal's file name: recovery knows this run by it once it is saved
    journal: str | None = None

    @property
    def complete(self) -> bool:
        accounted = len(self.finished) + len(self.failed) + len(self.skipped)
        return self.ended is None and not self.failed and accounted >= self.planned

    def record(self) -> dict:
        wall = self.stopwatch()
        return run_record(
            complete=self.complete,
            planned_cases=self.planned,
            finished_cases=len(self.finished),
            skipped=self.skipped,
            failed=self.failed,
            ended=self.ended,
            wall_s=wall,
            outside_cases_s=max(wall - self.cases_s, 0.0),
            journal=self.journal,
        )


def quiet_children():
    """Stop torch's DataLoader from raising when its workers die: from here the run is stopping or saving.

    `timeout`, CI runners and `kill -- -PGID` signal the whole process group, so the tuned
    loader's worker processes die with the run (a worker stopped by anyone but its parent
    dies of the signal), and torch's SIGCHLD handler raises a RuntimeError in the main thread
    for each: wherever it lands, pytest's report of the interrupt or the save. The default
    disposition (ignore; the loader still notices a dead worker through its queue timeouts).
    Returns the handler it replaced.
    """
    sigchld = getattr(signal, "SIGCHLD", None)
    if sigchld is None:  # pragma: no cover - Windows
        return None
    try:
        return signal.signal(sigchld, signal.SIG_DFL)
    except ValueError:  # not the main thread
        return None


def install_stop_signals(run: RunState) -> tuple[Callable[[], None], Callable[[], None]]:
    """Make SIGTERM and SIGHUP stop the run as Ctrl-C does, noting in `run` which signal ended it.

    By default SIGTERM kills Python at once: pytest-benchmark's save at the session's end
    never runs and every finished case is lost. Returns two calls: `hold`, for the save at the
    end (a signal is then ignored, so a second Ctrl-C cannot cut the save in half, nor mark a
    run whose cases all finished as stopped), and `restore`, which puts the old handlers back.
    """
    holding = False
    children: list = []  # SIGCHLD's handler before quiet_children, once replaced

    def quiet() -> None:
        previous_chld = quiet_children()
        if not children and previous_chld is not None:
            children.append(previous_chld)

    def stop(signum, _frame):
        if holding:  # the cases are over and the run is being saved: let it finish
            return
        quiet()
        name = signal.Signals(signum).name
        if run.ended is None:
            run.ended = f"stopped by {name}" + (" (Ctrl-C)" if signum == signal.SIGINT else "")
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise Interrupted(name)

    previous = {}
    for signum in (signal.SIGINT, *STOP_SIGNALS):
        try:
            previous[signum] = signal.signal(signum, stop)
        # not the main thread (pytest embedded in something else): leave signals alone
        except ValueError:
            break

    def hold() -> None:
        nonlocal holding
        holding = True
        quiet()

    def restore() -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if children and run.ended is None:
            signal.signal(signal.SIGCHLD, children.pop())
        # A stopped run's process is ending, its dead workers maybe still registered with torch's
        # DataLoader (the interrupt's traceback holds the loader): its SIGCHLD handler would raise
        # for any later child's exit (inductor's compile workers at shutdown), so it is not put
        # back.
        children.clear()

    return hold, restore


def _lined(tb):
    """The traceback `tb` without its entries that have no line number, relinked past them."""
    while tb is not None and tb.tb_lineno is None:
        tb = tb.tb_next
    node = tb
    while node is not None:
        after = node.tb_next
        while after is not None and after.tb_lineno is None:
            after = after.tb_next
        node.tb_next = after
        node = after
    return tb


def drop_lineless_entries(excinfo) -> None:
    """Unlink the traceback entries without a line number from an interrupt's exception and its causes.

    A stop signal raises in whatever frame runs; on Python 3.11 a frame caught at its very start
    can have no line number (tb_lineno None), and pytest's report of the interrupt then fails on
    it (a TypeError in _pytest/_code/code.py): the session ends with pytest's own traceback and
    exit status 1 instead of "stopped by SIGTERM" and 2. Seen in 2 of 7 tries of a SIGTERM'd
    quick run on the 2-core VM. `excinfo` is pytest's ExceptionInfo, changed in place.
    """
    seen: set[int] = set()
    exc = excinfo.value
    # pytest's Traceback: built from a traceback or a list of entries
    traceback_type = type(excinfo.traceback)
    chain = [exc]
    while chain:
        current = chain.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        current.__traceback__ = _lined(current.__traceback__)
        chain += [current.__cause__, current.__context__]
    excinfo._excinfo = (type(exc), exc, exc.__traceback__)
    excinfo.traceback = traceback_type(exc.__traceback__ if exc.__traceback__ is not None else [])
