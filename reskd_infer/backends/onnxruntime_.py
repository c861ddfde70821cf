"""The ONNX Runtime backend: TensorRT EP, CUDA EP, then CPU EP, whichever this install offers.

Session options are set on purpose: intra-op threads follow torch's thread count
(so a process that limits torch also limits ORT), inter-op 1 (the graph is a chain),
all graph optimizations on. On CUDA, the input goes through I/O binding so a batch
preprocessed on the GPU is not copied back to the host; ORT's CUDA provider runs
on its own stream and does not wait for torch's, so the producing torch stream is
synchronised before the run. The logits (N x classes) are bound to host memory.

The TensorRT EP gets an explicit optimization profile (batch MIN/OPT/MAX from the
export manifest, else 1/8/32), so a new largest batch does not rebuild the engine,
and its engine and timing caches live beside the model (or in the user cache
directory when that folder is read-only), never in the working directory.

A GPU provider that cannot start (missing libcudnn/libnvinfer, a driver too old)
is reported: with ``device="cuda[:N]"`` the backend raises, with ``"auto"`` it warns
with ONNX Runtime's reason and runs on the CPU.

NOT RUN HERE: the CUDA and TensorRT execution providers need ``onnxruntime-gpu`` and a
GPU; only the CPU provider has been exercised on the machines this was written on.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from reskd_infer.backends.base import Backend
from reskd_infer.backends.tensorrt_env import cuda_index
from reskd_infer.errors import ArtifactError, BackendUnavailableError, ReskdError, one_line
from reskd_infer.formats import ARTIFACT_ONNX, MANIFEST_NAME
from reskd_infer.io.artifacts import ONNX_INPUT_NAME, artifact_precision, read_manifest, read_onnx_spec
from reskd_infer.spec import ModelSpec

TRT_EP, CUDA_EP, CPU_EP = "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"
GPU_EPS = (TRT_EP, CUDA_EP)
# Idle intra-op threads sleep instead of spinning (ONNX Runtime's default is to spin): on a shared
# host with other processes loading the cores, spinning threads steal the time the busy ones need;
# measured faster in 5 of 6 loaded cases (benchmarks/results/engines/engines.md, docs/engines.md).
DEFAULT_ALLOW_SPINNING = False
DEFAULT_BATCH_PROFILE = (1, 8, 32)  # reskd-export's default --batch
MISSING_HINT = ("the 'onnxruntime' package is not installed: pip install 'reskd-infer[cpu]' "
                "(or 'reskd-infer[gpu]' on an NVIDIA GPU machine; never both)")


def choose_providers(available: list[str], device: str = "auto") -> list[str]:
    """Providers in order of preference (TensorRT, CUDA, CPU) among ``available``, for ``device``."""
    if device == "cpu":
        return [CPU_EP]
    wanted = [TRT_EP, CUDA_EP, CPU_EP] if device in ("auto", "", None) or device.startswith("cuda") else [CPU_EP]
    chosen = [p for p in wanted if p in available]
    if device.startswith("cuda") and not any(p in chosen for p in GPU_EPS):
        raise BackendUnavailableError(f"device {device!r} requested but this onnxruntime has no CUDA/TensorRT "
                                      f"provider (available: {available}); pip install 'reskd-infer[gpu]' "
                                      "(onnxruntime-gpu, which must replace the CPU 'onnxruntime' package)")
    return chosen or [CPU_EP]


def check_gpu_session(path: str | Path, device: str, requested: Sequence[str], started: Sequence[str],
                      reason: str | None = None) -> None:
    """Judge a session that did not start every requested GPU provider.

    ONNX Runtime drops a GPU provider whose libraries fail to load and carries on with
    the CPU. An explicit CUDA device raises :class:`BackendUnavailableError`; "auto"
    warns with the reason and runs on what started.
    """
    lost = [p for p in requested if p in GPU_EPS and p not in started]
    if not lost:
        return
    why = reason or "ONNX Runtime could not start them (missing CUDA/cuDNN/TensorRT libraries or driver?)"
    message = f"{path}: requested {', '.join(lost)} but the session runs on {list(started)}: {why}"
    if device and str(device).startswith("cuda") and not any(p in started for p in GPU_EPS):
        raise BackendUnavailableError(message)
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def batch_profile_for(model: Path) -> tuple[int, int, int]:
    """The batch profile the export folder's manifest records for ``model``, else reskd-export's default."""

    if (model.parent / MANIFEST_NAME).is_file():
        try:
            values = [int(v) for v in read_manifest(model.parent).get("batch_profile", [])]
        except (ReskdError, ValueError, TypeError):  # an unreadable manifest: the default profile
            values = []
        if len(values) == 3 and 1 <= values[0] <= values[1] <= values[2]:
            return values[0], values[1], values[2]
    return DEFAULT_BATCH_PROFILE


def trt_cache_dir(model: Path) -> Path:
    """Where the TensorRT EP keeps engines and timing caches (created): beside the model, or, when that
    folder cannot be written, a per-model folder in the user cache directory (never the working directory)."""
    beside = model.parent / f"{model.stem}.ort-trt-cache"
    try:
        beside.mkdir(parents=True, exist_ok=True)
        if os.access(beside, os.W_OK):
            return beside
    except OSError:
        pass
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "reskd-infer" / "ort-trt"
    cache = root / hashlib.sha256(str(model.resolve()).encode()).hexdigest()[:16]
    cache.mkdir(parents=True, exist_ok=True)
    return cache


def tensorrt_ep_options(model: Path, spec: ModelSpec, gpu_index: int,
                        profile: tuple[int, int, int] | None = None) -> dict[str, str]:
    """TensorRT EP options: explicit profile shapes for input ``video``, caches in :func:`trt_cache_dir`."""

    bmin, bopt, bmax = profile or batch_profile_for(model)
    rest = "x".join(str(d) for d in spec.input_shape)
    cache = trt_cache_dir(model)
    return {
        "device_id": str(gpu_index),
        "trt_profile_min_shapes": f"{ONNX_INPUT_NAME}:{bmin}x{rest}",
        "trt_profile_opt_shapes": f"{ONNX_INPUT_NAME}:{bopt}x{rest}",
        "trt_profile_max_shapes": f"{ONNX_INPUT_NAME}:{bmax}x{rest}",
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": str(cache),
        "trt_timing_cache_enable": "True",
        "trt_timing_cache_path": str(cache),
    }


class OnnxRuntimeBackend(Backend):
    """ONNX Runtime inference session over an exported ``.onnx``."""

    name = "onnxruntime"
    artifact = ARTIFACT_ONNX

    @classmethod
    def available(cls, device: str = "auto") -> str | None:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return MISSING_HINT
        return None

    def __init__(self, path: str | Path, spec: ModelSpec | None = None, device: str = "auto",
                 threads: int | None = None, providers: Sequence[str] | None = None,
                 allow_spinning: bool | None = None):
        """``providers``: exactly these execution providers (e.g. ``[CUDA_EP]`` to test one), instead of
        the best available for ``device``. ``allow_spinning``: None = :data:`DEFAULT_ALLOW_SPINNING`."""
        try:
            import onnxruntime as ort
        except ImportError:
            raise BackendUnavailableError(f"{path}: {MISSING_HINT}") from None


        super().__init__(path, spec or read_onnx_spec(path), device)
        self._gpu_index = cuda_index(device)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: ORT warns about every FP16 cast it inserts
        self.allow_spinning = DEFAULT_ALLOW_SPINNING if allow_spinning is None else bool(allow_spinning)
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.allow_spinning else "0")
        providers = list(providers) if providers else choose_providers(ort.get_available_providers(), device)
        self.session = self._create_session(ort, options, providers)
        self.precision = artifact_precision(self.path)  # "int8" for the QDQ model reskd-export --int8 wrote
        self.providers = self.session.get_providers()
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        self._on_gpu = any(p in GPU_EPS for p in self.providers) and torch.cuda.is_available()
        self._device = torch.device("cuda", self._gpu_index) if self._on_gpu else torch.device("cpu")

    def _create_session(self, ort: object, options: object, providers: list[str]) -> object:
        provider_options = [self._options(p) for p in providers]
        try:
            session = ort.InferenceSession(str(self.path), options, providers=providers,  # type: ignore[attr-defined]
                                           provider_options=provider_options)
        except Exception as exc:  # noqa: BLE001 - ORT raises its own Fail/InvalidGraph types
            if providers == [CPU_EP]:
                raise ArtifactError(f"{self.path}: ONNX Runtime cannot load the model (corrupt, truncated or "
                                    f"unsupported): {one_line(exc)[:300]}") from None
            check_gpu_session(self.path, self.device, providers, [CPU_EP], f"{type(exc).__name__}: {exc}")
            return self._create_session(ort, options, [CPU_EP])
        check_gpu_session(self.path, self.device, providers, session.get_providers())
        return session

    def _options(self, provider: str) -> dict[str, str]:
        if provider == TRT_EP:
            return tensorrt_ep_options(self.path, self.spec, self._gpu_index)
        if provider == CUDA_EP:
            return {"device_id": str(self._gpu_index)}
        return {}

    @property
    def input_device(self) -> torch.device:
        return self._device

    def infer(self, batch: torch.Tensor | np.ndarray) -> np.ndarray:
        if self._on_gpu:
            return self._infer_bound(torch.as_tensor(batch))
        x = batch.detach().cpu().numpy() if isinstance(batch, torch.Tensor) else np.asarray(batch)
        x = np.ascontiguousarray(x, dtype=np.float32)
        return self.session.run([self.output_name], {self.input_name: x})[0]

    def _infer_bound(self, batch: torch.Tensor) -> np.ndarray:
        x = batch.to(self._device, torch.float32).contiguous()
        binding = self.session.io_binding()
        binding.bind_input(self.input_name, "cuda", self._device.index or 0, np.float32, tuple(x.shape), x.data_ptr())
        binding.bind_output(self.output_name)  # host memory: ORT copies the logits back when its run ends
        # ORT's CUDA stream does not wait for torch's (its Run leaves SynchronizeInputs out): wait here for
        # the producing stream only, cheaper than binding.synchronize_inputs() (a cudaDeviceSynchronize).
        torch.cuda.current_stream(self._device).synchronize()
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]

    def release(self) -> None:
        self.session = None  # type: ignore[assignment]
