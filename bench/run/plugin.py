"""The suite's pytest plugin: one object per session whose methods are the hooks (pytest-benchmark's own pattern).

bench/conftest.py registers it from `pytest_configure`; everything a session keeps lives on it.
"""

from __future__ import annotations

import os
import platform
import shlex
import sys
from datetime import datetime, timezone

import pytest

from bench.measure.allocator import set_host_allocator
from bench.measure.clock import DeviceClock, Stopwatch
from bench.measure.devices import available_devices, unavailable_reason
from bench.measure.load import MachineLoad, load_average
from bench.measure.machine import cpu_model, machine_id, machine_key, nvml_info, torch_info
from bench.measure.plan import Plan
from bench.measure.telemetry import add_per_images
from bench.record.journal import Journal, JournalError
from bench.record.limits import Board
from bench.record.names import FAMILIES, FAMILY_AXES, case_id
from bench.record.words import cases, format_seconds
from bench.run import pbench, saving
from bench.run.cost import case_cost
from bench.run.estimate import Profile, observation
from bench.run.options import UNUSED_BENCHMARK_OPTIONS, given, settings
from bench.run.progress import case_headline, progress_line
from bench.run.state import RunState, drop_lineless_entries, install_stop_signals
from bench.run.summary import end_summary
from fmnist_model.ladder import unsupported_reason

__all__ = ["Suite", "configure", "suite_of"]

_STATE = pytest.StashKey["Suite"]()


def suite_of(config: pytest.Config) -> Suite:
    return config.stash[_STATE]


def configure(config: pytest.Config) -> None:
    """Check every option, hold the allocator, route the storage and open the journal: all before collection."""
    if not hasattr(
        config.option, "devices"
    ):  # our options are not registered: not a `pytest bench` session
        return
    chosen = settings(config)
    # The answer is the last thing on the screen: pytest's list of skipped cases (the project's -ra)
    # would come after it, and each skip is said on its case's line and counted in the answer.
    # Failures and errors are still listed, and a -r given on the command line is kept as given.
    if not _report_chars_given(config):
        config.option.reportchars = (
            config.option.reportchars.replace("a", "fExX").replace("s", "").replace("S", "")
        )
    # The machine as it is at the start of the run (an idle GPU's clocks, link and temperature).
    nvml, gpus = nvml_info()
    gpu_names = [d["name"] for d in torch_info()["cuda_devices"]]
    try:
        ident, ident_from = machine_id()
    except (OSError, ValueError) as exc:
        raise pytest.UsageError(f"fmnist-bench: this machine's id: {exc}") from None
    key = machine_key(platform.node(), cpu_model(), gpu_names, chosen.machine_name, ident)
    suite = Suite(
        config,
        chosen.plan,
        {
            "nvml": nvml,
            "gpus": gpus,
            "machine_key": key,
            "machine_id": ident,
            "machine_id_from": ident_from,
            "machine_name": chosen.machine_name,
        },
        chosen.budget_source,
    )
    suite.data_files, suite.telemetry = chosen.data_files, chosen.telemetry
    # Before the first case, and for all of them: the figures must not depend on the cases before.
    suite.host_allocator = set_host_allocator(chosen.host_allocator)
    config.stash[_STATE] = suite
    saving.route_storage(config, key)
    try:
        saving.open_outputs(config, suite)
    except (
        BaseException
    ):  # (a usage error, Ctrl-C while an earlier journal is recovered): no journal left open
        if suite.journal is not None:
            suite.journal.close(keep=False)
        raise
    config.pluginmanager.register(suite, "fmnist-bench-suite")
    from bench.run import fixtures  # (imports this module: registered once the suite exists)

    config.pluginmanager.register(fixtures, "fmnist-bench-fixtures")
    suite.hold_signals, suite.restore_signals = install_stop_signals(suite.run)
    suite.load.start()  # the whole run's machine load: stopped before the save


