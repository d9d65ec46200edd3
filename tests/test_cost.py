"""The cost model: predicted wall times from measured round times, checked against runs whose wall time was measured."""

import json
from dataclasses import replace
from pathlib import Path

import pytest

from bench.format.names import FAMILIES
from bench.measure.plan import Budget
from bench.run.cost import case_cost, main, plan_cost
from bench.run.estimate import ASSUMED_OVERHEAD_S, Observation, Profile, observation
from tests.test_plan import make_plan

FIXTURES = Path(__file__).parent / "fixtures"
H100_FULL = FIXTURES / "h100-host" / "h100-host_full_cuda0_bs100-10000.json"
H100_QUICK = FIXTURES / "h100-host" / "h100-host_quick_cpu-cuda0.json"
VM_RUNS = sorted(
    Path(__file__).parent.parent.glob(
        "results/reference/vm_AMD-EPYC_no-gpu/*/[0-9][0-9][0-9][0-9]_*.json"
    )
)
VM_FULL_FORMAT1 = VM_RUNS[0]  # before budgets: fixed rounds, whole-epoch warm-up
VM_FULL_FORMAT2 = VM_RUNS[1]  # the default run with budgets, which recorded its own wall time


def load(path):
    return json.loads(Path(path).read_text())


# The pipelines that runs before the ladder (format 2) had: their plans are replayed with these.
BEFORE_LADDER = ("seed", "resident", "inference_mode")


def as_before_budgets(plan, rounds):
    """The plan as the suite ran before budgets: fixed rounds, a whole epoch or pass of warm-up, full passes."""
    budgets = {
        family: Budget(rounds.get(family, 1), 0.0, rounds.get(family, 1)) for family in FAMILIES
    }
    return replace(
        plan,
        budgets=budgets,
        warmup_batches=None,
        pass_batches=10**9,
        cpu_threads=(plan.default_threads,),
    )


def not_before_limits(unknown) -> bool:
    """Only the limits cases unknown: a run before format 6 had none of them to predict from."""
    return {c.family for c in unknown} <= {"limits"}


def test_an_observation_from_a_format_2_record_knows_its_overhead():
    record = {
        "group": "train",
        "params": {"device": "cpu", "cpu_threads": 4, "batch_size": 100, "pipeline": "seed"},
        "stats": {"median": 2.0, "total": 6.0},
        "extra_info": {"images": 60_000, "wall_s": 6.5, "warmup": {"seconds": 0.25}},
    }
    obs = observation(record)
    assert (obs.threads, obs.variant, obs.size, obs.round_s, obs.images) == (
        4,
        ("seed",),
        100,
        2.0,
        60_000,
    )
    assert obs.overhead_s == pytest.approx(0.25)  # 6.5 - 0.25 warm-up - 6.0 of rounds


def test_a_format_1_record_runs_at_torchs_default_threads_and_has_no_overhead():
    run = load(H100_QUICK)
    record = next(
        b for b in run["benchmarks"] if b["params"]["device"] == "cpu" and b["group"] == "train"
    )
    obs = observation(record, default_threads=16)
    assert obs.threads == 16 and obs.overhead_s is None and obs.images == 2000


def profile_of(*observations):
    profile = Profile()
    for obs in observations:
        profile.add(obs)
    return profile


def test_round_times_interpolate_in_log_log_and_scale_by_images():
    profile = profile_of(
        Observation("train", "cpu", 2, ("resident",), 100, 6.0, 60_000),
        Observation("train", "cpu", 2, ("resident",), 10_000, 0.6, 60_000),
    )
    params = {"device": "cpu", "cpu_threads": 2, "batch_size": 1000, "pipeline": "resident"}
    # Halfway in log between 100 and 10,000: the geometric mean of the two times.
    assert profile.round_s("train", params, 60_000) == (pytest.approx((6.0 * 0.6) ** 0.5), False)
    # A plan over a tenth of the images: a tenth of the time.
    exact = profile.round_s("train", {**params, "batch_size": 100}, 6_000)
    assert exact == (pytest.approx(0.6), False)
    assert profile.round_s("train", {**params, "batch_size": 100}, 60_000) == (6.0, True)
    # Nothing like it measured: no prediction rather than a guess.
    assert profile.round_s("train", {**params, "device": "cuda:0"}, 60_000) == (None, False)


