"""Predicted labels by one inference pipeline, a batch at a time, compute only or end to end."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .graphs import capture, compiled
from .ladder import InferenceConfig, unsupported_reason

__all__ = ["Predictor"]


class Predictor:
    """Predicted labels for a float [N,1,28,28] tensor, `batch_size` at a time, by one inference pipeline.

    With `device`, each batch is moved there and the labels come back to where the images
    are (end to end); without it the work runs where the images are (compute only), as
    `loops.predict` does. `prepare(images)` compiles or captures each batch shape of a pass.
    """

    def __init__(
        self, config: InferenceConfig, model: nn.Module, batch_size: int, device: torch.device | str
    ) -> None:
        reason = unsupported_reason(config.pipeline, device)
        if reason is not None:
            raise RuntimeError(reason)
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.config, self.batch_size, self.device = config, batch_size, torch.device(device)
        self._memory_format = (
            torch.channels_last
            if config.memory_format == "channels_last"
            else torch.contiguous_format
        )
        self.model = model.to(self.device, memory_format=self._memory_format).eval()
        self.forward: Callable = (
            compiled(self.model, config.compile_mode)
            if config.compile_mode is not None
            else self.model
        )
        self._graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = {}

    def _labels(self, x: torch.Tensor) -> torch.Tensor:
        if self._memory_format is not torch.contiguous_format:
            x = x.contiguous(memory_format=self._memory_format)
        if self.config.precision == "bfloat16":
            with torch.autocast(x.device.type, dtype=torch.bfloat16):
                return self.forward(x).argmax(dim=1)
        return self.forward(x).argmax(dim=1)

    def prepare(self, images: torch.Tensor) -> dict:
        """Compile or capture every batch shape a pass over `images` runs (on the device)."""
        full, rest = divmod(len(images), self.batch_size)
        shapes = ([self.batch_size] if full else []) + ([rest] if rest else [])
        done = {}
        if self.config.compile_mode is not None:
            with torch.inference_mode():
                for size in shapes:
                    self._labels(images[:size].to(self.device))
            done["compiled_shapes"] = shapes
        if self.config.cuda_graph:  # after a compile, the graph captures the compiled kernels
            inputs = {size: images[:size].to(self.device).clone() for size in shapes}
            with torch.inference_mode():
                captured = capture(self.device, shapes, lambda size: self._labels(inputs[size]))
            self._graphs = {
                size: (graph, inputs[size], out) for size, (graph, out) in captured.items()
            }
            done["captured_shapes"] = shapes
        return done

    def __call__(self, images: torch.Tensor, *, device: bool = False) -> torch.Tensor:
        """Labels for `images`; `device=True` moves each batch to the device and the labels back (end to end)."""
        target = self.device if device else images.device
        grad = (
            torch.inference_mode()
            if self.config.autograd == "inference_mode"
            else torch.enable_grad()
        )
        out = []
        with grad:
            for start in range(0, len(images), self.batch_size):
                x = images[start : start + self.batch_size].to(target)
                if self.config.cuda_graph:
                    graph, static_in, static_out = self._graphs[len(x)]
                    static_in.copy_(x)
                    graph.replay()
                    out.append(static_out.clone())
                else:
                    out.append(self._labels(x).detach())
        preds = torch.cat(out) if out else torch.empty(0, dtype=torch.int64, device=target)
        return preds.to(images.device)
