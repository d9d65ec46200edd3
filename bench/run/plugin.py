"""The suite's pytest plugin: one object per session whose methods are the hooks (pytest-benchmark's own pattern).

bench/conftest.py registers it from `pytest_configure`; everything a session keeps lives on it.
"""

from __future__ import annotations

import os
import platform
import shlex
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pytest

from bench.analysis.limits import Board
from bench.analysis.words import cases, format_seconds
from bench.format.names import FAMILIES, FAMILY_AXES, case_id
from bench.format.records import TorchFacts
from bench.measure.allocator import set_host_allocator
from bench.measure.clock import DeviceClock, Stopwatch
from bench.measure.devices import available_devices, unavailable_reason
from bench.measure.load import MachineLoad, load_average
from bench.measure.machine import cpu_model, machine_id, machine_key, nvml_info, torch_info
from bench.measure.plan import Plan
from bench.measure.telemetry import add_per_images
from bench.run import fixtures, pbench, saving
from bench.run.context import SESSION, Machine, RunContext
from bench.run.cost import case_cost
from bench.run.estimate import Profile, observation
from bench.run.models import models_said
from bench.run.options import UNUSED_BENCHMARK_OPTIONS, given, settings
from bench.run.progress import WIDTH, case_headline, fold, progress_line
from bench.run.state import RunState, drop_lineless_entries, install_stop_signals
from bench.run.summary import end_summary
from fmnist_model.ladder import unsupported_reason

__all__ = ["Suite", "configure"]


def configure(config: pytest.Config) -> None:
    """Check every option, hold the allocator, route the storage and open the journal: all before collection."""
    # Our options are not registered: not a `pytest bench` session.
    if not hasattr(config.option, "devices"):
        return
    chosen = settings(config)
    # The answer is the last thing on the screen: pytest's list of skipped cases (the project's -ra)
    # would come after it, and each skip is said on its case's line and counted in the answer.
    # Failures and errors are still listed, and a -r given on the command line is kept as given.
    if not _report_chars_given(config):
        chars = config.option.reportchars
        config.option.reportchars = chars.replace("a", "fExX").replace("s", "").replace("S", "")
    # The machine as it is at the start of the run (an idle GPU's clocks, link and temperature).
    nvml, gpus = nvml_info()
    gpu_names = [d.name for d in TorchFacts.read(torch_info()).cuda_devices or []]
    try:
        ident, ident_from = machine_id()
    except (OSError, ValueError) as exc:
        raise pytest.UsageError(f"fmnist-bench: this machine's id: {exc}") from None
    key = machine_key(platform.node(), cpu_model(), gpu_names, chosen.machine_name, ident)
    machine = Machine(key, chosen.machine_name, ident, ident_from, nvml, gpus)
    context = RunContext(
        plan=chosen.plan,
        machine=machine,
        budget_source=chosen.budget_source,
        data_files=chosen.data_files,
        telemetry=chosen.telemetry,
        # Before the first case, and for all of them: the figures must not depend on the cases before.
        host_allocator=set_host_allocator(chosen.host_allocator),
    )
    suite = Suite(config, context)
    config.stash[SESSION] = suite
    suite.made_storage = saving.route_storage(config, key)
    try:
        opened = suite.outputs.open(config, key, suite.run, ident)
    except (
        BaseException
    ):  # (a usage error, Ctrl-C while an earlier journal is recovered): none left open
        suite.outputs.close()
        raise
    suite.progress.notes, suite.progress.profile = opened.notes, opened.profile
    suite.progress.profile_note = opened.profile_note
    config.pluginmanager.register(suite, "fmnist-bench-suite")
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


