"""Out-of-memory in one case: a skip with the reason, the memory released, other errors untouched."""

import json
import weakref

import pytest
import torch

from bench.measure.guard import OUT_OF_MEMORY, skip_on_out_of_memory

pytest_plugins = ["pytester"]


def test_out_of_memory_becomes_a_skip_and_frees_the_cache(monkeypatch):
    emptied = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(True))
    with pytest.raises(pytest.skip.Exception) as skipped:
        with skip_on_out_of_memory("cuda:0", "batch size 10000"):
            raise OUT_OF_MEMORY("CUDA out of memory. Tried to allocate 2.00 GiB\nmore detail")
    assert (
        str(skipped.value)
        == "cuda:0: out of memory at batch size 10000: CUDA out of memory. Tried to allocate 2.00 GiB"
    )
    assert emptied == [True]


def test_memory_held_by_the_failing_frames_is_freed_before_the_cache_is_emptied(monkeypatch):
    class Activations:  # stands in for the tensors a failed forward pass held
        pass

    held = []

    def forward():
        activations = Activations()
        held.append(weakref.ref(activations))
        raise OUT_OF_MEMORY("CUDA out of memory")

    alive_at_empty_cache = []
    monkeypatch.setattr(
        torch.cuda, "empty_cache", lambda: alive_at_empty_cache.append(held[0]() is not None)
    )
    with pytest.raises(pytest.skip.Exception):
        with skip_on_out_of_memory("cuda:0", "batch size 10000"):
            forward()
    assert alive_at_empty_cache == [False]


def test_cpu_out_of_memory_does_not_touch_cuda(monkeypatch):
    monkeypatch.setattr(
        torch.cuda, "empty_cache", lambda: pytest.fail("CUDA touched for a CPU case")
    )
    with pytest.raises(pytest.skip.Exception, match="cpu: out of memory"):
        with skip_on_out_of_memory("cpu", "60000 images"):
            raise OUT_OF_MEMORY("")


def test_other_errors_pass_through():
    with pytest.raises(RuntimeError, match="shape"):
        with skip_on_out_of_memory("cuda:0", "x"):
            raise RuntimeError("shape mismatch")


def test_no_error_no_skip():
    with skip_on_out_of_memory("cpu", "x"):
        value = 1
    assert value == 1


def test_out_of_memory_inside_a_benchmark_is_a_skip_and_the_suite_goes_on(pytester):
    # Real pytest-benchmark: the case that ran out of memory is skipped and left out of the
    # saved JSON; the case after it runs and is saved.
    pytester.makepyfile(
        test_oom="""
        from bench.measure.guard import OUT_OF_MEMORY, skip_on_out_of_memory

        def boom():
            raise OUT_OF_MEMORY("CUDA out of memory. Tried to allocate 9.00 GiB")

        def test_big(benchmark):
            with skip_on_out_of_memory("cpu", "batch size 10000"):
                benchmark.pedantic(boom, rounds=2)

        def test_small(benchmark):
            benchmark.pedantic(lambda: None, rounds=2)
        """
    )
    result = pytester.runpytest("-rs", "--benchmark-json=out.json", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*cpu: out of memory at batch size 10000: CUDA out of memory*"])
    saved = json.loads((pytester.path / "out.json").read_text())["benchmarks"]
    assert [b["name"] for b in saved] == ["test_small"]
