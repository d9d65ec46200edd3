"""The suite's pytest plugin: options, the case matrix, machine info, the journal, progress and the end-of-run answer."""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
from pathlib import Path

import pytest
import torch

from fmnist_model import (
    DEFAULT_DOWNLOAD_TIMEOUT,
    DEFAULT_ROOT,
    SOURCES,
    SPLIT_SIZES,
    DataError,
    DataNotFoundError,
    Network,
    check_fashion_mnist,
    download_fashion_mnist,
    load_split,
    make_optimizer,
    predict,
    resolve_source,
    train_epoch_resident,
)
from fmnist_model.pipelines import unsupported_reason

from .allocator import MODES, set_host_allocator
from .cost import Profile, case_cost, format_seconds, observation
from .journal import Journal, JournalError, find_journals, recover, save_whole, write_whole
from .machine import cpu_model, machine_key, nvml_info, torch_info
from .plan import (
    FAMILIES,
    FAMILY_AXES,
    MAX_CASE_TIME,
    MAX_DOWNLOAD_TIMEOUT,
    MAX_MIN_ROUNDS,
    Plan,
    available_devices,
    case_id,
    device_unavailable_reason,
    parse_batch_sizes,
    parse_cpu_threads,
    parse_devices,
    parse_ladder,
    parse_machine_name,
    parse_pipelines,
    parse_seconds,
    parse_warmup_batches,
    plan_from_options,
)
from .progress import case_headline, cases, end_summary, progress_line
from .runstate import RunState, drop_lineless_entries, install_stop_signals
from .telemetry import PERIOD_S, Telemetry, add_per_images
from .timing import DeviceClock, Stopwatch

# Bumped when the saved-run format changes in a way the report must know about.
# 1: first format (machine_info torch/gpus/nvml/dataset/fmnist_bench; params and extra_info per family).
# 2: params gain cpu_threads; extra_info gains warmup, budget, wall_s and (inference) latency;
#    an inference round may be a bounded pass (extra_info.images is per round);
#    machine_info.fmnist_bench gains run (complete, planned/finished cases, failed, skipped, ended);
#    machine_info.dataset's image counts are those the run's cases really had (null: no case
#    used that split), and it gains files (the real files' own counts).
# 3: the optimisation ladder: train pipelines beyond seed and resident; inference params gain
#    pipeline (runs of format 2 ran inference_mode); extra_info gains pipeline_config, and where
#    they apply prepare (compile or capture time), breakdown (torch.profiler) and agreement (inference).
#    machine_info.fmnist_bench gains machine_name (--machine-name; null when not named), and every
#    case extra_info.telemetry (what the hardware did during its timed rounds; bench/telemetry.py).
# 4: CPU figures are measured with glibc keeping freed blocks (machine_info.fmnist_bench.host_allocator,
#    --host-allocator; before, each case paid for page faults that depended on the cases before it);
#    both families' ladders gain channels_last_bf16; extra_info.telemetry.host gains minor_faults_per_round
#    (and, under keep, peak_rss_bytes includes the freed blocks earlier cases left for reuse).
#    host_allocator holds mode and library, and under keep how and keep_bytes (the first runs of format 4,
#    before commit 38f2c19, wrote mmap_threshold_bytes and trim_threshold_bytes instead of those two).
#    Added within format 4, optional for a reader: extra_info.breakdown.device_work (CUDA, from commit
#    4ccfe17) and breakdown.host_work (CPU, from commit 193afa9), the profiled epoch's costliest operations.
FORMAT_VERSION = 4

_STATE = pytest.StashKey["Suite"]()
# pytest-benchmark options for its own calibration and warm-up, which pedantic rounds do not use.
_UNUSED_BENCHMARK_OPTIONS = (
    "--benchmark-min-time",
    "--benchmark-calibration-precision",
    "--benchmark-warmup",
    "--benchmark-warmup-iterations",
)
_PYTEST_BENCHMARK_DEFAULT_STORAGE = "file://./.benchmarks"  # pytest-benchmark's own default
# Images the untimed training behind the inference cases sees: enough for a sane accuracy
# (0.98 on the synthetic set after 6,000), a fraction of an epoch's cost.
_WEIGHTS_IMAGES = 10_000


