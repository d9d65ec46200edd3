"""Every step of the ladder trains the same model: same weights, same order, epoch-1 loss within its tolerance of resident."""

from dataclasses import replace

import pytest
import torch

from fmnist_model import Network, load_split, predict
from fmnist_model.ladder import (
    BUILDS_ON,
    INFERENCE_LADDER,
    LOSS_TOLERANCE,
    TRAIN_LADDER,
    inference_config,
    loader_workers,
    train_config,
    unsupported_reason,
)
from fmnist_model.predictor import Predictor
from fmnist_model.trainer import Trainer

DEVICES = [
    "cpu",
    pytest.param(
        "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA here")
    ),
]
# 40 steps at batch 100: enough Adam steps for the pipelines' rounding differences to grow as
# they do over an epoch, a fifteenth of an epoch's cost. 4,000 % 100 == 0, so the ragged case
# is checked on its own below.
IMAGES, BATCH = 4000, 100


@pytest.fixture(scope="module")
def split():
    return load_split("synthetic", train=True, limit=IMAGES)


def trainer(pipeline, device, split, batch_size=BATCH, images=None):
    n = images or len(split)
    sub = load_split("synthetic", train=True, limit=n) if n != len(split) else split
    t = Trainer(
        train_config(pipeline, device),
        device,
        batch_size,
        dataset=sub.dataset,
        images=sub.images,
        labels=sub.labels,
    )
    t.prepare()
    t.reset()
    return t


def runnable(device):
    return [p for p in TRAIN_LADDER if unsupported_reason(p, device) is None]


@pytest.mark.parametrize("device", DEVICES)
def test_every_pipeline_reaches_the_resident_loss_within_its_tolerance(split, device):
    resident = trainer("resident", device, split).epoch()
    assert resident.images == IMAGES
    for pipeline in runnable(device):
        t = trainer(pipeline, device, split)
        result = t.epoch()
        assert result.images == IMAGES, pipeline
        # Reaches resident's loss: no more than its tolerance above it (learning more is no fault).
        excess = (result.mean_loss - resident.mean_loss) / resident.mean_loss
        assert excess <= t.config.loss_tolerance, (
            f"{pipeline}: loss {result.mean_loss:.4f}, resident {resident.mean_loss:.4f}"
        )
        # A round is epoch 1 again: reset puts back the first weights and a fresh optimizer.
        t.reset()
        again = t.epoch()
        assert (
            abs(again.mean_loss - result.mean_loss) / result.mean_loss <= LOSS_TOLERANCE["float32"]
        ), pipeline


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA here")
@pytest.mark.parametrize(
    "config",
    [
        replace(
            train_config("cuda_graph", "cuda"), memory_format="channels_last", precision="bfloat16"
        ),
        train_config("compile_cuda_graph", "cuda"),
    ],
    ids=["channels_last_bf16", "compile_cuda_graph"],
)
def test_a_cuda_graph_of_another_step_trains_as_that_step_does(split, config):
    # The graph's step honours the config's memory format, autocast and compiled forward
    # (bench.check.gpu times these combinations): same first weights, same order, same loss.
    graph = Trainer(
        config,
        "cuda",
        BATCH,
        dataset=split.dataset,
        images=split.images,
        labels=split.labels,
    )
    assert graph.prepare()["captured_shapes"] == [BATCH]
    graph.reset()
    eager = trainer(
        "channels_last_bf16" if config.precision == "bfloat16" else "compile", "cuda", split
    ).epoch()
    result = graph.epoch()
    assert result.images == IMAGES
    assert abs(result.mean_loss - eager.mean_loss) / eager.mean_loss <= graph.config.loss_tolerance


def test_on_the_cpu_the_data_loader_pipelines_train_exactly_as_resident(split):
    # Same weights, same order, the same float32 kernels: the same losses, not merely close.
    resident = trainer("resident", "cpu", split).epoch()
    for pipeline in ("seed", "loader"):
        assert trainer(pipeline, "cpu", split).epoch().mean_loss == pytest.approx(
            resident.mean_loss, rel=1e-5
        )


