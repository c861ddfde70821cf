"""What the TensorRT runtime needs to know about this process: is TensorRT here, which GPU, can a plan load.

These are run-time facts, so they live in the backends layer; the exporter
(:mod:`reskd_infer.export.tensorrt`) imports them from here, never the reverse.
Nothing in this module imports ``tensorrt`` at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from reskd_infer.errors import EngineIncompatibleError
from reskd_infer.io.artifacts import sidecar_path

MIN_TENSORRT = (10, 12)  # the strongly typed flag and the named-tensor APIs used here exist from 10.12
GPU_EXTRA_HINT = ("on a machine with an NVIDIA GPU and driver: pip install 'reskd-infer[gpu]' "
                  "(onnxruntime-gpu and TensorRT for CUDA 13, the CUDA major of the supported torch builds)")
INSTALL_HINT = f"install TensorRT {GPU_EXTRA_HINT}"


def version_tuple(version: str) -> tuple[int, ...]:
    """``"10.13.3.9"`` -> (10, 13, 3); non-digits inside a part are dropped."""
    parts = []
    for piece in str(version).split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def cuda_index(device: str | None = "auto") -> int:
    """The CUDA device index ``device`` names ("cuda:1" -> 1); "auto"/"cuda" -> the current device (0 unless set).

    ``torch.cuda.set_device(torch.device("cuda"))`` raises (no index): callers use this index instead.
    """

    if device and str(device).startswith("cuda"):
        index = torch.device(device).index
        if index is not None:
            return int(index)
    return int(torch.cuda.current_device()) if torch.cuda.is_available() else 0


def tensorrt_missing(device: str = "auto") -> str | None:
    """None if TensorRT engines can be built and run here, otherwise everything that is missing."""
    if device == "cpu":
        return "TensorRT needs a CUDA device, but device='cpu' was requested"

    problems = []
    try:
        import tensorrt as trt

        if version_tuple(trt.__version__)[:2] < MIN_TENSORRT:
            problems.append(f"TensorRT {trt.__version__} is older than {MIN_TENSORRT[0]}.{MIN_TENSORRT[1]} "
                            "(strongly typed networks)")
    except ImportError:
        problems.append("the 'tensorrt' Python package is not installed")
    except Exception as exc:  # noqa: BLE001 - a broken install (missing libnvinfer) raises OSError etc.
        problems.append(f"the 'tensorrt' package failed to import ({type(exc).__name__}: {exc})")
    if not torch.cuda.is_available():
        problems.append("no NVIDIA GPU is visible (torch.cuda.is_available() is False)")
    return "; ".join(problems) + f"; {INSTALL_HINT}" if problems else None


def runtime_gpu(device: str = "auto") -> dict[str, Any] | None:
    """Name and compute capability of the CUDA device ``device`` names, or None without CUDA."""

    if not torch.cuda.is_available():
        return None
    index = cuda_index(device)
    major, minor = torch.cuda.get_device_capability(index)
    return {"name": torch.cuda.get_device_name(index), "compute_capability": f"{major}.{minor}"}


def runtime_tensorrt_version() -> str | None:
    try:
        import tensorrt as trt
    except Exception:  # noqa: BLE001 - absent or broken: unknown, so not judged
        return None
    return str(trt.__version__)


def check_engine_compatibility(sidecar: dict[str, Any], runtime_trt_version: str | None,
                               runtime_gpu_info: dict[str, Any] | None, plan: str | Path = "engine") -> None:
    """Raise EngineIncompatibleError when a plan cannot run with this TensorRT on this GPU.

    A serialized engine only deserializes with the TensorRT release that built it
    (major.minor.patch: the plan's version tag) and runs on GPUs of the compute
    capability it was built for (no hardware-compatibility mode is used). The check
    reads only the sidecar, so it runs before TensorRT is asked to deserialize
    anything. Unknown runtime facts (None) are not judged.
    """
    built = sidecar.get("tensorrt")
    if not isinstance(built, dict) or "version" not in built:
        raise EngineIncompatibleError(f"{plan}: its sidecar {sidecar_path(plan).name} records no TensorRT version; "
                                      "rebuild the engine with reskd-export --trt")
    if runtime_trt_version is not None:
        if version_tuple(built["version"]) != version_tuple(runtime_trt_version):
            raise EngineIncompatibleError(
                f"{plan}: built with TensorRT {built['version']}, but this process runs TensorRT "
                f"{runtime_trt_version}; engines only load in the TensorRT release that built them. "
                "Rebuild it here (reskd-export --trt) or use the ONNX model")
    want_cc = built.get("compute_capability")
    if runtime_gpu_info is not None and want_cc is not None:
        have_cc = runtime_gpu_info.get("compute_capability")
        if str(want_cc) != str(have_cc):
            raise EngineIncompatibleError(
                f"{plan}: built for {built.get('gpu_name', 'a GPU')} (compute capability {want_cc}), but this GPU "
                f"is {runtime_gpu_info.get('name')} (compute capability {have_cc}); rebuild the engine on this GPU "
                "(reskd-export --trt) or use the ONNX model")