class Suite:
    """Everything this plugin keeps for one session; registered as a plugin for the hooks that get no config."""

    def __init__(self, config: pytest.Config, plan: Plan, machine: dict, budget_source: dict) -> None:
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
        self.lines: dict[str, str] = {}  # a case's progress line, printed once pytest has reported it
        self.saved = False
        self.save_errors: list[str] = []
        self.hold_signals = lambda: None
        self.restore_signals = lambda: None
        self.notes: list[str] = []  # said before the first case: journals recovered at the start
        self.data_files: dict | None = None  # images in the real files, when they are used
        self.data_used: dict[str, int] = {}  # images each split really held in this run
        self.current = None  # the benchmark fixture of the case running now
        self.telemetry = True  # --telemetry: observe each case's timed rounds
        self.host_allocator: dict = {}  # --host-allocator: what the run's C library allocator was held to

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logreport(self, report) -> None:
        # After pytest's own word for the case (in verbose runs), the case's line.
        line = self.lines.pop(report.nodeid, None)
        if line is None:
            return
        _write(self.config, line)

    def left(self) -> tuple[float | None, int]:
        """(predicted seconds of the cases not yet run, how many of them cannot be predicted yet);
        None when none can, from the earlier runs and every case finished so far."""
        costs = [case_cost(self.plan, family, params, self.profile) for _id, family, params in self.remaining]
        unknown = sum(c.seconds is None for c in costs)
        if costs and unknown == len(costs):
            return None, unknown
        return sum(c.seconds for c in costs if c.seconds is not None), unknown

    def line(self, family: str, param: str, text: str) -> str:
        """The progress line of a case just done: counts, time, what is left, and its figure."""
        left_s, unknown = self.left()
        done = len(self.run.finished) + len(self.run.failed) + len(self.run.skipped)
        return progress_line(done, self.run.planned, f"{family} {param}", text, self.run.stopwatch(), left_s, unknown)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("fmnist-bench")
    group.addoption(
        "--devices",
        default=None,
        help="comma-separated devices to measure, e.g. cpu,cuda:0 (default: every device this machine has)",
    )
    group.addoption(
        "--batch-sizes",
        default=None,
        help="comma-separated batch sizes for training and inference "
        "(default: train 100,1000,10000; inference 1,10,100,1000,10000)",
    )
    group.addoption(
        "--cpu-threads",
        default=None,
        help="comma-separated CPU intra-op thread counts for the cpu cases; 'default' is torch's own choice "
        "(default: 1 and torch's for copies and inference, torch's for training)",
    )
    group.addoption(
        "--warmup-batches",
        default="2",
        help="warm-up before each case's timed rounds: this many batches (plus the epoch's last, smaller one), "
        "or 'all' for a whole epoch or pass (default: 2)",
    )
    group.addoption(
        "--pipelines",
        default=None,
        help="comma-separated pipelines of the optimisation ladder to run, or all "
        "(default: every step but compile and compile_cuda_graph; all adds them)",
    )
    group.addoption(
        "--ladder",
        default="default",
        help="default: every pipeline at batch size 1,000 and the cheap ones at every size; "
        "full: every pipeline at every batch size, thread count and mode (default: default)",
    )
    group.addoption(
        "--quick",
        action="store_true",
        help="smoke run: small subsets, short sweeps, one timed round (well under a minute on 2 cores)",
    )
    group.addoption(
        "--dataset",
        choices=SOURCES,
        default="auto",
        help="auto (real FashionMNIST when its files are under --data-root, else synthetic), "
        "fashion-mnist or synthetic (default: auto)",
    )
    group.addoption(
        "--machine-name",
        default=None,
        help="a name for this machine, recorded in the run and used for its results folder and its label in "
        "reports (default: its host name; name machines that share one, as cloud VMs often do)",
    )
    group.addoption("--data-root", default=str(DEFAULT_ROOT), help="where FashionMNIST/raw/ is (default: data)")
    group.addoption("--download", action="store_true", help="download FashionMNIST into --data-root if missing")
    group.addoption(
        "--download-timeout",
        default=str(DEFAULT_DOWNLOAD_TIMEOUT),
        help=f"seconds to wait for each reply while downloading (default: {DEFAULT_DOWNLOAD_TIMEOUT:g})",
    )
    group.addoption(
        "--telemetry",
        choices=("on", "off"),
        default="on",
        help=f"sample power, energy, clocks, CPU load and memory across each case's timed rounds "
        f"every {PERIOD_S:g} s (default: on)",
    )
    group.addoption(
        "--host-allocator",
        choices=MODES,
        default="keep",
        help="keep: glibc keeps freed blocks for reuse, so no case pays for the page faults the cases "
        "before it left (bench/allocator.py); default: glibc as it is (default: keep)",
    )


def _given(config: pytest.Config, flag: str) -> bool:
    """Whether `flag` was on the command line (or PYTEST_ADDOPTS, or the ini addopts), not just defaulted."""
    args = [*config.invocation_params.args, *shlex.split(os.environ.get("PYTEST_ADDOPTS", ""))]
    args += config.getini("addopts")
    return any(a == flag or a.startswith(f"{flag}=") for a in args)


