"""Who ran a run: a machine's key and what it is (host, CPU and GPU models), and a label unique in the report."""

from __future__ import annotations

import hashlib
import re

import pandas as pd

from bench.format import records as fmt
from bench.format.devices import KINDS
from bench.format.store import REFERENCE

__all__ = ["device_facts", "machine_labels", "machine_of", "short_cpu"]


def _text(value, default: str = "") -> str:
    return default if value is None else str(value)


def short_cpu(name: str) -> str:
    """A CPU's brand string without its trademarks and clock: "Intel Xeon Platinum 8480+"."""
    name = re.sub(r"\((R|TM|tm|r)\)", "", name)
    name = re.sub(r"\s+(CPU\s+)?@.*$", "", name)
    name = re.sub(r"\s+\d+-Core Processor$|\s+Processor$", "", name)
    return re.sub(r"\s+", " ", name).strip() or "unknown CPU"


def machine_of(info: dict, *, reference: bool = False) -> dict:
    """Who ran it: a stable key, what it is (host, CPU model from py-cpuinfo's brand string, GPU models), its name,
    and whether it is one of the project's reference machines (its runs under results/reference/).
    """
    facts = fmt.MachineInfo.read(info)
    ours = facts.fmnist_bench or fmt.FmnistBench()
    cpu_name = (facts.cpu and facts.cpu.brand_raw) or facts.processor or facts.machine
    cpu_name = cpu_name or "unknown CPU"
    gpus = facts.gpus or []
    gpu_names = [g.name or "GPU" for g in gpus] or [
        d.name or "GPU" for d in (facts.torch and facts.torch.cuda_devices) or []
    ]
    host = facts.node or "unknown host"
    key = ours.machine_key or "_".join([host, cpu_name, "+".join(gpu_names) or "no-gpu"])
    # Two machines of one host name, CPU and GPU model share a key; their GPUs' UUIDs (NVML,
    # recorded in every run whatever --devices said) still tell them apart. Runs without NVML keep
    # the key alone.
    uuids = sorted(g.uuid for g in gpus if g.uuid)
    if uuids:
        key += "~" + hashlib.sha1("+".join(uuids).encode()).hexdigest()[:8]
    if reference:  # never the same machine as a user's, whatever the two keys read
        key = f"{REFERENCE}/{key}"
    counts = {name: gpu_names.count(name) for name in gpu_names}
    gpu_short = (
        ", ".join(name if n == 1 else f"{n}x {name}" for name, n in counts.items()) or "no GPU"
    )
    return {
        "machine_key": key,
        "machine_name": _text(ours.machine_name),
        "host": host,
        "cpu": cpu_name,
        "gpus": ", ".join(gpu_names),
        "what": f"{short_cpu(cpu_name)} · {gpu_short}",
        "constructed": bool(facts.constructed),
        "reference": reference,
        "facts_lost": bool(ours.run and ours.run.header_lost),
    }


def machine_labels(machines: pd.DataFrame) -> dict[str, str]:
    """A label per machine key, unique among `machines`, from what tells them apart.

    A name given with --machine-name comes first; else the CPU and GPU models. Where two
    machines still read the same, the host name is added, then a short hash of the key.
    """
    # A run recovered from a journal whose header was lost knows its machine's key, not its facts:
    # the label comes from a run that has them.
    known = (
        machines.sort_values("facts_lost", kind="stable") if "facts_lost" in machines else machines
    )
    first = known.drop_duplicates("machine_key").set_index("machine_key")
    # The project's own runs say so wherever they are shown, and so never read as a user's machine.
    labels = {
        k: ("reference: " if r.reference else "") + (r.machine_name or r.what)
        for k, r in first.iterrows()
    }
    for extra in ("host", "hash"):
        counts = pd.Series(labels).value_counts()
        for key, label in list(labels.items()):
            if counts[label] > 1:
                add = (
                    first.loc[key, "host"]
                    if extra == "host"
                    else hashlib.sha1(key.encode()).hexdigest()[:6]
                )
                labels[key] = f"{label} ({add})" if extra == "host" else f"{label} #{add}"
    for key in labels:
        # test fixtures with chosen numbers say so wherever they are shown
        if first.loc[key, "constructed"]:
            labels[key] += " (constructed, not measured)"
    return labels


def device_facts(
    info: fmt.MachineInfo | dict, device: str, cpu_name: str
) -> tuple[str, float | None]:
    """(the device's model name, its PCIe link's theoretical GB/s per direction, when NVML gave it)."""
    kind = KINDS.get(str(device).split(":", 1)[0])
    if kind is None or not kind.nvml:  # the GPUs NVML reports have their names and links in the run
        return (cpu_name if kind is not None and kind.host else device), None
    facts = info if isinstance(info, fmt.MachineInfo) else fmt.MachineInfo.read(info)
    for gpu in facts.gpus or []:
        if gpu.cuda_device == device:
            return gpu.name or device, gpu.pcie_gbps_max
    for dev in (facts.torch and facts.torch.cuda_devices) or []:
        if dev.device == device:
            return dev.name or device, None
    return device, None
