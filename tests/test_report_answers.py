"""The report's answer and its machines: unique labels, no shared series, sentences true of the figures, quick marked."""

import copy
import json
from pathlib import Path

import pandas as pd
import pytest

from bench.analysis.answers import answers
from bench.analysis.figures import breakdown, crossovers, speedups
from bench.analysis.rows import load_frame
from bench.report.page import write_report

FIXTURES = Path(__file__).parent / "fixtures"
GPU_RUN = FIXTURES / "constructed_gpu_run.json"  # constructed, with known answers (see its builder)
H100 = (
    FIXTURES / "h100-host"
)  # real: a quick cpu + cuda:0 run and a full GPU-only run of one host called "vm"
VM_RUN = (
    FIXTURES / "cpu_quick_run_format2.json"
)  # real: the 2-core development VM, also called "vm"
PLOTS = (
    "epoch_time",
    "inference_throughput",
    "transfer_bandwidth",
    "speedup",
    "epoch_breakdown",
    "machines",
)


def _run(**machine) -> dict:
    """The constructed GPU run as another machine: new key, and whatever machine_info fields are given."""
    run = json.loads(GPU_RUN.read_text())
    info = run["machine_info"]
    for field, value in machine.items():
        if field == "cpu":
            info["cpu"]["brand_raw"] = value
        elif field == "gpu":
            info["gpus"][0]["name"] = value
        elif field == "name":
            info["fmnist_bench"]["machine_name"] = value
        else:
            info[field] = value
    info["fmnist_bench"]["machine_key"] = "_".join(str(v) for v in machine.values()) or "same"
    return run