def _storage_folder(storage: str) -> Path | None:
    """The folder of a file:// storage (or a bare path, as pytest-benchmark accepts); None for elasticsearch."""
    if "://" not in storage:
        return Path(storage).resolve()
    if storage.startswith("file://"):
        return Path(storage[len("file://") :]).resolve()
    return None


def pytest_configure(config: pytest.Config) -> None:
    # Every option is checked here, before collection: a bad value is a usage error naming it.
    opt = config.option
    if not hasattr(opt, "devices"):  # our options are not registered: not a `pytest bench` session
        return
    default_threads = torch.get_num_threads()
    parsed = {}
    for name, parse, value in (
        ("--devices", parse_devices, opt.devices),
        ("--batch-sizes", parse_batch_sizes, opt.batch_sizes),
        ("--cpu-threads", lambda text: parse_cpu_threads(text, default_threads), opt.cpu_threads),
        ("--warmup-batches", parse_warmup_batches, opt.warmup_batches),
        ("--machine-name", parse_machine_name, opt.machine_name),
        ("--pipelines", parse_pipelines, opt.pipelines),
        ("--ladder", parse_ladder, opt.ladder),
    ):
        try:
            parsed[name] = parse(value) if value is not None else None
        except ValueError as exc:
            raise pytest.UsageError(f"{name}: {exc}") from None
    try:
        download_timeout = parse_seconds(opt.download_timeout, most=MAX_DOWNLOAD_TIMEOUT)
    except ValueError as exc:
        raise pytest.UsageError(f"--download-timeout: {exc}") from None
    # pytest-benchmark's own round options, honoured when given: they replace every family's.
    # (pytest-benchmark checks that they are positive; the upper bounds are ours.)
    min_rounds = opt.benchmark_min_rounds if _given(config, "--benchmark-min-rounds") else None
    max_time = float(opt.benchmark_max_time) if _given(config, "--benchmark-max-time") else None
    if min_rounds is not None and min_rounds > MAX_MIN_ROUNDS:
        raise pytest.UsageError(f"--benchmark-min-rounds: {min_rounds:,} is more than {MAX_MIN_ROUNDS:,}")
    if max_time is not None and not 0 <= max_time <= MAX_CASE_TIME:  # (nan fails this too)
        raise pytest.UsageError(
            f"--benchmark-max-time: {max_time:g} is not a number of seconds from 0 to {MAX_CASE_TIME:,}"
        )
    plan = plan_from_options(
        devices=parsed["--devices"],
        batch_sizes=parsed["--batch-sizes"],
        quick=opt.quick,
        dataset=opt.dataset,
        data_root=opt.data_root,
        download=opt.download,
        dataset_name=_data_for(opt, download_timeout),
        default_threads=default_threads,
        cpu_threads=parsed["--cpu-threads"],
        warmup_batches=parsed["--warmup-batches"],
        min_rounds=min_rounds,
        max_time=max_time,
        pipelines=parsed["--pipelines"],
        ladder=parsed["--ladder"],
    )
    files = _check_data(plan)

    # The machine as it is at the start of the run (an idle GPU's clocks, link and temperature).
    nvml, gpus = nvml_info()
    gpu_names = [d["name"] for d in torch_info()["cuda_devices"]]
    name = parsed["--machine-name"]
    key = machine_key(platform.node(), cpu_model(), gpu_names, name)
    suite = Suite(
        config,
        plan,
        {"nvml": nvml, "gpus": gpus, "machine_key": key, "machine_name": name},
        {"--benchmark-min-rounds": min_rounds is not None, "--benchmark-max-time": max_time is not None},
    )
    suite.data_files = files
    suite.telemetry = opt.telemetry == "on"
    # Before the first case, and for all of them: the figures must not depend on the cases before.
    suite.host_allocator = set_host_allocator(opt.host_allocator)
    config.stash[_STATE] = suite

    # Saved runs go to results/<machine key>/ unless --benchmark-storage says otherwise:
    # one folder per machine, so results/ folders from many machines merge by copying.
    # pytest-benchmark reads these options in its own pytest_configure, which runs last.
    if opt.benchmark_storage == _PYTEST_BENCHMARK_DEFAULT_STORAGE:
        opt.benchmark_storage = f"file://{config.rootpath / 'results' / key}"
    opt.benchmark_save_data = True  # keep every round's time: the report computes percentiles from them
    _open_outputs(config, suite)
    config.pluginmanager.register(suite, "fmnist-bench-suite")
    suite.hold_signals, suite.restore_signals = install_stop_signals(suite.run)


