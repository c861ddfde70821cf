"""TensorRT engines: build a plan from ONNX (TensorRT 10.12+ and 11.x), its sidecar, and the checks around it.

Written against the current API (looked up in NVIDIA's TensorRT 10.x/11.x Python
references and the 10.x -> 11.x migration guide), never TensorRT 8's:

* networks are **strongly typed**: precision comes from the ONNX graph (see
  :mod:`reskd_infer.export.fp16`); ``BuilderFlag.FP16`` and the other weak-typing
  flags were removed in 11.x. On 10.x the ``STRONGLY_TYPED`` creation flag opts in;
  on 11.x it is accepted and ignored (strong typing is always on);
* one optimization profile for the dynamic batch (``--batch MIN,OPT,MAX``), a
  workspace memory-pool limit, and a timing cache loaded before and saved after
  the build so later builds reuse the tactic timings;
* named I/O tensors at run time (``set_input_shape``, ``set_tensor_address``,
  ``execute_async_v3``), in :mod:`reskd_infer.backends.tensorrt_`.

Every TensorRT attribute this package touches is listed in :data:`TRT_API_NAMES`, so a
test checks them against the installed ``tensorrt`` wherever it exists.

NOT RUN HERE: the machines this project is developed on have no GPU, so engine
building and inference have not been executed; the version/GPU compatibility
check (:func:`check_engine_compatibility`) and the sidecar are tested on the CPU.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
import sys
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from reskd_infer.backends.tensorrt_env import (
    INSTALL_HINT,
    MIN_TENSORRT,
    check_engine_compatibility,
    cuda_index,
    runtime_gpu,
    runtime_tensorrt_version,
    tensorrt_missing,
)
from reskd_infer.errors import BackendUnavailableError, ExportError
from reskd_infer.export.onnx import INPUT_NAME
from reskd_infer.io.artifacts import sidecar_path
from reskd_infer.io.digests import file_sha256
from reskd_infer.io.files import atomic_write
from reskd_infer.spec import ModelSpec

SIDECAR_SCHEMA = "reskd-infer/tensorrt-sidecar/1"

# Every TensorRT name (module attribute, or Class.attribute) used by the builder and the backend.
TRT_API_NAMES: tuple[str, ...] = (
    "__version__",
    "Logger", "Logger.WARNING", "Logger.ERROR",
    "Builder", "Builder.create_network", "Builder.create_builder_config",
    "Builder.create_optimization_profile", "Builder.build_serialized_network",
    "NetworkDefinitionCreationFlag", "NetworkDefinitionCreationFlag.STRONGLY_TYPED",
    "INetworkDefinition.num_inputs", "INetworkDefinition.get_input",
    "ITensor.name", "ITensor.shape",
    "OnnxParser", "OnnxParser.parse", "OnnxParser.num_errors", "OnnxParser.get_error",
    "IBuilderConfig.set_memory_pool_limit", "MemoryPoolType", "MemoryPoolType.WORKSPACE",
    "IBuilderConfig.add_optimization_profile", "IOptimizationProfile.set_shape",
    "IBuilderConfig.create_timing_cache", "IBuilderConfig.set_timing_cache", "IBuilderConfig.get_timing_cache",
    "IBuilderConfig.clear_flag", "BuilderFlag", "BuilderFlag.TF32",
    "ITimingCache.serialize",
    "IProgressMonitor", "IBuilderConfig.progress_monitor",
    "Runtime", "Runtime.deserialize_cuda_engine",
    "ICudaEngine.num_io_tensors", "ICudaEngine.get_tensor_name", "ICudaEngine.get_tensor_mode",
    "ICudaEngine.get_tensor_dtype", "ICudaEngine.get_tensor_profile_shape",
    "ICudaEngine.create_execution_context",
    "TensorIOMode", "TensorIOMode.INPUT", "TensorIOMode.OUTPUT",
    "DataType", "DataType.FLOAT", "DataType.HALF",
    "IExecutionContext.set_input_shape", "IExecutionContext.get_tensor_shape",
    "IExecutionContext.set_tensor_address", "IExecutionContext.execute_async_v3",
)


def resolve_trt_name(trt: Any, name: str) -> Any:
    """``trt.A.B`` for ``"A.B"``; raises AttributeError naming the missing part."""
    obj = trt
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def missing_trt_names(trt: Any) -> list[str]:
    """The names of :data:`TRT_API_NAMES` the given ``tensorrt`` module lacks."""
    missing = []
    for name in TRT_API_NAMES:
        try:
            resolve_trt_name(trt, name)
        except AttributeError:
            missing.append(name)
    return missing


# ---- building ----------------------------------------------------------------------------------
def parse_batch(text: str | Sequence[int]) -> tuple[int, int, int]:
    """``"1,8,32"`` (or a sequence) -> (min, opt, max); a single value means a fixed batch."""
    try:
        values = [int(v) for v in (text.split(",") if isinstance(text, str) else text)]
    except (TypeError, ValueError):
        raise ExportError(f"batch profile must be MIN,OPT,MAX integers, got {text!r}") from None
    if len(values) == 1:
        values = values * 3
    if len(values) != 3 or not (1 <= values[0] <= values[1] <= values[2]):
        raise ExportError(f"batch profile must be MIN,OPT,MAX with 1 <= MIN <= OPT <= MAX, got {values}")
    return values[0], values[1], values[2]


def build_engine(onnx_path: str | Path, plan_path: str | Path, spec: ModelSpec, *, batch: Sequence[int] = (1, 8, 32),
                 workspace_gb: float = 4.0, timing_cache: str | Path | None = None, precision: str = "fp32",
                 fallback: Sequence[str] = (), device: str = "auto", progress: bool = False) -> dict[str, Any]:
    """Build ``plan_path`` from ``onnx_path`` and write its sidecar; returns the sidecar dict.

    ``precision`` records what the ONNX holds ("fp16" for a mixed-precision graph):
    strongly typed networks take their types from the graph. For "fp32" TF32 is
    switched off (TensorRT enables it by default), so the engine is verified at FP32
    tolerance against FP32 ONNX Runtime; the sidecar records ``tf32``.

    The plan and its sidecar are written before the timing cache is saved: a cache
    that cannot be saved is a warning, never a plan without a sidecar.

    Raises:
        BackendUnavailableError: TensorRT or a GPU is missing (the message says what to install).
        ExportError: parsing or building failed (TensorRT's own errors are included).
    """
    problem = tensorrt_missing(device)
    if problem:
        raise BackendUnavailableError(f"cannot build {plan_path}: {problem}")
    import tensorrt as trt

    if torch.cuda.is_available():
        torch.cuda.set_device(cuda_index(device))  # the builder times kernels on the current CUDA device
    onnx_path, plan_path = Path(onnx_path), Path(plan_path)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network, parser = _parse_onnx(trt, builder, logger, onnx_path)  # the parser owns weights: keep it alive
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    tf32 = precision != "fp32"
    if not tf32:
        config.clear_flag(trt.BuilderFlag.TF32)  # on by default; TF32 error can exceed the FP32 tolerance
    shapes = _add_profile(builder, config, network, spec, parse_batch(batch))
    cache_path = Path(timing_cache) if timing_cache else None
    cache_status = attach_timing_cache(config, cache_path)
    if progress:
        monitor = _progress_monitor(trt)  # must outlive the build: kept referenced until the end
        config.progress_monitor = monitor
    serialized = builder.build_serialized_network(network, config)
    del parser  # the network no longer needs the parser's weights once the plan is serialized
    if serialized is None:
        raise ExportError(f"{onnx_path}: TensorRT failed to build an engine (see the TensorRT log above)")
    sidecar = _engine_sidecar(trt, spec, onnx_path, shapes, precision=precision, tf32=tf32,
                              workspace_gb=workspace_gb, cache_path=cache_path, cache_status=cache_status,
                              fallback=fallback, device=device)
    atomic_write(plan_path, lambda tmp: Path(tmp).write_bytes(bytes(serialized)))
    write_sidecar(plan_path, sidecar)
    if cache_path is not None:
        save_timing_cache(config, cache_path)
    return sidecar


def _engine_sidecar(trt: Any, spec: ModelSpec, onnx_path: Path, shapes: list[tuple[int, ...]], *, precision: str,
                    tf32: bool, workspace_gb: float, cache_path: Path | None, cache_status: str,
                    fallback: Sequence[str], device: str) -> dict[str, Any]:
    """The plan's sidecar: the spec, how and where the engine was built, and what to serve when it cannot run."""
    gpu = runtime_gpu(device) or {}
    return {
        "schema": SIDECAR_SCHEMA,
        "spec": spec.to_dict(),
        "tensorrt": {
            "version": str(trt.__version__),
            "gpu_name": gpu.get("name"),
            "compute_capability": gpu.get("compute_capability"),
            "precision": precision,
            "tf32": tf32,
            "strongly_typed": True,
            "profile": {"input": INPUT_NAME, "min": list(shapes[0]), "opt": list(shapes[1]), "max": list(shapes[2])},
            "workspace_bytes": int(workspace_gb * (1 << 30)),
            "timing_cache": str(cache_path) if cache_path else None,
            "timing_cache_loaded": cache_status,
            "source_onnx": onnx_path.name,
            "source_onnx_sha256": file_sha256(onnx_path),
            "built_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "host": platform.node(),
        },
        "fallback": list(fallback),
    }


def _parse_onnx(trt: Any, builder: Any, logger: Any, onnx_path: Path) -> tuple[Any, Any]:
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)  # required on 10.x, ignored on 11.x
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"{onnx_path}: TensorRT's ONNX parser failed: {errors}")
    return network, parser