def test_the_tolerance_catches_an_epoch_that_learns_less(split):
    # Half the steps (batch 200) over the same images: a fast epoch that learns less must fail.
    resident = trainer("resident", "cpu", split).epoch()
    fewer = trainer("resident", "cpu", split, batch_size=200).epoch()
    assert (fewer.mean_loss - resident.mean_loss) / resident.mean_loss > LOSS_TOLERANCE["bfloat16"]


@pytest.mark.parametrize(
    "pipeline", ["resident", "channels_last", "bf16", "channels_last_bf16", "seed"]
)
def test_a_ragged_last_batch_is_trained(split, pipeline):
    result = trainer(pipeline, "cpu", split, images=250).epoch()
    assert result.images == 250


def test_a_warmup_epoch_covers_its_images_and_the_loader_keeps_its_workers(split):
    t = trainer("loader", "cpu", split)
    assert t.epoch(images=250).images == 300  # whole batches of the persistent loader: 3 of 100
    assert t.epoch().images == IMAGES


def test_configs_record_exactly_what_runs():
    seed = train_config("seed", "cpu")
    assert (seed.data, seed.workers, seed.sync_per_batch, seed.pin_memory) == (
        "dataloader",
        0,
        True,
        False,
    )
    on_cpu, on_gpu = (
        train_config("loader", "cpu", cpus=2),
        train_config("loader", "cuda:0", cpus=16),
    )
    assert (on_cpu.workers, on_cpu.pin_memory, on_cpu.non_blocking) == (
        1,
        False,
        False,
    )  # pinning needs an accelerator
    assert (on_gpu.workers, on_gpu.pin_memory, on_gpu.non_blocking, on_gpu.persistent_workers) == (
        8,
        True,
        True,
        True,
    )
    assert train_config("channels_last", "cpu").memory_format == "channels_last"
    assert train_config("bf16", "cpu").loss_tolerance == LOSS_TOLERANCE["bfloat16"]
    assert train_config("bf16", "cpu").memory_format == "contiguous"
    both = train_config("channels_last_bf16", "cpu")  # bf16 on channels_last: both changes recorded
    assert (both.memory_format, both.precision, both.loss_tolerance) == (
        "channels_last",
        "bfloat16",
        0.10,
    )
    cl_bf16 = inference_config("channels_last_bf16")
    assert (cl_bf16.memory_format, cl_bf16.precision, cl_bf16.autograd) == (
        "channels_last",
        "bfloat16",
        "inference_mode",
    )
    compiled = train_config("compile", "cpu")
    assert compiled.compile_mode == "default" and compiled.ragged == "recompiled"
    graph = train_config("cuda_graph", "cuda:0")
    assert (
        graph.cuda_graph
        and graph.ragged == "second graph"
        and graph.loss_tolerance == LOSS_TOLERANCE["float32"]
    )
    assert set(train_config("resident", "cpu").record()) == set(graph.record())
    both = train_config("compile_cuda_graph", "cuda:0")  # the graph of the compiled step
    assert (
        both.cuda_graph
        and both.compile_mode == "default"
        and both.ragged == "recompiled, second graph"
    )
    assert (
        inference_config("eager").autograd == "enabled"
        and inference_config("inference_mode").autograd == "inference_mode"
    )
    with pytest.raises(ValueError, match="'fast' is not a training pipeline"):
        train_config("fast", "cpu")
    with pytest.raises(ValueError, match="'seed' is not an inference pipeline"):
        inference_config("seed")


def test_each_step_builds_on_an_earlier_step_and_changes_one_thing_of_it():
    for family, ladder, config in (
        ("train", TRAIN_LADDER, lambda p: train_config(p, "cpu")),
        ("inference", INFERENCE_LADDER, inference_config),
    ):
        assert set(BUILDS_ON[family]) == set(ladder[1:])
        for step, base in BUILDS_ON[family].items():
            assert ladder.index(base) < ladder.index(step), step
            if step in ("loader", "resident"):
                continue  # the data path: a DataLoader tuned, then no DataLoader at all
            a, b = config(base).record(), config(step).record()
            changed = {k for k in a if k not in ("pipeline", "ragged") and a[k] != b[k]}
            assert len(changed) == 1, (step, changed)


def test_loader_workers_follow_the_cores():
    assert [loader_workers(n) for n in (1, 2, 4, 16, 64)] == [1, 1, 2, 8, 8]


