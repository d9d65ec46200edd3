"""A constructed fleet for the report's scale test and benchmark: copies of a committed run under other names.

Each machine is the committed constructed run (tests/fixtures/constructed_gpu_run.json, marked
"constructed, not measured" wherever it is shown) with its own name, host and GPU id, its CPU's
times scaled by one factor and its GPU's by another (so machines rank differently on each figure),
and each of its runs a day apart with a little noise. Nothing here is a measurement.

    python -m tests.fleet DIR --machines 1000 --runs 5       # build it
    python -m tests.fleet DIR --machines 1000 --runs 5 --time  # build it, then time the report: its first read,
                                                               # again with the cache warm, after one new run
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

SEED_RUN = Path(__file__).parent / "fixtures" / "constructed_gpu_run.json"
_TIMES = (
    "min",
    "max",
    "mean",
    "stddev",
    "median",
    "iqr",
    "q1",
    "q3",
    "ld15iqr",
    "hd15iqr",
    "total",
)


def factors(machines: int, seed: int = 0) -> list[tuple[float, float]]:
    """Each machine's (CPU, GPU) time factor: a spread of about 4x either way, fixed by the seed."""
    rng = np.random.default_rng(seed)
    return [(float(c), float(g)) for c, g in zip(rng.lognormal(0, 0.5, machines), rng.lognormal(0, 0.5, machines),
                                                   strict=True)]  # fmt: skip


def machine_run(
    base: dict, index: int, run: int, cpu: float, gpu: float, rng: np.random.Generator
) -> dict:
    out = copy.deepcopy(base)
    name = f"fleet-{index:04d}"
    info = out["machine_info"]
    info["node"] = f"node-{index:04d}"
    info["gpus"][0]["uuid"] = f"GPU-{index:08d}-0000-0000-0000-000000000000"
    ours = info["fmnist_bench"]
    ours["machine_key"] = f"{name}_Constructed-CPU-64-Core_NVIDIA-Constructed-GPU"
    ours["machine_name"] = name
    when = datetime(2026, 11, 1, tzinfo=timezone.utc) + timedelta(days=run, minutes=index % 1440)
    out["datetime"] = when.isoformat()
    for bench in out["benchmarks"]:
        scale = (cpu if bench["params"]["device"] == "cpu" else gpu) * float(rng.lognormal(0, 0.03))
        stats = bench["stats"]
        for key in _TIMES:
            if isinstance(stats.get(key), (int, float)):
                stats[key] *= scale
        stats["data"] = [t * scale for t in stats.get("data") or []]
        if stats.get("mean"):
            stats["ops"] = 1 / stats["mean"]
    return out


def make_fleet(folder: Path, machines: int, runs: int = 1, seed: int = 0) -> list[Path]:
    """`machines` x `runs` run files under folder/<machine key>/, as the suite saves them; their paths."""
    base = json.loads(SEED_RUN.read_text())
    rng = np.random.default_rng(seed + 1)
    written = []
    for index, (cpu, gpu) in enumerate(factors(machines, seed)):
        for run in range(runs):
            data = machine_run(base, index, run, cpu, gpu, rng)
            path = (
                folder
                / data["machine_info"]["fmnist_bench"]["machine_key"]
                / f"{run + 1:04d}_fleet.json"
            )
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(data))
            written.append(path)
    return written


def _time_report(folder: Path, out: Path) -> tuple[float, float]:
    """(seconds, peak memory in MB) of one `python -m bench report` of folder, in its own process."""
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "bench", "report", str(folder), "--out", str(out)],
                             stdout=subprocess.DEVNULL)  # fmt: skip
    _pid, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise SystemExit(f"the report failed ({child.returncode})")
    return seconds, usage.ru_maxrss / 1024  # Linux: kB


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fleet", description=__doc__.splitlines()[0]
    )
    parser.add_argument("folder", type=Path)
    parser.add_argument("--machines", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--time",
        action="store_true",
        help="then time the report: first read, and with the cache warm",
    )
    args = parser.parse_args(argv)
    if args.machines < 1 or args.runs < 1:
        parser.error("--machines and --runs must be at least 1")
    if args.folder.exists() and any(args.folder.iterdir()):
        parser.error(f"{args.folder}: not empty; the fleet is built into a new folder")
    start = time.perf_counter()
    files = make_fleet(args.folder, args.machines, args.runs)
    size = sum(p.stat().st_size for p in files)
    print(f"{len(files):,} run files ({size / 1e6:,.0f} MB) in {time.perf_counter() - start:.1f} s")
    if args.time:
        out = args.folder.parent / f"{args.folder.name}-report"
        for when in ("first read", "cache warm", "one new run"):
            if (
                when == "one new run"
            ):  # a machine's next run: its page and the rankings it moves are drawn again
                base = json.loads(SEED_RUN.read_text())
                cpu, gpu = factors(args.machines)[0]
                run = machine_run(base, 0, args.runs, cpu, gpu, np.random.default_rng(7))
                (files[0].parent / f"{args.runs + 1:04d}_fleet.json").write_text(json.dumps(run))
            seconds, peak = _time_report(args.folder, out)
            print(f"report, {when}: {seconds:.1f} s, peak memory {peak:,.0f} MB", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