def test_an_unmeasured_thread_count_takes_the_nearest_measured_one():
    profile = profile_of(
        Observation("inference", "cpu", 1, ("compute", "inference_mode"), 1, 0.1, 1000),
        Observation("inference", "cpu", 16, ("compute", "inference_mode"), 1, 1.6, 1000),
    )
    params = {"device": "cpu", "batch_size": 1, "mode": "compute"}
    assert profile.round_s("inference", {**params, "cpu_threads": 2}, 1000) == (
        pytest.approx(0.1),
        False,
    )
    assert profile.round_s("inference", {**params, "cpu_threads": 8}, 1000) == (
        pytest.approx(1.6),
        False,
    )


def test_a_case_costs_overhead_warmup_sample_and_its_budgeted_rounds():
    plan = make_plan(default_threads=2)
    profile = profile_of(
        Observation("train", "cpu", 2, ("seed",), 100, 3.0, 60_000, overhead_s=0.1),
        Observation(
            "inference", "cpu", 2, ("compute", "inference_mode"), 100, 0.2, 10_000, overhead_s=0.05
        ),
    )
    train = case_cost(
        plan,
        "train",
        {"device": "cpu", "cpu_threads": 2, "batch_size": 100, "pipeline": "seed"},
        profile,
    )
    # 3 rounds (min) of 3 s, a warm-up of 2 of the epoch's 600 batches, 0.1 s overhead.
    assert train.rounds == 3 and train.seconds == pytest.approx(0.1 + 3.0 * 2 / 600 + 3 * 3.0)
    inference = case_cost(
        plan,
        "inference",
        {"device": "cpu", "cpu_threads": 2, "batch_size": 100, "mode": "compute"},
        profile,
    )
    # A pass of 100 batches is 0.2 s: 3 rounds (0.5 s / 0.2 s); a 2-batch warm-up; a latency sample
    # of 2 ms batches until 0.25 s: 125 of them.
    assert inference.rounds == 3
    assert inference.seconds == pytest.approx(0.05 + 0.002 * 2 + 0.002 * 125 + 3 * 0.2)


def test_overhead_and_time_outside_cases_are_assumed_only_where_not_measured():
    plan = make_plan(default_threads=2)
    cost = plan_cost(plan, Profile())
    skips = [
        c for c in cost.cases if c.params.get("pipeline") == "cuda_graph"
    ]  # on the CPU: skips, free
    assert skips and all(c.seconds == 0 for c in skips)
    assert len(cost.unknown) == len(cost.cases) - len(skips) and not cost.outside_measured
    assert Profile().overhead_s("train") == (ASSUMED_OVERHEAD_S["train"], False)


# Wall times measured around real runs of the suite as it was before budgets (commit 5094e05),
# for the cases' own files: each run's README or the project's README.
@pytest.mark.parametrize(
    "path, options, rounds, measured_s",
    [
        # tests/fixtures/h100-host/README.md: the GPU-only run, 52 cases, 79 s on the H100 host.
        (
            H100_FULL,
            dict(devices=("cuda:0",), batch_sizes=(100, 1000, 10_000)),
            {"transfer": 30, "train": 3, "inference": 5},
            79,
        ),
        # Project README at 5094e05: the default run on the 2-core VM, 4 min 17 s.
        (
            VM_FULL_FORMAT1,
            dict(devices=("cpu",)),
            {"transfer": 30, "train": 3, "inference": 5},
            257,
        ),
    ],
    ids=["h100-host-gpu-full", "2-core-vm-full"],
)
def test_the_model_predicts_measured_runs_from_their_own_round_times(
    path, options, rounds, measured_s
):
    run = load(path)
    plan = as_before_budgets(
        make_plan(
            default_threads=run["machine_info"]["torch"]["threads"],
            pipelines=BEFORE_LADDER,
            **options,
        ),
        rounds,
    )
    cost = plan_cost(plan, Profile.from_runs([(str(path), run)]))
    assert not_before_limits(cost.unknown)
    assert cost.total_s == pytest.approx(measured_s, rel=0.10)


