"""The work each limits case times: a chain of small operations (eager or replayed), a large matrix product, a device copy."""

from __future__ import annotations

from collections.abc import Callable

import torch

from bench.measure.clock import timed_call

__all__ = ["COPY_BYTES", "OPS_PER_ROUND", "OP_ELEMENTS", "copy_target", "matmul_target", "operations_target"]

# A round of the operation cases: this many in-place multiplies of a small tensor, back to back, and
# one sync at the end: enough that the sync and the clock are a small part of the round (about a
# millisecond on the 2-core VM's CPU), few enough to fit a CUDA graph in an instant.
OPS_PER_ROUND = 500
# 1,024 float32 (4 KB): the size of the CNN's smallest tensors (a batch of 100's logits is 1,000), so
# an operation costs its fixed part (Python, the dispatcher, a launch) and next to nothing of work.
OP_ELEMENTS = 1024
# The matrix product grows from 256 square until one product takes this long (or reaches MAX_N): past
# about 10 ms a product is large enough for a device's peak and cheap enough for a few rounds.
MATMUL_ROUND_S = 0.01
MATMUL_START = 256
# The largest side tried: three 16,384 squares of float32 are 3.2 GB (a GPU), three of 4,096 0.2 GB
# (a CPU, where a product of 4,096 takes seconds on 2 cores).
MAX_N = {"cuda": 16_384, "mps": 8_192, "cpu": 4_096}
# A device copy of 1 GiB: far beyond any GPU's caches (an H100's L2 is 50 MB), so it times memory, and long
# enough (about 0.5 ms at 2 TB/s) that the sync and the clock are a small part of a round.
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


def matmul_target(device: str, dtype: str, clock: Callable[[], float]) -> tuple[Callable[[], object], dict]:
    """(one round, its work): one square matrix product, its side grown until it takes MATMUL_ROUND_S."""
    kind = torch.device(device).type
    n = MATMUL_START
    while True:
        a = torch.randn(n, n, device=device).to(_DTYPES[dtype])
        b = torch.randn(n, n, device=device).to(_DTYPES[dtype])
        out = torch.empty(n, n, device=device, dtype=_DTYPES[dtype])

        def product(a=a, b=b, out=out):
            return torch.mm(a, b, out=out)

        product()  # the first call chooses its kernel (cuBLAS heuristics, oneDNN primitives)
        took, _ = timed_call(clock, product)
        if took >= MATMUL_ROUND_S or n * 2 > MAX_N.get(kind, MAX_N["cpu"]):
            break
        n *= 2
    # float32 products on CUDA may run as TF32 when torch is told so: say which they were.
    precision = torch.get_float32_matmul_precision()
    return product, {"n": n, "flops": 2 * n**3, "float32_matmul_precision": precision}


def copy_target(device: str) -> tuple[Callable[[], object], dict]:
    """(one round, its work): one device-to-device copy of COPY_BYTES (it reads and writes that many bytes each)."""
    src = torch.ones(COPY_BYTES // 4, device=device)
    dst = torch.empty_like(src)
    return (lambda: dst.copy_(src)), {"bytes": COPY_BYTES}
