"""A report that survives its input: malformed and hostile runs are named and passed over, the rest is still written."""

import json
import os
import shutil
import warnings
from pathlib import Path

import pandas as pd
import pytest

from bench.analysis.rows import RunFileWarning, load_frame
from bench.report import page as page_module
from bench.report import plots
from bench.report.cli import main
from bench.report.page import write_report

FIXTURES = Path(__file__).parent / "fixtures"
GPU_RUN = FIXTURES / "constructed_gpu_run.json"
VM_RUN = (
    FIXTURES / "cpu_quick_run_format2.json"
)  # another machine, whose report must still be written


def _run() -> dict:
    return json.loads(GPU_RUN.read_text())


def _first(run: dict, group: str) -> dict:
    return next(b for b in run["benchmarks"] if b["group"] == group)


def _report(tmp_path: Path, run: dict | str, capsys) -> tuple[int, str]:
    runs = tmp_path / "runs"
    runs.mkdir(exist_ok=True)
    (runs / "hostile.json").write_text(run if isinstance(run, str) else json.dumps(run))
    (runs / "vm.json").write_text(VM_RUN.read_text())
    rc = main([str(runs), "--out", str(tmp_path / "out")])
    return rc, capsys.readouterr().err


def _read(tmp_path: Path, run: dict | str) -> tuple[pd.DataFrame, str]:
    """The reading the report starts with, in-process: the frame of hostile.json beside the VM's run, and what it
    warned. What the report is then written from; the tests below write one report each to show it is."""
    runs = tmp_path / "runs"
    runs.mkdir(exist_ok=True)
    (runs / "hostile.json").write_text(run if isinstance(run, str) else json.dumps(run))
    (runs / "vm.json").write_text(VM_RUN.read_text())
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        frame = load_frame([runs])
    return frame, "\n".join(str(w.message) for w in said if issubclass(w.category, RunFileWarning))


def _bench(change):
    def build():
        run = _run()
        change(_first(run, "train"))
        return run

    return build


@pytest.mark.parametrize(
    "build, field",
    [
        (
            _bench(lambda b: b["params"].update(batch_size=10**30)),
            "params.batch_size: 1000000000000000000000000000000",
        ),
        (
            _bench(lambda b: b["params"].update(batch_size="100")),
            "params.batch_size: '100' is not of type 'integer'",
        ),
        (_bench(lambda b: b["params"].pop("device")), "params: 'device' is a required property"),
        (
            _bench(lambda b: b.update(extra_info=[1, 2])),
            "extra_info: [1, 2] is not of type 'object'",
        ),
        (
            _bench(lambda b: b["stats"].update(median=float("inf"))),
            "stats.median: inf is not of type 'number'",
        ),
        (
            _bench(lambda b: b["stats"].update(median=float("nan"))),
            "stats.median: nan is not of type 'number'",
        ),
        (
            _bench(lambda b: b["stats"].update(rounds=0)),
            "stats.rounds: 0 is less than the minimum of 1",
        ),
        (
            _bench(lambda b: b["extra_info"].update(images=0)),
            "extra_info.images: 0 is less than the minimum of 1",
        ),
        (
            _bench(lambda b: b["extra_info"].update(accuracy=3)),
            "extra_info.accuracy: 3 is greater than the maximum",
        ),
    ],
    ids=[
        "batch-1e30",
        "batch-string",
        "no-device",
        "extra-list",
        "inf-median",
        "nan-median",
        "rounds-0",
        "images-0",
        "accuracy-3",
    ],  # fmt: skip
)
def test_a_malformed_benchmark_is_named_and_passed_over_and_every_machine_still_read(
    tmp_path, build, field
):
    run = build()
    frame, said = _read(tmp_path, run)
    assert (
        "hostile.json: benchmark 'test_train_epoch[cpu-100-resident]' passed over: benchmarks[0]."
        + field
        in said
    )
    assert len(frame) == len(run["benchmarks"]) - 1 + len(
        json.loads(VM_RUN.read_text())["benchmarks"]
    )
    assert {"AMD EPYC · no GPU"} < set(frame["label"])


