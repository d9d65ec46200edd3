"""Each machine's answer in sentences, generated from its figures: the notes' question, the crossover, the fastest pipeline."""

from __future__ import annotations

import math

import pandas as pd

from bench.analysis import held as held_limits
from bench.analysis.figures import fastest_steps, is_gpu, ladder
from bench.analysis.headline import ANSWER_BATCH, model_headline
from bench.analysis.headline import times_said as _times
from bench.analysis.intervals import BUSY, interval_said, side
from bench.analysis.models import models_of
from bench.analysis.reference import MEASURE_OWN, against_reference, reference_said
from bench.format.names import CNN_MODEL

__all__ = ["answers"]


def _speedup_of(row) -> tuple[float, float, float]:
    """(speedup, low, high) against the CPU at torch's default threads, else at its best count measured."""
    if pd.notna(row["speedup"]):
        return row["speedup"], row["speedup_low"], row["speedup_high"]
    return row["speedup_vs_best_cpu"], row["vs_best_low"], row["vs_best_high"]


def _sentence(gpu: pd.DataFrame, parts: pd.DataFrame) -> str | None:
    """The notes' question answered for one machine's GPU from its train speedups over the CPU at torch's
    default thread count (how the notes' loop runs), every figure from one kind of run (full, else
    quick)."""
    seed = gpu[(gpu["family"] == "train") & (gpu["variant"] == "seed")]
    if seed.empty:
        return None
    seed = seed[seed["quick"] == seed["quick"].min()]  # full figures where there are any
    sizes = seed["batch_size"].astype(int)
    size = (
        ANSWER_BATCH
        if (sizes == ANSWER_BATCH).any()
        else int(sizes.iloc[(sizes - ANSWER_BATCH).abs().argmin()])
    )
    at = seed[seed["batch_size"] == size].iloc[0]
    device, quick = at["device"], bool(at["quick"])
    n, n_low, n_high = _speedup_of(at)
    held = bool(at["busy"]) and bool(at["run_busy"])  # a verdict the load could have made is none
    baseline = (
        "at torch's default thread count"
        if pd.notna(at["speedup"])
        else "at its best thread count measured"
    )
    text = (
        f"Here the notes' loop (seed) is {_times(n, n_low, n_high, held)} on the GPU ({device}) than on this machine's CPU "
        f"({baseline}) at batch {size:,}"
    )
    same_run = gpu["quick"] == quick
    share = parts[
        (parts["device"] == device) & (parts["batch_size"] == size) & (parts["quick"] == quick)
    ]
    resident = gpu[
        same_run
        & (gpu["family"] == "train")
        & (gpu["variant"] == "resident")
        & (gpu["batch_size"] == size)
    ]
    m, m_interval = None, (math.nan, math.nan)
    if not resident.empty:
        m, *m_interval = _speedup_of(resident.iloc[0])
    if not share.empty and share["seed_epoch_s"].iloc[0] > 0:
        p = share["loading_s"].iloc[0] / share["seed_epoch_s"].iloc[0]
        # "because" only where the figures carry it: loading is most of the GPU's epoch, and
        # removing it pays.
        link = (
            "because"
            if p >= 0.5 and m is not None and m > n and side(*m_interval) == 1
            else "while"
        )
        text += f", {link} data loading takes {p:.0%} of its epoch there"
    if m is not None:
        text += f"; with the data resident on the GPU it is {_times(m, *m_interval)}"
    notes = [note for note, on in (("from a quick run: a subset of the data", quick),) if on]
    return text + (f" ({', '.join(notes)})" if notes else "") + "."


def _fastest_said(best: pd.DataFrame) -> list[str]:
    said = []
    for r in best.itertuples():
        quick = " (quick run)" if r.quick else ""
        over = ""
        if pd.notna(r.vs_first):
            over = f"{interval_said(r.vs_first, r.vs_first_low, r.vs_first_high)} the notes' loop (seed) on the same device, "
        if over and "seed" in r.other_runs.split(", "):
            over += "against the seed epoch of another run, "
        # Decided on intervals: a step no different from the fastest is named beside it.
        tie = (
            f" No difference was measured between it and {r.tied_with.replace(', ', ' or ')}."
            if r.tied_with
            else ""
        )
        tie += (
            " Some steps ran one round: which is fastest has no verdict." if r.tie_unknown else ""
        )
        said.append(
            f"Fastest training pipeline on {r.device} at batch {r.batch_size:,}{quick}: {r.pipeline}, "
            f"{over}with a loss within its tolerance of the resident epoch's.{tie}"
        )
    return said


