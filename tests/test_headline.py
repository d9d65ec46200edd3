"""The verdict that opens every answer (bench/analysis/headline.py): at most five lines, its figures the run's own."""

import json
import re
from pathlib import Path

import pandas as pd

from bench.analysis import figures
from bench.analysis.headline import headline
from bench.analysis.reference import load_reference
from bench.analysis.rows import runs_to_frame

FIXTURES = Path(__file__).parent / "fixtures"
GPU_RUN = FIXTURES / "constructed_gpu_run.json"
CPU_RUN = FIXTURES / "cpu_default_run_ladder.json"
CPU_QUICK = FIXTURES / "cpu_quick_run.json"
# "2.40x faster (2.31-2.50)", "1.88x slower (speedup 0.53x, 0.44-0.64)": a ratio with its interval
RATIO_WITH_INTERVAL = re.compile(
    r"\d+\.\d\dx (faster|slower) \((speedup \d+\.\d\dx, )?[\d.]+-[\d.]+\)"
)


def _frame(*paths: Path) -> pd.DataFrame:
    return runs_to_frame([(p, json.loads(p.read_text(encoding="utf-8"))) for p in paths])


def test_a_gpu_machines_verdict_is_its_own_speedup_and_crossover():
    frame = _frame(GPU_RUN)
    lines = headline(frame)
    assert 3 <= len(lines) <= 5
    assert lines[0].startswith("The GPU here, NVIDIA Constructed GPU (cuda:0)")
    # the figures the report derives, worded: the seed speedup at batch 1,000 and the crossover
    speed = figures.speedups(frame)
    seed = speed[(speed["family"] == "train") & (speed["variant"] == "seed")]
    at = seed[seed["batch_size"] == 1000].iloc[0]
    said = f"{at['speedup']:.2f}x faster ({at['speedup_low']:.2f}-{at['speedup_high']:.2f})"
    assert lines[1] == f"  the notes' loop (seed), batch 1,000, on the GPU: {said}"
    cross = figures.crossovers(speed)
    crossing = cross[(cross["family"] == "train") & (cross["variant"] == "seed")]
    assert f"seed from {int(crossing['crossover_batch_size'].iloc[0]):,} on" in lines[2]
    assert lines[-1].startswith("The machine's load across the run was not measured")


def test_a_cpu_only_machine_is_held_against_a_named_reference_gpu_with_its_date_and_torch():
    reference = load_reference()
    lines = headline(_frame(CPU_RUN), reference)
    assert len(lines) <= 5
    gpu = reference[reference["device"] != "cpu"]
    names = set(gpu["device_name"].dropna())
    head = re.match(
        r"No GPU here\. Reference: another machine's (.+) \((\S+), torch (\S+)\)$", lines[0]
    )
    assert head and head.group(1) in names
    assert head.group(3) in set(gpu["torch"].dropna())
    assert head.group(2) in {str(d)[:10] for d in gpu["run_datetime"].dropna()}
    assert RATIO_WITH_INTERVAL.search(lines[1]) and "the notes' loop (seed)" in lines[1]
    assert "at their fastest" in lines[2] and RATIO_WITH_INTERVAL.search(lines[2])


def test_a_quick_run_gives_no_verdict_and_says_it_is_quick():
    lines = headline(_frame(CPU_QUICK), load_reference())
    assert lines and not any(RATIO_WITH_INTERVAL.search(line) for line in lines)
    assert all("no verdict" in line for line in lines[1:4])
    assert lines[-1].startswith("A quick run: a subset of the data, one round.")


def test_a_quick_runs_figures_never_sit_in_a_full_runs_verdict():
    both = _frame(CPU_RUN, CPU_QUICK)
    both["machine_key"] = "one machine"  # the quick run and the full run of one machine
    lines = headline(both, load_reference())
    assert lines == headline(_frame(CPU_RUN), load_reference())
    assert not any("quick" in line or "1 round" in line for line in lines)


def test_nothing_to_hold_it_against_is_no_verdict_not_a_made_up_one():
    assert headline(_frame(CPU_RUN), pd.DataFrame()) == []
    assert headline(_frame(CPU_RUN).iloc[:0]) == []


def test_the_end_of_a_cpu_only_run_gives_its_verdict_in_its_first_lines_within_100_columns():
    from bench.run.summary import WIDTH, end_summary

    lines = end_summary(json.loads(CPU_RUN.read_text(encoding="utf-8")))
    assert all(len(line) <= WIDTH for line in lines)
    first = "\n".join(lines[:6])
    assert "another machine's NVIDIA" in first and RATIO_WITH_INTERVAL.search(first)
    assert "In detail (the terms: docs/glossary.md):" in lines


def _quick_copy(run: dict, sizes: set[int]) -> dict:
    """`run` as a quick run of the same machine, of its cases at `sizes` only: another kind of figure."""
    quick = json.loads(json.dumps(run))
    ours = quick["machine_info"].setdefault("fmnist_bench", {})
    ours.setdefault("plan", {})["quick"] = True
    quick["benchmarks"] = [
        b for b in quick["benchmarks"] if b.get("params", {}).get("batch_size") in sizes
    ]
    quick["datetime"] = "2020-01-01T00:00:00+00:00"
    return quick


