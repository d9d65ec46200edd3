"""The training step as CUDA graphs, combined with the ladder's other changes, and an energy cross-check.

    python -m bench check-gpu [--device cuda:0] [--batch-size 1000] [--rounds 7] [--images N]
                              [--variants A,B,...] [--run SAVED.json] [--json OUT.json]

(On the CPU, `--device cpu`, the graph variants are reported as not built, with the reason.)

Which pipeline is fastest on a GPU, and what limits it? The ladder's `cuda_graph` step is
resident plus one change; this check times it beside the combinations the ladder does not run
by default (a graph of the channels_last, bf16 or compiled step), in one process, their epochs
interleaved round by round, each epoch 1 of the same model (loss held to resident's within the
ladder's tolerance), then profiles one epoch of each for what the GPU did: how many operations
a step launches and what share of the epoch they kept the GPU busy.

On CUDA, the telemetry's cross-check: resident epochs observed by the suite's own telemetry,
with NVML's total-energy counter also read directly around the same epochs; the two energies
per epoch must agree within 10%. With `--run`, a saved run from the same machine: the fastest
combination against that run's `seed` epoch at this batch size (the issue's goal: at least
200x, under 20 ms at batch 1,000), and the run's resident energy and power beside these.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from dataclasses import replace
from pathlib import Path

from bench.check.energy import energy_here
from bench.check.harness import checked_inputs, write_figures
from bench.format import records as fmt

__all__ = ["DEFAULT_VARIANTS", "VARIANTS", "main", "run_figures", "variant_config"]

# name -> the changes on top of the cuda_graph step (resident + one CUDA graph per training step).
VARIANTS = {
    "resident": None,  # eager: the base every graph variant is measured against
    "cuda_graph": {},
    "cuda_graph+channels_last": {"memory_format": "channels_last"},
    "cuda_graph+bf16": {"precision": "bfloat16"},
    "cuda_graph+channels_last+bf16": {"memory_format": "channels_last", "precision": "bfloat16"},
    # cuDNN's own timing of its algorithms (torch.backends.cudnn.benchmark), on for the whole
    # process: cuDNN caches the plan it picked for a convolution's shapes whichever mode picked it,
    # so these run in a call of their own, never beside the variants above (not by default).
    "cuda_graph+cudnn_benchmark": {"cudnn_benchmark": True},
    "cuda_graph+channels_last+bf16+cudnn_benchmark": {
        "memory_format": "channels_last",
        "precision": "bfloat16",
        "cudnn_benchmark": True,
    },
    # Adam as one fused kernel (torch.optim.Adam(fused=True, capturable=True)) instead of its
    # multi-tensor ops: fewer operations a step, where the graph's epoch is bound by their count.
    "cuda_graph+fused_adam": {"fused_adam": True},
    "cuda_graph+compile": {"compile_mode": "default", "ragged": "recompiled, second graph"},
    "cuda_graph+compile+channels_last+bf16": {
        "compile_mode": "default",
        "memory_format": "channels_last",
        "precision": "bfloat16",
        "ragged": "recompiled, second graph",
    },
    "cuda_graph+compile+fused_adam": {
        "compile_mode": "default",
        "ragged": "recompiled, second graph",
        "fused_adam": True,
    },
}
# What a variant sets besides its TrainConfig: for the whole process (cuDNN's benchmark mode) or in
# place of the trainer's optimizer (a fused Adam).
_KNOBS = ("cudnn_benchmark", "fused_adam")


MAX_ROUNDS = 1000  # timed epochs per variant: 7 is the default, 1,000 already hours on a CPU


def _benchmarked(name: str) -> bool:
    """Whether a variant runs under cuDNN's benchmark mode."""
    return bool((VARIANTS[name] or {}).get("cudnn_benchmark"))


# What runs when --variants is not given: every variant but cuDNN's benchmarked ones.
DEFAULT_VARIANTS = tuple(name for name in VARIANTS if not _benchmarked(name))


def variant_config(name: str, device):
    """The TrainConfig a variant runs (the ladder's, with its changes)."""
    from fmnist_model.ladder import train_config

    changes = VARIANTS[name]
    if changes is None:
        return train_config(name, device)
    changes = {k: v for k, v in changes.items() if k not in _KNOBS}
    return replace(train_config("cuda_graph", device), **changes)


def run_figures(run: dict, device: str, batch_size: int) -> dict:
    """From a saved run: the train cases' median epoch and GPU energy per round on `device` at `batch_size`, by pipeline."""
    device = f"{device}:0" if device in ("cuda", "mps") else device  # as a run names it
    out = {}
    for case in fmt.read_run(run).cases():
        params, median = case.params or fmt.Params(), (case.stats or fmt.Stats()).median
        if case.group != "train" or params.device != device or params.batch_size != batch_size:
            continue
        if median is None:
            continue
        extra = case.extra
        telemetry = extra.telemetry or fmt.Telemetry()
        gpu = telemetry.gpu or fmt.GpuTelemetry()
        out[params.pipeline] = {
            "median_s": median,
            "images": extra.images,
            "energy_per_round_j": gpu.energy_per_round_j,
            "energy_reliable": gpu.energy_reliable,
            "mean_power_w": gpu.mean_power_w,
        }
    return out


