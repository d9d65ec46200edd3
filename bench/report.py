"""Saved runs to a report: summary.csv, Markdown tables, PNG plots and one index.html (python -m bench.report)."""

from __future__ import annotations

import argparse
import html
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: the report is written, never shown

import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .derive import crossover_batch_size, loglog_interp, seed_breakdown  # noqa: E402
from .journal import find_journals, is_live  # noqa: E402  (pure Python: the journal format, no torch)
from .results import NOISY_IQR_SHARE, RunFileWarning, load_frame, select_newest  # noqa: E402

__all__ = [
    "breakdown",
    "cpu_choices",
    "crossovers",
    "crossover_batch_size",
    "main",
    "speedups",
    "write_report",
]

DEFAULT_RUNS = Path("results")
DEFAULT_OUT = Path("results/report")
# The transfer the seed pipeline makes every batch: ToTensor's float32, from pageable memory.
_SEED_TRANSFER = {"direction": "h2d", "memory": "pageable", "dtype": "float32"}
_VARIANT = {"train": "pipeline", "inference": "mode"}


# ---------------------------------------------------------------- derived figures


def _is_gpu(device: pd.Series) -> pd.Series:
    return device.astype(str).str.startswith(("cuda", "mps"))


def _at_default(rows: pd.DataFrame) -> pd.Series:
    """Rows run at torch's default thread count of their run (an unknown count is taken as the default)."""
    threads = rows["cpu_threads"]
    return (threads.isna() | (threads == rows["default_threads"])).fillna(False).astype(bool)


_CHOICE_COLUMNS = ["machine_key", "machine", "family", "variant", "batch_size", "threads_measured",
                   "default_threads", "median_default", "best_cpu_threads", "median_best", "noisy", "partial"]  # fmt: skip


def cpu_choices(frame: pd.DataFrame) -> pd.DataFrame:
    """The CPU's baseline per machine, family (train, inference), variant and batch size.

    median_default is the CPU at torch's default thread count (NaN where that count was not
    run); median_best the fastest count measured (best_cpu_threads), the default on a tie.
    A format-1 run measured one count, the default: its best is its default. noisy and
    partial say whether either of the two rows is noisy or comes from a partial run.
    """
    rows = []
    for family, variant in _VARIANT.items():
        cpu = frame[(frame["family"] == family) & (frame["device"] == "cpu")]
        for (key, name, size), group in cpu.groupby(["machine_key", variant, "batch_size"]):
            default = group[_at_default(group)].sort_values("run_datetime", na_position="first").tail(1)
            best = group.iloc[[group["median"].to_numpy().argmin()]]
            if not default.empty and default["median"].iloc[0] <= best["median"].iloc[0]:
                best = default
            used = pd.concat([default, best])
            rows.append(
                {
                    "machine_key": key,
                    "machine": group["machine"].iloc[0],
                    "family": family,
                    "variant": name,
                    "batch_size": size,
                    "threads_measured": group["cpu_threads"].nunique(dropna=False),
                    "default_threads": (group if default.empty else default)["default_threads"].iloc[-1],
                    "median_default": default["median"].iloc[0] if not default.empty else np.nan,
                    "best_cpu_threads": best["cpu_threads"].iloc[0],
                    "median_best": best["median"].iloc[0],
                    "noisy": bool(used["noisy"].any()),
                    "partial": bool(used["partial"].any()),
                }
            )
    out = pd.DataFrame(rows, columns=_CHOICE_COLUMNS)
    for col in ("batch_size", "default_threads", "best_cpu_threads"):
        out[col] = out[col].astype("Int64")
    return out


