"""The report's plots: one panel per machine, stacked, so no two machines share a series, and the data beside each.

Plain matplotlib on a fixed layout: every picture is WIDTH_IN wide at DPI (560 px), so a phone's
390 px screen shows it at over 60% of its pixels and its 10 pt text at about 9 px; its height
grows with its panels and legends. Measured on the 2-core VM: seaborn's relplot and
bbox_inches="tight" were most of a machine's page (docs/report.md, "Drawing a page").
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: the report is written, never shown

import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from bench.analysis.cells import device_label  # noqa: E402
from bench.analysis.held import same_setting  # noqa: E402
from bench.analysis.words import BY_MODEL_TITLE, flops_said, fmt_time  # noqa: E402

__all__ = [
    "DPI",
    "RANKING_PART",
    "WIDTH_IN",
    "plot_breakdown",
    "plot_by_model",
    "plot_epoch_time",
    "plot_inference",
    "plot_limits",
    "plot_machines",
    "plot_ranking",
    "plot_speedup",
    "plot_transfer",
]

# 560 px: the page's column at 390 px is about 365 px, 65% of it (a picture shown under 60% of its pixels
# reads as a blur of 3 px text).
WIDTH_IN, DPI = 5.6, 100
FONT = 10  # points: 13.9 px drawn, about 9 px on a phone
# The fixed layout, in inches: the y axis's labels at the left, a panel's title above it, its x
# axis's ticks and label below, a legend row.
_LEFT, _RIGHT, _TITLE, _BELOW, _LEGEND_ROW, _SUPTITLE = 0.85, 0.35, 0.3, 0.6, 0.245, 0.4
_PANEL = 2.7  # one panel's axes
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p")
_DASHES = ("-", "--", ":", "-.")

# Strings from run files are data: "$x$" in a host name must print as typed, not as mathtext
# (an unbalanced "$" would stop the report). Every plot is drawn under these settings.
_RC = {
    "text.parse_math": False,
    "text.usetex": False,
    "font.size": FONT,
    "axes.titlesize": FONT,
    "axes.labelsize": FONT,
    "xtick.labelsize": FONT,
    "ytick.labelsize": FONT,
    "legend.fontsize": FONT,
}


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
            # no minor ticks: each is three artists to draw, and the 1-2-5 grid already reads
            axis.set_minor_locator(matplotlib.ticker.NullLocator())
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
    # The layout is fixed (_stack): no bbox_inches="tight", which draws the figure twice to measure it.
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _title_lines(title: str) -> int:
    return title.count("\n") + 1


def _stack(panels: list[tuple[str, int]], title: str, height: float = _PANEL):
    """A figure WIDTH_IN wide of panels stacked one above the other, each with its title and a legend of `rows`
    rows beneath it: [(panel title, legend rows)] -> (figure, [axes], [each legend's top, as a fraction of the
    figure's height]). Laid out by hand, in inches."""
    # A title wider than the picture is wrapped (about 62 characters of 10 pt in 5.6 in).
    panels = [("\n".join(textwrap.fill(line, 62) for line in n.split("\n")), r) for n, r in panels]
    blocks = [
        _TITLE * _title_lines(name) + height + _BELOW + _LEGEND_ROW * rows + 0.1
        for name, rows in panels
    ]
    total = _SUPTITLE + sum(blocks)
    fig = plt.figure(figsize=(WIDTH_IN, total), dpi=DPI)
    fig.suptitle(title, y=1 - 0.12 / total, va="top", fontsize=FONT + 1)
    axes, tops, top = [], [], _SUPTITLE
    width = WIDTH_IN - _LEFT - _RIGHT
    for (name, _rows), block in zip(panels, blocks, strict=True):
        axes_top = top + _TITLE * _title_lines(name)
        ax = fig.add_axes(
            (_LEFT / WIDTH_IN, 1 - (axes_top + height) / total, width / WIDTH_IN, height / total)
        )
        ax.set_title(name, fontsize=FONT)
        tops.append(1 - (axes_top + height + _BELOW) / total)
        axes.append(ax)
        top += block
    return fig, axes, tops


def _legend(fig, top: float, handles, labels, columns: int = 2) -> None:
    """The panel's legend beneath its axes, left-aligned with them, in `columns` columns."""
    if not handles:
        return
    fig.legend(
        handles,
        labels,
        loc="upper left",
        bbox_to_anchor=(_LEFT / WIDTH_IN - 0.02, top),
        ncol=columns,
        frameon=False,
        handlelength=2.2,
        columnspacing=1.0,
        borderaxespad=0,
    )


def _legend_rows(count: int, columns: int = 2) -> int:
    return math.ceil(count / columns)


def _columns(labels) -> int:
    """Two legend columns where the labels fit half the width (about 28 characters at 10 pt), else one."""
    return 2 if max((len(str(label)) for label in labels), default=0) <= 26 else 1


def _lines(
    data: pd.DataFrame, x: str, y: str, hue: str, style: str, xlabel: str, ylabel: str, title: str
):
    """A line per (hue, style) in each panel: colour by `hue`, marker and dash by `style`, log-log; (figure,
    {panel: axes}). What seaborn's relplot drew, without its cost."""
    hues = list(dict.fromkeys(data[hue].astype(str)))
    styles = list(dict.fromkeys(data[style].astype(str)))
    names = list(dict.fromkeys(data["panel"]))
    series = {}
    for name in names:
        mine = data[data["panel"] == name]
        keys = list(dict.fromkeys(zip(mine[hue].astype(str), mine[style].astype(str), strict=True)))
        labels = [h if h == s else f"{h} {s}" for h, s in keys]
        series[name] = (mine, keys, labels, _columns(labels))
    fig, axes, tops = _stack(
        [(n, _legend_rows(len(series[n][1]), series[n][3])) for n in names], title
    )
    out = {}
    for name, ax, top in zip(names, axes, tops, strict=True):
        mine, keys, labels, columns = series[name]
        handles = []
        for h, s in keys:
            line = mine[(mine[hue].astype(str) == h) & (mine[style].astype(str) == s)].sort_values(
                x
            )
            i, j = hues.index(h), styles.index(s)
            (drawn,) = ax.plot(
                line[x],
                line[y],
                color=f"C{i % 10}",
                marker=_MARKERS[j % len(_MARKERS)],
                linestyle=_DASHES[j % len(_DASHES)],
                markersize=5,
                linewidth=1.5,
            )
            handles.append(drawn)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        _log_axes(ax)
        _legend(fig, top, handles, labels, columns)
        out[name] = ax
    return fig, out


def _each_panel(axes: dict, data: pd.DataFrame):
    """(axes, the rows drawn in it) for every panel."""
    for panel, ax in axes.items():
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
        fig, _axes = _lines(data, "batch_size", y, "device", variant, "batch size", ylabel, title)
        _write_data(data, path, "batch_size", y, ["device", variant])
        return _save(fig, path)


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
        fig, axes = _lines(
            data,
            "size",
            "gbps",
            "copy",
            "dtype",
            "images moved (1x28x28 each)",
            "GB/s (median)",
            "Transfer bandwidth",
        )
        for ax, mine in _each_panel(axes, data):
            for r in mine.dropna(subset=["link_gbps"]).drop_duplicates("device").itertuples():
                ax.axhline(r.link_gbps, linestyle="--", color="grey", linewidth=1)
                ax.annotate(
                    f"{r.device} PCIe theoretical, {r.link_gbps:.3g} GB/s",
                    (mine["size"].min(), r.link_gbps),
                    fontsize=FONT - 1,
                    va="bottom",
                )
        _write_data(data, path, "size", "gbps", ["copy", "dtype"])
        return _save(fig, path)


def plot_speedup(speed: pd.DataFrame, path: Path) -> Path | None:
    """GPU over the same machine's CPU at its best thread count, as the crossover is: the GPU's case at its weakest."""
    if speed.empty:
        return None
    data = _panels(speed).assign(series=lambda f: f["device"] + " " + f["family"])
    with plt.rc_context(_RC):
        fig, axes = _lines(
            data,
            "batch_size",
            "speedup_vs_best_cpu",
            "series",
            "variant",
            "batch size",
            "GPU over the CPU's best (x)",
            "GPU speedup over the same machine's CPU",
        )
        for ax, mine in _each_panel(axes, data):
            ax.axhline(1.0, color="black", linewidth=1)
            ax.annotate(
                "1x: break-even", (mine["batch_size"].min(), 1.0), fontsize=FONT - 1, va="bottom"
            )
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
        return _save(fig, path)


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
        # One panel a row, as every plot: a row of machines would not read on a phone. Room below
        # for the bars' two-line names.
        fig, axes, tops = _stack(
            [(p, 1) for p in panels], "Where a seed-pipeline epoch's time goes"
        )
        for ax, top, panel in zip(axes, tops, panels, strict=True):
            mine = data[data["panel"] == panel]
            bottom = np.zeros(len(mine))
            handles = []
            for i, (col, _name) in enumerate(_PARTS):
                values = mine[col].fillna(0).to_numpy(dtype=float)
                handles.append(ax.bar(mine["bar"], values, bottom=bottom, color=f"C{i}", width=0.6))
                bottom += values
            ax.set_ylabel("s per seed epoch")
            ax.tick_params(axis="x", labelsize=FONT - 1 if len(mine) > 4 else FONT)
            _legend(fig, top, handles, [name for _, name in _PARTS], columns=3)
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
        fig, axes = _lines(
            data,
            "batch_size",
            "gflops",
            "step",
            "step",
            "batch size",
            "achieved GFLOP/s",
            "Achieved FLOP/s against the measured peak",
        )
        for ax, mine in _each_panel(axes, data):
            first = mine.iloc[0]
            same = same_setting(peaks, first)
            for column, style in (("peak_float32", "--"), ("peak_bfloat16", ":")):
                value = same[column].dropna()
                if not value.empty:
                    ax.axhline(value.iloc[0] / 1e9, color="0.3", linestyle=style, linewidth=1)
                    ax.annotate(
                        column.replace("peak_", "peak "),
                        (0.01, value.iloc[0] / 1e9),
                        fontsize=FONT - 1,
                        xycoords=("axes fraction", "data"),
                        va="bottom",
                    )
            _log_axes(ax)
        _write_data(data, path, "batch_size", "gflops", ["step"])
        return _save(fig, path)


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
    whos = list(dict.fromkeys(data["who"]))
    sizes = sorted(data["batch_size"].unique())
    with plt.rc_context(_RC):
        # A machine's name and device on two lines where one would not fit the picture.
        names = [w.replace(" | ", "\n") if len(w) > 50 else w for w in whos]
        fig, (ax,), (top,) = _stack(
            [("one training epoch, data resident", sum(n.count("\n") + 1 for n in names))],
            "Machines side by side",
        )
        # Each machine's dots a little apart at each batch size, so that none hides another.
        spread = 0.6 / max(len(whos), 1)
        handles = []
        for i, who in enumerate(whos):
            mine = data[data["who"] == who]
            x = [sizes.index(s) - 0.3 + spread * (i + 0.5) for s in mine["batch_size"]]
            (drawn,) = ax.plot(
                x, mine["median"], marker=_MARKERS[i % len(_MARKERS)], linestyle="none",
                color=f"C{i % 10}", markersize=6,
            )  # fmt: skip
            handles.append(drawn)
        ax.set_xticks(range(len(sizes)), [f"{s:,}" for s in sizes])
        ax.set_xlim(-0.5, len(sizes) - 0.5)
        ax.set_yscale("log")
        _log_axes(ax)
        ax.set(xlabel="batch size", ylabel="resident epoch (s, median)")
        _legend(fig, top, handles, names, columns=1)
        _write_data(data, path, "batch_size", "median", ["who"])
        return _save(fig, path)


# A ranking's picture holds at most this many machines (about 22 px each: under 3,500 px tall); a
# longer one is split.
RANKING_PART = 150
_RANK_LABEL = (
    44  # characters of a machine's name on a ranking's axis: its table beside says it whole
)


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
        names = []
        for r in mine.itertuples():
            name = f"{r.rank}. {r.label} · {r.device}"
            names.append(name if len(name) <= _RANK_LABEL else name[: _RANK_LABEL - 1] + "…")
        with plt.rc_context({**_RC, "font.size": FONT - 1}):
            # Fixed layout: the names take the left 55%, the axis the rest; 0.22 in a machine.
            height = 1.3 + 0.22 * len(mine)
            fig = plt.figure(figsize=(WIDTH_IN, height), dpi=DPI)
            ax = fig.add_axes((0.55, 0.55 / height, 0.42, 1 - 1.15 / height))
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
            ax.set_yticks(y, names, fontsize=FONT - 1)
            ax.set_ylim(len(mine) - 0.5, -0.5)  # best at the top
            if log:
                ax.set_xscale("log")
            ax.set_xlim(*limits)
            if log:
                _log_axes(ax)
            ax.grid(True, axis="x", alpha=0.3)
            ax.tick_params(axis="x", top=True, labeltop=True)  # a tall picture's axis at both ends
            last = min(start + size, len(rows))
            ax.set_xlabel(ranking.unit)
            fig.suptitle(
                f"{ranking.title}: {start + 1:,}-{last:,} of {len(rows):,}",
                y=1 - 0.08 / height,
                va="top",
                fontsize=FONT,
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
            written.append(_save(fig, path))
    return written


def plot_by_model(view: pd.DataFrame, path: Path) -> Path | None:
    """Where model size moves the crossover (bench/analysis/models.py by_model): per machine, each step's GPU
    speedup (or, without a GPU, the CPU's time an image) against the forward FLOPs an image of each
    model it measured, a point per model, step and batch size."""
    data = view[view["value"].notna() & view["flops"].notna()]
    if data.empty or data["model"].nunique() < 2:
        return None
    # A panel per machine and measure: a GPU's speedups never share an axis with a CPU's seconds.
    data = _panels(data)
    data = data.assign(
        panel=data["panel"]
        + np.where(data["measure"] == "speedup", "\nGPU over its CPU", "\nits CPU alone"),
        size="batch " + data["batch_size"].map("{:,}".format),
        step=data["family"] + " " + data["variant"] + " on " + data["device"],
    )
    with plt.rc_context(_RC):
        fig, axes = _lines(
            data,
            "flops",
            "value",
            "size",
            "step",
            "forward FLOPs an image (the model's work)",
            "",
            BY_MODEL_TITLE,
        )
        for ax, mine in _each_panel(axes, data):
            speed = (mine["measure"] == "speedup").all()
            ax.set_ylabel("GPU over the CPU (x)" if speed else "CPU time an image")
            if not speed:
                ax.yaxis.set_major_formatter(
                    matplotlib.ticker.FuncFormatter(lambda v, _pos: fmt_time(v))
                )
            # Points, not lines: two models are two workloads, with nothing measured between them.
            for line in ax.get_lines():
                line.set_linestyle("none")
            # a tick at each model's work, named by it: the models are the points of this axis
            at = sorted(mine["flops"].unique())
            ax.xaxis.set_major_locator(matplotlib.ticker.FixedLocator(at))
            ax.xaxis.set_major_formatter(
                matplotlib.ticker.FixedFormatter([flops_said(v) for v in at])
            )
            ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
            if speed:
                ax.axhline(1.0, color="black", linewidth=1)
                sure = mine[mine["low"].notna() & mine["high"].notna()]
                ax.vlines(sure["flops"], sure["low"], sure["high"], color="0.3", linewidth=1.5)
            for model, rows in mine.groupby("model", sort=False):
                x = rows["flops"].iloc[0]
                ax.annotate(
                    str(model).split(" ")[0].removeprefix("torchvision:"),
                    (x, rows["value"].max()),
                    fontsize=FONT - 2,
                    va="bottom",
                    # the rightmost model's name ends at its point: inside the picture
                    ha="right" if x == at[-1] and len(at) > 1 else "left",
                )
        for legend in fig.legends:  # (drawn by _lines with the lines: its keys are points too)
            for handle in legend.legend_handles:
                handle.set_linestyle("none")
        _write_data(data, path, "flops", "value", ["size", "step"], interval=("low", "high"))
        return _save(fig, path)