def _write(folder: Path, name: str, run: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(json.dumps(run))
    return path


def _set_train(run: dict, device: str, pipeline: str, medians: dict[int, float]) -> dict:
    run = copy.deepcopy(run)
    for b in run["benchmarks"]:
        p = b["params"]
        if b["group"] == "train" and p["device"] == device and p["pipeline"] == pipeline:
            m = medians[p["batch_size"]]
            b["stats"].update(median=m, mean=m, min=m, q1=m, q3=m, iqr=0.0, data=[m, m, m])
    return run


# ---------------------------------------------------------------- machine identity


def test_machines_that_share_a_host_name_get_labels_that_tell_them_apart(tmp_path):
    runs = tmp_path / "runs"
    _write(runs, "a.json", _run(node="vm", gpu="NVIDIA H100 80GB HBM3"))
    _write(runs, "b.json", _run(node="vm", gpu="NVIDIA L4"))  # the same host name, another GPU
    _write(
        runs, "c.json", _run(node="vm", gpu="NVIDIA L4", cpu="Constructed CPU 64-Core", extra="x")
    )  # twin
    frame = load_frame([runs])
    labels = frame.drop_duplicates("machine_key").set_index("machine_key")["label"]
    assert labels.is_unique and len(labels) == 3
    assert "Constructed CPU 64-Core · NVIDIA H100 80GB HBM3 (constructed, not measured)" in set(
        labels
    )
    # The twins read the same by CPU and GPU and by host: a short key sets them apart.
    twins = [label for key, label in labels.items() if "L4" in key]
    assert all(" (vm) #" in label for label in twins) and twins[0] != twins[1]


def test_a_name_given_with_machine_name_is_the_label(tmp_path):
    runs = tmp_path / "runs"
    _write(runs, "a.json", _run(node="vm", name="lab-a"))
    _write(runs, "b.json", _run(node="vm", name="lab-b"))
    labels = set(load_frame([runs])["label"])
    assert labels == {"lab-a (constructed, not measured)", "lab-b (constructed, not measured)"}


def test_no_two_machines_share_a_panel_a_series_or_a_title(tmp_path):
    runs = tmp_path / "runs"
    _write(runs, "a.json", _run(node="vm", gpu="NVIDIA H100 80GB HBM3"))
    _write(runs, "b.json", _run(node="vm", gpu="NVIDIA L4"))
    frame = load_frame([runs])
    write_report(frame, tmp_path / "out")
    labels = set(frame["label"])
    one_machine = load_frame([runs / "a.json"])
    write_report(one_machine, tmp_path / "one")
    for plot in PLOTS:
        data = pd.read_csv(tmp_path / "out" / f"{plot}.csv")
        if plot == "machines":  # one panel: every series is one machine's device
            owners = {s.split(" | ")[0] for s in data["series"]}
            assert owners == labels
            assert data.groupby("series")["x"].apply(lambda x: x.is_unique).all()
            continue
        # A panel per machine, titled by its label; in it, exactly what one machine alone would draw.
        assert set(data["panel"]) == labels, plot
        alone = pd.read_csv(tmp_path / "one" / f"{plot}.csv")
        for label in labels:
            mine = data[data["panel"] == label]
            assert sorted(mine["series"]) == sorted(alone["series"]), (plot, label)
            assert mine.duplicated(["series", "x"]).sum() == alone.duplicated(["series", "x"]).sum()
    machines_and_runs = (
        (tmp_path / "out" / "report.md").read_text().split("## Machines and runs")[1]
    )
    assert all(label.split(" (")[0] in machines_and_runs for label in labels)


def test_the_two_vms_of_the_real_runs_are_two_machines(tmp_path):
    frame = load_frame([H100, VM_RUN])
    assert set(frame["host"]) == {"vm"}
    assert set(frame["label"]) == {"Intel Xeon · NVIDIA H100 80GB HBM3", "AMD EPYC · no GPU"}
    write_report(frame, tmp_path / "out")
    transfer = pd.read_csv(tmp_path / "out" / "transfer_bandwidth.csv")
    # The VM's host copy and the H100 host's PCIe copies are in different panels.
    h2h_panels = set(transfer.loc[transfer["series"].str.contains("h2h"), "panel"])
    pcie_panels = set(transfer.loc[transfer["series"].str.contains("h2d"), "panel"])
    assert not any(p.startswith("AMD") for p in pcie_panels)
    assert any(p.startswith("AMD") for p in h2h_panels)
    md = (tmp_path / "out" / "report.md").read_text()
    side = md.split("## Machines side by side")[1].split("\n## ")[0]
    assert "Host memory copy, h2h (GB/s)" in side and "PCIe copy, h2d pinned (GB/s)" in side


# ---------------------------------------------------------------- the answer


@pytest.mark.parametrize(
    "gpu_seed, says, sentence",
    [
        (
            {100: 1.0, 1000: 1.0, 10_000: 1.0},
            "GPU faster at every batch size measured (100 to 10,000)",
            "2.00x faster",
        ),
        (
            {100: 4.0, 1000: 4.0, 10_000: 4.0},
            "GPU not faster at the largest batch size measured (10,000)",
            "2.00x slower",
        ),
        (
            {100: 1.0, 1000: 1.0, 10_000: 4.0},
            "GPU not faster at the largest batch size measured (10,000); faster at 100, 1,000",
            "2.00x faster",
        ),
        (
            {100: 4.0, 1000: 1.0, 10_000: 1.0},
            "GPU faster from batch size 1,000 on (measured up to 10,000)",
            "2.00x faster",
        ),
    ],
    ids=["wins", "loses", "wins-then-loses", "loses-then-wins"],
)
def test_every_sentence_of_the_answer_is_true_of_its_figures(tmp_path, gpu_seed, says, sentence):
    run = _set_train(_run(), "cpu", "seed", {100: 2.0, 1000: 2.0, 10_000: 2.0})
    run = _set_train(run, "cuda:0", "seed", gpu_seed)
    frame = load_frame([_write(tmp_path, "run.json", run)])
    speed = speedups(frame)
    cross = crossovers(speed)
    parts = breakdown(frame)
    (answer,) = answers(frame, speed, cross, parts)
    said = " ".join(answer["said"])
    assert f"Crossover against the CPU at its best thread count, cuda:0 train seed: {says}." in said
    # Each speedup with its 95% interval, from the rounds of both figures.
    assert f"Here the notes' loop (seed) is {sentence} (" in said
    assert (
        ") on the GPU (cuda:0) than on this machine's CPU (at torch's default thread count) at batch 1,000"
        in said
    )
    # The reasons it gives are the figures': data loading's share of the GPU's seed epoch, the resident speedup.
    at = parts[(parts["device"] == "cuda:0") & (parts["batch_size"] == 1000)].iloc[0]
    share = at["loading_s"] / at["seed_epoch_s"]
    resident = speed.query(
        "family == 'train' and variant == 'resident' and batch_size == 1000"
    ).iloc[0]["speedup"]
    seed = speed.query("family == 'train' and variant == 'seed' and batch_size == 1000").iloc[0][
        "speedup"
    ]
    # "because" only where loading is most of the epoch and the resident epoch gains more than seed: else "while".
    link = "because" if share >= 0.5 and resident > seed else "while"
    assert f", {link} data loading takes {share:.0%} of its epoch there" in said
    assert f"with the data resident on the GPU it is {resident:.2f}x faster (" in said
    write_report(frame, tmp_path / "out")
    page = (tmp_path / "out" / "index.html").read_text()
    first = page.index('<section class="answer"')
    assert first < page.index("<summary>Training epoch time")  # the answer comes first
    assert says in page[first : page.index('id="figures"')]


def test_a_machine_whose_cpu_ran_only_a_quick_run_gets_quick_speedups_and_is_told_what_is_missing(
    tmp_path,
):
    frame = load_frame([H100])
    (answer,) = answers(frame, speedups(frame), crossovers(speedups(frame)), breakdown(frame))
    assert answer["speedups"]["quick"].all() and len(answer["speedups"]) > 0
    assert "(from a quick run: a subset of the data)" in answer["said"][0]
    assert any("measured only in a quick run" in m["text"] for m in answer["missing"])
    assert all(
        m["command"] == "pytest bench --devices cpu,cuda:0 --benchmark-autosave"
        for m in answer["missing"]
    )
    assert all("(quick" in line for line in answer["said"] if line.startswith("Crossover"))
    write_report(frame, tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    # A machine with full runs: its answer holds full figures only, its quick run's answer is apart, labelled.
    full, quick = md.split("\n## ")[1], md.split("\n## ")[2]
    assert "x (1 round)" not in full and "| quick |" not in full and "its quick run" in full
    assert quick.startswith(f"{answer['label']}: its quick run, apart")
    assert "| quick |" in quick and "(1 round)" in quick and "5.33x" in quick
    train = md.split("## Training epoch time")[1].split("\n## ")[0]
    assert "quick (2,000 images)" in train and "| full " in train


def test_a_one_round_figure_is_marked_and_never_called_noisy(tmp_path):
    frame = load_frame([H100])
    quick = frame[frame["quick"]]
    assert quick["one_round"].all() and not quick["noisy"].any()
    write_report(frame, tmp_path / "out")
    inference = (
        (tmp_path / "out" / "report.md").read_text().split("## Inference")[1].split("\n## ")[0]
    )
    for line in inference.splitlines():
        if "| quick" in line:
            assert "(1 round)" in line and "\\~" not in line


def test_a_machine_without_a_gpu_says_so_and_one_whose_cpu_is_missing_says_how_to_measure_it(
    tmp_path,
):
    gpu_only = json.loads(GPU_RUN.read_text())
    gpu_only["benchmarks"] = [b for b in gpu_only["benchmarks"] if b["params"]["device"] != "cpu"]
    frame = load_frame([_write(tmp_path, "gpu_only.json", gpu_only), VM_RUN])
    by_label = {
        a["label"]: a
        for a in answers(frame, speedups(frame), crossovers(speedups(frame)), breakdown(frame))
    }
    assert by_label["AMD EPYC · no GPU"]["said"] == [
        "No GPU was measured on this machine: its CPU figures are in the sections below."
    ]
    gpu = next(a for label, a in by_label.items() if "Constructed" in label)
    assert gpu["said"] == [] and "CPU is in none of its runs" in gpu["missing"][0]["text"]
    assert gpu["missing"][0]["command"] == "pytest bench --devices cpu,cuda:0 --benchmark-autosave"
    # With the reference runs the project ships, the machine without a GPU is held against their GPUs, said so.
    from bench.analysis.reference import MEASURE_OWN, load_reference

    held = answers(
        frame, speedups(frame), crossovers(speedups(frame)), breakdown(frame), load_reference()
    )
    cpu = next(a for a in held if a["label"] == "AMD EPYC · no GPU")
    assert cpu["said"][0].startswith(
        "No GPU here. The reference GPUs the project ships, other machines'"
    )
    assert any(line.startswith("train batch 1,000: the notes' loop (seed)") for line in cpu["said"])
    assert cpu["missing"][-1]["command"] == MEASURE_OWN


def test_cross_machine_speedups_only_when_asked_and_only_like_with_like(tmp_path):
    from bench.report.cli import main

    runs = tmp_path / "runs"
    _write(runs, "gpu.json", _run(node="a", gpu="NVIDIA H100 80GB HBM3"))
    _write(runs, "other.json", _run(node="b", gpu="NVIDIA L4"))
    assert main([str(runs), "--out", str(tmp_path / "plain")]) == 0
    assert "GPUs against other machines" not in (tmp_path / "plain" / "report.md").read_text()
    assert main([str(runs), "--out", str(tmp_path / "cross"), "--cross-machine"]) == 0
    section = (
        (tmp_path / "cross" / "report.md")
        .read_text()
        .split("## GPUs against other machines' CPUs")[1]
    )
    rows = [
        line for line in section.split("\n## ")[0].splitlines() if line.startswith("| Constructed")
    ]
    assert len(rows) == 2 * 4  # each GPU over the other's CPU: 2 train and 2 inference variants


# ---------------------------------------------------------------- energy and the hardware's flags


def _with_telemetry(run: dict) -> dict:
    """Constructed telemetry: every GPU epoch 10 J at 100 W, every CPU epoch 40 J; one throttled case, one busy."""
    run = copy.deepcopy(run)
    for b in run["benchmarks"]:
        p = b["params"]
        on_gpu = p["device"].startswith("cuda")
        energy = {
            "energy_per_round_j": 10.0 if on_gpu else 40.0,
            "mean_power_w": 100.0 if on_gpu else 50.0,
        }
        tele = {"state": "on", "flags": []}
        if on_gpu:
            tele["gpu"] = {"available": True, "energy_reliable": True, **energy}
        else:
            tele["host"] = {"energy": {"available": True, **energy}}
        if b["name"] == "test_train_epoch[cuda:0-1000-resident]":
            tele["flags"] = ["throttled"]
        if b["name"] == "test_train_epoch[cpu-1000-seed]":
            tele["flags"] = ["busy"]
        b["extra_info"]["telemetry"] = tele
    return run


def test_energy_sits_beside_time_and_the_hardwares_flags_beside_the_figure(tmp_path):
    run = _with_telemetry(json.loads(GPU_RUN.read_text()))
    frame = load_frame([_write(tmp_path, "run.json", run)])
    row = frame.query(
        "family == 'inference' and device == 'cuda:0' and mode == 'compute' and batch_size == 100"
    )
    assert row["images_per_j"].iloc[0] == pytest.approx(row["images"].iloc[0] / 10.0)
    write_report(frame, tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    energy = md.split("## Energy\n")[1].split("\n## ")[0]
    assert "10 J/epoch, 100 W" in energy and "40 J/epoch, 50 W" in energy
    per_1000 = 10.0 / row["images"].iloc[0] * 1000
    assert f"{per_1000:.3g} J/1,000 img, {row['images_per_j'].iloc[0]:,.0f} img/J, 100 W" in energy
    ratio = md.split("## GPU energy against the CPU's\n")[1].split("\n## ")[0]
    assert "4.00x" in ratio and "0.25x" not in ratio
    train = md.split("## Training epoch time\n")[1].split("\n## ")[0]
    resident = next(
        line for line in train.splitlines() if "| cuda:0 " in line and "resident" in line
    )
    seed = next(line for line in train.splitlines() if "| cpu " in line and "| seed " in line)
    assert resident.count("(throttled)") == 1 and seed.count("(busy)") == 1
    assert "(throttled)" not in seed and "(busy)" not in resident


def test_a_run_without_telemetry_has_no_energy_section(tmp_path):
    # A section with nothing to show is left out, never a heading over "nothing measured".
    write_report(load_frame([GPU_RUN]), tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## Energy" not in md and "## GPU energy against" not in md


def test_machines_alike_in_every_name_are_told_apart_by_their_gpus_uuids(tmp_path):
    a, b = _run(node="vm"), _run(node="vm")
    b["machine_info"]["gpus"][0]["uuid"] = "GPU-another-one"
    _write(tmp_path / "runs", "a.json", a)
    _write(tmp_path / "runs", "b.json", b)
    labels = load_frame([tmp_path / "runs"]).drop_duplicates("machine_key")["label"]
    assert len(labels) == 2 and labels.is_unique


def test_a_cpu_measured_only_quick_and_a_gpu_only_full_have_no_speedup_and_say_what_to_run(
    tmp_path,
):
    cpu = json.loads(GPU_RUN.read_text())
    cpu["benchmarks"] = [b for b in cpu["benchmarks"] if b["params"]["device"] == "cpu"]
    cpu["machine_info"]["fmnist_bench"]["plan"]["quick"] = True
    gpu = json.loads(GPU_RUN.read_text())
    gpu["benchmarks"] = [b for b in gpu["benchmarks"] if b["params"]["device"] != "cpu"]
    frame = load_frame([_write(tmp_path, "cpu.json", cpu), _write(tmp_path, "gpu.json", gpu)])
    (answer,) = answers(frame, speedups(frame), crossovers(speedups(frame)), breakdown(frame))
    assert answer["said"] == [] and answer["speedups"].empty
    (missing,) = answer["missing"]
    assert "never measured in the same kind of run" in missing["text"]
    assert missing["command"] == "pytest bench --devices cpu,cuda:0 --benchmark-autosave"
