"""Option parsing and device availability: what is a usage error, what is a skip."""

import pytest
import torch

from bench.format.names import FAMILIES, FAMILY_AXES, case_id
from bench.measure.devices import available_devices, unavailable_reason
from bench.measure.parse import (
    parse_batch_sizes,
    parse_cpu_threads,
    parse_devices,
    parse_ladder,
    parse_pipelines,
    parse_warmup_batches,
)
from bench.measure.plan import (
    LIFTED_MAX_ROUNDS,
    Budget,
    plan_from_options,
)
from fmnist_model.ladder import INFERENCE_LADDER, TRAIN_LADDER


def make_plan(**kw):
    options = dict(
        devices=("cpu",),
        batch_sizes=None,
        quick=False,
        dataset="auto",
        data_root="data",
        download=False,
        dataset_name="synthetic",
        default_threads=16,
    )
    return plan_from_options(**{**options, **kw})


@pytest.mark.parametrize(
    "text, devices",
    [
        ("cpu", ("cpu",)),
        ("cpu,cuda:0", ("cpu", "cuda:0")),
        (" cpu , cuda ", ("cpu", "cuda:0")),  # bare cuda means cuda:0
        ("cuda,cuda:0,cuda:3", ("cuda:0", "cuda:3")),
        ("mps", ("mps",)),
    ],
)
def test_devices_parse(text, devices):
    assert parse_devices(text) == devices


@pytest.mark.parametrize(
    "text, bad",
    [("tpu", "'tpu'"), ("cuda:x", "'cuda:x'"), ("cpu,,cuda", "empty"), ("meta", "'meta'")],
)
def test_bad_device_names_the_value(text, bad):
    with pytest.raises(ValueError, match=bad):
        parse_devices(text)


def test_batch_sizes_parse():
    assert parse_batch_sizes("100, 1000,100") == (100, 1000)


@pytest.mark.parametrize(
    "text, bad", [("0", "'0'"), ("-5", "'-5'"), ("10,abc", "'abc'"), ("1.5", "'1.5'"), ("", "''")]
)
def test_bad_batch_size_names_the_value(text, bad):
    with pytest.raises(ValueError, match=f"{bad} is not a positive integer"):
        parse_batch_sizes(text)


def test_cpu_is_always_available():
    assert available_devices()[0] == "cpu"
    assert unavailable_reason("cpu") is None


