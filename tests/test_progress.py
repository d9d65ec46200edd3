"""What the terminal says: a case's headline, the progress line and the end-of-run answer, from saved runs."""

import json
import re
from pathlib import Path

from bench.analysis.words import fmt_time
from bench.run.progress import case_headline, fold, progress_line
from bench.run.summary import end_summary as summary_of_run

FIXTURES = Path(__file__).parent / "fixtures"
H100_QUICK = json.loads((FIXTURES / "h100-host" / "h100-host_quick_cpu-cuda0.json").read_text())
CPU_QUICK = json.loads((FIXTURES / "cpu_quick_run_format2.json").read_text())


def end_summary(records, *, default_threads, run):
    """The end-of-run answer of a run made of `records`, torch's default threads and its run record."""
    info = {"torch": {"threads": default_threads}, "fmnist_bench": {"run": run}, "node": "test"}
    run = {"machine_info": info, "benchmarks": records, "datetime": "2026-12-01T00:00:00+00:00"}
    return summary_of_run(
        run, width=None
    )  # a line a statement; the terminal's folding is tested on its own


def said(k: float) -> str:
    """A ratio k of two of record()'s figures, with the interval their rounds (median x 0.99, 1, 1.01) give."""
    from bench.analysis.intervals import interval_said, ratio_interval

    return interval_said(
        k, *ratio_interval([k * 0.99, k, k * 1.01], [0.99, 1.0, 1.01]), no_interval=""
    )


def find(run, name):
    return next(b for b in run["benchmarks"] if b["name"] == name)


def test_headlines_give_each_familys_figure():
    copy = find(H100_QUICK, "test_transfer[cuda:0-h2d-pinned-60000-float32]")
    gbps = copy["extra_info"]["bytes"] / copy["stats"]["median"] / 1e9
    text = case_headline(copy, {"cuda:0": 63.008})
    assert text.startswith(f"{gbps:.3g} GB/s ({gbps / 63.008:.0%} of the link)") and text.endswith(
        "1 round"
    )
    epoch = find(
        CPU_QUICK, next(b["name"] for b in CPU_QUICK["benchmarks"] if b["group"] == "train")
    )
    assert f"loss {epoch['extra_info']['loss']:.3f}" in case_headline(epoch)
    assert fmt_time(epoch["stats"]["median"]) + " per epoch" in case_headline(epoch)
    infer = next(
        b
        for b in CPU_QUICK["benchmarks"]
        if b["group"] == "inference" and b["extra_info"]["batches"] > 1
    )
    text = case_headline(infer)
    assert f"{infer['extra_info']['images'] / infer['stats']['median']:,.0f} images/s" in text
    assert f"p99 {fmt_time(infer['extra_info']['latency']['p99_s'])}" in text


def test_progress_line_counts_time_and_what_is_left():
    line = progress_line(12, 82, "train cuda:0-1000-resident", "151 ms per epoch", 65.0, 130.0, 0)
    assert line == "[12/82] 1m05s, ~2m10s left | train cuda:0-1000-resident: 151 ms per epoch"
    # a + where some cases left cannot be predicted yet; ? where none can
    assert "~2m10s+ left |" in progress_line(1, 9, "x", "y", 1, 130.0, 3)
    assert "? left |" in progress_line(1, 9, "x", "y", 1, 0.0, 3)
    assert "? left |" in progress_line(1, 9, "x", "y", 1, None, 0)


