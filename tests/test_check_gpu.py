"""bench.check.gpu: its variants' configs, its reading of a saved run, the energy check, and a run on the CPU."""

import json
import os
import resource

import pytest

from bench.check import energy as check_energy
from bench.check import gpu as check_gpu
from fmnist_model.ladder import train_config


def test_each_variant_is_the_cuda_graph_step_with_its_changes():
    assert check_gpu.variant_config("resident", "cuda:0") == train_config("resident", "cuda:0")
    assert check_gpu.variant_config("cuda_graph", "cuda:0") == train_config("cuda_graph", "cuda:0")
    both = check_gpu.variant_config("cuda_graph+channels_last+bf16+cudnn_benchmark", "cuda:0")
    assert both.cuda_graph and (both.memory_format, both.precision) == ("channels_last", "bfloat16")
    assert not hasattr(
        both, "cudnn_benchmark"
    )  # set for the whole process, not a field of the step
    assert check_gpu.variant_config("cuda_graph+compile", "cuda:0").compile_mode == "default"
    fused = check_gpu.variant_config(
        "cuda_graph+compile+fused_adam", "cuda:0"
    )  # Adam is swapped in, not a field
    assert fused == check_gpu.variant_config("cuda_graph+compile", "cuda:0")


def case(
    pipeline,
    device="cuda:0",
    batch_size=1000,
    median=0.05,
    joules=30.0,
    images=60000,
    group="train",
):
    return {
        "group": group,
        "params": {"device": device, "batch_size": batch_size, "pipeline": pipeline},
        "stats": {"median": median},
        "extra_info": {
            "images": images,
            "telemetry": {"gpu": {"energy_per_round_j": joules, "energy_reliable": True}},
        },
    }


def test_the_runs_figures_are_the_train_cases_on_that_device_and_batch_size():
    run = {
        "benchmarks": [
            case("seed", median=4.5),
            case("resident", median=0.15, joules=27.9),
            case("resident", device="cpu", median=1.6),
            case("resident", batch_size=100, median=1.35),
            case("inference_mode", group="inference"),
        ]
    }
    figures = check_gpu.run_figures(run, "cuda:0", 1000)
    assert set(figures) == {"seed", "resident"}
    assert figures["seed"]["median_s"] == 4.5 and figures["resident"]["energy_per_round_j"] == 27.9


def test_the_energy_check_holds_the_telemetry_within_ten_percent_of_the_direct_reading():
    assert check_energy.energy_check(27.9, 28.5)["within"] is True
    assert check_energy.energy_check(35.0, 27.9)["within"] is False
    assert check_energy.energy_check(None, 28.5) == {"ratio": None, "within": None}


# NVML's GPU 0 matched to cuda:0 by UUID, as bench.measure.machine.nvml_info reports it.
MACHINE = ({"available": True}, [{"index": 0, "cuda_device": "cuda:0", "uuid": "GPU-abc"}])


@pytest.fixture(autouse=True)
def _nvml_by_uuid(monkeypatch):
    import pynvml

    monkeypatch.setattr(pynvml, "nvmlDeviceGetHandleByUUID", lambda uuid: 0, raising=False)


def test_without_the_gpu_in_the_runs_machine_facts_there_is_no_comparison(monkeypatch):
    import torch

    from tests.test_telemetry import FakeGpu

    gpu = FakeGpu().install(monkeypatch)
    unmatched = ({"available": True}, [{"index": 0, "cuda_device": None, "uuid": "GPU-other"}])
    times = iter(range(1000))
    out = check_energy.energy_here(
        FakeTrainer(gpu),
        torch.device("cuda:0"),
        epoch_s=0.5,
        clock=lambda: next(times),
        machine=unmatched,
        uuid="abc",
    )
    assert out["ratio"] is None and "no NVML GPU matched to cuda:0" in out["reason"]


class FakeTrainer:
    """Each epoch moves the fake GPU's energy counter by 30 J."""

    def __init__(self, gpu):
        self.gpu, self.epochs = gpu, 0

    def reset(self):
        pass

    def epoch(self):
        self.epochs += 1
        self.gpu.tick(30_000)


