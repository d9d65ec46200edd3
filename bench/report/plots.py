"""The report's plots: one panel per machine (seaborn facets), so no two machines share a series, and the data beside each."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: the report is written, never shown

import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from bench.analysis.cells import device_label  # noqa: E402
from bench.analysis.held import same_setting  # noqa: E402

__all__ = [
    "RANKING_PART",
    "plot_breakdown",
    "plot_epoch_time",
    "plot_inference",
    "plot_limits",
    "plot_machines",
    "plot_ranking",
    "plot_speedup",
    "plot_transfer",
]

# Strings from run files are data: "$x$" in a host name must print as typed, not as mathtext
# (an unbalanced "$" would stop the report). Every plot is drawn under these settings.
_RC = {"text.parse_math": False, "text.usetex": False}


def _log_axes(ax) -> None:
    """Log axes labelled 1, 2, 5, 10, ... rather than powers of ten, with labels on a span under a decade too."""
    plain = matplotlib.ticker.FuncFormatter(
        lambda v, _pos: f"{v:,.0f}" if v >= 1000 else f"{v:.3g}"
    )
    for axis, limits in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
        if axis.get_scale() != "log" or min(limits) <= 0:
            continue
        decades = np.log10(max(limits) / min(limits))
        # 1-2-5 steps on a short axis; one label a decade where more would collide.
        subs = (1.0, 2.0, 5.0) if decades <= 3 else (1.0,)
        axis.set_major_locator(matplotlib.ticker.LogLocator(subs=subs))
        axis.set_major_formatter(plain)
        if decades < 1:  # under a decade, 1-2-5 may leave one tick: label the minor ones as well
            axis.set_minor_formatter(plain)
        else:
            axis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.grid(True, which="major", alpha=0.3)


def _panels(frame: pd.DataFrame) -> pd.DataFrame:
    """The facets: a panel per machine (its unique label), and a separate one for its quick-run figures if any."""
    quick = frame["quick"].astype(bool)
    return frame.assign(
        machine=frame["label"],
        panel=frame["label"].where(~quick, frame["label"] + "\nquick run (a subset)"),
    )


def _write_data(
    data: pd.DataFrame, path: Path, x: str, y: str, series: list[str], interval=None
) -> None:
    """The plotted points beside the plot (same name, .csv): panel, series, x, y, for readers and tests; a ratio
    with its 95% interval (y_low, y_high: empty for a figure of one round) where `interval` names
    its columns."""
    out = pd.DataFrame(
        {
            "panel": data["panel"].str.replace("\n", " | "),
            "series": data[series].astype(str).agg(" ".join, axis=1),
            "x": data[x],
            "y": data[y],
        }
    )
    if interval is not None:
        out["y_low"], out["y_high"] = data[interval[0]], data[interval[1]]
    out.to_csv(path.with_suffix(".csv"), index=False)


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def _relplot(
    data: pd.DataFrame, x: str, y: str, hue: str, style: str, xlabel: str, ylabel: str, title: str
):
    panels = data["panel"].nunique()
    grid = sns.relplot(
        data=data,
        x=x,
        y=y,
        hue=hue,
        style=style,
        col="panel",
        col_wrap=min(panels, 2),
        kind="line",
        markers=True,
        dashes=True,
        height=3.6,
        aspect=1.25,
        facet_kws={"sharey": False, "sharex": False},
        estimator=None,
        sort=True,
    )
    grid.set(xscale="log", yscale="log")
    grid.set_titles(col_template="{col_name}", size=9)
    grid.set_axis_labels(xlabel, ylabel)
    for ax in grid.axes.flat:
        _log_axes(ax)
    grid.figure.suptitle(title, y=1.02)
    return grid


def _each_panel(grid, data: pd.DataFrame):
    """(axes, the rows drawn in it) for every panel of a relplot faceted by panel."""
    for panel, ax in grid.axes_dict.items():
        yield ax, data[data["panel"] == panel]


def _sweep(
    frame: pd.DataFrame, family: str, y: str, variant: str, ylabel: str, title: str, path: Path
) -> Path | None:
    rows = frame[frame["family"] == family]
    if rows.empty:
        return None
    data = _panels(rows.sort_values(["device", "cpu_threads"])).assign(
        device=lambda f: device_label(f)
    )
    data[variant] = data[variant].astype(str)
    with plt.rc_context(_RC):
        grid = _relplot(data, "batch_size", y, "device", variant, "batch size", ylabel, title)
        _write_data(data, path, "batch_size", y, ["device", variant])
        return _save(grid.figure, path)


def plot_epoch_time(frame: pd.DataFrame, path: Path) -> Path | None:
    return _sweep(
        frame, "train", "median", "pipeline", "one epoch (s, median)", "Training epoch time", path
    )


def plot_inference(frame: pd.DataFrame, path: Path) -> Path | None:
    return _sweep(
        frame,
        "inference",
        "images_per_s",
        "variant",
        "images/s (median)",
        "Inference throughput",
        path,
    )


def plot_transfer(frame: pd.DataFrame, path: Path) -> Path | None:
    """Copy bandwidth by size per machine; the PCIe link's theoretical GB/s, where NVML gave it, as a dashed line."""
    rows = frame[frame["family"] == "transfer"]
    if rows.empty:
        return None
    data = _panels(rows.sort_values(["device", "cpu_threads"])).assign(
        device=lambda f: device_label(f)
    )
    data["copy"] = (
        data["device"] + " " + data["direction"].astype(str) + " " + data["memory"].astype(str)
    )
    with plt.rc_context(_RC):
        grid = _relplot(
            data,
            "size",
            "gbps",
            "copy",
            "dtype",
            "images moved (1x28x28 each)",
            "GB/s (median)",
            "Transfer bandwidth",
        )
        for ax, mine in _each_panel(grid, data):
            for r in mine.dropna(subset=["link_gbps"]).drop_duplicates("device").itertuples():
                ax.axhline(r.link_gbps, linestyle="--", color="grey", linewidth=1)
                ax.annotate(
                    f"{r.device} PCIe theoretical, {r.link_gbps:.3g} GB/s",
                    (mine["size"].min(), r.link_gbps),
                    fontsize=7,
                    va="bottom",
                )
        _write_data(data, path, "size", "gbps", ["copy", "dtype"])
        return _save(grid.figure, path)


