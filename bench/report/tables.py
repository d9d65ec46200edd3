"""Figures to tables a person reads: human headers with units, one cell per measured figure, its marks beside it."""

from __future__ import annotations

import pandas as pd

from bench.analysis.cells import (
    ONE_ROUND,
    PARTIAL,
    RUN_KIND,
    device_label,
    fmt_seconds,
    marks,
)
from bench.analysis.intervals import interval_said
from bench.analysis.words import faults_said, flops_said, fmt_time

__all__ = [
    "breakdown_table",
    "by_model_table",
    "crossover_table",
    "inference_table",
    "pivot",
    "spread",
    "speedup_table",
    "threads_table",
    "train_table",
    "transfer_table",
]


def _threads(count) -> str:
    return "" if pd.isna(count) else f"{count}t"


def _differs(a, b) -> bool:
    """Two thread counts known to differ (an unknown count differs from nothing)."""
    return pd.notna(a) and pd.notna(b) and a != b


def _run(frame: pd.DataFrame) -> pd.Series:
    """full, or quick with the subset it timed: a quick epoch is another quantity, so it is named as one."""
    images = frame["images"].astype("Int64").astype("string")
    quick = frame["quick"].astype(bool)
    return pd.Series(
        [
            f"quick ({int(i):,} images)" if q and pd.notna(i) else RUN_KIND[bool(q)]
            for q, i in zip(quick, images, strict=True)
        ],
        index=frame.index,
    )


def spread(
    cells: pd.DataFrame,
    index: dict[str, str],
    column: str = "batch_size",
    header: str = "Batch",
    sort: bool = True,
) -> pd.DataFrame:
    """cells' "cell" column spread to one column per value of `column` ("Batch 1,000"), in order of that value;
    one row per `index` (column -> header), in their order when `sort` is false."""
    table = cells.pivot_table(
        index=list(index), columns=column, values="cell", aggfunc="first", sort=sort
    )
    table = table[sorted(table.columns)]
    table.columns = [f"{header} {c:,}" for c in table.columns]
    return table.reset_index().fillna("").rename(columns=index)


def pivot(
    frame: pd.DataFrame, index: dict[str, str], column: str, header: str, cell
) -> pd.DataFrame:
    """One row per `index` (column -> header), one column per value of `column` ("Batch 100"), cells from `cell`."""
    if frame.empty:
        return pd.DataFrame()
    frame = frame.sort_values(["label", "device", "cpu_threads", "quick", column], kind="stable")
    frame = frame.assign(
        Machine=frame["label"],
        device=device_label(frame),
        run=_run(frame) if frame["family"].iloc[0] != "transfer" else frame["quick"].map(RUN_KIND),
        cell=[cell(r) for r in frame.itertuples()],
    )
    return spread(frame, {"Machine": "Machine", **index}, column, header, sort=False)


def train_table(frame: pd.DataFrame) -> pd.DataFrame:
    rows = frame[frame["family"] == "train"]
    return pivot(
        rows,
        {"device": "Device", "pipeline": "Pipeline", "run": "Run"},
        "batch_size",
        "Batch",
        lambda r: (
            fmt_seconds(r.median) + ("" if r.one_round else f", IQR {r.iqr_share:.0%}") + marks(r)
        ),
    )


def inference_table(frame: pd.DataFrame) -> pd.DataFrame:
    rows = frame[frame["family"] == "inference"]

    def cell(r):
        if pd.notna(r.latency_p50_ms) and pd.notna(r.latency_p99_ms):
            # The sample size beside the percentiles: a p99 of 20 batches is close to their maximum.
            n = f", n={r.latency_samples}" if pd.notna(r.latency_samples) else ""
            latency = f"p50 {r.latency_p50_ms:.3g} ms, p99 {r.latency_p99_ms:.3g} ms{n}"
        else:
            latency = f"{r.latency_ms:.3g} ms/batch mean"
        return f"{r.images_per_s:,.0f} img/s; {latency}" + marks(r)

    return pivot(
        rows,
        {"device": "Device", "variant": "Mode and step", "run": "Run"},
        "batch_size",
        "Batch",
        cell,
    )


