"""check-gpu's energy cross-check: the suite's telemetry against a direct read of NVML's energy counter over the same epochs."""

from __future__ import annotations

import math

__all__ = ["ENERGY_SPAN_S", "ENERGY_TOLERANCE", "energy_check", "energy_here"]


# NVML's energy counter updates every 20-100 ms: read it around at least this long.
ENERGY_SPAN_S = 2.0


ENERGY_TOLERANCE = 0.10


def energy_check(telemetry_j: float | None, direct_j: float | None) -> dict:
    """The suite's telemetry against a direct reading of the counter around the same epochs: ratio, within 10%?"""
    if telemetry_j is None or direct_j is None or direct_j <= 0:
        return {"ratio": None, "within": None}
    ratio = telemetry_j / direct_j
    return {"ratio": ratio, "within": abs(ratio - 1) <= ENERGY_TOLERANCE}


def energy_here(trainer, device, epoch_s: float, *, clock=None, machine=None, uuid=None) -> dict:
    """Resident epochs (each after a reset, as the suite's rounds are) observed by the suite's own
    telemetry, its GPU found as a run finds it (NVML's GPUs matched to CUDA's by UUID), with NVML's
    total-energy counter also read directly, through torch's UUID of the device, just inside its
    span: the same epochs, two readings. Both read one counter, so this checks the telemetry's
    window, its division by rounds, its units and its choice of GPU, not the counter itself.
    `clock`, `machine` ((nvml, gpus) as machine.nvml_info gives them) and `uuid` are for tests."""
    try:
        import pynvml

        from bench.measure.clock import DeviceClock
        from bench.measure.machine import nvml_info
        from bench.measure.telemetry import Telemetry
    except Exception as exc:
        return {"reason": f"NVML unavailable: {exc}"}
    clock = clock or DeviceClock(device)
    nvml, gpus = machine or nvml_info()
    name = f"cuda:{device.index if device.index is not None else 0}"
    telemetry = Telemetry.for_case(name, gpus, nvml)
    if uuid is None:
        import torch

        uuid = str(getattr(torch.cuda.get_device_properties(device), "uuid", "") or "")
    if not uuid:
        return {
            "reason": f"torch gives no UUID for {name}: the counter cannot be read independently"
        }
    uuid = uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}"
    try:
        pynvml.nvmlInit()
    except Exception as exc:
        return {"reason": f"NVML failed to start: {exc}"}
    try:
        handle = pynvml.nvmlDeviceGetHandleByUUID(uuid)
        epochs = max(10, math.ceil(ENERGY_SPAN_S / max(epoch_s, 1e-6)))
        with telemetry.observe():
            clock()
            start_mj = pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
            t0 = clock()
            for _ in range(epochs):
                trainer.reset()
                trainer.epoch()
            t1 = clock()
            end_mj = pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        gpu = telemetry.record(epochs).get("gpu") or {}
    except pynvml.NVMLError as exc:
        return {"reason": f"NVML energy counter failed: {exc}"}
    except Exception as exc:  # the epochs themselves
        return {"reason": f"the resident epochs failed: {type(exc).__name__}: {exc}"}
    finally:
        pynvml.nvmlShutdown()
    direct = (end_mj - start_mj) / 1000 / epochs
    out = {
        "epochs": epochs,
        "span_s": t1 - t0,
        "uuid": uuid,
        "direct_j": direct,
        "telemetry_j": gpu.get("energy_per_round_j"),
        "telemetry_source": gpu.get("energy_source"),
        "mean_power_w": direct * epochs / (t1 - t0) if t1 > t0 else None,
        **energy_check(gpu.get("energy_per_round_j"), direct),
    }
    if gpu.get("available") is False:
        out["reason"] = f"the telemetry had no GPU energy: {gpu.get('reason')}"
    return out
