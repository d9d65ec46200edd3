"""The machine's state and identity: the whole run's load (a fake /proc, then a real run while the test keeps
the cores busy), copies whose time does not grow with their bytes, a machine id per installation, and the
reference runs apart from a user's."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.analysis.derive import suspect_copies, threads_waited
from bench.analysis.rows import load_frame, runs_to_frame
from bench.format.store import is_reference, reference_folder
from bench.measure.load import MachineLoad
from bench.measure.machine import MACHINE_ID_ENV, machine_id, machine_key
from bench.run.summary import end_summary
from tests import harness

REPO = Path(__file__).resolve().parent.parent
QUICK = REPO / "tests" / "fixtures" / "cpu_quick_run.json"
VM_DEFAULT = next((reference_folder() / "vm_AMD-EPYC_no-gpu").glob("*/0006_*.json"))


class FakeStat:
    """/proc/stat and /proc/self/stat whose counters a test moves; the clock is the test's too."""

    def __init__(self, root: Path) -> None:
        self.root, self.now = root, 0.0
        (root / "self").mkdir(parents=True)
        self.set(busy=0, idle=0, own=0)

    def set(self, *, busy: int, idle: int, own: int) -> None:
        (self.root / "stat").write_text(f"cpu  {busy} 0 0 {idle} 0 0 0 0 0 0\ncpu0 0\ncpu1 0\n")
        fields = ["S"] + ["0"] * 10 + [str(own), "0", "0", "0"] + ["0"] * 30
        (self.root / "self" / "stat").write_text(f"1 (python) {' '.join(fields)}\n")


def test_a_short_case_is_judged_over_the_samples_before_it(tmp_path):
    proc = FakeStat(tmp_path / "proc")
    load = MachineLoad(proc.root, clock=lambda: proc.now)
    load.mark()  # t=0
    proc.now = 1.0
    proc.set(busy=80, idle=120, own=20)  # a second: 200 ticks, other work 60 of them
    load.mark()
    proc.now = 1.002
    proc.set(busy=81, idle=121, own=21)  # a 2 ms case: 2 ticks, too few alone
    case = load.case(started=1.0)
    assert case["available"] and case["busy"] and case["window_s"] == pytest.approx(1.002)
    assert case["outside_share"] == pytest.approx(60 / 202)
    whole = load.record()
    assert whole["busy"] and whole["intervals"] == 1 and whole["busy_intervals"] == 1


def test_an_idle_machine_is_not_busy_and_an_unreadable_proc_says_why(tmp_path):
    proc = FakeStat(tmp_path / "proc")
    load = MachineLoad(proc.root, clock=lambda: proc.now)
    load.mark()
    proc.now = 2.0
    proc.set(busy=190, idle=210, own=185)  # the run's own work, nobody else's
    assert load.case(started=0.0)["busy"] is False
    assert load.record()["outside_share"] == pytest.approx(5 / 400)
    gone = MachineLoad(tmp_path / "no-proc")
    gone.start()
    gone.stop()
    assert (
        gone.record() == {"available": False, "reason": gone.reason}
        and "could not be read" in gone.reason
    )


def test_copies_whose_time_does_not_follow_their_bytes_are_found():
    images = [1, 100, 1000, 10000, 60000]
    work = [n * 3136 for n in images]  # float32 images' bytes
    # Measured on the 2-core VM with every core busy: 2-thread copies that each took one 12 ms scheduler slice.
    found = suspect_copies(work, [1.0e-6, 12.0e-3, 36.7e-6, 12.0e-3, 24.0e-3], images)
    assert (
        set(found) == {1}
        and found[1] == "its 100 images took 12 ms, 327x the 36.7 µs of 1,000 images"
    )
    uint8 = suspect_copies(images, [1.0e-6, 3.7e-6, 7.8e-6, 12.0e-3, 12.0e-3], images)
    assert set(uint8) == {3, 4} and "12 ms and 12 ms: 1x the time for 6x the bytes" in uint8[3]
    # Issue 21's: every 2-thread copy of 100 to 10,000 images took the same 7.96 ms.
    assert set(suspect_copies(images, [1.8e-6, 7.96e-3, 7.96e-3, 7.96e-3, 40e-3], images)) == {
        1,
        2,
        3,
    }
    # A GPU's small copies sit on its latency floor: flat, and not suspect. Real copies that grow: nothing.
    assert suspect_copies(images, [15e-6, 15e-6, 27e-6, 157e-6, 909e-6], images) == {}
    assert suspect_copies(work, [1.2e-6, 4e-6, 59e-6, 1314e-6, 11208e-6], images) == {}
    assert suspect_copies([100], [1.0], [1]) == {} and suspect_copies([], [], []) == {}
    # A second thread that waited for a core: 5.6x the one thread's time for the same bytes.
    assert threads_waited([2.13e-3, 11.98e-3], [1, 2]) == {
        1: "2 threads took 12 ms, 5.62x the 2.13 ms of 1 thread for the same bytes"
    }
    assert threads_waited([26.0e-3, 24.0e-3], [1, 2]) == {} and threads_waited([1.0], [None]) == {}