def _report_chars_given(config: pytest.Config) -> bool:
    """Whether -r (alone, as -rs, in a cluster as -vrs, or as --report-chars) came from the command line or
    $PYTEST_ADDOPTS rather than the project's own addopts."""
    args = [
        *map(str, config.invocation_params.args),
        *shlex.split(os.environ.get("PYTEST_ADDOPTS", "")),
    ]
    return any(
        a.startswith("--report-chars")
        or (a.startswith("-") and not a.startswith("--") and "r" in a[1:].split("=")[0])
        for a in args
        if a[1:2].isalpha() or a.startswith("--")
    )


def _family(item: pytest.Item) -> str | None:
    return getattr(getattr(item, "module", None), "FAMILY", None)


def _no_case(item: pytest.Item) -> bool:
    params = getattr(getattr(item, "callspec", None), "params", {})
    return _family(item) in FAMILY_AXES and any(
        not isinstance(v, (str, int, float)) for v in params.values()
    )


def _reason(report) -> str:
    if report.skipped and isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    text = getattr(report, "longreprtext", "") or str(report.longrepr)
    lines = [line for line in text.splitlines() if line.startswith("E ")]
    return (
        lines[0][1:].strip()
        if lines
        else text.strip().splitlines()[-1]
        if text.strip()
        else "failed"
    )[:500]


