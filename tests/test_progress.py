"""What the terminal says: a case's headline, the progress line and the end-of-run answer, from saved runs."""

import json
from pathlib import Path

from bench.progress import case_headline, end_summary, fmt_time, progress_line

FIXTURES = Path(__file__).parent / "fixtures"
H100_QUICK = json.loads((FIXTURES / "h100-host" / "h100-host_quick_cpu-cuda0.json").read_text())
CPU_QUICK = json.loads((FIXTURES / "cpu_quick_run_format2.json").read_text())


def find(run, name):
    return next(b for b in run["benchmarks"] if b["name"] == name)


def test_headlines_give_each_familys_figure():
    copy = find(H100_QUICK, "test_transfer[cuda:0-h2d-pinned-60000-float32]")
    gbps = copy["extra_info"]["bytes"] / copy["stats"]["median"] / 1e9
    text = case_headline(copy, {"cuda:0": 63.008})
    assert text.startswith(f"{gbps:.3g} GB/s ({gbps / 63.008:.0%} of the link)") and text.endswith("1 round")
    epoch = find(CPU_QUICK, next(b["name"] for b in CPU_QUICK["benchmarks"] if b["group"] == "train"))
    assert f"loss {epoch['extra_info']['loss']:.3f}" in case_headline(epoch)
    assert fmt_time(epoch["stats"]["median"]) + " per epoch" in case_headline(epoch)
    infer = next(b for b in CPU_QUICK["benchmarks"] if b["group"] == "inference" and b["extra_info"]["batches"] > 1)
    text = case_headline(infer)
    assert f"{infer['extra_info']['images'] / infer['stats']['median']:,.0f} images/s" in text
    assert f"p99 {fmt_time(infer['extra_info']['latency']['p99_s'])}" in text


def test_progress_line_counts_time_and_what_is_left():
    line = progress_line(12, 82, "train cuda:0-1000-resident", "151 ms per epoch", 65.0, 130.0, 0)
    assert line == "[12/82] 1m05s, about 2m10s left | train cuda:0-1000-resident: 151 ms per epoch"
    assert "about 2m10s+ left (3 cases not yet predictable)" in progress_line(1, 9, "x", "y", 1, 130.0, 3)
    assert "time left not yet known (3 cases not yet predictable)" in progress_line(1, 9, "x", "y", 1, 0.0, 3)


def test_the_answer_on_a_gpu_host_gives_speedups_crossover_and_the_seed_epoch():
    text = "\n".join(
        end_summary(H100_QUICK["benchmarks"], default_threads=16, run={"planned_cases": 50, "complete": True})
    )
    cpu = find(H100_QUICK, "test_train_epoch[cpu-1000-resident]")["stats"]["median"]
    gpu = find(H100_QUICK, "test_train_epoch[cuda:0-1000-resident]")["stats"]["median"]
    assert "cuda:0  train     resident   100: " in text and f"1,000: {cpu / gpu:.2f}x [{cpu / gpu:.2f}x]" in text
    assert "cuda:0 train resident: GPU faster from batch size 100" in text
    seed_cpu = find(H100_QUICK, "test_train_epoch[cpu-1000-seed]")["stats"]["median"]
    seed_gpu = find(H100_QUICK, "test_train_epoch[cuda:0-1000-seed]")["stats"]["median"]
    assert seed_cpu / seed_gpu <= 1  # on this host the seed pipeline is loader-bound: the CPU wins at 1,000
    assert "cuda:0 train seed: GPU not faster at the largest batch size measured (1,000)" in text
    assert "Where a seed epoch goes" in text and "cuda:0   batch  1,000:" in text and "transfer" in text
    assert text.endswith("50 of 50 cases measured.")


def test_the_answer_without_a_gpu_compares_thread_counts_and_says_there_is_no_speedup():
    run = CPU_QUICK["machine_info"]["fmnist_bench"]["run"]
    lines = end_summary(CPU_QUICK["benchmarks"], default_threads=CPU_QUICK["machine_info"]["torch"]["threads"], run=run)
    text = "\n".join(lines)
    assert lines[0] == "No GPU in this run: the CPU's figures only (no speedup to show)."
    assert "The CPU by thread count (1, 2 measured)" in text
    assert "transfer none (no copy on the CPU)" in text


def test_the_answer_says_when_a_run_is_incomplete_or_lost_cases():
    run = {"planned_cases": 46, "complete": False, "ended": "stopped by SIGTERM", "failed": [{"name": "test_x[a]"}]}
    last = end_summary(CPU_QUICK["benchmarks"][:3], default_threads=2, run=run)[-1]
    assert last.startswith("3 of 46 cases measured")
    assert "1 failed and not saved: test_x[a]" in last and "the run is incomplete: stopped by SIGTERM" in last