def test_the_committed_runs_hold_no_suspect_copy_but_the_h100_hosts_16_thread_ones():
    fixtures = [
        f
        for f in (REPO / "tests" / "fixtures").rglob("*.json")
        if f.name != "cpu_busy_transfer_run.json"
    ]
    frame = load_frame(
        [reference_folder(), *fixtures], all_runs=True
    )  # (the busy run is its own test, below)
    suspect = frame[frame["suspect"]]
    assert set(suspect["name"]) == {
        f"test_transfer[cpu-h2h-pageable-{n}]"
        for n in ("1000-float32", "1000-uint8", "60000-float32")
    }
    assert set(suspect["cpu_threads"]) == {16}


def test_a_suspect_copy_is_marked_in_the_summary_the_report_and_its_csv(tmp_path):
    run = json.loads(QUICK.read_text())
    copies = [
        b for b in run["benchmarks"] if b["group"] == "transfer" and b["params"]["size"] >= 1000
    ]
    assert len({b["params"]["size"] for b in copies}) >= 2
    for bench in copies:  # a steady 7.96 ms whatever the size: what a scheduler slice looks like
        bench["stats"].update(median=7.96e-3, mean=7.96e-3, min=7.9e-3, data=[7.96e-3])
    frame = runs_to_frame([(tmp_path / "run.json", run)])
    marked = frame[frame["suspect"]]
    assert set(marked["name"]) == {b["name"] for b in copies}
    assert (
        "took 7.96 ms and 7.96 ms: 1x the time for 60x the bytes"
        in marked["suspect_reason"].iloc[0]
    )
    health = end_summary(run, width=None)
    assert any(
        f"{len(copies)} suspect, their time not following their bytes" in line for line in health
    )

    from bench.report.page import write_report

    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "0001_x.json").write_text(json.dumps(run))
    write_report(load_frame([tmp_path / "runs"]), tmp_path / "out")
    assert "(suspect)" in (tmp_path / "out" / "report.md").read_text()
    csv = (tmp_path / "out" / "summary.csv").read_text()
    assert "suspect_reason" in csv.splitlines()[0] and "1x the time for 60x the bytes" in csv


def test_a_cpu_only_default_run_ends_with_the_reference_gpus_answer_with_intervals():
    lines = end_summary(json.loads(VM_DEFAULT.read_text()), width=None)
    # the command that measures its own GPU, then the verdict's main figure again, last (issue 34)
    assert lines[-2].startswith(
        "On a machine with a GPU this measures its own: pytest bench --devices cpu,cuda:0"
    )
    assert lines[-1].startswith("In short: the notes' loop (seed), batch 1,000, on that GPU: ")
    assert lines[-1].replace("In short: ", "  ").split(" (the verdict")[0] in lines[:5]
    answer = [line for line in lines if line.startswith("  train batch 1,000:")]
    assert answer and "the notes' loop (seed)" in answer[0] and "resident" in answer[0]
    assert any("reference: " in line and "other machines'" in line for line in lines)
    # Every figure of it with its 95% interval: "9.19x (8.73-9.59)".
    import re

    assert re.search(r"resident \d+\.\d\dx \(\d+\.\d\d-\d+\.\d\d\)", answer[0])
    # Where the run has a GPU, the answer stays about this machine.
    gpu_run = json.loads((REPO / "tests" / "fixtures" / "constructed_gpu_run.json").read_text())
    assert not any("reference GPUs" in line for line in end_summary(gpu_run, width=None))


