"""bench.check_gpu: its variants' configs, its reading of a saved run, the energy check, and a run on the CPU."""

import json

import pytest

from bench import check_gpu
from fmnist_model.pipelines import train_config


def test_each_variant_is_the_cuda_graph_step_with_its_changes():
    assert check_gpu.variant_config("resident", "cuda:0") == train_config("resident", "cuda:0")
    assert check_gpu.variant_config("cuda_graph", "cuda:0") == train_config("cuda_graph", "cuda:0")
    both = check_gpu.variant_config("cuda_graph+channels_last+bf16+cudnn_benchmark", "cuda:0")
    assert both.cuda_graph and (both.memory_format, both.precision) == ("channels_last", "bfloat16")
    assert not hasattr(both, "cudnn_benchmark")  # set around the capture, not a field of the step
    assert check_gpu.variant_config("cuda_graph+compile", "cuda:0").compile_mode == "default"


def case(pipeline, device="cuda:0", batch_size=1000, median=0.05, joules=30.0, images=60000, group="train"):
    return {
        "group": group,
        "params": {"device": device, "batch_size": batch_size, "pipeline": pipeline},
        "stats": {"median": median},
        "extra_info": {"images": images, "telemetry": {"gpu": {"energy_per_round_j": joules, "energy_reliable": True}}},
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


def test_the_energy_check_holds_the_run_within_ten_percent_of_a_separate_reading():
    assert check_gpu.energy_check(27.9, 28.5)["within"] is True
    assert check_gpu.energy_check(27.9, 35.0)["within"] is False
    assert check_gpu.energy_check(None, 28.5) == {"run_j": None, "here_j": 28.5, "ratio": None, "within": None}


def test_on_the_cpu_it_times_resident_and_says_why_no_graph_was_built(tmp_path, capsys):
    run = tmp_path / "run.json"
    run.write_text(json.dumps({"benchmarks": [case("seed", device="cpu", batch_size=100, median=9.0, images=300)]}))
    out = tmp_path / "out.json"
    args = ["--device", "cpu", "--images", "300", "--batch-size", "100", "--rounds", "2"]
    assert check_gpu.main([*args, "--variants", "resident,cuda_graph", "--run", str(run), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "cuda_graph: could not be built: RuntimeError: a CUDA graph captures CUDA kernels" in printed
    saved = json.loads(out.read_text())
    resident = saved["variants"]["resident"]
    assert len(resident["times"]) == 2 and resident["loss_ok"] is True
    assert saved["summary"]["fastest"]["variant"] == "resident"
    assert saved["summary"]["fastest"]["vs_seed"] == pytest.approx(9.0 / resident["median_s"])
    assert "energy" not in saved["summary"]  # NVML's counter is a GPU's


def test_a_seed_epoch_of_another_size_is_no_baseline(tmp_path):
    run = tmp_path / "run.json"
    run.write_text(json.dumps({"benchmarks": [case("seed", device="cpu", batch_size=100, median=9.0, images=60000)]}))
    out = tmp_path / "out.json"
    args = ["--device", "cpu", "--images", "200", "--batch-size", "100", "--rounds", "1", "--variants", "resident"]
    assert check_gpu.main([*args, "--run", str(run), "--json", str(out)]) == 0
    assert "vs_seed" not in json.loads(out.read_text())["summary"]["fastest"]


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
