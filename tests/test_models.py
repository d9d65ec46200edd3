"""Any model (--model): naming, building and checking a model, its bounded work, its cases, and a run of two models
end to end, kept apart in the answer, the report and compare."""

from __future__ import annotations

import json
import math
import os
import re
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

from bench.analysis import models as by
from bench.analysis.rows import runs_to_frame
from bench.format.names import case_id
from bench.format.schema import run_errors
from bench.measure.plan import (
    MAX_MODEL_IMAGES,
    MIN_MODEL_IMAGES,
    ModelPlan,
    Plan,
    bounded_images,
)
from bench.report.compare import main as compare_main
from bench.report.page import model_slug, write_report
from bench.run.cost import case_cost
from bench.run.summary import end_summary
from fmnist_model.data import FAKE, fake_split
from fmnist_model.models import (
    ModelError,
    ModelSpec,
    check_model,
    parse_classes,
    parse_input_shape,
    parse_models,
    spec_of,
)
from tests import harness

REPO = Path(__file__).resolve().parent.parent
BENCH = [sys.executable, "-m", "pytest", "bench", "-p", "no:cacheprovider"]
TINY = "tests.tiny_model:build"


# ---------------------------------------------------------------- naming and checking a model


def test_model_names_are_parsed_and_bad_ones_named():
    assert parse_models(None) == ("cnn",)
    assert parse_models("cnn, torchvision:resnet18,pkg.mod:build") == (
        "cnn",
        "torchvision:resnet18",
        "pkg.mod:build",
    )
    for bad, said in (
        ("resnet18", "is not cnn, torchvision:NAME or module.path:callable"),
        ("mod:", "is not cnn"),
        ("cnn,,cnn", "comma-separated"),
        ("cnn,cnn", "names a model twice"),
        ("resnet18", "did you mean torchvision:resnet18"),
        ("mymodels.py:build", r"without .py \(mymodels:build\)"),
    ):
        with pytest.raises(ModelError, match=said):
            parse_models(bad)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("3,7", "expected C,H,W"),
        ("3,0,4", "expected C,H,W"),
        ("a,b,c", "expected C,H,W"),
        ("5,8,8", "1 to 4"),
        ("32,32,3", r"channels come first: 3,32,32\?"),
        ("3,9000,8", "more than 2,048"),
    ],
)
def test_a_bad_input_shape_is_named(text, said):
    with pytest.raises(ModelError, match=said):
        parse_input_shape(text)


def test_shapes_and_classes_that_are_well_formed():
    assert parse_input_shape("3,64,64") == (3, 64, 64)
    assert parse_input_shape("1x28x28") == (1, 28, 28)
    assert parse_classes("100") == 100
    for bad in ("1", "ten", "0"):
        with pytest.raises(ModelError):
            parse_classes(bad)


def test_the_cnn_keeps_its_own_shape_and_another_model_must_say_one():
    assert spec_of("cnn", None, None) == ModelSpec("cnn", (1, 28, 28), 10)
    # a torchvision model's default: 3 channels at its weights' crop size (inception_v3's is 299)
    assert spec_of("torchvision:resnet18", None, None).input_shape == (3, 224, 224)
    assert spec_of("torchvision:inception_v3", None, 5) == ModelSpec(
        "torchvision:inception_v3", (3, 299, 299), 5
    )
    with pytest.raises(ModelError, match="cannot say what shape"):
        spec_of(TINY, None, None)
    # a module that does not import says so before anything else
    with pytest.raises(ModelError, match="cannot import nosuch.module"):
        spec_of("nosuch.module:build", None, None)


def test_resnet18_is_counted_as_torch_counts_it():
    spec = spec_of("torchvision:resnet18", (3, 64, 64), 10)
    facts = check_model(spec)
    assert facts.parameters == 11_181_642
    model = torchvision.models.resnet18(num_classes=10).eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(2, 3, 64, 64))
    assert facts.flops_per_image == counter.get_total_flops() / 2