def _data_for(opt, download_timeout: float) -> str:
    """The data this run will use, downloaded first if asked: every data error is a usage error here."""
    try:
        name = resolve_source(opt.dataset, opt.data_root, opt.download)
    except DataError as exc:  # the folder cannot be looked into
        raise pytest.UsageError(f"--data-root: {exc}") from None
    if name == "fashion-mnist" and opt.download:
        try:
            download_fashion_mnist(
                opt.data_root, timeout=download_timeout, say=lambda line: print(line, file=sys.stderr)
            )
        except DataError as exc:
            raise pytest.UsageError(f"--download: {exc}") from None
    return name


def _check_data(plan: Plan) -> dict | None:
    """Before any case: the real files hold what this run's plan needs, or it does not start.

    A run is never silently smaller than its plan: files with fewer images than the plan uses
    (60,000 and 10,000; 2,000 and 1,000 with --quick) are a usage error. Returns the files' counts.
    """
    if plan.dataset_name != "fashion-mnist":
        return None
    try:
        counts = check_fashion_mnist(plan.data_root)
    except DataNotFoundError as exc:
        raise pytest.UsageError(
            f"--dataset fashion-mnist: {exc} (The suite's options: --download, --dataset synthetic.)"
        ) from None
    except DataError as exc:
        raise pytest.UsageError(f"--data-root: {exc}") from None
    for split, planned in (
        ("train", plan.train_images or SPLIT_SIZES[True]),
        ("test", plan.test_images or SPLIT_SIZES[False]),
    ):
        if counts[split] < planned:
            raise pytest.UsageError(
                f"--data-root: the FashionMNIST {split} files under {plan.data_root}/FashionMNIST/raw hold "
                f"{counts[split]:,} images; this run's plan uses {planned:,}{' (--quick)' if plan.quick else ''}. "
                "Put the complete files there (or remove these and add --download), or use --dataset synthetic."
            )
    return counts


def _open_outputs(config: pytest.Config, suite: Suite) -> None:
    """Before any case: prove that where results go can be written, and start the journal there."""
    from pytest_benchmark.utils import get_machine_id

    opt = config.option
    json_path = opt.benchmark_json
    if isinstance(json_path, (str, os.PathLike)):
        parent = Path(json_path).resolve().parent
        if not parent.is_dir() or not os.access(parent, os.W_OK):
            raise pytest.UsageError(f"--benchmark-json: cannot write {json_path}: {parent} is not a writable folder")
    folder = _storage_folder(opt.benchmark_storage)
    if folder is None:  # elasticsearch: pytest-benchmark's own save, without a journal
        return
    runs = folder / get_machine_id()
    disabled = opt.benchmark_disable and not opt.benchmark_enable  # as pytest-benchmark decides
    if (opt.benchmark_save or opt.benchmark_autosave) and not disabled and not opt.collectonly:
        try:
            suite.journal = Journal(runs)
        except JournalError as exc:
            raise pytest.UsageError(f"--benchmark-storage: {exc}") from None
        # A killed run of this machine left its journal: save what it finished before going on.
        for journal in find_journals([runs]):
            if journal != suite.journal.path:
                try:
                    suite.notes.append(f"fmnist-bench: an earlier run was killed: {recover(journal)[1]}")
                except OSError as exc:
                    suite.notes.append(f"fmnist-bench: could not recover {journal}: {exc}")
    # Earlier runs of this machine tell how long this one will take.
    suite.profile, suite.profile_note = _profile_from(runs)


def _profile_from(folder: Path) -> tuple[Profile, str]:
    """What this machine's saved runs (all of them; see Profile.from_runs) predict of this one."""
    runs = []
    for path in sorted(folder.glob("[0-9][0-9][0-9][0-9]_*.json")):
        try:
            run = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # not readable: the report names it; here it only predicts nothing
        if isinstance(run, dict) and isinstance(run.get("benchmarks"), list):
            runs.append((path.name, run))
    if not runs:
        return Profile(), "no earlier run of this machine"
    return Profile.from_runs(runs), f"from {len(runs)} earlier run{'s' if len(runs) != 1 else ''} of this machine"