def speedups(frame: pd.DataFrame) -> pd.DataFrame:
    """Each GPU's speedup over the same machine's CPU, per family, variant and batch size.

    speedup is the CPU at torch's default thread count over the GPU (CPU median / GPU median);
    speedup_vs_best_cpu the CPU at its fastest count measured (best_cpu_threads) over the GPU:
    the comparison a CPU expert would make. With one count measured the two are the same.
    """
    cpu = cpu_choices(frame).drop(columns=["machine", "threads_measured"])
    out = []
    for family, variant in _VARIANT.items():
        rows = frame[(frame["family"] == family) & _is_gpu(frame["device"])]
        gpu = rows[["machine_key", variant, "batch_size", "machine", "device", "device_name", "median", "noisy",
                    "partial"]].rename(columns={variant: "variant", "median": "median_gpu"})  # fmt: skip
        both = gpu.assign(family=family).merge(
            cpu, on=["machine_key", "family", "variant", "batch_size"], suffixes=("_gpu", "_cpu")
        )
        if both.empty:
            continue
        both["speedup"] = both["median_default"] / both["median_gpu"]
        both["speedup_vs_best_cpu"] = both["median_best"] / both["median_gpu"]
        both["noisy"] = both["noisy_gpu"].astype(bool) | both["noisy_cpu"].astype(bool)
        both["partial"] = both["partial_gpu"].astype(bool) | both["partial_cpu"].astype(bool)
        out.append(both.rename(columns={"median_default": "median_cpu", "median_best": "median_best_cpu"}))
    columns = ["machine_key", "machine", "device", "device_name", "family", "variant", "batch_size",
               "default_threads", "median_cpu", "median_gpu", "speedup",
               "best_cpu_threads", "median_best_cpu", "speedup_vs_best_cpu", "noisy", "partial"]  # fmt: skip
    if not out:
        return pd.DataFrame(columns=columns)
    return (
        pd.concat(out)[columns]
        .sort_values(["machine_key", "device", "family", "variant", "batch_size"])
        .reset_index(drop=True)
    )


def crossovers(speed: pd.DataFrame) -> pd.DataFrame:
    """Per machine, GPU, family and variant: the crossover batch size against the CPU's best thread count.

    See crossover_batch_size; best_speedup is the largest speedup_vs_best_cpu. Against the
    CPU's best rather than torch's default, so that a poorly threaded CPU cannot make the GPU
    look as if it starts to win earlier than it does.
    """
    rows = []
    for (key, device, family, variant), group in speed.groupby(["machine_key", "device", "family", "variant"]):
        sizes = group["batch_size"].astype(int).tolist()
        rows.append(
            {
                "machine_key": key,
                "machine": group["machine"].iloc[0],
                "device": device,
                "device_name": group["device_name"].iloc[0],
                "family": family,
                "variant": variant,
                "crossover_batch_size": crossover_batch_size(sizes, group["speedup_vs_best_cpu"].tolist()),
                "smallest_measured": min(sizes),
                "largest_measured": max(sizes),
                "best_speedup": group["speedup_vs_best_cpu"].max(),
            }
        )
    out = pd.DataFrame(rows)
    if not out.empty:
        out["crossover_batch_size"] = out["crossover_batch_size"].astype("Int64")  # <NA>: the GPU never wins
    return out


def breakdown(frame: pd.DataFrame) -> pd.DataFrame:
    """Where a seed-pipeline epoch's time goes, per machine, device and batch size.

    compute  = the resident epoch (the same training with the data already on the device);
    transfer = batches x the measured time to move one batch of float32 from pageable memory
               (the seed pipeline's copy), interpolated in log-log from the transfer sizes; 0 on the CPU;
    loading  = what is left of the seed epoch: DataLoader, PIL + ToTensor, collation, per-batch syncs.
    The CPU is taken at torch's default thread count, as the seed pipeline runs it.
    """
    train = frame[(frame["family"] == "train") & ((frame["device"] != "cpu") | _at_default(frame))]
    index = ["machine_key", "device", "batch_size"]
    seed = train[train["pipeline"] == "seed"].set_index(index)[
        ["median", "images", "machine", "cpu_threads", "partial"]
    ]
    resident = train[train["pipeline"] == "resident"].set_index(index)[["median", "partial"]]
    resident.columns = ["median_resident", "partial_resident"]
    both = seed.join(resident, how="inner").dropna(subset=["median", "median_resident"])
    transfer = frame[(frame["family"] == "transfer")]
    for axis, value in _SEED_TRANSFER.items():
        transfer = transfer[transfer[axis] == value]
    rows = []
    for (key, device, batch_size), times in both.iterrows():
        images = times["images"]
        if device == "cpu":
            moving = 0.0
        else:
            copies = transfer[(transfer["machine_key"] == key) & (transfer["device"] == device)]
            if copies.empty:
                moving = np.nan
            else:
                per_batch = loglog_interp(copies["size"].astype(float), copies["median"], min(batch_size, images))
                moving = per_batch * int(np.ceil(images / batch_size))
        rows.append(
            {
                "machine_key": key,
                "machine": times["machine"],
                "device": device,
                "cpu_threads": times["cpu_threads"],
                "batch_size": batch_size,
                **seed_breakdown(times["median"], times["median_resident"], moving),
                "partial": bool(times["partial"]) or bool(times["partial_resident"]),
            }
        )
    return pd.DataFrame(rows, columns=["machine_key", "machine", "device", "cpu_threads", "batch_size",
                                       "seed_epoch_s", "loading_s", "transfer_s", "compute_s", "partial"])  # fmt: skip