@pytest.mark.parametrize(
    ("name", "shape", "classes", "said"),
    [
        ("torchvision:nosuchnet", (3, 8, 8), 10, "torchvision has no classification model"),
        ("torchvision:resnet1", (3, 8, 8), 10, "did you mean resnet18"),
        ("tests.tiny_model:nothing", (3, 8, 8), 10, "has no 'nothing'"),
        (
            "tests.tiny_model:not_a_model",
            (3, 8, 8),
            10,
            r"not_a_model\(\) returned a str, not a torch.nn.Module",
        ),
        ("tests.tiny_model:raises", (3, 8, 8), 10, "raised RuntimeError: the user's builder"),
        ("torchvision:resnet18", (1, 28, 28), 10, r"fails on input of shape \[2, 1, 28, 28\]"),
    ],
)
def test_a_model_that_cannot_be_measured_is_named_with_why(name, shape, classes, said):
    with pytest.raises(ModelError, match=said):
        check_model(ModelSpec(name, shape, classes))


def test_a_lazy_model_that_rejects_the_shape_is_named_not_a_crash():
    with pytest.raises(ModelError, match=r"fails on input of shape \[2, 1, 8, 8\]") as found:
        check_model(ModelSpec("tests.tiny_model:three_channels", (1, 8, 8), 10))
    assert found.value.option == "--input-shape"
    assert check_model(ModelSpec("tests.tiny_model:three_channels", (3, 8, 8), 10)).parameters > 0


def test_an_output_that_is_not_batch_by_classes_is_refused():
    # the tiny model returns 10 logits: asked for 7 classes through a builder that ignores it
    spec = ModelSpec("tests.tiny_model:build", (3, 8, 8), 7)
    assert check_model(spec).parameters > 0  # it takes num_classes: [2, 7]
    with pytest.raises(ModelError, match=r"not logits of \[batch, classes\] = \[2, 7\]"):
        check_model(ModelSpec("torch.nn:Flatten", (1, 1, 10), 7))


def test_a_lazy_model_gets_its_weights_before_an_optimizer_sees_them():
    model = ModelSpec(TINY, (2, 8, 8), 10).build()
    assert not any(
        isinstance(p, torch.nn.parameter.UninitializedParameter) for p in model.parameters()
    )
    torch.optim.Adam(model.parameters())  # (an uninitialized parameter would raise here)


# ---------------------------------------------------------------- its bounded work


def test_an_epoch_is_bounded_by_the_model_s_work_alone():
    # resnet18 at 3x64x64: 296 MFLOP forward, about 3 of that trained: 1,000 images within 1 TFLOP
    assert bounded_images(3 * 296e6, 1e12, MAX_MODEL_IMAGES) == 1000
    assert bounded_images(296e6, 1e12 / 6, MAX_MODEL_IMAGES) == 500
    # rounded down to one significant digit, never under the floor, never over the cap
    assert bounded_images(1e12 / 2345, 1e12, MAX_MODEL_IMAGES) == 2000
    assert bounded_images(1e15, 1e12, MAX_MODEL_IMAGES) == MIN_MODEL_IMAGES
    assert bounded_images(1.0, 1e12, MAX_MODEL_IMAGES) == MAX_MODEL_IMAGES


def _model(name="torchvision:resnet18", train=1000, test=500) -> ModelPlan:
    return ModelPlan(
        name=name,
        label=f"{name} 3x64x64",
        input_shape=(3, 64, 64),
        classes=10,
        parameters=11_181_642,
        flops_per_image=296e6,
        train_images=train,
        test_images=test,
    )


def _plan(**kw) -> Plan:
    return Plan(devices=("cpu",), dataset_name="synthetic", default_threads=2, **kw)