def pytest_sessionstart(session: pytest.Session) -> None:
    suite = session.config.stash.get(_STATE, None)
    bs = getattr(session.config, "_benchmarksession", None)
    if suite is None or bs is None:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and reporter.verbosity <= 0:
        reporter.showfspath = False  # a line per case says more than a file name and its dots
    # pytest-benchmark writes a run with open('w'): a full disk leaves a truncated file. Ours is
    # written to a temporary file and then linked to its numbered name (journal.save_whole).
    storage = bs.storage
    if suite.journal is not None and hasattr(storage, "get"):
        folder = suite.journal.folder

        def save(output_json: dict, save_name: str) -> None:
            if not suite.run.complete:  # named as a recovered run is, so `ls` tells it from a whole one
                save_name = f"{save_name}_partial"
            try:
                path = save_whole(folder, save_name, output_json)
            except OSError as exc:
                suite.save_errors.append(f"could not save the run in {folder}: {exc}")
                return
            suite.saved = True
            suite.journal.saved_as(path)  # should the journal outlive this process, recovery knows
            bs.logger.info(f"Saved benchmark data in: {path}")

        storage.save = save
    if isinstance(bs.json, (str, os.PathLike)):
        json_path = Path(bs.json)

        def save_json(output_json: dict) -> None:
            from pytest_benchmark.utils import safe_dumps

            try:
                write_whole(json_path, safe_dumps(output_json, ensure_ascii=True, indent=4).encode())
            except OSError as exc:
                suite.save_errors.append(f"could not write {json_path}: {exc}")
                return
            bs.logger.info(f"Wrote benchmark data in: {json_path}", purple=True)

        bs.save_json = save_json
    if suite.journal is not None:
        from pytest_benchmark import __version__

        commit_info = session.config.hook.pytest_benchmark_generate_commit_info(config=session.config)
        session.config.hook.pytest_benchmark_update_commit_info(config=session.config, commit_info=commit_info)
        suite.journal.start(
            {
                "machine_info": bs.get_machine_info(),
                "commit_info": commit_info,
                "save_name": bs.save or bs.autosave,
                "version": __version__,
            }
        )


def _device_marks(device: str, family: str, plan: Plan, pipeline: str | None = None) -> list:
    # A device the machine lacks, or a step of the ladder the device cannot run (a CUDA graph on the CPU).
    reason = device_unavailable_reason(device) or (pipeline and unsupported_reason(pipeline, device))
    if reason is not None:
        return [pytest.mark.skip(reason=reason)]
    budget = plan.budgets[family]
    # pytest-benchmark reads its timer and the options it records in each benchmark from this
    # mark: one clock per device (synchronizing it), and the round budget this case really has.
    return [
        pytest.mark.benchmark(
            timer=DeviceClock(device),
            min_rounds=budget.min_rounds,
            max_time=budget.max_time,
            # Saved as options.warmup: the warm-up calls before the rounds (extra_info.warmup says what they were).
            warmup=True,
            warmup_iterations=2 if family == "transfer" else 1,
        )
    ]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    suite = metafunc.config.stash.get(_STATE, None)
    family = getattr(metafunc.module, "FAMILY", None)
    if suite is None or family not in FAMILY_AXES:
        return
    plan = suite.plan
    axes = list(FAMILY_AXES[family])
    metafunc.parametrize(
        axes,
        [
            pytest.param(
                *case.values(),
                id=case_id(case),
                marks=_device_marks(case["device"], family, plan, case.get("pipeline")),
            )
            for case in plan.cases(family)
        ],
        indirect=["cpu_threads"],
    )


@pytest.hookimpl(tryfirst=True)
def pytest_keyboard_interrupt(excinfo: pytest.ExceptionInfo) -> None:
    # Before the terminal reporter formats it: a frame without a line number would crash that.
    drop_lineless_entries(excinfo)


def _no_case(item: pytest.Item) -> bool:
    family = getattr(getattr(item, "module", None), "FAMILY", None)
    params = getattr(getattr(item, "callspec", None), "params", {})
    return family in FAMILY_AXES and any(not isinstance(v, (str, int, float)) for v in params.values())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.stash.get(_STATE, None) is None:
        return
    # A family with no case in the plan (--pipelines naming only the other family's steps) is
    # parametrized with nothing, and pytest makes one placeholder item of it: not a case, deselected.
    empty = [item for item in items if _no_case(item)]
    if empty:
        config.hook.pytest_deselected(items=empty)
        items[:] = [item for item in items if not _no_case(item)]
    # Cheapest family first: an interrupted run has kept the most cases (stable: the matrix order stays).
    order = {family: i for i, family in enumerate(FAMILIES)}
    items.sort(key=lambda item: order.get(getattr(getattr(item, "module", None), "FAMILY", None), len(order)))


