"""The run's host allocator condition: glibc keeping freed blocks (--host-allocator keep), recorded either way."""

import ast
import os
import platform
import resource
import subprocess
import sys

import pytest

from bench.measure import allocator
from bench.measure.allocator import KEEP_BYTES, set_host_allocator

GLIBC = platform.libc_ver()[0] == "glibc"

# Each in a fresh process: the setting holds for the rest of the process it is made in.
FAULTS = """
import resource, sys, torch
from bench.measure.allocator import set_host_allocator
def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        torch.ones(12 << 20)  # 48 MiB, above glibc's largest adaptive mmap threshold (32 MiB)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
record = set_host_allocator(sys.argv[1])
faults()  # the first blocks: fresh pages either way
print(record["mode"], faults())
"""


def faults_in_a_fresh_process(mode):
    out = subprocess.run(
        [sys.executable, "-c", FAULTS, mode],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    recorded, faults = out.stdout.split()
    return recorded, int(faults)


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_keeping_freed_blocks_stops_the_page_faults_of_reallocating_them():
    kept_mode, kept = faults_in_a_fresh_process("keep")
    default_mode, default = faults_in_a_fresh_process("default")
    assert (kept_mode, default_mode) == ("keep", "default")
    block = (48 << 20) // resource.getpagesize()
    assert default >= 8 * block, default  # (nearly) every block's pages fault afresh
    assert kept <= 2 * block, kept  # the blocks are reused: their pages faulted once, before


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_the_record_says_what_the_run_was_held_to():
    # "default" changes nothing, so it can run in this process.
    assert set_host_allocator("default")["mode"] == "default"
    code = (
        "from bench.measure.allocator import set_host_allocator; print(set_host_allocator('keep'))"
    )
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=env,
    )
    record = ast.literal_eval(out.stdout)
    assert record == {"mode": "keep", "library": f"glibc {platform.libc_ver()[1]}", "how": "mmap threshold",
                      "keep_bytes": KEEP_BYTES}  # fmt: skip


def test_another_c_library_runs_with_its_own_policy_and_says_so(monkeypatch):
    monkeypatch.setattr(allocator, "_library", lambda: ("musl", "1.2"))
    record = set_host_allocator("keep")
    assert (
        record["mode"] == "default"
        and record["library"] == "musl 1.2"
        and "glibc" in record["reason"]
    )


class FakeLibc:
    """glibc's mallopt, refusing the options in `refuse`: what older glibc does above 32 MiB."""

    def __init__(self, refuse=()):
        self.refuse, self.calls = set(refuse), []

    def mallopt(self, option, value):
        self.calls.append((option.value, value.value))
        return 0 if option.value in self.refuse else 1


def fake_glibc(monkeypatch, refuse=()):
    libc = FakeLibc(refuse)
    monkeypatch.setattr(allocator, "_library", lambda: ("glibc", "2.17"))
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda _name: libc)
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    return libc


def test_glibc_refusing_a_high_mmap_threshold_keeps_blocks_by_not_mapping_them(monkeypatch):
    libc = fake_glibc(monkeypatch, refuse={-3})  # M_MMAP_THRESHOLD refused above 32 MiB
    record = set_host_allocator("keep")
    assert record["mode"] == "keep" and record["how"] == "no mmap"
    assert libc.calls == [
        (-1, KEEP_BYTES),
        (-3, KEEP_BYTES),
        (-4, 0),
    ]  # trim, mmap threshold, then M_MMAP_MAX 0


def test_glibc_refusing_everything_is_recorded_not_fatal(monkeypatch):
    fake_glibc(monkeypatch, refuse={-1, -3, -4})
    record = set_host_allocator("keep")
    assert (
        record["mode"] == "default"
        and record["reason"] == f"glibc refused mallopt(M_TRIM_THRESHOLD, {KEEP_BYTES})"
    )


def test_a_preloaded_allocator_is_recorded(monkeypatch):
    fake_glibc(monkeypatch)
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")
    assert set_host_allocator("keep")["preload"] == "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
    assert set_host_allocator("default")["preload"].endswith("libjemalloc.so.2")


def test_an_unknown_mode_is_refused_by_name():
    with pytest.raises(
        ValueError, match="'fast' is not a host allocator mode: expected keep or default"
    ):
        set_host_allocator("fast")


def test_the_check_pairs_each_case_across_the_two_allocators_with_its_faults():
    from bench.check.allocator import compare

    def run(median, faults, name="test_train_epoch[cpu-2t-1000-resident]"):
        telemetry = {"host": {"minor_faults_per_round": faults}}
        return {
            "benchmarks": [
                {
                    "group": "train",
                    "name": name,
                    "stats": {"median": median},
                    "extra_info": {"telemetry": telemetry},
                }
            ]
        }

    runs = {"default": [run(3.3, 1.45e6), run(3.0, 1.40e6)], "keep": [run(1.6, 0.0), run(1.5, 3.0)]}
    runs["keep"].append(run(1.0, 0, name="only-in-keep"))  # not in both: not compared
    (row,) = compare(runs)
    assert row["name"] == "test_train_epoch[cpu-2t-1000-resident]"
    assert row["default"] == pytest.approx(3.15) and row["keep"] == pytest.approx(1.55)
    assert row["ratio"] == pytest.approx(3.15 / 1.55)
    assert row["trial_ratios"] == pytest.approx([3.3 / 1.6, 3.0 / 1.5])
    assert row["default_faults"] == pytest.approx(1.425e6) and row["keep_faults"] == pytest.approx(
        1.5
    )