def plot_speedup(speed: pd.DataFrame, path: Path) -> Path | None:
    """GPU over the same machine's CPU at its best thread count, as the crossover is: the GPU's case at its weakest."""
    if speed.empty:
        return None
    data = _panels(speed).assign(series=lambda f: f["device"] + " " + f["family"])
    with plt.rc_context(_RC):
        grid = _relplot(
            data,
            "batch_size",
            "speedup_vs_best_cpu",
            "series",
            "variant",
            "batch size",
            "GPU speedup over the CPU's best (x)",
            "GPU speedup over the same machine's CPU",
        )
        for ax, mine in _each_panel(grid, data):
            ax.axhline(1.0, color="black", linewidth=1)
            ax.annotate("1x: break-even", (mine["batch_size"].min(), 1.0), fontsize=8, va="bottom")
            # Each point's 95% interval (none for a figure of one round): a bar that crosses 1x is
            # no difference.
            sure = mine[mine["vs_best_low"].notna() & mine["vs_best_high"].notna()]
            ax.vlines(
                sure["batch_size"],
                sure["vs_best_low"],
                sure["vs_best_high"],
                color="0.3",
                linewidth=1.5,
            )
        _write_data(
            data,
            path,
            "batch_size",
            "speedup_vs_best_cpu",
            ["series", "variant"],
            interval=("vs_best_low", "vs_best_high"),
        )
        return _save(grid.figure, path)


_PARTS = (
    ("loading_s", "data loading"),
    ("transfer_s", "host-to-device copies"),
    ("compute_s", "compute"),
)