def pytest_collection_finish(session: pytest.Session) -> None:
    suite = session.config.stash.get(_STATE, None)
    if suite is None:
        return
    for item in session.items:
        family = getattr(getattr(item, "module", None), "FAMILY", None)
        if family in FAMILY_AXES and hasattr(item, "callspec"):
            suite.bench_ids.add(item.nodeid)
            suite.remaining.append((item.nodeid, family, dict(item.callspec.params)))
    suite.run.planned = len(suite.bench_ids)
    if suite.journal is not None:
        suite.journal.note({"planned_cases": suite.run.planned})
    for note in suite.notes:  # journals of killed runs, saved before this one starts
        _write(session.config, note)
    if not session.config.option.collectonly and suite.remaining:
        _write(session.config, _estimate_line(suite))


def _estimate_line(suite: Suite) -> str:
    left_s, unknown = suite.left()
    if left_s is None:
        return f"fmnist-bench: {cases(len(suite.remaining))}; no estimate yet ({suite.profile_note}): it comes as cases finish"
    more = f", +{cases(unknown)} not predictable" if unknown else ""
    total = suite.profile.outside()[0] + left_s
    return (
        f"fmnist-bench: {cases(len(suite.remaining))}; estimated {format_seconds(total)}{more} ({suite.profile_note})"
    )


def _write(config: pytest.Config, line: str) -> None:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        print(line, file=sys.stderr)
        return
    reporter.ensure_newline()
    reporter.write_line(line)


def pytest_report_header(config: pytest.Config) -> list[str]:
    suite = config.stash.get(_STATE, None)
    if suite is None:
        return []
    plan, machine = suite.plan, suite.machine
    budgets = "; ".join(
        f"{family} at least {b.min_rounds}, then until {b.max_time:g} s, at most {b.max_rounds}"
        for family, b in plan.budgets.items()
    )
    given = [flag for flag, used in suite.budget_source.items() if used]
    warm = "a whole epoch or pass" if plan.warmup_batches is None else f"{plan.warmup_batches} batches"
    threads = ", ".join(f"{family} {'/'.join(map(str, plan.threads_for(family)))}" for family in FAMILIES)
    return [
        f"fmnist-bench: devices {', '.join(plan.devices)} (available here: {', '.join(available_devices())}); "
        f"dataset {plan.dataset_name}; {'quick' if plan.quick else 'full'} run",
        f"fmnist-bench: machine {machine['machine_key']}; saves to {config.option.benchmark_storage}",
        f"fmnist-bench: what runs (not pytest-benchmark's defaults above): each case's clock is "
        f"DeviceClock(device) (synchronize, then perf_counter); warm-up {warm}; rounds per case: {budgets}"
        + (f" (from {', '.join(given)})" if given else ""),
        f"fmnist-bench: CPU threads per family: {threads} (torch's default here: {plan.default_threads})",
        f"fmnist-bench: host allocator {_allocator_said(suite.host_allocator)}",
        *(
            f"fmnist-bench: {flag} has no effect here: each case warms up and calibrates itself (--warmup-batches)"
            for flag in _UNUSED_BENCHMARK_OPTIONS
            if _given(config, flag)
        ),
    ]


def _allocator_said(record: dict) -> str:
    if record.get("mode") == "keep":
        how = "" if record.get("how") == "mmap threshold" else f" ({record.get('how')})"
        preload = f"; LD_PRELOAD={record['preload']}" if record.get("preload") else ""
        return (
            f"{record['library']}, keeping freed blocks up to {record['keep_bytes'] >> 20:,} MiB for reuse{how} "
            f"(--host-allocator keep){preload}"
        )
    why = f": {record['reason']}" if record.get("reason") else " (--host-allocator default)"
    preload = f"; LD_PRELOAD={record['preload']}" if record.get("preload") else ""
    return (
        f"{record.get('library', 'unknown')} as it is{why}; CPU cases' page faults depend on the cases before them"
        + preload
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item):
    # A case's cost: its call, not its setup (the first case to need the data or the trained
    # weights builds them in its setup; that is the run's cost, counted outside the cases).
    suite = item.config.stash.get(_STATE, None)
    if suite is not None and item.nodeid in suite.bench_ids:
        suite.case_started[item.nodeid] = Stopwatch()
        suite.current = (item.funcargs or {}).get("benchmark")  # (pytest drops funcargs if the case is cut short)
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    suite = item.config.stash.get(_STATE, None)
    if suite is None or item.nodeid not in suite.bench_ids:
        return
    report = outcome.get_result()
    if report.skipped and call.when in ("setup", "call"):
        reason = _reason(report)
        _lost(suite, item, "skipped", {"name": item.name, "reason": reason}, f"skipped: {reason}")
    elif report.failed and any(s.fullname == item.nodeid for s in suite.run.finished):
        # Its teardown failed after the case had finished: the figure stands, the run says so.
        record = {"name": item.name, "when": call.when, "reason": _reason(report), "figure": "kept: measured before"}
        suite.run.failed.append(record)
        if suite.journal is not None:
            suite.journal.note({"failed": record})
    elif report.failed:
        reason = _reason(report)
        record = {"name": item.name, "when": call.when, "reason": reason}
        _lost(suite, item, "failed", record, f"FAILED, not saved: {reason}")
    elif call.when == "call" and report.passed:
        fixture = getattr(item, "funcargs", {}).get("benchmark")
        stats = getattr(fixture, "stats", None)
        if not stats:  # --benchmark-disable, or a test that never timed anything
            _forget(suite, item.nodeid)
            return
        _finished(item, suite, stats)