def _add_profile(builder: Any, config: Any, network: Any, spec: ModelSpec,
                 profile: tuple[int, int, int]) -> list[tuple[int, ...]]:
    """One optimization profile over the batch dimension; returns the input's (min, opt, max) shapes."""
    opt_profile = builder.create_optimization_profile()
    shapes: dict[str, list[tuple[int, ...]]] = {}
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        rest = tuple(spec.input_shape) if tensor.name == INPUT_NAME else tuple(tensor.shape)[1:]
        shapes[tensor.name] = [(b, *rest) for b in profile]
        opt_profile.set_shape(tensor.name, *shapes[tensor.name])
    if INPUT_NAME not in shapes:
        raise ExportError(f"the ONNX graph has no input named {INPUT_NAME!r} (inputs: {sorted(shapes)})")
    config.add_optimization_profile(opt_profile)
    return shapes[INPUT_NAME]


def attach_timing_cache(config: Any, cache_path: Path | None) -> str:
    """Load ``cache_path`` into the builder config; returns "loaded", "fresh" or "refused: <reason>".

    ``set_timing_cache`` returns False for a cache written by another GPU or TensorRT
    release (ignore_mismatch=False keeps foreign timings out); a fresh cache is used then
    and the file is overwritten after the build.
    """
    data = cache_path.read_bytes() if cache_path and cache_path.is_file() else b""
    if data and config.set_timing_cache(config.create_timing_cache(data), False):
        return "loaded"
    status = "fresh"
    if data:
        status = f"refused: {cache_path} was written by another GPU or TensorRT release"
        warnings.warn(f"{cache_path}: TensorRT refused this timing cache (another GPU or TensorRT release); "
                      "building with a fresh cache, which will replace it", RuntimeWarning, stacklevel=3)
    if not config.set_timing_cache(config.create_timing_cache(b""), False):  # b"": a new, empty cache
        raise ExportError("TensorRT refused a fresh, empty timing cache")
    return status