def test_the_machine_id_is_made_once_and_kept(tmp_path):
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config")}
    first, made = machine_id(env)
    where = str(tmp_path / "config" / "fmnist-bench" / "machine-id")
    assert made == f"{where} (made now)" and machine_id(env) == (
        first,
        where,
    )  # read back, not made again
    assert Path(where).read_text().strip() == first
    other, _ = machine_id({"XDG_CONFIG_HOME": str(tmp_path / "another-vm")})
    assert other != first
    assert machine_id({MACHINE_ID_ENV: "ABCDEF0123"}) == ("abcdef0123", f"${MACHINE_ID_ENV}")
    with pytest.raises(ValueError, match=f"{MACHINE_ID_ENV}='vm 1' is not 8 to 64 hex digits"):
        machine_id({MACHINE_ID_ENV: "vm 1"})
    Path(where).write_text("not an id\n")
    with pytest.raises(OSError, match="holds 'not an id', not an id: remove it"):
        machine_id(env)
    # Two VMs called "vm" with one CPU model: two keys, so two folders.
    assert machine_key("vm", "AMD EPYC", [], None, first) != machine_key(
        "vm", "AMD EPYC", [], None, other
    )
    assert machine_key("vm", "AMD EPYC", [], None, first).endswith("_" + first[:8])


