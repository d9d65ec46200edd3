"""Reports from saved runs: the tidy table, speedup and crossover on a constructed run, bad files, the page."""

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pandas as pd
import pytest

from bench.report import breakdown, crossover_batch_size, crossovers, main, speedups, write_report
from bench.results import COLUMNS, RunFileWarning, load_frame, select_newest

FIXTURES = Path(__file__).parent / "fixtures"
GPU_RUN = FIXTURES / "constructed_gpu_run.json"  # constructed, with known answers (see its builder)
CPU_RUN = FIXTURES / "cpu_quick_run.json"  # a real quick run of this suite on a 2-core CPU machine
GPU_KEY = "gpu-box_Constructed-CPU-64-Core_NVIDIA-Constructed-GPU"


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
    assert row["machine"] == "gpu-box · Constructed CPU 64-Core · NVIDIA Constructed GPU (constructed, not measured)"
    assert row["commit"] == "000000000000" and row["rounds"] == 3 and not row["noisy"]

    copy = one(gpu, family="transfer", device="cuda:0", direction="h2d", memory="pinned", size=60_000, dtype="float32")
    nbytes = 60_000 * 784 * 4
    assert copy["bytes"] == nbytes
    assert copy["gbps"] == pytest.approx(nbytes / (10e-6 + nbytes / 50e9) / 1e9)
    assert copy["link_gbps"] == 63.008 and copy["link_share"] == pytest.approx(copy["gbps"] / 63.008)
    host_copy = one(gpu, family="transfer", device="cpu", size=60_000, dtype="uint8")
    assert pd.isna(host_copy["link_gbps"]) and host_copy["direction"] == "h2h"

    noisy = one(gpu, family="inference", device="cuda:0", mode="compute", batch_size=1)
    assert noisy["noisy"] and noisy["iqr_share"] > 0.10
    assert noisy["latency_ms"] == pytest.approx(2.0 / 10_000 * 1e3)  # 2 s over 10,000 batches of one
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
    resident = speed[(speed["family"] == "train") & (speed["variant"] == "resident")].sort_values("batch_size")
    assert resident["speedup"].tolist() == pytest.approx([0.5, 2.0, 6.0])
    compute = speed[(speed["family"] == "inference") & (speed["variant"] == "compute")].sort_values("batch_size")
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
    assert crossover_batch_size([10_000, 1000, 100, 10], speedup[::-1]) == expected  # order of input does not matter


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
    (tmp_path / "0001_old.json").write_text(json.dumps(old))
    (tmp_path / "0002_new.json").write_text(json.dumps(new))
    newest = load_frame([tmp_path])
    assert set(newest["run_file"]) == {str(tmp_path / "0002_new.json")}
    assert len(load_frame([tmp_path], all_runs=True)) == 2 * len(newest)


def test_a_newer_partial_run_updates_only_what_it_measured(tmp_path):
    full = json.loads(GPU_RUN.read_text())
    gpu_only = json.loads(GPU_RUN.read_text())
    gpu_only["datetime"] = "2026-11-03T00:00:00+00:00"
    gpu_only["benchmarks"] = [b for b in gpu_only["benchmarks"] if b["params"]["device"] == "cuda:0"]
    for b in gpu_only["benchmarks"]:
        b["stats"]["median"] /= 2  # the GPU got twice as fast
    (tmp_path / "0001_full.json").write_text(json.dumps(full))
    (tmp_path / "0002_gpu_only.json").write_text(json.dumps(gpu_only))
    frame = load_frame([tmp_path])
    assert len(frame) == len(full["benchmarks"])
    assert set(frame.loc[frame["device"] == "cpu", "run_file"]) == {str(tmp_path / "0001_full.json")}
    assert set(frame.loc[frame["device"] == "cuda:0", "run_file"]) == {str(tmp_path / "0002_gpu_only.json")}
    resident = speedups(frame).query("family == 'train' and variant == 'resident'").sort_values("batch_size")
    assert resident["speedup"].tolist() == pytest.approx([1.0, 4.0, 12.0])


def test_all_runs_keeps_every_row_in_the_csv_but_pairs_speedups_once(tmp_path):
    for name, when in (("0001_a.json", "2026-11-01T00:00:00+00:00"), ("0002_b.json", "2026-11-02T00:00:00+00:00")):
        run = json.loads(GPU_RUN.read_text())
        run["datetime"] = when
        (tmp_path / name).write_text(json.dumps(run))
    every = load_frame([tmp_path], all_runs=True)
    write_report(every, tmp_path / "out")
    assert len(pd.read_csv(tmp_path / "out" / "summary.csv")) == len(every) == 2 * len(load_frame([GPU_RUN]))
    assert len(speedups(select_newest(every))) == len(speedups(load_frame([GPU_RUN])))


