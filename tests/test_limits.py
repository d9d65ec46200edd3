"""The limits: counted work, the copy model's fit, floors and the binding limit, the ladder's moves, the predicted
crossover, and the report's section, on constructed timings with known answers (a GPU bound by per-operation cost,
a CPU bound by arithmetic) and on the real counters."""

import copy
import json
from pathlib import Path

import pandas as pd
import pytest

from bench.measure import limits as measure
from bench.measure.plan import Plan
from bench.record import limits
from bench.record.limits import Board, CopyModel, DeviceLimits, fit_copies, hold, ladder_move, why_said
from bench.record.schema import benchmark_errors
from bench.report import figures
from bench.report import limits as report_limits
from bench.report.load import CSV_COLUMNS, runs_to_frame
from bench.report.page import write_report
from fmnist_model import work
from fmnist_model.pipelines import train_config

FIXTURES = Path(__file__).parent / "fixtures"
# The design notes: 232,440 multiply-adds per image forward (conv1 86,400 + conv2 115,200 + fc 23,040 + 7,200 + 600).
FORWARD_MACS = 232_440
TRAIN_FLOPS = 1_221_840  # forward, weight gradients (as many) and input gradients but conv1's: 2 x 610,920
EPOCH_FLOPS = TRAIN_FLOPS * 60_000  # 73.3 GFLOP


# ---------------------------------------------------------------- the work, counted


def test_the_counted_forward_is_the_design_notes_232440_multiply_adds_per_image():
    assert work.inference_work("cpu")["flops_per_image"] == 2 * FORWARD_MACS
    # Backward: the weights' gradients cost a forward again, the inputs' all but conv1's (its input needs none).
    conv1 = 6 * 25 * 24 * 24
    assert work.train_work("cpu")["flops_per_image"] == 2 * (2 * FORWARD_MACS + FORWARD_MACS - conv1) == TRAIN_FLOPS


@pytest.mark.parametrize("batch", [1, 32])
def test_flops_per_image_and_operations_per_step_do_not_depend_on_the_batch_counted(monkeypatch, batch):
    monkeypatch.setattr(work, "COUNTED_ON", batch)
    flops, ops = work._train_counts.__wrapped__("cpu", "contiguous", "float32")
    assert flops == TRAIN_FLOPS and ops == work.train_work("cpu")["ops_per_step"]
    flops, ops = work._inference_counts.__wrapped__("cpu", "channels_last", "bfloat16")
    assert flops == 2 * FORWARD_MACS and ops == work.inference_work("cpu", "channels_last", "bfloat16")["ops_per_step"]


def test_a_step_counts_its_operations_and_compile_leaves_them_uncounted():
    resident = work.counted(train_config("resident", "cpu"), "cpu")
    # Forward, loss, backward and Adam over 10 parameter tensors: over a hundred operations, views left out.
    assert 100 < resident["ops_per_step"] < 400
    bf16 = work.counted(train_config("bf16", "cpu"), "cpu")
    assert bf16["ops_per_step"] > resident["ops_per_step"]  # autocast's casts are operations too
    compiled = work.counted(train_config("compile", "cpu"), "cpu")
    assert compiled["ops_per_step"] is None and compiled["flops_per_image"] == TRAIN_FLOPS
    resident["ops_per_step"] = -1  # a case's record is its own: the cached counts are not changed through it
    assert work.train_work("cpu")["ops_per_step"] > 100


# ---------------------------------------------------------------- the limits cases


def test_the_plan_has_a_graph_and_a_device_copy_on_cuda_only():
    plan = Plan(devices=("cpu", "cuda:0"), dataset_name="synthetic", default_threads=4)
    cases = {(c["device"], c["cpu_threads"], c["limit"], c["dtype"]) for c in plan.cases("limits")}
    cpu = {("operation", "float32"), ("matmul", "float32"), ("matmul", "bfloat16")}
    assert cases == {("cpu", t, *c) for t in (1, 4) for c in cpu} | {
        ("cuda:0", 4, *c) for c in cpu | {("operation_graph", "float32"), ("device_copy", "float32")}
    }