def test_a_machines_answer_on_the_page_opens_with_the_verdict_and_keeps_quick_figures_out():
    # The page's answers (bench/report/sections.py answers_of): a machine's quick run is set apart from its full
    # one, so its answer, verdict, speedup table and crossovers are the full run's.
    from bench.report.sections import answers_of

    run = json.loads(GPU_RUN.read_text(encoding="utf-8"))
    sizes = {b["params"].get("batch_size") for b in run["benchmarks"]} - {None}
    full = runs_to_frame([(GPU_RUN, run)])
    # a quick run of one more batch size than the full run measured: figures of its own, quick
    quick = _quick_copy(run, {max(sizes)})
    for b in quick["benchmarks"]:
        b["params"]["batch_size"] = 20_000
    both = runs_to_frame([(GPU_RUN, run), (Path("0002_quick.json"), quick)])
    assert set(both["quick"]) == {True, False}
    speed = figures.speedups(both)
    assert speed["quick"].any()  # the quick run's own speedups, at a size the full run lacks
    (answer,), (apart,) = answers_of(both, load_reference())
    assert apart["quick"]  # the quick run's answer, in a box of its own
    assert answer["headline"] == headline(full)
    assert not any("quick" in said for said in answer["said"]), answer["said"]
    assert not answer["speedups"]["quick"].any()


def test_a_cpu_that_never_ran_at_torchs_default_threads_is_held_at_its_best_count_and_said_so():
    run = json.loads(GPU_RUN.read_text(encoding="utf-8"))
    run["machine_info"]["torch"]["threads"] = 128  # the CPU cases ran at 64: not torch's default
    for b in run["benchmarks"]:
        if b["params"].get("device") == "cpu":
            b["params"]["cpu_threads"] = 64
    frame = runs_to_frame([(GPU_RUN, run)])
    lines = headline(frame)
    assert lines[0].endswith("against this machine's CPU at its best thread count measured:")
    speed = figures.speedups(frame)
    at = speed[
        (speed["family"] == "train") & (speed["variant"] == "seed") & (speed["batch_size"] == 1000)
    ].iloc[0]
    assert pd.isna(at["speedup"])
    assert f"{at['speedup_vs_best_cpu']:.2f}x faster ({at['vs_best_low']:.2f}-" in lines[1]
    assert "nan" not in " ".join(lines)


def _with_a_faster_thread_count(run: dict, share: float) -> dict:
    """`run` with each CPU case also measured at 1 thread, taking `share` of its time: the best count is not
    torch's default."""
    import copy

    default = run["machine_info"]["torch"]["threads"]
    extra = []
    for b in run["benchmarks"]:
        if b["params"].get("device") != "cpu":
            continue
        b["params"]["cpu_threads"] = default
        one = copy.deepcopy(b)
        one["params"]["cpu_threads"] = 1
        one["name"] = one["name"].replace("cpu", "cpu-1t")
        one["fullname"] += "-1t"
        stats = one["stats"]
        for key in ("min", "max", "mean", "median", "stddev", "iqr", "q1", "q3", "total"):
            if isinstance(stats.get(key), (int, float)):
                stats[key] *= share
        if "data" in stats:
            stats["data"] = [x * share for x in stats["data"]]
        extra.append(one)
    run["benchmarks"] += extra
    return run


def test_every_line_of_the_verdict_holds_the_gpu_against_the_one_cpu_baseline_its_first_names():
    # The review's case: 1 thread 2.5x faster than torch's default. The seed line (at the default) said the GPU
    # was faster at 1,000, and the line under it (against the best count) that it was faster at no size.
    run = _with_a_faster_thread_count(json.loads(GPU_RUN.read_text(encoding="utf-8")), 0.4)
    frame = runs_to_frame([(GPU_RUN, run)])
    assert frame.loc[frame["device"] == "cpu", "cpu_threads"].nunique() == 2
    lines = headline(frame)
    assert "at torch's default threads" in lines[0]
    speed = figures.speedups(frame)
    seed = speed[(speed["family"] == "train") & (speed["variant"] == "seed")]
    sides = {int(r.batch_size): (r.speedup_low > 1, r.speedup_high < 1) for r in seed.itertuples()}
    assert sides[1000][0] and "1.33x faster" in lines[1]  # at the default, faster at 1,000
    by_batch = next(line for line in lines if "by batch size" in line)
    assert "seed from 1,000 on" in by_batch


def test_a_machine_with_a_gpu_measured_without_it_is_not_said_to_have_none():
    run = json.loads(CPU_RUN.read_text(encoding="utf-8"))
    frame = runs_to_frame([(CPU_RUN, run)]).assign(gpus="NVIDIA RTX 4090")
    lines = headline(frame, load_reference())
    assert lines[0].startswith(
        "No GPU measured in this run (this machine has NVIDIA RTX 4090). Reference: another machine's"
    )