def test_missing_cuda_says_why(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert "CUDA is not available" in unavailable_reason("cuda:0")
    assert "cuda:0" not in available_devices()


def test_a_gpu_index_the_machine_lacks_says_how_many_it_has(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert unavailable_reason("cuda:0") is None
    assert unavailable_reason("cuda:3") == "cuda:3: this machine has 1 CUDA device"
    assert available_devices()[:2] == ("cpu", "cuda:0")


def test_default_plan_is_the_issue_sweep():
    plan = make_plan()
    assert plan.batch_sizes("train") == (100, 1000, 10_000)
    assert plan.batch_sizes("inference") == (1, 10, 100, 1000, 10_000)
    assert plan.transfer_sizes == (1, 100, 1000, 10_000, 60_000)
    assert plan.train_images is None and plan.test_images is None  # whole splits
    assert plan.warmup_batches == 2 and plan.pass_batches == 1000


def test_quick_plan_is_small_and_batch_sizes_override_both_families():
    plan = make_plan(devices=None, batch_sizes=(64,), quick=True)
    assert plan.quick and {b.max_rounds for b in plan.budgets.values()} == {1}
    assert plan.batch_sizes("train") == plan.batch_sizes("inference") == (64,)
    assert plan.devices == available_devices()
    assert plan.summary()["train_batch_sizes"] == [64]
    with pytest.raises(ValueError, match="transfer"):
        plan.batch_sizes("transfer")


@pytest.mark.parametrize(
    "round_s, rounds",
    [
        (5.0, 3),  # a slow epoch: the minimum
        (0.2, 5),  # 1 s of budget / 0.2 s
        (0.001, 20),  # the ceiling
        (0.0, 3),  # no estimate: the minimum
        (float("nan"), 3),
    ],
)
def test_budget_is_pytest_benchmarks_rule_with_a_ceiling(round_s, rounds):
    assert Budget(min_rounds=3, max_time=1.0, max_rounds=20).rounds_for(round_s) == rounds


def test_cpu_threads_default_to_one_and_torchs_for_copies_and_inference_torchs_for_training():
    plan = make_plan()
    # The limits at every count a case is held against.
    assert (
        plan.threads_for("limits")
        == plan.threads_for("transfer")
        == plan.threads_for("inference")
        == (1, 16)
    )
    assert plan.threads_for("train") == (16,)
    assert make_plan(default_threads=1).threads_for("inference") == (1,)  # no duplicate case
    chosen = make_plan(cpu_threads=(1, 4, 16))
    assert all(chosen.threads_for(family) == (1, 4, 16) for family in FAMILIES)
    assert plan.summary()["cpu_threads"] == {
        "limits": [1, 16],
        "transfer": [1, 16],
        "inference": [1, 16],
        "train": [16],
    }


def test_the_case_matrix_sweeps_threads_on_the_cpu_only_and_names_every_axis():
    plan = make_plan(devices=("cpu", "cuda:0"))
    for family in FAMILIES:
        for case in plan.cases(family):
            assert tuple(case) == FAMILY_AXES[family]
    train = plan.cases("train")
    # cpu at torch's 16 threads, cuda:0: 3 batch sizes x seed and resident, and at 1,000 the
    # other steps of the ladder but the compiling ones (a CUDA graph on the CPU is in the
    # matrix, as a skip)
    train_steps = [p for p in TRAIN_LADDER if p not in ("compile", "compile_cuda_graph")]
    assert len(train) == 2 * (3 * 2 + len(train_steps) - 2)
    assert {c["cpu_threads"] for c in train if c["device"] == "cuda:0"} == {16}
    assert [
        c["pipeline"] for c in train if c["device"] == "cpu" and c["batch_size"] == 1000
    ] == train_steps
    inference = plan.cases("inference")
    # two thread counts x 5 batch sizes x 2 modes under inference_mode, and the other steps but
    # compile at batch 1,000, compute, torch's threads
    inference_steps = len(INFERENCE_LADDER) - 1
    assert len([c for c in inference if c["device"] == "cpu"]) == 2 * 5 * 2 + inference_steps - 1
    assert len([c for c in inference if c["device"] == "cuda:0"]) == 5 * 2 + inference_steps - 1
    ladder = [c for c in inference if c["pipeline"] != "inference_mode"]
    assert {(c["batch_size"], c["mode"], c["cpu_threads"]) for c in ladder} == {
        (1000, "compute", 16)
    }
    transfer = plan.cases("transfer")
    assert {(c["direction"], c["memory"]) for c in transfer if c["device"] == "cpu"} == {
        ("h2h", "pageable")
    }
    assert len([c for c in transfer if c["device"] == "cuda:0"]) == 4 * 5 * 2


def test_case_ids_show_threads_on_the_cpu_only():
    assert (
        case_id({"device": "cpu", "cpu_threads": 4, "batch_size": 100, "pipeline": "seed"})
        == "cpu-4t-100-seed"
    )
    assert (
        case_id({"device": "cuda:0", "cpu_threads": 16, "batch_size": 100, "mode": "compute"})
        == "cuda:0-100-compute"
    )


def test_cpu_threads_parse_with_the_word_default():
    assert parse_cpu_threads("1, default,4,1", default_threads=16, cpus=16) == (1, 16, 4)
    for bad, cpus, message in [
        ("0", 16, "'0' is not a positive integer or default"),
        ("١٠", 16, "is not a positive integer"),  # digits, but not ASCII ones
        ("9" * 30, 16, "is not a positive integer"),  # past what an int of any machine holds
        ("2000", 1000, "'2000' is more than 1,024"),  # the absolute bound
        ("9", 2, r"'9' is more than 8 \(4 threads for each of this machine's 2 CPUs\)"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_cpu_threads(bad, default_threads=2, cpus=cpus)


def test_warmup_batches_parse():
    assert parse_warmup_batches("3") == 3 and parse_warmup_batches(" all ") is None
    for bad in ("0", "-1", "2,3", "lots"):
        with pytest.raises(ValueError, match="is not a positive integer or all"):
            parse_warmup_batches(bad)


def test_pytest_benchmark_round_options_replace_every_familys_budget():
    plan = make_plan(min_rounds=7)
    assert {b.min_rounds for b in plan.budgets.values()} == {7}
    assert plan.budgets["train"].max_time == 1.0  # untouched
    plan = make_plan(max_time=30.0)
    assert {b.max_time for b in plan.budgets.values()} == {30.0}
    # The time asked for rules: the ceiling is lifted.
    assert {b.max_rounds for b in plan.budgets.values()} == {LIFTED_MAX_ROUNDS}
    assert make_plan(min_rounds=500).budgets["train"].max_rounds == 500


def test_pipelines_parse_names_of_either_ladder_and_refuse_others():
    assert parse_pipelines("seed, compile,seed") == ("seed", "compile")
    assert parse_pipelines("all") == tuple(dict.fromkeys(TRAIN_LADDER + INFERENCE_LADDER))
    with pytest.raises(
        ValueError, match="'fast' is not a pipeline: expected all, or some of seed, loader"
    ):
        parse_pipelines("seed,fast")
    with pytest.raises(ValueError, match="'all' stands alone"):
        parse_pipelines("all,seed")
    assert parse_ladder("full") == "full"
    with pytest.raises(ValueError, match="'everything' is not a ladder: expected default or full"):
        parse_ladder("everything")


def test_the_full_ladder_is_the_cross_product_and_pipelines_filter_both_families():
    full = make_plan(ladder="full", pipelines=parse_pipelines("all"))
    train = full.cases("train")
    assert len(train) == 3 * len(TRAIN_LADDER)
    assert len(full.cases("inference")) == 2 * 5 * 2 * len(
        INFERENCE_LADDER
    )  # threads x sizes x modes x steps
    only = make_plan(pipelines=("seed", "compile"))
    assert {(c["batch_size"], c["pipeline"]) for c in only.cases("train")} == {
        (100, "seed"), (1000, "seed"), (10_000, "seed"), (1000, "compile")
    }  # fmt: skip
    assert {c["pipeline"] for c in only.cases("inference")} == {"compile"}
    assert (
        make_plan(pipelines=("seed",)).cases("inference") == []
    )  # no inference step named: none of it


def test_the_ladder_runs_at_the_swept_size_nearest_1000_and_compiling_steps_only_when_asked():
    assert make_plan(batch_sizes=(64, 512, 4096)).ladder_batch_sizes("train") == (512,)
    plan = make_plan()
    assert plan.breakdown_for(1000) and not plan.breakdown_for(100)
    compiling = {"compile", "compile_cuda_graph"}
    for quick in (False, True):
        default = make_plan(quick=quick, devices=("cpu", "cuda:0"))
        assert not compiling & {
            c["pipeline"] for family in ("train", "inference") for c in default.cases(family)
        }
        asked = make_plan(quick=quick, devices=("cpu", "cuda:0"), pipelines=parse_pipelines("all"))
        assert compiling <= {c["pipeline"] for c in asked.cases("train")}
    assert "compile" in {
        c["pipeline"] for c in make_plan(quick=True, pipelines=("compile",)).cases("train")
    }


def test_every_stage_asks_one_table_of_device_kinds():
    from bench.format.devices import KINDS, device_kind, is_accelerator
    from bench.measure.plan import Plan
    from fmnist_model.ladder import unsupported_reason

    plan = Plan(devices=tuple(f"{k}:0" if KINDS[k].indexed else k for k in KINDS), dataset_name="synthetic",
                default_threads=2)  # fmt: skip
    routes = {(c["device"], c["direction"], c["memory"]) for c in plan.cases("transfer")}
    for name, kind in KINDS.items():
        device = f"{name}:0" if kind.indexed else name
        assert {(d, m) for dev, d, m in routes if dev == device} == set(kind.routes)
        limits = {c["limit"] for c in plan.cases("limits") if c["device"] == device}
        assert ("operation_graph" in limits) == kind.graphs and (
            "device_copy" in limits
        ) == kind.own_memory
        assert (unsupported_reason("cuda_graph", device) is None) == kind.graphs
        assert is_accelerator(device) == (not kind.host) and device_kind(device) is kind
    assert parse_devices("cuda") == ("cuda:0",) and parse_devices("mps") == ("mps",)
    with pytest.raises(ValueError, match="expected cpu, cuda, cuda:N, mps"):
        parse_devices("tpu")
    with pytest.raises(ValueError, match="is not a device this suite measures"):
        device_kind("tpu:0")
