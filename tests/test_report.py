"""Reports from saved runs: the tidy table, speedup and crossover on a constructed run, bad files, the page."""

import copy
import dataclasses
import html
import itertools
import json
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pandas as pd
import pytest

from bench.analysis import derive
from bench.analysis.derive import crossover_batch_size
from bench.analysis.figures import breakdown, cpu_choices, crossovers, speedups
from bench.analysis.intervals import ratio_estimate
from bench.analysis.rows import COLUMNS, CSV_COLUMNS, RunFileWarning, load_frame, select_newest
from bench.format import names
from bench.format.journal import Journal
from bench.format.records import FORMAT_VERSION
from bench.report.cli import main
from bench.report.facts import partial_note
from bench.report.page import md_escape, write_report

FIXTURES = Path(__file__).parent / "fixtures"
GPU_RUN = FIXTURES / "constructed_gpu_run.json"  # constructed, with known answers (see its builder)
CPU_RUN = FIXTURES / "cpu_quick_run.json"  # a real quick run of this suite on a 2-core CPU machine
# The recorded key, and a short hash of the GPUs' UUIDs that tells twins of one host, CPU and GPU apart.
GPU_KEY = "gpu-box_Constructed-CPU-64-Core_NVIDIA-Constructed-GPU~e16e002b"
# Format 2, real runs on the same 2-core VM: a quick run at 1 and 2 threads, and a full run stopped by SIGTERM.
QUICK_V2 = FIXTURES / "cpu_quick_run_format2.json"
PARTIAL_V2 = FIXTURES / "cpu_partial_run_sigterm.json"
H100 = FIXTURES / "h100-host"  # format 1, real: a quick cpu + cuda:0 run and a full GPU-only run


@pytest.fixture(scope="module")
def frame():
    return load_frame([GPU_RUN, CPU_RUN])


def one(frame, **where):
    rows = frame
    for col, value in where.items():
        rows = rows[rows[col] == value]
    assert len(rows) == 1, where
    return rows.iloc[0]


def test_frame_has_the_tidy_columns(frame):
    assert list(frame.columns) == COLUMNS
    assert set(frame["family"]) == {"transfer", "train", "inference"}
    assert frame["machine_key"].nunique() == 2


def test_frame_values_from_the_constructed_run(frame):
    gpu = frame[frame["machine_key"] == GPU_KEY]
    row = one(gpu, family="train", device="cuda:0", pipeline="resident", batch_size=1000)
    assert row["median"] == 1.0 and row["images_per_s"] == pytest.approx(60_000)
    assert row["loss"] == 0.5 and row["accuracy"] == 0.8 and row["dataset"] == "synthetic"
    assert row["device_name"] == "NVIDIA Constructed GPU"
    assert (
        row["label"]
        == "Constructed CPU 64-Core · NVIDIA Constructed GPU (constructed, not measured)"
    )
    assert row["host"] == "gpu-box"
    assert row["commit"] == "000000000000" and row["rounds"] == 3 and not row["noisy"]

    copy = one(
        gpu,
        family="transfer",
        device="cuda:0",
        direction="h2d",
        memory="pinned",
        size=60_000,
        dtype="float32",
    )
    nbytes = 60_000 * 784 * 4
    assert copy["bytes"] == nbytes
    assert copy["gbps"] == pytest.approx(nbytes / (10e-6 + nbytes / 50e9) / 1e9)
    assert copy["link_gbps"] == 63.008 and copy["link_share"] == pytest.approx(
        copy["gbps"] / 63.008
    )
    host_copy = one(gpu, family="transfer", device="cpu", size=60_000, dtype="uint8")
    assert pd.isna(host_copy["link_gbps"]) and host_copy["direction"] == "h2h"

    noisy = one(gpu, family="inference", device="cuda:0", mode="compute", batch_size=1)
    assert noisy["noisy"] and noisy["iqr_share"] > 0.10
    assert noisy["latency_ms"] == pytest.approx(
        2.0 / 10_000 * 1e3
    )  # 2 s over 10,000 batches of one
    # Rounds of [0.85, 1, 1.15] x 2 s: numpy's linear 90th percentile is 1 + 0.8 x 0.15 of the median.
    assert noisy["round_p90"] == pytest.approx(2.0 * 1.12)


def test_frame_values_from_a_real_cpu_run(frame):
    cpu = frame[frame["machine_key"] != GPU_KEY]
    assert set(cpu["device"]) == {"cpu"}
    train = cpu[cpu["family"] == "train"]
    assert (train["loss"] > 0).all() and train["accuracy"].between(0, 1).all()
    assert (train["images_per_s"] == train["images"] / train["median"]).all()
    assert (cpu["dataset"] == "synthetic").all()


def test_speedup_is_cpu_over_gpu_on_the_same_machine(frame):
    speed = speedups(frame)
    assert set(speed["machine_key"]) == {GPU_KEY}  # the CPU-only machine has nothing to compare
    resident = speed[(speed["family"] == "train") & (speed["variant"] == "resident")].sort_values(
        "batch_size"
    )
    assert resident["speedup"].tolist() == pytest.approx([0.5, 2.0, 6.0])
    compute = speed[(speed["family"] == "inference") & (speed["variant"] == "compute")].sort_values(
        "batch_size"
    )
    assert compute["speedup"].tolist() == pytest.approx([0.5, 0.2 / 0.3, 1.25, 3.0, 6.0])
    assert compute["noisy"].tolist() == [True, False, False, False, False]


def test_crossover_on_the_constructed_run(frame):
    cross = crossovers(speedups(frame)).set_index(["family", "variant"])["crossover_batch_size"]
    assert cross[("train", "resident")] == 1000
    assert cross[("train", "seed")] == 1000
    assert cross[("inference", "compute")] == 100
    assert pd.isna(cross[("inference", "end_to_end")])


@pytest.mark.parametrize(
    "speedup, expected",
    [
        ([1.2, 0.9, 1.5, 2.0], 1000),  # an early win that is lost again is not the crossover
        ([1.1, 1.2, 1.5, 2.0], 10),  # wins everywhere: from the smallest size
        ([0.5, 0.6, 0.9, 0.99], None),  # never wins
        ([0.5, 2.0, 3.0, 1.0], None),  # 1x at the largest is not a win
    ],
)
def test_crossover_batch_size(speedup, expected):
    assert crossover_batch_size([10, 100, 1000, 10_000], speedup) == expected
    assert (
        crossover_batch_size([10_000, 1000, 100, 10], speedup[::-1]) == expected
    )  # order of input does not matter


def test_epoch_breakdown_on_the_constructed_run(frame):
    parts = breakdown(frame).set_index(["machine_key", "device", "batch_size"])
    gpu = parts.loc[(GPU_KEY, "cuda:0", 100)]
    moving = 600 * (10e-6 + 100 * 784 * 4 / 20e9)  # 600 batches of 100 float32 images, pageable
    assert gpu["transfer_s"] == pytest.approx(moving)
    assert gpu["compute_s"] == 8.0
    assert gpu["loading_s"] == pytest.approx(12.0 - 8.0 - moving)
    cpu = parts.loc[(GPU_KEY, "cpu", 100)]
    assert cpu["transfer_s"] == 0.0 and cpu["loading_s"] == pytest.approx(10.0 - 4.0)