class Suite:
    """Everything this plugin keeps for one session, and the hooks that use it."""

    def __init__(
        self, config: pytest.Config, plan: Plan, machine: dict, budget_source: dict
    ) -> None:
        self.config = config
        self.plan = plan
        self.machine = machine
        self.budget_source = budget_source
        self.run = RunState()
        self.journal: Journal | None = None
        self.profile = Profile()
        self.profile_note = "no earlier run of this machine"
        self.bench_ids: set[str] = set()
        self.remaining: list[tuple[str, str, dict]] = []  # (nodeid, family, params) not yet run
        self.case_started: dict[str, Stopwatch] = {}
        self.lines: dict[
            str, str
        ] = {}  # a case's progress line, printed once pytest has reported it
        self.saved, self.save_errors = (
            False,
            [],
        )  # (save_errors: what kept the run from being saved)
        self.save_failed: str | None = (
            None  # why the save itself failed, in a few words (for the journal)
        )
        self.hold_signals = lambda: None
        self.restore_signals = lambda: None
        self.notes: list[str] = []  # said before the first case: journals recovered at the start
        self.data_files: dict | None = None  # images in the real files, when they are used
        self.data_used: dict[str, int] = {}  # images each split really held in this run
        self.current = None  # the benchmark fixture of the case running now
        self.telemetry = True  # --telemetry: observe each case's timed rounds
        self.host_allocator: dict = {}  # --host-allocator: what the run's C library allocator was held to
        self.load = (
            MachineLoad()
        )  # how busy the whole machine is with other work, from start to end
        self.load_before = load_average()  # (1-minute load average, CPUs) before the first case
        self.load_started: dict[str, float] = {}  # a case's start on the load's clock
        self.board = (
            Board()
        )  # the limits measured so far in this run, that later cases are held against
        self.session: pytest.Session | None = None
        self.journal_failed: str | None = (
            None  # why the journal could not be written: the run stopped there
        )

    # ---------------------------------------------------------------- the journal

    def to_journal(self, write) -> bool:
        """write(journal), where the run keeps one; False where the journal could not take it. A journal that
        cannot be written (its disk filled, `ulimit -f`) stops the run there, cleanly: no later case
        is measured, the finished ones are saved (or stay in the journal for `python -m bench
        recover`), and the journal says how the run ended, so that recovery does not call it killed.
        """
        if self.journal is None:
            return True
        try:
            write(self.journal)
        except JournalError as exc:
            if self.journal_failed is None:
                self.journal_failed = str(exc)
                if self.run.ended is None:  # (short: the saved run's words, never a long path)
                    self.run.ended = f"stopped: its journal could not be written ({exc.strerror})"
                self.journal.ended(self.run.ended)
                if (
                    self.session is not None
                ):  # pytest stops after the case under way (or before collecting)
                    self.session.shouldstop = (
                        f"fmnist-bench: the journal could not be written ({exc})"
                    )
            return False
        return True

    # ---------------------------------------------------------------- what is said

    def write(self, line: str) -> None:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None:
            print(line, file=sys.stderr)
            return
        reporter.ensure_newline()
        reporter.write_line(line)

    def left(self) -> tuple[float | None, int]:
        """(predicted seconds of the cases not yet run, how many of them cannot be predicted yet);
        None when none can, from the earlier runs and every case finished so far."""
        costs = [
            case_cost(self.plan, family, params, self.profile)
            for _id, family, params in self.remaining
        ]
        unknown = sum(c.seconds is None for c in costs)
        if costs and unknown == len(costs):
            return None, unknown
        return sum(c.seconds for c in costs if c.seconds is not None), unknown

    def line(self, family: str, param: str, text: str) -> str:
        """The progress line of a case just done: counts, time, what is left, and its figure."""
        left_s, unknown = self.left()
        done = len(self.run.finished) + len(self.run.failed) + len(self.run.skipped)
        return progress_line(
            done, self.run.planned, f"{family} {param}", text, self.run.stopwatch(), left_s, unknown
        )

    def estimate_line(self) -> str:
        left_s, unknown = self.left()
        if left_s is None:
            return f"fmnist-bench: {cases(len(self.remaining))}; no estimate yet ({self.profile_note}): it comes as cases finish"
        more = f", +{cases(unknown)} not predictable" if unknown else ""
        total = self.profile.outside()[0] + left_s
        return f"fmnist-bench: {cases(len(self.remaining))}; estimated {format_seconds(total)}{more} ({self.profile_note})"

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logreport(self, report) -> None:
        # After pytest's own word for the case (in verbose runs), the case's line.
        line = self.lines.pop(report.nodeid, None)
        if line is not None:
            self.write(line)

    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        plan, machine = self.plan, self.machine
        budgets = "; ".join(
            f"{family} at least {b.min_rounds}, then until {b.max_time:g} s, at most {b.max_rounds}"
            for family, b in plan.budgets.items()
        )
        chosen = [flag for flag, used in self.budget_source.items() if used]
        warm = (
            "a whole epoch or pass"
            if plan.warmup_batches is None
            else f"{plan.warmup_batches} batches"
        )
        threads = ", ".join(
            f"{family} {'/'.join(map(str, plan.threads_for(family)))}" for family in FAMILIES
        )
        return [
            f"fmnist-bench: devices {', '.join(plan.devices)} (available here: {', '.join(available_devices())}); "
            f"dataset {plan.dataset_name}; {'quick' if plan.quick else 'full'} run",
            f"fmnist-bench: machine {machine['machine_key']}; saves to {config.option.benchmark_storage} "
            f"(its id from {machine['machine_id_from']})",
            f"fmnist-bench: what runs (not pytest-benchmark's defaults above): each case's clock is "
            f"DeviceClock(device) (synchronize, then perf_counter); warm-up {warm}; rounds per case: {budgets}"
            + (f" (from {', '.join(chosen)})" if chosen else ""),
            f"fmnist-bench: CPU threads per family: {threads} (torch's default here: {plan.default_threads})",
            f"fmnist-bench: host allocator {saving.allocator_said(self.host_allocator)}",
            saving.load_said(self.load_before),
            *(
                f"fmnist-bench: {flag} has no effect here: each case warms up and calibrates itself (--warmup-batches)"
                for flag in UNUSED_BENCHMARK_OPTIONS
                if given(config, flag)
            ),
        ]

    # ---------------------------------------------------------------- the case matrix

    def _marks(self, device: str, family: str, pipeline: str | None = None) -> list:
        # A device the machine lacks, or a step of the ladder the device cannot run (a CUDA graph on
        # the CPU).
        reason = unavailable_reason(device) or (pipeline and unsupported_reason(pipeline, device))
        if reason is not None:
            return [pytest.mark.skip(reason=reason)]
        budget = self.plan.budgets[family]
        # pytest-benchmark reads its timer and the options it records in each benchmark from this
        # mark: one clock per device (synchronizing it), and the round budget this case really has.
        return [
            pytest.mark.benchmark(
                timer=DeviceClock(device),
                min_rounds=budget.min_rounds,
                max_time=budget.max_time,
                # Saved as options.warmup: the warm-up calls before the rounds (extra_info.warmup
                # says what they were).
                warmup=True,
                warmup_iterations=2 if family == "transfer" else 1,
            )
        ]

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        family = getattr(metafunc.module, "FAMILY", None)
        if family not in FAMILY_AXES:
            return
        cases_ = [
            pytest.param(
                *case.values(),
                id=case_id(case),
                marks=self._marks(case["device"], family, case.get("pipeline")),
            )
            for case in self.plan.cases(family)
        ]
        metafunc.parametrize(list(FAMILY_AXES[family]), cases_, indirect=["cpu_threads"])

    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        # A family with no case in the plan (--pipelines naming only the other family's steps) is
        # parametrized with nothing, and pytest makes one placeholder item of it: not a case,
        # deselected.
        empty = [item for item in items if _no_case(item)]
        if empty:
            config.hook.pytest_deselected(items=empty)
            items[:] = [item for item in items if not _no_case(item)]
        # Cheapest family first: an interrupted run has kept the most cases (stable: the matrix
        # order stays).
        order = {family: i for i, family in enumerate(FAMILIES)}
        items.sort(key=lambda item: order.get(_family(item), len(order)))

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        for item in session.items:
            family = _family(item)
            if family in FAMILY_AXES and hasattr(item, "callspec"):
                self.bench_ids.add(item.nodeid)
                self.remaining.append((item.nodeid, family, dict(item.callspec.params)))
        self.run.planned = len(self.bench_ids)
        self.to_journal(lambda journal: journal.note({"planned_cases": self.run.planned}))
        for note in self.notes:  # journals of killed runs, saved before this one starts
            self.write(note)
        if not session.config.option.collectonly and self.remaining:
            self.write(self.estimate_line())

    # ---------------------------------------------------------------- each case's outcome

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(self, item: pytest.Item):
        # A case's cost: its call, not its setup (the first case to need the data or the trained
        # weights builds them in its setup; that is the run's cost, counted outside the cases).
        if item.nodeid in self.bench_ids:
            self.case_started[item.nodeid] = Stopwatch()
            self.load_started[item.nodeid] = self.load.mark()
            self.current = (item.funcargs or {}).get(
                "benchmark"
            )  # (pytest drops funcargs if the case is cut short)
        yield

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        outcome = yield
        if item.nodeid not in self.bench_ids:
            return
        report = outcome.get_result()
        if report.skipped and call.when in ("setup", "call"):
            reason = _reason(report)
            self._lost(item, "skipped", {"name": item.name, "reason": reason}, f"skipped: {reason}")
        elif report.failed and any(pbench.node_id(s) == item.nodeid for s in self.run.finished):
            # Its teardown failed after the case had finished: the figure stands, the run says so.
            record = {
                "name": item.name,
                "when": call.when,
                "reason": _reason(report),
                "figure": "kept: measured before",
            }
            self.run.failed.append(record)
            self.to_journal(lambda journal: journal.note({"failed": record}))
        elif report.failed:
            reason = _reason(report)
            self._lost(
                item,
                "failed",
                {"name": item.name, "when": call.when, "reason": reason},
                f"FAILED, not saved: {reason}",
            )
        elif call.when == "call" and report.passed:
            stats = pbench.finished_stats(getattr(item, "funcargs", {}).get("benchmark"))
            if not stats:  # --benchmark-disable, or a test that never timed anything
                self._forget(item.nodeid)
                return
            self._finished(item, stats)

    def _lost(self, item: pytest.Item, kind: str, record: dict, said: str) -> None:
        """A case that was skipped or failed: recorded in the run (and its journal), and said on its line."""
        getattr(self.run, kind).append(record)
        self.to_journal(lambda journal: journal.note({kind: record}))
        self._forget(item.nodeid)
        self.lines[item.nodeid] = self.line(_family(item) or "", item.callspec.id, said)

    def _forget(self, nodeid: str) -> None:
        self.remaining = [r for r in self.remaining if r[0] != nodeid]

    def _finished(self, item: pytest.Item, stats) -> None:
        started = self.case_started.pop(item.nodeid, None)
        stats.extra_info["wall_s"] = started() if started is not None else None
        stats.extra_info["machine_load"] = self.load.case(
            self.load_started.pop(item.nodeid, self.load.clock())
        )
        add_per_images(stats.extra_info)
        # Held against the limits measured before it in this run (extra_info.limits: floors, binding
        # limit).
        self.board.add(
            _family(item) or "",
            item.callspec.params,
            stats.extra_info,
            *pbench.median_and_min(stats),
        )
        self.run.cases_s += stats.extra_info["wall_s"] or 0.0
        self.run.finished.append(stats)
        record = pbench.as_record(stats)
        kept = self.to_journal(lambda journal: journal.add(record))
        self._forget(item.nodeid)
        obs = observation(record, self.plan.default_threads)
        if obs is not None:
            self.profile.add(
                obs
            )  # what is left is predicted from the earlier run and every case so far
        links = {
            g.get("cuda_device"): g.get("pcie_gbps_max")
            for g in self.machine["gpus"]
            if g.get("cuda_device")
        }
        if (
            not kept
        ):  # not a finished case's line: nothing but the run's save, which may fail too, holds it
            self.lines[item.nodeid] = (
                f"fmnist-bench: {_family(item)} {item.callspec.id} was measured, but its journal line could not be "
                f"written ({self.journal_failed}): it is kept only if the run's save succeeds; the run stops here"
            )
            return
        self.lines[item.nodeid] = self.line(
            _family(item) or "", item.callspec.id, case_headline(record, links)
        )

    @pytest.hookimpl(tryfirst=True)
    def pytest_report_teststatus(self, report, config: pytest.Config):
        # A case's progress line stands for it: no dot or s beside it (verbose runs keep pytest's
        # word).
        if report.nodeid not in self.bench_ids or report.nodeid not in self.lines:
            return None
        if report.passed:
            return "passed", "", "PASSED"
        if report.skipped:
            return "skipped", "", "SKIPPED"
        return "failed", "", "FAILED"

    @pytest.hookimpl(tryfirst=True)
    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo) -> None:
        # Before the terminal reporter formats it: a frame without a line number would crash that.
        drop_lineless_entries(excinfo)

    # ---------------------------------------------------------------- the end: save, answer

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.session = session
        saving.session_start(session, self)

    @pytest.hookimpl(hookwrapper=True, tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus):
        saving.before_save(session, self, exitstatus)
        yield
        saving.after_save(session, self)

    def pytest_benchmark_update_machine_info(
        self, config: pytest.Config, machine_info: dict
    ) -> None:
        saving.update_machine_info(self, machine_info)

    @pytest.hookimpl(
        trylast=True
    )  # after pytest-benchmark's wide tables, before pytest's own short summary
    def pytest_terminal_summary(self, terminalreporter, exitstatus, config: pytest.Config) -> None:
        if config.option.collectonly or not self.run.planned or not self.run.finished:
            return  # (nothing measured: --benchmark-disable, or stopped before the first case finished)
        bs = pbench.session_of(config)
        # The run as it would be saved (pytest-benchmark's machine_info with ours): the report's
        # rows, worded.
        run = {
            "machine_info": bs.get_machine_info() if bs is not None else {},
            "benchmarks": [pbench.as_record(s) for s in self.run.finished],
            "datetime": datetime.now(timezone.utc).isoformat(),
        }
        terminalreporter.section("fmnist-bench: is the GPU faster here?", sep="=", bold=True)
        try:
            lines = end_summary(run)
        except (
            Exception
        ) as exc:  # the run is saved: a fault in its wording must not turn it into an error
            lines = [
                f"The answer could not be worded ({type(exc).__name__}: {exc}); the run is saved: "
                "python -m bench report gives its figures."
            ]
        for line in lines:
            terminalreporter.write_line(line)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self.restore_signals()
        if self.journal is not None:
            self.journal.close(keep=self.journal.cases > 0 and not self.saved)
        for name in ("fmnist-bench-fixtures", "fmnist-bench-suite"):
            plugin = config.pluginmanager.get_plugin(name)
            if plugin is not None:
                config.pluginmanager.unregister(plugin)
