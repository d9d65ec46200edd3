"""Machine facts for saved runs: the torch build, each GPU through NVML, and a key naming the machine."""

from __future__ import annotations

import errno
import hashlib
import os
import platform
import re
import uuid
from pathlib import Path

import torch

from bench.format.store import read_bounded

__all__ = [
    "MACHINE_ID_ENV",
    "PCIE_LANE_GBPS",
    "cpu_model",
    "cuda_devices",
    "machine_id",
    "machine_key",
    "nvml_info",
    "pcie_gbps",
    "torch_info",
]

# Set to pin the machine's id: a container started afresh each time, or one machine's runs from two
# accounts.
MACHINE_ID_ENV = "FMNIST_BENCH_MACHINE_ID"
_ID = re.compile(r"[0-9a-f]{8,64}")
_MAX_ID_BYTES = 4096  # an id is 8 to 64 hex digits and a newline: anything longer is not one
# os.link refused by the filesystem
_NO_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK}

# Usable GB/s per lane per direction after line encoding (PCI-SIG base specs):
# Gen1 2.5 GT/s and Gen2 5 GT/s with 8b/10b; Gen3 8 GT/s, Gen4 16, Gen5 32 with 128b/130b;
# Gen6 64 GT/s PAM4 with 242/256 FLIT efficiency.
PCIE_LANE_GBPS = {1: 0.25, 2: 0.5, 3: 0.985, 4: 1.969, 5: 3.938, 6: 7.563}


def pcie_gbps(generation: int | None, width: int | None) -> float | None:
    """Theoretical GB/s one way over a PCIe link, or None when a part is unknown."""
    if not generation or not width or generation not in PCIE_LANE_GBPS:
        return None
    return round(PCIE_LANE_GBPS[generation] * width, 3)


def torch_info() -> dict:
    """What the torch build is and how it will run: versions, CUDA, cuDNN, threads, CPU capability."""
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {
        "version": torch.__version__,
        "git_version": torch.version.git_version,
        "cuda_runtime": torch.version.cuda,  # the CUDA the build was compiled for; None on CPU builds
        "cudnn": cudnn,
        "cuda_available": torch.cuda.is_available(),
        "cuda_device_count": torch.cuda.device_count() if torch.cuda.is_available() else 0,
        "mps_available": torch.backends.mps.is_available(),
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cuda_devices": cuda_devices(),
    }


def cuda_devices() -> list[dict]:
    """torch's view of each CUDA device, with the UUID that ties cuda:N to its NVML entry."""
    if not torch.cuda.is_available():
        return []
    out = []
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        out.append(
            {
                "device": f"cuda:{index}",
                "name": props.name,
                "uuid": _normal_uuid(str(getattr(props, "uuid", "")) or None),
                "total_memory": props.total_memory,
                "capability": f"{props.major}.{props.minor}",
                "multiprocessors": props.multi_processor_count,
            }
        )
    return out


def _normal_uuid(uuid: str | None) -> str | None:
    # NVML says "GPU-8f3c...", torch says "8f3c...": compare without the prefix.
    return None if not uuid else uuid.removeprefix("GPU-").lower()


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def nvml_info() -> tuple[dict, list[dict]]:
    """(`nvml`, `gpus`) for a saved run. Never raises: without NVML, `nvml` says why.

    pynvml is imported here, not at module level, so a machine without it still runs the suite.
    """
    try:
        import pynvml
    except ImportError as exc:
        return {"available": False, "reason": f"pynvml (nvidia-ml-py) is not installed: {exc}"}, []
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        reasons = {
            getattr(
                pynvml, "NVML_ERROR_LIBRARY_NOT_FOUND", -1
            ): "no NVML library (no NVIDIA driver installed)",
            getattr(pynvml, "NVML_ERROR_DRIVER_NOT_LOADED", -1): "the NVIDIA driver is not loaded",
            getattr(pynvml, "NVML_ERROR_NO_PERMISSION", -1): "no permission to use NVML",
        }
        reason = reasons.get(getattr(exc, "value", None), "NVML failed to start")
        return {"available": False, "reason": f"{reason}: {exc}"}, []
    try:
        count = pynvml.nvmlDeviceGetCount()
        nvml = {
            "available": count > 0,
            "driver_version": _safe(pynvml, lambda: _text(pynvml.nvmlSystemGetDriverVersion())),
            "cuda_driver_version": _safe(
                pynvml, lambda: _cuda_version(pynvml.nvmlSystemGetCudaDriverVersion())
            ),
            "device_count": count,
        }
        if count == 0:
            nvml["reason"] = "NVML found no GPU"
        by_uuid = {d["uuid"]: d["device"] for d in cuda_devices() if d["uuid"]}
        gpus = []
        for index in range(count):
            try:
                gpus.append(_gpu(pynvml, index, nvml, by_uuid))
            except pynvml.NVMLError as exc:  # one GPU lost or forbidden: say so, keep the others
                gpus.append({"index": index, "cuda_device": None, "name": None, "error": str(exc)})
        return nvml, gpus
    except pynvml.NVMLError as exc:
        return {"available": False, "reason": f"NVML query failed: {exc}"}, []
    finally:
        _safe(pynvml, pynvml.nvmlShutdown)