def test_a_report_with_a_malformed_benchmark_is_written_with_every_other_figure(tmp_path, capsys):
    run = _run()
    _first(run, "train")["params"]["batch_size"] = 1e30
    rc, err = _report(tmp_path, run, capsys)
    assert rc == 0
    assert "hostile.json: benchmark 'test_train_epoch[cpu-100-resident]' passed over" in err
    summary = pd.read_csv(tmp_path / "out" / "summary.csv")
    assert len(summary) == len(run["benchmarks"]) - 1 + len(
        json.loads(VM_RUN.read_text())["benchmarks"]
    )
    assert {"AMD EPYC · no GPU"} < set(summary["label"])
    assert (tmp_path / "out" / "index.html").is_file() and (
        tmp_path / "out" / "report.md"
    ).is_file()


@pytest.mark.parametrize(
    "change, field",
    [
        (lambda info: info.update(gpus=3), "machine_info.gpus: 3 is not of type 'array', 'null'"),
        (
            lambda info: info["gpus"][0].update(pcie_gbps_max=0),
            "machine_info.gpus[0].pcie_gbps_max: 0 is less than",
        ),
        (
            lambda info: info.update(node=["a"]),
            "machine_info.node: ['a'] is not of type 'string', 'null'",
        ),
        (
            lambda info: info["fmnist_bench"].update(plan="quick"),
            "machine_info.fmnist_bench.plan: 'quick' is not of",
        ),
    ],
    ids=["gpus-number", "link-0", "node-list", "plan-string"],
)
def test_a_malformed_run_is_named_with_its_field_and_the_other_machines_read(
    tmp_path, change, field
):
    run = _run()
    change(run["machine_info"])
    frame, said = _read(tmp_path, run)
    assert f"hostile.json: not a saved run the report can read, skipped: {field}" in said
    assert set(frame["label"]) == {"AMD EPYC · no GPU"}


@pytest.mark.parametrize(
    "text", ["", "{", "[]", '"a run"', "null", "[" * 100_000, "\udcff"], ids=repr
)
def test_files_that_are_not_runs_are_named_and_skipped(tmp_path, text):
    frame, said = _read(tmp_path, text.encode("utf-8", "surrogateescape").decode("latin-1"))
    assert "hostile.json: not" in said and set(frame["label"]) == {"AMD EPYC · no GPU"}


def test_a_report_beside_a_file_that_is_not_a_run_is_written(tmp_path, capsys):
    rc, err = _report(tmp_path, "{", capsys)
    assert rc == 0 and "hostile.json: not" in err
    assert set(pd.read_csv(tmp_path / "out" / "summary.csv")["label"]) == {"AMD EPYC · no GPU"}


def test_hostile_strings_are_data_in_every_output(tmp_path, capsys):
    run = _run()
    info = run["machine_info"]
    # A plot title parsed as mathtext stops matplotlib (\frac wants two arguments); GitHub reads $...$ as math.
    info["cpu"]["brand_raw"] = (
        "$\\frac{a}$ CPU | with a pipe\nand a newline <script>alert(1)</script>"
    )
    info["gpus"][0]["name"] = '<img src=x onerror="alert(1)"> *bold* [link](javascript:alert(1))'
    info["fmnist_bench"]["run"] = {"complete": False, "ended": "`code` <b>stopped</b> \\| by _me_"}
    rc, err = _report(tmp_path, run, capsys)
    assert rc == 0, err
    out = tmp_path / "out"
    md = (out / "report.md").read_text()
    page = (out / "index.html").read_text()
    for raw in ("<script>", "<img src=x", "<b>stopped"):
        assert raw not in md and raw not in page
    for markup in (
        "[link](javascript:",
        "*bold*",
        "`code`",
        "_me_",
    ):  # Markdown's own markup, inert in report.md
        assert markup not in md
    # Every table line of report.md keeps its column count: no | or newline from a file breaks a row.
    for table in [t for t in md.split("\n\n") if t.startswith("| ")]:
        lines = table.splitlines()
        widths = {line.replace("\\|", "").count("|") for line in lines}
        assert len(widths) == 1, lines[:3]
    assert "\\$\\\\frac{a}\\$ CPU \\| with a pipe and a newline &lt;script&gt;" in md
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    # The plots were drawn with the label as typed.
    panels = set(pd.read_csv(out / "epoch_time.csv")["panel"])
    assert any(p.startswith("$\\frac{a}$ CPU | with a pipe and a newline <script>") for p in panels)