# ---------------------------------------------------------------- tables


def _fmt_seconds(value: float) -> str:
    if pd.isna(value):
        return ""
    return "0 s" if value == 0 else f"{value * 1e3:.3g} ms" if value < 1 else f"{value:.3g} s"


def _threads(count) -> str:
    return "" if pd.isna(count) else f"{count}t"


def _differs(a, b) -> bool:
    """Two thread counts known to differ (an unknown count differs from nothing)."""
    return pd.notna(a) and pd.notna(b) and a != b


def _short_machine(frame: pd.DataFrame) -> pd.Series:
    return frame["host"] if frame["machine_key"].nunique() == frame["host"].nunique() else frame["machine_key"]


def _device_label(frame: pd.DataFrame) -> pd.Series:
    """How tables and plots name what ran: "cpu 2t" for the CPU at 2 threads (as in the case ids), else the device."""
    device = frame["device"].astype(str)
    threads = frame["cpu_threads"]
    cpu = (device == "cpu") & threads.notna()
    return device.where(~cpu, "cpu " + threads.astype("string").fillna("") + "t")


def _pivot(frame: pd.DataFrame, index: list[str], column: str, cell) -> pd.DataFrame:
    # Sorted before the pivot, which keeps that order: the CPU's 2 threads come before its 16.
    frame = frame.sort_values(["machine_key", "device", "cpu_threads", *index[1:], column], kind="stable")
    frame = frame.assign(
        machine=_short_machine(frame), device=_device_label(frame), cell=[cell(r) for r in frame.itertuples()]
    )
    table = frame.pivot_table(index=["machine", *index], columns=column, values="cell", aggfunc="first", sort=False)
    table = table[sorted(table.columns)]
    table.columns = [f"{column} {c}" for c in table.columns]
    return table.reset_index().fillna("")


