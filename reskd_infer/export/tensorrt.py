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
import hashlib
import json
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..artifacts import sidecar_path
from ..checkpoint import atomic_write
from ..errors import BackendUnavailableError, EngineIncompatibleError, ExportError
from ..spec import ModelSpec
from .onnx import INPUT_NAME

MIN_TENSORRT = (10, 12)  # the strongly typed flag and the APIs below exist from 10.12
SIDECAR_SCHEMA = "reskd-infer/tensorrt-sidecar/1"
INSTALL_HINT = ("install TensorRT on a machine with an NVIDIA GPU and driver: "
                "pip install 'reskd-infer[trt]' (tensorrt>=10.12, cuda-python) and a CUDA build of torch")

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


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in str(version).split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


# ---- environment -------------------------------------------------------------------------------
def tensorrt_missing(device: str = "auto") -> str | None:
    """None if TensorRT engines can be built and run here, otherwise everything that is missing."""
    if device == "cpu":
        return "TensorRT needs a CUDA device, but device='cpu' was requested"
    import torch

    problems = []
    try:
        import tensorrt as trt

        if _version_tuple(trt.__version__)[:2] < MIN_TENSORRT:
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
    import torch

    if not torch.cuda.is_available():
        return None
    index = torch.device(device).index if device.startswith("cuda") else None
    index = torch.cuda.current_device() if index is None else index
    major, minor = torch.cuda.get_device_capability(index)
    return {"name": torch.cuda.get_device_name(index), "compute_capability": f"{major}.{minor}"}


def runtime_tensorrt_version() -> str | None:
    try:
        import tensorrt as trt
    except Exception:  # noqa: BLE001
        return None
    return str(trt.__version__)


# ---- compatibility -----------------------------------------------------------------------------
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
        if _version_tuple(built["version"]) != _version_tuple(runtime_trt_version):
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


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def build_engine(onnx_path: str | Path, plan_path: str | Path, spec: ModelSpec, *, batch: Sequence[int] = (1, 8, 32),
                 workspace_gb: float = 4.0, timing_cache: str | Path | None = None, precision: str = "fp32",
                 fallback: Sequence[str] = (), device: str = "auto", progress: bool = False) -> dict[str, Any]:
    """Build ``plan_path`` from ``onnx_path`` and write its sidecar; returns the sidecar dict.

    ``precision`` only records what the ONNX holds ("fp16" for a mixed-precision
    graph): strongly typed networks take their types from the graph.

    Raises:
        BackendUnavailableError: TensorRT or a GPU is missing (the message says what to install).
        ExportError: parsing or building failed (TensorRT's own errors are included).
    """
    problem = tensorrt_missing(device)
    if problem:
        raise BackendUnavailableError(f"cannot build {plan_path}: {problem}")
    import tensorrt as trt
    import torch

    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))  # the builder times kernels on the current CUDA device
    onnx_path, plan_path = Path(onnx_path), Path(plan_path)
    bmin, bopt, bmax = parse_batch(batch)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)  # required on 10.x, ignored on 11.x
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"{onnx_path}: TensorRT's ONNX parser failed: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    profile = builder.create_optimization_profile()
    shapes = {}
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        rest = tuple(spec.input_shape) if tensor.name == INPUT_NAME else tuple(tensor.shape)[1:]
        shapes[tensor.name] = [(b, *rest) for b in (bmin, bopt, bmax)]
        profile.set_shape(tensor.name, *shapes[tensor.name])
    config.add_optimization_profile(profile)
    cache_path = Path(timing_cache) if timing_cache else None
    cache_bytes = cache_path.read_bytes() if cache_path and cache_path.is_file() else b""
    cache = config.create_timing_cache(cache_bytes)  # empty bytes: a fresh cache
    config.set_timing_cache(cache, False)  # ignore_mismatch=False: a cache from another GPU is refused
    if progress:
        monitor = _progress_monitor(trt)  # must outlive the build: kept referenced until the end
        config.progress_monitor = monitor
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"{onnx_path}: TensorRT failed to build an engine (see the TensorRT log above)")
    atomic_write(plan_path, lambda tmp: Path(tmp).write_bytes(bytes(serialized)))
    if cache_path is not None:
        updated = config.get_timing_cache()
        atomic_write(cache_path, lambda tmp: Path(tmp).write_bytes(bytes(updated.serialize())))
    gpu = runtime_gpu(device) or {}
    sidecar = {
        "schema": SIDECAR_SCHEMA,
        "spec": spec.to_dict(),
        "tensorrt": {
            "version": str(trt.__version__),
            "gpu_name": gpu.get("name"),
            "compute_capability": gpu.get("compute_capability"),
            "precision": precision,
            "strongly_typed": True,
            "profile": {"input": INPUT_NAME, "min": list(shapes[INPUT_NAME][0]), "opt": list(shapes[INPUT_NAME][1]),
                        "max": list(shapes[INPUT_NAME][2])},
            "workspace_bytes": int(workspace_gb * (1 << 30)),
            "timing_cache": str(cache_path) if cache_path else None,
            "source_onnx": onnx_path.name,
            "source_onnx_sha256": _sha256(onnx_path),
            "built_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "host": platform.node(),
        },
        "fallback": list(fallback),
    }
    write_sidecar(plan_path, sidecar)
    return sidecar


def _progress_monitor(trt: Any) -> Any:
    """A TensorRT IProgressMonitor drawing one tqdm bar per builder phase (engine builds take minutes)."""
    import sys
    import threading

    from tqdm import tqdm

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