def test_odd_but_readable_runs_do_not_crash_the_report(tmp_path):
    run = json.loads(GPU_RUN.read_text())
    for b in run["benchmarks"]:
        b["extra_info"].pop("batches", None)  # an older format without it
    run["benchmarks"][0]["stats"]["median"] = 0.0  # a broken timing
    del run["datetime"]  # an undated run
    (tmp_path / "odd.json").write_text(json.dumps(run))
    with pytest.warns(RunFileWarning, match="no usable median"):
        frame = load_frame([tmp_path])
    assert len(frame) == len(run["benchmarks"]) - 1
    assert frame["latency_ms"].isna().all()
    assert {p.name for p in write_report(frame, tmp_path / "out")} >= {"index.html", "epoch_time.png"}


def test_a_quick_run_does_not_hide_the_full_run_of_the_same_machine(tmp_path):
    full = json.loads(GPU_RUN.read_text())
    quick = json.loads(GPU_RUN.read_text())
    quick["datetime"] = "2026-11-05T00:00:00+00:00"  # newer, but only a smoke run
    quick["machine_info"]["fmnist_bench"]["plan"]["quick"] = True
    (tmp_path / "0001_full.json").write_text(json.dumps(full))
    (tmp_path / "0002_quick.json").write_text(json.dumps(quick))
    assert set(load_frame([tmp_path])["run_file"]) == {str(tmp_path / "0001_full.json")}
    (tmp_path / "0001_full.json").unlink()
    assert set(load_frame([tmp_path])["run_file"]) == {str(tmp_path / "0002_quick.json")}  # better than nothing


def test_every_output_file_is_written(tmp_path, frame):
    written = {p.name for p in write_report(frame, tmp_path)}
    assert written == {
        "summary.csv", "report.md", "index.html", "epoch_time.png", "inference_throughput.png",
        "transfer_bandwidth.png", "speedup.png", "epoch_breakdown.png", "machines.png",
    }  # fmt: skip
    for name in written:
        assert (tmp_path / name).stat().st_size > 0
    assert (tmp_path / "epoch_time.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert list(summary.columns) == COLUMNS and len(summary) == len(frame)
    page = (tmp_path / "index.html").read_text()
    for image in ("epoch_time.png", "speedup.png", "machines.png"):
        assert f'src="{image}"' in page
    markdown = (tmp_path / "report.md").read_text()
    assert "| machine_key" in markdown and "GPU wins from batch size 1000" in markdown


def test_cpu_only_runs_say_there_is_no_gpu(tmp_path):
    written = {p.name for p in write_report(load_frame([CPU_RUN]), tmp_path)}
    assert "speedup.png" not in written and "machines.png" not in written
    page = (tmp_path / "index.html").read_text()
    assert "There is no GPU in these runs" in page
    assert "There is one machine in these runs" in page


def test_missing_families_still_make_a_report(tmp_path):
    run = json.loads(GPU_RUN.read_text())
    run["benchmarks"] = [b for b in run["benchmarks"] if b["group"] == "transfer"]
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "transfer_only.json").write_text(json.dumps(run))
    written = {p.name for p in write_report(load_frame([tmp_path / "runs"]), tmp_path / "out")}
    assert "transfer_bandwidth.png" in written and "epoch_time.png" not in written
    assert "nothing measured" in (tmp_path / "out" / "index.html").read_text()


def test_strings_from_saved_runs_are_escaped(tmp_path):
    run = json.loads(GPU_RUN.read_text())
    run["machine_info"]["cpu"]["brand_raw"] = "<script>alert('cpu')</script>"
    run["machine_info"]["gpus"][0]["name"] = '<img src=x onerror="alert(1)">'
    run["machine_info"]["node"] = "<b>host</b>"
    (tmp_path / "evil.json").write_text(json.dumps(run))
    write_report(load_frame([tmp_path / "evil.json"]), tmp_path / "out")
    page = (tmp_path / "out" / "index.html").read_text()
    assert "<script>" not in page and "<img src=x" not in page and "<b>host" not in page
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
        "from bench.report import main\n"
        f"rc = main([{str(GPU_RUN)!r}, {str(CPU_RUN)!r}, '--out', {str(tmp_path)!r}])\n"
        "assert rc == 0, rc\n"
        "print(sorted(m for m in ('torch', 'torchvision', 'pynvml', 'fmnist_model') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_saved_json_still_works_with_pytest_benchmark_compare():
    result = subprocess.run(
        [sys.executable, "-m", "pytest_benchmark", "compare", str(CPU_RUN), str(GPU_RUN), "--group-by=group"],
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
