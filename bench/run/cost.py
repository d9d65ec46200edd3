"""A plan's cost, case by case and in total, from a machine's profile; and python -m bench cost RUN.json...

How long a run with these options will take on a machine, from its saved runs, before running it.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.analysis.words import format_seconds
from bench.format import records as fmt
from bench.format.schema import run_errors
from bench.format.store import NotARunFile, read_json
from bench.measure.parse import parse_batch_sizes, parse_cpu_threads, parse_devices
from bench.measure.plan import FAMILIES, Plan, plan_from_options
from bench.measure.rounds import profile_size
from bench.run.estimate import SPLIT_IMAGES, Profile, machine_of
from fmnist_model.ladder import loader_workers, train_config, unsupported_reason

__all__ = ["CaseCost", "PlanCost", "case_cost", "describe", "main", "plan_cost", "round_images"]


def round_images(plan: Plan, family: str, params: dict) -> int | None:
    """Images per round of a case under `plan` (None for copies): a model's own bounded epoch and pass where
    the case names one (--model)."""
    model = plan.model(params.get("model"))
    train = model.train_images if model is not None else None
    test = model.test_images if model is not None else None
    if family == "train":
        return min(train or plan.train_images or SPLIT_IMAGES["train"], SPLIT_IMAGES["train"])
    if family == "inference":
        split = min(
            test or plan.test_images or SPLIT_IMAGES["inference"], SPLIT_IMAGES["inference"]
        )
        return min(split, params["batch_size"] * plan.pass_batches)
    return None


@dataclass(frozen=True)
class CaseCost:
    family: str
    params: dict
    seconds: float | None  # None: nothing like it was measured
    rounds: int | None
    exact: bool  # predicted from this very case's own measurement


def case_cost(plan: Plan, family: str, params: dict, profile: Profile) -> CaseCost:
    """One case's predicted wall time: overhead + warm-up + (inference) latency sample + rounds."""
    pipeline = params.get("pipeline")
    if pipeline is not None and unsupported_reason(pipeline, params["device"]) is not None:
        return CaseCost(family, params, 0.0, 0, True)  # a skip that says why: it costs nothing
    images = round_images(plan, family, params)
    # The profile knows a model by its label (its name, input shape and classes: resnet18 at 3x64x64 is
    # another workload than at 3x224x224), the case by its name.
    model = plan.model(params.get("model"))
    said = params if model is None else {**params, "model": model.label}
    round_s, exact = profile.round_s(family, said, images, loader_workers(plan.default_threads))
    if round_s is None:
        return CaseCost(family, params, None, None, False)
    budget = plan.budgets[family]
    rounds = budget.rounds_for(round_s)
    overhead, _ = profile.overhead_s(family, said)
    if family == "transfer":
        warm, sample = 2 * round_s, 0.0  # two copies, the second one the estimate
    elif family == "limits":
        # One round of warm-up; a matrix product's side is doubled up to it first (1/8 of its time a
        # step down).
        warm, sample = round_s * (2.15 if params.get("limit") == "matmul" else 1.0), 0.0
    else:
        batches = math.ceil(images / params["batch_size"])
        per_batch = round_s / batches
        full, rest = divmod(images, params["batch_size"])
        warm_batches = full + (1 if rest else 0)
        if plan.warmup_batches is not None and plan.warmup_batches < full:
            warm_batches = plan.warmup_batches + (1 if rest else 0)
        warm = per_batch * warm_batches
        sample = 0.0
        if family == "inference" and batches > 1:
            lat = plan.latency
            n = min(lat.max_batches, max(lat.min_batches, math.ceil(lat.max_time / per_batch)))
            sample = n * per_batch
    # The ladder's extras: compiling or capturing its shapes, and (train) one profiled epoch.
    extras = profile.prepare_s(family, said)
    if family == "train" and plan.breakdown_for(
        params["batch_size"], plan.model(params.get("model"))
    ):
        loader = train_config(pipeline, params["device"]).data == "dataloader"
        profiled = profile_size(
            images,
            params["batch_size"],
            plan.profile_loader_images if loader else plan.profile_images,
        )
        measured = profile.profile_s(family, said, profiled)
        extras += measured if measured is not None else round_s  # unmeasured: about a round
    return CaseCost(
        family, params, overhead + warm + sample + rounds * round_s + extras, rounds, exact
    )


