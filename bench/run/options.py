"""The suite's options: their definitions (pytest bench --help), and their values checked into one plan before any work."""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass

import pytest
import torch

from bench.measure.allocator import MODES
from bench.measure.devices import available_devices, unavailable_reason
from bench.measure.parse import (
    parse_batch_sizes,
    parse_cpu_threads,
    parse_devices,
    parse_ladder,
    parse_machine_name,
    parse_pipelines,
    parse_seconds,
    parse_warmup_batches,
)
from bench.measure.plan import (
    MAX_CASE_TIME,
    MAX_DOWNLOAD_TIMEOUT,
    MAX_MIN_ROUNDS,
    Plan,
    plan_from_options,
)
from bench.measure.telemetry import PERIOD_S
from bench.run.data import check_data, data_for
from bench.run.models import model_plans
from fmnist_model import DEFAULT_DOWNLOAD_TIMEOUT, DEFAULT_ROOT, SOURCES
from fmnist_model.data import FAKE

__all__ = ["UNUSED_BENCHMARK_OPTIONS", "Settings", "add_options", "given", "settings"]

# pytest-benchmark options for its own calibration and warm-up, which pedantic rounds do not use.
UNUSED_BENCHMARK_OPTIONS = (
    "--benchmark-min-time",
    "--benchmark-calibration-precision",
    "--benchmark-warmup",
    "--benchmark-warmup-iterations",
)


def add_options(parser: pytest.Parser) -> None:
    """The fmnist-bench group of `pytest bench --help`: every option, its default and why."""
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
        help="smoke run: small subsets, short sweeps, one timed round (the CNN's: well under a minute on 2 cores)",
    )
    group.addoption(
        "--model",
        default=None,
        help="comma-separated models to measure: cnn (the notes' CNN on FashionMNIST), torchvision:NAME (any "
        "torchvision classifier, built without weights) or module.path:callable (yours, returning an nn.Module; "
        "called with num_classes=N where it takes it); every model but cnn trains on torchvision's FakeData "
        "(default: cnn)",
    )
    group.addoption(
        "--input-shape",
        default=None,
        help="C,H,W of one input image for the models other than cnn (default: 3 and the crop size of a "
        "torchvision model's weights, 224 for most; required for module.path:callable)",
    )
    group.addoption(
        "--classes",
        default=None,
        help="classes of the models other than cnn: torchvision models are built with num_classes=N (default: 10)",
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
    group.addoption(
        "--data-root", default=str(DEFAULT_ROOT), help="where FashionMNIST/raw/ is (default: data)"
    )
    group.addoption(
        "--download", action="store_true", help="download FashionMNIST into --data-root if missing"
    )
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
        "before it left (bench/measure/allocator.py); default: glibc as it is (default: keep)",
    )
    group.addoption(
        "--benchmark-tables",
        action="store_true",
        help="print pytest-benchmark's tables of every case's round statistics at the end, some 240 "
        "columns wide; the saved run holds them all either way (default: off)",
    )


def given(config: pytest.Config, flag: str) -> bool:
    """Whether `flag` was on the command line (or PYTEST_ADDOPTS, or the ini addopts), not just defaulted."""
    args = [*config.invocation_params.args, *shlex.split(os.environ.get("PYTEST_ADDOPTS", ""))]
    args += config.getini("addopts")
    return any(a == flag or a.startswith(f"{flag}=") for a in args)


@dataclass(frozen=True)
class Settings:
    """What the options say this run is: its plan, the machine's name, and how it observes and saves."""

    plan: Plan
    machine_name: str | None
    # which of pytest-benchmark's round options were given (they replace every family's)
    budget_source: dict
    data_files: dict | None  # images in the real files, when they are used
    telemetry: bool
    host_allocator: str


def _check_present(devices: tuple[str, ...] | None) -> None:
    """A device named that this machine lacks is a usage error before any work, naming the ones it has: run,
    it would be a run of skips and nothing saved."""
    missing = [reason for reason in map(unavailable_reason, devices or ()) if reason is not None]
    if missing:
        raise pytest.UsageError(
            f"--devices: {'; '.join(missing)};\n  this machine has {', '.join(available_devices())}"
        )


def settings(config: pytest.Config) -> Settings:
    """Every option checked, before collection: a bad value is a usage error naming the option and the value."""
    opt = config.option
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
    _check_present(parsed["--devices"])
    models = model_plans(opt)
    try:
        download_timeout = parse_seconds(opt.download_timeout, most=MAX_DOWNLOAD_TIMEOUT)
    except ValueError as exc:
        raise pytest.UsageError(f"--download-timeout: {exc}") from None
    # pytest-benchmark's own round options, honoured when given: they replace every family's.
    # (pytest-benchmark checks that they are positive; the upper bounds are ours.)
    min_rounds = opt.benchmark_min_rounds if given(config, "--benchmark-min-rounds") else None
    max_time = float(opt.benchmark_max_time) if given(config, "--benchmark-max-time") else None
    if min_rounds is not None and min_rounds > MAX_MIN_ROUNDS:
        raise pytest.UsageError(
            f"--benchmark-min-rounds: {min_rounds:,} is more than {MAX_MIN_ROUNDS:,}"
        )
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
        # A run of other models than the CNN alone reads no FashionMNIST: its data is each model's FakeData.
        dataset_name=(
            FAKE
            if models and not any(model.is_cnn for model in models)
            else data_for(opt, download_timeout)
        ),
        default_threads=default_threads,
        cpu_threads=parsed["--cpu-threads"],
        warmup_batches=parsed["--warmup-batches"],
        min_rounds=min_rounds,
        max_time=max_time,
        pipelines=parsed["--pipelines"],
        ladder=parsed["--ladder"],
        models=models,
    )
    return Settings(
        plan=plan,
        machine_name=parsed["--machine-name"],
        budget_source={
            "--benchmark-min-rounds": min_rounds is not None,
            "--benchmark-max-time": max_time is not None,
        },
        data_files=check_data(plan),
        telemetry=opt.telemetry == "on",
        host_allocator=opt.host_allocator,
    )
