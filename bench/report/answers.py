"""Each machine's answer in sentences, generated from its figures: the notes' question, the crossover, the fastest pipeline."""

from __future__ import annotations

import pandas as pd

from bench.report.figures import fastest_steps, is_gpu, ladder

__all__ = ["answers"]


# The batch size the answer's sentence is told at: the notes' loop used 1,000 (100 and 10,000 are the sweep's ends).
_ANSWER_BATCH = 1000


def _times(x: float) -> str:
    """A speedup as words that stay true below 1x: "3.1x faster", "2.0x slower", "as fast"."""
    if x >= 1.005:
        return f"{x:.2f}x faster"
    if x <= 1 / 1.005:
        return f"{1 / x:.2f}x slower"
    return "as fast"


def _sentence(gpu: pd.DataFrame, parts: pd.DataFrame) -> str | None:
    """The notes' question answered for one machine's GPU from its train speedups over the CPU at torch's
    default thread count (how the notes' loop runs), every figure from one kind of run (full, else quick)."""
    seed = gpu[(gpu["family"] == "train") & (gpu["variant"] == "seed")]
    if seed.empty:
        return None
    seed = seed[seed["quick"] == seed["quick"].min()]  # full figures where there are any
    sizes = seed["batch_size"].astype(int)
    size = _ANSWER_BATCH if (sizes == _ANSWER_BATCH).any() else int(sizes.iloc[(sizes - _ANSWER_BATCH).abs().argmin()])
    at = seed[seed["batch_size"] == size].iloc[0]
    device, quick = at["device"], bool(at["quick"])
    n = at["speedup"] if pd.notna(at["speedup"]) else at["speedup_vs_best_cpu"]
    baseline = "at torch's default thread count" if pd.notna(at["speedup"]) else "at its best thread count measured"
    text = (
        f"Here the notes' loop (seed) is {_times(n)} on the GPU ({device}) than on this machine's CPU "
        f"({baseline}) at batch {size:,}"
    )
    same_run = gpu["quick"] == quick
    share = parts[(parts["device"] == device) & (parts["batch_size"] == size) & (parts["quick"] == quick)]
    resident = gpu[same_run & (gpu["family"] == "train") & (gpu["variant"] == "resident") & (gpu["batch_size"] == size)]
    m, one_round = None, bool(at["one_round"])
    if not resident.empty:
        r = resident.iloc[0]
        m = r["speedup"] if pd.notna(r["speedup"]) else r["speedup_vs_best_cpu"]
        one_round |= bool(r["one_round"])
    if not share.empty and share["seed_epoch_s"].iloc[0] > 0:
        p = share["loading_s"].iloc[0] / share["seed_epoch_s"].iloc[0]
        # "because" only where the figures carry it: loading is most of the GPU's epoch, and removing it pays.
        link = "because" if p >= 0.5 and m is not None and m > n else "while"
        text += f", {link} data loading takes {p:.0%} of its epoch there"
    if m is not None:
        text += f"; with the data resident on the GPU it is {_times(m)}"
    notes = [note for note, on in (("from a quick run: a subset of the data", quick), ("one round", one_round)) if on]
    return text + (f" ({', '.join(notes)})" if notes else "") + "."


def _fastest_said(best: pd.DataFrame) -> list[str]:
    said = []
    for r in best.itertuples():
        quick = " (quick run)" if r.quick else ""
        over = f"{r.vs_first:.2f}x the notes' loop (seed) on the same device, " if pd.notna(r.vs_first) else ""
        if over and "seed" in r.other_runs.split(", "):
            over += "against the seed epoch of another run, "
        said.append(
            f"Fastest training pipeline on {r.device} at batch {r.batch_size:,}{quick}: {r.pipeline}, "
            f"{over}with a loss within its tolerance of the resident epoch's."
        )
    return said


def answers(frame: pd.DataFrame, speed: pd.DataFrame, cross: pd.DataFrame, parts: pd.DataFrame) -> list[dict]:
    """Per machine, the answer first: its label, sentences generated from its figures, and what is missing."""
    best = fastest_steps(ladder(frame, "train"))
    out = []
    for key, rows in frame.groupby("machine_key", sort=False):
        label = rows["label"].iloc[0]
        devices = rows["device"].astype(str)
        gpus = sorted(set(devices[is_gpu(devices)]))
        mine, crossing = speed[speed["machine_key"] == key], cross[cross["machine_key"] == key]
        said, missing = [], []
        if not gpus:
            said.append("No GPU was measured on this machine: its CPU figures are in the sections below.")
        cpu_runs = rows[rows["device"] == "cpu"]
        for device in gpus:
            gpu_runs, pairs = rows[rows["device"] == device], mine[mine["device"] == device]
            command = f"pytest bench --devices cpu,{device} --benchmark-autosave"
            if cpu_runs.empty:
                missing.append(
                    {"text": f"This machine's CPU is in none of its runs, so {device} has no speedup. Run this "
                     "on it and copy the run in:", "command": command}
                )  # fmt: skip
                continue
            if pairs.empty:
                missing.append(
                    {"text": f"This machine's CPU and {device} were never measured in the same kind of run (quick "
                     "or full) on the same cases, so there is no speedup. Run this on it and copy the run in:",
                     "command": command}
                )  # fmt: skip
                continue
            if pairs["quick"].all() and (~gpu_runs["quick"]).any():
                missing.append(
                    {"text": f"This machine's CPU was measured only in a quick run, so {device}'s speedups come "
                     "from that run (a subset; marked quick). For full figures run this on it and copy the run in:",
                     "command": command}
                )  # fmt: skip
            sentence = _sentence(pairs, parts[parts["machine_key"] == key])
            if sentence:
                said.append(sentence)
            for c in crossing[crossing["device"] == device].itertuples():
                marks = " (quick)" * c.quick + " (1 round)" * c.one_round
                said.append(
                    f"Crossover against the CPU at its best thread count, {device} {c.family} {c.variant}{marks}: "
                    f"{c.says}."
                )
        said += _fastest_said(best[best["machine_key"] == key])
        out.append({"machine_key": key, "label": label, "said": said, "missing": missing, "speedups": mine})
    return out