def _context_lost(device) -> str | None:
    """On CUDA, the error a synchronize raises once the context is lost (an illegal address, a
    device-side assert: sticky, every later call fails), else None."""
    import torch

    if getattr(device, "type", device) != "cuda":
        return None
    try:
        torch.cuda.synchronize(device)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _no_baseline(seed_case: dict, device: str, batch_size: int, images: int) -> str | None:
    """Why a saved run's seed case cannot be this check's baseline (it is one only for an epoch
    of as many images at this batch size), or None when it can."""
    if not seed_case:
        return f"the run has no seed epoch on {device} at batch size {batch_size}"
    if seed_case.get("images") != images:
        return f"its seed epoch was {seed_case.get('images')} images, this check's {images}"
    return None


def _other_gpus(run: dict, device_name: str) -> str | None:
    """The saved run's GPU models when none of them is this one (the run is of another machine), else None."""
    info = fmt.read_run(run).machine_info or fmt.MachineInfo()
    names = sorted({g.name for g in info.gpus or [] if g.name})
    return ", ".join(names) if names and device_name not in names else None


def _quartiles(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return values[0], values[0]
    q = statistics.quantiles(values, n=4)
    return q[0], q[2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench check-gpu", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--device", default="cuda:0", help="cuda:N, or cpu to time resident alone (default: cuda:0)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=1000, help="training batch size (default: 1000)"
    )
    parser.add_argument(
        "--rounds", type=int, default=7, help="timed epochs per variant, interleaved (default: 7)"
    )
    parser.add_argument(
        "--variants",
        default=",".join(DEFAULT_VARIANTS),
        help="comma-separated, of: "
        + ", ".join(VARIANTS)
        + " (default: all but the cudnn_benchmark ones, "
        "which run only in a call of their own)",
    )
    parser.add_argument(
        "--images", type=int, help="train on the first N images (default: the whole split)"
    )
    parser.add_argument(
        "--run",
        type=Path,
        help="a saved run of this machine: the seed baseline and the energy check",
    )
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args(argv)
    names = [v for v in args.variants.split(",") if v]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown or not names:
        parser.error(
            f"--variants: unknown {', '.join(unknown) or '(none given)'}; expected some of {', '.join(VARIANTS)}"
        )
    if len({_benchmarked(name) for name in names}) > 1:
        parser.error(
            "--variants: the cudnn_benchmark variants run only in a call of their own: cuDNN keeps the plan "
            "it picked for a convolution's shapes whichever mode picked it, so in one process the first "
            "variant to meet a shape would decide the others' plans"
        )
    if args.batch_size < 1 or args.rounds < 1 or (args.images is not None and args.images < 1):
        parser.error("--batch-size, --rounds and --images must be positive")
    sizes = {"--batch-size": (args.batch_size, 60_000), "--rounds": (args.rounds, MAX_ROUNDS)}
    bounds = {**sizes, "--images": (args.images, 60_000)}
    run = checked_inputs(parser, bounds=bounds, json_path=args.json, run_path=args.run)

    import torch

    try:
        device = torch.device(args.device)
    except RuntimeError as exc:
        parser.error(f"--device {args.device}: {exc}")
    if device.type == "cuda" and not torch.cuda.is_available():
        print(
            f"bench.check.gpu: {args.device} asked for, and CUDA is not available here "
            "(--device cpu times the resident step alone and says why no graph is built)"
        )
        return 2

    before = torch.backends.cudnn.benchmark
    try:
        return _measure(args, names, run, device)
    finally:
        torch.backends.cudnn.benchmark = before


def _measure(args, names: list[str], run: dict | None, device) -> int:
    """Build, time, profile and compare the variants; print and save every figure."""
    import torch

    from bench.measure.breakdown import profile_epoch
    from bench.measure.clock import DeviceClock, timed_call
    from fmnist_model import load_split
    from fmnist_model.ladder import LOSS_TOLERANCE
    from fmnist_model.loops import LEARNING_RATE
    from fmnist_model.trainer import Trainer

    clock = DeviceClock(device)
    # Every variant is, or none (checked in main): cuDNN then times its algorithms from the first
    # convolution.
    if _benchmarked(names[0]):
        torch.backends.cudnn.benchmark = True
    split = load_split("auto", train=True, limit=args.images)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"{device_name}, torch {torch.__version__}, {split.name} data ({len(split):,} images), batch {args.batch_size}"
    )
    trainers, rows = {}, {}
    for name in names:
        config = variant_config(name, device)
        knobs = {k: v for k, v in (VARIANTS[name] or {}).items() if k in _KNOBS}
        try:
            trainer = Trainer(
                config,
                device,
                args.batch_size,
                dataset=split.dataset,
                images=split.images,
                labels=split.labels,
            )
            # Before prepare(): the graph captures this optimizer's step.
            if knobs.get("fused_adam"):
                trainer.optimizer = torch.optim.Adam(
                    trainer.model.parameters(), lr=LEARNING_RATE, capturable=True, fused=True
                )
            prepare_s, _ = timed_call(clock, trainer.prepare)
        # a variant that cannot be built is a finding, not the end of the check
        except Exception as exc:
            rows[name] = {"error": f"{type(exc).__name__}: {exc}"}
            print(f"  {name}: could not be built: {rows[name]['error']}", flush=True)
            continue
        trainers[name] = trainer
        rows[name] = {
            "config": config.record(),
            **knobs,
            "prepare_s": prepare_s,
            "times": [],
            "losses": [],
        }
        print(f"  {name}: prepared in {prepare_s:.2f} s", flush=True)

    summary: dict = {"device": device_name, "torch": torch.__version__, "dataset": split.name}

    unsaved: list[str] = []  # why --json could not be written last time, if it could not

    # After each stage: a variant that fails later loses nothing measured before it.
    def save() -> None:
        if args.json is None:
            return
        why = write_figures(args.json, {"summary": summary, "variants": rows})
        if why is None:
            unsaved.clear()
        # said once; tried again after each stage (a disk may have been freed meanwhile)
        elif not unsaved:
            print(
                f"bench.check.gpu: --json {args.json} could not be written ({why}): the figures are printed "
                "here, and it is tried again after each stage",
                file=sys.stderr,
                flush=True,
            )
            unsaved.append(why)

    def failed(name: str, stage: str, exc: Exception) -> None:
        rows[name]["error"] = f"{stage}: {type(exc).__name__}: {exc}"
        print(f"  {name}: failed in {rows[name]['error']}", flush=True)
        del trainers[name]
        lost = _context_lost(device)
        # a sticky CUDA error: every later call fails too, and would be blamed on its variant
        if lost:
            summary["context_lost"] = f"after {name} failed: {lost}"
            for other in list(trainers):  # what each measured before stands; it runs no more
                why = f"the CUDA context was lost {summary['context_lost']}"
                if rows[other]["times"]:
                    rows[other]["stopped"] = (
                        f"after {len(rows[other]['times'])} timed rounds: {why}"
                    )
                else:
                    rows[other]["error"] = f"not run further: {why}"
                del trainers[other]
            print(
                f"  the CUDA context was lost {summary['context_lost']}: nothing more can run",
                flush=True,
            )
        save()

    save()
    for r in range(args.rounds + 1):  # round 0 warms up every variant
        shift = r % max(len(trainers), 1)
        for name in list(trainers)[shift:] + list(trainers)[:shift]:
            if name not in trainers:  # dropped this round, with a lost CUDA context
                continue
            trainer = trainers[name]
            try:
                trainer.reset()
                seconds, result = timed_call(clock, trainer.epoch)
            except Exception as exc:
                failed(name, f"epoch {r}", exc)
                continue
            if r:
                rows[name]["times"].append(seconds)
                rows[name]["losses"].append(result.mean_loss)
    save()

    # Each variant's first timed epoch against resident's: the same first weights and order.
    measured = [name for name in names if rows[name].get("times") and "error" not in rows[name]]
    base_loss = rows["resident"]["losses"][0] if "resident" in measured else None
    for name in measured:
        row = rows[name]
        row["median_s"] = statistics.median(row["times"])
        q1, q3 = _quartiles(row["times"])
        row["iqr_share"] = (q3 - q1) / row["median_s"]
        row["loss"] = row["losses"][0]
        tolerance = LOSS_TOLERANCE[row["config"]["precision"]]
        row["loss_ok"] = (
            None if base_loss is None else (row["loss"] - base_loss) / base_loss <= tolerance
        )
        trainer = trainers.get(name)
        # stopped with the CUDA context: its rounds stand, it cannot be profiled
        if trainer is None:
            row["ops_per_step"] = row["busy_share"] = None
            continue
        try:
            trainer.reset()
            profiled = profile_epoch(
                clock, device, lambda trainer=trainer: trainer.epoch(annotate=True)
            )
        except Exception as exc:  # its timings stand; only the profile is missing
            row["profile_error"] = f"{type(exc).__name__}: {exc}"
            print(f"  {name}: its profiled epoch failed: {row['profile_error']}", flush=True)
            profiled = {"device_work": None}
        work = profiled["device_work"]
        row["profile"] = profiled
        row["ops_per_step"] = (
            work["ops"] / math.ceil(len(split) / args.batch_size) if work else None
        )
        row["busy_share"] = work.get("busy_share") if work else None
    save()

    seed = None
    figures = {}
    if run is not None:
        figures = run_figures(run, args.device, args.batch_size)
        seed_case = figures.get("seed") or {}
        why = _no_baseline(seed_case, args.device, args.batch_size, len(split))
        seed = summary["seed_baseline"] = None if why else seed_case["median_s"]
        if why:
            summary["seed_baseline_missing"] = why
            print(f"\n--run {args.run}: no seed baseline: {why}")
        other = _other_gpus(run, device_name) if device.type == "cuda" else None
        if other:
            print(f"--run {args.run}: its GPUs are {other}, not this {device_name}")

    print(
        f"\nEpoch of {len(split):,} images at batch {args.batch_size}, median of {args.rounds} interleaved rounds:"
    )
    print(
        f"{'variant':46} {'epoch':>10} {'IQR':>5} {'vs resident':>11} {'vs seed':>8} {'loss':>7} ok  ops/step busy"
    )
    resident_s = rows.get("resident", {}).get("median_s")
    for name in names:
        row = rows[name]
        if "error" in row:  # its error was printed when it happened
            said = (
                "not built"
                if "times" not in row
                else "not run"
                if row["error"].startswith("not run")
                else "failed"
            )
            print(f"{name:46} {said:>10}  (above)")
            continue
        vs_res = f"{resident_s / row['median_s']:.2f}x" if resident_s else "-"
        vs_seed = f"{seed / row['median_s']:.0f}x" if seed else "-"
        busy = f"{row['busy_share']:.0%}" if row["busy_share"] is not None else "-"
        ops = f"{row['ops_per_step']:.0f}" if row["ops_per_step"] is not None else "-"
        print(
            f"{name:46} {row['median_s'] * 1000:8.2f}ms {row['iqr_share']:5.0%} {vs_res:>11} {vs_seed:>8} "
            f"{row['loss']:7.4f} {'yes' if row['loss_ok'] else 'NO ' if row['loss_ok'] is False else ' - '} "
            f"{ops:>8} {busy:>4}"
            + (f"  ({len(row['times'])} rounds: stopped early)" if "stopped" in row else "")
        )
    ran = {n: r for n, r in rows.items() if "median_s" in r and r.get("loss_ok") is not False}
    summary["failed"] = {n: r["error"] for n, r in rows.items() if "error" in r}
    if ran:
        best = min(ran, key=lambda n: ran[n]["median_s"])
        summary["fastest"] = {"variant": best, "median_s": ran[best]["median_s"]}
        line = f"\nFastest that trains as well as resident: {best}, {ran[best]['median_s'] * 1000:.2f} ms an epoch"
        if seed:
            summary["fastest"]["vs_seed"] = seed / ran[best]["median_s"]
            line += f", {seed / ran[best]['median_s']:.0f}x the run's seed epoch ({seed:.2f} s)"
        print(line)
        top = ((ran[best].get("profile") or {}).get("device_work") or {}).get("top") or []
        if top:
            print("Its costliest GPU operations in the profiled epoch (count, total):")
            for op in top:
                print(f"  {op['count']:6d} {op['seconds'] * 1000:8.2f} ms  {op['name']}")

    if "resident" in trainers and device.type == "cuda":
        energy = energy_here(trainers["resident"], device, rows["resident"]["median_s"])
        run_case = figures.get("resident") or {}
        energy["run"] = {
            k: run_case.get(k) for k in ("energy_per_round_j", "mean_power_w", "median_s")
        }
        summary["energy"] = energy
        if energy.get("ratio") is not None:
            print(
                f"Energy per resident epoch, {energy['epochs']} epochs: the suite's telemetry {energy['telemetry_j']:.1f} J, "
                f"the counter read directly around the same epochs {energy['direct_j']:.1f} J: ratio {energy['ratio']:.3f}, "
                f"{'within' if energy['within'] else 'NOT within'} 10%; mean power {energy['mean_power_w']:.0f} W"
            )
        else:
            print(f"Energy per resident epoch: not compared ({energy.get('reason') or energy})")
        if run_case.get("energy_per_round_j") is not None:
            print(
                f"The saved run's resident case (other epochs, another process): {run_case['energy_per_round_j']:.1f} J "
                f"a round at {run_case['mean_power_w']:.0f} W, epochs of {run_case['median_s'] * 1000:.0f} ms"
            )
    save()
    if unsaved:
        print(
            f"bench.check.gpu: --json {args.json} was not written ({unsaved[0]}): the figures are the ones "
            "printed above",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