def test_a_cuda_graph_is_refused_off_cuda_with_the_reason(split):
    assert "CUDA graph" in unsupported_reason("cuda_graph", "cpu")
    assert "CUDA graph" in unsupported_reason("compile_cuda_graph", "cpu")
    assert unsupported_reason("resident", "cpu") is None
    with pytest.raises(RuntimeError, match="CUDA graph"):
        Trainer(
            train_config("cuda_graph", "cpu"),
            "cpu",
            100,
            dataset=split.dataset,
            images=split.images,
            labels=split.labels,
        )


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("pipeline", [p for p in INFERENCE_LADDER if p != "compile"])
def test_inference_pipelines_label_every_image_as_float32_eager_does(split, device, pipeline):
    if unsupported_reason(pipeline, device):
        pytest.skip(unsupported_reason(pipeline, device))
    torch.manual_seed(0)
    model = Network()
    images = split.images[:250].float() / 255  # a ragged last batch at 100
    reference = predict(model, images, 100)
    predictor = Predictor(inference_config(pipeline), model, 100, device)
    on_device = images.to(device)
    predictor.prepare(on_device)
    preds = predictor(on_device)
    assert preds.shape == (250,) and preds.device.type == torch.device(device).type
    agree = preds.cpu().eq(reference).float().mean().item()
    # float32 steps change summation order only; bf16 may flip a near-tied image or two.
    assert agree >= (0.98 if "bf16" in pipeline else 0.996), agree
    assert torch.equal(predictor(images, device=True), preds.cpu())  # end to end: the same labels


def test_each_compiled_pipeline_starts_from_empty_dynamo_caches(split, monkeypatch):
    # dynamo keeps 8 compiled entries per code object, and every Network shares one forward:
    # past that it runs the forward uncompiled, silently. Each compiled pipeline resets first.
    resets = []
    monkeypatch.setattr(torch._dynamo, "reset", lambda: resets.append(1))
    build = dict(dataset=split.dataset, images=split.images, labels=split.labels)
    Trainer(train_config("resident", "cpu"), "cpu", BATCH, **build)
    assert resets == []
    Trainer(train_config("compile", "cpu"), "cpu", BATCH, **build)
    Predictor(inference_config("compile"), Network(), BATCH, "cpu")
    assert len(resets) == 2


def test_graphs_are_captured_after_warm_up_steps_on_a_side_stream_in_one_pool(monkeypatch):
    # The one capture helper both the trainer and the predictor use, held without a GPU: torch.cuda's stream
    # and graph calls faked, the order of what it does recorded.
    from fmnist_model import graphs

    done = []

    class Stream:
        def __init__(self, device=None):
            pass

        def wait_stream(self, other):
            done.append("wait")

    class Graph:
        def __init__(self):
            self.id = sum(1 for d in done if d == "graph")
            done.append("graph")

        def pool(self):
            return f"pool of graph {self.id}"

    pools = []

    class Capturing:
        def __init__(self, graph, pool=None):
            pools.append(pool)

        def __enter__(self):
            done.append("capturing")

        def __exit__(self, *exc):
            done.append("captured")

    monkeypatch.setattr(torch.cuda, "Stream", Stream)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: Stream())
    monkeypatch.setattr(torch.cuda, "stream", lambda stream: __import__("contextlib").nullcontext())
    monkeypatch.setattr(torch.cuda, "CUDAGraph", Graph)
    monkeypatch.setattr(torch.cuda, "graph", Capturing)
    captured = graphs.capture(
        "cuda:0", [100, 40], lambda size: done.append(f"step {size}") or size * 2,
        before=lambda size: done.append(f"before {size}"),
    )  # fmt: skip
    warm = graphs.GRAPH_WARMUP_STEPS
    assert (
        done[: 1 + 4 * warm]
        == ["wait"] + ["before 100", "step 100"] * warm + ["before 40", "step 40"] * warm
    )
    assert done[1 + 4 * warm :] == ["wait", "before 100", "graph", "capturing", "step 100", "captured",
                                    "before 40", "graph", "capturing", "step 40", "captured"]  # fmt: skip
    assert {size: out for size, (_graph, out) in captured.items()} == {100: 200, 40: 80}
    assert pools == [
        None,
        "pool of graph 0",
    ]  # the second shape's graph shares the first's memory pool