def transfer_table(frame: pd.DataFrame) -> pd.DataFrame:
    rows = frame[frame["family"] == "transfer"]

    def cell(r):
        share = f" ({r.link_share:.0%} of link)" if pd.notna(r.link_share) else ""
        return f"{r.gbps:.3g} GB/s{share}" + marks(r)

    index = {
        "device": "Device",
        "direction": "Direction",
        "memory": "Host memory",
        "dtype": "Data type",
        "run": "Run",
    }
    return pivot(rows, index, "size", "Images", cell)


def _speed_cell(r) -> str:
    # Each ratio with its 95% interval (bench/analysis/intervals.py); a one-round figure is marked
    # below instead.
    text = (
        interval_said(r.speedup, r.speedup_low, r.speedup_high, no_interval="")
        if pd.notna(r.speedup)
        else "-"
    )
    if pd.isna(r.speedup) or _differs(r.best_cpu_threads, r.default_threads):
        best = interval_said(r.speedup_vs_best_cpu, r.vs_best_low, r.vs_best_high, no_interval="")
        text += f" [{best} vs {_threads(r.best_cpu_threads)}]"
    return text + marks(r) + (PARTIAL if r.partial else "")


# The columns of a case held against the CPU at torch's default thread count, after the machine's.
_AGAINST_THE_CPU = {
    "cpu_default": "CPU threads (default)",
    "family": "Family",
    "variant": "Variant",
    "run": "Run",
}


def _against_the_cpu(rows: pd.DataFrame, cell) -> pd.DataFrame:
    """`rows` with their cell (`cell` of each), the CPU's default thread count and the run's kind."""
    return rows.assign(
        cell=[cell(r) for r in rows.itertuples()],
        cpu_default=rows["default_threads"].map(_threads),
        run=rows["quick"].map(RUN_KIND),
    )


def speedup_table(speed: pd.DataFrame, *, with_machine: bool = True) -> pd.DataFrame:
    """GPU over the same machine's CPU, per device, family and variant; one column per batch size."""
    if speed.empty:
        return pd.DataFrame()
    cells = _against_the_cpu(speed, _speed_cell)
    table = spread(cells, {"label": "Machine", "device": "GPU", **_AGAINST_THE_CPU}, sort=False)
    return table if with_machine else table.drop(columns=["Machine"])


def ladder_table(steps: pd.DataFrame, family: str) -> pd.DataFrame:
    """One row per machine, device and batch size; one column per ladder step, in the ladder's order."""
    if steps.empty:
        return pd.DataFrame()

    def cell(r):
        figure = fmt_seconds(r.median) if family == "train" else f"{r.images_per_s:,.0f} img/s"
        # Each ratio with its 95% interval; a one-round figure is marked at the end instead.
        first = interval_said(r.vs_first, r.vs_first_low, r.vs_first_high, no_interval="")
        text = figure + (f", {first}" if pd.notna(r.vs_first) else "")
        if pd.notna(r.vs_base):
            text += f" [{interval_said(r.vs_base, r.vs_base_low, r.vs_base_high, no_interval='')} over {r.builds_on}]"
        if r.other_runs:  # a ratio across runs: weaker on a noisy machine, and said so
            runs = "another run" if r.other_run_count == 1 else "other runs"
            text += f"; {r.other_runs.replace(', ', ' and ')} from {runs}"
        if pd.notna(r.prepare_s):
            text += f"; prepared in {fmt_seconds(r.prepare_s)}"
        if pd.notna(r.agreement):
            text += f"; {r.agreement:.1%} agree"
        if faults_said(r.page_faults):
            text += f"; {faults_said(r.page_faults)}"
        if pd.notna(r.gpu_ops_per_step) and pd.notna(r.gpu_busy_share):
            text += f"; GPU busy {r.gpu_busy_share:.0%}, {r.gpu_ops_per_step:.0f} ops a step"
        if isinstance(r.cpu_top_op, str) and r.cpu_top_op and pd.notna(r.cpu_top_op_share):
            text += f"; costliest op {r.cpu_top_op} ({r.cpu_top_op_share:.0%})"
        return text + (" (learns less)" if r.learns_less else "") + marks(r)

    cells = steps.sort_values(["label", "device", "batch_size", "quick", "step"]).assign(
        cell=lambda f: [cell(r) for r in f.itertuples()], run=lambda f: f["quick"].map(RUN_KIND)
    )
    table = cells.pivot_table(
        index=["label", "device", "batch_size", "run"],
        columns="pipeline",
        values="cell",
        aggfunc="first",
        sort=False,
    )
    order = cells.drop_duplicates("pipeline").sort_values("step")["pipeline"]
    table = table[[p for p in order if p in table.columns]].reset_index().fillna("")
    table["batch_size"] = table["batch_size"].map("{:,}".format)
    return table.rename(
        columns={"label": "Machine", "device": "Device", "batch_size": "Batch size", "run": "Run"}
    )