def _header(env_home: Path, *args: str) -> str:
    env = {**os.environ, "XDG_CONFIG_HOME": str(env_home)}
    env.pop(MACHINE_ID_ENV, None)
    result = harness.run(
        [sys.executable, "-m", "pytest", "bench", "-p", "no:cacheprovider", "--quick", "--collect-only", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return next(
        line for line in result.stdout.splitlines() if line.startswith("fmnist-bench: machine ")
    )


def test_two_vms_of_one_host_name_and_cpu_save_apart_and_the_report_keeps_them_apart(tmp_path):
    store = tmp_path / "store"
    a = _header(tmp_path / "vm-a", f"--benchmark-storage=file://{store}")
    b = _header(tmp_path / "vm-b", f"--benchmark-storage=file://{store}")
    key_a, key_b = a.split()[2].rstrip(";"), b.split()[2].rstrip(";")
    assert key_a != key_b and key_a.rsplit("_", 1)[0] == key_b.rsplit("_", 1)[0]
    assert key_a not in {folder.name for folder in reference_folder().iterdir()}

    # Their saved runs: one host name and CPU, two ids. The report shows two machines, and the reference apart.
    run = json.loads(QUICK.read_text())
    for name, key in (("a", key_a), ("b", key_b)):
        mine = copy.deepcopy(run)
        mine["machine_info"]["fmnist_bench"]["machine_key"] = key
        folder = tmp_path / "results" / key / "Linux-CPython-3.11-64bit"
        folder.mkdir(parents=True)
        (folder / f"0001_{name}.json").write_text(json.dumps(mine))
    frame = load_frame([tmp_path / "results", reference_folder()])
    labels = frame.drop_duplicates("machine_key").set_index("machine_key")["label"]
    assert labels[key_a] != labels[key_b] and not labels[key_a].startswith("reference")
    reference = [label for key, label in labels.items() if key.startswith("reference/")]
    assert reference and all(label.startswith("reference: ") for label in reference)


def test_what_is_a_reference_run_is_decided_on_the_resolved_path(tmp_path, monkeypatch):
    inside = reference_folder() / "vm_AMD-EPYC_no-gpu"
    assert is_reference(inside / "Linux-CPython-3.11-64bit" / "0001_x.json") and is_reference(
        reference_folder()
    )
    assert not is_reference(
        REPO / "results" / "vm_AMD-EPYC_no-gpu_1234abcd" / "Linux" / "0001_x.json"
    )
    assert not is_reference(
        tmp_path / "reference" / "vm" / "Linux" / "0001_x.json"
    )  # a folder of the user's own
    (tmp_path / "link").symlink_to(inside)
    assert is_reference(tmp_path / "link" / "Linux" / "0001_x.json")
    monkeypatch.chdir(inside)
    assert is_reference(Path("Linux-CPython-3.11-64bit") / "0001_x.json")


@pytest.mark.parametrize("where", ["machine", "root", "link"])
def test_a_run_is_never_saved_among_the_reference_runs(tmp_path, where):
    folder = {
        "machine": reference_folder() / "vm_AMD-EPYC_no-gpu",
        "root": reference_folder(),
        "link": tmp_path / "l",
    }
    if where == "link":
        folder["link"].symlink_to(reference_folder() / "vm_AMD-EPYC_no-gpu")
    result = harness.run(
        [sys.executable, "-m", "pytest", "bench", "-p", "no:cacheprovider", "--quick", "-k", "transfer and cpu-1t-h2h",
         "--benchmark-autosave", f"--benchmark-storage=file://{folder[where]}"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 4 and "is a folder of the project's reference runs" in result.stderr


def test_a_users_copy_of_a_reference_run_is_another_machine_in_the_report_and_compare(
    tmp_path, capsys
):
    from bench.report.compare import main

    # An older run of a user's VM keyed as the reference VM is (format 4: no id), saved in the user's results.
    folder = tmp_path / "results" / "vm_AMD-EPYC_no-gpu" / "Linux-CPython-3.11-64bit"
    folder.mkdir(parents=True)
    mine = folder / VM_DEFAULT.name
    mine.write_text(VM_DEFAULT.read_text())
    frame = load_frame([tmp_path / "results", reference_folder()])
    keys = set(frame["machine_key"])
    assert {"vm_AMD-EPYC_no-gpu", "reference/vm_AMD-EPYC_no-gpu"} <= keys
    labels = frame.drop_duplicates("machine_key").set_index("machine_key")["label"]
    assert labels["vm_AMD-EPYC_no-gpu"] == "AMD EPYC · no GPU"
    # (Two reference VMs of that kind ship, each its own machine: the labels tell them apart.)
    assert labels["reference/vm_AMD-EPYC_no-gpu"].startswith("reference: AMD EPYC · no GPU")
    with pytest.raises(SystemExit):
        main([str(VM_DEFAULT), str(mine)])
    assert (
        "'reference/vm_AMD-EPYC_no-gpu' and NEW of 'vm_AMD-EPYC_no-gpu'" in capsys.readouterr().err
    )


def test_the_machine_id_says_what_to_do_where_it_cannot_be_kept(tmp_path):
    (tmp_path / "a-file").write_text("")
    with pytest.raises(OSError, match=f"a-file/fmnist-bench/machine-id .*set \\${MACHINE_ID_ENV}"):
        machine_id({"XDG_CONFIG_HOME": str(tmp_path / "a-file")})
    # A relative $XDG_CONFIG_HOME is ignored (the XDG spec): the id does not depend on where a run starts.
    home = {"HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": "relative"}
    import unittest.mock

    with unittest.mock.patch.dict(os.environ, {"HOME": home["HOME"]}):
        ident, where = machine_id(home)
    assert where == f"{tmp_path / 'home' / '.config' / 'fmnist-bench' / 'machine-id'} (made now)"
    # A broken link where the id belongs: said, not looped on.
    broken = tmp_path / "broken" / "fmnist-bench"
    broken.mkdir(parents=True)
    (broken / "machine-id").symlink_to(tmp_path / "nowhere")
    with pytest.raises(OSError, match="exists but cannot be read as a file"):
        machine_id({"XDG_CONFIG_HOME": str(tmp_path / "broken")})


def test_a_case_at_the_very_start_of_a_run_says_it_is_too_short_to_tell(tmp_path):
    proc = FakeStat(tmp_path / "proc")
    load = MachineLoad(proc.root, clock=lambda: proc.now)
    load.mark()
    proc.now = 0.1
    proc.set(busy=10, idle=10, own=0)  # 20 ticks in all: under the 50 a share needs
    case = load.case(started=0.0)
    assert case == {
        "available": False,
        "reason": "too short to tell: 20 ticks of /proc/stat since the run began, under 50",
    }


def test_a_run_whose_thread_count_is_unknown_says_why_there_is_no_reference_answer():
    run = json.loads(VM_DEFAULT.read_text())
    del run["machine_info"]["torch"]["threads"]
    run["machine_info"]["fmnist_bench"]["plan"].pop("default_threads", None)
    last = end_summary(run, width=None)[-1]
    assert last.startswith("No GPU in this run, and no reference GPU figure of the same work")


def test_a_run_made_while_the_cores_are_busy_flags_itself(tmp_path):
    # Spinners on every core, twice over, for the whole run: the machine is not the run's own.
    spinners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(2 * (os.cpu_count() or 1))
    ]
    try:
        result = harness.run(
            [sys.executable, "-m", "pytest", "bench", "-p", "no:cacheprovider", "--quick", "-k", "transfer",
             "--devices", "cpu", "--benchmark-autosave", f"--benchmark-storage=file://{tmp_path / 'store'}"],
            cwd=REPO, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (saved,) = (tmp_path / "store").glob("*/0001_*.json")
    run = json.loads(saved.read_text())
    load = run["machine_info"]["fmnist_bench"]["load"]
    assert load["available"] and load["busy"] and load["outside_share"] > 0.10, load
    busy = [b for b in run["benchmarks"] if b["extra_info"]["machine_load"]["busy"]]
    assert busy, [b["extra_info"]["machine_load"] for b in run["benchmarks"]]
    assert "the machine was not the run's own: other work took" in " ".join(result.stdout.split())
    assert "with the CPU busy with other work" in " ".join(result.stdout.split())


def test_a_real_run_on_a_busy_vm_flags_every_case_and_marks_the_scheduler_slices():
    # Made on the 2-core VM with four busy loops running (docs/findings.md, "A run on a busy machine").
    path = REPO / "tests" / "fixtures" / "cpu_busy_transfer_run.json"
    run = json.loads(path.read_text())
    assert run["machine_info"]["fmnist_bench"]["load"]["outside_share"] > 0.5
    # Each case's own telemetry could not tell (a few ticks of /proc/stat); the run's load around it could.
    assert all(
        not b["extra_info"]["telemetry"]["host"]["cpu"]["available"] for b in run["benchmarks"][:3]
    )
    frame = load_frame([path])
    assert frame["busy"].all()
    suspect = frame[frame["suspect"]]
    assert set(suspect["name"]) == {
        f"test_transfer[cpu-2t-h2h-pageable-{case}]"
        for case in ("1000-float32", "10000-float32", "10000-uint8", "60000-uint8")
    }
    assert (suspect["median"].between(11.9e-3, 12.1e-3)).all()  # each one 12 ms scheduler slice
    said = " ".join(" ".join(end_summary(run)).split())
    assert (
        "the machine was not the run's own: other work took 75.3% of the machine's CPU time" in said
    )


@pytest.mark.parametrize("make", ["fifo", "dev-zero", "folder", "large"])
def test_the_machine_id_is_read_as_carefully_as_a_run_file(tmp_path, make):
    folder = tmp_path / "fmnist-bench"
    folder.mkdir()
    path = folder / "machine-id"
    if make == "fifo":
        os.mkfifo(path)  # read naively, this waits for a writer forever
    elif make == "dev-zero":
        path.symlink_to("/dev/zero")  # read naively, this never ends
    elif make == "folder":
        path.mkdir()
    else:
        path.write_text("a" * 5000)
    said = {"fifo": "a FIFO, not a file", "dev-zero": "a device, not a file", "folder": "a folder, not a file",
            "large": "5,000 bytes, larger than any id"}[make]  # fmt: skip
    with pytest.raises(OSError, match=f"machine-id: {said}.*remove it"):
        machine_id({"XDG_CONFIG_HOME": str(tmp_path)})


def test_an_upper_case_id_file_is_read_as_the_variable_is_and_a_bad_one_is_not_echoed(tmp_path):
    path = tmp_path / "fmnist-bench" / "machine-id"
    path.parent.mkdir()
    path.write_text("ABCDEF0123456789\n")
    assert machine_id({"XDG_CONFIG_HOME": str(tmp_path)}) == ("abcdef0123456789", str(path))
    path.write_text("x" * 70 + "\n")
    with pytest.raises(OSError) as bad:
        machine_id({"XDG_CONFIG_HOME": str(tmp_path)})
    assert "(70 characters)" in str(bad.value) and "x" * 20 not in str(bad.value)
    with pytest.raises(ValueError) as bad:
        machine_id({MACHINE_ID_ENV: "y" * 70})
    assert "(70 characters)" in str(bad.value) and "y" * 20 not in str(bad.value)
