"""What the command line may say: each value of an option checked and parsed, or a ValueError naming it."""

from __future__ import annotations

import os

import torch

from bench.format.devices import KINDS
from bench.format.names import INFERENCE_LADDER, TRAIN_LADDER
from bench.measure.plan import ALL_PIPELINES, LADDERS, MAX_BATCH_SIZE, MAX_CPU_THREADS

__all__ = [
    "parse_batch_sizes",
    "parse_cpu_threads",
    "parse_devices",
    "parse_ladder",
    "parse_machine_name",
    "parse_pipelines",
    "parse_seconds",
    "parse_warmup_batches",
]


def parse_devices(text: str) -> tuple[str, ...]:
    """'cpu,cuda:0' -> ('cpu', 'cuda:0'). Raises ValueError naming a value that is not a device.

    Only well-formedness is checked here; whether this machine has the device is checked with the
    other options (bench/run/options.py). An indexed kind alone means its first (`cuda` is
    `cuda:0`), so the same device has one name in every saved run; a kind there is one of has no
    index but 0 (bench/format/devices.py).
    """
    out: list[str] = []
    kinds = ", ".join(f"{name}, {name}:N" if kind.indexed else name for name, kind in KINDS.items())
    for raw in text.split(","):
        value = raw.strip()
        if not value:
            raise ValueError(f"empty device in {text!r}")
        expected = f"{value!r} is not a device: expected {kinds}"
        try:
            device = torch.device(value)
        except (RuntimeError, ValueError):
            raise ValueError(expected) from None
        kind = KINDS.get(device.type)
        if kind is None or (not kind.indexed and device.index not in (None, 0)):
            raise ValueError(expected)
        name = f"{kind.name}:{device.index or 0}" if kind.indexed else kind.name
        if name not in out:
            out.append(name)
    return tuple(out)


def _positive_ints(
    text: str, *, most: int | None = None, words: dict[str, int] | None = None
) -> tuple[int, ...]:
    out: list[int] = []
    for raw in text.split(","):
        value = raw.strip()
        if words and value in words:
            number = words[value]
        elif value.isascii() and value.isdigit() and len(value) <= 20 and int(value) >= 1:
            number = int(value)
        else:
            extra = f" or {' or '.join(words)}" if words else ""
            raise ValueError(f"{value!r} is not a positive integer{extra}")
        if most is not None and number > most:
            raise ValueError(f"{value!r} is more than {most:,}")
        if number not in out:
            out.append(number)
    return tuple(out)


def parse_batch_sizes(text: str) -> tuple[int, ...]:
    """'100,1000' -> (100, 1000). Raises ValueError naming a value that is not a positive integer."""
    return _positive_ints(text, most=MAX_BATCH_SIZE)


# A machine's name goes into folder names and report labels: long enough for "lab-h100-node-17",
# short enough to read.
MAX_MACHINE_NAME = 64


def parse_machine_name(text: str) -> str:
    """--machine-name: 1 to 64 printable characters, not only spaces. Raises ValueError naming the value."""
    name = text.strip()
    if not name:
        raise ValueError(
            f"{text!r} is empty: give a name that tells this machine apart, such as lab-h100-1"
        )
    if len(name) > MAX_MACHINE_NAME:
        raise ValueError(
            f"{name[:20]!r}... is {len(name)} characters, more than {MAX_MACHINE_NAME}"
        )
    if not name.isprintable():
        raise ValueError(
            f"{name!r} holds characters that do not print (a newline, a tab or a control code)"
        )
    return name


def parse_pipelines(text: str) -> tuple[str, ...]:
    """'seed,resident' -> ('seed', 'resident'); 'all' -> every step of both ladders, the compiling ones
    included. Raises ValueError naming an unknown one.

    Names of either family's ladder: each family runs those of its own (none: no case of it).
    """
    known = dict.fromkeys(TRAIN_LADDER + INFERENCE_LADDER)
    if text.strip() == "all":
        return ALL_PIPELINES
    out: list[str] = []
    for raw in text.split(","):
        value = raw.strip()
        if value == "all":
            raise ValueError("'all' stands alone: give all, or names of steps, not both")
        if value not in known:
            raise ValueError(
                f"{value!r} is not a pipeline: expected all, or some of {', '.join(known)}"
            )
        if value not in out:
            out.append(value)
    return tuple(out)


def parse_ladder(text: str) -> str:
    """'default' or 'full'. Raises ValueError naming anything else."""
    value = text.strip()
    if value not in LADDERS:
        raise ValueError(f"{value!r} is not a ladder: expected {' or '.join(LADDERS)}")
    return value


def parse_seconds(text: str, *, most: float) -> float:
    """'30' or '2.5' -> seconds, more than 0 and at most `most`. Raises ValueError naming the value."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= most:  # also refuses nan and inf
        raise ValueError(f"{text!r} is not a number of seconds above 0 and at most {most:,g}")
    return value


def parse_cpu_threads(text: str, default_threads: int, cpus: int | None = None) -> tuple[int, ...]:
    """'1,4,default' -> (1, 4, 16) on a machine where torch picks 16 threads.

    At most 4 threads a CPU of this machine (oversubscribing is a fair question; 1,024
    threads on 2 CPUs turned a 5-second quick run into minutes) and never past MAX_CPU_THREADS.
    """
    cpus = cpus or os.cpu_count() or 1
    most = min(MAX_CPU_THREADS, max(4 * cpus, default_threads))
    try:
        return _positive_ints(text, most=most, words={"default": default_threads})
    except ValueError as exc:
        if "is more than" in str(exc):
            raise ValueError(f"{exc} (4 threads for each of this machine's {cpus} CPUs)") from None
        raise


def parse_warmup_batches(text: str) -> int | None:
    """'2' -> 2; 'all' -> None (a whole epoch or pass, as before budgets existed)."""
    value = text.strip()
    if value == "all":
        return None
    if value.isascii() and value.isdigit() and len(value) <= 20 and int(value) >= 1:
        if int(value) > MAX_BATCH_SIZE:
            raise ValueError(f"{value!r} is more than {MAX_BATCH_SIZE:,}")
        return int(value)
    raise ValueError(f"{value!r} is not a positive integer or all")