def test_the_model_predicts_a_budgeted_run_from_its_own_round_times():
    # Format 2 records the run's wall time: the model must account for every rule that spent it
    # (budgeted rounds, the 2-batch warm-up, the latency sample, bounded passes, both thread counts).
    run = load(VM_FULL_FORMAT2)
    ours = run["machine_info"]["fmnist_bench"]
    assert ours["run"]["complete"] and not ours["plan"]["quick"]
    plan = make_plan(
        default_threads=run["machine_info"]["torch"]["threads"], pipelines=BEFORE_LADDER
    )
    cost = plan_cost(plan, Profile.from_runs([(str(VM_FULL_FORMAT2), run)]))
    cases = [c for c in cost.cases if c.family != "limits"]
    assert len(cases) == len(run["benchmarks"]) and not_before_limits(cost.unknown)
    assert cost.outside_measured and all(
        v for f, v in cost.overhead_measured.items() if f != "limits"
    )
    assert cost.total_s == pytest.approx(ours["run"]["wall_s"], rel=0.10)
    walls = {
        (b["group"], tuple(b["params"].items())): b["extra_info"]["wall_s"]
        for b in run["benchmarks"]
    }
    for family in FAMILIES[
        1:
    ]:  # family by family, not only in total (the limits came with format 6)
        predicted = sum(c.seconds for c in cost.cases if c.family == family)
        measured = sum(w for (f, _), w in walls.items() if f == family)
        assert predicted == pytest.approx(measured, rel=0.15), family


def test_a_complete_full_run_outranks_newer_quick_and_stopped_runs():
    def run(date, median, *, quick=False, complete=True, outside=1.0):
        return {
            "datetime": date,
            "machine_info": {"torch": {"threads": 2}, "fmnist_bench": {"plan": {"quick": quick},
                             "run": {"complete": complete, "outside_cases_s": outside}}},
            "benchmarks": [{"group": "train", "params": {"device": "cpu", "cpu_threads": 2, "batch_size": 100,
                            "pipeline": "seed"}, "stats": {"median": median}, "extra_info": {"images": 60_000}}],
        }  # fmt: skip

    profile = Profile.from_runs(
        [
            ("full", run("2026-11-01", 3.0, outside=2.0)),
            ("quick, newer", run("2026-11-02", 99.0, quick=True, outside=0.5)),
            ("stopped, newer", run("2026-11-03", 50.0, complete=False, outside=40.0)),
        ]
    )
    params = {"device": "cpu", "cpu_threads": 2, "batch_size": 100, "pipeline": "seed"}
    assert profile.round_s("train", params, 60_000) == (3.0, True)
    assert profile.outside_s == 2.0  # a stopped run counts the case it cut short outside the cases


def test_the_cli_refuses_runs_of_several_machines(capsys):
    with pytest.raises(SystemExit):
        main([str(H100_QUICK), str(VM_FULL_FORMAT2)])
    assert "these runs are from 2 machines" in capsys.readouterr().err


def test_the_cli_estimates_the_h100_hosts_default_plan(capsys):
    assert main([str(H100_QUICK), str(H100_FULL)]) == 0
    out = capsys.readouterr().out
    assert "full plan on cpu, cuda:0 (torch's default 16 CPU threads), from 2 run(s):" in out
    assert "train" in out and "total" in out and "assumed" in out