def profiled_table(frame: pd.DataFrame, parts: pd.DataFrame) -> pd.DataFrame:
    """Each profiled epoch's phases (torch.profiler), beside the timed epoch and, for seed, the derived split."""
    rows = frame[(frame["family"] == "train") & frame["profiled_epoch_s"].notna()]
    if rows.empty:
        return pd.DataFrame()
    phases = [
        c
        for c in ("data", "h2d", "forward", "backward", "optimizer", "graph")
        if rows[f"profiled_{c}_s"].notna().any()
    ]
    derived = parts.set_index(["machine_key", "quick", "device", "batch_size"])
    out = []
    for r in rows.sort_values(["label", "device", "batch_size"]).itertuples():
        row = {
            "Machine": r.label,
            "Device": r.device,
            "Batch size": f"{r.batch_size:,}",
            "Pipeline": r.pipeline,
            "Run": RUN_KIND[bool(r.quick)],
            "Timed epoch (median)": fmt_seconds(r.median),
            "Images profiled": f"{int(r.profiled_images):,}"
            if pd.notna(r.profiled_images)
            else "the epoch",
            "Profiled": fmt_seconds(r.profiled_epoch_s),
            "Measured on": r.profiled_on,
        }
        for phase in phases:
            seconds = getattr(r, f"profiled_{phase}_s")
            share = (
                f" ({seconds / r.profiled_epoch_s:.0%})"
                if pd.notna(seconds) and r.profiled_epoch_s
                else ""
            )
            row[phase] = fmt_seconds(seconds) + share
        key = (r.machine_key, bool(r.quick), r.device, r.batch_size)
        if r.pipeline == "seed" and key in derived.index:
            d = derived.loc[key]
            row["Derived: loading / copies / compute"] = " / ".join(
                fmt_seconds(d[c]) for c in ("loading_s", "transfer_s", "compute_s")
            )
        out.append(row)
    return pd.DataFrame(out).fillna("")


def threads_table(frame: pd.DataFrame, choices: pd.DataFrame) -> pd.DataFrame:
    """Where a machine's CPU ran a family at several thread counts: the fastest count per variant and batch size."""
    # A ladder step beyond the cheap ones runs at torch's default count alone, by design: not listed
    # here.
    cheap = {"seed", "resident"} | set(frame.loc[frame["family"] == "inference", "mode"].dropna())
    choices = choices[choices["variant"].isin(cheap)]
    cpu = frame[frame["device"] == "cpu"]
    counts = cpu.groupby(["machine_key", "family"])["cpu_threads"].nunique()
    swept = choices.join(counts.rename("family_counts"), on=["machine_key", "family"])
    swept = swept[swept["family_counts"] > 1]
    if swept.empty:
        return pd.DataFrame()

    def cell(r):
        best = _threads(r.best_cpu_threads)
        if r.threads_measured == 1:
            text = f"only {best} measured"
        elif pd.isna(r.median_default):
            text = f"{best} (default not measured)"
        elif not _differs(r.best_cpu_threads, r.default_threads):
            text = f"{best} (the default)"
        else:
            text = f"{best}, {r.median_default / r.median_best:.2f}x"
        return text + marks(r)

    labels = frame.drop_duplicates("machine_key").set_index("machine_key")["label"]
    cells = _against_the_cpu(swept, cell).assign(Machine=swept["machine_key"].map(labels))
    return spread(cells, {"Machine": "Machine", **_AGAINST_THE_CPU})