def _reason(report) -> str:
    if report.skipped and isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    text = getattr(report, "longreprtext", "") or str(report.longrepr)
    lines = [line for line in text.splitlines() if line.startswith("E ")]
    return (lines[0][1:].strip() if lines else text.strip().splitlines()[-1] if text.strip() else "failed")[:500]


def _lost(suite: Suite, item: pytest.Item, kind: str, record: dict, said: str) -> None:
    """A case that was skipped or failed: recorded in the run (and its journal), and said on its line."""
    getattr(suite.run, kind).append(record)
    if suite.journal is not None:
        suite.journal.note({kind: record})
    _forget(suite, item.nodeid)
    suite.lines[item.nodeid] = suite.line(_family(item), item.callspec.id, said)


def _forget(suite: Suite, nodeid: str) -> None:
    suite.remaining = [r for r in suite.remaining if r[0] != nodeid]


def _family(item: pytest.Item) -> str:
    return getattr(getattr(item, "module", None), "FAMILY", "")


def _finished(item: pytest.Item, suite: Suite, stats) -> None:
    started = suite.case_started.pop(item.nodeid, None)
    stats.extra_info["wall_s"] = started() if started is not None else None
    add_per_images(stats.extra_info)
    suite.run.cases_s += stats.extra_info["wall_s"] or 0.0
    suite.run.finished.append(stats)
    record = stats.as_dict(include_data=True)
    if suite.journal is not None:
        suite.journal.add(record)
    _forget(suite, item.nodeid)
    obs = observation(record, suite.plan.default_threads)
    if obs is not None:
        suite.profile.add(obs)  # what is left is predicted from the earlier run and every case so far
    links = {g.get("cuda_device"): g.get("pcie_gbps_max") for g in suite.machine["gpus"] if g.get("cuda_device")}
    suite.lines[item.nodeid] = suite.line(_family(item), item.callspec.id, case_headline(record, links))


@pytest.hookimpl(tryfirst=True)
def pytest_report_teststatus(report, config: pytest.Config):
    # A case's progress line stands for it: no dot or s beside it (verbose runs keep pytest's word).
    suite = config.stash.get(_STATE, None)
    if suite is None or report.nodeid not in suite.bench_ids or report.nodeid not in suite.lines:
        return None
    if report.passed:
        return "passed", "", "PASSED"
    if report.skipped:
        return "skipped", "", "SKIPPED"
    return "failed", "", "FAILED"


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus):
    suite = session.config.stash.get(_STATE, None)
    bs = getattr(session.config, "_benchmarksession", None)
    if suite is not None:
        suite.hold_signals()  # from here a stop signal is ignored: the save is not cut short
        # A case stopped in its warm-up never called pytest-benchmark: it is dropped, not "unused".
        if suite.current is not None and suite.current.stats is None:
            suite.current.skipped = True
        if suite.run.ended is None and exitstatus == pytest.ExitCode.INTERRUPTED:
            suite.run.ended = "interrupted"
        elif suite.run.ended is None and (session.shouldstop or session.shouldfail):
            suite.run.ended = f"stopped early: {session.shouldstop or session.shouldfail}"
        if bs is not None:
            # Only cases that finished and passed their checks are saved: a case cut short (no
            # rounds, or fewer than planned) or one that failed would be saved as if measured.
            finished = {id(s) for s in suite.run.finished}
            bs.benchmarks[:] = [b for b in bs.benchmarks if b.fullname not in suite.bench_ids or id(b) in finished]
    yield
    if suite is None:
        return
    journal = suite.journal
    if journal is not None:
        kept = journal.cases > 0 and not suite.saved
        journal.close(keep=kept)
        if kept:
            suite.save_errors.append(
                f"The {journal.cases} finished cases are kept in {journal.path}; once the folder can take them, "
                f"`python -m bench.recover {journal.folder}` saves them as a run"
            )
    if suite.save_errors:
        _write(session.config, "fmnist-bench: " + ". ".join(suite.save_errors) + ".")
        if session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.INTERNAL_ERROR