def save_timing_cache(config: Any, cache_path: Path) -> bool:
    """Write the builder's timing cache to ``cache_path``; a failure warns and returns False (the plan is fine)."""
    try:
        cache = config.get_timing_cache()
        if cache is None:
            raise ExportError("the builder config holds no timing cache")
        data = bytes(cache.serialize())
        atomic_write(cache_path, lambda tmp: Path(tmp).write_bytes(data))
    except Exception as exc:  # noqa: BLE001 - TensorRT, OS or our own error: the cache is only an optimisation
        warnings.warn(f"{cache_path}: timing cache not saved ({type(exc).__name__}: {exc}); the engine and its "
                      "sidecar were written", RuntimeWarning, stacklevel=3)
        return False
    return True


def _progress_monitor(trt: Any) -> Any:
    """A TensorRT IProgressMonitor drawing one tqdm bar per builder phase (engine builds take minutes)."""
    class TqdmProgressMonitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self._bars: dict[str, Any] = {}
            self._lock = threading.Lock()  # TensorRT may report from several threads

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            with self._lock:
                self._bars[phase_name] = tqdm(total=num_steps, desc=f"tensorrt: {phase_name}", leave=False,
                                              position=len(self._bars) + 1, file=sys.stderr)

        def step_complete(self, phase_name: str, step: int) -> bool:
            with self._lock:
                bar = self._bars.get(phase_name)
                if bar is not None:
                    bar.update(max(0, step + 1 - bar.n))
            return True  # False would cancel the build

        def phase_finish(self, phase_name: str) -> None:
            with self._lock:
                bar = self._bars.pop(phase_name, None)
                if bar is not None:
                    bar.close()

    return TqdmProgressMonitor()


def write_sidecar(plan_path: str | Path, sidecar: dict[str, Any]) -> Path:
    """Write ``<plan>.json`` next to the plan (never inside it: trtexec, Triton and DeepStream load the plan as is)."""
    text = json.dumps(sidecar, indent=2) + "\n"
    return atomic_write(sidecar_path(plan_path), lambda tmp: Path(tmp).write_text(text))


__all__ = [
    "INSTALL_HINT", "MIN_TENSORRT", "SIDECAR_SCHEMA", "TRT_API_NAMES", "attach_timing_cache", "build_engine",
    "check_engine_compatibility", "missing_trt_names", "parse_batch", "runtime_gpu", "runtime_tensorrt_version",
    "save_timing_cache", "tensorrt_missing", "write_sidecar",
]