def test_a_progress_line_too_wide_for_a_terminal_folds_after_a_clause():
    # A long case's figure: its clauses go under the line's start, none past 100 columns, no word lost.
    name = "inference cuda:0-10000-end_to_end-channels_last_bf16"
    text = "1,234,567 images/s, IQR 12%, 250 rounds; a batch p50 8.10 ms, p99 12.3 ms; 2.1x its arithmetic floor"
    lines = progress_line(123, 456, name, text, 3900.0, 7800.0, 2).splitlines()
    assert len(lines) > 1 and max(map(len, lines)) <= 100
    assert lines[0].startswith("[123/456] 1h05m, ~2h10m+ left | " + name)
    assert all(line.startswith("    ") and not line.startswith("     ") for line in lines[1:])
    # Where the first clause fits, the line breaks after it, not inside the next one.
    train = "231 ms per epoch, IQR 3%, 10 rounds; 5.9x its per-op floor; loss 2.090, accuracy 25.1%"
    folded = progress_line(36, 44, "train cpu-2t-10000-channels_last", train, 21.0, 3.0, 0)
    assert folded.splitlines()[0].endswith("10 rounds;")
    assert folded.splitlines()[1] == "    5.9x its per-op floor; loss 2.090, accuracy 25.1%"
    assert " ".join(line.strip() for line in lines).split() == (
        progress_line(123, 456, name, text, 3900.0, 7800.0, 2).split()
    )
    # One word wider than a line (a long path) stands whole on its own line: never cut.
    word = "/x" * 60
    assert word in fold(f"saved in {word}")[1]
    assert fold("short") == ["short"]


def test_the_answer_on_a_gpu_host_gives_speedups_crossover_and_the_seed_epoch():
    text = "\n".join(
        end_summary(
            H100_QUICK["benchmarks"],
            default_threads=16,
            run={"planned_cases": 50, "complete": True},
        )
    )
    cpu = find(H100_QUICK, "test_train_epoch[cpu-1000-resident]")["stats"]["median"]
    gpu = find(H100_QUICK, "test_train_epoch[cuda:0-1000-resident]")["stats"]["median"]
    assert (
        "cuda:0  train     resident   100: " in text
        and f"1,000: {cpu / gpu:.2f}x (1 round)" in text
    )
    # One round a figure: no interval, so the crossover is said of the points, with no verdict.
    assert (
        "cuda:0 train resident: GPU faster at every batch size measured (100 to 1,000), by the point figures (one round: no verdict)"
        in text
    )
    seed_cpu = find(H100_QUICK, "test_train_epoch[cpu-1000-seed]")["stats"]["median"]
    seed_gpu = find(H100_QUICK, "test_train_epoch[cuda:0-1000-seed]")["stats"]["median"]
    assert (
        seed_cpu / seed_gpu <= 1
    )  # on this host the seed pipeline is loader-bound: the CPU wins at 1,000
    assert "cuda:0 train seed: GPU not faster at the largest batch size measured (1,000)" in text
    assert (
        "Where a seed epoch goes" in text
        and "cuda:0   batch  1,000:" in text
        and "transfer" in text
    )
    # Its 16-thread CPU copy of 60,000 images took less time than of 1,000: marked suspect (bench/analysis/derive.py).
    assert "50 of 50 cases measured; 3 suspect, their time not following their bytes" in text


def test_the_answer_without_a_gpu_compares_thread_counts_and_says_there_is_no_speedup():
    lines = summary_of_run(CPU_QUICK, width=None)  # a quick run, as its machine_info says
    text = "\n".join(lines)
    # Against the quick reference GPU run, as another machine's, in the last lines.
    assert any(
        line.startswith("No GPU here. The reference GPUs the project ships, other machines'")
        for line in lines
    )
    # the command that measures its own GPU, then the verdict's main figure again, last (issue 34)
    assert lines[-2].startswith(
        "On a machine with a GPU this measures its own: pytest bench --devices cpu,cuda:0"
    )
    assert lines[-1].startswith("In short: the notes' loop (seed), batch 1,000, on that GPU: ")
    assert lines[-1].replace("In short: ", "  ").split(" (the verdict")[0] in lines[:5]
    assert "The CPU by thread count (1, 2 measured)" in text
    assert "transfer none (no copy on the CPU)" in text