def _cuda_version(encoded: int) -> str:
    # NVML encodes CUDA 12.4 as 12040.
    return f"{encoded // 1000}.{encoded % 1000 // 10}"


def _safe(pynvml, query):
    """One NVML query; None where this GPU or driver does not support it."""
    try:
        return query()
    except pynvml.NVMLError:
        return None


def _gpu(pynvml, index: int, nvml: dict, by_uuid: dict[str, str]) -> dict:
    h = pynvml.nvmlDeviceGetHandleByIndex(index)
    q = lambda f: _safe(pynvml, f)  # noqa: E731 - one line per fact below
    uuid = q(lambda: _text(pynvml.nvmlDeviceGetUUID(h)))
    memory = q(lambda: pynvml.nvmlDeviceGetMemoryInfo(h))
    power_mw = q(lambda: pynvml.nvmlDeviceGetPowerManagementLimit(h))
    gen_max = q(lambda: pynvml.nvmlDeviceGetMaxPcieLinkGeneration(h))
    width_max = q(lambda: pynvml.nvmlDeviceGetMaxPcieLinkWidth(h))
    gen_now = q(lambda: pynvml.nvmlDeviceGetCurrPcieLinkGeneration(h))
    width_now = q(lambda: pynvml.nvmlDeviceGetCurrPcieLinkWidth(h))
    return {
        "index": index,  # NVML's order, which can differ from CUDA's: `cuda_device` maps it by UUID
        "cuda_device": by_uuid.get(_normal_uuid(uuid)),
        "name": q(lambda: _text(pynvml.nvmlDeviceGetName(h))),
        "uuid": uuid,
        "pci_bus_id": q(lambda: _text(pynvml.nvmlDeviceGetPciInfo(h).busId)),
        "driver_version": nvml["driver_version"],
        "cuda_driver_version": nvml["cuda_driver_version"],
        "memory_total": memory.total if memory is not None else None,
        "max_sm_clock_mhz": q(lambda: pynvml.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_SM)),
        "max_memory_clock_mhz": q(
            lambda: pynvml.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_MEM)
        ),
        "power_limit_w": power_mw / 1000 if power_mw is not None else None,
        "pcie_generation_max": gen_max,
        "pcie_width_max": width_max,
        # An idle GPU often trains its link down to save power: "current" is at the run's start.
        "pcie_generation_current": gen_now,
        "pcie_width_current": width_now,
        "pcie_gbps_max": pcie_gbps(gen_max, width_max),  # per direction, after encoding
        "pcie_gbps_current": pcie_gbps(gen_now, width_now),
        "temperature_c": q(lambda: pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU)),
    }


def cpu_model() -> str:
    """The CPU's brand string from py-cpuinfo: the same one pytest-benchmark records as machine_info.cpu.brand_raw.

    One CPU-name reader for the whole project (py-cpuinfo comes with pytest-benchmark), so a
    machine's folder name and its record never disagree.
    """
    import cpuinfo  # imported where used: it inspects the machine when asked

    try:
        brand = cpuinfo.get_cpu_info().get("brand_raw")
    except Exception:  # noqa: BLE001 - py-cpuinfo probes the machine in many ways; any failure means "unknown"
        brand = None
    return brand or platform.processor() or platform.machine() or "unknown CPU"


