"""What a speed figure was measured on: CPU model and ISA, cores, thread settings, engine versions."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from typing import Any

import torch

from reskd_infer.io.cpuinfo import cpuinfo

# The CPU features the engines' fast paths depend on (FP32 vectors, INT8 dot products, BF16, AMX tiles).
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")
ENGINE_PACKAGES = ("torch", "onnxruntime", "openvino")
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "RESKD_TEST_THREADS")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)  # read from the installed metadata: the engine is not imported
    except metadata.PackageNotFoundError:
        return None


def machine_info(engine_threads: int | None = None) -> dict[str, Any]:
    """This machine and process: CPU model, the ISA flags in :data:`ISA_FLAGS` it has, logical cores, torch's
    thread count (ONNX Runtime and OpenVINO sessions are given ``engine_threads``, recorded when known), thread
    environment variables, CUDA, and the installed engine versions."""
    name, flags = cpuinfo()
    info: dict[str, Any] = {
        "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
        "cpu": name or platform.processor() or platform.machine(), "cpus": os.cpu_count(),
        "isa": [f for f in ISA_FLAGS if f in flags], "torch_threads": torch.get_num_threads(),
        "thread_env": {k: os.environ[k] for k in THREAD_VARIABLES if k in os.environ},
        "cuda": torch.cuda.is_available(),
        "versions": {p: v for p in ENGINE_PACKAGES if (v := _version(p))},
    }
    if engine_threads is not None:
        info["threads"] = engine_threads
    return info