def test_the_telemetry_and_a_direct_reading_bracket_the_same_epochs(monkeypatch):
    import torch

    from tests.test_telemetry import FakeGpu

    gpu = FakeGpu().install(monkeypatch)
    trainer = FakeTrainer(gpu)
    times = iter(range(1000))
    out = check_energy.energy_here(
        trainer,
        torch.device("cuda:0"),
        epoch_s=0.5,
        clock=lambda: next(times),
        machine=MACHINE,
        uuid="abc",
    )
    assert out["uuid"] == "GPU-abc"  # read through NVML's own lookup of torch's UUID
    assert out["epochs"] == trainer.epochs == 10  # at least 10, and at least 2 s of them
    assert out["direct_j"] == pytest.approx(30.0) and out["telemetry_j"] == pytest.approx(30.0)
    assert out["within"] is True and out["telemetry_source"] == "total-energy counter"


def test_the_check_fails_when_the_telemetry_counts_energy_outside_the_epochs(monkeypatch):
    import torch

    from tests.test_telemetry import FakeGpu

    gpu = FakeGpu().install(monkeypatch)
    calls = []

    def clock():  # the first read, inside the telemetry's span but before the direct reading: 100 J
        calls.append(1)
        if len(calls) == 1:
            gpu.tick(100_000)
        return float(len(calls))

    out = check_energy.energy_here(
        FakeTrainer(gpu),
        torch.device("cuda:0"),
        epoch_s=0.5,
        clock=clock,
        machine=MACHINE,
        uuid="GPU-abc",
    )
    assert out["direct_j"] == pytest.approx(30.0) and out["telemetry_j"] == pytest.approx(40.0)
    assert out["within"] is False


def _on_the_cpu(*more: str, images: int = 200, rounds: int = 1) -> list[str]:
    """A check's arguments on the CPU: epochs of `images` images in batches of 100, `rounds` timed rounds."""
    return [
        "--device",
        "cpu",
        "--images",
        str(images),
        "--batch-size",
        "100",
        "--rounds",
        str(rounds),
        *more,
    ]


def _saved_check(tmp_path, variants: str, *more: str, images: int = 200, rounds: int = 1) -> dict:
    """What a check of `variants` on the CPU that ends well (exit status 0) saves with --json."""
    out = tmp_path / "out.json"
    args = _on_the_cpu(
        "--variants", variants, "--json", str(out), *more, images=images, rounds=rounds
    )
    assert check_gpu.main(args) == 0
    return json.loads(out.read_text())


def test_on_the_cpu_it_times_resident_and_says_why_no_graph_was_built(tmp_path, capsys):
    run = tmp_path / "run.json"
    run.write_text(
        json.dumps(
            {
                "machine_info": {},
                "benchmarks": [case("seed", device="cpu", batch_size=100, median=9.0, images=300)],
            }
        )
    )
    saved = _saved_check(tmp_path, "resident,cuda_graph", "--run", str(run), images=300, rounds=2)
    printed = capsys.readouterr().out
    assert (
        "cuda_graph: could not be built: RuntimeError: a CUDA graph captures CUDA kernels"
        in printed
    )
    assert (
        printed.count("a CUDA graph captures CUDA kernels") == 1
    )  # the table points back, not repeats
    resident = saved["variants"]["resident"]
    assert len(resident["times"]) == 2 and resident["loss_ok"] is True
    assert (
        saved["summary"]["fastest"]["variant"] == "resident" and saved["summary"]["device"] == "CPU"
    )
    assert saved["summary"]["fastest"]["vs_seed"] == pytest.approx(9.0 / resident["median_s"])
    assert "energy" not in saved["summary"]  # NVML's counter is a GPU's