def test_an_unmeasured_ladder_step_is_a_stated_multiple_of_a_measured_one_plus_its_compile():
    from bench.run.estimate import ASSUMED_PREPARE_S, ASSUMED_STEP

    plan = make_plan(devices=("cuda:0",), default_threads=16)
    profile = profile_of(
        Observation("train", "cuda:0", 16, ("resident",), 1000, 0.151, 60_000, overhead_s=0.0)
    )
    params = {"device": "cuda:0", "cpu_threads": 16, "batch_size": 1000}
    graph = case_cost(plan, "train", {**params, "pipeline": "cuda_graph"}, profile)
    base, ratio = ASSUMED_STEP["gpu"]["train"]["cuda_graph"]
    assert base == "resident" and not graph.exact
    round_s = 0.151 * ratio
    # Its rounds, a 2-batch warm-up, the capture, and the profiled epoch (batch 1,000 is the ladder's size).
    warm = round_s * 2 / 60
    expected = warm + graph.rounds * round_s + ASSUMED_PREPARE_S["cuda_graph"]["train"] + round_s
    assert graph.seconds == pytest.approx(expected)
    # Nothing to be a multiple of: not predictable, rather than a guess from nothing.
    assert case_cost(plan, "train", {**params, "pipeline": "seed"}, profile).seconds is None


def _profiled_seed(breakdown, wall_s=60.0):
    return {
        "group": "train",
        "params": {"device": "cuda:0", "cpu_threads": 16, "batch_size": 1000, "pipeline": "seed"},
        "stats": {"median": 5.6, "total": 16.8},
        "extra_info": {
            "images": 60_000,
            "wall_s": wall_s,
            "warmup": {"seconds": 0.2},
            "breakdown": breakdown,
        },
    }


def test_a_profile_costs_what_it_took_with_the_profilers_processing_scaled_to_the_images_profiled():
    # Saved since the profile's wall time: the case's overhead is what is left beside it.
    obs = observation(_profiled_seed({"epoch_s": 1.7, "wall_s": 37.0, "images": 10_000}))
    assert obs.profile_s == 37.0 and obs.overhead_s == pytest.approx(60.0 - 0.2 - 16.8 - 37.0)
    profile = profile_of(obs)
    params = {"device": "cuda:0", "cpu_threads": 16, "batch_size": 1000, "pipeline": "seed"}
    assert profile.profile_s("train", params, 3_000) == pytest.approx(37.0 * 0.3)
    plan = make_plan(devices=("cuda:0",))
    cost = case_cost(plan, "train", params, profile)
    rounds = cost.rounds * 5.6
    # overhead + a 2-batch warm-up + rounds + the DataLoader steps' 3,000-image profile
    assert cost.seconds == pytest.approx(obs.overhead_s + 2 * 5.6 / 60 + rounds + 37.0 * 0.3)
    # At batch size 10,000 (the ladder's size when it is the one swept) the profile is whole batches:
    # one batch of 10,000 images, not 3,000, as the suite runs it (measure.profile_size).
    assert make_plan(devices=("cuda:0",), batch_sizes=[10_000]).breakdown_for(10_000)
    asked = []
    profile.profile_s = lambda family, params, images: asked.append(images)
    case_cost(
        make_plan(devices=("cuda:0",), batch_sizes=[10_000]),
        "train",
        {**params, "batch_size": 10_000},
        profile,
    )
    assert asked == [10_000]


def test_an_older_run_without_the_profiles_wall_time_gives_the_cases_rest_to_its_profile():
    # The H100 host's GPU seed case of run 0004: epoch_s 1.7 s, but 37 s of the case outside its rounds.
    obs = observation(_profiled_seed({"epoch_s": 1.7, "images": 10_000}))
    assert obs.profile_s == pytest.approx(60.0 - 0.2 - 16.8) and obs.overhead_s is None
    unprofiled = observation(_profiled_seed(None))
    assert unprofiled.profile_s is None and unprofiled.overhead_s == pytest.approx(
        60.0 - 0.2 - 16.8
    )
