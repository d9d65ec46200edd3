"""Where an epoch's time goes, measured: torch.profiler over one extra, untimed epoch, summed by phase."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.profiler import profile

from bench.format.devices import device_kind
from bench.measure.clock import timed_call
from bench.measure.devices import profiler_activities

__all__ = ["PHASES", "device_work", "host_work", "profile_epoch"]

# The ranges fmnist_model's loops name when asked to (loops.phase): a DataLoader batch or the
# gather of a resident one, its host-to-device copy, the forward pass and loss, the backward
# pass (zero_grad included), Adam's step; a CUDA graph replays forward, backward and Adam as one.
PHASES = ("data", "h2d", "forward", "backward", "optimizer", "graph")
# How many of a profiled epoch's costliest operations (the GPU's on CUDA, the CPU's on the CPU) its
# record names.
TOP_OPS = 8


def device_work(events, epoch_s: float) -> dict:
    """What the GPU did in a profiled epoch: its operations (kernels, copies, memsets; not the
    named ranges) and their summed time, and that time's share of the epoch. A small share with
    many operations is an epoch bound by launching them, not by the GPU's arithmetic or memory."""
    ops = [
        e
        for e in events
        if e.device_type != torch.autograd.DeviceType.CPU
        and not getattr(e, "is_user_annotation", False)
        and e.name not in PHASES
    ]
    busy = sum(e.time_range.elapsed_us() for e in ops) / 1e6  # the profiler counts microseconds
    by_name: dict[str, list] = {}
    for e in ops:
        entry = by_name.setdefault(e.name, [0, 0.0])
        entry[0] += 1
        entry[1] += e.time_range.elapsed_us() / 1e6
    top = sorted(by_name.items(), key=lambda item: -item[1][1])[:TOP_OPS]
    return {
        "ops": len(ops),
        "busy_s": busy,
        "busy_share": busy / epoch_s if epoch_s > 0 else None,
        # The operations that took the GPU longest, by name (a kernel's name cut to its first 120
        # characters).
        "top": [
            {"name": name[:120], "count": count, "seconds": seconds}
            for name, (count, seconds) in top
        ],
    }


def host_work(averages, epoch_s: float) -> dict:
    """What the CPU did in a profiled epoch on the CPU: the operations that took it longest by
    their own time (self time: an operation's children are counted in theirs, not again in it),
    summed by name, with their share of the epoch. Named ranges (the loops' phases, the
    optimizer's step; the profiler's user annotations) are spans, not operations, and are left
    out; torch.compile's `## Call CompiledFxGraph ...` is kept: its own time is the code inductor
    generated. `averages` is the profiler's key_averages()."""
    ops = [
        a
        for a in averages
        if a.device_type == torch.autograd.DeviceType.CPU
        and not getattr(a, "is_user_annotation", False)
        and a.key not in PHASES
    ]
    top = sorted(ops, key=lambda a: -a.self_cpu_time_total)[:TOP_OPS]
    return {
        "top": [
            {
                "name": a.key[:120],
                "count": a.count,
                "seconds": a.self_cpu_time_total / 1e6,  # the profiler counts microseconds
                "share": a.self_cpu_time_total / 1e6 / epoch_s if epoch_s > 0 else None,
            }
            for a in top
        ]
    }


def profile_epoch(
    clock: Callable[[], float], device: torch.device | str, epoch: Callable[[], object]
) -> dict:
    """Run `epoch` (one annotated epoch) under torch.profiler; its phases' host time, and on CUDA their device time.

    host_s: time inside each named range on the host (on a GPU, launching; the range ends without
    waiting for its kernels). device_s (CUDA only): the span of each range's kernels on the GPU,
    from the profiler's gpu_user_annotation events. epoch_s is the profiled epoch's own time,
    profiler overhead included: it is not the case's figure, which is the median of the timed
    rounds; wall_s what the whole profile cost, its event processing included. other_s: the epoch's
    time outside the named ranges (loop, syncs). device_work (CUDA only): how many operations the
    GPU ran and how busy they kept it. host_work (CPU only): the CPU's costliest operations.
    """
    kind = device_kind(str(torch.device(device)))
    start = clock()
    with profile(activities=profiler_activities(str(torch.device(device)))) as prof:
        seconds, result = timed_call(clock, epoch)
    host = dict.fromkeys(PHASES, 0.0)
    on_device = dict.fromkeys(PHASES, 0.0)
    averages = prof.key_averages()
    for event in averages:
        if event.key not in PHASES:
            continue
        if event.device_type == torch.autograd.DeviceType.CPU:
            host[event.key] += event.cpu_time_total / 1e6  # the profiler counts microseconds
        else:
            on_device[event.key] += event.device_time_total / 1e6
    used = [name for name in PHASES if host[name] > 0 or on_device[name] > 0]
    work = device_work(prof.events(), seconds) if kind.device_events else None
    return {
        "source": "torch.profiler, one extra untimed epoch (or its first images) after the timed rounds",
        "epoch_s": seconds,
        # What the profile cost the run: the epoch, and the profiler's processing of its events
        # after it (for the seed pipeline's per-image ops far longer than the epoch: 35 s for 10,000
        # images on the H100 host, whose epoch_s was 1.7 s).
        "wall_s": clock() - start,
        "loss": getattr(result, "mean_loss", None),
        "host_s": {name: host[name] for name in used},
        "device_s": {name: on_device[name] for name in used} if kind.device_events else None,
        "other_s": max(seconds - sum(host.values()), 0.0),
        "device_work": work,
        "host_work": host_work(averages, seconds) if kind.host else None,
    }