def test_the_cnn_alone_names_no_model_and_several_make_it_an_axis():
    alone = _plan()
    assert all("model" not in case for f in ("transfer", "train") for case in alone.cases(f))
    cnn = ModelPlan("cnn", "cnn", (1, 28, 28), 10, 32_998, 464_880, None, None)
    both = _plan(models=(cnn, _model()))
    train = both.cases("train")
    assert [c for c in train if c["model"] == "cnn"] == [
        {"model": "cnn", **c} for c in alone.cases("train")
    ]
    resnet = [c for c in train if c["model"] == "torchvision:resnet18"]
    # batch sizes an epoch of 1,000 holds whole; the ladder at the one nearest 1,000
    assert {c["batch_size"] for c in resnet} == {100, 1000}
    assert {c["pipeline"] for c in resnet if c["batch_size"] == 100} == {"seed", "resident"}
    assert {c["batch_size"] for c in both.cases("inference") if c["model"] != "cnn"} == {1, 10, 100}
    # copies of its shape: the sizes up to its epoch, and its epoch
    assert {c["size"] for c in both.cases("transfer") if c["model"] != "cnn"} == {1, 100, 1000}
    # the limits are the device's: no model
    assert all("model" not in case for case in both.cases("limits"))
    assert case_id(resnet[0]) == "torchvision:resnet18-cpu-2t-100-seed"
    # the plan saved names its models; a run of the CNN alone saves the plan it always did
    assert "models" not in alone.summary()
    assert [m["name"] for m in both.summary()["models"]] == ["cnn", "torchvision:resnet18"]


def test_fake_data_is_the_same_images_in_both_forms():
    split = fake_split((3, 6, 5), 7, train=True, images=20)
    assert split.name == FAKE and split.images.shape == (20, 3, 6, 5)
    assert split.images.dtype == torch.uint8 and int(split.labels.max()) < 7
    image, label = split.dataset[4]
    assert torch.equal(image, split.images[4].float() / 255) and label == int(split.labels[4])
    test = fake_split((3, 6, 5), 7, train=False, images=20)
    assert not torch.equal(test.images, split.images)  # the test split's images are its own
    with pytest.raises(ValueError, match="positive"):
        fake_split((3, 6, 5), 7, train=True, images=0)