@dataclass(frozen=True)
class PlanCost:
    cases: list[CaseCost]
    outside_s: float
    outside_measured: bool
    overhead_measured: dict[str, bool]

    @property
    def known_s(self) -> float:
        return sum(c.seconds for c in self.cases if c.seconds is not None)

    @property
    def unknown(self) -> list[CaseCost]:
        return [c for c in self.cases if c.seconds is None]

    @property
    def total_s(self) -> float:
        return self.outside_s + self.known_s

    def by_family(self) -> dict[str, tuple[int, float, int]]:
        """family -> (cases, predicted seconds of the known ones, cases with no prediction)."""
        out = {}
        for family in FAMILIES:
            mine = [c for c in self.cases if c.family == family]
            if mine:
                out[family] = (
                    len(mine),
                    sum(c.seconds for c in mine if c.seconds is not None),
                    sum(c.seconds is None for c in mine),
                )
        return out


def plan_cost(plan: Plan, profile: Profile) -> PlanCost:
    """Every case of `plan`, predicted from `profile`, plus the run's start (imports, data, weights)."""
    cases = [
        case_cost(plan, family, params, profile)
        for family in FAMILIES
        for params in plan.cases(family)
    ]
    measured = {family: profile.overhead_s(family)[1] for family in FAMILIES}
    return PlanCost(cases, *profile.outside(), measured)


def describe(cost: PlanCost) -> list[str]:
    """The estimate as lines of text: per family, the total, and what was assumed rather than measured."""
    lines = []
    for family, (count, seconds, unknown) in cost.by_family().items():
        rest = f" (+{unknown} not predictable: nothing like them measured)" if unknown else ""
        lines.append(f"  {family:<10} {count:>4} cases  {format_seconds(seconds):>7}{rest}")
    how = "measured" if cost.outside_measured else "assumed"
    lines.append(
        f"  {'outside':<10} {'':>10}  {format_seconds(cost.outside_s):>7} ({how}: imports, data, weights, saving)"
    )
    lines.append(f"  {'total':<10} {len(cost.cases):>4} cases  {format_seconds(cost.total_s):>7}")
    assumed = [family for family, measured in cost.overhead_measured.items() if not measured]
    if assumed:
        lines.append(f"  per-case overhead assumed, not measured, for: {', '.join(assumed)}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench cost",
        description="Predict how long a plan takes on a machine, from saved runs of that machine.",
    )
    parser.add_argument(
        "runs", nargs="+", type=Path, help="saved runs of the machine (pytest-benchmark JSON)"
    )
    parser.add_argument("--devices", help="as for pytest bench (default: the devices in the runs)")
    parser.add_argument("--batch-sizes", help="as for pytest bench")
    parser.add_argument("--cpu-threads", help="as for pytest bench")
    parser.add_argument("--quick", action="store_true", help="the quick plan")
    args = parser.parse_args(argv)
    runs = []
    for path in args.runs:  # each checked before any estimate: a FIFO or a device is refused unread
        try:
            run, _replaced = read_json(path)
        except NotARunFile as exc:
            parser.error(f"{path}: not a readable saved run: {exc}")
        errors = run_errors(run)
        if errors or not fmt.read_run(run).cases():
            parser.error(
                f"{path}: not a saved run of fmnist-bench: {'; '.join(errors[:2]) or 'no case of its families'}"
            )
        runs.append((str(path), run))
    machines = sorted({machine_of(run) for _, run in runs})
    if len(machines) > 1:
        parser.error(
            f"these runs are from {len(machines)} machines ({', '.join(machines)}): give one machine's runs"
        )
    runs.sort(key=lambda item: str(fmt.read_run(item[1]).datetime or ""))
    profile = Profile.from_runs(runs)
    default_threads = next(
        (t for _, run in reversed(runs) if (t := fmt.read_run(run).default_threads)), None
    )
    try:
        devices = (
            parse_devices(args.devices)
            if args.devices
            else tuple(dict.fromkeys(o.device for o in profile.observations.values()))
        )
        batch_sizes = parse_batch_sizes(args.batch_sizes) if args.batch_sizes else None
        # The machine of the runs, not this one: its CPUs are about torch's default count there.
        threads = (
            parse_cpu_threads(args.cpu_threads, default_threads or 1, cpus=default_threads)
            if args.cpu_threads
            else None
        )
    except ValueError as exc:
        parser.error(str(exc))
    plan = plan_from_options(
        devices=devices,
        batch_sizes=batch_sizes,
        quick=args.quick,
        dataset="synthetic",
        data_root="data",
        download=False,
        dataset_name="synthetic",
        default_threads=default_threads,
        cpu_threads=threads,
    )
    cost = plan_cost(plan, profile)
    print(
        f"{'quick' if plan.quick else 'full'} plan on {', '.join(plan.devices)} (torch's default {plan.default_threads} CPU threads), from {len(runs)} run(s):"
    )
    print("\n".join(describe(cost)))
    inexact = sum(1 for c in cost.cases if c.seconds is not None and not c.exact)
    if inexact:
        print(
            f"  {inexact} of {len(cost.cases)} cases interpolated (batch size, thread count or images per round not measured as such)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
