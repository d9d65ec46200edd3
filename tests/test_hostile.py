"""Nothing lost, nothing mixed (issue 22): strings that are not text, machine names as identities, commands that
check their input before any work. The journal's own hostile cases are in tests/test_journal.py."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.format.store import REPLACEMENT, NotARunFile, read_json
from bench.report.cli import main as report_main
from tests import harness

FIXTURES = Path(__file__).parent / "fixtures"
GPU_RUN = FIXTURES / "constructed_gpu_run.json"
VM_RUN = FIXTURES / "cpu_quick_run_format2.json"
ROOT = Path(__file__).resolve().parents[1]


def _every_string(value, change):
    """`value` with `change` applied to every string in it, keys included."""
    if isinstance(value, str):
        return change(value)
    if isinstance(value, list):
        return [_every_string(v, change) for v in value]
    if isinstance(value, dict):
        return {change(k): _every_string(v, change) for k, v in value.items()}
    return value


def _surrogates_in_text_fields(run: dict) -> dict:
    """A lone surrogate in every string a reader shows (names, host, CPU, GPU, commit, benchmark names)."""
    run = json.loads(json.dumps(run))
    info = run["machine_info"]
    info["node"] += "\ud800"
    info["cpu"]["brand_raw"] += "\udfff"
    info["gpus"][0]["name"] += "\udc80"
    info["fmnist_bench"]["machine_name"] = "lab\ud800"
    info["fmnist_bench"]["machine_key"] += "\ud800"
    run["commit_info"]["id"] = "\ud800" + run["commit_info"].get("id", "")
    for bench in run["benchmarks"]:
        bench["name"] += "\udbff"
        bench["fullname"] = bench.get("fullname", "") + "\udbff"
    return run


def test_a_lone_surrogate_in_every_string_is_replaced_visibly_and_the_file_named(tmp_path, capsys):
    runs = tmp_path / "runs"
    runs.mkdir()
    run = _surrogates_in_text_fields(json.loads(GPU_RUN.read_text()))
    (runs / "surrogates.json").write_text(
        json.dumps(run)
    )  # json.dumps escapes them: "\ud800", valid JSON
    (runs / "vm.json").write_text(VM_RUN.read_text())
    # And a file name that is not UTF-8: Python reads it as lone surrogates.
    odd = os.fsdecode(b"odd-\xff-name.json")
    (runs / odd).write_text(VM_RUN.read_text())
    rc = report_main([str(runs), "--out", str(tmp_path / "out"), "--all-runs"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "surrogates.json:" in err and "lone surrogate" in err
    out = tmp_path / "out"
    for name in ("summary.csv", "report.md", "index.html"):
        text = (out / name).read_text(encoding="utf-8")  # strict: every byte written is UTF-8
        assert REPLACEMENT in text, name
    assert f"lab{REPLACEMENT}" in (out / "report.md").read_text()
    assert f"odd-{REPLACEMENT}-name.json" in (out / "summary.csv").read_text()


def test_read_json_replaces_surrogates_in_keys_and_keeps_real_pairs(tmp_path):
    path = tmp_path / "r.json"
    path.write_text('{"a": "x\\ud800y", "\\udc00k": ["\\ud83d\\ude00"]}')
    value, replaced = read_json(path)
    assert value == {"a": f"x{REPLACEMENT}y", f"{REPLACEMENT}k": ["\U0001f600"]} and replaced == 2


@pytest.mark.parametrize(
    "make, said",
    [
        (lambda p: os.mkfifo(p), "a FIFO, not a file"),
        (lambda p: p.write_text("1" * 5000), "not readable JSON"),
        (lambda p: p.write_text("[" * 100_000), "not readable JSON"),
        (lambda p: p.write_bytes(b'{"a": "\xff"}'), "not UTF-8"),
    ],
    ids=["fifo", "5000-digits", "deep", "latin-1"],
)
def test_files_that_cannot_be_runs_are_refused_without_hanging(tmp_path, make, said):
    path = tmp_path / "x.json"
    make(path)
    with pytest.raises(NotARunFile, match=said):
        read_json(path)


def test_a_device_file_and_an_oversized_file_are_refused_unread(tmp_path):
    with pytest.raises(NotARunFile, match="a device, not a file"):
        read_json("/dev/zero")
    big = tmp_path / "big.json"
    big.write_text("[" + "0," * 600 + "0]")
    with pytest.raises(NotARunFile, match="larger than any run"):
        read_json(big, limit=1000)


def _quick_run(root: Path, name: str) -> subprocess.CompletedProcess:
    """A quick run of the transfer family saved under root/results/<machine>/ (the default storage, in root)."""
    return harness.run(
        [sys.executable, "-m", "pytest", "bench", "-p", "no:cacheprovider", "--quick", "--devices", "cpu",
         "-k", "transfer", "--rootdir", str(root), "--data-root", str(root / "no-data"),
         "--benchmark-autosave", "--machine-name", name],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_names_that_differ_are_machines_that_differ_in_storage_report_and_compare(tmp_path, capsys):
    names = ["lab a", "lab-a", "lab_a"]
    for name in names:
        result = _quick_run(tmp_path, name)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    folders = sorted(p.name for p in (tmp_path / "results").iterdir())
    assert len(folders) == 3 and "lab-a_" in "".join(
        folders
    )  # the name that is a folder name stays readable
    recorded = set()
    for run_file in (tmp_path / "results").glob("*/*/*.json"):
        recorded.add(
            json.loads(run_file.read_text())["machine_info"]["fmnist_bench"]["machine_name"]
        )
    assert recorded == set(names)  # as given
    assert report_main([str(tmp_path / "results"), "--out", str(tmp_path / "out")]) == 0
    import pandas as pd

    summary = pd.read_csv(tmp_path / "out" / "summary.csv")
    assert summary["machine_key"].nunique() == 3 and set(summary["label"]) == set(names)
    from bench.report.compare import main as compare_main

    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        compare_main([str(tmp_path / "results")])
    assert stop.value.code == 2 and "runs of 3 machines" in capsys.readouterr().err


NAMES = ["ラボ", "ΑΒ", ".", "..", "-", "lab-а", "lab-", "lab/a", "lab a", "lab_a", "lab-a", "LAB-A"]


@pytest.mark.parametrize("name", NAMES)
def test_every_name_has_a_folder_of_its_own(name):
    from bench.measure.machine import machine_key

    others = set(NAMES) - {name}
    key = machine_key("vm", "AMD EPYC", [], name, "0123456789")
    assert "/" not in key and not key.startswith(".")
    assert key not in {machine_key("vm", "AMD EPYC", [], other, "0123456789") for other in others}


def _fifo(tmp_path: Path) -> Path:
    path = tmp_path / "fifo.json"
    os.mkfifo(path)
    return path


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "x.json"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "make, said",
    [
        (_fifo, "a FIFO, not a file"),
        (lambda t: Path("/dev/zero"), "a device, not a file"),
        (lambda t: t, "a folder, not a file"),
        (lambda t: _file(t, "[1, 2]"), "not a"),
        (lambda t: _file(t, '{"machine_info": {}, "benchmarks": []}'), "not a"),
    ],
    ids=["fifo", "dev-zero", "folder", "a-list", "not-ours"],
)
def test_cost_refuses_what_is_not_a_run_before_any_work(tmp_path, capsys, make, said):
    from bench.run.cost import main as cost_main

    with pytest.raises(SystemExit) as stop:
        cost_main([str(make(tmp_path))])
    assert stop.value.code == 2 and said in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, said",
    [
        (["--json", "/"], "--json /: cannot write it"),
        (["--json", "/no/such/dir/x.json"], "cannot write it"),
        (
            ["--json", "/proc/x.json"],
            "--json /proc/x.json: cannot write it",
        ),  # (root may write in /proc: no file)
        (["--rounds", "100000000"], "--rounds 100,000,000: at most 1,000"),
        (["--run", str(ROOT / "pyproject.toml")], "--run"),
    ],
)
def test_check_gpu_refuses_bad_outputs_and_inputs_before_measuring(capsys, monkeypatch, args, said):
    from bench.check import gpu

    monkeypatch.setattr(
        gpu, "_measure", lambda *a: pytest.fail("measured before the input was checked")
    )
    with pytest.raises(SystemExit) as stop:
        gpu.main(["--device", "cpu", *args])
    assert stop.value.code == 2 and said in capsys.readouterr().err


def test_commands_print_file_names_that_are_not_utf8_under_a_strict_encoding(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    for name in (b"a-\xff.json", b"b.json"):
        (runs / os.fsdecode(name)).write_text((FIXTURES / "cpu_quick_run.json").read_text())
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    for command in (
        ["compare", str(runs)],
        ["recover", str(runs)],
        ["report", str(runs), "--out", str(tmp_path / "o")],
    ):
        result = subprocess.run(
            [sys.executable, "-m", "bench", *command], cwd=ROOT, env=env, capture_output=True
        )
        assert result.returncode == 0 and b"Traceback" not in result.stderr, (
            command,
            result.stderr[-2000:],
        )


@pytest.mark.parametrize("trials", ["0", "1000000"])
def test_the_checks_bound_their_trials_before_running_anything(capsys, trials):
    from bench.check.harness import arguments

    with pytest.raises(SystemExit) as stop:
        arguments("python -m bench check-warmup", "A check.", ["--trials", trials])
    assert stop.value.code == 2 and "--trials" in capsys.readouterr().err
