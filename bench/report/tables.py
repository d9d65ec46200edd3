"""Figures to tables a person reads: human headers with units, one cell per measured figure, its marks beside it."""

from __future__ import annotations

from pathlib import PurePosixPath

import pandas as pd

from bench.record.words import faults_said, fmt_time
from bench.report.figures import at_default, is_gpu

__all__ = [
    "breakdown_table",
    "cross_machine_table",
    "crossover_table",
    "fmt_seconds",
    "inference_table",
    "machine_facts",
    "machines_table",
    "partial_note",
    "speedup_table",
    "threads_table",
    "train_table",
    "transfer_table",
]

# The marks a figure carries, explained once on the page (see page.py MARKS).
NOISY, ONE_ROUND, PARTIAL, THROTTLED, BUSY = " ~", " (1 round)", " (partial)", " (throttled)", " (busy)"
_RUN = {False: "full", True: "quick"}


def fmt_seconds(value: float) -> str:
    """A time in a table cell: fmt_time's words, empty where there is none."""
    return "" if pd.isna(value) else fmt_time(value)


def _threads(count) -> str:
    return "" if pd.isna(count) else f"{count}t"


def _differs(a, b) -> bool:
    """Two thread counts known to differ (an unknown count differs from nothing)."""
    return pd.notna(a) and pd.notna(b) and a != b


def _marks(r) -> str:
    return (
        (NOISY if getattr(r, "noisy", False) else "")
        + (ONE_ROUND if getattr(r, "one_round", False) else "")
        + (THROTTLED if getattr(r, "throttled", False) else "")
        + (BUSY if getattr(r, "busy", False) else "")
    )


def device_label(frame: pd.DataFrame) -> pd.Series:
    """How tables and plots name what ran: "cpu 2t" for the CPU at 2 threads (as in the case ids), else the device."""
    device = frame["device"].astype(str)
    threads = frame["cpu_threads"]
    cpu = (device == "cpu") & threads.notna()
    return device.where(~cpu, "cpu " + threads.astype("string").fillna("") + "t")


def _run(frame: pd.DataFrame) -> pd.Series:
    """full, or quick with the subset it timed: a quick epoch is another quantity, so it is named as one."""
    images = frame["images"].astype("Int64").astype("string")
    quick = frame["quick"].astype(bool)
    return pd.Series(
        [
            f"quick ({int(i):,} images)" if q and pd.notna(i) else _RUN[bool(q)]
            for q, i in zip(quick, images, strict=True)
        ],
        index=frame.index,
    )


def _spread(cells: pd.DataFrame, index: dict[str, str], column: str = "batch_size", header: str = "Batch",
            sort: bool = True) -> pd.DataFrame:  # fmt: skip
    """cells' "cell" column spread to one column per value of `column` ("Batch 1,000"), in order of that value;
    one row per `index` (column -> header), in their order when `sort` is false."""
    table = cells.pivot_table(index=list(index), columns=column, values="cell", aggfunc="first", sort=sort)
    table = table[sorted(table.columns)]
    table.columns = [f"{header} {c:,}" for c in table.columns]
    return table.reset_index().fillna("").rename(columns=index)


def _pivot(frame: pd.DataFrame, index: dict[str, str], column: str, header: str, cell) -> pd.DataFrame:
    """One row per `index` (column -> header), one column per value of `column` ("Batch 100"), cells from `cell`."""
    if frame.empty:
        return pd.DataFrame()
    frame = frame.sort_values(["label", "device", "cpu_threads", "quick", column], kind="stable")
    frame = frame.assign(
        Machine=frame["label"],
        device=device_label(frame),
        run=_run(frame) if frame["family"].iloc[0] != "transfer" else frame["quick"].map(_RUN),
        cell=[cell(r) for r in frame.itertuples()],
    )
    return _spread(frame, {"Machine": "Machine", **index}, column, header, sort=False)