def machine_id(environ=os.environ) -> tuple[str, str]:
    """(this installation's machine id, where it came from): made once, then read back by every run.

    Two cloud VMs often share a host name ("vm") and their hardware models, so what a machine
    is cannot tell them apart: the id does. It is a random UUID kept in the user's config folder
    ($XDG_CONFIG_HOME/fmnist-bench/machine-id, ~/.config by default; a relative $XDG_CONFIG_HOME
    is ignored, as the XDG spec says), so one machine's runs stay together. Not /etc/machine-id:
    VMs cloned from one image share it. $FMNIST_BENCH_MACHINE_ID (8 to 64 hex digits) pins it.
    Raises ValueError naming a bad value, OSError saying why no id can be kept and what to do.
    """
    pinned = environ.get(MACHINE_ID_ENV)
    if pinned is not None:
        if not _ID.fullmatch(pinned.strip().lower()):
            raise ValueError(f"${MACHINE_ID_ENV}={_shown(pinned)} is not 8 to 64 hex digits")
        return pinned.strip().lower(), f"${MACHINE_ID_ENV}"
    pin = f"set ${MACHINE_ID_ENV} to 8 to 64 hex digits to name this machine instead"
    xdg = environ.get("XDG_CONFIG_HOME") or ""
    try:
        config = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".config"
    except RuntimeError as exc:  # no HOME and no passwd entry
        raise OSError(f"no config folder to keep this machine's id in ({exc}): {pin}") from None
    path = config / "fmnist-bench" / "machine-id"
    for _attempt in range(2):  # a second look: another run may have made it in between
        try:
            os.lstat(path)
            # As carefully as a run file: a FIFO would wait forever for a writer, /dev/zero never
            # ends.
            text = (
                read_bounded(path, _MAX_ID_BYTES, _UnreadableId, what="id")
                .decode("ascii")
                .strip()
                .lower()
            )
        except FileNotFoundError:
            text = None
        except OSError as exc:
            raise OSError(
                f"{path} cannot be read ({exc}): remove it to make a new id, or {pin}"
            ) from None
        except _UnreadableId as exc:
            if not os.path.exists(path):
                break  # a link to nothing
            raise OSError(f"{path}: {exc}: remove it to make a new id, or {pin}") from None
        except UnicodeDecodeError:
            raise OSError(
                f"{path} holds bytes that are not hex digits: remove it to make a new id, or {pin}"
            ) from None
        if text is not None:
            if not _ID.fullmatch(text):
                raise OSError(
                    f"{path} holds {_shown(text)}, not an id: remove it to make a new one, or {pin}"
                )
            return text, str(path)
        made = uuid.uuid4().hex
        tmp = path.with_name(f".machine-id-{made}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(made + "\n", encoding="ascii")
            # whole or not at all, and never over another's: two first runs keep one id
            os.link(tmp, path)
        except FileExistsError:
            continue
        except OSError as exc:
            if exc.errno not in _NO_LINKS or path.exists():
                raise OSError(
                    f"this machine's id cannot be kept in {path} ({exc.strerror or exc}): {pin}"
                ) from None
            # a filesystem without hard links: whole still, though a race's last one wins
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return made, f"{path} (made now)"
    raise OSError(
        f"{path} exists but cannot be read as a file (a broken link?): remove it, or {pin}"
    )


class _UnreadableId(ValueError):
    """The id's file is not one to read (a FIFO, a device, a folder, too large)."""


def _shown(text: str) -> str:
    """A bad value in an error: its start, never 70 characters of whatever it was."""
    return repr(text) if len(text) <= 20 else f"{text[:16]!r}... ({len(text):,} characters)"


def machine_key(
    host: str, cpu: str, gpus: list[str], name: str | None = None, ident: str | None = None
) -> str:
    """A folder-safe name for a machine, from what it is: its name (--machine-name) or host, CPU model, GPU
    models, then the first 8 digits of its id (machine_id), which tells apart two machines that read
    the same.

    Runs are saved under results/<key>/, so folders from many machines merge by copying. Two
    cloud machines often share a host name ("vm"); a name given by the user takes its place.
    A name is an identity, not a folder name: where its folder form loses or changes a character
    ("lab a", "lab_a", "ラボ", "..") a short hash of the name as given follows, so two names that
    differ are two folders, and a name with no character left still has one of its own.
    """
    # eight H100s: "8x NVIDIA H100", not eight names
    counts = {gpu: gpus.count(gpu) for gpu in gpus}
    gpu_part = "+".join(gpu if n == 1 else f"{n}x {gpu}" for gpu, n in counts.items()) or "no-gpu"
    who = name or host or "unknown-host"
    first = _folder_form(who)
    if first != who:
        first = f"{first}-{hashlib.sha256(who.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"
    rest = [
        _folder_form(p or fallback) for p, fallback in ((cpu, "unknown-cpu"), (gpu_part, "no-gpu"))
    ]
    return "_".join([first, *rest, *([ident[:8]] if ident else [])])


def _folder_form(text: str) -> str:
    """Letters, digits and . + - only (every other run of characters one -), no - or . at either end."""
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", text).strip("-.") or "unknown"