def train_table(frame: pd.DataFrame) -> pd.DataFrame:
    rows = frame[frame["family"] == "train"]
    # Median with its spread: IQR as a share of the median.
    return _pivot(
        rows,
        ["device", "pipeline"],
        "batch_size",
        lambda r: f"{_fmt_seconds(r.median)}, IQR {r.iqr_share:.0%}" + (" ~" if r.noisy else ""),
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
        return f"{r.images_per_s:,.0f} img/s; {latency}" + (" ~" if r.noisy else "")

    return _pivot(rows, ["device", "mode"], "batch_size", cell)


def transfer_table(frame: pd.DataFrame) -> pd.DataFrame:
    rows = frame[frame["family"] == "transfer"]

    def cell(r):
        share = f" ({r.link_share:.0%} of link)" if pd.notna(r.link_share) else ""
        return f"{r.gbps:.3g} GB/s{share}" + (" ~" if r.noisy else "")

    return _pivot(rows, ["device", "direction", "memory", "dtype"], "size", cell)


def speedup_table(speed: pd.DataFrame) -> pd.DataFrame:
    if speed.empty:
        return pd.DataFrame()

    def cell(r):
        text = f"{r.speedup:.2f}x" if pd.notna(r.speedup) else "-"
        if pd.isna(r.speedup) or _differs(r.best_cpu_threads, r.default_threads):
            text += f" [{r.speedup_vs_best_cpu:.2f}x vs {_threads(r.best_cpu_threads)}]"
        return text + (" ~" if r.noisy else "")

    cells = speed.assign(cell=[cell(r) for r in speed.itertuples()], cpu_default=speed["default_threads"].map(_threads))
    table = cells.pivot_table(
        index=["machine_key", "device", "cpu_default", "family", "variant"],
        columns="batch_size",
        values="cell",
        aggfunc="first",
    )
    table.columns = [f"batch_size {c}" for c in table.columns]
    return table.reset_index().fillna("").rename(columns={"cpu_default": "CPU threads (default)"})


def threads_table(frame: pd.DataFrame, choices: pd.DataFrame) -> pd.DataFrame:
    """Where a machine's CPU ran a family at several thread counts: the fastest count per variant and batch size."""
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
        return text + (" ~" if r.noisy else "")

    cells = swept.assign(cell=[cell(r) for r in swept.itertuples()], cpu_default=swept["default_threads"].map(_threads))
    table = cells.pivot_table(
        index=["machine_key", "cpu_default", "family", "variant"], columns="batch_size", values="cell", aggfunc="first"
    )
    table.columns = [f"batch_size {c}" for c in table.columns]
    return table.reset_index().fillna("").rename(columns={"cpu_default": "CPU threads (default)"})


def crossover_table(cross: pd.DataFrame) -> pd.DataFrame:
    if cross.empty:
        return pd.DataFrame()

    def says(r):
        if r.crossover_batch_size is None or pd.isna(r.crossover_batch_size):
            return f"CPU wins at every size up to {r.largest_measured}"
        if r.crossover_batch_size == r.smallest_measured:
            return f"GPU wins from the smallest size measured ({r.smallest_measured})"
        return f"GPU wins from batch size {int(r.crossover_batch_size)}"

    out = cross.assign(
        crossover=[says(r) for r in cross.itertuples()], best_speedup=cross["best_speedup"].map("{:.2f}x".format)
    )
    return out[["machine_key", "device", "device_name", "family", "variant", "crossover", "best_speedup"]]


def breakdown_table(parts: pd.DataFrame) -> pd.DataFrame:
    out = parts.assign(device=_device_label(parts))
    for col in ("seed_epoch_s", "loading_s", "transfer_s", "compute_s"):
        out[col] = out[col].map(_fmt_seconds)
    return out.drop(columns=["machine", "cpu_threads", "partial"])


def machines_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per machine-device: the headline figure of each family, side by side."""
    rows = []
    for (key, device), group in frame.groupby(["machine_key", "device"]):
        train = group[(group["family"] == "train") & (group["pipeline"] == "resident")]
        seed = group[(group["family"] == "train") & (group["pipeline"] == "seed") & (group["batch_size"] == 100)]
        infer = group[(group["family"] == "inference") & (group["mode"] == "compute")]
        copy = group[group["family"] == "transfer"]
        rows.append(
            {
                "machine_key": key,
                "device": device,
                "device_name": group["device_name"].iloc[0],
                "seed epoch, batch 100": _fmt_seconds(seed["median"].min()) if not seed.empty else "",
                "best resident epoch": _fmt_seconds(train["median"].min()) if not train.empty else "",
                "best inference img/s": f"{infer['images_per_s'].max():,.0f}" if not infer.empty else "",
                "best copy GB/s": f"{copy['gbps'].max():.3g}" if not copy.empty else "",
            }
        )
    return pd.DataFrame(rows)


def _run_state(r) -> str:
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
    """The machines in the report: what each is, which run of it counts, and whether that run is whole."""
    cols = ["machine_key", "machine", "nvml_driver", "torch", "default_threads", "dataset", "run_datetime", "commit",
            "run", "run_file"]  # fmt: skip
    facts = frame.sort_values("run_datetime").groupby(["machine_key", "run_file"], as_index=False).first()
    facts["run"] = [_run_state(r) for r in facts.itertuples()]
    facts = facts[cols]
    facts["dataset"] = [", ".join(sorted(set(frame.loc[frame["run_file"] == f, "dataset"]))) for f in facts["run_file"]]
    facts["run_datetime"] = facts["run_datetime"].dt.strftime("%Y-%m-%d %H:%M UTC")
    return facts.rename(
        columns={
            "machine": "machine (host · CPU · GPUs)",
            "nvml_driver": "NVIDIA driver",
            "default_threads": "CPU threads (torch default)",
        }
    )


def partial_note(frame: pd.DataFrame) -> str:
    """Which figures come from partial runs, per run: its families and devices; "" when none does."""
    parts = frame[frame["partial"]]
    names = _short_machine(frame)
    said = []
    for (_key, run_file), rows in parts.groupby(["machine_key", "run_file"], sort=True):
        labels = rows.assign(label=_device_label(rows))
        what = "; ".join(
            f"{family} on {', '.join(dict.fromkeys(group.sort_values(['device', 'cpu_threads'])['label']))}"
            for family, group in labels.groupby("family", sort=False)
        )
        said.append(f"{names[rows.index[0]]} ({Path(run_file).name}, {_run_state(rows.iloc[0])}): {what}")
    if not said:
        return ""
    return (
        "Figures from partial runs (stopped or killed before every planned case was measured), "
        "marked (partial) in the plots: " + " | ".join(said) + "."
    )


# ---------------------------------------------------------------- plots


def _label(frame: pd.DataFrame, r, *parts: str, partial: bool = False) -> str:
    bits = [str(getattr(r, p)) for p in parts]
    if frame["machine_key"].nunique() > 1:
        bits.insert(0, str(r.host))
    return " ".join(bits) + (" (partial)" if partial else "")


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


_STYLES = ["-", "--", ":", "-."]
_MARKERS = ["o", "s", "^", "D"]


def _lines(frame: pd.DataFrame, x: str, y: str, color_by: list[str], style_by: list[str], ax) -> None:
    """One line per (machine, color_by, style_by): colour tells the device apart, line style the variant."""
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    color_keys = list(dict.fromkeys(frame[["machine_key", *color_by]].itertuples(index=False, name=None)))
    style_keys = list(dict.fromkeys(frame[style_by].itertuples(index=False, name=None)))
    for key, group in frame.groupby(["machine_key", *color_by, *style_by], dropna=False, sort=True):
        group = group.sort_values(x)
        first = next(group.itertuples())
        c = color_keys.index(key[: 1 + len(color_by)]) % len(colors)
        s = style_keys.index(key[1 + len(color_by) :]) % len(_STYLES)
        ax.plot(group[x], group[y], color=colors[c], linestyle=_STYLES[s], marker=_MARKERS[s],
                label=_label(frame, first, *color_by, *style_by, partial=bool(group["partial"].any())))  # fmt: skip


def _log_axes(ax, legend_size: int = 8) -> None:
    """Log-log axes labelled 1, 2, 5, 10, ... rather than powers of ten."""
    plain = matplotlib.ticker.FuncFormatter(lambda v, _pos: f"{v:,.0f}" if v >= 1000 else f"{v:g}")
    for axis, limits in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
        if axis.get_scale() == "log":
            decades = np.log10(max(limits) / min(limits))
            # 1-2-5 steps on a short axis; one label a decade where more would collide.
            axis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0) if decades <= 3 else (1.0,)))
            axis.set_major_formatter(plain)
            axis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=legend_size)


def _plot_sweep(
    frame: pd.DataFrame, family: str, y: str, variant: str, ylabel: str, title: str, path: Path
) -> Path | None:
    """A family's figure against batch size, log-log: colour per device, line style per variant."""
    rows = frame[frame["family"] == family]
    if rows.empty:
        return None
    rows = rows.sort_values(["device", "cpu_threads"]).assign(device=_device_label(rows))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    _lines(rows, "batch_size", y, ["device"], [variant], ax)
    ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel=ylabel, title=title)
    _log_axes(ax)
    return _save(fig, path)


