"""The tables about machines and runs: what each machine is, how its runs ended, the energy they measured, across machines."""

from __future__ import annotations

from pathlib import PurePosixPath

import pandas as pd

from bench.analysis.cells import ONE_ROUND, RUN_KIND, device_label, fmt_seconds, marks
from bench.analysis.figures import at_default, is_gpu
from bench.analysis.intervals import interval_said
from bench.format.names import OUTSIDE_SHARE
from bench.report.tables import pivot, spread

__all__ = [
    "cross_machine_table",
    "energy_notes",
    "energy_ratio_table",
    "energy_table",
    "machine_facts",
    "machines_table",
    "partial_note",
]


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
        return text + (" ≈" if r.energy_note else "") + marks(r)

    return pivot(
        rows,
        {"device": "Device", "family": "Family", "variant": "Variant", "run": "Run"},
        "batch_size",
        "Batch",
        cell,
    )


def energy_notes(frame: pd.DataFrame) -> list[str]:
    """Why energy is missing or approximate, once per machine, device and reason."""
    said = frame[frame["energy_note"].astype(bool)].drop_duplicates(
        ["label", "device", "energy_note"]
    )
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
        f"{r.energy_j_cpu / r.energy_j:.2f}x"
        + (ONE_ROUND if r.one_round or r.one_round_cpu else "")
        for r in both.itertuples()
    ]
    both["run"] = both["quick"].map(RUN_KIND)
    return spread(
        both,
        {
            "label": "Machine",
            "device": "GPU",
            "family": "Family",
            "variant": "Variant",
            "run": "Run",
        },
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
        seed = group[
            (group["family"] == "train")
            & (group["pipeline"] == "seed")
            & (group["batch_size"] == 100)
        ]
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
                "Seed epoch, batch 100": fmt_seconds(seed["median"].min()) + marks(seed.iloc[0])
                if not seed.empty
                else "",
                "Fastest resident epoch": f"{fmt_seconds(best['median'])} (batch {best['batch_size']:,})"
                + marks(best)
                if best is not None
                else "",
                "Peak inference (img/s)": f"{infer['images_per_s'].max():,.0f}"
                if not infer.empty
                else "",
                "Host memory copy, h2h (GB/s)": f"{h2h['gbps'].max():.3g}" if not h2h.empty else "",
                "PCIe copy, h2d pinned (GB/s)": f"{pcie['gbps'].max():.3g}"
                if not pcie.empty
                else "",
            }
        )
    return pd.DataFrame(rows)


def cross_machine_table(pairs: pd.DataFrame) -> pd.DataFrame:
    if pairs.empty:
        return pd.DataFrame()
    cells = pairs.assign(
        # (one round is marked by marks(); a ratio of figures that kept no round times says so)
        cell=[
            interval_said(
                r.speedup,
                r.speedup_low,
                r.speedup_high,
                no_interval="" if r.one_round else " (no round times)",
            )
            + marks(r)
            for r in pairs.itertuples()
        ],
        cpu=pairs["cpu_machine"] + " (" + pairs["cpu_threads"].astype("string") + "t)",
    )
    index = {
        "gpu_machine": "GPU of",
        "device": "GPU",
        "cpu": "over the CPU of (best threads)",
        "family": "Family",
        "variant": "Variant",
    }
    return spread(cells, index)


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
    facts = frame.sort_values(["label", "run_datetime"]).groupby(
        ["label", "run_file"], as_index=False, sort=False
    )
    facts = facts.first()
    facts["state"] = [_run_says(r) for r in facts.itertuples()]
    facts["kind"] = facts["quick"].map(RUN_KIND)
    datasets = frame.groupby(["label", "run_file"])["dataset"].agg(
        lambda d: ", ".join(sorted(set(d)))
    )
    facts["dataset"] = [
        datasets[(label, f)] for label, f in zip(facts["label"], facts["run_file"], strict=True)
    ]
    facts["default_threads"] = facts["default_threads"].astype("string").fillna("")
    facts["date"] = facts["run_datetime"].dt.strftime("%Y-%m-%d %H:%M UTC")
    # The whole run's other work (format 5): a run on a machine that was not its own says so.
    facts["load"] = [
        "not measured"
        if pd.isna(x)
        else f"{x:.1%}" + (f" (busy: over {OUTSIDE_SHARE:.0%})" if x > OUTSIDE_SHARE else "")
        for x in facts["run_outside_share"]
    ]
    cols = {
        "label": "Machine",
        "host": "Host",
        "cpu": "CPU",
        "gpus": "GPUs",
        "nvml_driver": "NVIDIA driver",
        "torch": "torch",
        "default_threads": "CPU threads (torch default)",
        "host_allocator": "Host allocator",
        "dataset": "Dataset",
        "kind": "Run",
        "state": "Ended",
        "load": "Other work on the machine",
        "date": "Date",
        "commit": "Commit",
        "run_file": "Run file (under the results folder)",
    }
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
