"""End to end: a quick run of the real suite in a subprocess, its saved JSON, option errors and skips."""

import hashlib
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.format.names import TRAIN_LADDER
from bench.format.records import FORMAT_VERSION
from bench.measure.plan import COMPILING
from tests import harness

REPO = Path(__file__).resolve().parent.parent

# The axes every benchmark of a family must name in its params, and the units in its extra_info.
PARAMS = {
    "limits": {"device", "cpu_threads", "limit", "dtype"},
    "transfer": {"device", "cpu_threads", "direction", "memory", "size", "dtype"},
    "train": {"device", "cpu_threads", "batch_size", "pipeline"},
    "inference": {"device", "cpu_threads", "batch_size", "mode", "pipeline"},
}
# Every case records its warm-up, its round budget and what it cost besides its figures.
EXTRA = {
    "limits": {"work", "warmup", "budget", "wall_s"},
    "transfer": {"images", "bytes", "warmup", "budget", "wall_s"},
    "train": {
        "images",
        "batches",
        "dataset",
        "loss",
        "accuracy",
        "losses",
        "accuracies",
        "warmup",
        "budget",
        "wall_s",
        "pipeline_config",
        "work",
        "limits",
    },
    "inference": {
        "images",
        "batches",
        "dataset",
        "accuracy",
        "latency",
        "warmup",
        "budget",
        "wall_s",
        "pipeline_config",
        "agreement",
        "work",
        "limits",
    },
}


# A `pytest bench` session as these tests start it.
BENCH = [sys.executable, "-m", "pytest", "bench", "-p", "no:cacheprovider"]