def plot_epoch_time(frame: pd.DataFrame, path: Path) -> Path | None:
    return _plot_sweep(frame, "train", "median", "pipeline", "one epoch (s, median)", "Training epoch time", path)


def plot_inference(frame: pd.DataFrame, path: Path) -> Path | None:
    return _plot_sweep(frame, "inference", "images_per_s", "mode", "images/s (median)", "Inference throughput", path)


def plot_transfer(frame: pd.DataFrame, path: Path) -> Path | None:
    """One panel per machine, so each keeps its own few colours; dtype is the line style."""
    rows = frame[frame["family"] == "transfer"]
    if rows.empty:
        return None
    machines = list(dict.fromkeys(rows["machine_key"]))
    rows = rows.sort_values(["device", "cpu_threads"]).assign(device=_device_label(rows))
    fig, axes = plt.subplots(1, len(machines), figsize=(7 * len(machines), 4.5), squeeze=False, sharey=True)
    for ax, key in zip(axes[0], machines, strict=True):
        mine = rows[rows["machine_key"] == key]
        _lines(mine, "size", "gbps", ["device", "direction", "memory"], ["dtype"], ax)
        for r in mine.dropna(subset=["link_gbps"]).drop_duplicates("device").itertuples():
            ax.axhline(r.link_gbps, linestyle="--", color="grey", linewidth=1)
            ax.annotate(f"{r.device} PCIe theoretical, {r.link_gbps:.3g} GB/s", (mine["size"].min(), r.link_gbps),
                        fontsize=7, va="bottom")  # fmt: skip
        title = "Transfer bandwidth" + (f": {mine['host'].iloc[0]}" if len(machines) > 1 else "")
        ax.set(xscale="log", yscale="log", xlabel="images moved (1x28x28 each)", ylabel="GB/s (median)", title=title)
        _log_axes(ax, legend_size=7)
    return _save(fig, path)