@dataclass
class Progress:
    """What the session says as it goes: the cases left and their predicted cost, a line per finished case."""

    profile: Profile = field(default_factory=Profile)  # what the cases left are predicted from
    profile_note: str = "no earlier run of this machine"
    bench_ids: set[str] = field(default_factory=set)  # every case of the plan, by pytest node id
    remaining: list[tuple[str, str, dict]] = field(
        default_factory=list
    )  # (nodeid, family, params) not yet run
    case_started: dict[str, Stopwatch] = field(default_factory=dict)
    load_started: dict[str, float] = field(
        default_factory=dict
    )  # a case's start on the load's clock
    lines: dict[str, str] = field(
        default_factory=dict
    )  # a case's line, printed once pytest reported it
    notes: list[str] = field(default_factory=list)  # said before the first case: journals recovered
    current: object = None  # the benchmark fixture of the case running now

    def forget(self, nodeid: str) -> None:
        self.remaining = [r for r in self.remaining if r[0] != nodeid]


class Suite:
    """One `pytest bench` session: its context (fixed), the run's state, what it says as it goes, where it
    saves, the limits measured so far and the machine's load; its methods are the hooks."""

    def __init__(self, config: pytest.Config, context: RunContext) -> None:
        self.config = config
        self.context = context
        self.run = RunState()
        self.progress = Progress()
        self.outputs = saving.Outputs()
        self.board = (
            Board()
        )  # the limits measured so far in this run, that later cases are held against
        self.load = (
            MachineLoad()
        )  # how busy the whole machine is with other work, from start to end
        self.load_before = load_average()  # (1-minute load average, CPUs) before the first case
        self.used: dict[str, int] = {}  # images each split really held in this run
        self.session: pytest.Session | None = None
        # the results folder this session made (saving.route_storage), taken away if it saves nothing there
        self.made_storage: Path | None = None
        self.hold_signals = lambda: None
        self.restore_signals = lambda: None

    @property
    def plan(self) -> Plan:
        return self.context.plan

    def data_used(self, split: str, images: int) -> None:
        """A split's images as this run's cases have them (the fixtures say it): in the run, and its journal."""
        self.used[split] = images
        used = dict(self.used)
        self.to_journal(
            lambda journal: journal.note({"data_used": used})
        )  # a recovered run says it too

    def to_journal(self, write) -> bool:
        """write(journal), where the run keeps one; False (the run stopping) where it could not take it."""
        return self.outputs.write(write, self.run, self.session)

    # ---------------------------------------------------------------- what is said

    def write(self, text: str) -> None:
        """Say `text` on the terminal, each of its lines folded to fit WIDTH columns."""
        lines = [part for line in text.splitlines() for part in fold(line)]
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None:
            print("\n".join(lines), file=sys.stderr)
            return
        reporter.ensure_newline()
        for line in lines:
            reporter.write_line(line)

    def left(self) -> tuple[float | None, int]:
        """(predicted seconds of the cases not yet run, how many of them cannot be predicted yet);
        None when none can, from the earlier runs and every case finished so far."""
        costs = [
            case_cost(self.plan, family, params, self.progress.profile)
            for _id, family, params in self.progress.remaining
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
            return f"fmnist-bench: {cases(len(self.progress.remaining))}; no estimate yet ({self.progress.profile_note}): it comes as cases finish"
        more = f", +{cases(unknown)} not predictable" if unknown else ""
        total = self.progress.profile.outside()[0] + left_s
        return f"fmnist-bench: {cases(len(self.progress.remaining))}; estimated {format_seconds(total)}{more} ({self.progress.profile_note})"

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logreport(self, report) -> None:
        # After pytest's own word for the case (in verbose runs), the case's line.
        line = self.progress.lines.pop(report.nodeid, None)
        if line is not None:
            self.write(line)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_report_header(self, config: pytest.Config):
        # pytest-benchmark's line lists its defaults, which no case here runs with: it is reworded, and
        # what runs follows it.
        outcome = yield
        found = outcome.get_result()
        at = next((i for i, lines in enumerate(found) if pbench.is_its_header(lines)), len(found))
        if at < len(found):
            found[at] = pbench.header_said()
        # (pytest prints the hooks' lines last first: before it in the list is after it on the screen)
        found.insert(at, [part for line in self._header(config) for part in fold(line)])
        outcome.force_result(found)

    def _header(self, config: pytest.Config) -> list[str]:
        """What this run is, a line a subject: devices and data, the machine, where it saves, what runs."""
        plan, machine = self.plan, self.context.machine
        chosen = [flag for flag, used in self.context.budget_source.items() if used]
        warm = (
            "a whole epoch or pass"
            if plan.warmup_batches is None
            else f"{plan.warmup_batches} batches"
        )
        threads = ", ".join(
            f"{family} {'/'.join(map(str, plan.threads_for(family)))}" for family in FAMILIES
        )
        return [
            f"fmnist-bench: devices {', '.join(plan.devices)} (this machine has "
            f"{', '.join(available_devices())}); dataset {plan.dataset_name}; "
            f"{'quick' if plan.quick else 'full'} run",
            f"fmnist-bench: machine {machine.key} (its id from {machine.id_from})",
            f"fmnist-bench: saves to {config.option.benchmark_storage}",
            "fmnist-bench: what runs: each case's clock is DeviceClock(device) (synchronize, then "
            f"perf_counter); warm-up {warm}; rounds per case"
            + (f" (from {', '.join(chosen)})" if chosen else "")
            + ":",
            *(
                f"    {family} at least {b.min_rounds}, then until {b.max_time:g} s, at most {b.max_rounds}"
                for family, b in plan.budgets.items()
            ),
            *models_said(plan),
            f"fmnist-bench: CPU threads per family: {threads} (torch's default here: {plan.default_threads})",
            f"fmnist-bench: host allocator {saving.allocator_said(self.context.host_allocator)}",
            saving.load_said(self.load_before),
            *(
                f"fmnist-bench: {flag} has no effect here: each case warms up and calibrates itself "
                "(--warmup-batches)"
                for flag in UNUSED_BENCHMARK_OPTIONS
                if given(config, flag)
            ),
        ]

    # ---------------------------------------------------------------- the case matrix

    def _marks(self, device: str, family: str, pipeline: str | None = None) -> list:
        # A step of the ladder the device cannot run (a CUDA graph on the CPU); a device the machine
        # lacks was refused with the options, and is a skip here only if it went between the two.
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
        axes = list(FAMILY_AXES[family])
        # The model first where the run names models (a run of the CNN alone names none: the ids it always
        # had); the limits are the device's, of no model.
        if self.plan.models and family != "limits":
            axes.insert(0, "model")
        indirect = [axis for axis in ("cpu_threads", "model") if axis in axes]
        metafunc.parametrize(axes, cases_, indirect=indirect)

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
                self.progress.bench_ids.add(item.nodeid)
                self.progress.remaining.append((item.nodeid, family, dict(item.callspec.params)))
        self.run.planned = len(self.progress.bench_ids)
        self.to_journal(lambda journal: journal.note({"planned_cases": self.run.planned}))
        for note in self.progress.notes:  # journals of killed runs, saved before this one starts
            self.write(note)
        if not session.config.option.collectonly and self.progress.remaining:
            self.write(self.estimate_line())

    # ---------------------------------------------------------------- each case's outcome

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(self, item: pytest.Item):
        # A case's cost: its call, not its setup (the first case to need the data or the trained
        # weights builds them in its setup; that is the run's cost, counted outside the cases).
        if item.nodeid in self.progress.bench_ids:
            self.progress.case_started[item.nodeid] = Stopwatch()
            self.progress.load_started[item.nodeid] = self.load.mark()
            # (pytest drops funcargs if the case is cut short)
            self.progress.current = (item.funcargs or {}).get("benchmark")
        yield

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        outcome = yield
        if item.nodeid not in self.progress.bench_ids:
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
                self.progress.forget(item.nodeid)
                return
            self._finished(item, stats)

    def _lost(self, item: pytest.Item, kind: str, record: dict, said: str) -> None:
        """A case that was skipped or failed: recorded in the run (and its journal), and said on its line."""
        getattr(self.run, kind).append(record)
        self.to_journal(lambda journal: journal.note({kind: record}))
        self.progress.forget(item.nodeid)
        self.progress.lines[item.nodeid] = self.line(_family(item) or "", item.callspec.id, said)

    def _finished(self, item: pytest.Item, stats) -> None:
        started = self.progress.case_started.pop(item.nodeid, None)
        wall_s = started() if started is not None else None
        stats.extra_info["wall_s"] = wall_s
        stats.extra_info["machine_load"] = self.load.case(
            self.progress.load_started.pop(item.nodeid, self.load.clock())
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
        self.run.cases_s += wall_s or 0.0
        self.run.finished.append(stats)
        record = pbench.as_record(stats)
        kept = self.to_journal(lambda journal: journal.add(record))
        self.progress.forget(item.nodeid)
        obs = observation(record, self.plan.default_threads)
        if obs is not None:
            # what is left is predicted from the earlier run and every case so far
            self.progress.profile.add(obs)
        links = self.context.machine.links
        # not a finished case's line: nothing but the run's save, which may fail too, holds it
        if not kept:
            self.progress.lines[item.nodeid] = (
                f"fmnist-bench: {_family(item)} {item.callspec.id} was measured, but its journal line could not be "
                f"written ({self.outputs.journal_failed}): it is kept only if the run's save succeeds; the run stops here"
            )
            return
        self.progress.lines[item.nodeid] = self.line(
            _family(item) or "", item.callspec.id, case_headline(record, links)
        )

    @pytest.hookimpl(tryfirst=True)
    def pytest_report_teststatus(self, report, config: pytest.Config):
        # A case's progress line stands for it: no dot or s beside it (verbose runs keep pytest's
        # word).
        if report.nodeid not in self.progress.bench_ids or report.nodeid not in self.progress.lines:
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

    @pytest.hookimpl(tryfirst=True)  # (before the terminal draws its first rule)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.session = session
        # pytest draws its rules and pads its progress to the terminal's width: in a bench session no
        # line is wider than the answer's (a terminal of 180 columns drew 180-column rules).
        writer = session.config.get_terminal_writer()
        writer.fullwidth = min(writer.fullwidth, WIDTH)
        # pytest-benchmark's four tables run to some 240 columns and 80 lines before the answer; the
        # saved run keeps every figure they show.
        if not session.config.option.benchmark_tables:
            pbench.hide_tables(session.config)
        self.outputs.start(session, self.run)

    @pytest.hookimpl(hookwrapper=True, tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus):
        self.hold_signals()  # from here a stop signal is ignored: the save is not cut short
        self.load.stop()
        pbench.drop_unstarted(self.progress.current)
        saving.keep_finished(session, self.run, self.progress.bench_ids, exitstatus)
        yield
        self.outputs.finish(session, self.run, self.write)

    def pytest_benchmark_update_machine_info(
        self, config: pytest.Config, machine_info: dict
    ) -> None:
        saving.update_machine_info(
            self.context, self.run, self.load.record(), self.used, machine_info
        )

    # after pytest-benchmark's tables (--benchmark-tables), before pytest's own short summary
    @pytest.hookimpl(trylast=True)
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
        # the run is saved: a fault in its wording must not turn it into an error
        except Exception as exc:
            lines = [
                f"The answer could not be worded ({type(exc).__name__}: {exc}); the run is saved: "
                "python -m bench report gives its figures."
            ]
        for line in lines:
            terminalreporter.write_line(line)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self.restore_signals()
        self.outputs.close()
        saving.left_empty(self.made_storage)
        for name in ("fmnist-bench-fixtures", "fmnist-bench-suite"):
            plugin = config.pluginmanager.get_plugin(name)
            if plugin is not None:
                config.pluginmanager.unregister(plugin)
