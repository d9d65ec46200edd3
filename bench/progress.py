"""What the terminal says during and after a run: a line per finished case, then the answer on one screen."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

from .cost import format_seconds
from .derive import (
    BUILDS_ON,
    NOISY_IQR_SHARE,
    TRAIN_LADDER,
    crossover_says,
    faults_said,
    loglog_interp,
    seed_breakdown,
)
from .telemetry import OUTSIDE_SHARE

__all__ = ["case_headline", "cases", "end_summary", "fmt_time", "progress_line"]


def _variant(r: dict) -> str | None:
    """What a speedup pairs: a training pipeline, or an inference mode with its ladder step beyond inference_mode
    (as the report's variant): a channels_last pass is never compared with an inference_mode one."""
    p = r["params"]
    if r["group"] == "train":
        return p.get("pipeline")
    step = p.get("pipeline") or "inference_mode"
    return p.get("mode") if step == "inference_mode" else f"{p.get('mode')} {step}"


# A thread count "beats" torch's default only by more than this: less is within a run's noise.
_THREADS_MARGIN = 0.05


def cases(n: int) -> str:
    """'1 case', '2 cases'."""
    return f"{n} case" if n == 1 else f"{n} cases"


def fmt_time(seconds: float | None) -> str:
    """A measured time with 3 significant digits and a unit: 151 ms, 4.53 s, 20.4 µs."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    if seconds >= 1:
        return f"{seconds:.3g} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds * 1e6:.3g} µs"


def _stats(record: dict) -> dict:
    return record.get("stats") or {}


def _iqr_share(record: dict) -> float | None:
    stats = _stats(record)
    median, iqr = stats.get("median"), stats.get("iqr")
    return iqr / median if median and iqr is not None else None


def case_headline(record: dict, link_gbps: dict[str, float] | None = None) -> str:
    """One finished case's figure, as a person reads it: GB/s, time per epoch with loss, images/s with latency."""
    family, params, extra = record.get("group"), record.get("params") or {}, record.get("extra_info") or {}
    stats = _stats(record)
    median = stats.get("median")
    spread = _iqr_share(record)
    tail = f", IQR {spread:.0%}" if spread is not None and stats.get("rounds", 0) > 1 else ""
    tail += f", {stats.get('rounds')} round{'s' if stats.get('rounds') != 1 else ''}"
    if family == "transfer":
        gbps = extra.get("bytes", 0) / median / 1e9 if median else float("nan")
        link = (link_gbps or {}).get(params.get("device"))
        share = f" ({gbps / link:.0%} of the link)" if link and params.get("direction") != "h2h" else ""
        return f"{gbps:.3g} GB/s{share} in {fmt_time(median)}{tail}"
    if family == "train":
        return f"{fmt_time(median)} per epoch{tail}; loss {extra.get('loss', float('nan')):.3f}, accuracy {extra.get('accuracy', float('nan')):.1%}"
    if family == "inference":
        rate = extra.get("images", 0) / median if median else float("nan")
        latency = extra.get("latency") or {}
        lat = (
            f"; a batch p50 {fmt_time(latency['p50_s'])}, p99 {fmt_time(latency['p99_s'])} ({latency['samples']} timed)"
            if "p50_s" in latency
            else ""
        )
        return f"{rate:,.0f} images/s{lat}{tail}"
    return fmt_time(median)


def progress_line(
    done: int, total: int, name: str, text: str, elapsed_s: float, left_s: float | None, unknown: int
) -> str:
    """`[12/82] 1m05s, about 2m10s left | train cuda:0-1000-resident: 151 ms per epoch, ...`."""
    if left_s is None or (unknown and left_s < 1):
        left = "time left not yet known" + (f" ({cases(unknown)} not yet predictable)" if unknown else "")
    else:
        left = f"about {format_seconds(left_s)}{'+' if unknown else ''} left"
        if unknown:
            left += f" ({unknown} case{'s' if unknown != 1 else ''} not yet predictable)"
    width = len(str(total))
    return f"[{done:>{width}}/{total}] {format_seconds(elapsed_s)}, {left} | {name}: {text}"


def _rows(records: Sequence[dict], family: str) -> list[dict]:
    return [r for r in records if r.get("group") == family and (_stats(r).get("median") or 0) > 0]


def _cpu_choices(rows: list[dict], default_threads: int) -> dict[tuple, dict]:
    """Per (variant, batch size): the CPU's median at torch's default threads and at its best thread count."""
    out: dict[tuple, dict] = {}
    for r in rows:
        p = r["params"]
        if p.get("device") != "cpu":
            continue
        key = (_variant(r), p.get("batch_size"))
        slot = out.setdefault(key, {"default": None, "best": None, "best_threads": None})
        median = r["stats"]["median"]
        if p.get("cpu_threads", default_threads) == default_threads:
            slot["default"] = median
        if slot["best"] is None or median < slot["best"]:
            slot["best"], slot["best_threads"] = median, p.get("cpu_threads")
    return out


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _speedup_section(records: Sequence[dict], default_threads: int) -> list[str]:
    lines: list[str] = []
    crossings: list[str] = []
    for family in ("train", "inference"):
        rows = _rows(records, family)
        cpu = _cpu_choices(rows, default_threads)
        gpus = sorted({r["params"]["device"] for r in rows if r["params"].get("device") != "cpu"})
        for device in gpus:
            by_variant: dict[str, list[tuple[int, float | None, float | None]]] = defaultdict(list)
            for r in rows:
                p = r["params"]
                if p.get("device") != device:
                    continue
                choice = cpu.get((_variant(r), p.get("batch_size")))
                if not choice:
                    continue
                gpu = r["stats"]["median"]
                default = choice["default"] / gpu if choice["default"] else None
                best = choice["best"] / gpu if choice["best"] else None
                by_variant[_variant(r)].append((p.get("batch_size"), default, best))
            for variant, cells in sorted(by_variant.items()):
                cells.sort()
                text = "  ".join(f"{size:,}: {_x(d)} [{_x(b)}]" for size, d, b in cells)
                lines.append(f"  {device:<7} {family:<9} {variant:<10} {text}")
                best_cells = [(s, b) for s, _d, b in cells if b is not None]
                if best_cells:
                    said = crossover_says([s for s, _ in best_cells], [b for _, b in best_cells])
                    crossings.append(f"  {device} {family} {variant}: {said}")
    if not lines:
        return []
    return [
        f"GPU speedup over the CPU (CPU time / GPU time) at torch's default {default_threads} CPU threads; "
        "[in brackets] against the CPU's best thread count measured:",
        *lines,
        "Crossover: the smallest batch size from which the GPU is faster at every larger one, against the CPU's best:",
        *crossings,
    ]


def _threads_section(records: Sequence[dict], default_threads: int) -> list[str]:
    lines = []
    measured: set[int] = set()
    for family in ("inference", "train"):
        rows = _rows(records, family)
        counts = {r["params"].get("cpu_threads") for r in rows if r["params"].get("device") == "cpu"}
        if len(counts) < 2:
            continue
        measured |= counts
        by_variant: dict[str, list[str]] = defaultdict(list)
        # Only what ran at more than one count: a ladder step runs at torch's default alone.
        swept: dict[str | None, set] = defaultdict(set)
        for r in rows:
            if r["params"].get("device") == "cpu":
                swept[_variant(r)].add(r["params"].get("cpu_threads"))
        choices = sorted(_cpu_choices(rows, default_threads).items(), key=lambda kv: (str(kv[0][0]), kv[0][1]))
        for (variant, size), choice in choices:
            if len(swept[variant]) < 2:
                continue
            gain = choice["default"] / choice["best"] if choice["default"] and choice["best"] else 1.0
            if gain > 1 + _THREADS_MARGIN:
                best = choice["best_threads"]
                by_variant[variant].append(
                    f"batch {size:,}: {best} thread{'s' if best != 1 else ''}, {gain:.2f}x faster than {default_threads}"
                )
            else:
                by_variant.setdefault(variant, [])
        for variant, better in by_variant.items():
            said = (
                "; ".join(better)
                if better
                else f"no count beat torch's default {default_threads} by more than {_THREADS_MARGIN:.0%}"
            )
            lines.append(f"  {family:<9} {variant:<10} {said}")
    if not lines:
        return []
    return [
        f"The CPU by thread count ({', '.join(map(str, sorted(measured)))} measured), where another count beat "
        f"torch's default {default_threads} by more than {_THREADS_MARGIN:.0%}:",
        *lines,
    ]


def _breakdown_section(records: Sequence[dict], default_threads: int) -> list[str]:
    train = _rows(records, "train")
    copies = [
        r
        for r in _rows(records, "transfer")
        if (r["params"].get("direction"), r["params"].get("memory"), r["params"].get("dtype"))
        == ("h2d", "pageable", "float32")
    ]
    medians: dict[tuple, float] = {}
    images: dict[tuple, int] = {}
    for r in train:
        p = r["params"]
        if p.get("device") == "cpu" and p.get("cpu_threads", default_threads) != default_threads:
            continue
        medians[(p["device"], p["batch_size"], p["pipeline"])] = r["stats"]["median"]
        images[(p["device"], p["batch_size"])] = (r.get("extra_info") or {}).get("images") or 0
    lines = []
    for device, size in sorted({(d, s) for d, s, _ in medians}, key=lambda k: (k[0] != "cpu", k[0], k[1])):
        seed, resident = medians.get((device, size, "seed")), medians.get((device, size, "resident"))
        if seed is None or resident is None:
            continue
        n = images.get((device, size)) or size
        if device == "cpu":
            moving = 0.0
        else:
            mine = [r for r in copies if r["params"]["device"] == device]
            if not mine:
                moving = float("nan")
            else:
                per_batch = loglog_interp(
                    [r["params"]["size"] for r in mine], [r["stats"]["median"] for r in mine], min(size, n)
                )
                moving = per_batch * math.ceil(n / size)
        name = device if device != "cpu" else f"cpu-{default_threads}t"
        if resident + (moving if math.isfinite(moving) else 0.0) > seed:
            # The same training without the loading took longer than with it: noise, not a split.
            lines.append(
                f"  {name:<8} batch {size:>6,}: no split: the resident epoch ({fmt_time(resident)}) and the copies "
                f"took longer than the seed epoch ({fmt_time(seed)}), so one of them is noise"
            )
            continue
        parts = seed_breakdown(seed, resident, moving)
        share = {
            key: f"{fmt_time(value)} ({value / seed:.0%})" if math.isfinite(value) else "not measured"
            for key, value in parts.items()
        }
        if device == "cpu":
            share["transfer_s"] = "none (no copy on the CPU)"
        lines.append(
            f"  {name:<8} batch {size:>6,}: {fmt_time(seed)} = loading {share['loading_s']} + "
            f"transfer {share['transfer_s']} + compute {share['compute_s']}"
        )
    if not lines:
        return []
    return [
        "Where a seed epoch goes (compute: the resident epoch; transfer: its per-batch copies; loading: the rest):",
        *lines,
    ]


def _telemetry_flags(records: Sequence[dict]) -> list[str]:
    """The cases whose telemetry says the machine was not the benchmark's alone: a GPU throttled, other CPU work."""
    said = {
        "throttled": "with the GPU throttled (power or heat held its clocks down)",
        "busy": f"with the CPU busy with other work (over {OUTSIDE_SHARE:.0%} of it)",
    }
    out = []
    for flag, words in said.items():
        names = [
            r.get("name", "?")
            for r in records
            if flag in ((r.get("extra_info") or {}).get("telemetry") or {}).get("flags", [])
        ]
        if names:
            out.append(f"{len(names)} {words}: {', '.join(names[:3])}{', ...' if len(names) > 3 else ''}")
    return out


def _ladder_section(records: Sequence[dict], default_threads: int) -> list[str]:
    """Per device and batch size with more than the cheap steps: each step's epoch, its speedup over
    seed and over the step it builds on, and a loss above resident's by more than its tolerance."""

    rows: dict[tuple, dict[str, dict]] = defaultdict(dict)
    for r in _rows(records, "train"):
        p = r["params"]
        if p.get("device") == "cpu" and p.get("cpu_threads", default_threads) != default_threads:
            continue
        rows[(p["device"], p["batch_size"])][p.get("pipeline")] = r
    lines = []
    for (device, size), steps in sorted(rows.items(), key=lambda kv: (kv[0][0] != "cpu", kv[0])):
        if len(steps) < 3:
            continue
        seed = _stats(steps["seed"])["median"] if "seed" in steps else None
        resident = (steps.get("resident") or {}).get("extra_info", {}).get("loss")
        cells, worse, learned = [], [], []
        for name in [n for n in TRAIN_LADDER if n in steps]:
            median, extra = _stats(steps[name])["median"], steps[name].get("extra_info") or {}
            vs_seed = f" {seed / median:.2f}x" if seed else ""
            base = BUILDS_ON["train"].get(name)
            while base is not None and base not in steps:  # not run (--pipelines): the nearest that did
                base = BUILDS_ON["train"].get(base)
            vs_base = f" ({_stats(steps[base])['median'] / median:.2f}x over {base})" if base else ""
            faults = faults_said(((extra.get("telemetry") or {}).get("host") or {}).get("minor_faults_per_round"))
            cells.append(f"{name} {fmt_time(median)}{vs_seed}{vs_base}" + (f" [{faults}]" if faults else ""))
            tolerance = (extra.get("pipeline_config") or {}).get("loss_tolerance")
            if resident and tolerance is not None and (extra.get("loss", 0) - resident) / resident > tolerance:
                worse.append(f"{name} loss {extra.get('loss'):.3f} > resident {resident:.3f} + {tolerance:.0%}")
            else:
                learned.append(name)
        if not learned:
            continue
        # The fastest of the steps that trained as well as resident: a fast epoch that learns less is not a result.
        best = min(learned, key=lambda n: _stats(steps[n])["median"])
        name = device if device != "cpu" else f"cpu-{default_threads}t"
        gain = f", {seed / _stats(steps[best])['median']:.2f}x seed" if seed else ""
        lines.append(f"  {name:<8} batch {size:>6,}: fastest {best}{gain}")
        lines.append("    " + "; ".join(cells))
        if worse:
            lines.append("    learns less: " + "; ".join(worse))
    if not lines:
        return []
    return [
        "The ladder (epoch time, speedup over seed and over the step it builds on: what its one change buys):",
        *lines,
    ]


def end_summary(records: Sequence[dict], *, default_threads: int, run: dict) -> list[str]:
    """The answer for this machine on one screen: speedups, crossover, threads, the seed epoch, and the run's health."""
    lines: list[str] = []
    has_gpu = any((r.get("params") or {}).get("device") not in (None, "cpu") for r in records)
    has_cpu = any((r.get("params") or {}).get("device") == "cpu" for r in records)
    if has_gpu and has_cpu:
        lines += _speedup_section(records, default_threads)
    elif not has_gpu:
        lines.append("No GPU in this run: the CPU's figures only (no speedup to show).")
    else:
        lines.append("No CPU cases in this run: no speedup to show (run with --devices cpu,cuda:0 to compare).")
    lines += _threads_section(records, default_threads)
    lines += _breakdown_section(records, default_threads)
    lines += _ladder_section(records, default_threads)
    noisy = [
        r
        for r in records
        if (s := _iqr_share(r)) is not None and s > NOISY_IQR_SHARE and _stats(r).get("rounds", 0) > 1
    ]
    health = [f"{len(records)} of {cases(run.get('planned_cases', len(records)))} measured"]
    if noisy:
        health.append(f"{len(noisy)} noisy (IQR over {NOISY_IQR_SHARE:.0%} of the median)")
    health += _telemetry_flags(records)
    if run.get("failed"):
        health.append(f"{len(run['failed'])} failed and not saved: {', '.join(f['name'] for f in run['failed'][:3])}")
    if not run.get("complete", True):
        health.append(f"the run is incomplete: {run.get('ended') or 'not every planned case ran'}")
    lines.append("; ".join(health) + ".")
    return lines