def plot_speedup(speed: pd.DataFrame, frame: pd.DataFrame, path: Path) -> Path | None:
    if speed.empty:
        return None
    # Against the CPU's best thread count, as the crossover is: the GPU's case at its weakest.
    speed = speed.merge(frame[["machine_key", "host"]].drop_duplicates(), on="machine_key")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    _lines(speed, "batch_size", "speedup_vs_best_cpu", ["device", "family"], ["variant"], ax)
    ax.axhline(1.0, color="black", linewidth=1)
    ax.annotate("1x: break-even", (speed["batch_size"].min(), 1.0), fontsize=8, va="bottom")
    ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel="GPU speedup over the CPU's best (x)",
           title="GPU speedup over the same machine's CPU at its best thread count")  # fmt: skip
    _log_axes(ax)
    return _save(fig, path)


def plot_breakdown(parts: pd.DataFrame, frame: pd.DataFrame, path: Path) -> Path | None:
    if parts.empty:
        return None
    parts = parts.merge(frame[["machine_key", "host"]].drop_duplicates(), on="machine_key")
    parts = parts.assign(device=_device_label(parts))
    labels = [_label(parts, r, "device", partial=r.partial) + f"\nbatch {r.batch_size}" for r in parts.itertuples()]
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(parts)), 4.5))
    bottom = np.zeros(len(parts))
    for col, name in (
        ("loading_s", "data loading"),
        ("transfer_s", "host-to-device transfer"),
        ("compute_s", "compute"),
    ):
        values = parts[col].fillna(0).to_numpy(dtype=float)
        ax.bar(labels, values, bottom=bottom, label=name)
        bottom += values
    ax.set(ylabel="seconds per epoch (seed pipeline)", title="Where a seed-pipeline epoch's time goes")
    ax.tick_params(axis="x", labelsize=7)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_machines(frame: pd.DataFrame, path: Path) -> Path | None:
    rows = frame[(frame["family"] == "train") & (frame["pipeline"] == "resident")]
    if frame["machine_key"].nunique() < 2 or rows.empty:
        return None
    who = rows["host"] + " " + _device_label(rows)
    partial = rows.groupby(["machine_key", who])["partial"].transform("any")
    table = rows.assign(who=who + np.where(partial, " (partial)", "")).pivot_table(
        index="who", columns="batch_size", values="median", aggfunc="first"
    )
    fig, ax = plt.subplots(figsize=(7, 4.5))
    table.plot.bar(ax=ax, logy=True, rot=0)
    ax.set(xlabel="", ylabel="resident epoch (s, median)", title="Machines side by side: one training epoch")
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.legend(title="batch size", fontsize=8)
    return _save(fig, path)