def test_the_matrix_product_grows_until_a_product_takes_ten_milliseconds(monkeypatch):
    # A fake clock: a product of side n "takes" n^3 x 1e-11 s, so 1,024 (10.7 ms) is the first past 10 ms.
    monkeypatch.setattr(measure, "timed_call", lambda _clock, fn: (fn().shape[0] ** 3 * 1e-11, None))
    _target, done = measure.matmul_target("cpu", "float32", clock=None)
    assert done["n"] == 1024 and done["flops"] == 2 * 1024**3
    # Never past the device's largest side, however fast the products.
    monkeypatch.setattr(measure, "timed_call", lambda _clock, fn: (0.0, fn()))
    monkeypatch.setattr(measure, "MAX_N", {"cpu": 512})
    assert measure.matmul_target("cpu", "bfloat16", clock=None)[1]["n"] == 512


def test_an_operations_round_runs_its_chain():
    target, done = measure.operations_target("cpu", graph=False)
    assert done == {"ops": measure.OPS_PER_ROUND, "elements": measure.OP_ELEMENTS}
    target()  # x *= 1.0, 500 times: still ones
    assert limits.limit_figure("operation", done, 0.002) == pytest.approx(4e-6)


def test_a_limits_figure_is_its_fastest_round():
    board = Board()
    params = {"device": "cpu", "cpu_threads": 2, "limit": "matmul", "dtype": "float32"}
    board.add("limits", params, {"work": {"n": 1024, "flops": 2e9}}, median_s=0.02, min_s=0.01)
    assert board.limits[("cpu", 2)].peak == {"float32": 2e11}
    assert limits.row_fields({"work": {"flops": 2e9, "n": 1024}}, "matmul", {"min": 0.01, "median": 0.02})[
        "limit_value"
    ] == pytest.approx(2e11)


# ---------------------------------------------------------------- the copy model


def test_the_copy_model_recovers_a_fixed_cost_and_a_bandwidth():
    sizes = [784 * 4 * n for n in (1, 100, 1000, 10_000, 60_000)]
    model = fit_copies([(b, 10e-6 + b / 20e9) for b in sizes])
    assert model.fixed_s == pytest.approx(10e-6) and model.bytes_per_s == pytest.approx(20e9)
    assert model.half_bandwidth_bytes == pytest.approx(200_000)  # 10 us at 20 GB/s
    assert model.seconds(model.half_bandwidth_bytes) == pytest.approx(2 * model.fixed_s)
    # A few percent of noise moves neither far.
    noisy = fit_copies(
        [(b, (10e-6 + b / 20e9) * f) for b, f in zip(sizes, (1.03, 0.97, 1.02, 0.98, 1.01), strict=True)]
    )
    assert noisy.fixed_s == pytest.approx(10e-6, rel=0.1) and noisy.bytes_per_s == pytest.approx(20e9, rel=0.1)


def test_the_copy_model_refuses_what_it_cannot_fit():
    assert fit_copies([(1000, 1e-5)]) is None  # one size
    assert fit_copies([(1000, 1e-5), (1000, 2e-5)]) is None
    assert fit_copies([(1000, 2e-5), (10_000, 1e-5)]) is None  # more bytes, less time: no bandwidth
    # A fit whose fixed cost comes out below zero is a bandwidth alone.
    model = fit_copies([(1e6, 1e-4), (1e7, 1.2e-3)])
    assert model.fixed_s == 0 and model.bytes_per_s == pytest.approx(1e10, rel=0.1)


# ---------------------------------------------------------------- floors and the binding limit

GPU = DeviceLimits(operation_s=9e-6, operation_graph_s=2e-6, peak={"float32": 50e12, "bfloat16": 500e12},
                   copies={("h2d", "pageable"): CopyModel(10e-6, 20e9, 10), ("h2d", "pinned"): CopyModel(8e-6, 50e9, 10),
                           ("d2h", "pageable"): CopyModel(12e-6, 15e9, 10)})  # fmt: skip
