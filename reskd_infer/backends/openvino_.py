"""The OpenVINO backend: the exported ``model.onnx`` compiled by OpenVINO's CPU plugin.

Why it exists: on x86 CPUs OpenVINO runs the same ONNX file faster than ONNX Runtime's
CPU provider (measured in ``benchmarks/results/engines/engines.md``), most of all on depthwise
convolutions (EfficientNet-Lite). The Recognizer prefers it for ``.onnx`` artifacts on
the CPU when the ``openvino`` package is installed (``pip install 'reskd-infer[openvino]'``).

It also serves the INT8 model ``reskd-export --int8`` writes with NNCF (an OpenVINO IR,
``openvino/model.int8.xml`` + ``.bin``, or a QDQ ``model.int8.onnx``): the quantized layers run in
INT8 whatever the hint below, the layers NNCF left in float run FP32; :attr:`precision` is then "int8".

Precision is always set explicitly: OpenVINO's CPU plugin silently defaults to BF16 on
CPUs with AVX512-BF16 or AMX (0.4-4% relative error), so ``precision="fp32"`` (the
default) compiles with ``INFERENCE_PRECISION_HINT=f32``. ``precision="bf16"`` is an
opt-in that needs (a) a CPU with native BF16 and (b) the export's verification that BF16
keeps top-1 on real clips, recorded in the folder's ``manifest.json``
(:func:`bf16_gate`); otherwise the backend warns and runs FP32.

Threads follow the SDK's setting (``threads``, else ``torch.get_num_threads()``, like
the ONNX Runtime backend); the LATENCY hint (one stream: one request at a time, every
thread on it); CPU pinning off by default (see :data:`DEFAULT_CPU_PINNING`). Compiled
models are cached per process, keyed by file identity and configuration, so a second
Recognizer on the same file does not compile again.
"""

from __future__ import annotations

import threading
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reskd_infer.backends.base import Backend
from reskd_infer.errors import BackendUnavailableError, ReskdError
from reskd_infer.formats import ARTIFACT_ONNX, MANIFEST_NAME
from reskd_infer.io.artifacts import artifact_precision, read_manifest, read_spec
from reskd_infer.io.digests import file_sha256
from reskd_infer.spec import ModelSpec

PRECISIONS = ("auto", "fp32", "bf16")  # auto = fp32
_OV_PRECISION = {"fp32": "f32", "bf16": "bf16"}
# Measured on a shared 2-core host with other processes loading the cores (benchmarks/results/
# engines.md, "threads on a shared host"): a thread pinned to a busy core cannot move to a free
# one; unpinned was as fast or faster in 5 of 6 loaded cases (3.3x on Lite0), so pinning is off.
DEFAULT_CPU_PINNING = False
CACHE_SIZE = 4  # compiled models kept per process (each holds its weights once more)
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")

_core_lock = threading.Lock()
_core: Any = None
_compiled: OrderedDict[tuple, Any] = OrderedDict()


def openvino_missing() -> str | None:
    """None when the ``openvino`` package imports, otherwise what to install."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return "the 'openvino' package is not installed (pip install 'reskd-infer[openvino]', part of [cpu])"
    return None


def _get_core() -> Any:
    global _core
    with _core_lock:
        if _core is None:
            import openvino as ov

            _core = ov.Core()
        return _core


def _cpu_flags() -> set[str] | None:
    """The CPU feature flags from /proc/cpuinfo (Linux), or None where unreadable."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return None


def bf16_supported() -> str | None:
    """None when this CPU runs BF16 natively (AVX512-BF16 or AMX), otherwise why not."""
    if openvino_missing():
        return openvino_missing()
    capabilities = _get_core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    if "BF16" not in capabilities:
        return f"OpenVINO's CPU plugin lists no BF16 capability here ({', '.join(capabilities)})"
    flags = _cpu_flags()
    if flags is not None and not flags.intersection(BF16_CPU_FLAGS):
        return "this CPU has neither AVX512-BF16 nor AMX-BF16 (BF16 would be emulated, slower than FP32)"
    return None


def bf16_gate(onnx_path: str | Path) -> str | None:
    """None when the export folder's manifest says BF16 was verified for exactly this file,
    otherwise the reason BF16 must not be served."""

    path = Path(onnx_path)
    if not (path.parent / MANIFEST_NAME).exists():
        return (f"{path} is not in an export folder: BF16 is served only after reskd-export verified it "
                "on real clips (re-export with reskd-export)")
    try:
        record = (read_manifest(path.parent).get("openvino") or {}).get("bf16") or {}
    except ReskdError as exc:
        return str(exc)
    if not record:
        return f"{path.parent / MANIFEST_NAME} has no OpenVINO BF16 verification (re-export with this version)"
    if not record.get("verified"):
        return f"the export's BF16 verification did not pass: {record.get('reason', 'no reason recorded')}"
    if record.get("onnx") != path.name or record.get("onnx_sha256") != file_sha256(path):
        return f"{path} is not the file whose BF16 verification the manifest records"
    return None