# ---------------------------------------------------------------- the command line


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--model", "nosuch.module:build"], "--model: cannot import nosuch.module"),
        (["--model", "torchvision:nosuchnet"], "--model: torchvision has no classification model"),
        (
            ["--model", "torchvision:resnet18", "--input-shape", "3,7"],
            "--input-shape: expected C,H,W",
        ),
        (["--input-shape", "3,64,64"], "--input-shape: the notes' CNN takes 1x28x28"),
        (["--model", f"{TINY}", "--input-shape", "3,8,8", "--classes", "1"], "--classes"),
    ],
)
def test_a_model_that_cannot_run_is_a_usage_error_before_any_work(tmp_path, args, said):
    store = tmp_path / "store"
    result = harness.run(
        [*BENCH, "--quick", "--devices", "cpu", *args, f"--benchmark-storage=file://{store}",
         "--benchmark-autosave"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 4, result.stdout[-2000:] + result.stderr[-2000:]
    assert said in result.stderr
    assert not store.exists() or not any(store.rglob("*.json"))  # nothing saved


# ---------------------------------------------------------------- two models, end to end


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    """A quick run of the notes' CNN and the tests' tiny model, cut to a few cases a model."""
    tmp = tmp_path_factory.mktemp("models")
    store = tmp / "store"
    result = harness.run(
        [
            *BENCH, "--quick", "--devices", "cpu", "--model", f"cnn,{TINY}",
            "--input-shape", "1,8,8", "--classes", "5", "--batch-sizes", "100",
            "--pipelines", "seed,resident,inference_mode", "--cpu-threads", "default",
            "--benchmark-autosave", f"--benchmark-storage=file://{store}",
            f"--benchmark-json={tmp / 'run.json'}",
        ],
        cwd=REPO, env={**os.environ, "COLUMNS": "100"}, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return {
        "tmp": tmp,
        "store": store,
        "json": json.loads((tmp / "run.json").read_text()),
        "output": result.stdout,
    }


def test_every_case_names_its_model_and_the_run_its_models(two_models):
    run = two_models["json"]
    assert run_errors(run) == []
    for bench in run["benchmarks"]:
        if bench["group"] == "limits":
            assert "model" not in bench["params"] and "model" not in bench["extra_info"]
            continue
        model = bench["params"]["model"]
        assert bench["name"].split("[")[1].startswith(f"{model}-cpu")
        info = bench["extra_info"]["model"]
        assert info["name"] == model and info["parameters"] > 0 and info["flops_per_image"] > 0
        if model == TINY:
            assert info["input_shape"] == [1, 8, 8] and info["classes"] == 5
            if bench["group"] != "transfer":
                assert bench["extra_info"]["dataset"] == FAKE
        else:
            assert info["input_shape"] == [1, 28, 28] and info["classes"] == 10
    plan = run["machine_info"]["fmnist_bench"]["plan"]
    assert [m["name"] for m in plan["models"]] == ["cnn", TINY]
    tiny = plan["models"][1]
    assert tiny["train_images"] == 2000 and tiny["test_images"] == 2000  # the quick run's cap
    trained = [b for b in run["benchmarks"] if b["group"] == "train"]
    assert {b["params"]["model"] for b in trained} == {"cnn", TINY}
    for bench in trained:  # loss, FLOPs and a binding limit beside every training time
        extra = bench["extra_info"]
        assert math.isfinite(extra["loss"]) and extra["work"]["flops_per_image"] > 0
        assert "binding" in extra["limits"]


def test_each_model_s_copies_move_images_of_its_own_shape(two_models):
    for bench in two_models["json"]["benchmarks"]:
        if bench["group"] != "transfer":
            continue
        shape = bench["extra_info"]["model"]["input_shape"]
        size = 4 if bench["params"]["dtype"] == "float32" else 1
        assert bench["extra_info"]["bytes"] == bench["params"]["size"] * math.prod(shape) * size


def test_the_answer_takes_each_model_alone_then_both_against_their_work(two_models):
    lines = end_summary(two_models["json"], width=None)
    text = "\n".join(lines)
    first = lines[0]
    assert first.startswith("cnn (32,998 parameters, 465 kFLOP an image forward): No GPU here.")
    tiny = next(line for line in lines if line.startswith(TINY))
    assert "no reference GPU run of this model" in tiny
    assert f"pytest bench --model {TINY} --input-shape 1,8,8 --classes 5" in text
    assert "Where model size moves the crossover (each model by its work an image" in text
    assert "In detail, cnn (the terms" in text and f"In detail, {TINY} 1x8x8, 5 classes" in text
    # the device's limits are said once, under the first model; each model's detail says what they explain
    assert sum(" eager; peak float32 " in line for line in lines) == 1
    assert "Against this machine's own limits (their figures: in the detail of cnn above):" in lines
    later = lines[
        lines.index(
            "Against this machine's own limits (their figures: in the detail of cnn above):"
        ) :
    ]
    assert not any(line.strip().startswith("not built on") for line in later)
    # the CNN's answer is held against the reference GPU; the tiny model's never is
    tiny_detail = text.split(f"In detail, {TINY}")[1]
    assert "the notes' loop (seed), batch" not in tiny_detail.split("cases measured")[0]


def test_the_report_shows_each_model_on_its_page_and_the_view_across_them(two_models, tmp_path):
    out = tmp_path / "report"
    write_report(runs_to_frame([(Path("run.json"), two_models["json"])]), out)
    tiny = f"{TINY} 1x8x8, 5 classes"
    page = out / "models" / model_slug(tiny)
    index, other = (out / "report.md").read_text(), (page / "report.md").read_text()
    assert index.startswith("# fmnist-bench report: cnn") and other.startswith(
        "# fmnist-bench report: tests.tiny\\_model:build 1x8x8, 5 classes"
    )
    assert "## Where model size moves the crossover" in index and (out / "by_model.png").exists()
    # never mixed: the first page's epochs are the CNN's alone, the model's page has its own alone
    for path, model in ((out, "cnn"), (page, TINY)):
        drawn = pd.read_csv(path / "epoch_time.csv")
        medians = [
            b["stats"]["median"]
            for b in two_models["json"]["benchmarks"]
            if b["group"] == "train" and b["params"]["model"] == model
        ]
        assert sorted(drawn["y"]) == pytest.approx(sorted(medians)), model
    html = (out / "index.html").read_text()
    assert f'href="models/{model_slug(tiny)}/index.html"' in html
    assert 'href="../../index.html"' in (page / "index.html").read_text()
    view = by.by_model(runs_to_frame([(Path("run.json"), two_models["json"])]))
    assert set(view["model"]) == {"cnn", tiny} and set(view["measure"]) == {"seconds an image"}


def test_compare_refuses_runs_of_other_models(two_models, tmp_path, capsys):
    new = two_models["json"]
    # the same machine's run of the CNN alone: its cases and its plan name no model
    old = json.loads(json.dumps(new))
    old["benchmarks"] = [b for b in old["benchmarks"] if b["params"].get("model") in (None, "cnn")]
    for bench in old["benchmarks"]:
        bench["params"].pop("model", None)
        bench["extra_info"].pop("model", None)
    del old["machine_info"]["fmnist_bench"]["plan"]["models"]
    paths = tmp_path / "old.json", tmp_path / "new.json"
    for path, run in zip(paths, (old, new), strict=True):
        path.write_text(json.dumps(run))
    with pytest.raises(SystemExit) as stop:
        compare_main([str(p) for p in paths])
    assert stop.value.code == 2
    assert f"OLD measured cnn and NEW cnn, {TINY} 1x8x8, 5 classes" in capsys.readouterr().err


def test_a_model_s_cases_are_predicted_from_its_own_never_from_the_cnn_s():
    from bench.run.estimate import Observation, Profile

    profile = Profile()
    seed = {"device": "cpu", "cpu_threads": 2, "batch_size": 100, "pipeline": "seed"}
    profile.add(Observation("train", "cpu", 2, ("seed",), 100, round_s=6.0, images=60_000))
    assert profile.round_s("train", seed, 60_000) == (pytest.approx(6.0), True)
    resnet = {"model": "torchvision:resnet18 3x64x64", **seed}
    assert profile.round_s("train", resnet, 1000) == (None, False)
    mine = Observation("train", "cpu", 2, ("seed",), 100, 6.0, 1000, model=resnet["model"])
    profile.add(mine)
    assert profile.round_s("train", resnet, 1000) == (pytest.approx(6.0), True)
    # the same model at another shape is another workload
    at_224 = {**resnet, "model": "torchvision:resnet18 3x224x224"}
    assert profile.round_s("train", at_224, 1000) == (None, False)
    # a plan's case names its model; its cost is looked up by the model's label
    case = {"model": "torchvision:resnet18", **seed}
    assert case_cost(_plan(models=(_model(),)), "train", case, profile).seconds is not None


def test_a_report_folder_with_model_pages_is_written_again_and_a_stranger_in_it_refused(
    two_models, tmp_path
):
    from bench.report.page import OutputError, check_out

    out = tmp_path / "report"
    frame = runs_to_frame([(Path("run.json"), two_models["json"])])
    write_report(frame, out)
    write_report(frame, out)  # its own models/ pages: no stranger
    (out / "models" / "notes").mkdir()
    with pytest.raises(OutputError, match="models/notes"):
        check_out(out)


def test_a_run_of_other_models_alone_lends_no_limits_to_the_cnn(two_models):
    tiny_only = json.loads(json.dumps(two_models["json"]))
    tiny_only["benchmarks"] = [
        b for b in tiny_only["benchmarks"] if b["params"].get("model") in (None, TINY)
    ]
    frame = runs_to_frame([(Path("tiny.json"), tiny_only)])
    assert by.models_of(frame) == [f"{TINY} 1x8x8, 5 classes"]
    assert by.of_model(frame, "cnn").empty  # its limits are its models' only
    mine = by.of_model(frame, f"{TINY} 1x8x8, 5 classes")
    assert set(mine["family"]) == {"limits", "transfer", "train", "inference"}


def _split_by_model(run: dict, model: str, when: str, quick: bool = False) -> dict:
    """The run's cases of `model` and its limits, as a run of their own (another date; quick if asked)."""
    out = json.loads(json.dumps(run))
    out["benchmarks"] = [b for b in out["benchmarks"] if b["params"].get("model") in (None, model)]
    out["datetime"] = when
    out["machine_info"]["fmnist_bench"]["plan"]["quick"] = quick
    return out


def test_models_measured_in_runs_of_their_own_keep_their_machine_s_limits(two_models):
    run = two_models["json"]
    cnn = _split_by_model(run, "cnn", "2026-12-06T01:00:00+00:00")
    tiny = _split_by_model(run, TINY, "2026-12-06T02:00:00+00:00")
    frame = runs_to_frame([(Path("m/1.json"), cnn), (Path("m/2.json"), tiny)])
    label = f"{TINY} 1x8x8, 5 classes"
    for model in ("cnn", label):
        assert (by.of_model(frame, model)["family"] == "limits").any(), model
    assert set(by.by_model(frame)["model"]) == {"cnn", label}


def test_the_view_across_models_takes_each_model_s_full_figures_else_its_quick_ones(two_models):
    run = two_models["json"]
    cnn = _split_by_model(run, "cnn", "2026-12-06T01:00:00+00:00", quick=False)
    tiny = _split_by_model(run, TINY, "2026-12-06T02:00:00+00:00", quick=True)
    frame = runs_to_frame([(Path("m/1.json"), cnn), (Path("m/2.json"), tiny)])
    view = by.by_model(frame)
    assert dict(view.groupby("model")["quick"].all()) == {
        "cnn": False,
        f"{TINY} 1x8x8, 5 classes": True,
    }
    from bench.report.tables import by_model_table

    assert f"{TINY} 1x8x8, 5 classes (quick)" in set(by_model_table(view)["model"])


def test_compare_takes_the_same_models_in_another_order_as_the_same(two_models, tmp_path):
    new = two_models["json"]
    old = json.loads(json.dumps(new))
    old["machine_info"]["fmnist_bench"]["plan"]["models"].reverse()
    # its cases in another order too: the tiny model's first
    old["benchmarks"].sort(key=lambda b: b["params"].get("model") != TINY)
    old["datetime"] = "2026-12-05T01:00:00+00:00"
    paths = tmp_path / "old.json", tmp_path / "new.json"
    for path, run in zip(paths, (old, new), strict=True):
        path.write_text(json.dumps(run))
    assert compare_main([str(p) for p in paths]) == 0


def test_a_session_that_saves_nothing_leaves_no_results_folder(tmp_path):
    # (pytest-benchmark makes its storage folder whatever the session does: a collection alone made an
    # empty results/<machine>/ in the checkout)
    (tmp_path / "results").mkdir()
    for name in ("bench", "pyproject.toml", "fmnist_model"):
        (tmp_path / name).symlink_to(REPO / name)
    result = harness.run(
        [*BENCH, "--quick", "--collect-only"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    header = re.sub(r"\s+", "", result.stdout)  # (its lines folded at 100 columns)
    assert f"savestofile://{tmp_path.resolve()}/results/" in header
    assert list((tmp_path / "results").iterdir()) == []


def _a_second_model(run: dict, name: str, flops: float, slower: dict[str, float]) -> dict:
    """`run` (the constructed GPU run of the CNN) with every train and inference case measured again as another
    model, `slower` times slower on each device: a constructed machine that measured two models."""
    out = json.loads(json.dumps(run))
    again = []
    for bench in out["benchmarks"]:
        if bench["group"] not in ("train", "inference"):
            continue
        copy = json.loads(json.dumps(bench))
        # the CNN's cases as a run that names models saves them
        bench["params"] = {"model": "cnn", **bench["params"]}
        bench["extra_info"]["model"] = {"name": "cnn", "label": "cnn", "flops_per_image": 464_880}
        factor = slower["cpu" if copy["params"]["device"] == "cpu" else "gpu"]
        copy["params"] = {"model": name, **copy["params"]}
        copy["name"] = copy["name"].replace("[", f"[{name}-")
        for stat in ("min", "max", "mean", "median", "q1", "q3", "iqr", "stddev"):
            copy["stats"][stat] *= factor
        copy["stats"]["data"] = [t * factor for t in copy["stats"]["data"]]
        copy["extra_info"]["model"] = {
            "name": name,
            "label": f"{name} 3x64x64",
            "parameters": 11_181_642,
            "flops_per_image": flops,
            "input_shape": [3, 64, 64],
            "classes": 10,
        }
        again.append(copy)
    out["benchmarks"] += again
    return out


def test_the_view_across_models_says_each_model_s_gpu_speedup_and_crossover(tmp_path):
    cnn = json.loads((REPO / "tests" / "fixtures" / "constructed_gpu_run.json").read_text())
    # the larger model: 600x the CNN's work, its CPU 600x slower, its GPU 20x
    both = _a_second_model(cnn, "torchvision:resnet18", 296e6, {"cpu": 600.0, "gpu": 20.0})
    frame = runs_to_frame([(Path("run.json"), both)])
    view = by.by_model(frame)
    assert set(view["measure"]) == {"speedup"}
    small, large = (view[view["model"] == m] for m in ("cnn", "torchvision:resnet18 3x64x64"))
    merged = small.merge(large, on=["family", "variant", "batch_size", "device"])
    # the same steps at the same batch sizes, the larger model's speedup 30x the CNN's
    assert len(merged) == len(small) > 0
    assert (merged["value_y"] / merged["value_x"]).to_numpy() == pytest.approx(30.0)
    assert large["crossover"].astype(bool).all()
    lines = end_summary(both, width=None)
    assert any(
        line.startswith(
            "Where model size moves the crossover (each model by its work an image: the GPU"
        )
        for line in lines
    )
    out = tmp_path / "report"
    write_report(frame, out)
    drawn = pd.read_csv(out / "by_model.csv")
    assert set(drawn["panel"].str.split(" \\| ").str[-1]) == {"GPU over its CPU"}
    assert sorted(drawn["x"].unique()) == pytest.approx(sorted({464_880.0, 296e6}))


def test_compare_of_a_folder_pairs_the_newest_run_with_an_earlier_one_of_its_models(
    two_models, tmp_path
):
    from bench.report.compare import CompareError, newest_two

    run = two_models["json"]
    folder = tmp_path / "machine" / "Linux-CPython-3.11-64bit"
    folder.mkdir(parents=True)
    older = json.loads(json.dumps(run))
    older["datetime"] = "2026-12-05T01:00:00+00:00"
    tiny = _split_by_model(run, TINY, "2026-12-05T02:00:00+00:00", quick=True)
    del tiny["machine_info"]["fmnist_bench"]["plan"]["models"][0]
    for name, kept in (("0001_a.json", older), ("0002_b.json", tiny), ("0003_c.json", run)):
        (folder / name).write_text(json.dumps(kept))
    old, new = newest_two(tmp_path / "machine")
    assert (old.name, new.name) == (
        "0001_a.json",
        "0003_c.json",
    )  # not the tiny model's run between
    # without the earlier run of both, the newest run of both has no pair: the tiny model's two runs do
    (folder / "0001_a.json").unlink()
    (folder / "0000_z.json").write_text(
        json.dumps({**tiny, "datetime": "2026-12-04T01:00:00+00:00"})
    )
    old, new = newest_two(tmp_path / "machine")
    assert (old.name, new.name) == ("0000_z.json", "0002_b.json")
    (folder / "0000_z.json").unlink()
    with pytest.raises(CompareError, match="no earlier run of 0003_c.json's models"):
        newest_two(tmp_path / "machine")


def test_a_run_of_other_models_alone_says_its_data_is_fakedata(tmp_path):
    result = harness.run(
        [*BENCH, "--quick", "--devices", "cpu", "--model", TINY, "--input-shape", "1,8,8",
         "--collect-only", f"--benchmark-storage=file://{tmp_path}"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "dataset fakedata; quick run" in result.stdout


def test_a_run_of_the_limits_alone_still_says_them():
    run = json.loads(
        next(
            (REPO / "results" / "reference" / "vm_AMD-EPYC_no-gpu_dcc1ea0c").rglob("0002_*.json")
        ).read_text()
    )
    run["benchmarks"] = [b for b in run["benchmarks"] if b["group"] == "limits"]
    lines = end_summary(run, width=None)
    assert any(
        line.startswith("Against this machine's own limits, measured in this run") for line in lines
    )
    frame = runs_to_frame([(Path("limits.json"), run)])
    assert len(by.of_model(frame, "cnn")) == len(frame)


def test_a_stopped_session_s_empty_folders_are_taken_away_and_nothing_else(tmp_path):
    from bench.run.saving import left_empty

    made = tmp_path / "results" / "machine"
    (made / "journals" / "deeper").mkdir(parents=True)
    left_empty(made)
    assert not made.exists()
    (made / "journals").mkdir(parents=True)
    (made / "0001_run.json").write_text("{}")
    left_empty(made)
    assert (made / "0001_run.json").exists() and not (made / "journals").exists()
    left_empty(None)  # (a folder that was there before the session: never given)