CPU = DeviceLimits(operation_s=3e-6, peak={"float32": 180e9, "bfloat16": 700e9})


def _train(batch, pipeline="resident", ops=78, **config):
    params = {"device": "cuda:0", "cpu_threads": 2, "batch_size": batch, "pipeline": pipeline}
    batches = -(-60_000 // batch)
    extra = {"images": 60_000, "batches": batches, "work": {"flops_per_image": TRAIN_FLOPS, "ops_per_step": ops},
             "pipeline_config": {"data": "resident", "precision": "float32", "cuda_graph": False, **config}}  # fmt: skip
    return params, extra


def test_a_gpu_epoch_bound_by_per_operation_cost():
    params, extra = _train(100)
    held = hold("train", params, extra, 1.35, GPU)
    assert held["floors_s"]["operations"] == pytest.approx(600 * 78 * 9e-6)  # 0.42 s
    assert held["floors_s"]["arithmetic"] == pytest.approx(EPOCH_FLOPS / 50e12)  # 1.5 ms
    assert held["floors_s"]["copies"] == 0  # resident: copied once, before the rounds
    assert held["binding"] == "operations" and held["multiple"] == pytest.approx(1.35 / 0.4212)
    assert held["peak_share"] == pytest.approx(EPOCH_FLOPS / 1.35 / 50e12)
    row = {**limits.row_fields({"limits": held}, None, {}), "median": 1.35, "batches": 600}
    said = why_said("cuda:0", "train", "resident", 100, row)
    assert said.startswith("at batch 100 cuda:0's resident epoch is bound by per-operation cost: 600 steps x 78 "
                           "operations x 9 µs = 421 ms of its 1.35 s")  # fmt: skip
    assert "beyond every limit" not in said  # 3.2x its floor: the floor explains a third of it


def test_a_cpu_epoch_bound_by_arithmetic():
    params, extra = _train(1000, ops=142)
    params["device"] = "cpu"
    held = hold("train", params, extra, 1.3, CPU)
    assert held["floors_s"]["arithmetic"] == pytest.approx(EPOCH_FLOPS / 180e9)  # 0.41 s
    assert held["floors_s"]["operations"] == pytest.approx(60 * 142 * 3e-6)  # 26 ms
    assert held["binding"] == "arithmetic" and held["peak_share"] == pytest.approx(0.313, abs=0.001)
    row = {**limits.row_fields({"limits": held}, None, {}), "median": 1.3, "batches": 60}
    said = why_said("cpu", "train", "resident", 1000, row)
    assert "bound by arithmetic: 73.3 GFLOP at a peak of 180 GFLOP/s = 407 ms of its 1.3 s" in said
    assert "at 31% of the measured peak" in said


def test_copies_graphs_precision_and_compile_change_the_floors():
    seed = hold("train", *_train(1000, "seed", data="dataloader", pin_memory=True), 6.0, GPU)
    # 60 batches of 1,000 images and labels, pinned: 60 x (8 us + 3,144,000 B / 50 GB/s).
    assert seed["floors_s"]["copies"] == pytest.approx(60 * (8e-6 + 1000 * (784 * 4 + 8) / 50e9))
    ragged = hold("train", *_train(7000, "seed", data="dataloader"), 6.0, GPU)  # 8 batches of 7,000 and one of 4,000
    assert ragged["floors_s"]["copies"] == pytest.approx(8 * (10e-6 + 7000 * 3144 / 20e9) + 10e-6 + 4000 * 3144 / 20e9)
    graph = hold("train", *_train(1000, "cuda_graph", cuda_graph=True), 0.05, GPU)
    assert graph["operation_kind"] == "graph" and graph["floors_s"]["operations"] == pytest.approx(60 * 78 * 2e-6)
    bf16 = hold("train", *_train(1000, "bf16", precision="bfloat16"), 0.2, GPU)
    assert bf16["peak_dtype"] == "bfloat16" and bf16["floors_s"]["arithmetic"] == pytest.approx(EPOCH_FLOPS / 500e12)
    compiled = hold("train", *_train(1000, "compile", ops=None), 0.2, GPU)
    assert "operations" not in compiled["floors_s"] and compiled["binding"] == "arithmetic"
    # Inference end to end: each batch's images in, its labels out; compute mode makes no copy.
    params = {"device": "cuda:0", "batch_size": 100, "mode": "end_to_end", "pipeline": "inference_mode"}
    extra = {
        "images": 1000,
        "batches": 10,
        "work": {"flops_per_image": 464_880, "ops_per_step": 12},
        "pipeline_config": {},
    }
    served = hold("inference", params, extra, 0.01, GPU)
    assert served["floors_s"]["copies"] == pytest.approx(10 * (10e-6 + 100 * 3136 / 20e9 + 12e-6 + 800 / 15e9))
    assert hold("inference", {**params, "mode": "compute"}, extra, 0.01, GPU)["floors_s"]["copies"] == 0
    # A copy route that was never measured: no copies floor rather than a wrong one.
    assert "copies" not in hold("inference", params, extra, 0.01, DeviceLimits(operation_s=9e-6))["floors_s"]


def test_the_board_holds_cases_against_limits_measured_before_them_on_their_own_device():
    board = Board()
    params, extra = _train(100)
    board.add("train", params, extra, 1.35)
    assert "limits" not in extra  # nothing measured yet: not held
    board.add("limits", {"device": "cuda:0", "cpu_threads": 8, "limit": "operation"}, {"work": {"ops": 500}}, 5e-3)
    board.add("limits", {"device": "cpu", "cpu_threads": 1, "limit": "operation"}, {"work": {"ops": 500}}, 1e-3)
    for n in (1, 100, 1000, 10_000, 60_000):
        nbytes = n * 3136
        board.add("transfer", {"device": "cuda:0", "cpu_threads": 8, "direction": "h2d", "memory": "pageable"},
                  {"bytes": nbytes}, 10e-6 + nbytes / 20e9)  # fmt: skip
    board.add("train", params, extra, 1.35)  # at 2 threads: a GPU's limits hold whatever the CPU's count
    assert extra["limits"]["operation_s"] == pytest.approx(1e-5) and extra["limits"]["binding"] == "operations"
    assert board.limits[("cuda:0", None)].copies[("h2d", "pageable")].bytes_per_s == pytest.approx(20e9)
    cpu_params, cpu_extra = _train(100)
    board.add("train", {**cpu_params, "device": "cpu", "cpu_threads": 2}, cpu_extra, 1.0)
    assert "limits" not in cpu_extra  # the CPU's limits were measured at 1 thread only


def test_what_a_ladder_step_moves_its_case_toward():
    def row(median, arithmetic, operations):
        return {"median": median, "floor_arithmetic_s": arithmetic, "floor_operations_s": operations}

    # A CUDA graph cuts the per-operation floor (9 us to 2 us an operation) more than the time (3.7x).
    graph = ladder_move(row(0.174, 0.0015, 0.042), row(0.047, 0.0015, 0.0094))
    assert graph == "away from per-operation cost: its floor 24% -> 20% of the time"
    # bf16 on channels_last: a lower arithmetic floor, a few more operations (casts): the larger change is said.
    bf16 = ladder_move(row(2.26, 0.40, 0.017), row(2.07, 0.10, 0.021))
    assert bf16 == "away from arithmetic: its floor 18% -> 4.8% of the time"
    # channels_last on a CPU: the same floors, less time.
    assert (
        ladder_move(row(1.62, 0.41, 0.03), row(1.21, 0.41, 0.03))
        == "toward arithmetic: its floor 25% -> 34% of the time"
    )
    # bf16 where its peak is four times float32's, and the epoch no faster: away from the arithmetic floor.
    assert (
        ladder_move(row(1.62, 0.41, 0.03), row(2.0, 0.1, 0.035))
        == "away from arithmetic: its floor 25% -> 5.0% of the time"
    )
    assert ladder_move(row(1.62, 0.41, 0.03), {"median": 1.21}) is None
    # A time no different from the base's (its ratio's interval includes 1): only a change of floors moves it.
    assert ladder_move(row(1.62, 0.41, 0.03), row(1.58, 0.41, 0.0305), same_time=True) == (
        "no move: no floor's share of its time changed by a point"
    )
    assert ladder_move(row(1.62, 0.41, 0.03), row(1.58, 0.1, 0.035), same_time=True) == (
        "away from arithmetic: its floor 25% -> 6.2% of the time"
    )


def test_the_floors_predict_a_crossover_beside_the_measured_one():
    sizes = [100, 1000, 10_000]
    cpu = [EPOCH_FLOPS / 180e9] * 3  # arithmetic-bound at every size
    gpu = [600 * 78 * 9e-6, 60 * 78 * 9e-6, 6 * 78 * 9e-6]  # per-operation cost, a tenth a decade
    assert limits.predicted_crossover(sizes, cpu, gpu) == "GPU faster from batch size 1,000 on (measured up to 10,000)"
    assert limits.predicted_crossover(sizes, cpu, [None, 1.0, 1.0]) is None


# ---------------------------------------------------------------- the saved run and the report


def _held_run() -> dict:
    """The constructed GPU run (tests/fixtures/constructed_gpu_run.json: NOT MEASURED) as a format-6 run: limits
    cases chosen by hand (GPU: 9 us an operation, 50 TFLOP/s; CPU: 3 us, 180 GFLOP/s) and every training and
    inference case held against them by the Board, in the order a run takes them."""
    run = json.loads((FIXTURES / "constructed_gpu_run.json").read_text())
    run["machine_info"]["fmnist_bench"]["format"] = 6
    template = run["benchmarks"][0]
    made = []
    for device, op_s, peak in (("cpu", 3e-6, 180e9), ("cuda:0", 9e-6, 50e12)):
        for limit, dtype, work_, median in (("operation", "float32", {"ops": 500}, 500 * op_s),
                                            ("matmul", "float32", {"flops": 2 * 4096**3, "n": 4096}, 2 * 4096**3 / peak)):  # fmt: skip
            bench = copy.deepcopy(template)
            bench.update(group="limits", name=f"test_limits[{device}-{limit}-{dtype}]", params={"device": device,
                         "limit": limit, "dtype": dtype}, extra_info={"work": work_})  # fmt: skip
            bench["stats"].update(median=median, min=median)
            made.append(bench)
    order = {"limits": 0, "transfer": 1, "inference": 2, "train": 3}
    run["benchmarks"] = sorted(made + run["benchmarks"], key=lambda b: order[b["group"]])
    board = Board()
    for bench in run["benchmarks"]:
        extra = bench["extra_info"]
        if bench["group"] in ("train", "inference"):
            train = bench["group"] == "train"
            extra["work"] = {"flops_per_image": TRAIN_FLOPS if train else 464_880,
                             "ops_per_step": (142 if train else 12) if bench["params"]["device"] == "cpu" else 78}  # fmt: skip
            extra["pipeline_config"] = {
                "data": "dataloader" if bench["params"].get("pipeline") == "seed" else "resident"
            }
        board.add(bench["group"], bench["params"], extra, bench["stats"]["median"], bench["stats"]["min"])
    return run


def test_held_cases_are_valid_saved_runs_and_reach_the_report(tmp_path):
    run = _held_run()
    for i, bench in enumerate(run["benchmarks"]):
        assert benchmark_errors(bench, i) == [], bench["name"]
    frame = runs_to_frame([(tmp_path / "0001_held.json", run)])
    resident = frame[(frame["family"] == "train") & (frame["pipeline"] == "resident")].set_index(
        ["device", "batch_size"]
    )
    assert set(resident.loc["cpu", "binding"]) == {"arithmetic"}  # 0.41 s of arithmetic against 26 ms of operations
    assert set(resident.loc["cuda:0", "binding"]) == {"operations"}  # 0.42 s at 100: per-operation cost throughout
    assert resident.loc[("cuda:0", 100), "floor_multiple"] == pytest.approx(8.0 / (600 * 78 * 9e-6))
    assert {"binding", "floor_multiple", "achieved_flops_s", "peak_share", "limit_value"} <= set(CSV_COLUMNS)
    cross = figures.crossovers(figures.speedups(frame))
    predicted = report_limits.predicted(frame, cross).set_index(["family", "variant"])
    assert predicted.loc[("train", "resident"), "predicted"] == (
        "GPU faster from batch size 1,000 on (measured up to 10,000)"
    )
    assert predicted.loc[("train", "resident"), "measured"].startswith("GPU faster from batch size 1,000 on")
    table = report_limits.limits_table(frame).set_index("Device")
    assert table.loc["cuda:0", "Peak float32"] == "50 TFLOP/s" and table.loc["cuda:0", "An operation, eager"] == "9 µs"
    assert "h2d pageable: 10 µs + bytes at 20 GB/s" in table.loc["cuda:0", "Copies host-device (fitted)"]

    out = tmp_path / "report"
    write_report(frame, out)
    text = (out / "report.md").read_text()
    for heading in (
        "## The machine's limits",
        "## Each case against its limits",
        "## Crossover predicted from the limits",
    ):
        assert heading in text
    assert (out / "limits.png").stat().st_size > 0
    drawn = pd.read_csv(out / "limits.csv")
    assert {"train resident", "train seed"} <= set(drawn["series"]) and drawn["y"].gt(0).all()
    assert "bound by per-operation cost: 600 steps x 78 operations x 9 µs = 421 ms of its 8 s" in text.replace("\\", "")
    assert "Predicted from the limits, cuda:0 train resident: GPU faster from batch size 1,000 on" in text
    summary = pd.read_csv(out / "summary.csv")
    held = summary[summary["family"].isin(["train", "inference"])]
    assert held["binding"].notna().all() and held["floor_multiple"].gt(0).all()
    # A hand-picked median under its floor (the constructed GPU's batch of 1 in 12 operations x 9 us) is said so.
    assert "x (below its floor)" in text


def test_a_run_without_limits_says_so():
    old = json.loads((FIXTURES / "constructed_gpu_run.json").read_text())
    frame = runs_to_frame([(Path("0001_old.json"), old)])
    assert report_limits.limits_table(frame).empty and report_limits.held_table(frame).empty
    assert (
        report_limits.why(frame) == {}
        and report_limits.predicted(frame, figures.crossovers(figures.speedups(frame))).empty
    )


def test_the_end_of_run_answer_says_why_and_predicts_the_crossover():
    from bench.run.summary import end_summary

    lines = end_summary(_held_run(), width=None)
    text = "\n".join(lines)
    gpu = "  cuda:0: an operation 9 µs eager; peak float32 50 TFLOP/s; copies h2d pinned: 10 µs + bytes at 50 GB/s"
    assert gpu in text
    assert (
        "h2d pageable: 10 µs + bytes at 20 GB/s (half that from 195 KiB)" in text
    )  # the builder's 10 us + B / 20 GB/s
    assert "  cpu 64t: an operation 3 µs eager; peak float32 180 GFLOP/s; memory" in text  # no graph, no bfloat16
    assert (
        "At batch 100 cuda:0's resident epoch is bound by per-operation cost: 600 steps x 78 operations x 9 µs" in text
    )
    assert "At batch 1,000 cpu's resident epoch is bound by arithmetic: 73.3 GFLOP at a peak of 180 GFLOP/s" in text
    assert (
        "Predicted from the limits, cuda:0 train resident: GPU faster from batch size 1,000 on (measured up to "
        "10,000) (measured: GPU faster from batch size 1,000 on" in text
    )