def test_corrupt_and_foreign_files_are_named_and_skipped(tmp_path):
    shutil.copy(GPU_RUN, tmp_path / "good.json")
    (tmp_path / "truncated.json").write_text(GPU_RUN.read_text()[:5000])
    (tmp_path / "foreign.json").write_text(json.dumps({"hello": "world"}))
    other = json.loads(CPU_RUN.read_text())
    for b in other["benchmarks"]:
        b["group"] = "someone-elses"
    (tmp_path / "other_project.json").write_text(json.dumps(other))
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.warns(RunFileWarning) as caught:
        frame = load_frame([tmp_path])
    messages = " ".join(str(w.message) for w in caught)
    for name in ("truncated.json", "foreign.json", "other_project.json", "binary.json"):
        assert name in messages
    assert "good.json" not in messages
    assert set(frame["machine_key"]) == {GPU_KEY}


def test_newest_run_of_each_machine_counts_unless_all_runs(tmp_path):
    old = json.loads(GPU_RUN.read_text())
    new = json.loads(GPU_RUN.read_text())
    new["datetime"] = "2026-11-02T00:00:00+00:00"
    for b in new["benchmarks"]:
        b["stats"]["median"] *= 2
        b["stats"]["data"] = [x * 2 for x in b["stats"]["data"]]
    (tmp_path / "0001_old.json").write_text(json.dumps(old))
    (tmp_path / "0002_new.json").write_text(json.dumps(new))
    newest = load_frame([tmp_path])
    assert set(newest["run_file"]) == {
        "0002_new.json"
    }  # named under the folder given, not by a local path
    assert len(load_frame([tmp_path], all_runs=True)) == 2 * len(newest)


def test_a_newer_partial_run_updates_only_what_it_measured(tmp_path):
    full = json.loads(GPU_RUN.read_text())
    gpu_only = json.loads(GPU_RUN.read_text())
    gpu_only["datetime"] = "2026-11-03T00:00:00+00:00"
    gpu_only["benchmarks"] = [
        b for b in gpu_only["benchmarks"] if b["params"]["device"] == "cuda:0"
    ]
    for b in gpu_only["benchmarks"]:
        b["stats"]["median"] /= 2  # the GPU got twice as fast
        b["stats"]["data"] = [x / 2 for x in b["stats"]["data"]]
    (tmp_path / "0001_full.json").write_text(json.dumps(full))
    (tmp_path / "0002_gpu_only.json").write_text(json.dumps(gpu_only))
    frame = load_frame([tmp_path])
    assert len(frame) == len(full["benchmarks"])
    assert set(frame.loc[frame["device"] == "cpu", "run_file"]) == {"0001_full.json"}
    assert set(frame.loc[frame["device"] == "cuda:0", "run_file"]) == {"0002_gpu_only.json"}
    resident = (
        speedups(frame)
        .query("family == 'train' and variant == 'resident'")
        .sort_values("batch_size")
    )
    assert resident["speedup"].tolist() == pytest.approx([1.0, 4.0, 12.0])


def test_all_runs_keeps_every_row_in_the_csv_but_pairs_speedups_once(tmp_path):
    for name, when in (
        ("0001_a.json", "2026-11-01T00:00:00+00:00"),
        ("0002_b.json", "2026-11-02T00:00:00+00:00"),
    ):
        run = json.loads(GPU_RUN.read_text())
        run["datetime"] = when
        (tmp_path / name).write_text(json.dumps(run))
    every = load_frame([tmp_path], all_runs=True)
    write_report(every, tmp_path / "out")
    assert (
        len(pd.read_csv(tmp_path / "out" / "summary.csv"))
        == len(every)
        == 2 * len(load_frame([GPU_RUN]))
    )
    assert len(speedups(select_newest(every))) == len(speedups(load_frame([GPU_RUN])))


def test_odd_but_readable_runs_do_not_crash_the_report(tmp_path):
    run = json.loads(GPU_RUN.read_text())
    for b in run["benchmarks"]:
        if (
            b["group"] != "inference"
        ):  # a count inference needs for its time per batch: required there
            b["extra_info"].pop("batches", None)
    inference = next(b for b in run["benchmarks"] if b["group"] == "inference")
    inference["extra_info"].pop("batches")
    run["benchmarks"][0]["stats"]["median"] = 0.0  # a broken timing
    del run["datetime"]  # an undated run
    (tmp_path / "odd.json").write_text(json.dumps(run))
    with pytest.warns(RunFileWarning) as caught:
        frame = load_frame([tmp_path])
    said = "\n".join(str(w.message) for w in caught)
    assert "passed over: benchmarks[0].stats.median" in said
    assert (
        f"benchmark {inference['name']!r} passed over: " in said
        and "'batches' is a required property" in said
    )
    assert "datetime None is not a date" in said
    assert len(frame) == len(run["benchmarks"]) - 2
    assert {p.name for p in write_report(frame, tmp_path / "out")} >= {
        "index.html",
        "epoch_time.png",
    }


def test_quick_and_full_figures_of_one_machine_are_kept_apart(tmp_path):
    full = json.loads(GPU_RUN.read_text())
    quick = json.loads(GPU_RUN.read_text())
    quick["datetime"] = (
        "2026-11-05T00:00:00+00:00"  # newer, but only a smoke run: it replaces nothing of the full run
    )
    quick["machine_info"]["fmnist_bench"]["plan"]["quick"] = True
    (tmp_path / "0001_full.json").write_text(json.dumps(full))
    (tmp_path / "0002_quick.json").write_text(json.dumps(quick))
    frame = load_frame([tmp_path])
    assert set(frame.loc[~frame["quick"], "run_file"]) == {"0001_full.json"}
    assert set(frame.loc[frame["quick"], "run_file"]) == {"0002_quick.json"}
    assert len(frame) == 2 * len(full["benchmarks"])
    # Speedups pair full with full; the quick pairs of the same cases give way to them.
    speed = speedups(frame)
    assert not speed["quick"].any() and len(speed) == len(speedups(load_frame([GPU_RUN])))
    (tmp_path / "0001_full.json").unlink()
    assert set(load_frame([tmp_path])["run_file"]) == {"0002_quick.json"}  # better than nothing