def plot_breakdown(parts: pd.DataFrame, path: Path) -> Path | None:
    """Stacked bars per machine panel: one bar per device and batch size, split into loading, copies and compute."""
    if parts.empty:
        return None
    data = _panels(parts).assign(device=lambda f: device_label(f))
    data["bar"] = data["device"] + "\nbatch " + data["batch_size"].map("{:,}".format)
    panels = list(dict.fromkeys(data["panel"]))
    with plt.rc_context(_RC):
        # Two panels a row, as the other plots wrap: a row of every machine would not read on a
        # phone.
        columns = min(len(panels), 2)
        rows = -(-len(panels) // columns)
        width = max(4.5, 0.9 * data.groupby("panel")["bar"].nunique().max())
        fig, axes = plt.subplots(rows, columns, figsize=(width * columns, 4 * rows), squeeze=False)
        for ax in axes.flat[len(panels) :]:
            ax.set_visible(False)
        colors = sns.color_palette(n_colors=len(_PARTS))
        for ax, panel in zip(axes.flat, panels, strict=False):
            mine = data[data["panel"] == panel]
            bottom = np.zeros(len(mine))
            for (col, name), color in zip(_PARTS, colors, strict=True):
                values = mine[col].fillna(0).to_numpy(dtype=float)
                ax.bar(mine["bar"], values, bottom=bottom, label=name, color=color)
                bottom += values
            ax.set_title(panel, fontsize=9)
            ax.set_ylabel("seconds per seed epoch")
            ax.tick_params(axis="x", labelsize=7)
        axes.flat[0].legend(fontsize=8)
        fig.suptitle("Where a seed-pipeline epoch's time goes")
        long = data.melt(
            id_vars=["panel", "bar"], value_vars=[c for c, _ in _PARTS], var_name="part"
        )
        _write_data(
            long.assign(series=long["bar"].str.replace("\n", " ")),
            path,
            "part",
            "value",
            ["series"],
        )
        fig.tight_layout()
        return _save(fig, path)


def plot_limits(held: pd.DataFrame, peaks: pd.DataFrame, path: Path) -> Path | None:
    """Achieved FLOP/s against the measured peaks: a panel per machine and device (the CPU per thread count), a
    line per training step and compute inference step across batch sizes, each peak (float32,
    bfloat16) dashed. `held`: bench/report/limits.held's rows; `peaks`: its device_limits."""
    rows = held[(held["family"] == "train") | (held["mode"] == "compute")]
    rows = rows[rows["achieved_flops_s"].notna()]
    if rows.empty:
        return None
    data = _panels(rows.sort_values(["device", "cpu_threads", "batch_size"]))
    data = data.assign(
        panel=data["panel"] + " · " + device_label(data),
        gflops=data["achieved_flops_s"] / 1e9,
        step=[f"{f} {p}" for f, p in zip(data["family"], data["pipeline"], strict=True)],
    )
    with plt.rc_context(_RC):
        grid = _relplot(
            data,
            "batch_size",
            "gflops",
            "step",
            "step",
            "batch size",
            "achieved GFLOP/s",
            "Achieved FLOP/s against the measured peak",
        )
        for ax, mine in _each_panel(grid, data):
            first = mine.iloc[0]
            same = same_setting(peaks, first)
            for column, style in (("peak_float32", "--"), ("peak_bfloat16", ":")):
                value = same[column].dropna()
                if not value.empty:
                    ax.axhline(value.iloc[0] / 1e9, color="0.3", linestyle=style, linewidth=1)
                    ax.annotate(
                        column.replace("peak_", "peak "),
                        (0.01, value.iloc[0] / 1e9),
                        fontsize=7,
                        xycoords=("axes fraction", "data"),
                        va="bottom",
                    )
            _log_axes(ax)
        _write_data(data, path, "batch_size", "gflops", ["step"])
        return _save(grid.figure, path)


def plot_machines(frame: pd.DataFrame, path: Path) -> Path | None:
    """Machines side by side: each machine's devices' resident epoch per batch size, as dots on a log axis.

    Dots, not bars: on a log axis a bar's length means nothing, a dot's position does.
    Full runs only: a quick epoch is another quantity.
    """
    rows = frame[(frame["family"] == "train") & (frame["pipeline"] == "resident") & ~frame["quick"]]
    if frame["machine_key"].nunique() < 2 or rows.empty:
        return None
    data = rows.assign(who=rows["label"] + " | " + device_label(rows), panel="all machines")
    data = data.sort_values(["who", "batch_size"])
    with plt.rc_context(_RC):
        fig, ax = plt.subplots(figsize=(8, 4.5))
        # dodge spreads the machines' dots apart; seaborn 0.13 divides by (levels - 1), so only with
        # two or more.
        dodge = 0.3 if data["who"].nunique() > 1 else False
        sns.pointplot(
            data=data,
            x="batch_size",
            y="median",
            hue="who",
            linestyle="none",
            dodge=dodge,
            ax=ax,
            markers="o",
            errorbar=None,
        )
        ax.set_yscale("log")
        _log_axes(ax)
        ax.set(
            xlabel="batch size",
            ylabel="resident epoch (s, median)",
            title="Machines side by side: one training epoch",
        )
        ax.legend(fontsize=7, title="machine | device")
        _write_data(data, path, "batch_size", "median", ["who"])
        fig.tight_layout()
        return _save(fig, path)


# A ranking's picture holds at most this many machines (about 22 px each: under 3,500 px tall); a
# longer one is split.
RANKING_PART = 150


def plot_ranking(
    ranking, folder: Path, parts: list[int] | None = None, size: int | None = None
) -> list[Path]:
    """A ranking (bench.report.fleet.Ranking) as dots on one axis, best at the top, each labelled with its rank, machine
    and device, its 95% interval where it has one; split into pictures of RANKING_PART machines,
    each with its data (`parts`: only those, counted from 1; `size`: machines a picture,
    RANKING_PART unless given). Every part has the whole ranking's axis, so that parts compare."""
    size = size or RANKING_PART
    rows = ranking.rows.dropna(subset=["value"])
    values = pd.concat([rows["value"], rows["low"], rows["high"]]).dropna()
    log = ranking.log and (values > 0).all()
    limits = (
        (values.min() / 1.15, values.max() * 1.15)
        if log
        else (min(0, values.min()), values.max() * 1.05)
    )
    written = []
    for part, start in enumerate(range(0, len(rows), size), start=1):
        if parts is not None and part not in parts:
            continue
        mine = rows.iloc[start : start + size]
        path = folder / f"ranking_{ranking.key}_{part}.png"
        with plt.rc_context(_RC):
            fig, ax = plt.subplots(figsize=(9, 1.3 + 0.22 * len(mine)))
            y = np.arange(len(mine))
            sure = mine["low"].notna() & mine["high"].notna()
            ax.hlines(
                y[sure.to_numpy()],
                mine.loc[sure, "low"],
                mine.loc[sure, "high"],
                color="0.4",
                linewidth=1.5,
            )
            ax.plot(mine["value"], y, "o", color="C0", markersize=4)
            ax.set_yticks(
                y, [f"{r.rank}. {r.label} · {r.device}" for r in mine.itertuples()], fontsize=8
            )
            ax.set_ylim(len(mine) - 0.5, -0.5)  # best at the top
            if log:
                ax.set_xscale("log")
            ax.set_xlim(*limits)
            if log:
                _log_axes(ax)
            ax.grid(True, axis="x", alpha=0.3)
            ax.tick_params(axis="x", top=True, labeltop=True)  # a tall picture's axis at both ends
            last = min(start + size, len(rows))
            ax.set(
                xlabel=ranking.unit,
                title=f"{ranking.title}: {start + 1:,}-{last:,} of {len(rows):,}",
            )
            out = pd.DataFrame(
                {
                    "rank": mine["rank"],
                    "machine": mine["label"],
                    "device": mine["device"],
                    "value": mine["value"],
                    "low": mine["low"],
                    "high": mine["high"],
                }
            )
            out.to_csv(path.with_suffix(".csv"), index=False)
            fig.tight_layout()
            written.append(_save(fig, path))
    return written
