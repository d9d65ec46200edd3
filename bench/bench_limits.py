"""Limits family: what this device can do at most, measured in the run: an operation's fixed cost, arithmetic peak, bandwidth."""

from __future__ import annotations

from bench.measure import limit_work
from bench.measure.guard import skip_on_out_of_memory
from bench.measure.rounds import run_rounds

FAMILY = "limits"


def test_limits(benchmark, plan, clock, telemetry, device, cpu_threads, limit, dtype):
    """operation: a chain of small in-place multiplies, back to back, timed per operation: what Python, the
    dispatcher and a launch cost each operation a step runs (eager). operation_graph: the same chain
    replayed from one CUDA graph (what a launch costs when the CPU is out of the way). matmul: one
    square matrix product in `dtype`, large enough to reach the device's peak (FLOP/s). device_copy:
    one copy of 1 GiB within the device's memory (bytes copied per second; the CPU's own is the
    transfer family's host-to-host copy). bench/analysis/limits.py turns each into its figure and
    holds every training and inference case of the run against them."""
    benchmark.group = FAMILY
    with skip_on_out_of_memory(device, f"the {limit} case"):
        if limit in ("operation", "operation_graph"):
            target, work = limit_work.operations_target(device, graph=limit == "operation_graph")
        elif limit == "matmul":
            target, work = limit_work.matmul_target(device, dtype, clock)
        elif limit == "device_copy":
            target, work = limit_work.copy_target(device)
        else:
            raise ValueError(f"unknown limit {limit!r}")
        benchmark.extra_info["work"] = work
        # Warm-up: one round (the first launches, the graph's first replay); its time estimates a
        # round.
        run_rounds(
            benchmark,
            clock,
            plan.budgets[FAMILY],
            telemetry=telemetry,
            target=target,
            warmup=target,
            scale=1.0,
            warmup_record={"rounds": 1},
        )
