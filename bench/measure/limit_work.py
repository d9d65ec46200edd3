"""The work each limits case times: a chain of small operations (eager or replayed), a large matrix product, a device copy."""

from __future__ import annotations

from collections.abc import Callable

import torch

from bench.format.devices import device_kind
from bench.measure.clock import timed_call

__all__ = [
    "COPY_BYTES",
    "OPS_PER_ROUND",
    "OP_ELEMENTS",
    "copy_target",
    "matmul_target",
    "operations_target",
]

# A round of the operation cases: this many in-place multiplies of a small tensor, back to back, and
# one sync at the end: enough that the sync and the clock are a small part of the round (about a
# millisecond on the 2-core VM's CPU), few enough to fit a CUDA graph in an instant.
OPS_PER_ROUND = 500
# 1,024 float32 (4 KB): the size of the CNN's smallest tensors (a batch of 100's logits is 1,000), so
# an operation costs its fixed part (Python, the dispatcher, a launch) and next to nothing of work.
OP_ELEMENTS = 1024
# The matrix product's side is searched, not guessed: from 256 square it doubles while doubling still raises the
# rate by more than PLATEAU, and the side chosen is the last one before that plateau, checked against its neighbour
# above. At each side PROBES products are timed after a first one (which chooses its kernel), and their fastest
# counts: noise only adds time, so one disturbed call cannot decide the size (a search on single calls stopped at
# 256 square in 6 of 7 runs with two busy loops on the 2-core VM, reading 1.2-192 GFLOP/s where the peak is ~190 at
# 1,024 and above). A side whose products take under MATMUL_MIN_S is too short to stand for a peak (the call's own
# cost is a large part of it); none grows past products of MATMUL_MAX_S, so a slow device's rounds stay cheap.
MATMUL_START = 256
PROBES = 3
PLATEAU = 0.10
MATMUL_MIN_S = 0.001
MATMUL_MAX_S = 0.1
# A device copy of 1 GiB: far beyond any GPU's caches (an H100's L2 is 50 MB), so it times memory,
# and long enough (about 0.5 ms at 2 TB/s) that the sync and the clock are a small part of a round.
COPY_BYTES = 2**30

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def operations_target(device: str, graph: bool) -> tuple[Callable[[], object], dict]:
    """(one round, its work): OPS_PER_ROUND operations run eagerly or, `graph`, replayed from one CUDA graph."""
    x = torch.ones(OP_ELEMENTS, device=device)

    def chain():
        for _ in range(OPS_PER_ROUND):
            x.mul_(1.0)

    work = {"ops": OPS_PER_ROUND, "elements": OP_ELEMENTS}
    if not graph:
        return chain, work
    # torch's CUDA graphs notes: warm up on a side stream, then capture on it.
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        chain()
    torch.cuda.current_stream(device).wait_stream(side)
    captured = torch.cuda.CUDAGraph()
    with torch.cuda.graph(captured):
        chain()
    return captured.replay, work


def _product(device: str, dtype: str, n: int) -> Callable[[], object]:
    a = torch.randn(n, n, device=device).to(_DTYPES[dtype])
    b = torch.randn(n, n, device=device).to(_DTYPES[dtype])
    out = torch.empty(n, n, device=device, dtype=_DTYPES[dtype])
    return lambda: torch.mm(a, b, out=out)


def matmul_target(
    device: str, dtype: str, clock: Callable[[], float]
) -> tuple[Callable[[], object], dict]:
    """(one round, its work): one square matrix product of the side the search chose (see PLATEAU above), with
    the search itself in the work: each side tried, its fastest product and why the search stopped.
    """
    # the largest side tried (bench/format/devices.py says why)
    most = device_kind(device).matmul_max_side
    n, tried, chosen, stopped = MATMUL_START, [], None, None
    while chosen is None:
        product = _product(device, dtype, n)
        product()  # the first call chooses its kernel (cuBLAS heuristics, oneDNN primitives)
        fastest = min(timed_call(clock, product)[0] for _ in range(PROBES))
        tried.append(
            {"n": n, "fastest_s": fastest, "flop_s": 2 * n**3 / fastest if fastest > 0 else None}
        )
        rate, before = tried[-1]["flop_s"], tried[-2] if len(tried) > 1 else None
        if (
            before
            and before["fastest_s"] >= MATMUL_MIN_S
            and rate
            and rate <= before["flop_s"] * (1 + PLATEAU)
        ):
            chosen, stopped = (
                before["n"],
                f"{n:,} square was no more than {PLATEAU:.0%} faster a FLOP",
            )
        elif fastest >= MATMUL_MAX_S:
            chosen, stopped = n, f"a product took {MATMUL_MAX_S:g} s or more"
        elif n * 2 > most:
            chosen, stopped = n, "the largest side tried on this device"
        else:
            n *= 2
    product = product if chosen == n else _product(device, dtype, chosen)
    product()
    # float32 products on CUDA may run as TF32 when torch is told so: say which they were.
    precision = torch.get_float32_matmul_precision()
    search = {"tried": tried, "stopped": stopped, "probes": PROBES}
    return product, {
        "n": chosen,
        "flops": 2 * chosen**3,
        "float32_matmul_precision": precision,
        "search": search,
    }


def copy_target(device: str) -> tuple[Callable[[], object], dict]:
    """(one round, its work): one device-to-device copy of COPY_BYTES (it reads and writes that many bytes each)."""
    src = torch.ones(COPY_BYTES // 4, device=device)
    dst = torch.empty_like(src)
    return (lambda: dst.copy_(src)), {"bytes": COPY_BYTES}
