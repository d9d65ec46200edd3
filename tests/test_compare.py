"""Comparing two runs of one machine: changes beyond the noise flagged, noise and one-round figures not, bad input refused."""

import copy
import json
from pathlib import Path

import pytest

from bench.analysis.intervals import Ratio, ratio_estimate
from bench.analysis.rows import RunFileWarning
from bench.format.names import INFERENCE_LADDER
from bench.report.compare import compare_runs, main, newest_two
from bench.report.verdict import FASTER, SAME, SLOWER, VERDICTS, verdict

ROOT = Path(__file__).parent.parent
FIXTURES = Path(__file__).parent / "fixtures"
VM = ROOT / "results" / "reference" / "vm_AMD-EPYC_no-gpu" / "Linux-CPython-3.11-64bit"
VM2 = ROOT / "results" / "reference" / "vm_AMD-EPYC_no-gpu_a3943d66" / "Linux-CPython-3.11-64bit"
# Real runs of the 2-core VM: format 2 full (46 cases: copies of 11 to 100 rounds, 3-round epochs), format 1 full.
FULL_V2 = next(VM.glob("0002_*.json"))
FULL_V1 = next(VM.glob("0001_*.json"))
QUICK_V2 = FIXTURES / "cpu_quick_run_format2.json"  # real, one round a case
# a default run with its limits (format 7): its matrix products' sides chosen by its search
REFERENCE_LIMITS_RUN = next(
    (ROOT / "results/reference/vm_AMD-EPYC_no-gpu_a3943d66").glob("*/0003_*.json")
)
H100_FULL = FIXTURES / "h100-host" / "h100-host_full_cuda0_bs100-10000.json"
# Time-valued stats: scaling every round by k scales each of these by k exactly.
TIMES = ("min", "max", "mean", "stddev", "median", "iqr", "q1", "q3", "ld15iqr", "hd15iqr", "total")

EPOCH = "test_train_epoch[cpu-2t-100-resident]"  # 3 rounds a side
COPY = "test_transfer[cpu-1t-h2h-pageable-1000-uint8]"  # 100 rounds
INFER = "test_inference[cpu-2t-100-compute]"  # 5 rounds