def test_the_answer_says_when_a_run_is_incomplete_or_lost_cases():
    run = {
        "planned_cases": 46,
        "complete": False,
        "ended": "stopped by SIGTERM",
        "failed": [{"name": "test_x[a]"}],
    }
    lines = end_summary(CPU_QUICK["benchmarks"][:3], default_threads=2, run=run)
    (last,) = [line for line in lines if line.startswith("3 of 46 cases measured")]
    assert (
        "1 failed and not saved: test_x[a]" in last
        and "the run is incomplete: stopped by SIGTERM" in last
    )


def record(family, device, size, variant, median, threads=16, images=60_000, **extra):
    axis = (
        {"train": "pipeline", "inference": "mode"}[family] if family != "transfer" else "direction"
    )
    params = {"device": device, "cpu_threads": threads, "batch_size": size, axis: variant}
    if family == "transfer":
        params = {"device": device, "cpu_threads": threads, "direction": "h2d", "memory": "pageable",
                  "size": size, "dtype": "float32"}  # fmt: skip
    return {"group": family, "name": f"{family}-{device}-{threads}-{size}-{variant}", "params": params,
            "stats": {"median": median, "iqr": 0.0, "rounds": 3, "data": [median * 0.99, median, median * 1.01]},
            "extra_info": {"images": images, "batches": 10, "bytes": 4 * 784 * size, **extra}}  # fmt: skip


def test_speedups_against_the_cpus_best_thread_count_and_the_crossover_against_it():
    records = [
        # The CPU at torch's 16 threads, and at 1 thread: 1 thread is 4x faster at batch 100.
        record("train", "cpu", 100, "resident", 8.0), record("train", "cpu", 100, "resident", 2.0, threads=1),
        record("train", "cpu", 1000, "resident", 4.0), record("train", "cpu", 1000, "resident", 8.0, threads=1),
        record("train", "cuda:0", 100, "resident", 4.0), record("train", "cuda:0", 1000, "resident", 1.0),
    ]  # fmt: skip
    text = "\n".join(end_summary(records, default_threads=16, run={}))
    # batch 100: 8/4 = 2x against the default, 2/4 = 0.5x against the best (1 thread); batch 1,000: 4x both ways.
    assert re.search(
        r"cuda:0  train     resident   100: 2\.00x \(1\.9\d-2\.0\d\) \[0\.50x \(0\.4\d-0\.5\d\) at 1 thread\]  1,000: 4\.00x \(3\.9\d-4\.0\d\)$",
        text,
        re.M,
    )
    assert (
        "cuda:0 train resident: GPU faster only at the largest batch size measured (1,000)" in text
    )  # not 100: the best CPU wins there
    # Training ran at two thread counts here, so the CPU's section names the better one.
    assert re.search(
        r"train     resident   batch 100: 1 thread, 4\.00x \(3\.9\d-4\.0\d\) faster than 16", text
    )


def test_the_seed_breakdown_adds_up_and_refuses_an_impossible_split():
    copy = record("transfer", "cuda:0", 100, "h2d", 0.001)
    records = [
        record("train", "cuda:0", 100, "seed", 7.0), record("train", "cuda:0", 100, "resident", 1.0),
        record("transfer", "cuda:0", 10, "h2d", 0.0005), copy,
        record("train", "cuda:0", 1000, "seed", 1.0), record("train", "cuda:0", 1000, "resident", 2.0),
    ]  # fmt: skip
    lines = end_summary(records, default_threads=16, run={})
    # 600 batches x 1 ms per 100-image copy = 0.6 s; loading = 7 - 1 - 0.6 = 5.4 s.
    assert (
        "  cuda:0   batch    100: 7 s = loading 5.4 s (77%) + transfer 600 ms (9%) + compute 1 s (14%)"
        in lines
    )
    assert any("batch  1,000: no split: the resident epoch (2 s)" in line for line in lines)


