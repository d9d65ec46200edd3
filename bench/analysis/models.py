"""The models of a results table, kept apart, and where model size moves the crossover: one machine's figures of
each model it measured, against the work an image.

Every figure of the suite is of one model: a case names the model it ran (format 8; none: the notes'
CNN), and the answer, the report and compare take each model's rows alone (`of_model`), with the
device limits, which belong to no model. `by_model` is the one view across models: for each machine
that measured more than one, each model's size (parameters, forward FLOPs an image) beside its GPU
speedup per batch size with its interval, and its crossover; on a machine without a GPU, the time an
image its CPU took instead. No figure of one model is ever paired with another's.
"""

from __future__ import annotations

import pandas as pd

from bench.analysis import figures
from bench.format.names import CNN_MODEL

__all__ = ["BY_MODEL_COLUMNS", "by_model", "model_size", "models_of", "of_model"]

# The steps the view follows: the notes' loop (seed) and the resident epoch in training, the plain
# inference pass: the ones every run measures at every batch size.
_STEPS = {"train": ("seed", "resident"), "inference": ("compute",)}

BY_MODEL_COLUMNS = [
    "machine_key",
    "label",
    "model",
    "parameters",
    "flops",
    "family",
    "variant",
    "batch_size",
    "device",
    "device_name",
    "measure",  # "speedup" (the GPU over the CPU at torch's default threads) or "seconds an image" (the CPU's)
    "value",
    "low",
    "high",
    "crossover",  # the GPU's crossover batch size for that model and step, in words
    "quick",
]


def models_of(frame: pd.DataFrame) -> list[str]:
    """The models in `frame`, the notes' CNN first, then the others from the least work an image to the most
    (those whose work is unknown last)."""
    if frame.empty or "model" not in frame:
        return []
    rows = frame[frame["model"].notna()]
    flops = pd.to_numeric(rows["model_flops"], errors="coerce").groupby(rows["model"]).max()
    names = [str(m) for m in dict.fromkeys(rows["model"].astype(str))]

    def order(model: str) -> tuple:
        work = flops.get(model)
        known = work is not None and pd.notna(work)
        return (model != CNN_MODEL, not known, float(work) if known else 0.0, model)

    return sorted(names, key=order)


def of_model(frame: pd.DataFrame, model: str) -> pd.DataFrame:
    """The rows of one model, with the device limits of the machines that measured it (the limits belong to no
    model: every model a machine measured is held against them, its newest run's where one run measured
    one model and another run the other; a machine of other models alone adds none). A machine that
    measured its limits alone (`-k limits`) shows them with the notes' CNN, the default model."""
    if frame.empty or "model" not in frame:
        return frame
    own = frame["model"].eq(model)
    machines = set(frame.loc[own, "machine_key"])
    if model == CNN_MODEL:
        modelled = set(frame.loc[frame["model"].notna(), "machine_key"])
        machines |= set(frame["machine_key"]) - modelled
    return frame[own | (frame["model"].isna() & frame["machine_key"].isin(machines))]


def model_size(rows: pd.DataFrame) -> tuple[float, float]:
    """(parameters, forward FLOPs an image) of one model's rows, where the run recorded them (else NaN)."""
    parameters = pd.to_numeric(rows["model_parameters"], errors="coerce").max()
    flops = pd.to_numeric(rows["model_flops"], errors="coerce").max()
    return parameters, flops


def by_model(frame: pd.DataFrame) -> pd.DataFrame:
    """For each machine of `frame` that measured more than one model: each model's size and, per family, step and
    batch size, its GPU's speedup with its 95% interval and crossover, or where the machine ran no GPU, its
    CPU's seconds an image at torch's default threads (each model's full figures where it has them, else its
    quick ones, marked quick)."""
    out = []
    for key, machine in frame.groupby("machine_key", sort=False):
        models = models_of(machine)
        if len(models) < 2:
            continue
        for model in models:
            rows = of_model(machine, model)
            # its full figures where it has any, else its quick ones (said so: quick)
            quick = bool(rows.loc[rows["model"].eq(model), "quick"].all())
            rows = rows[rows["quick"] == quick]
            parameters, flops = model_size(rows[rows["model"].eq(model)])
            base = {
                "machine_key": key,
                "label": rows["label"].iloc[0],
                "model": model,
                "parameters": parameters,
                "flops": flops,
                "quick": quick,
            }
            speed = figures.speedups(rows)
            if not speed.empty:
                out += _speedups(base, speed, figures.crossovers(speed))
            else:
                out += _cpu_times(base, rows)
    return pd.DataFrame(out, columns=BY_MODEL_COLUMNS)


def _speedups(base: dict, speed: pd.DataFrame, cross: pd.DataFrame) -> list[dict]:
    out = []
    for family, steps in _STEPS.items():
        for variant in steps:
            found = speed[(speed["family"] == family) & (speed["variant"] == variant)]
            for _, r in found.sort_values("batch_size").iterrows():
                said = cross[
                    (cross["device"] == r["device"])
                    & (cross["family"] == family)
                    & (cross["variant"] == variant)
                ]
                out.append(
                    {
                        **base,
                        "family": family,
                        "variant": variant,
                        "batch_size": int(r["batch_size"]),
                        "device": r["device"],
                        "device_name": r["device_name"],
                        "measure": "speedup",
                        "value": r["speedup"],
                        "low": r["speedup_low"],
                        "high": r["speedup_high"],
                        "crossover": said["says"].iloc[0] if not said.empty else "",
                    }
                )
    return out


def _cpu_times(base: dict, rows: pd.DataFrame) -> list[dict]:
    cpu = rows[(rows["device"] == "cpu") & figures.at_default(rows)]
    out = []
    for family, steps in _STEPS.items():
        for variant in steps:
            found = cpu[(cpu["family"] == family) & (cpu["variant"] == variant)]
            for _, r in found.sort_values("batch_size").iterrows():
                images = float(r["images"]) if pd.notna(r["images"]) else float("nan")
                out.append(
                    {
                        **base,
                        "family": family,
                        "variant": variant,
                        "batch_size": int(r["batch_size"]),
                        "device": "cpu",
                        "device_name": r["device_name"],
                        "measure": "seconds an image",
                        "value": r["median"] / images,
                        "low": r["q1"] / images,
                        "high": r["q3"] / images,
                        "crossover": "",
                    }
                )
    return out