def train_table(frame: pd.DataFrame) -> pd.DataFrame:
    rows = frame[frame["family"] == "train"]
    return _pivot(
        rows,
        {"device": "Device", "pipeline": "Pipeline", "run": "Run"},
        "batch_size",
        "Batch",
        lambda r: fmt_seconds(r.median) + ("" if r.one_round else f", IQR {r.iqr_share:.0%}") + _marks(r),
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
        return f"{r.images_per_s:,.0f} img/s; {latency}" + _marks(r)

    return _pivot(rows, {"device": "Device", "variant": "Mode and step", "run": "Run"}, "batch_size", "Batch", cell)


def transfer_table(frame: pd.DataFrame) -> pd.DataFrame:
    rows = frame[frame["family"] == "transfer"]

    def cell(r):
        share = f" ({r.link_share:.0%} of link)" if pd.notna(r.link_share) else ""
        return f"{r.gbps:.3g} GB/s{share}" + _marks(r)

    index = {"device": "Device", "direction": "Direction", "memory": "Host memory", "dtype": "Data type", "run": "Run"}
    return _pivot(rows, index, "size", "Images", cell)


def _speed_cell(r) -> str:
    text = f"{r.speedup:.2f}x" if pd.notna(r.speedup) else "-"
    if pd.isna(r.speedup) or _differs(r.best_cpu_threads, r.default_threads):
        text += f" [{r.speedup_vs_best_cpu:.2f}x vs {_threads(r.best_cpu_threads)}]"
    return text + _marks(r) + (PARTIAL if r.partial else "")


def speedup_table(speed: pd.DataFrame, *, with_machine: bool = True) -> pd.DataFrame:
    """GPU over the same machine's CPU, per device, family and variant; one column per batch size."""
    if speed.empty:
        return pd.DataFrame()
    cells = speed.assign(
        cell=[_speed_cell(r) for r in speed.itertuples()],
        cpu_default=speed["default_threads"].map(_threads),
        run=speed["quick"].map(_RUN),
    )
    index = {"label": "Machine", "device": "GPU", "cpu_default": "CPU threads (default)", "family": "Family",
             "variant": "Variant", "run": "Run"}  # fmt: skip
    table = _spread(cells, index, sort=False)
    return table if with_machine else table.drop(columns=["Machine"])


def ladder_table(steps: pd.DataFrame, family: str) -> pd.DataFrame:
    """One row per machine, device and batch size; one column per ladder step, in the ladder's order."""
    if steps.empty:
        return pd.DataFrame()

    def cell(r):
        figure = fmt_seconds(r.median) if family == "train" else f"{r.images_per_s:,.0f} img/s"
        text = figure + (f", {r.vs_first:.2f}x" if pd.notna(r.vs_first) else "")
        text += f" ({r.vs_base:.2f}x over {r.builds_on})" if pd.notna(r.vs_base) else ""
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
        return text + (" (learns less)" if r.learns_less else "") + _marks(r)

    cells = steps.sort_values(["label", "device", "batch_size", "quick", "step"]).assign(
        cell=lambda f: [cell(r) for r in f.itertuples()], run=lambda f: f["quick"].map(_RUN)
    )
    table = cells.pivot_table(
        index=["label", "device", "batch_size", "run"], columns="pipeline", values="cell", aggfunc="first", sort=False
    )
    order = cells.drop_duplicates("pipeline").sort_values("step")["pipeline"]
    table = table[[p for p in order if p in table.columns]].reset_index().fillna("")
    table["batch_size"] = table["batch_size"].map("{:,}".format)
    return table.rename(columns={"label": "Machine", "device": "Device", "batch_size": "Batch size", "run": "Run"})


def profiled_table(frame: pd.DataFrame, parts: pd.DataFrame) -> pd.DataFrame:
    """Each profiled epoch's phases (torch.profiler), beside the timed epoch and, for seed, the derived split."""
    rows = frame[(frame["family"] == "train") & frame["profiled_epoch_s"].notna()]
    if rows.empty:
        return pd.DataFrame()
    phases = [c for c in ("data", "h2d", "forward", "backward", "optimizer", "graph")
              if rows[f"profiled_{c}_s"].notna().any()]  # fmt: skip
    derived = parts.set_index(["machine_key", "quick", "device", "batch_size"])
    out = []
    for r in rows.sort_values(["label", "device", "batch_size"]).itertuples():
        row = {
            "Machine": r.label, "Device": r.device, "Batch size": f"{r.batch_size:,}", "Pipeline": r.pipeline,
            "Run": _RUN[bool(r.quick)], "Timed epoch (median)": fmt_seconds(r.median),
            "Images profiled": f"{r.profiled_images:,}" if pd.notna(r.profiled_images) else "the epoch",
            "Profiled": fmt_seconds(r.profiled_epoch_s), "Measured on": r.profiled_on,
        }  # fmt: skip
        for phase in phases:
            seconds = getattr(r, f"profiled_{phase}_s")
            share = f" ({seconds / r.profiled_epoch_s:.0%})" if pd.notna(seconds) and r.profiled_epoch_s else ""
            row[phase] = fmt_seconds(seconds) + share
        key = (r.machine_key, bool(r.quick), r.device, r.batch_size)
        if r.pipeline == "seed" and key in derived.index:
            d = derived.loc[key]
            row["Derived: loading / copies / compute"] = " / ".join(
                fmt_seconds(d[c]) for c in ("loading_s", "transfer_s", "compute_s")
            )
        out.append(row)
    return pd.DataFrame(out).fillna("")


def energy_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Energy beside time for training (J per epoch) and inference (J per 1,000 images, images per joule)."""
    rows = frame[frame["family"].isin(["train", "inference"]) & frame["energy_j"].notna()]
    if rows.empty:
        return pd.DataFrame()

    def cell(r):
        power = f", {r.mean_power_w:.0f} W" if pd.notna(r.mean_power_w) else ""
        if r.family == "train":
            text = f"{r.energy_j:.3g} J/epoch{power}"
        else:
            per_1000 = r.energy_j / r.images * 1000
            text = f"{per_1000:.3g} J/1,000 img, {r.images_per_j:,.0f} img/J{power}"
        return text + (" ≈" if r.energy_note else "") + _marks(r)

    return _pivot(rows, {"device": "Device", "family": "Family", "variant": "Variant", "run": "Run"}, "batch_size",
                  "Batch", cell)  # fmt: skip


def energy_notes(frame: pd.DataFrame) -> list[str]:
    """Why energy is missing or approximate, once per machine, device and reason."""
    said = frame[frame["energy_note"].astype(bool)].drop_duplicates(["label", "device", "energy_note"])
    return [f"{r.label}, {r.device}: {r.energy_note}" for r in said.itertuples()]


def energy_ratio_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The same machine's CPU energy over its GPU's for the same work (above 1x the GPU spends less)."""
    cols = ["machine_key", "label", "quick", "family", "variant", "batch_size"]
    work = frame[frame["family"].isin(["train", "inference"]) & frame["energy_j"].notna()]
    cpu = work[(work["device"] == "cpu") & at_default(work)]
    gpu = work[is_gpu(work["device"])]
    both = gpu.merge(cpu[[*cols, "energy_j", "one_round"]], on=cols, suffixes=("", "_cpu"))
    if both.empty:
        return pd.DataFrame()
    both["cell"] = [
        f"{r.energy_j_cpu / r.energy_j:.2f}x" + (ONE_ROUND if r.one_round or r.one_round_cpu else "")
        for r in both.itertuples()
    ]
    both["run"] = both["quick"].map(_RUN)
    return _spread(both, {"label": "Machine", "device": "GPU", "family": "Family", "variant": "Variant", "run": "Run"})


def threads_table(frame: pd.DataFrame, choices: pd.DataFrame) -> pd.DataFrame:
    """Where a machine's CPU ran a family at several thread counts: the fastest count per variant and batch size."""
    # A ladder step beyond the cheap ones runs at torch's default count alone, by design: not listed here.
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
        return text + _marks(r)

    labels = frame.drop_duplicates("machine_key").set_index("machine_key")["label"]
    cells = swept.assign(
        cell=[cell(r) for r in swept.itertuples()],
        cpu_default=swept["default_threads"].map(_threads),
        Machine=swept["machine_key"].map(labels),
        run=swept["quick"].map(_RUN),
    )
    index = {"Machine": "Machine", "cpu_default": "CPU threads (default)", "family": "Family", "variant": "Variant",
             "run": "Run"}  # fmt: skip
    return _spread(cells, index)


def crossover_table(cross: pd.DataFrame) -> pd.DataFrame:
    if cross.empty:
        return pd.DataFrame()
    out = cross.assign(
        best=[f"{r.best_speedup:.2f}x" + (ONE_ROUND if r.one_round else "") for r in cross.itertuples()],
        run=cross["quick"].map(_RUN),
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
        }  # fmt: skip
    )