def test_the_answer_names_cases_run_throttled_or_beside_other_cpu_work():
    def flagged(name, flags):
        return {  # one case each (a run names a case once)
            **record("train", "cuda:0", 100 * (1 + "abcd".index(name)), "seed", 1.0),
            "name": name,
            "extra_info": {"images": 60_000, "telemetry": {"flags": flags}},
        }

    records = [
        flagged("a", ["throttled"]),
        flagged("b", ["busy"]),
        flagged("c", ["throttled", "busy"]),
        flagged("d", []),
    ]
    last = end_summary(records, default_threads=16, run={})[-1]
    assert "2 with the GPU throttled (power or heat held its clocks down): a, c" in last
    assert "2 with the CPU busy with other work (over 10% of it): b, c" in last
    quiet = end_summary(CPU_QUICK["benchmarks"], default_threads=2, run={})[
        -1
    ]  # a run from before telemetry
    assert "throttled" not in quiet and "busy" not in quiet


def test_the_ladder_names_the_fastest_step_its_speedups_and_a_step_that_learns_less():
    def step(pipeline, median, loss, tolerance=0.02, faults=None):
        r = record("train", "cpu", 1000, pipeline, median, threads=16)
        r["extra_info"] = {
            "images": 60_000,
            "loss": loss,
            "pipeline_config": {"loss_tolerance": tolerance},
        }
        if faults is not None:
            r["extra_info"]["telemetry"] = {"host": {"minor_faults_per_round": faults}}
        return r

    records = [
        step("seed", 8.0, 0.50, faults=9_999), step("loader", 8.0, 0.50), step("resident", 4.0, 0.50, faults=1_450_000),
        step("channels_last", 2.0, 0.50), step("bf16", 1.0, 0.60, tolerance=0.10),
        step("channels_last_bf16", 1.6, 0.51, tolerance=0.10),
    ]  # fmt: skip
    text = "\n".join(end_summary(records, default_threads=16, run={}))
    assert re.search(
        r"cpu-16t  batch  1,000: fastest channels_last_bf16, 5\.00x \([\d.]+-[\d.]+\) seed$",
        text,
        re.M,
    )  # not bf16
    # Each step's speedup is over the step it builds on, not over its neighbour in the list.
    # Many page faults are named beside the figure they cost; a few are not.
    # A step a line, each ratio with its interval.
    lines = [line.strip() for line in text.splitlines()]
    assert f"resident 4 s {said(2)} [{said(2)} over loader] [1.4M page faults a round]" in lines
    assert "seed 8 s" in lines and "no difference measured" in said(1)  # (seed is not over itself)
    assert f"loader 8 s {said(1)} [{said(1)} over seed]" in lines
    assert f"bf16 1 s {said(8)} [{said(4)} over resident]" in lines
    assert f"channels_last_bf16 1.6 s {said(5)} [{said(1.25)} over channels_last]" in lines
    # On a terminal, every line is folded at 100 columns, its continuation indented under it.
    folded = summary_of_run(
        {
            "machine_info": {"torch": {"threads": 16}},
            "benchmarks": records,
            "datetime": "2026-12-01",
        }
    )
    assert max(map(len, folded)) <= 100 < max(map(len, text.splitlines()))
    assert " ".join(line.strip() for line in folded).split() == " ".join(text.splitlines()).split()
    assert "learns less: bf16 loss 0.600 > resident 0.500 + 10%" in text
    # Without channels_last (--pipelines), bf16 on it is measured against the nearest step that ran.
    text = "\n".join(end_summary([r for r in records if r["params"]["pipeline"] != "channels_last"],
                                  default_threads=16, run={}))  # fmt: skip
    assert f"channels_last_bf16 1.6 s {said(5)} [{said(2.5)} over resident]" in text


def test_page_faults_are_said_in_thousands_or_millions_from_ten_thousand():
    from bench.analysis.words import faults_said

    assert [faults_said(f) for f in (None, float("nan"), 9_999, 10_000, 540_091.3, 999_499, 999_600, 1.45e6)] == [
        "", "", "", "10k page faults a round", "540k page faults a round", "999k page faults a round",
        "1.0M page faults a round", "1.4M page faults a round",
    ]  # fmt: skip


