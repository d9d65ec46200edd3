"""The C library's allocator, held in one condition for a whole run: --host-allocator keep (default) or default.

glibc hands a freed block above its mmap threshold back to the kernel at once, and trims the heap's
free top above its trim threshold, so a training step's next buffers of the same size are fresh
pages, each a minor page fault on first touch. Both thresholds start at 128 KiB and glibc raises
them as large blocks are freed (the mmap threshold up to 32 MiB), so how often a case faults depends
on the cases that ran before it in the same process. On the 2-core VM, in one run: a resident epoch
at batch 1,000 faulted 540,000 times a round after the seed and loader cases, and 1.45 million times
in another process; channels_last 19 times after resident, 808,000 times after seed. Measured by
hand in one process each, with both thresholds at 1 GiB: no faults, and resident 3.3 -> 1.6 s, seed
4.6 -> 2.9 s, channels_last 2.5 -> 1.5 s, channels_last_bf16 1.9 -> 1.2 s.

So the suite sets both thresholds once, before the first case (`keep`): no case pays for the
blocks the cases before it freed, and the figures measure the pipelines, not the allocator's
history. It is what PyTorch's CPU performance tuning guide gets by preloading jemalloc or
tcmalloc; for a program of one's own, MALLOC_MMAP_THRESHOLD_ and MALLOC_TRIM_THRESHOLD_ in its
environment do the same. `default` leaves glibc as it is (and every case's page faults are in
its telemetry). `python -m bench check-allocator` measures the two against each other in fresh
processes. Where the C library is not glibc there is no mallopt: the run records that it ran
with its library's own policy.
"""

from __future__ import annotations

import ctypes
import os
import platform

__all__ = ["KEEP_BYTES", "MODES", "keep_large_blocks", "set_host_allocator"]

MODES = ("keep", "default")
# Large enough for any block the suite allocates (a batch of 10,000 images' conv1 output is 138 MB).
KEEP_BYTES = 1 << 30
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4  # <malloc.h>


def _library() -> tuple[str, str]:
    name, version = platform.libc_ver()
    return name, version


def keep_large_blocks(limit: int = KEEP_BYTES) -> str:
    """Have glibc keep freed blocks up to `limit` bytes for reuse, for the rest of this process, and
    return how: "mmap threshold" (mallopt M_MMAP_THRESHOLD and M_TRIM_THRESHOLD at `limit`), or,
    where glibc refuses so high an mmap threshold (older ones cap it at 32 MiB on 64-bit), "no mmap"
    (M_MMAP_MAX 0: every block from the heap, trimmed only above `limit`). Raises RuntimeError
    where glibc refuses both."""
    libc = ctypes.CDLL(None)

    def mallopt(name: str, option: int, value: int) -> None:
        if libc.mallopt(ctypes.c_int(option), ctypes.c_int(value)) != 1:
            raise RuntimeError(f"glibc refused mallopt({name}, {value})")

    mallopt("M_TRIM_THRESHOLD", _M_TRIM_THRESHOLD, limit)
    try:
        mallopt("M_MMAP_THRESHOLD", _M_MMAP_THRESHOLD, limit)
        return "mmap threshold"
    except RuntimeError:
        mallopt("M_MMAP_MAX", _M_MMAP_MAX, 0)
        return "no mmap"


def set_host_allocator(mode: str) -> dict:
    """Put this process's allocator in `mode` ("keep" or "default") and return what a run records of it.

    Raises ValueError for another mode; a C library other than glibc (or glibc refusing) runs with
    its own policy, and the record says why instead of failing the run."""
    if mode not in MODES:
        raise ValueError(f"{mode!r} is not a host allocator mode: expected {' or '.join(MODES)}")
    name, version = _library()
    library = f"{name} {version}".strip() or "unknown"
    # An allocator preloaded in glibc's place (jemalloc, tcmalloc) takes the blocks: mallopt would
    # reach glibc's, which then serves nothing. Recorded, so that a run says what it really ran
    # with.
    preload = {"preload": os.environ["LD_PRELOAD"]} if os.environ.get("LD_PRELOAD") else {}
    if mode == "default":
        return {"mode": "default", "library": library, **preload}
    if name != "glibc":
        reason = "mallopt is glibc's: this C library keeps its own policy"
        return {"mode": "default", "library": library, "reason": reason, **preload}
    try:
        how = keep_large_blocks()
    except (OSError, AttributeError, RuntimeError) as exc:
        return {"mode": "default", "library": library, "reason": str(exc), **preload}
    return {"mode": "keep", "library": library, "how": how, "keep_bytes": KEEP_BYTES, **preload}