def test_every_output_file_is_written(tmp_path, frame):
    written = {p.name for p in write_report(frame, tmp_path)}
    assert written == {
        "summary.csv", "report.md", "index.html", "epoch_time.png", "inference_throughput.png",
        "transfer_bandwidth.png", "speedup.png", "epoch_breakdown.png", "machines.png",
        # each plot's points beside it
        "epoch_time.csv", "inference_throughput.csv", "transfer_bandwidth.csv", "speedup.csv", "epoch_breakdown.csv",
        "machines.csv",
    }  # fmt: skip
    for name in written:
        assert (tmp_path / name).stat().st_size > 0
    assert (tmp_path / "epoch_time.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert list(summary.columns) == CSV_COLUMNS and len(summary) == len(frame)
    # The speedup plot's points carry their 95% intervals: empty only for a figure of one round.
    ratios = pd.read_csv(tmp_path / "speedup.csv")
    assert {"y_low", "y_high"} <= set(ratios.columns)
    sure = ratios.dropna(subset=["y_low", "y_high"])
    assert (
        len(sure)
        and ((sure["y_low"] <= sure["y"] * 1.5) & (sure["y"] <= sure["y_high"] * 1.5)).all()
    )
    page = (tmp_path / "index.html").read_text()
    for image in ("epoch_time.png", "speedup.png", "machines.png"):
        assert f'src="{image}"' in page
    markdown = (tmp_path / "report.md").read_text()
    assert (
        "| Machine" in markdown
        and "GPU faster from batch size 1,000 on (measured up to 10,000)" in markdown
    )


def test_cpu_only_runs_say_there_is_no_gpu(tmp_path):
    written = {p.name for p in write_report(load_frame([CPU_RUN]), tmp_path)}
    assert "speedup.png" not in written and "machines.png" not in written
    page = (tmp_path / "index.html").read_text()
    # No GPU: its answer says so, and the GPU's sections, with nothing to show, are left out.
    assert "No GPU" in page and "There is no GPU in these runs" not in page
    assert "GPU speedup over the CPU" not in page and "Crossover batch size" not in page


def test_every_section_has_its_words_and_every_words_block_a_section():
    # The sections are data (bench/report/sections.py), their words a macro each in templates/sections.j2: a key
    # without words, or words no section uses, would fail only when a report reached that section.
    from bench.report.sections import SECTIONS, _words

    keys = [spec.key for spec in SECTIONS]
    macros = {name for name in vars(_words()) if not name.startswith("_")}
    assert len(keys) == len(set(keys)) and set(keys) == macros - {
        "marks",
        "no_gpu",
        "cpu_only_quick",
        "reference_only",
        "reference_apart",
        "by_model",  # the view across models: the first page's, over every model (page.py)
    }
    assert len({spec.title for spec in SECTIONS}) == len(SECTIONS)


def test_a_sections_words_are_one_line_of_prose_whatever_the_facts(tmp_path):
    # Every section's words, under each condition that changes them, read as prose: no template left in them, no
    # line break, no doubled or dangling space, and a sentence's end.
    from bench.report.sections import SECTIONS, Facts, _said, _words

    words = _words()
    facts = Facts.of(load_frame([CPU_RUN]), tmp_path, cross_machine=False, in_fleet=False)
    for flags in itertools.product([False, True], repeat=4):
        known = dataclasses.replace(
            facts,
            has_gpu=flags[0],
            has_energy=flags[1],
            several=flags[2],
            in_fleet=flags[3],
            energy_notes="no RAPL counter" if flags[1] else "",
        )
        for spec in SECTIONS:
            said = _said(getattr(words, spec.key), known)
            assert said and "{" not in said and "  " not in said and said == said.strip(), said
            assert said.endswith((".", ")")), (spec.key, said)


def test_missing_families_still_make_a_report(tmp_path):
    run = json.loads(GPU_RUN.read_text())
    run["benchmarks"] = [b for b in run["benchmarks"] if b["group"] == "transfer"]
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "transfer_only.json").write_text(json.dumps(run))
    written = {p.name for p in write_report(load_frame([tmp_path / "runs"]), tmp_path / "out")}
    assert "transfer_bandwidth.png" in written and "epoch_time.png" not in written
    page = (tmp_path / "out" / "index.html").read_text()
    assert "nothing measured" not in page and "Training epoch time" not in page


def test_strings_from_saved_runs_are_escaped(tmp_path):
    run = json.loads(GPU_RUN.read_text())
    run["machine_info"]["cpu"]["brand_raw"] = "<script>alert('cpu')</script>"
    run["machine_info"]["gpus"][0]["name"] = '<img src=x onerror="alert(1)">'
    run["machine_info"]["node"] = "<b>host</b>"
    run["machine_info"]["fmnist_bench"]["run"] = {
        "complete": False,
        "ended": "<i>stopped</i> by <script>x()",
    }
    (tmp_path / "evil.json").write_text(json.dumps(run))
    write_report(load_frame([tmp_path / "evil.json"]), tmp_path / "out")
    page = (tmp_path / "out" / "index.html").read_text()
    assert (
        "<script>" not in page
        and "<img src=x" not in page
        and "<b>host" not in page
        and "<i>" not in page
    )
    assert (
        "&lt;i&gt;stopped&lt;/i&gt; by &lt;script&gt;x()" in page
    )  # how the run ended: in the table and the note
    assert "&lt;script&gt;alert(&#x27;cpu&#x27;)&lt;/script&gt;" in page or "&lt;script&gt;" in page