def _headline(rows: pd.DataFrame, reference: pd.DataFrame | None) -> list[str]:
    models = models_of(rows) or [CNN_MODEL]
    return model_headline(rows, reference, models[0], named=models != [CNN_MODEL])


def answers(
    frame: pd.DataFrame,
    speed: pd.DataFrame,
    cross: pd.DataFrame,
    parts: pd.DataFrame,
    reference: pd.DataFrame | None = None,
) -> list[dict]:
    """Per machine, the answer first: its label, sentences generated from its figures, and what is missing.
    A machine without a GPU is answered against the reference GPUs (`reference`: the shipped runs'
    rows)."""
    best = fastest_steps(ladder(frame, "train"))
    # why, against the limits
    whys, predicted = (held_limits.why(frame), held_limits.predicted(frame, cross))
    out = []
    for key, rows in frame.groupby("machine_key", sort=False):
        label = rows["label"].iloc[0]
        devices = rows["device"].astype(str)
        gpus = sorted(set(devices[is_gpu(devices)]))
        mine, crossing = speed[speed["machine_key"] == key], cross[cross["machine_key"] == key]
        said, missing = [], []
        busy_run = bool(rows["run_busy"].any())
        if busy_run:  # first: every verdict after it could be the load's
            share = rows["run_outside_share"].max()
            took = f"{share:.0%} of its CPU time" if pd.notna(share) else "most of its CPU time"
            said.append(
                f"This machine was busy while it was measured: other work took {took}, so its figures are slower "
                f"than it can do, and a ratio of a figure measured under that load is marked {BUSY} and decides "
                "nothing. Rerun it on an idle machine, or with --cpu-threads 1."
            )
        if not gpus:
            against = reference_said(against_reference(rows, reference), busy_run=busy_run)
            if not against:
                said.append(
                    "No GPU was measured on this machine: its CPU figures are in the sections below."
                )
            else:  # another machine's GPU, said so, with the command that measures this one's own
                options = next((o for o in rows["model_options"].dropna() if o), "")
                said += [
                    line.strip() + ("" if line.endswith(":") else ".") for line in against[:-1]
                ]
                missing.append(
                    {
                        "text": "These are other machines' GPUs. On a machine with a GPU, this measures its own:",
                        "command": MEASURE_OWN.replace(
                            "pytest bench", f"pytest bench {options}".rstrip()
                        ),
                    }
                )
        cpu_runs = rows[rows["device"] == "cpu"]
        for device in gpus:
            gpu_runs, pairs = rows[rows["device"] == device], mine[mine["device"] == device]
            command = f"pytest bench --devices cpu,{device} --benchmark-autosave"
            if cpu_runs.empty:
                missing.append(
                    {
                        "text": f"This machine's CPU is in none of its runs, so {device} has no speedup. Run this "
                        "on it and copy the run in:",
                        "command": command,
                    }
                )
                continue
            if pairs.empty:
                missing.append(
                    {
                        "text": f"This machine's CPU and {device} were never measured in the same kind of run (quick "
                        "or full) on the same cases, so there is no speedup. Run this on it and copy the run in:",
                        "command": command,
                    }
                )
                continue
            if pairs["quick"].all() and (~gpu_runs["quick"]).any():
                missing.append(
                    {
                        "text": f"This machine's CPU was measured only in a quick run, so {device}'s speedups come "
                        "from that run (a subset; marked quick). For full figures run this on it and copy the run in:",
                        "command": command,
                    }
                )
            sentence = _sentence(pairs, parts[parts["machine_key"] == key])
            if sentence:
                said.append(sentence)
            for c in crossing[crossing["device"] == device].itertuples():
                marks = " (quick)" * c.quick  # (one round: its words say so)
                says = c.says + (f" ({BUSY})" if c.busy else "")
                if busy_run and c.busy:
                    says = f"no verdict: decided on figures measured while the machine was busy ({BUSY})"
                said.append(
                    f"Crossover against the CPU at its best thread count, {device} {c.family} {c.variant}{marks}: "
                    f"{says}."
                )
        said += _fastest_said(best[best["machine_key"] == key])
        said += whys.get(key, [])
        for p in predicted[predicted["machine_key"] == key].itertuples():
            if p.predicted:
                said.append(
                    f"Predicted from the limits, {p.device} {p.family} {p.variant}: {p.predicted} "
                    f"(measured: {p.measured or 'no crossover measured'})."
                )
        out.append(
            {
                "machine_key": key,
                "label": label,
                # the verdict, before everything said: at most five lines (bench/analysis/headline.py),
                # of the one model of `rows` (a page is a model's: bench/report/page.py)
                "headline": _headline(rows, reference),
                "said": said,
                "missing": missing,
                "speedups": mine,
            }
        )
    return out