def test_an_inference_ladder_step_is_its_own_variant_never_a_thread_count_of_another():
    def step(pipeline, median, threads=16):
        r = record("inference", "cpu", 1000, "compute", median, threads=threads)
        r["params"]["pipeline"] = pipeline
        return r

    records = [
        step("inference_mode", 2.0), step("inference_mode", 2.0, threads=1),
        step("channels_last", 1.0),  # faster, at torch's 16 threads: a faster step, not a better thread count
        {**step("channels_last", 0.5), "params": {**step("channels_last", 0.5)["params"], "device": "cuda:0"}},
    ]  # fmt: skip
    text = "\n".join(end_summary(records, default_threads=16, run={}))
    assert "faster than 16" not in text  # the old summary said "16 threads, 2.00x faster than 16"
    assert "inference compute    no count measured faster than torch's default 16" in text
    assert (
        "compute channels_last"
        not in text.split("The CPU by thread count")[1].split("\n\n")[0].split("Where")[0]
    )
    # The GPU's channels_last pass is paired with the CPU's channels_last pass: 1.0 / 0.5.
    assert f"cuda:0  inference compute channels_last 1,000: {said(2)}" in text


REPO = Path(__file__).resolve().parent.parent
H100_QUICK_PATH = FIXTURES / "h100-host" / "h100-host_quick_cpu-cuda0.json"
VM_DEFAULT_PATH = next(
    (REPO / "results" / "reference" / "vm_AMD-EPYC_no-gpu").glob("*/0006_*.json")
)  # the 2-core VM's ladder


def test_the_summary_and_the_report_give_one_runs_figures_from_the_same_functions(monkeypatch):
    from bench.analysis import figures
    from bench.analysis.intervals import interval_said
    from bench.analysis.rows import load_frame
    from bench.analysis.words import fmt_time

    called = []
    for name in ("speedups", "crossovers", "cpu_choices", "breakdown", "ladder", "fastest_steps"):
        real = getattr(figures, name)
        monkeypatch.setattr(
            figures,
            name,
            lambda *a, _real=real, _name=name, **k: called.append(_name) or _real(*a, **k),
        )
    seen = []
    for path in (H100_QUICK_PATH, VM_DEFAULT_PATH):
        text = "\n".join(summary_of_run(json.loads(path.read_text()), width=None))
        frame = load_frame([path])
        speed = figures.speedups(frame)
        for r in speed.itertuples():  # every speedup of the report, as the summary words it
            said = interval_said(r.speedup, r.speedup_low, r.speedup_high, busy=r.busy)
            assert f"{int(r.batch_size):,}: {said}" in text, r
        for r in figures.crossovers(speed).itertuples():
            assert f"{r.device} {r.family} {r.variant}: {r.says}" in text
        for r in figures.breakdown(frame).itertuples():
            assert (
                f"{fmt_time(r.seed_epoch_s)} = loading {fmt_time(r.loading_s)}" in text
                or "no split" in text
            )
        steps = figures.ladder(frame, "train")
        for r in steps.itertuples():
            if r.step:  # (the first step is not over itself)
                said = interval_said(
                    r.vs_first,
                    r.vs_first_low,
                    r.vs_first_high,
                    no_interval="",
                    busy=r.vs_first_busy,
                )
                assert f"{r.pipeline} {fmt_time(r.median)} {said}" in text
        for r in figures.fastest_steps(steps).itertuples():
            said = interval_said(r.vs_first, r.vs_first_low, r.vs_first_high, busy=r.vs_first_busy)
            assert f"fastest {r.pipeline}, {said} seed" in text
        seen.append((len(speed), len(steps)))
    assert seen[0][0] > 0 and seen[1][1] > 0  # the H100 host's speedups, the VM's ladder
    assert {"speedups", "crossovers", "cpu_choices", "breakdown", "ladder", "fastest_steps"} <= set(
        called[:12]
    )
