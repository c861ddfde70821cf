"""The ONNX Runtime backend: TensorRT EP, CUDA EP, then CPU EP, whichever this install offers.

Session options are set on purpose: intra-op threads follow torch's thread count
(so a process that limits torch also limits ORT), inter-op 1 (the graph is a chain),
all graph optimizations on. On CUDA, inputs and outputs go through I/O binding so a
batch preprocessed on the GPU never travels back to the host before inference.

NOT RUN HERE: the CUDA and TensorRT execution providers need ``onnxruntime-gpu`` and a
GPU; only the CPU provider has been exercised on the machines this was written on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import BackendUnavailableError
from ..spec import ModelSpec
from .base import ARTIFACT_ONNX, Backend

TRT_EP, CUDA_EP, CPU_EP = "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"


def choose_providers(available: list[str], device: str = "auto") -> list[str]:
    """Providers in order of preference (TensorRT, CUDA, CPU) among ``available``, for ``device``."""
    if device == "cpu":
        return [CPU_EP]
    wanted = [TRT_EP, CUDA_EP, CPU_EP] if device in ("auto", "", None) or device.startswith("cuda") else [CPU_EP]
    chosen = [p for p in wanted if p in available]
    if device.startswith("cuda") and not any(p in chosen for p in (TRT_EP, CUDA_EP)):
        raise BackendUnavailableError(f"device {device!r} requested but this onnxruntime has no CUDA/TensorRT "
                                      f"provider (available: {available}); pip install onnxruntime-gpu")
    return chosen or [CPU_EP]


class OnnxRuntimeBackend(Backend):
    """ONNX Runtime inference session over an exported ``.onnx``."""

    name = "onnxruntime"
    artifact = ARTIFACT_ONNX
    priority = 10

    @classmethod
    def available(cls, device: str = "auto") -> str | None:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return "the 'onnxruntime' package is not installed (pip install onnxruntime, or onnxruntime-gpu)"
        return None

    def __init__(self, path: str | Path, spec: ModelSpec | None = None, device: str = "auto",
                 threads: int | None = None):
        import onnxruntime as ort

        from ..artifacts import read_onnx_spec

        super().__init__(path, spec or read_onnx_spec(path), device)
        self._gpu_index = (torch.device(device).index or 0) if device and device.startswith("cuda") else 0
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: ORT warns about every FP16 cast it inserts
        providers = choose_providers(ort.get_available_providers(), device)
        provider_options = [self._options(p, ort) for p in providers]
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=providers,
                                                provider_options=provider_options)
        except Exception as exc:  # noqa: BLE001 - ORT raises its own Fail/InvalidGraph types
            if providers == [CPU_EP]:
                raise BackendUnavailableError(f"{self.path}: ONNX Runtime cannot load the model: {exc}") from None
            # A GPU provider listed by the wheel may still lack its libraries (libnvinfer, cuDNN).
            self.session = ort.InferenceSession(str(self.path), options, providers=[CPU_EP])
        self.providers = self.session.get_providers()
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        self._on_gpu = (self.providers[0] in (TRT_EP, CUDA_EP)) and torch.cuda.is_available()
        self._device = torch.device("cuda", self._gpu_index) if self._on_gpu else torch.device("cpu")

    def _options(self, provider: str, ort: object) -> dict[str, str]:
        if provider == TRT_EP:
            # Engines built by the EP are cached next to the model so a restart does not rebuild them.
            cache = self.path.with_suffix(".ort-trt-cache")
            return {"trt_engine_cache_enable": "True", "trt_engine_cache_path": str(cache),
                    "trt_timing_cache_enable": "True", "device_id": str(self._gpu_index)}
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
        binding.bind_output(self.output_name, "cuda", self._device.index or 0)
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]

    def release(self) -> None:
        self.session = None  # type: ignore[assignment]