@pytest.mark.parametrize(
    "cases, says",
    [
        (
            [case("seed", device="cpu", batch_size=100, median=9.0, images=60000)],
            "its seed epoch was 60000 images",
        ),
        (
            [case("seed", device="cpu", batch_size=1000, median=9.0, images=200)],
            "no seed epoch on cpu at batch size 100",
        ),
        (
            [case("resident", device="cpu", batch_size=100, median=1.0, images=200)],
            "no seed epoch on cpu",
        ),
    ],
)
def test_a_run_without_a_usable_seed_epoch_is_no_baseline_and_says_why(
    tmp_path, capsys, cases, says
):
    run = tmp_path / "run.json"
    run.write_text(json.dumps({"machine_info": {}, "benchmarks": cases}))
    summary = _saved_check(tmp_path, "resident", "--run", str(run))["summary"]
    assert "vs_seed" not in summary["fastest"] and summary["seed_baseline"] is None
    assert says in summary["seed_baseline_missing"]
    printed = capsys.readouterr().out
    assert "no seed baseline: " in printed and says in printed


def test_a_run_of_another_gpu_model_is_named():
    run = {
        "machine_info": {
            "gpus": [{"name": "NVIDIA H100 80GB HBM3"}, {"name": "NVIDIA H100 80GB HBM3"}]
        }
    }
    assert check_gpu._other_gpus(run, "NVIDIA H200") == "NVIDIA H100 80GB HBM3"
    assert check_gpu._other_gpus(run, "NVIDIA H100 80GB HBM3") is None
    assert (
        check_gpu._other_gpus({"machine_info": {"gpus": []}}, "NVIDIA H200") is None
    )  # a CPU run: nothing to say


@pytest.mark.parametrize(
    "argv, says",
    [
        (["--variants", "resident,fast"], "--variants: unknown fast"),
        (["--rounds", "0"], "must be positive"),
        (["--device", "gpu9"], "--device gpu9"),
        (["--run", "/nonexistent/run.json"], "--run /nonexistent/run.json"),
    ],
)
def test_bad_arguments_are_named_before_any_work(argv, says, capsys):
    with pytest.raises(SystemExit) as exit_:
        check_gpu.main(argv)
    assert exit_.value.code == 2
    assert says in capsys.readouterr().err


def _break_epoch(monkeypatch, pipeline: str, message: str, on_call: int) -> None:
    """The `on_call`-th epoch of `pipeline`'s trainer raises RuntimeError(message); every other epoch runs."""
    from fmnist_model.trainer import Trainer

    real, calls = Trainer.epoch, []

    def epoch(self, *args, **kwargs):
        if self.config.pipeline == pipeline:
            calls.append(1)
            if len(calls) == on_call:
                raise RuntimeError(message)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "epoch", epoch)


def test_a_variant_that_fails_in_its_epochs_is_named_and_the_others_are_kept(
    tmp_path, monkeypatch, capsys
):

    monkeypatch.setattr(check_gpu, "VARIANTS", {"resident": None, "channels_last": None})
    _break_epoch(monkeypatch, "channels_last", "an epoch that breaks", on_call=1)
    saved = _saved_check(tmp_path, "channels_last,resident", rounds=2)
    assert saved["summary"]["failed"] == {
        "channels_last": "epoch 0: RuntimeError: an epoch that breaks"
    }
    assert (
        len(saved["variants"]["resident"]["times"]) == 2
        and saved["summary"]["fastest"]["variant"] == "resident"
    )
    assert "channels_last: failed in epoch 0" in capsys.readouterr().out


def test_a_lost_cuda_context_stops_the_check_and_keeps_what_was_measured(
    tmp_path, monkeypatch, capsys
):

    monkeypatch.setattr(
        check_gpu, "VARIANTS", {"resident": None, "channels_last": None, "bf16": None}
    )
    monkeypatch.setattr(
        check_gpu, "_context_lost", lambda device: "RuntimeError: an illegal memory access"
    )
    # Its third epoch is round 2's last, after the others' epochs of that round.
    _break_epoch(
        monkeypatch, "channels_last", "an illegal memory access was encountered", on_call=3
    )
    saved = _saved_check(tmp_path, "resident,channels_last,bf16", rounds=3)
    assert saved["summary"]["failed"] == {
        "channels_last": "epoch 2: RuntimeError: an illegal memory access was encountered"
    }
    assert saved["summary"]["context_lost"].startswith("after channels_last failed")
    for name in ("resident", "bf16"):  # their two timed rounds stand, unprofiled
        row = saved["variants"][name]
        assert (
            len(row["times"]) == 2
            and row["median_s"] > 0
            and row["stopped"].startswith("after 2 timed rounds")
        )
        assert "profile" not in row
    assert saved["summary"]["fastest"]["variant"] in ("resident", "bf16")
    printed = capsys.readouterr().out
    assert "nothing more can run" in printed and "(2 rounds: stopped early)" in printed