def breakdown_table(parts: pd.DataFrame) -> pd.DataFrame:
    if parts.empty:
        return pd.DataFrame()
    out = parts.assign(
        device=device_label(parts), run=parts["quick"].map(_RUN), batch_size=parts["batch_size"].map("{:,}".format)
    )
    for col in ("seed_epoch_s", "loading_s", "transfer_s", "compute_s"):
        out[col] = out[col].map(fmt_seconds)
    out = out[["label", "device", "run", "batch_size", "seed_epoch_s", "loading_s", "transfer_s", "compute_s"]]
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
        }  # fmt: skip
    )


def machines_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per machine and device: the headline figure of each family, full runs only, like with like.

    A host memory copy (h2h, the CPU's memory bandwidth) and a PCIe copy (h2d from pinned
    memory, a GPU's link) are different quantities: each has its own column.
    """
    rows = []
    full = frame[~frame["quick"]]
    for (label, device), group in full.groupby(["label", "device"], sort=True):
        resident = group[(group["family"] == "train") & (group["pipeline"] == "resident")]
        seed = group[(group["family"] == "train") & (group["pipeline"] == "seed") & (group["batch_size"] == 100)]
        infer = group[(group["family"] == "inference") & (group["mode"] == "compute")]
        copies = group[group["family"] == "transfer"]
        h2h = copies[copies["direction"] == "h2h"]
        pcie = copies[(copies["direction"] == "h2d") & (copies["memory"] == "pinned")]
        best = resident.loc[resident["median"].idxmin()] if not resident.empty else None
        rows.append(
            {
                "Machine": label,
                "Device": device,
                "Model": group["device_name"].iloc[0],
                "Seed epoch, batch 100": fmt_seconds(seed["median"].min()) + _marks(seed.iloc[0])
                if not seed.empty
                else "",
                "Fastest resident epoch": f"{fmt_seconds(best['median'])} (batch {best['batch_size']:,})" + _marks(best)
                if best is not None
                else "",
                "Peak inference (img/s)": f"{infer['images_per_s'].max():,.0f}" if not infer.empty else "",
                "Host memory copy, h2h (GB/s)": f"{h2h['gbps'].max():.3g}" if not h2h.empty else "",
                "PCIe copy, h2d pinned (GB/s)": f"{pcie['gbps'].max():.3g}" if not pcie.empty else "",
            }
        )
    return pd.DataFrame(rows)


def cross_machine_table(pairs: pd.DataFrame) -> pd.DataFrame:
    if pairs.empty:
        return pd.DataFrame()
    cells = pairs.assign(
        cell=[f"{r.speedup:.2f}x" + _marks(r) for r in pairs.itertuples()],
        cpu=pairs["cpu_machine"] + " (" + pairs["cpu_threads"].astype("string") + "t)",
    )
    index = {"gpu_machine": "GPU of", "device": "GPU", "cpu": "over the CPU of (best threads)", "family": "Family",
             "variant": "Variant"}  # fmt: skip
    return _spread(cells, index)


def _run_says(r) -> str:
    """A run as the Machines table states it: complete; partial, with how far it got and why; or not recorded."""
    if r.partial:
        finished, planned = r.run_finished_cases, r.run_planned_cases
        cases = (
            f"{finished} of {planned} cases"
            if pd.notna(finished) and pd.notna(planned)
            else (f"{finished} cases" if pd.notna(finished) else "")
        )
        return "partial: " + ", ".join(part for part in (cases, r.run_ended) if part)
    return "not recorded" if pd.isna(r.run_planned_cases) else "complete"


def machine_facts(frame: pd.DataFrame) -> pd.DataFrame:
    """The machines in the report and the runs of each that count: what each is, and whether each run is whole."""
    facts = frame.sort_values(["label", "run_datetime"]).groupby(["label", "run_file"], as_index=False, sort=False)
    facts = facts.first()
    facts["state"] = [_run_says(r) for r in facts.itertuples()]
    facts["kind"] = facts["quick"].map(_RUN)
    datasets = frame.groupby(["label", "run_file"])["dataset"].agg(lambda d: ", ".join(sorted(set(d))))
    facts["dataset"] = [datasets[(label, f)] for label, f in zip(facts["label"], facts["run_file"], strict=True)]
    facts["default_threads"] = facts["default_threads"].astype("string").fillna("")
    facts["date"] = facts["run_datetime"].dt.strftime("%Y-%m-%d %H:%M UTC")
    cols = {"label": "Machine", "host": "Host", "cpu": "CPU", "gpus": "GPUs", "nvml_driver": "NVIDIA driver",
            "torch": "torch", "default_threads": "CPU threads (torch default)", "host_allocator": "Host allocator",
            "dataset": "Dataset", "kind": "Run", "state": "Ended", "date": "Date", "commit": "Commit", "run_file": "Run file (under the results folder)"}  # fmt: skip
    return facts[list(cols)].rename(columns=cols)


def partial_note(frame: pd.DataFrame) -> str:
    """Which figures come from partial runs, per run: its families and devices; "" when none does."""
    parts = frame[frame["partial"]]
    said = []
    for (label, run_file), rows in parts.groupby(["label", "run_file"], sort=True):
        labels = rows.assign(device_label=device_label(rows))
        what = "; ".join(
            f"{family} on {', '.join(dict.fromkeys(group.sort_values(['device', 'cpu_threads'])['device_label']))}"
            for family, group in labels.groupby("family", sort=False)
        )
        said.append(f"{label} ({PurePosixPath(run_file).name}, {_run_says(rows.iloc[0])}): {what}")
    if not said:
        return ""
    return (
        "Figures from partial runs (stopped or killed before every planned case was measured), "
        "marked (partial): " + " | ".join(said) + "."
    )