def test_a_failure_while_writing_leaves_the_previous_report_whole(tmp_path, monkeypatch):
    out = tmp_path / "report"
    write_report(load_frame([GPU_RUN]), out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def broken(*_args, **_kwargs):
        raise RuntimeError("a plot failed")

    monkeypatch.setattr(plots, "plot_breakdown", broken)
    with pytest.raises(RuntimeError, match="a plot failed"):
        write_report(
            load_frame([GPU_RUN, VM_RUN]), out
        )  # summary.csv was written before the plot failed
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the old report, not a mix
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "report"
    ]  # no half-written folder left beside it


def test_a_bad_out_is_a_clear_error_before_any_work(tmp_path, capsys):
    (tmp_path / "a-file").write_text("x")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my notes")
    for out, says in (
        (tmp_path / "a-file", "exists and is not a folder"),
        (tmp_path / "a-file" / "report", "cannot write in"),
        (mine, "holds what the report did not write (notes.txt)"),
    ):
        with pytest.raises(SystemExit) as exit_:
            main([str(GPU_RUN), "--out", str(out)])
        assert exit_.value.code == 2
        assert says in capsys.readouterr().err
    assert (mine / "notes.txt").read_text() == "my notes"


def test_an_unwritable_out_is_refused(tmp_path, capsys, monkeypatch):
    # As root every folder is writable, so the check's answer is what is faked here.
    monkeypatch.setattr(page_module.os, "access", lambda path, mode: Path(path) != tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main([str(GPU_RUN), "--out", str(tmp_path / "report")])
    assert exit_.value.code == 2 and f"cannot write in {tmp_path}" in capsys.readouterr().err


def test_run_folders_linked_in_are_followed_and_a_link_loop_ends(tmp_path):
    elsewhere = tmp_path / "elsewhere" / "vm_box"
    elsewhere.mkdir(parents=True)
    (elsewhere / "0001.json").write_text(GPU_RUN.read_text())
    results = tmp_path / "results"
    results.mkdir()
    (results / "vm_box").symlink_to(elsewhere, target_is_directory=True)
    (elsewhere / "loop").symlink_to(
        results, target_is_directory=True
    )  # results -> vm_box -> loop -> results
    frame = load_frame([results])
    assert set(frame["run_file"]) == {"vm_box/0001.json"}


def test_a_report_of_clean_runs_warns_nothing(tmp_path):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", RunFileWarning)
        write_report(load_frame([GPU_RUN, VM_RUN]), tmp_path / "out")
    assert os.listdir(tmp_path) == ["out"]


@pytest.mark.parametrize(
    "change, field",
    [
        (
            lambda b: b["stats"].update(median=5e-324),
            "stats.median: 5e-324 is less than the minimum of 1e-09",
        ),
        (lambda b: b["params"].update(device="npu:0"), "params.device: 'npu:0' does not match"),
        (lambda b: b["params"].update(device=""), "params.device: '' does not match"),
    ],
    ids=["tiny-median", "foreign-device", "empty-device"],
)
def test_impossible_figures_and_foreign_devices_are_passed_over(tmp_path, change, field):
    run = _run()
    change(_first(run, "train"))
    frame, said = _read(tmp_path, run)
    assert f"passed over: benchmarks[0].{field}" in said
    assert (frame["images_per_s"].dropna() < 1e12).all()  # no inf img/s anywhere


def test_an_undated_or_future_run_is_named_and_counts_as_the_oldest(tmp_path):
    for when, says in (
        ("yesterday-ish", "is not a date"),
        ("9999-01-01T00:00:00+00:00", "is in the future"),
    ):
        run = _run()
        run["datetime"] = when
        path = tmp_path / f"{len(says)}.json"
        path.write_text(json.dumps(run))
        with pytest.warns(
            RunFileWarning, match=f"datetime .* {says}: the run counts as the oldest"
        ):
            frame = load_frame([path])
        assert frame["run_datetime"].isna().all()


def test_a_second_report_into_the_same_folder_leaves_nothing_beside_it(tmp_path):
    write_report(load_frame([GPU_RUN]), tmp_path / "out")
    write_report(load_frame([GPU_RUN, VM_RUN]), tmp_path / "out")
    assert os.listdir(tmp_path) == ["out"]  # no .out-new-* or .out-old-* left
    assert "AMD EPYC" in (tmp_path / "out" / "report.md").read_text()


def test_an_out_that_is_a_link_replaces_the_folder_it_points_to_and_keeps_the_link(tmp_path):
    target = tmp_path / "target"
    write_report(load_frame([GPU_RUN]), target)
    (tmp_path / "link").symlink_to(target, target_is_directory=True)
    write_report(load_frame([GPU_RUN, VM_RUN]), tmp_path / "link")
    assert (tmp_path / "link").is_symlink() and "AMD EPYC" in (target / "report.md").read_text()
    assert sorted(os.listdir(tmp_path)) == ["link", "target"]


def test_a_swap_that_fails_between_its_renames_puts_the_previous_report_back(tmp_path, monkeypatch):
    out = tmp_path / "out"
    write_report(load_frame([GPU_RUN]), out)
    before = (out / "report.md").read_text()
    real_rename, calls = Path.rename, []

    def rename(self, target):
        calls.append(self)
        if len(calls) == 2:  # the new folder into place, after the old one was moved aside
            raise OSError("disk gone")
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", rename)
    with pytest.raises(OSError, match="disk gone"):
        write_report(load_frame([GPU_RUN, VM_RUN]), out)
    monkeypatch.undo()
    assert (out / "report.md").read_text() == before and os.listdir(tmp_path) == ["out"]


def test_addresses_in_run_files_are_not_links_in_report_md(tmp_path, capsys):
    run = _run()
    run["machine_info"]["cpu"]["brand_raw"] = "see https://evil.example/x and www.evil.example"
    rc, _err = _report(tmp_path, run, capsys)
    md = (tmp_path / "out" / "report.md").read_text()
    assert (
        rc == 0 and "https://" not in md and "www.evil" not in md and "https\\://evil.example" in md
    )


@pytest.mark.parametrize("field", ["fmnist_bench.machine_name", "cpu.brand_raw"])
def test_a_value_too_long_is_cut_in_its_reason_never_the_reason(tmp_path, field):
    run = _run()
    part, name = field.split(".")
    run["machine_info"][part][name] = "A" * 600
    path = tmp_path / "long.json"
    path.write_text(json.dumps(run))
    with pytest.warns(RunFileWarning) as said:
        assert load_frame([path]).empty
    message = str(said[0].message)
    assert f"machine_info.{field}: 'AAAA" in message and "(600 characters) is too long" in message
    assert "A" * 100 not in message


def test_an_unreadable_reference_run_is_named_and_passed_over(tmp_path, monkeypatch, capsys):
    from bench.analysis import reference
    from bench.format import store

    shipped = store.reference_folder() / "vm_AMD-EPYC_no-gpu"
    copied = tmp_path / "reference" / shipped.name
    shutil.copytree(shipped, copied)
    damaged = sorted(copied.rglob("*.json"))[0]
    with damaged.open("r+b") as fh:
        fh.truncate(1000)  # as `truncate -s 1000` leaves it
    for module in (store, reference):
        monkeypatch.setattr(module, "reference_folder", lambda: tmp_path / "reference")
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "vm.json").write_text(VM_RUN.read_text())
    assert main([str(runs), "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert f"warning: {damaged}: not readable JSON" in err and "Traceback" not in err
    assert (tmp_path / "out" / "index.html").is_file()
    # Each report names it, not only a process's first: a damaged reference run is never kept read.
    assert main([str(runs), "--out", str(tmp_path / "out")]) == 0
    assert f"warning: {damaged}: not readable JSON" in capsys.readouterr().err


def test_the_reference_runs_are_read_once_a_process_while_their_files_stay_as_they_are(
    tmp_path, monkeypatch
):
    from bench.analysis import reference
    from bench.analysis.rows import load_frame
    from bench.format import store

    shipped = store.reference_folder() / "vm_AMD-EPYC_no-gpu"
    copied = tmp_path / "reference" / shipped.name
    shutil.copytree(shipped, copied)
    monkeypatch.setattr(reference, "reference_folder", lambda: tmp_path / "reference")
    reads = []
    monkeypatch.setattr(
        "bench.analysis.rows.load_frame",
        lambda paths, **kw: reads.append(paths) or load_frame(paths, **kw),
    )
    first = reference.load_reference()
    first.loc[:, "median"] = 0.0  # a caller's change to its copy is its own
    second = reference.load_reference()
    assert len(reads) == 1 and not second["median"].eq(0.0).any()
    assert second.equals(load_frame([tmp_path / "reference"]))
    # A file changed, added or removed: read again, as it now is.
    newest = sorted(copied.rglob("*.json"))[-1]
    newest.unlink()
    third = reference.load_reference()
    assert len(reads) == 2 and newest.name not in " ".join(third["run_file"].astype(str))
    assert newest.name in " ".join(second["run_file"].astype(str))