# ---------------------------------------------------------------- writing


# A table of None means the section's sentence already says why there is nothing (no GPU);
# an empty table means that family was not in the runs.
def _markdown(table: pd.DataFrame | None) -> str:
    if table is None:
        return ""
    return table.to_markdown(index=False) if not table.empty else "_nothing measured_"


def _html_table(table: pd.DataFrame | None) -> str:
    if table is None:
        return ""
    if table.empty:
        return "<p><em>nothing measured</em></p>"
    # escape=True: every string from a saved run (host, CPU and GPU names, paths) is data, not markup.
    return f'<div class="wide">{table.to_html(index=False, escape=True, border=0, classes="t")}</div>'


def write_report(frame: pd.DataFrame, out: Path) -> list[Path]:
    """Write summary.csv, report.md, the PNG plots and index.html under `out`; return what was written.

    summary.csv holds every row of `frame` (every run, with --all-runs); the tables and plots
    use each machine's newest figure of each benchmark, so no speedup pairs two runs' rows twice.
    """
    out.mkdir(parents=True, exist_ok=True)
    written = []
    summary = out / "summary.csv"
    frame.to_csv(summary, index=False)
    written.append(summary)
    frame = select_newest(frame)

    # Plots name a machine by its host, unless two machines share a host name (then by machine key).
    named = frame.assign(host=_short_machine(frame))
    choices = cpu_choices(frame)
    speed = speedups(frame)
    cross = crossovers(speed)
    parts = breakdown(frame)
    threads = threads_table(frame, choices)
    has_gpu = bool(_is_gpu(frame["device"]).any())
    several = frame["machine_key"].nunique() > 1
    no_gpu = "There is no GPU in these runs: only CPU figures are shown."
    noise = f"A trailing ~ marks a noisy result: its IQR is over {NOISY_IQR_SHARE:.0%} of its median."
    cpu_rows = "A CPU row names its thread count: cpu 2t ran at 2 threads (torch's default per machine: see Machines)."

    sections = [
        ("Training epoch time", train_table(frame),
         "Median time of one epoch over the training set, per device, pipeline and batch size; lower is better. "
         "seed is the notes' DataLoader + ToTensor + .to(device) loop; resident keeps the uint8 set on the device. "
         + cpu_rows + " " + noise,
         plot_epoch_time(named, out / "epoch_time.png")),
        ("Inference", inference_table(frame),
         "Throughput: images per second over a pass (the test split; at the smallest batch sizes, its first batches: "
         "see summary.csv images). Latency: where measured, the p50 and p99 of single batches timed one at a time "
         "(n of them), which include the per-batch sync a pass does not make; else the mean time per batch of a pass. "
         "compute has the input on the device already, end_to_end moves each batch from the host and the labels back. "
         "Higher throughput and lower latency are better. " + cpu_rows,
         plot_inference(named, out / "inference_throughput.png")),
        ("Transfer bandwidth", transfer_table(frame),
         "GB/s of one copy by size: h2d host to device, d2h back, h2h a host copy (the CPU's memory-bandwidth reference). "
         "Where NVML reported the PCIe link, the share of its theoretical bandwidth is given and drawn as a dashed line.",
         plot_transfer(named, out / "transfer_bandwidth.png")),
        ("GPU speedup over the CPU", speedup_table(speed) if has_gpu else None,
         "The same machine's CPU median at torch's default thread count divided by the GPU's: above 1x the GPU is "
         "faster. Where another CPU thread count was faster, [in brackets] the speedup against that best count; "
         "the plot is against the best. " + (noise if has_gpu else no_gpu),
         plot_speedup(speed, named, out / "speedup.png")),
        ("Crossover batch size", crossover_table(cross) if has_gpu else None,
         "Against the CPU at its best thread count measured for that family, variant and batch size: the smallest "
         "batch size from which the GPU is faster at every larger size measured; best_speedup is against it too."
         if has_gpu else no_gpu,
         None),
        ("Where an epoch's time goes", breakdown_table(parts),
         "The seed epoch split three ways: compute is the resident epoch's time (same training, data already on the device); "
         "transfer is the number of batches times the measured time to copy one float32 batch from pageable memory "
         "(interpolated between the transfer sizes; none on the CPU); data loading is the rest of the seed epoch "
         "(DataLoader, PIL + ToTensor, collation, per-batch syncs). Derived, not measured directly.",
         plot_breakdown(parts, named, out / "epoch_breakdown.png")),
        ("Machines side by side", machines_table(frame),
         "The headline figure of each family per machine and device."
         + ("" if several else " There is one machine in these runs; copy other machines' results/ folders in to compare."),
         plot_machines(named, out / "machines.png")),
    ]  # fmt: skip
    if not threads.empty:  # only where some machine's CPU ran a family at more than one thread count
        sections.insert(
            4,
            ("CPU threads", threads,
             "Where a CPU ran a family at several thread counts: per variant and batch size, the fastest count measured "
             "and its speedup over torch's default count (median at the default / median at the best). " + noise,
             None),
        )  # fmt: skip

    facts = machine_facts(frame)
    note = partial_note(frame)
    md = ["# fmnist-bench report", "", "## Machines", "", _markdown(facts.drop(columns=["run_file"])), ""]
    md += [note, ""] if note else []
    for title, table, sentence, _plot in sections:
        md += [f"## {title}", "", sentence, "", _markdown(table), ""]
    report_md = out / "report.md"
    report_md.write_text("\n".join(md), encoding="utf-8")
    written.append(report_md)

    body = [
        "<h1>fmnist-bench report</h1>",
        "<p>Where does a GPU pay off for the FashionMNIST CNN, and where does the time go? "
        "Every figure is a median over timed rounds, warm-up excluded.</p>",
        "<h2>Machines</h2>",
        _html_table(facts),
    ]
    if note:
        body.append(f'<p class="partial">{html.escape(note)}</p>')
    for title, table, sentence, plot in sections:
        body += [f"<h2>{html.escape(title)}</h2>", f"<p>{html.escape(sentence)}</p>"]
        if plot is not None:
            written.append(plot)
            body.append(f'<img src="{html.escape(plot.name)}" alt="{html.escape(title)}">')
        body.append(_html_table(table))
    page = out / "index.html"
    page.write_text(_PAGE.format(body="\n".join(body)), encoding="utf-8")
    written.append(page)
    return written


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>fmnist-bench report</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }}
table.t {{ border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1.5em; }}
table.t th, table.t td {{ border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; }}
img {{ max-width: 100%; }}
.wide {{ overflow-x: auto; }}
.partial {{ border-left: 4px solid #c60; padding-left: 0.5em; }}
</style></head><body>
{body}
</body></html>
"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__)
    parser.add_argument(
        "paths", nargs="*", type=Path, default=[DEFAULT_RUNS], help="saved runs: files or folders (default: results)"
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="where to write the report (default: results/report)"
    )
    parser.add_argument("--all-runs", action="store_true", help="keep every run, not only the newest of each machine")
    args = parser.parse_args(argv)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RunFileWarning)
        try:
            frame = load_frame(args.paths, all_runs=args.all_runs)
        except FileNotFoundError as exc:
            parser.error(str(exc))
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    # Recovery writes into the runs' folders and takes a dead run's lock: its own command, never a side effect.
    for journal in find_journals(args.paths):
        if is_live(journal):
            said = "the journal of a run still going: its cases come into the report once it has saved"
        else:
            said = (
                "the journal of a run that was killed before it saved: its finished cases are not in this report; "
                f"`python -m bench.recover {journal.parent}` turns it into a saved run"
            )
        print(f"warning: {journal}: {said}.", file=sys.stderr)
    if frame.empty:
        print(f"error: no fmnist-bench runs found under {', '.join(map(str, args.paths))}", file=sys.stderr)
        return 1
    for path in write_report(frame, args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