def read(path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def bench(run, name):
    return next(b for b in run["benchmarks"] if b["name"] == name)


def scale(run, name, k):
    """The run with one case's every round k times as long (its stats follow), so the answer is known."""
    stats = bench(run, name)["stats"]
    for key in TIMES:
        stats[key] *= k
    stats["data"] = [x * k for x in stats["data"]]
    stats["ops"] /= k
    return run


def save(tmp_path, name, run):
    path = tmp_path / name
    path.write_text(json.dumps(run), encoding="utf-8")
    return path


def pair(tmp_path, new):
    return save(tmp_path, "old.json", read(FULL_V2)), save(tmp_path, "new.json", new)


def row(table, case):
    rows = table[table["case"] == case]
    assert len(rows) == 1, case
    return rows.iloc[0]


def compared(old_path, new_path, **kw):
    return compare_runs((old_path, read(old_path)), (new_path, read(new_path)), **kw)


def test_a_clear_slowdown_is_flagged_and_fails_ci(tmp_path, capsys):
    new = scale(scale(scale(read(FULL_V2), EPOCH, 1.5), COPY, 1.5), INFER, 0.5)
    old_path, new_path = pair(tmp_path, new)
    table = compared(old_path, new_path)
    epoch, copy_, infer = (
        row(table, c)
        for c in (
            "train cpu-2t-100-resident",
            "transfer cpu-1t-h2h-pageable-1000-uint8",
            "inference cpu-2t-100-compute-inference_mode",
        )
    )
    assert epoch["verdict"] == SLOWER and epoch["ratio"] == pytest.approx(1.5)
    assert epoch["why"] == "beyond 1.10x and its 95% interval" and epoch["ratio_low"] > 1
    assert (
        copy_["verdict"] == SLOWER and copy_["ratio_low"] > 1.1
    )  # 100 rounds a side: a narrow interval
    assert infer["verdict"] == "faster" and infer["ratio"] == pytest.approx(0.5)
    # Everything else is the same run: same within noise, and the regressions come first.
    assert (table["verdict"] == SAME).sum() == len(table) - 3
    assert list(table["verdict"][:2]) == [SLOWER, SLOWER]
    assert main([str(old_path), str(new_path)]) == 0
    assert main([str(old_path), str(new_path), "--fail-on-regression"]) == 1
    out = capsys.readouterr().out
    assert "2 slower, 1 faster, 43 same within noise, 0 can't tell (one round), 0 unpaired" in out
    # The regressions first, a line a verdict and why, the cases under their family.
    slower = out[out.index("slower (2): beyond 1.10x and its 95% interval") :]
    assert slower.index("\n  train\n    cpu-2t-100-resident ") < slower.index("faster (1)")
    # It fits a terminal: 100 columns.
    assert max(map(len, out.splitlines())) <= 100, max(out.splitlines(), key=len)


def test_a_change_within_the_noise_is_not_flagged(tmp_path):
    seed = "test_train_epoch[cpu-2t-100-seed]"  # rounds within 2.1% of each other
    # EPOCH's 3 rounds span 1.21x: 1.15x slower is past the factor, but the rounds still interleave.
    new = scale(scale(read(FULL_V2), seed, 1.05), EPOCH, 1.15)
    # 5 rounds a side with a wide spread: the median moves 1.2x, but the rounds interleave.
    old_run = read(FULL_V2)
    for run, rounds in ((old_run, [1.0, 1.5, 2.0, 2.5, 3.0]), (new, [1.1, 1.6, 2.4, 2.8, 3.2])):
        stats = bench(run, INFER)["stats"]
        stats.update(
            data=rounds, rounds=5, median=rounds[2], min=rounds[0], max=rounds[-1], iqr=1.0
        )
    old_path, new_path = save(tmp_path, "old.json", old_run), save(tmp_path, "new.json", new)
    table = compared(old_path, new_path)
    assert row(table, "train cpu-2t-100-seed")["verdict"] == SAME
    assert row(table, "train cpu-2t-100-seed")["why"] == "under 1.10x"
    epoch = row(table, "train cpu-2t-100-resident")
    assert epoch["ratio"] == pytest.approx(1.15)
    assert epoch["verdict"] == SAME and epoch["why"] == "its 95% interval includes 1"
    infer = row(table, "inference cpu-2t-100-compute-inference_mode")
    # The ratio of the rounds' geometric means, the estimate its interval is of (the medians' ratio is 1.2).
    assert infer["ratio"] == pytest.approx(
        ratio_estimate([1.1, 1.6, 2.4, 2.8, 3.2], [1.0, 1.5, 2.0, 2.5, 3.0]).value
    )
    assert infer["verdict"] == SAME and infer["ratio_low"] < 1 < infer["ratio_high"]
    assert set(table["verdict"]) == {SAME}
    assert main([str(old_path), str(new_path), "--fail-on-regression"]) == 0
    # The factor is the user's: at 1.01 the 1.05x seed epoch, every round apart, is beyond the noise.
    assert (
        row(compared(old_path, new_path, factor=1.01), "train cpu-2t-100-seed")["verdict"] == SLOWER
    )


def test_a_verdict_is_never_stronger_than_its_interval():
    # "0.39 (0.19-1.17, no difference measured) | faster" was printed by a rule of every round apart, 3 against 3.
    assert verdict(Ratio(0.39, 0.19, 1.17), 3, 3, 1.10) == (SAME, "its 95% interval includes 1")
    assert verdict(Ratio(0.39, 0.19, 0.8), 3, 3, 1.10)[0] == FASTER
    assert verdict(Ratio(1.5, 1.2, 1.9), 3, 3, 1.10)[0] == SLOWER
    assert verdict(Ratio(1.05, 1.02, 1.08), 50, 50, 1.10) == (
        SAME,
        "under 1.10x",
    )  # beyond 1, not beyond the factor
    assert (
        verdict(Ratio(2.0, float("nan"), float("nan")), 1, 3, 1.10)[0] == "can't tell (one round)"
    )


@pytest.mark.parametrize(
    ("folder", "pair"),
    [
        (VM, "0001-0002"),
        (VM, "0002-0003"),
        (VM, "0003-0004"),
        (VM, "0005-0006"),
        (VM2, "0001-0003"),
    ],
)
def test_every_ratio_lies_in_its_interval_and_every_verdict_agrees_with_it(folder, pair):
    # The committed runs of the 2-core VMs, consecutive and not (issue 31: 19 of 354 rows broke the first, 17 the
    # second), read as compare reads them.
    old, new = (next(folder.glob(f"{n}_*.json")) for n in pair.split("-"))
    table = compared(old, new)
    paired = table[table["ratio_low"].notna()]
    assert len(paired) > 20
    assert (
        (paired["ratio_low"] <= paired["ratio"]) & (paired["ratio"] <= paired["ratio_high"])
    ).all()
    sides = paired.apply(lambda r: Ratio(r["ratio"], r["ratio_low"], r["ratio_high"]).side, axis=1)
    assert not ((paired["verdict"] == SLOWER) & (sides != 1)).any()
    assert not ((paired["verdict"] == FASTER) & (sides != -1)).any()


def test_one_round_figures_are_never_called_significant(tmp_path, capsys):
    new = scale(read(QUICK_V2), "test_train_epoch[cpu-2t-100-resident]", 3.0)
    old_path, new_path = save(tmp_path, "old.json", read(QUICK_V2)), save(tmp_path, "new.json", new)
    table = compared(old_path, new_path)
    assert set(table["verdict"]) == {"can't tell (one round)"}
    assert row(table, "train cpu-2t-100-resident")["ratio"] == pytest.approx(3.0)
    assert main([str(old_path), str(new_path), "--fail-on-regression"]) == 0
    out = capsys.readouterr().out
    # Said first, in a line or two, with what gives a verdict; no row of "can't tell" after it.
    lines = out.splitlines()
    assert lines[0].startswith(
        f"No verdict: the {len(table)} cases both runs measured have one round"
    )
    assert "(`pytest bench --benchmark-autosave`, twice)." in " ".join(lines[:2]).replace(
        "     ", " "
    )
    assert lines[2].startswith("machine: ")  # (in two lines)
    assert "cpu-2t-100-resident" not in out and "can't tell (one round) (" not in out
    assert f"(the {len(table)} that can't be told are not listed: --all lists them)" in out
    assert max(map(len, lines)) <= 100
    # --all lists them: a median with no spread, and its one round.
    assert main([str(old_path), str(new_path), "--all"]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("    cpu-2t-100-resident "))
    assert "±" not in line and line.count("(1)") == 2 and "3.00" in line
    assert max(map(len, out.splitlines())) <= 100


def test_quick_against_full_is_refused(tmp_path, capsys):
    full = (
        tmp_path / FULL_V2.name
    )  # a user's copy: one machine with the quick run (a reference run is not a user's)
    full.write_text(FULL_V2.read_text())
    with pytest.raises(SystemExit) as exit_:
        main([str(QUICK_V2), str(full)])
    assert exit_.value.code == 2
    assert "OLD is a quick run" in capsys.readouterr().err
    # Below the command too, a quick figure is never paired with a full one: listed, with why.
    table = compared(QUICK_V2, FULL_V2)
    assert set(table["verdict"]) == {"unpaired"}
    epoch = table[table["case"] == "train cpu-2t-100-seed"]
    assert list(epoch["why"]) == ["quick in OLD, full in NEW: not the same work"] * 2


def test_runs_of_two_machines_are_refused_unless_forced(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([str(FULL_V1), str(H100_FULL)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    # (the VM run is a reference run: its key says so)
    assert (
        "'reference/vm_AMD-EPYC_no-gpu'" in err
        and "'vm_Intel-R-Xeon-R-Processor_NVIDIA-H100-80GB-HBM3~" in err
    )
    assert main([str(FULL_V1), str(H100_FULL), "--force"]) == 0
    # Nothing in common: a CPU run and a GPU-only run, every case unpaired.
    assert (
        "0 slower, 0 faster, 0 same within noise, 0 can't tell (one round), 78 unpaired"
        in capsys.readouterr().out
    )


@pytest.mark.parametrize(
    "content, said",
    [
        (None, "no such file"),
        ("{not json", "not readable JSON"),
        ('{"benchmarks": []}', "'machine_info' is a required property"),
        (
            '{"machine_info": {}, "benchmarks": [{"group": "other", "stats": {}}]}',
            "no fmnist-bench benchmarks",
        ),
    ],
)
def test_bad_files_are_named_before_any_work(tmp_path, capsys, content, said):
    bad = tmp_path / "bad.json"
    if content is not None:
        bad.write_text(content, encoding="utf-8")
    with pytest.raises(SystemExit) as exit_:
        main([str(FULL_V2), str(bad)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"NEW {bad}" in err and said in err
    assert "skipped" not in err  # the report's wording; here nothing goes on


def test_a_case_without_a_max_is_still_compared_and_one_the_format_refuses_is_named(tmp_path):
    new = scale(read(FULL_V2), COPY, 2.0)
    del bench(new, COPY)["stats"]["max"]  # optional: the round times stand in
    del bench(new, EPOCH)["stats"][
        "rounds"
    ]  # required by the saved-run format: that case is passed over, named
    old_path, new_path = pair(tmp_path, new)
    with pytest.warns(
        RunFileWarning, match=r"new.json: benchmark .* passed over: .*stats: 'rounds' is a required"
    ):
        table = compared(old_path, new_path)
    assert (
        row(table, "transfer cpu-1t-h2h-pageable-1000-uint8")["verdict"] == SLOWER
    )  # 100 round times
    assert row(table, "train cpu-2t-100-resident")["verdict"] == "unpaired"


def test_usage_errors(tmp_path, capsys):
    for argv, said in (
        ([str(FULL_V2)], "one argument must be a machine's folder"),
        ([str(FULL_V2), str(FULL_V2)], "the same file"),
        ([str(FULL_V2), str(FULL_V1), "--factor", "0.9"], "must be a ratio above 1"),
        ([str(tmp_path)], "compare needs two of one kind"),
    ):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2
        assert said in capsys.readouterr().err, argv


def test_a_quick_and_a_default_run_are_told_what_gives_a_verdict(tmp_path, capsys):
    # The README's flow: a quick run, then a default run, then compare: one of each kind is no pair.
    folder = tmp_path / "vm_cpu_no-gpu" / "Linux-CPython-3.11-64bit"
    folder.mkdir(parents=True)
    (folder / "0001_quick.json").write_text(QUICK_V2.read_text())
    (folder / "0002_full.json").write_text(FULL_V2.read_text())
    with pytest.raises(SystemExit) as exit_:
        main([str(tmp_path / "vm_cpu_no-gpu")])
    assert exit_.value.code == 2
    said = capsys.readouterr().err
    assert "1 full and 1 quick run here" in said
    assert "run pytest bench --benchmark-autosave again, then compare" in " ".join(said.split())
    # (every line but the one naming the folder, whose length is its path's)
    assert all(len(line) <= 100 for line in said.splitlines() if str(tmp_path) not in line)


def test_cases_are_paired_by_params_not_by_name(tmp_path):
    # Two cases' names swapped in NEW: paired by name, both would change 3x and more; by params, neither changes.
    new = read(FULL_V2)
    a, b = (
        bench(new, "test_train_epoch[cpu-2t-100-seed]"),
        bench(new, "test_train_epoch[cpu-2t-10000-seed]"),
    )
    a["name"], b["name"] = b["name"], a["name"]
    old_path, new_path = pair(tmp_path, new)
    assert set(compared(old_path, new_path)["verdict"]) == {SAME}
    # Format 1 named cases without their thread count: its cpu-1-compute is format 2's cpu-2t-1-compute (torch's
    # default of 2 threads), while the 1-thread cases it never ran are listed, not paired.
    table = compared(FULL_V1, FULL_V2)
    assert row(table, "inference cpu-2t-1-compute-inference_mode")["verdict"] in VERDICTS[:3]
    assert row(table, "inference cpu-1t-1-compute-inference_mode")["why"] == "only in NEW"
    assert (table["verdict"] == "unpaired").sum() == 20


def test_other_data_and_stopped_runs_are_listed_unpaired_with_why(tmp_path):
    new = read(FULL_V2)
    new["machine_info"]["dataset"]["name"] = "fashion-mnist"
    for b in new["benchmarks"]:
        if "dataset" in b["extra_info"]:
            b["extra_info"]["dataset"] = "fashion-mnist"
    old_path, new_path = pair(tmp_path, new)
    table = compared(old_path, new_path)
    epoch = table[table["case"] == "train cpu-2t-100-seed"]
    assert list(epoch["why"]) == ["dataset synthetic in OLD, fashion-mnist in NEW"] * 2
    stopped = compared(FULL_V2, FIXTURES / "cpu_partial_run_sigterm.json")
    assert (
        row(stopped, "train cpu-2t-10000-seed")["why"]
        == "only in OLD (NEW stopped early: stopped by SIGTERM)"
    )


def test_what_changed_between_the_runs_is_printed_above_the_table(tmp_path, capsys):
    new = read(FULL_V2)
    new["machine_info"]["torch"]["version"] = "2.15.0+cu130"
    new["commit_info"]["dirty"] = True
    old_path, new_path = pair(tmp_path, new)
    assert main([str(old_path), str(new_path)]) == 0
    out = capsys.readouterr().out
    changed = out[: out.index("    case ")]
    assert "torch   2.14.1+cu130 -> 2.15.0+cu130" in changed
    assert "22c2ce6a55a2 -> 22c2ce6a55a2 (dirty)" in changed
    assert (
        "same in both:" in changed and "python 3.11.7" in changed and "dataset synthetic" in changed
    )


def test_a_folder_compares_its_newest_two_runs_of_a_kind(tmp_path, capsys):
    runs = tmp_path / "vm"
    runs.mkdir()
    for name, source, when in (
        ("0001.json", FULL_V2, "2026-01-01T00:00:00+00:00"),
        ("0002.json", FULL_V2, "2026-01-03T00:00:00+00:00"),
        ("0003.json", FULL_V2, "2026-01-02T00:00:00+00:00"),
        ("0004.json", QUICK_V2, "2026-01-04T00:00:00+00:00"),
    ):
        run = read(source)
        run["datetime"] = when
        save(runs, name, run)
    # The quick run is the newest, but the newest two full runs are compared, by date, not by file name.
    assert newest_two(runs) == (runs / "0003.json", runs / "0002.json")
    assert main([str(runs)]) == 0
    other = copy.deepcopy(read(H100_FULL))
    save(runs, "0005.json", other)
    with pytest.raises(SystemExit) as exit_:
        main([str(runs)])
    assert exit_.value.code == 2
    assert "holds runs of 2 machines" in capsys.readouterr().err


def test_each_inference_step_has_its_own_row_named_by_its_pipeline(tmp_path):
    # The ladder's inference steps share device, threads, batch size and mode: the step tells them apart.
    run = read(next(VM.glob("0004_*.json")))
    table = compared(save(tmp_path, "a.json", run), save(tmp_path, "b.json", copy.deepcopy(run)))
    at_1000 = table[table["case"].str.startswith("inference cpu-2t-1000-compute")]
    # Every step of the ladder the VM can run: a CUDA graph needs CUDA.
    assert set(at_1000["case"]) == {
        f"inference cpu-2t-1000-compute-{step}" for step in INFERENCE_LADDER if step != "cuda_graph"
    }
    assert not table["case"].duplicated().any()


def _dated(source, when: str, keep=None) -> dict:
    run = read(source)
    run["datetime"] = when
    if keep is not None:
        run["benchmarks"] = [b for b in run["benchmarks"] if keep(b)]
    return run


def _one_case(when: str) -> dict:
    """A run of the case EPOCH alone (a run of `-k ...`), dated `when`."""
    return _dated(FULL_V2, when, lambda b: b["name"] == EPOCH)


def test_a_folder_skips_a_run_of_some_steps_for_the_newest_that_shares_the_cases(tmp_path, capsys):
    runs = tmp_path / "vm"
    runs.mkdir()
    save(runs, "0001.json", _dated(FULL_V2, "2026-01-01T00:00:00+00:00"))
    # One case alone (a run of `-k ...`), then a whole run again: 0003 is compared with 0001, not with 0002.
    save(runs, "0002.json", _one_case("2026-01-02T00:00:00+00:00"))
    save(runs, "0003.json", _dated(FULL_V2, "2026-01-03T00:00:00+00:00"))
    assert newest_two(runs) == (runs / "0001.json", runs / "0003.json")
    # A newest run of one case alone is too few to compare as a run: passed over, with a note, for 0003.
    save(runs, "0004.json", _one_case("2026-01-04T00:00:00+00:00"))
    assert newest_two(runs) == (runs / "0001.json", runs / "0003.json")
    assert "0004.json has 1 case, too few to compare as a run" in capsys.readouterr().err
    # Paired by what they measure, not by name: format 1's runs (other test names) still share the cases.
    old_names = tmp_path / "v1"
    old_names.mkdir()
    save(old_names, "0001.json", _dated(FULL_V1, "2026-01-01T00:00:00+00:00"))
    save(old_names, "0002.json", _dated(FULL_V2, "2026-01-02T00:00:00+00:00"))
    assert newest_two(old_names) == (old_names / "0001.json", old_names / "0002.json")
    # Only the oldest run is whole: nothing to compare it with, and said so.
    alone = tmp_path / "alone"
    alone.mkdir()
    save(alone, "0001.json", _dated(FULL_V2, "2026-01-01T00:00:00+00:00"))
    save(alone, "0002.json", _one_case("2026-01-02T00:00:00+00:00"))
    with pytest.raises(SystemExit) as exit_:
        main([str(alone)])
    assert exit_.value.code == 2
    assert "no run but the oldest has 3 cases or more" in capsys.readouterr().err


def test_each_verdict_shows_how_busy_the_machine_was_and_a_change_of_load_is_listed(
    tmp_path, capsys
):
    old, new = read(FULL_V2), read(FULL_V2)
    busy = bench(new, EPOCH)
    busy["extra_info"]["telemetry"] = {"state": "on", "flags": ["busy"]}
    main([str(save(tmp_path, "old.json", old)), str(save(tmp_path, "new.json", new))])
    out = capsys.readouterr().out
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("    cpu-2t-100-resident "))
    # beside its figures, or under them where the line has no room left
    assert lines[at].endswith("  new busy") or lines[at + 1] == "      new busy"
    changed = out.split("same in both:")[0]
    total = sum(b["group"] in ("transfer", "train", "inference") for b in new["benchmarks"])
    assert f"cases busy  0 of {total} -> 1 of {total}" in changed  # beside the commit change


def test_matrix_products_of_other_sides_are_not_paired_as_a_slowdown(tmp_path):
    # A limit's product side is searched in each run: a new user's second run chose 1,024 square where the
    # first chose 512, and compare called the case 8.63x slower at the same FLOP/s.
    old = read(REFERENCE_LIMITS_RUN)
    new = read(REFERENCE_LIMITS_RUN)
    name = "test_limits[cpu-1t-matmul-float32]"
    side = bench(new, name)["extra_info"]["work"]["n"]
    bench(new, name)["extra_info"]["work"]["n"] = side * 2
    table = compared(save(tmp_path, "old.json", old), save(tmp_path, "new.json", new))
    case = table[table["case"].str.contains("cpu-1t-matmul-float32")]
    assert set(case["verdict"]) == {"unpaired"}
    assert any(f"a product of side {side} in OLD, {side * 2} in NEW" in str(w) for w in case["why"])
    same = table[table["case"].str.contains("cpu-1t-matmul-bfloat16")]
    assert len(same) == 1 and same["verdict"].iloc[0] != "unpaired"