def crossover_table(cross: pd.DataFrame) -> pd.DataFrame:
    if cross.empty:
        return pd.DataFrame()
    out = cross.assign(
        best=[
            f"{r.best_speedup:.2f}x" + (ONE_ROUND if r.one_round else "")
            for r in cross.itertuples()
        ],
        run=cross["quick"].map(RUN_KIND),
    )
    out = out[["label", "device", "device_name", "family", "variant", "run", "says", "best"]]
    return out.rename(
        columns={
            "label": "Machine",
            "device": "GPU",
            "device_name": "GPU model",
            "family": "Family",
            "variant": "Variant",
            "run": "Run",
            "says": "Crossover",
            "best": "Best speedup",
        }
    )


def breakdown_table(parts: pd.DataFrame) -> pd.DataFrame:
    if parts.empty:
        return pd.DataFrame()
    out = parts.assign(
        device=device_label(parts),
        run=parts["quick"].map(RUN_KIND),
        batch_size=parts["batch_size"].map("{:,}".format),
    )
    for col in ("seed_epoch_s", "loading_s", "transfer_s", "compute_s"):
        out[col] = out[col].map(fmt_seconds)
    out = out[
        [
            "label",
            "device",
            "run",
            "batch_size",
            "seed_epoch_s",
            "loading_s",
            "transfer_s",
            "compute_s",
        ]
    ]
    return out.rename(
        columns={
            "label": "Machine",
            "device": "Device",
            "run": "Run",
            "batch_size": "Batch size",
            "seed_epoch_s": "Seed epoch",
            "loading_s": "Data loading",
            "transfer_s": "Host-to-device copies",
            "compute_s": "Compute (resident epoch)",
        }
    )


def by_model_table(view: pd.DataFrame) -> pd.DataFrame:
    """Where model size moves the crossover: a row per machine, model and step, each model's size, and a column per
    batch size (the GPU's speedup with its interval, or the CPU's time an image)."""
    if view.empty:
        return pd.DataFrame()
    rows = []
    for (label, model, family, variant, device), group in view.groupby(
        ["label", "model", "family", "variant", "device"], sort=False
    ):
        first = group.iloc[0]
        row = {
            "machine": label,
            "model": f"{model} (quick)" if first["quick"] else model,
            "parameters": f"{int(first['parameters']):,}" if pd.notna(first["parameters"]) else "",
            "forward an image": flops_said(first["flops"]) if pd.notna(first["flops"]) else "",
            "step": f"{family} {variant} on {device}",
        }
        for _, r in group.iterrows():
            if r["measure"] == "speedup":
                cell = interval_said(r["value"], r["low"], r["high"])
            else:
                cell = f"{fmt_time(r['value'])} an image"
            row[f"batch {int(r['batch_size']):,}"] = cell
        row["crossover"] = first["crossover"]
        rows.append(row)
    table = pd.DataFrame(rows).fillna("")
    sizes = [f"batch {n:,}" for n in sorted(view["batch_size"].astype(int).unique())]
    first = ["machine", "model", "parameters", "forward an image", "step"]
    # (no GPU measured: no crossover to say)
    last = ["crossover"] if table["crossover"].astype(bool).any() else []
    return table[[*first, *(s for s in sizes if s in table), *last]]