@pytest.hookimpl(tryfirst=True)
def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    suite = config.stash.get(_STATE, None)
    if suite is None or config.option.collectonly or not suite.run.planned or not suite.run.finished:
        return  # (nothing measured: --benchmark-disable, or stopped before the first case finished)
    records = [s.as_dict(include_data=False) for s in suite.run.finished]
    terminalreporter.section("fmnist-bench: is the GPU faster here?", sep="=", bold=True)
    for line in end_summary(records, default_threads=suite.plan.default_threads, run=suite.run.record()):
        terminalreporter.write_line(line)


def pytest_unconfigure(config: pytest.Config) -> None:
    suite = config.stash.get(_STATE, None)
    if suite is None:
        return
    suite.restore_signals()
    if config.pluginmanager.is_registered(suite):  # not when configure stopped at a usage error
        config.pluginmanager.unregister(suite)
    if suite.journal is not None:
        suite.journal.close(keep=suite.journal.cases > 0 and not suite.saved)


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    suite = config.stash.get(_STATE, None)
    if suite is None:
        return
    plan, machine = suite.plan, suite.machine
    machine_info["torch"] = torch_info()
    machine_info["torch"]["threads"] = plan.default_threads  # torch's own choice, not the last case's
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
    machine_info["fmnist_bench"] = {
        "format": FORMAT_VERSION,
        "machine_key": machine["machine_key"],
        "machine_name": machine["machine_name"],  # null: not named; reports label it by what it is
        "plan": plan.summary(),
        "budget_options": suite.budget_source,
        "telemetry": {"state": "on", "period_s": PERIOD_S} if suite.telemetry else {"state": "off"},
        "host_allocator": suite.host_allocator,
        "run": suite.run.record(),
    }


@pytest.fixture(scope="session")
def plan(pytestconfig: pytest.Config) -> Plan:
    return pytestconfig.stash[_STATE].plan


@pytest.fixture
def clock(device: str) -> DeviceClock:
    """The case's device clock, for what the suite times itself (warm-up, the latency sample)."""
    return DeviceClock(device)


@pytest.fixture
def telemetry(pytestconfig: pytest.Config, device: str) -> Telemetry:
    """The case's observer of the hardware across its timed rounds (--telemetry off: it records only that)."""
    suite = pytestconfig.stash[_STATE]
    return Telemetry.for_case(device, suite.machine["gpus"], suite.machine["nvml"], enabled=suite.telemetry)


@pytest.fixture
def cpu_threads(request: pytest.FixtureRequest, device: str):
    """Run the case at its CPU thread count (torch.set_num_threads), and put torch's back after."""
    threads = request.param
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(before)


def _split(config: pytest.Config, train: bool):
    suite = config.stash[_STATE]
    plan = suite.plan
    # Downloaded and checked in pytest_configure already: no download here.
    split = load_split(
        plan.dataset_name, train=train, root=plan.data_root, limit=plan.train_images if train else plan.test_images
    )
    suite.data_used["train" if train else "test"] = len(split)
    if suite.journal is not None:  # a recovered run must say what its cases had too
        suite.journal.note({"data_used": dict(suite.data_used)})
    return split


@pytest.fixture(scope="session")
def train_split(pytestconfig: pytest.Config):
    return _split(pytestconfig, train=True)


@pytest.fixture(scope="session")
def test_split(pytestconfig: pytest.Config):
    return _split(pytestconfig, train=False)


@pytest.fixture(scope="session")
def trained_state(plan: Plan, train_split) -> dict:
    """Weights after one untimed resident epoch over the first 10,000 training images on the CPU
    at torch's default threads, so inference accuracy means something."""
    before = torch.get_num_threads()
    torch.set_num_threads(plan.default_threads)
    try:
        torch.manual_seed(0)
        model = Network()
        n = min(len(train_split), _WEIGHTS_IMAGES)
        train_epoch_resident(model, make_optimizer(model), train_split.images[:n], train_split.labels[:n], 100)
    finally:
        torch.set_num_threads(before)
    return model.state_dict()


@pytest.fixture(scope="session")
def reference_labels(plan: Plan, test_split, trained_state) -> torch.Tensor:
    """What every inference pipeline's labels are compared with: float32 eager (inference_mode) on
    the CPU, the trained weights, the whole test split (the notes' predictions, before any step)."""
    before = torch.get_num_threads()
    torch.set_num_threads(plan.default_threads)
    try:
        model = Network()
        model.load_state_dict(trained_state)
        return predict(model, test_split.images, 1000)
    finally:
        torch.set_num_threads(before)