def run_suite(*args, cwd=REPO, env=None):
    return harness.run(
        [*BENCH, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_the_harness_runs_a_session_as_a_subprocess_of_its_own_would():
    # tests/harness.py forks sessions from a process that imported the suite: what they collect, print and
    # exit with is what a real `python -m pytest bench` gives.
    # (A collection that selects with -k and -m-like words: an argument the fork mangled would change it.)
    args = [*BENCH, "--quick", "-k", "train", "--collect-only", "-q"]
    forked = harness.run(args, cwd=REPO, capture_output=True, text=True)
    real = subprocess.run(args, cwd=REPO, capture_output=True, text=True)
    assert forked.returncode == real.returncode == 0, forked.stderr[-2000:]
    ids = [[line for line in r.stdout.splitlines() if "::" in line] for r in (forked, real)]
    assert ids[0] and ids[0] == ids[1] and forked.stderr == real.stderr


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("quick")
    store = tmp / "store"
    # An empty data root: "auto" must fall back to the synthetic set without the network. A terminal
    # wider than the session may use: pytest's rules and padding are drawn to 100 columns all the same.
    result = run_suite(
        "--quick",
        "--data-root",
        str(tmp / "no-data"),
        "--benchmark-autosave",
        f"--benchmark-storage=file://{store}",
        f"--benchmark-json={tmp / 'run.json'}",
        env={**os.environ, "COLUMNS": "180"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return {
        "json": json.loads((tmp / "run.json").read_text()),
        "store": store,
        "output": result.stdout,
        "errors": result.stderr,
    }


def test_every_family_ran(quick_run):
    groups = {b["group"] for b in quick_run["json"]["benchmarks"]}
    assert groups == {"limits", "transfer", "train", "inference"}


def test_the_limits_come_first_and_every_case_is_held_against_them(quick_run):
    benches = quick_run["json"]["benchmarks"]
    assert benches[0]["group"] == "limits"  # measured before any case is held against them
    limits = {
        (b["params"]["cpu_threads"], b["params"]["limit"], b["params"]["dtype"])
        for b in benches
        if b["group"] == "limits"
    }
    threads = {b["params"]["cpu_threads"] for b in benches if b["group"] == "inference"}
    # On the CPU: an operation's cost and both peaks at every thread count a case runs at; no graph, no device copy.
    assert limits == {(t, limit, dtype) for t in threads for limit, dtype in
                      (("operation", "float32"), ("matmul", "float32"), ("matmul", "bfloat16"))}  # fmt: skip
    for bench in benches:
        if bench["group"] not in ("train", "inference"):
            continue
        held = bench["extra_info"]["limits"]
        work = bench["extra_info"]["work"]
        assert work["flops_per_image"] == (1_221_840 if bench["group"] == "train" else 464_880), (
            bench["name"]
        )
        assert held["flops"] == work["flops_per_image"] * bench["extra_info"]["images"]
        assert held["achieved_flops_s"] == pytest.approx(held["flops"] / bench["stats"]["median"])
        assert held["floors_s"]["copies"] == 0  # no copy between host and device on the CPU
        # The binding limit is the highest floor the run trusts (a limit measured while the machine was busy, or
        # one a case ran faster than, is not trusted: each said why); none where it trusts none.
        trusted = {
            k: v for k, v in held["floors_s"].items() if k not in held["distrusted"] and v > 0
        }
        assert all(why["limit"] and why["why"] for why in held["distrusted"].values()), bench[
            "name"
        ]
        if trusted:
            assert held["binding"] == max(trusted, key=trusted.get), bench["name"]
            assert held["multiple"] == pytest.approx(
                bench["stats"]["median"] / trusted[held["binding"]]
            )
            assert held["multiple"] >= 1  # no case of the run is under a floor it trusts
        else:
            assert held["binding"] is None and held["multiple"] is None
        if "arithmetic" not in held["distrusted"]:
            assert 0 < held["peak_share"] < 1, bench["name"]
    output = quick_run["output"]
    assert "Against this machine's own limits" in output
    assert "is bound by" in output or "no limit this run trusts explains it" in output


def test_every_benchmark_names_its_axes_and_units(quick_run):
    for bench in quick_run["json"]["benchmarks"]:
        family = bench["group"]
        assert set(bench["params"]) == PARAMS[family], bench["name"]
        assert EXTRA[family] <= set(bench["extra_info"]), bench["name"]
        assert bench["stats"]["rounds"] >= 1 and bench["stats"]["median"] > 0
        assert len(bench["stats"]["data"]) == bench["stats"]["rounds"]  # per-round times are kept
        assert bench["options"]["timer"] == f"DeviceClock({bench['params']['device']})"
        # What pytest-benchmark records as the case's options is the budget it really ran under.
        budget = bench["extra_info"]["budget"]
        assert (
            bench["options"]["min_rounds"] == budget["min_rounds"]
            and bench["options"]["max_time"] == budget["max_time"]
        )
        assert bench["stats"]["rounds"] == budget["rounds"]


def test_the_ladder_runs_on_the_cpu_and_every_step_trains_as_resident_does(quick_run):
    train = [b for b in quick_run["json"]["benchmarks"] if b["group"] == "train"]
    at_1000 = {b["params"]["pipeline"]: b for b in train if b["params"]["batch_size"] == 1000}
    # --quick leaves compile out; a CUDA graph on the CPU is a skip that says why.
    assert set(at_1000) == set(TRAIN_LADDER) - set(COMPILING) - {"cuda_graph"}
    assert (
        "train cpu-" in quick_run["output"]
        and "-1000-cuda_graph: skipped: a CUDA graph" in quick_run["output"]
    )
    resident = at_1000["resident"]["extra_info"]["loss"]
    for name, bench in at_1000.items():
        extra = bench["extra_info"]
        config = extra["pipeline_config"]
        assert (
            config["pipeline"] == name and config["pin_memory"] is False
        )  # no pinning without an accelerator
        assert (extra["loss"] - resident) / resident <= config["loss_tolerance"], name
        breakdown = extra["breakdown"]  # one profiled epoch at the ladder's batch size
        assert {"forward", "backward", "optimizer", "data"} <= set(
            breakdown["host_s"]
        ) and breakdown["device_s"] is None
        assert 0 < sum(breakdown["host_s"].values()) <= breakdown["epoch_s"]
    assert at_1000["loader"]["extra_info"]["pipeline_config"]["workers"] >= 1
    assert all(
        "breakdown" not in b["extra_info"] for b in train if b["params"]["batch_size"] != 1000
    )
    assert "The ladder (epoch time" in quick_run["output"] and "fastest" in quick_run["output"]


def test_inference_steps_record_their_agreement_with_the_cpus_float32_labels(quick_run):
    inference = [b for b in quick_run["json"]["benchmarks"] if b["group"] == "inference"]
    steps = {b["params"]["pipeline"] for b in inference}
    assert steps == {"eager", "inference_mode", "channels_last", "bf16", "channels_last_bf16"}
    for bench in inference:
        agreement = bench["extra_info"]["agreement"]
        matrix = np.array(agreement["matrix"])
        assert matrix.sum() == bench["extra_info"]["images"]
        assert agreement["differ"] == matrix.sum() - np.trace(matrix)
        # The CPU's own float32 steps give the reference's labels; bf16 may flip a near tie.
        floor = 0.98 if "bf16" in bench["params"]["pipeline"] else 1.0
        assert agreement["share"] >= floor, bench["name"]


def test_cpu_threads_are_an_axis_of_the_cpu_cases(quick_run):
    default = quick_run["json"]["machine_info"]["torch"]["threads"]
    counts = {
        family: {
            b["params"]["cpu_threads"]
            for b in quick_run["json"]["benchmarks"]
            if b["group"] == family
        }
        for family in PARAMS
    }
    # The limits, copies and inference at 1 thread and at torch's own count; training at torch's.
    assert counts == {
        "limits": {1, default},
        "transfer": {1, default},
        "inference": {1, default},
        "train": {default},
    }
    assert "test_inference[cpu-1t-1-compute-inference_mode]" in {
        b["name"] for b in quick_run["json"]["benchmarks"]
    }


def test_inference_records_latency_percentiles_and_throughput_per_pass(quick_run):
    for bench in quick_run["json"]["benchmarks"]:
        if bench["group"] == "inference":
            info, latency = bench["extra_info"], bench["extra_info"]["latency"]
            assert latency["p50_s"] <= latency["p90_s"] <= latency["p99_s"]
            assert latency["samples"] == len(latency["batch_times_s"]) >= 1
            # A pass over the split, or over its first 1,000 batches: images per round.
            assert info["images"] == min(1000, bench["params"]["batch_size"] * 1000)
            assert latency["source"] == ("rounds" if info["batches"] == 1 else "sample")


def test_the_terminal_shows_progress_and_the_answer(quick_run):
    out = quick_run["output"]
    total = quick_run["json"]["machine_info"]["fmnist_bench"]["run"][
        "planned_cases"
    ]  # the skips count too
    assert f"[ 1/{total}]" in out and f"[{total}/{total}]" in out
    assert "train cpu-" in out and "per epoch" in out and "images/s" in out and "GB/s" in out
    summary = out.index("fmnist-bench: is the GPU faster here?")
    # pytest-benchmark's tables (some 240 columns) only with --benchmark-tables; its header line
    # does not list defaults the cases do not run with.
    assert "benchmark 'inference'" not in out and "Legend:" not in out
    assert "(defaults:" not in out and "min_rounds=5" not in out
    assert "Where a seed epoch goes" in out[summary:]
    # The answer is the last thing on the screen: pytest's own list of skips (-ra) is left out after it.
    assert "short test summary info" not in out[summary:]
    # Everything the session says fits a terminal 100 columns wide: the header, each case's line,
    # pytest-benchmark's save lines (on stderr) and the answer.
    said = quick_run["errors"]
    assert "Saved benchmark data in:" in said and "Wrote benchmark data in:" in said
    widest = max([*out.splitlines(), *quick_run["errors"].splitlines()], key=len)
    assert len(widest) <= 100, widest
    assert (
        "rounds per case:\n    limits at least 1, then until 0 s, at most 1\n" in out
    )  # what runs


def test_train_records_loss_and_accuracy_beside_the_time(quick_run):
    for bench in quick_run["json"]["benchmarks"]:
        if bench["group"] == "train":
            info = bench["extra_info"]
            assert info["dataset"] == "synthetic"
            assert info["loss"] > 0 and 0 <= info["accuracy"] <= 1
            assert len(info["losses"]) == bench["stats"]["rounds"]


def test_transfer_bytes_follow_size_and_dtype(quick_run):
    for bench in quick_run["json"]["benchmarks"]:
        if bench["group"] == "transfer":
            p = bench["params"]
            per_image = 784 * (4 if p["dtype"] == "float32" else 1)
            assert bench["extra_info"]["bytes"] == p["size"] * per_image
            if p["device"] == "cpu":
                assert (p["direction"], p["memory"]) == ("h2h", "pageable")


def test_machine_info_carries_torch_nvml_gpus_and_dataset(quick_run):
    info = quick_run["json"]["machine_info"]
    assert info["torch"]["version"]
    assert isinstance(info["nvml"]["available"], bool)
    assert info["nvml"]["available"] or info["nvml"]["reason"]
    assert isinstance(info["gpus"], list)
    assert info["dataset"]["name"] == "synthetic" and info["dataset"]["requested"] == "auto"
    # The counts are those the run's cases really had (a quick run's subsets), not the plan's words.
    assert (info["dataset"]["train_images"], info["dataset"]["test_images"]) == (2000, 1000)
    assert (
        info["fmnist_bench"]["format"] == FORMAT_VERSION
        and info["fmnist_bench"]["plan"]["quick"] is True
    )
    # The run says what its C library's allocator was held to (keep, where the library is glibc).
    expected = "keep" if platform.libc_ver()[0] == "glibc" else "default"
    assert info["fmnist_bench"]["host_allocator"]["mode"] == expected, info["fmnist_bench"][
        "host_allocator"
    ]
    assert (
        info["fmnist_bench"]["machine_key"] and info["fmnist_bench"]["machine_name"] is None
    )  # not named
    # The key names the CPU by the brand string pytest-benchmark records: one CPU-name reader.
    assert (
        re.sub(r"[^A-Za-z0-9.+-]+", "-", info["cpu"]["brand_raw"]).strip("-.")
        in info["fmnist_bench"]["machine_key"]
    )
    run = info["fmnist_bench"]["run"]
    assert run["complete"] is True and run["finished_cases"] == len(quick_run["json"]["benchmarks"])
    # A CUDA graph on the CPU, in training and inference: planned, and skipped saying why.
    assert run["planned_cases"] == run["finished_cases"] + 2
    assert [
        s["reason"].startswith("a CUDA graph captures CUDA kernels") for s in run["skipped"]
    ] == [True, True]


def test_autosave_writes_pytest_benchmark_storage_and_compare_reads_it(quick_run):
    saved = list(quick_run["store"].glob("*/0001_*.json"))
    assert len(saved) == 1
    compare = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest_benchmark",
            "--storage",
            f"file://{quick_run['store']}",
            "compare",
            "--group-by=group",
        ],
        capture_output=True,
        text=True,
    )
    assert compare.returncode == 0, compare.stderr
    assert "test_train_epoch[cpu-" in compare.stdout and "-100-seed]" in compare.stdout


def test_steps_of_one_family_only_leave_the_other_family_out_not_a_placeholder(tmp_path):
    # --pipelines seed,resident names no inference step: pytest's placeholder for an empty
    # parametrization used to reach the cost model and stop the run with an internal error.
    result = run_suite("--quick", "--collect-only", "-q", "--pipelines", "seed,resident")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "test_inference" not in result.stdout and "NOTSET" not in result.stdout
    assert "1 deselected" in result.stdout and "-seed]" in result.stdout


def test_default_storage_is_results_per_machine(tmp_path):
    result = run_suite("--quick", "--collect-only")
    assert result.returncode == 0, result.stderr
    assert f"saves to file://{REPO / 'results'}/" in result.stdout


def test_a_named_machine_saves_under_its_name_not_its_host_name():
    before = set((REPO / "results").glob("lab-h100-1-*"))
    try:
        result = run_suite("--quick", "--collect-only", "--machine-name", "lab h100/1")
    finally:
        # pytest-benchmark makes its storage folder as it starts, even to collect: not litter in the checkout.
        for made in set((REPO / "results").glob("lab-h100-1-*")) - before:
            made.rmdir()
    assert result.returncode == 0, result.stderr
    # Folder-safe, and the name's hash keeps it apart from "lab-h100-1" and "lab_h100_1".
    digest = hashlib.sha256(b"lab h100/1").hexdigest()[:8]
    assert f"saves to file://{REPO / 'results'}/lab-h100-1-{digest}_" in result.stdout


def test_a_renamed_machine_keeps_its_earlier_runs_by_its_id(tmp_path):
    # --machine-name names the folder, not the machine: the estimate finds the runs this machine
    # saved under its old name beside the new folder, by its id; another machine's run whose id
    # shares the folder's 8 digits is not this one's.
    from pytest_benchmark.utils import get_machine_id

    from bench.format.records import TorchFacts
    from bench.measure.machine import MACHINE_ID_ENV, cpu_model, machine_key, torch_info

    ident = "0123456789abcdef"
    results = tmp_path / "results"
    # this machine's key less its name: its CPU, GPUs and id's digits
    gpus = [d.name for d in TorchFacts.read(torch_info()).cuda_devices or []]
    what = machine_key("any", cpu_model(), gpus, None, ident).split("_", 1)[1]
    # (the stranger's id shares 8 digits; the other one's id is the same, as machines sharing a home folder's
    # is, but its CPU is not)
    for folder, its_id, its_what in (
        ("old-name", ident, what),
        ("stranger", ident[:8] + "ffffffff", what),
        ("shared-home", ident, f"Other-CPU_no-gpu_{ident[:8]}"),
    ):
        run = json.loads((REPO / "tests" / "fixtures" / "cpu_quick_run_format2.json").read_text())
        run["machine_info"]["fmnist_bench"]["machine_id"] = its_id
        saved = results / f"{folder}_{its_what}" / get_machine_id()
        saved.mkdir(parents=True)
        (saved / "0001_earlier.json").write_text(json.dumps(run))
    env = {**os.environ, MACHINE_ID_ENV: ident}
    args = ["--quick", "--machine-name", "new-name", "-k", "limits and operation"]
    result = harness.run(
        [*BENCH, *args, f"--benchmark-storage=file://{results / 'new-name'}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    said = " ".join(result.stdout.split())  # (the estimate's line may be folded)
    assert (
        "from 1 earlier run of this machine, 1 of them saved under another name "
        f"(old-name_{what})" in said
    ), said


@pytest.mark.parametrize(
    "option, message",
    [
        (["--devices", "tpu"], "--devices: 'tpu' is not a device"),
        (["--devices", "cpu,cuda:x"], "--devices: 'cuda:x' is not a device"),
        (["--batch-sizes", "0"], "--batch-sizes: '0' is not a positive integer"),
        (["--batch-sizes", "100,big"], "--batch-sizes: 'big' is not a positive integer"),
        (["--cpu-threads", "0"], "--cpu-threads: '0' is not a positive integer or default"),
        (["--cpu-threads", "1,5000"], "--cpu-threads: '5000' is more than"),
        (["--warmup-batches", "some"], "--warmup-batches: 'some' is not a positive integer or all"),
        (
            ["--batch-sizes", "9223372036854775808"],
            "--batch-sizes: '9223372036854775808' is more than 2,147,483,647",
        ),
        (
            ["--warmup-batches", "99999999999"],
            "--warmup-batches: '99999999999' is more than 2,147,483,647",
        ),
        (["--download-timeout", "soon"], "--download-timeout: 'soon' is not a number of seconds"),
        (["--download-timeout", "0"], "--download-timeout: '0' is not a number of seconds above 0"),
        (
            ["--benchmark-min-rounds", "5000000"],
            "--benchmark-min-rounds: 5,000,000 is more than 1,000,000",
        ),
        (
            ["--benchmark-max-time", "1e9"],
            "--benchmark-max-time: 1e+09 is not a number of seconds from 0 to 86,400",
        ),
        (
            ["--benchmark-max-time", "nan"],
            "--benchmark-max-time: nan is not a number of seconds from 0 to 86,400",
        ),
        (
            ["--benchmark-max-time", "-1"],
            "--benchmark-max-time: -1 is not a number of seconds from 0 to 86,400",
        ),
        (["--dataset", "mnist"], "--dataset: invalid choice: 'mnist'"),
        (["--machine-name", " "], "--machine-name: ' ' is empty"),
        (
            ["--machine-name", "lab\tbox"],
            "--machine-name: 'lab\\tbox' holds characters that do not print",
        ),
        (["--machine-name", "x" * 65], "is 65 characters, more than 64"),
        (
            ["--pipelines", "seed,turbo"],
            "--pipelines: 'turbo' is not a pipeline: expected all, or some of",
        ),
        (["--ladder", "all"], "--ladder: 'all' is not a ladder: expected default or full"),
    ],
)
def test_bad_options_are_usage_errors_naming_option_and_value(option, message):
    result = run_suite("--quick", *option)
    assert result.returncode == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr


def test_missing_real_files_are_a_usage_error_naming_the_path(tmp_path):
    result = run_suite("--quick", "--dataset", "fashion-mnist", "--data-root", str(tmp_path))
    assert result.returncode == pytest.ExitCode.USAGE_ERROR
    assert str(tmp_path) in result.stderr and "--download" in result.stderr


@pytest.mark.parametrize("kind", ["cuda", "cuda:N", "mps"])
def test_a_device_the_machine_lacks_is_a_usage_error_naming_the_ones_it_has(kind):
    # Well formed, and absent here: one past the GPUs this machine has (cuda:0 where it has none), and
    # Metal where it is not. Refused before any case, rather than a run of skips that saves nothing.
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if kind == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has Metal")
    missing = {"cuda": "cuda" if count == 0 else f"cuda:{count}", "cuda:N": f"cuda:{count + 1}"}
    device = missing.get(kind, kind)
    result = run_suite("--quick", "--devices", f"cpu,{device}")
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, result.stdout[-2000:]
    said = result.stderr
    assert "--devices:" in said and "this machine has cpu" in said, said
    assert "[ 1/" not in result.stdout  # no case ran


def test_pytest_benchmark_round_options_are_honoured_and_recorded(tmp_path):
    out = tmp_path / "run.json"
    result = run_suite(
        "--quick", "--devices", "cpu", "-k", "train and 1000-resident or transfer and 1-float32",
        "--benchmark-min-rounds=4", "--benchmark-max-time=0.001", f"--benchmark-json={out}",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:]
    run = json.loads(out.read_text())
    assert run["machine_info"]["fmnist_bench"]["budget_options"] == {
        "--benchmark-min-rounds": True,
        "--benchmark-max-time": True,
    }
    for bench in run["benchmarks"]:
        assert bench["stats"]["rounds"] >= 4 and bench["options"]["min_rounds"] == 4
        assert bench["options"]["max_time"] == 0.001
    assert "(from --benchmark-min-rounds, --benchmark-max-time)" in result.stdout


def write_real_files(root, train, test):
    from tests.test_data import write_idx

    rng = np.random.default_rng(3)
    for is_train, n in ((True, train), (False, test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        write_idx(root, is_train, images, (np.arange(n) % 10).astype(np.uint8))
    return root / "FashionMNIST" / "raw"


@pytest.mark.parametrize("dataset", ["auto", "fashion-mnist"])
def test_real_files_smaller_than_the_plan_are_refused_not_substituted(tmp_path, dataset):
    write_real_files(tmp_path, train=100, test=100)
    result = run_suite(
        "--quick", "--devices", "cpu", "--dataset", dataset, "--data-root", str(tmp_path)
    )
    assert result.returncode == pytest.ExitCode.USAGE_ERROR
    assert "hold 100 images; this run's plan uses 2,000 (--quick)" in result.stderr
    assert "[1/" not in result.stdout


def test_auto_refuses_a_half_present_set_rather_than_quietly_using_synthetic(tmp_path):
    raw = write_real_files(tmp_path, train=2000, test=1000)
    (raw / "t10k-labels-idx1-ubyte").unlink()
    (raw / "t10k-images-idx3-ubyte").unlink()
    (raw / "t10k-images-idx3-ubyte").mkdir()
    result = run_suite("--quick", "--devices", "cpu", "--data-root", str(tmp_path))
    assert result.returncode == pytest.ExitCode.USAGE_ERROR
    assert "holds part of FashionMNIST" in result.stderr
    assert f"{raw / 't10k-images-idx3-ubyte'} is a folder, not a file" in result.stderr
    assert f"{raw / 't10k-labels-idx1-ubyte'} missing" in result.stderr


def test_a_corrupt_file_is_named_before_any_case(tmp_path):
    raw = write_real_files(tmp_path, train=2000, test=1000)
    images = raw / "t10k-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:5000])
    result = run_suite("--quick", "--devices", "cpu", "--data-root", str(tmp_path))
    assert result.returncode == pytest.ExitCode.USAGE_ERROR
    assert (
        f"--data-root: {images}: 5,000 bytes where its header's 1,000 items make 784,016"
        in result.stderr
    )
    assert "[1/" not in result.stdout


def test_real_files_the_plan_fits_run_and_the_run_records_their_counts(tmp_path):
    write_real_files(tmp_path, train=2000, test=1500)
    out = tmp_path / "run.json"
    result = run_suite(
        "--quick", "--devices", "cpu", "--data-root", str(tmp_path), "-k", "train and 100-resident or 2t-100-compute",
        f"--benchmark-json={out}",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    dataset = json.loads(out.read_text())["machine_info"]["dataset"]
    assert dataset["name"] == "fashion-mnist" and dataset["files"] == {"train": 2000, "test": 1500}
    assert (dataset["train_images"], dataset["test_images"]) == (
        2000,
        1000,
    )  # what the quick cases used


def test_a_stalled_download_ends_with_a_usage_error_naming_the_address(tmp_path):
    from tests.test_data import SilentServer

    server = SilentServer()
    try:
        # A proxy that accepts the connection and never answers: urllib, under torchvision, uses it.
        env = {**os.environ, "http_proxy": f"http://127.0.0.1:{server.port}", "no_proxy": ""}
        result = harness.run(
            [sys.executable, "-m", "pytest", "bench", "-p", "no:cacheprovider", "--quick", "--devices", "cpu",
             "--dataset", "fashion-mnist", "--download", "--download-timeout", "1", "--data-root", str(tmp_path)],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        server.close()
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, (
        result.stdout[-2000:] + result.stderr[-2000:]
    )
    assert "downloading FashionMNIST into" in result.stderr  # it said what it was doing
    assert "train-images-idx3-ubyte.gz failed: no reply within 1 s" in result.stderr


def test_every_case_carries_its_telemetry_and_why_a_part_is_missing(quick_run):
    info = quick_run["json"]["machine_info"]["fmnist_bench"]
    assert info["telemetry"]["state"] == "on" and info["telemetry"]["period_s"] > 0
    for bench in quick_run["json"]["benchmarks"]:
        telemetry = bench["extra_info"]["telemetry"]
        assert telemetry["state"] == "on" and telemetry["rounds"] == bench["stats"]["rounds"], (
            bench["name"]
        )
        assert telemetry["samples"] >= 2 and telemetry["span_s"] >= bench["stats"]["total"]
        energy = telemetry["host"]["energy"]
        assert energy["available"] or energy["reason"], bench[
            "name"
        ]  # (this VM has no RAPL: the reason says so)
        assert telemetry["host"]["peak_rss_bytes"] > 0
        assert set(telemetry["flags"]) <= {"busy", "throttled"}


def test_telemetry_off_is_recorded_and_a_bad_value_is_a_usage_error(tmp_path):
    result = run_suite(
        "--quick",
        "--telemetry=off",
        "-k",
        "transfer and 1-uint8",
        f"--benchmark-json={tmp_path / 'r.json'}",
    )
    assert result.returncode == 0, result.stdout[-3000:]
    run = json.loads((tmp_path / "r.json").read_text())
    assert run["machine_info"]["fmnist_bench"]["telemetry"] == {"state": "off"}
    assert run["benchmarks"] and all(
        b["extra_info"]["telemetry"] == {"state": "off"} for b in run["benchmarks"]
    )
    result = run_suite("--quick", "--telemetry=maybe")
    assert (
        result.returncode == pytest.ExitCode.USAGE_ERROR
        and "--telemetry: invalid choice: 'maybe'" in result.stderr
    )