def test_cudnn_benchmark_variants_run_only_in_a_call_of_their_own(capsys):
    assert not any("cudnn_benchmark" in name for name in check_gpu.DEFAULT_VARIANTS)
    assert "cuda_graph+fused_adam" in check_gpu.DEFAULT_VARIANTS
    with pytest.raises(SystemExit) as exit_:
        check_gpu.main(["--variants", "cuda_graph,cuda_graph+cudnn_benchmark"])
    assert exit_.value.code == 2
    assert "the cudnn_benchmark variants run only in a call of their own" in capsys.readouterr().err


def test_a_cudnn_benchmark_call_holds_the_mode_for_its_whole_process_and_puts_it_back(
    tmp_path, monkeypatch
):
    import torch

    from fmnist_model.trainer import Trainer

    monkeypatch.setattr(
        check_gpu, "VARIANTS", {**check_gpu.VARIANTS, "resident+bench": {"cudnn_benchmark": True}}
    )
    monkeypatch.setattr(
        check_gpu, "variant_config", lambda name, device: train_config("resident", device)
    )
    seen = []
    real = Trainer.epoch

    def epoch(self, *args, **kwargs):
        seen.append(torch.backends.cudnn.benchmark)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "epoch", epoch)
    before = torch.backends.cudnn.benchmark
    assert check_gpu.main(_on_the_cpu("--variants", "resident+bench")) == 0
    assert seen and all(seen)  # on from the first epoch to the last
    assert torch.backends.cudnn.benchmark == before


def test_the_compiled_variants_compile_as_the_ladder_does():
    from fmnist_model.ladder import COMPILE_MODE

    modes = {
        v.get("compile_mode") for v in check_gpu.VARIANTS.values() if v and "compile_mode" in v
    }
    assert modes == {COMPILE_MODE}


def test_the_energy_check_says_whether_nvml_or_the_epochs_failed(monkeypatch):
    import pynvml
    import torch

    from tests.test_telemetry import FakeGpu

    gpu = FakeGpu().install(monkeypatch)

    class Broken(FakeTrainer):
        def epoch(self):
            raise RuntimeError("an epoch that breaks")

    times = iter(range(1000))
    args = dict(epoch_s=0.5, clock=lambda: next(times), machine=MACHINE, uuid="abc")
    out = check_energy.energy_here(Broken(gpu), torch.device("cuda:0"), **args)
    assert out["reason"] == "the resident epochs failed: RuntimeError: an epoch that breaks"

    def lost(uuid):
        raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)

    monkeypatch.setattr(pynvml, "nvmlDeviceGetHandleByUUID", lost)
    out = check_energy.energy_here(FakeTrainer(gpu), torch.device("cuda:0"), **args)
    assert out["reason"].startswith("NVML energy counter failed")


def test_a_json_the_disk_cannot_take_is_said_never_a_traceback_or_a_file_cut_short(
    tmp_path, monkeypatch, capsys
):
    checked = check_gpu.checked_inputs
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)

    def then_the_disk_fills(
        *args, **kwargs
    ):  # after the check up front, as a disk filling during a check does
        run = checked(*args, **kwargs)
        resource.setrlimit(
            resource.RLIMIT_FSIZE, (300, hard)
        )  # (Python ignores SIGXFSZ: a write fails, EFBIG)
        return run

    monkeypatch.setattr(check_gpu, "checked_inputs", then_the_disk_fills)
    out = tmp_path / "out.json"
    args = _on_the_cpu("--json", str(out))
    try:
        rc = check_gpu.main([*args, "--variants", "resident"])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    captured = capsys.readouterr()
    assert rc == 1 and os.listdir(tmp_path) == []  # no file cut short or left empty, no temporary
    assert (
        captured.err.count("could not be written (File too large)") == 1
        and "Traceback" not in captured.err
    )
    assert (
        f"--json {out} was not written (File too large)" in captured.err
        and "resident" in captured.out
    )