def test_cli_writes_the_report_and_reports_bad_paths(tmp_path, capsys):
    (tmp_path / "runs").mkdir()
    shutil.copy(GPU_RUN, tmp_path / "runs")
    (tmp_path / "runs" / "broken.json").write_text("{")
    assert main([str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 0
    captured = capsys.readouterr()
    assert "broken.json" in captured.err and str(tmp_path / "out" / "index.html") in captured.out
    (tmp_path / "nothing").mkdir()
    assert main([str(tmp_path / "nothing"), "--out", str(tmp_path / "o3")]) == 1
    with pytest.raises(SystemExit) as exit_:
        main([str(tmp_path / "does-not-exist")])
    assert exit_.value.code == 2


def test_the_report_stage_does_not_import_torch(tmp_path):
    code = (
        "import sys\n"
        "from bench.report.cli import main\n"
        f"rc = main([{str(GPU_RUN)!r}, {str(CPU_RUN)!r}, '--out', {str(tmp_path)!r}])\n"
        "assert rc == 0, rc\n"
        "print(sorted(m for m in ('torch', 'torchvision', 'pynvml', 'fmnist_model') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_saved_json_still_works_with_pytest_benchmark_compare():
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest_benchmark",
            "compare",
            str(CPU_RUN),
            str(GPU_RUN),
            "--group-by=group",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "test_train_epoch[cuda:0-1000-resident]" in result.stdout
    assert "test_train_epoch[cpu-100-seed]" in result.stdout


def test_report_warns_nothing_for_clean_runs():
    with warnings.catch_warnings():
        warnings.simplefilter("error", RunFileWarning)
        load_frame([GPU_RUN, CPU_RUN])


# ---------------------------------------------------------------- format 2: threads, latency, partial runs


def _json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def _write(folder: Path, name: str, run: dict) -> Path:
    path = folder / name
    path.write_text(json.dumps(run))
    return path


def _section(markdown: str, title: str) -> str:
    """The text of one "## title" section of report.md."""
    return markdown.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def _format2(run: dict) -> dict:
    """A format-1 run as format 2 would record it: every case at torch's default thread count, named so on the CPU."""
    run = copy.deepcopy(run)
    run["machine_info"]["fmnist_bench"]["format"] = 2
    threads = run["machine_info"]["torch"]["threads"]
    for b in run["benchmarks"]:
        b["params"]["cpu_threads"] = threads
        b["name"] = b["name"].replace("[cpu-", f"[cpu-{threads}t-")
    return run


def _also_at(
    run: dict, threads: int, family: str, variant: tuple[str, str], medians: dict[int, float]
) -> dict:
    """`run` with its CPU cases of `family` and variant also measured at `threads` threads, with these medians."""
    axis, value = variant
    extra = []
    for b in run["benchmarks"]:
        p = b["params"]
        if b["group"] == family and p["device"] == "cpu" and p[axis] == value:
            again = copy.deepcopy(b)
            again["params"]["cpu_threads"] = threads
            again["name"] = b["name"].replace(f"[cpu-{p['cpu_threads']}t-", f"[cpu-{threads}t-")
            scale = medians[p["batch_size"]] / again["stats"]["median"]
            again["stats"]["median"] = medians[p["batch_size"]]
            # Its rounds scaled with it, so a ratio's interval (from the rounds) is about its median.
            again["stats"]["data"] = [x * scale for x in again["stats"].get("data") or []]
            extra.append(again)
    assert extra, (family, variant)
    return {**run, "benchmarks": run["benchmarks"] + extra}


# One thread beats the constructed CPU's 64 at small batches (no threading overhead) and loses at large ones.
ONE_THREAD = {1: 0.5, 10: 0.1, 100: 0.03, 1000: 0.06, 10_000: 0.06}


def _medians(run: dict, family: str, device: str, axis: str, value: str) -> dict:
    """{(cpu_threads, batch_size): median} of the run's cases of one family, device and variant."""
    return {
        (b["params"].get("cpu_threads"), b["params"]["batch_size"]): b["stats"]["median"]
        for b in run["benchmarks"]
        if b["group"] == family and b["params"]["device"] == device and b["params"][axis] == value
    }


def test_the_report_uses_the_one_crossover_implementation():
    assert crossover_batch_size is derive.crossover_batch_size


def test_format2_rows_carry_cpu_threads_latency_and_how_the_run_ended():
    run = _json(QUICK_V2)
    frame = load_frame([QUICK_V2])
    assert len(frame) == len(run["benchmarks"])  # 1- and 2-thread cases are different benchmarks
    assert (frame["default_threads"] == run["machine_info"]["torch"]["threads"]).all()
    with_latency = 0
    for b in run["benchmarks"]:
        row = one(frame, name=b["name"])
        assert row["cpu_threads"] == b["params"]["cpu_threads"]
        latency = b["extra_info"].get("latency")
        if latency:
            with_latency += 1
            for q in ("p50", "p90", "p99"):
                assert row[f"latency_{q}_ms"] == pytest.approx(latency[f"{q}_s"] * 1e3)
            assert row["latency_samples"] == latency["samples"]
            assert row["latency_ms"] == pytest.approx(
                b["stats"]["median"] / b["extra_info"]["batches"] * 1e3
            )
        else:
            assert pd.isna(row["latency_p50_ms"]) and pd.isna(row["latency_samples"])
    assert with_latency == sum(b["group"] == "inference" for b in run["benchmarks"]) > 0
    state = run["machine_info"]["fmnist_bench"]["run"]
    assert state["complete"] and not frame["partial"].any() and (frame["run_ended"] == "").all()
    assert (frame["run_planned_cases"] == state["planned_cases"]).all()


def test_format1_cases_ran_at_torchs_default_and_have_no_latency_sample(frame):
    for path in (GPU_RUN, CPU_RUN):
        threads = _json(path)["machine_info"]["torch"]["threads"]
        rows = frame[frame["run_file"] == path.name]
        assert (
            len(rows)
            and (rows["cpu_threads"] == threads).all()
            and (rows["default_threads"] == threads).all()
        )
    assert frame[["latency_p50_ms", "latency_p90_ms", "latency_p99_ms"]].isna().all().all()
    assert frame["latency_samples"].isna().all() and frame["latency_ms"].notna().any()
    assert not frame["partial"].any() and frame["run_planned_cases"].isna().all()


def test_a_run_stopped_by_sigterm_is_partial():
    state = _json(PARTIAL_V2)["machine_info"]["fmnist_bench"]["run"]
    frame = load_frame([PARTIAL_V2])
    assert not state["complete"] and frame["partial"].all()
    assert (frame["run_ended"] == state["ended"]).all()
    assert (frame["run_finished_cases"] == state["finished_cases"]).all()
    assert (frame["run_planned_cases"] == state["planned_cases"]).all()


def test_a_format2_run_replaces_the_format1_figures_it_measured_again(tmp_path):
    old, new = _json(CPU_RUN), _json(QUICK_V2)
    assert (
        old["machine_info"]["fmnist_bench"]["machine_key"]
        == new["machine_info"]["fmnist_bench"]["machine_key"]
    )
    # Everything the format-1 run measured (at torch's 2 threads), the format-2 run measured again at 2 threads.
    frame = load_frame([CPU_RUN, QUICK_V2])
    assert set(frame["run_file"]) == {QUICK_V2.name} and len(frame) == len(new["benchmarks"])
    # A format-2 run without the training cases leaves the format-1 run's in place, once each.
    no_train = {**new, "benchmarks": [b for b in new["benchmarks"] if b["group"] != "train"]}
    frame = load_frame([CPU_RUN, _write(tmp_path, "no_train.json", no_train)])
    old_train = [b for b in old["benchmarks"] if b["group"] == "train"]
    assert len(frame) == len(no_train["benchmarks"]) + len(old_train)
    assert set(frame.loc[frame["family"] == "train", "run_file"]) == {CPU_RUN.name}


def test_gpu_cases_are_the_same_case_whatever_torchs_thread_count(tmp_path):
    old = _json(GPU_RUN)
    new = copy.deepcopy(old)
    new["datetime"] = "2026-11-02T00:00:00+00:00"
    new["machine_info"]["torch"]["threads"] = old["machine_info"]["torch"]["threads"] // 2
    _write(tmp_path, "0001_old.json", old)
    _write(tmp_path, "0002_new.json", new)
    frame = load_frame([tmp_path])
    assert set(frame.loc[frame["device"] == "cuda:0", "run_file"]) == {"0002_new.json"}
    # The CPU at the old default count was not measured again: it stays, beside the new count.
    cpu_threads = set(frame.loc[frame["device"] == "cpu", "cpu_threads"])
    assert cpu_threads == {
        old["machine_info"]["torch"]["threads"],
        new["machine_info"]["torch"]["threads"],
    }


def test_speedup_at_torchs_default_and_against_the_cpus_best_thread_count(tmp_path):
    run = _also_at(_format2(_json(GPU_RUN)), 1, "inference", ("mode", "compute"), ONE_THREAD)
    default = run["machine_info"]["torch"]["threads"]
    frame = load_frame([_write(tmp_path, "threads.json", run)])
    cpu = _medians(run, "inference", "cpu", "mode", "compute")
    gpu = {
        size: median
        for (_t, size), median in _medians(run, "inference", "cuda:0", "mode", "compute").items()
    }
    speed = speedups(frame)
    compute = speed.query("family == 'inference' and variant == 'compute'").sort_values(
        "batch_size"
    )
    sizes = compute["batch_size"].tolist()
    assert sizes == sorted(gpu)
    best = {
        s: min((cpu[(default, s)], default), (cpu[(1, s)], 1)) for s in sizes
    }  # (median, threads)
    assert {threads for _m, threads in best.values()} == {1, default}  # each count wins somewhere
    assert compute["speedup"].tolist() == pytest.approx([cpu[(default, s)] / gpu[s] for s in sizes])
    assert compute["speedup_vs_best_cpu"].tolist() == pytest.approx(
        [best[s][0] / gpu[s] for s in sizes]
    )
    assert compute["best_cpu_threads"].tolist() == [best[s][1] for s in sizes]
    assert (compute["default_threads"] == default).all()
    # The crossover is against the CPU's best, and here that moves it.
    against_best = crossover_batch_size(sizes, [best[s][0] / gpu[s] for s in sizes])
    assert against_best != crossover_batch_size(sizes, compute["speedup"].tolist())
    cross = crossovers(speed).set_index(["family", "variant"])
    assert cross.loc[("inference", "compute"), "crossover_batch_size"] == against_best
    assert cross.loc[("inference", "compute"), "best_speedup"] == pytest.approx(
        max(b / gpu[s] for s, (b, _t) in best.items())
    )
    # Where one count was measured, the two speedups are one.
    others = speed.query("not (family == 'inference' and variant == 'compute')")
    assert len(others) and (others["speedup"] == others["speedup_vs_best_cpu"]).all()
    assert (others["best_cpu_threads"] == default).all()


def test_format1_speedups_are_against_the_only_thread_count_measured(frame):
    speed = speedups(frame)
    assert (speed["speedup_vs_best_cpu"] == speed["speedup"]).all()
    assert (speed["best_cpu_threads"] == speed["default_threads"]).all()
    assert (speed["default_threads"] == _json(GPU_RUN)["machine_info"]["torch"]["threads"]).all()


def test_the_cpu_threads_section_names_the_best_count_and_its_gain(tmp_path):
    run = _also_at(_format2(_json(GPU_RUN)), 1, "inference", ("mode", "compute"), ONE_THREAD)
    default = run["machine_info"]["torch"]["threads"]
    write_report(load_frame([_write(tmp_path, "threads.json", run)]), tmp_path / "out")
    markdown = (tmp_path / "out" / "report.md").read_text()
    section = _section(markdown, "CPU threads")
    cpu = _medians(run, "inference", "cpu", "mode", "compute")
    for size in ONE_THREAD:
        if cpu[(1, size)] < cpu[(default, size)]:
            assert f"1t, {cpu[(default, size)] / cpu[(1, size)]:.2f}x" in section
        else:
            assert f"{default}t (the default)" in section
    assert f"only {default}t measured" in section  # end_to_end ran at the default only
    assert "| train" not in section  # training ran at one count: nothing to choose
    # The speedup table gives the best count's speedup in brackets where it is not the default.
    gpu = _medians(run, "inference", "cuda:0", "mode", "compute")
    said = md_escape(
        f"[{cpu[(1, 1)] / gpu[(default, 1)]:.2f}x ("
    )  # report.md escapes every cell's text
    assert (
        said in _section(markdown, "GPU speedup over the CPU") and md_escape(") vs 1t]") in markdown
    )
    assert "Against the CPU at its best thread count" in _section(markdown, "Crossover batch size")
    # Runs with one CPU thread count have no such section.
    write_report(load_frame([GPU_RUN, CPU_RUN]), tmp_path / "one")
    assert "## CPU threads" not in (tmp_path / "one" / "report.md").read_text()


def test_the_epoch_breakdown_takes_the_cpu_at_torchs_default(tmp_path):
    run = _format2(_json(GPU_RUN))
    for pipeline in ("seed", "resident"):
        run = _also_at(run, 1, "train", ("pipeline", pipeline), {100: 1.0, 1000: 1.0, 10_000: 1.0})
    default = run["machine_info"]["torch"]["threads"]
    parts = breakdown(load_frame([_write(tmp_path, "threads.json", run)]))
    cpu = parts[parts["device"] == "cpu"].set_index("batch_size")
    seed = _medians(run, "train", "cpu", "pipeline", "seed")
    resident = _medians(run, "train", "cpu", "pipeline", "resident")
    assert (cpu["cpu_threads"] == default).all() and sorted(cpu.index) == sorted(
        {s for _t, s in seed}
    )
    for size, r in cpu.iterrows():
        assert (
            r["seed_epoch_s"] == seed[(default, size)]
            and r["compute_s"] == resident[(default, size)]
        )


def test_tables_show_each_cpu_thread_count_on_its_own_row(tmp_path):
    run = _json(QUICK_V2)
    write_report(load_frame([QUICK_V2]), tmp_path)
    markdown = (tmp_path / "report.md").read_text()
    transfer = _section(markdown, "Transfer bandwidth")
    for b in run["benchmarks"]:
        p = b["params"]
        if b["group"] == "transfer" and p["size"] == max(
            r["params"].get("size", 0) for r in run["benchmarks"]
        ):
            line = next(
                x
                for x in transfer.splitlines()
                if f"| cpu {p['cpu_threads']}t " in x and p["dtype"] in x
            )
            assert f"{b['extra_info']['bytes'] / b['stats']['median'] / 1e9:.3g} GB/s" in line
    counts = sorted(
        {b["params"]["cpu_threads"] for b in run["benchmarks"] if b["group"] == "inference"}
    )
    inference = _section(markdown, "Inference")
    assert all(f"| cpu {t}t " in inference for t in counts)
    assert "| cpu 2t " in _section(markdown, "Training epoch time")


def test_thread_counts_sort_as_numbers(tmp_path):
    run = _json(QUICK_V2)
    for b in run["benchmarks"]:
        if b["params"]["cpu_threads"] == 1:
            b["params"]["cpu_threads"] = 16
            b["name"] = b["name"].replace("-1t-", "-16t-")
    write_report(load_frame([_write(tmp_path, "sixteen.json", run)]), tmp_path / "out")
    inference = _section((tmp_path / "out" / "report.md").read_text(), "Inference")
    assert inference.index("| cpu 2t ") < inference.index("| cpu 16t ")


def test_inference_shows_throughput_and_latency_percentiles_or_the_mean(tmp_path):
    # The brief's check: the H100 host's format-1 runs beside the 2-core VM's format-2 runs.
    assert main([str(H100), str(QUICK_V2), str(PARTIAL_V2), "--out", str(tmp_path)]) == 0
    inference = _section((tmp_path / "report.md").read_text(), "Inference")
    # The VM's full run, although stopped, is newer and full: its cases are the VM's figures.
    b = next(
        b
        for b in _json(PARTIAL_V2)["benchmarks"]
        if b["name"] == "test_inference[cpu-1t-1-compute]"
    )
    lat = b["extra_info"]["latency"]
    expected = (
        f"{b['extra_info']['images'] / b['stats']['median']:,.0f} img/s; "
        f"p50 {lat['p50_s'] * 1e3:.3g} ms, p99 {lat['p99_s'] * 1e3:.3g} ms, n={lat['samples']}"
    )
    assert expected in inference
    full = next(H100.glob("*full*.json"))
    g = next(
        b for b in _json(full)["benchmarks"] if b["name"] == "test_inference[cuda:0-100-compute]"
    )
    assert (
        f"{g['stats']['median'] / g['extra_info']['batches'] * 1e3:.3g} ms/batch mean" in inference
    )


def test_the_report_marks_a_partial_run_and_says_which_figures_come_from_it(tmp_path):
    run = _json(PARTIAL_V2)
    state = run["machine_info"]["fmnist_bench"]["run"]
    write_report(load_frame([PARTIAL_V2, GPU_RUN]), tmp_path)
    markdown, page = (tmp_path / "report.md").read_text(), (tmp_path / "index.html").read_text()
    label = (
        f"partial: {state['finished_cases']} of {state['planned_cases']} cases, {state['ended']}"
    )
    assert label in _section(markdown, "Machines and runs") and html.escape(label) in page
    note = partial_note(load_frame([PARTIAL_V2, GPU_RUN]))
    assert md_escape(note) in markdown and html.escape(note) in page
    assert PARTIAL_V2.name in note and GPU_RUN.name not in note
    measured = {b["group"] for b in run["benchmarks"]}
    for family in ("transfer", "train", "inference"):
        assert (f"{family} on cpu" in note) == (family in measured)
    assert "not recorded" in _section(
        markdown, "Machines and runs"
    )  # the format-1 run does not say
    write_report(load_frame([QUICK_V2]), tmp_path / "quick")
    quick = (tmp_path / "quick" / "report.md").read_text()
    assert "| complete" in quick and "Figures from partial runs" not in quick


@pytest.mark.parametrize(
    "state, says",
    [
        (
            {
                "complete": False,
                "ended": "killed: recovered from its journal",
                "finished_cases": 12,
            },
            "partial: 12 cases, killed: recovered from its journal",
        ),
        (
            {
                "complete": False,
                "planned_cases": 46,
                "finished_cases": 44,
                "failed": [{"name": "a"}, {"name": "b"}],
            },
            "partial: 44 of 46 cases, 2 cases failed",
        ),
    ],
)
def test_recovered_and_failed_runs_say_how_they_ended(tmp_path, state, says):
    run = _json(PARTIAL_V2)
    run["machine_info"]["fmnist_bench"]["run"] = state
    write_report(load_frame([_write(tmp_path, "run.json", run)]), tmp_path / "out")
    assert says in _section((tmp_path / "out" / "report.md").read_text(), "Machines and runs")


def test_orphan_journals_are_named_with_the_command_that_recovers_them(tmp_path, capsys):
    folder = tmp_path / "runs" / "vm_AMD-EPYC_no-gpu"
    folder.mkdir(parents=True)
    shutil.copy(QUICK_V2, folder / "0001_quick.json")
    assert main([str(tmp_path / "runs"), "--out", str(tmp_path / "clean")]) == 0
    assert "bench.recover" not in capsys.readouterr().err
    journal = folder / "journal_20261127T211400_4242.jsonl"
    journal.write_text(
        json.dumps({"journal": 1, "opened": "2026-11-27T21:14:00+00:00", "pid": 4242}) + "\n"
    )
    assert main([str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert str(journal) in err and f"python -m bench recover {folder}" in err
    assert journal.exists() and sorted(p.name for p in folder.glob("*.json")) == [
        "0001_quick.json"
    ]  # not recovered
    assert "killed before it saved" in err
    # A journal whose run is still going (it holds the lock) is named as such, with no recovery advice.
    journal.unlink()
    live = Journal(folder)
    try:
        assert main([str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 0
        err = capsys.readouterr().err
        assert str(live.path) in err and "a run still going" in err and "bench.recover" not in err
    finally:
        live.close(keep=False)


def test_a_malformed_benchmark_is_named_with_its_field_and_passed_over_alone(tmp_path):
    run = _json(QUICK_V2)
    inference = [b for b in run["benchmarks"] if b["group"] == "inference"]
    threads_case, flat_case, odd_case = run["benchmarks"][0], inference[0], inference[1]
    threads_case["params"]["cpu_threads"] = "two"
    flat_case["extra_info"]["latency"] = "fast"
    odd_case["extra_info"]["latency"]["samples"] = -3
    path = _write(tmp_path, "odd_v2.json", run)
    with pytest.warns(RunFileWarning) as caught:
        frame = load_frame([path])
    messages = [str(w.message) for w in caught]
    for case, field in (
        (threads_case, "params.cpu_threads"),
        (flat_case, "extra_info.latency"),
        (odd_case, "extra_info.latency.samples"),
    ):
        index = run["benchmarks"].index(case)
        assert any(
            m.startswith(
                f"{path}: benchmark {case['name']!r} passed over: benchmarks[{index}].{field}:"
            )
            for m in messages
        ), field
    assert len(frame) == len(run["benchmarks"]) - 3  # the others of the same file are kept
    assert {p.name for p in write_report(frame, tmp_path / "out")} >= {"index.html", "report.md"}


@pytest.mark.parametrize(
    "where, value, field",
    [
        (("fmnist_bench", "run", "complete"), "yes", "machine_info.fmnist_bench.run.complete"),
        (("torch", "threads"), 0, "machine_info.torch.threads"),
        (("fmnist_bench", "run"), "oops", "machine_info.fmnist_bench.run"),
        (("gpus",), 3, "machine_info.gpus"),
    ],
)
def test_a_malformed_run_is_named_with_its_field_and_passed_over(tmp_path, where, value, field):
    run = _json(QUICK_V2)
    node = run["machine_info"]
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    path = _write(tmp_path, "bad.json", run)
    with pytest.warns(
        RunFileWarning,
        match=re.escape(f"{path}: not a saved run the report can read, skipped: {field}:"),
    ):
        frame = load_frame([path, GPU_RUN])
    assert set(frame["run_file"]) == {GPU_RUN.name}


def test_runs_with_no_thread_count_or_run_record_still_report(tmp_path):
    run = _json(GPU_RUN)
    del run["machine_info"]["torch"]["threads"]
    run["machine_info"]["fmnist_bench"].pop("run", None)
    path = _write(tmp_path, "bare.json", run)
    frame = load_frame([path])
    assert frame["cpu_threads"].isna().all() and not frame["partial"].any()
    speed = speedups(frame)
    assert speed["speedup"].tolist() == pytest.approx(
        speedups(load_frame([GPU_RUN]))["speedup"].tolist()
    )
    write_report(frame, tmp_path / "out")
    assert "| cpu " in _section((tmp_path / "out" / "report.md").read_text(), "Training epoch time")


def test_a_newer_format_is_read_with_a_warning(tmp_path):
    run = _json(QUICK_V2)
    run["machine_info"]["fmnist_bench"]["format"] = FORMAT_VERSION + 1
    with pytest.warns(RunFileWarning, match=f"format {FORMAT_VERSION + 1} is newer"):
        frame = load_frame([_write(tmp_path, "future.json", run)])
    assert len(frame) == len(run["benchmarks"])


def test_cpu_choices_prefer_the_default_on_a_tie(tmp_path):
    run = _format2(_json(GPU_RUN))
    default = run["machine_info"]["torch"]["threads"]
    same = {s: m for (_t, s), m in _medians(run, "inference", "cpu", "mode", "compute").items()}
    run = _also_at(
        run, 1, "inference", ("mode", "compute"), same
    )  # named cpu-1t-: listed before cpu-64t-
    choices = cpu_choices(load_frame([_write(tmp_path, "tie.json", run)]))
    compute = choices.query("family == 'inference' and variant == 'compute'")
    assert len(compute) == len(same) and (compute["best_cpu_threads"] == default).all()
    assert (compute["threads_measured"] == 2).all()


LADDER_RUN = (
    FIXTURES / "cpu_default_run_ladder.json"
)  # real: the 2-core VM's default run 0004, train at batch 1,000
# real, committed: the 2-core VM's default run 0006, both ladders (compile steps only with --pipelines all)
INFERENCE_RUN = next(
    (FIXTURES.parent.parent / "results" / "reference" / "vm_AMD-EPYC_no-gpu").glob("*/0006_*.json")
)


def _over(before, step) -> float:
    """An earlier step's time over a step's: the ratio of their rounds' geometric means."""
    return ratio_estimate(before["round_times"], step["round_times"]).value


def test_the_ladder_gives_each_steps_speedup_over_the_step_it_builds_on(tmp_path):
    from bench.analysis.figures import fastest_steps, ladder
    from bench.report.tables import ladder_table

    steps = ladder(load_frame([LADDER_RUN]), "train").set_index("pipeline")
    assert list(steps.index) == [
        p for p in names.TRAIN_LADDER if "cuda_graph" not in p
    ]  # none on the CPU
    for name, row in steps.iterrows():
        base = names.BUILDS_ON["train"].get(name)
        assert row["builds_on"] == base if base else pd.isna(row["builds_on"])
        # Each speedup is of the rounds' geometric means, the estimate its interval is of (bench/analysis/intervals.py).
        expected = _over(steps.loc[base], row) if base else None
        assert (
            pd.isna(row["vs_base"]) if base is None else row["vs_base"] == pytest.approx(expected)
        ), name
        assert row["vs_first"] == pytest.approx(_over(steps.loc["seed"], row))
        assert row["vs_first_low"] <= row["vs_first"] <= row["vs_first_high"]
    # bf16 on channels_last is measured against channels_last, not against its neighbour bf16.
    assert steps.loc["channels_last_bf16", "builds_on"] == "channels_last"
    assert not steps["learns_less"].any()
    best = fastest_steps(steps.reset_index())
    assert best["pipeline"].tolist() == [steps["median"].idxmin()]
    table = ladder_table(steps.reset_index(), "train")
    over = _over(steps.loc["channels_last"], steps.loc["channels_last_bf16"])
    assert f"[{over:.2f}x (" in table.loc[0, "channels_last_bf16"]  # with its interval
    assert ") over channels_last]" in table.loc[0, "channels_last_bf16"]
    # Held to --host-allocator keep, no step faulted much, and none is said to have.
    assert load_frame([LADDER_RUN])["host_allocator"].eq("keep").all()
    assert (
        not table.apply(lambda column: column.astype(str).str.contains("page faults")).any().any()
    )


def test_a_step_that_touched_fresh_memory_often_has_its_page_faults_named(tmp_path):
    from bench.analysis.figures import ladder
    from bench.report.tables import ladder_table

    run = _json(LADDER_RUN)
    del run["machine_info"]["fmnist_bench"]["host_allocator"]  # as a run from before format 4
    for bench in run["benchmarks"]:
        if bench["params"]["pipeline"] == "resident":  # as one did with glibc as it is
            bench["extra_info"]["telemetry"]["host"]["minor_faults_per_round"] = 540_091.3
    frame = load_frame([_write(tmp_path, "faults.json", run)])
    assert frame["host_allocator"].eq("default").all()
    table = ladder_table(ladder(frame, "train"), "train")
    assert "540k page faults a round" in table.loc[0, "resident"]
    assert "page faults" not in table.loc[0, "channels_last"]


def test_a_ladder_without_some_steps_measures_each_against_the_nearest_step_that_ran(tmp_path):
    from bench.analysis.answers import _fastest_said
    from bench.analysis.figures import fastest_steps, ladder
    from bench.report.tables import ladder_table

    run = _json(LADDER_RUN)  # as --pipelines loader,resident,bf16,channels_last_bf16 would have it
    run["benchmarks"] = [
        b for b in run["benchmarks"] if b["params"]["pipeline"] not in ("seed", "channels_last")
    ]
    steps = ladder(load_frame([_write(tmp_path, "some.json", run)]), "train").set_index("pipeline")
    both = steps.loc["channels_last_bf16"]
    assert both["builds_on"] == "resident"  # channels_last did not run: the step it builds on did
    assert both["vs_base"] == pytest.approx(_over(steps.loc["resident"], both))
    assert steps["vs_first"].isna().all()  # no seed: no "over seed" figure, not one over loader
    table = ladder_table(steps.reset_index(), "train")
    assert ") over resident]" in table.loc[0, "channels_last_bf16"]
    said = _fastest_said(fastest_steps(steps.reset_index()))
    assert said and all("seed" not in line for line in said)


def test_a_step_from_a_later_run_says_which_steps_it_is_compared_with_come_from_another_run(
    tmp_path,
):
    from bench.analysis.answers import _fastest_said
    from bench.analysis.figures import fastest_steps, ladder
    from bench.report.tables import ladder_table

    old = _json(LADDER_RUN)
    new = _json(
        LADDER_RUN
    )  # a later run of two steps only (-k "channels_last_bf16 or compile"), faster
    new["datetime"] = "2026-11-29T00:00:00+00:00"
    new["benchmarks"] = [
        b for b in new["benchmarks"]
        if b["group"] == "train" and b["params"].get("pipeline") in ("channels_last_bf16", "compile")
    ]  # fmt: skip
    for bench in new["benchmarks"]:
        for stat in ("min", "max", "mean", "median", "q1", "q3"):
            bench["stats"][stat] /= 3
    assert len(new["benchmarks"]) == 2
    frame = load_frame(
        [_write(tmp_path, "0001_old.json", old), _write(tmp_path, "0002_new.json", new)]
    )
    steps = ladder(frame, "train").set_index("pipeline")
    assert steps.loc["channels_last_bf16", "run_file"] != steps.loc["seed", "run_file"]
    assert steps.loc["channels_last_bf16", "other_runs"] == "seed, channels_last"
    assert steps.loc["compile", "other_runs"] == "seed, resident"
    assert (steps.drop(["channels_last_bf16", "compile"])["other_runs"] == "").all()
    row = ladder_table(steps.reset_index(), "train").iloc[0]
    assert "; seed and channels_last from another run" in row["channels_last_bf16"]
    assert "; seed and resident from another run" in row["compile"]
    assert not any(
        "another run" in row[step]
        for step in ("seed", "loader", "resident", "channels_last", "bf16")
    )
    # The fastest step is the later run's, and its speedup over seed is said to be across runs.
    (said,) = _fastest_said(fastest_steps(steps.reset_index()))
    assert "channels_last_bf16" in said and "against the seed epoch of another run" in said
    # From one run alone, nothing is said to be from another.
    (alone,) = _fastest_said(fastest_steps(ladder(load_frame([LADDER_RUN]), "train")))
    assert (
        "the notes' loop (seed) on the same device, with a loss" in alone
        and "another run" not in alone
    )


def test_a_step_of_another_run_is_named_where_a_base_is_missing_with_no_seed_and_in_inference(
    tmp_path,
):
    from bench.analysis.figures import ladder
    from bench.report.tables import ladder_table

    def later(when: str, keep, source: Path = LADDER_RUN) -> dict:
        run = _json(source)
        run["datetime"] = when
        run["benchmarks"] = [b for b in run["benchmarks"] if keep(b)]
        return run

    def step(b, family: str, pipelines: tuple) -> bool:
        return b["group"] == family and b["params"].get("pipeline") in pipelines

    old = _json(LADDER_RUN)
    # channels_last_bf16 alone (its base channels_last from the old run), then resident alone, later still:
    # channels_last_bf16 is compared with seed and channels_last of one run, compile with seed and resident
    # of two different runs.
    a = later("2026-11-28T02:00:00+00:00", lambda b: step(b, "train", ("channels_last_bf16",)))
    b = later("2026-11-28T03:00:00+00:00", lambda b: step(b, "train", ("resident",)))
    paths = [_write(tmp_path, f"{i}.json", run) for i, run in enumerate((old, a, b))]
    train = ladder(load_frame(paths), "train").set_index("pipeline")
    assert train.loc["channels_last_bf16", ["other_runs", "other_run_count"]].tolist() == [
        "seed, channels_last",
        1,
    ]
    assert train.loc["compile", ["other_runs", "other_run_count"]].tolist() == ["resident", 1]
    assert train.loc["resident", ["other_runs", "other_run_count"]].tolist() == ["seed, loader", 1]
    cells = ladder_table(train.reset_index(), "train").iloc[0]
    assert "; seed and channels_last from another run" in cells["channels_last_bf16"]

    # A base missing from the ladder: the nearest step it builds on is the one compared, and named.
    no_base = [b for b in old["benchmarks"] if not step(b, "train", ("channels_last",))]
    paths = [
        _write(tmp_path, "nb.json", {**old, "benchmarks": no_base}),
        _write(tmp_path, "a.json", a),
    ]
    steps = ladder(load_frame(paths), "train").set_index("pipeline")
    assert steps.loc["channels_last_bf16", "builds_on"] == "resident"
    assert steps.loc["channels_last_bf16", "other_runs"] == "seed, resident"

    # No seed anywhere: only the base is compared, and the later step's two bases come from two other runs.
    no_seed = [b for b in old["benchmarks"] if not step(b, "train", ("seed",))]
    paths = [_write(tmp_path, "ns.json", {**old, "benchmarks": no_seed})]
    d = later("2026-11-28T04:00:00+00:00", lambda b: step(b, "train", ("compile",)))
    paths += [_write(tmp_path, "b.json", b), _write(tmp_path, "d.json", d)]
    steps = ladder(load_frame(paths), "train").set_index("pipeline")
    assert steps["vs_first"].isna().all() and steps.loc["compile", "other_runs"] == "resident"
    assert (
        steps.loc["loader", "other_runs"] == "" and steps.loc["resident", "other_runs"] == "loader"
    )

    # Two compared steps, each from a different other run: "from other runs".
    e = later("2026-11-28T05:00:00+00:00", lambda b: step(b, "train", ("seed",)))
    f = later("2026-11-28T06:00:00+00:00", lambda b: step(b, "train", ("compile",)))
    paths = [
        _write(tmp_path, n, r)
        for n, r in (("o.json", old), ("b2.json", b), ("e.json", e), ("f.json", f))
    ]
    steps = ladder(load_frame(paths), "train").set_index("pipeline")
    assert steps.loc["compile", ["other_runs", "other_run_count"]].tolist() == ["seed, resident", 2]
    assert (
        "; seed and resident from other runs"
        in ladder_table(steps.reset_index(), "train").iloc[0]["compile"]
    )

    # The inference ladder (the VM's default run 0006), its channels_last_bf16 measured in a later run.
    c = later(
        "2026-11-28T13:00:00+00:00",
        lambda b: step(b, "inference", ("channels_last_bf16",)),
        INFERENCE_RUN,
    )
    assert c["benchmarks"]
    # (both outside results/reference/: a reference run and a user's are never one machine)
    paths = [_write(tmp_path, "base.json", _json(INFERENCE_RUN)), _write(tmp_path, "c.json", c)]
    inference = ladder(load_frame(paths), "inference").set_index("pipeline")
    assert inference.loc["channels_last_bf16", "other_runs"] == "eager, channels_last"
    assert (inference.drop("channels_last_bf16")["other_runs"] == "").all()
    cells = ladder_table(inference.reset_index(), "inference").iloc[0]
    assert "; eager and channels_last from another run" in cells["channels_last_bf16"]


def test_the_gpu_ladder_says_how_busy_the_gpu_was_and_how_many_operations_a_step_ran(tmp_path):
    from bench.analysis.figures import ladder
    from bench.report.tables import ladder_table

    gpu_run = FIXTURES / "h100-host-ladder"
    steps = ladder(load_frame([gpu_run]), "train").set_index("pipeline")
    graph = steps.loc["cuda_graph"]
    assert graph["gpu_ops_per_step"] == pytest.approx(104.5) and graph["gpu_busy_share"] > 0.5
    assert (
        steps.loc["resident", "gpu_busy_share"] < 0.2
    )  # eager on that GPU: bound by launching kernels
    table = ladder_table(steps.reset_index(), "train")
    assert "GPU busy 74%, 104 ops a step" in table.loc[0, "cuda_graph"]
    # A CPU's ladder says nothing of a GPU.
    cpu = ladder_table(ladder(load_frame([LADDER_RUN]), "train"), "train")
    assert not cpu.apply(lambda column: column.astype(str).str.contains("GPU busy")).any().any()
    # A device_work that is not numbers is passed over, not shown.
    run = _json(next(gpu_run.glob("*.json")))
    for bench in run["benchmarks"]:
        if (bench["extra_info"].get("breakdown") or {}).get("device_work"):
            bench["extra_info"]["breakdown"]["device_work"] = {"ops": "many", "busy_share": [1]}
    (tmp_path / "run.json").write_text(json.dumps(run))
    odd = ladder_table(ladder(load_frame([tmp_path / "run.json"]), "train"), "train")
    assert not odd.apply(lambda column: column.astype(str).str.contains("GPU busy")).any().any()


def test_the_cpu_ladder_names_each_steps_costliest_operation(tmp_path):
    from bench.analysis.figures import ladder
    from bench.report.tables import ladder_table

    run = _json(LADDER_RUN)
    given = {
        "channels_last_bf16": [
            {"name": "aten::max_pool2d_with_indices", "count": 20, "seconds": 0.11, "share": 0.27}
        ],
        "compile": [  # its forward and backward graphs: one "generated code", summed
            {
                "name": "## Call CompiledFxGraph fb5xowntx",
                "count": 10,
                "seconds": 0.19,
                "share": 0.41,
            },
            {"name": "aten::convolution_backward", "count": 20, "seconds": 0.08, "share": 0.25},
            {
                "name": "## Call CompiledFxGraph fwnffr36v",
                "count": 10,
                "seconds": 0.09,
                "share": 0.19,
            },
        ],
        "resident": {"top": "not a list"},  # malformed: passed over, not shown
        "seed": [
            {"name": "aten::copy_", "share": "most"}
        ],  # a share that is not a number: not shown
    }
    injected = set()
    for bench in run["benchmarks"]:
        step = bench["params"].get("pipeline")
        if bench["group"] == "train" and step in given and bench["extra_info"].get("breakdown"):
            top = given[step]
            bench["extra_info"]["breakdown"]["host_work"] = (
                {"top": top} if isinstance(top, list) else top
            )
            injected.add(step)
    assert injected == set(
        given
    )  # the malformed ones too: their "not shown" is a finding, not a default
    table = ladder_table(ladder(load_frame([_write(tmp_path, "run.json", run)]), "train"), "train")
    row = table.iloc[0]
    assert row["channels_last_bf16"].count("; costliest op max_pool2d_with_indices (27%)") == 1
    assert "; costliest op torch.compile's generated code (60%)" in row["compile"]
    assert "costliest" not in row["resident"] and "costliest" not in row["seed"]


def test_an_option_in_the_pages_words_stays_on_one_line_and_everything_else_escaped():
    # "--cpu-threads" broke after its hyphens at both widths, as "-" and "-cpu-threads": copied, neither works.
    from bench.report.page import _options_whole

    said = str(_options_whole('rerun with --cpu-threads 1 on <img src=x onerror="a--b"> host-a'))
    assert '<span class="opt">--cpu-threads</span> 1' in said
    assert "<img" not in said and "&lt;img" in said and "host-a" in said