def _compiled_model(path: Path, precision: str, threads: int, pinning: bool) -> Any:
    """The compiled model for this file and configuration, compiled once per process."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size, precision, threads, pinning)
    with _core_lock:
        if key in _compiled:
            _compiled.move_to_end(key)
            return _compiled[key]
    import openvino.properties as props
    import openvino.properties.hint as hints

    core = _get_core()
    config = {
        hints.inference_precision: _OV_PRECISION[precision],  # never left to the plugin: it defaults to BF16
        hints.performance_mode: hints.PerformanceMode.LATENCY,
        props.inference_num_threads: threads,
        hints.enable_cpu_pinning: pinning,
    }
    from openvino.frontend import FrontEndManager

    # Checked first: given a file its reader rejects, read_model tries every other frontend
    # (TensorFlow's prints parse errors on stderr) before failing.
    framework, what = ("ir", "OpenVINO IR") if path.suffix.lower() == ".xml" else ("onnx", "ONNX file")
    if not FrontEndManager().load_by_framework(framework).supported(str(path)):
        raise BackendUnavailableError(f"{path}: OpenVINO cannot load the model: not a readable {what}")
    try:
        compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
    except Exception as exc:  # noqa: BLE001 - OpenVINO raises RuntimeError/GeneralFailure subclasses
        raise BackendUnavailableError(f"{path}: OpenVINO cannot load the model: {_reason(exc)}") from None
    with _core_lock:
        _compiled[key] = compiled
        while len(_compiled) > CACHE_SIZE:
            _compiled.popitem(last=False)
    return compiled


def _reason(exc: Exception) -> str:
    """The informative line of an OpenVINO exception (they start with 'Exception from <source file>' lines)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith("Exception from")]
    return (useful or lines or [type(exc).__name__])[0]


def clear_compiled_cache() -> None:
    """Forget every compiled model of this process (their memory is freed once no backend holds them)."""
    with _core_lock:
        _compiled.clear()


class OpenVinoBackend(Backend):
    """OpenVINO CPU inference over an exported ``.onnx`` (FP32 unless BF16 is asked for and verified) or the
    INT8 IR ``reskd-export --int8`` wrote."""

    name = "openvino"
    artifact = ARTIFACT_ONNX
    precisions = PRECISIONS
    optional = True

    @classmethod
    def available(cls, device: str = "auto") -> str | None:
        if device and device.startswith("cuda"):
            return "OpenVINO runs on the CPU here; ONNX Runtime serves CUDA devices"
        if device in ("auto", "", None) and torch.cuda.is_available():
            return "a CUDA GPU is present: ONNX Runtime's GPU providers serve it (device='cpu' selects OpenVINO)"
        return openvino_missing()

    def __init__(self, path: str | Path, spec: ModelSpec | None = None, device: str = "auto",
                 threads: int | None = None, precision: str = "fp32", cpu_pinning: bool | None = None,
                 bf16_gate_check: bool = True):
        """``bf16_gate_check=False`` serves BF16 without the export's verification: for speed
        measurements of random-weight models only (outputs are not checked then)."""

        problem = openvino_missing()
        if problem:
            raise BackendUnavailableError(f"{path}: {problem}")
        if precision not in PRECISIONS:
            raise BackendUnavailableError(f"{path}: OpenVINO precision must be one of {PRECISIONS}, got {precision!r}")
        super().__init__(path, spec or read_spec(path), device)
        self.requested_precision = precision
        self.precision = self._effective_precision(precision, bf16_gate_check)
        compile_as = self.precision
        if artifact_precision(self.path) == "int8":  # quantized by the export: INT8 layers, float ones in FP32
            self.precision, compile_as = "int8", "fp32"
        self.threads = int(threads or torch.get_num_threads())
        self.cpu_pinning = DEFAULT_CPU_PINNING if cpu_pinning is None else bool(cpu_pinning)
        self.compiled = _compiled_model(self.path, compile_as, self.threads, self.cpu_pinning)
        self._local = threading.local()  # an infer request is not thread-safe: one per thread

    def _effective_precision(self, precision: str, gate: bool) -> str:
        if precision != "bf16":
            return "fp32"
        reason = bf16_supported() or (bf16_gate(self.path) if gate else None)
        if reason:
            warnings.warn(f"{self.path}: BF16 not used, running FP32: {reason}", RuntimeWarning, stacklevel=3)
            return "fp32"
        return "bf16"

    def compiled_precision(self) -> str:
        """The inference precision the compiled model reports (``f32`` or ``bf16``)."""
        import openvino.properties.hint as hints

        return self.compiled.get_property(hints.inference_precision).get_type_name()

    def _request(self) -> Any:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self.compiled.create_infer_request()
            self._local.request = request
        return request

    def infer(self, batch: torch.Tensor | np.ndarray) -> np.ndarray:
        if self.compiled is None:
            raise BackendUnavailableError(f"{self.path}: the OpenVINO backend was released")
        x = batch.detach().cpu().numpy() if isinstance(batch, torch.Tensor) else np.asarray(batch)
        x = np.ascontiguousarray(x, dtype=np.float32)
        request = self._request()
        request.infer({0: x})
        return np.array(request.get_output_tensor(0).data, dtype=np.float32, copy=True)

    def release(self) -> None:
        self._local = threading.local()
        self.compiled = None
