"""The TensorRT backend: a serialized plan, one execution context per thread, preprocessing on the GPU.

Before TensorRT is asked to deserialize anything, the plan's sidecar is checked
against the running TensorRT version and GPU compute capability
(:func:`reskd_infer.export.tensorrt.check_engine_compatibility`): a mismatch raises
:class:`EngineIncompatibleError` naming both, and the Recognizer falls back to the
ONNX model or checkpoint the sidecar names (unless ``fallback=False``).

Buffers are torch CUDA tensors (no pycuda/cuda-python allocation code), inference
uses named I/O tensors: ``set_input_shape``, ``set_tensor_address``,
``execute_async_v3`` on torch's current stream. :attr:`input_device` is the GPU,
so the Recognizer uploads the decoded uint8 frames and runs the resize, crop and
normalization of ``video/preprocess.py`` there with the same torch ops: the CPU does
no per-pixel work.

NOT RUN HERE: no GPU exists on the development machines, so deserialization and
inference have not been executed; the GPU tests are marked ``gpu`` and skip.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..artifacts import read_sidecar
from ..errors import BackendUnavailableError, EngineIncompatibleError
from ..spec import ModelSpec
from .base import ARTIFACT_TENSORRT, Backend


class TensorRTBackend(Backend):
    """A TensorRT engine (``.plan`` + ``.plan.json`` sidecar) on one CUDA device."""

    name = "tensorrt"
    artifact = ARTIFACT_TENSORRT
    priority = 20

    @classmethod
    def available(cls, device: str = "auto") -> str | None:
        from ..export.tensorrt import tensorrt_missing

        return tensorrt_missing(device)

    @classmethod
    def runtime_environment(cls, device: str = "auto") -> tuple[str | None, dict[str, Any] | None]:
        """(TensorRT version, {"name", "compute_capability"} of the GPU) of this process; None where unknown."""
        from ..export.tensorrt import runtime_gpu, runtime_tensorrt_version

        return runtime_tensorrt_version(), runtime_gpu(device)

    def __init__(self, path: str | Path, spec: ModelSpec | None = None, device: str = "auto"):
        from ..export.tensorrt import check_engine_compatibility, tensorrt_missing

        sidecar = read_sidecar(path)
        super().__init__(path, spec or ModelSpec.from_dict(sidecar.get("spec", {})), device)
        self.sidecar = sidecar
        trt_version, gpu = self.runtime_environment(device)
        # Checked from the sidecar first: deserializing a foreign plan fails with an opaque "version tag" error.
        check_engine_compatibility(sidecar, trt_version, gpu, plan=self.path)
        problem = tensorrt_missing(device)
        if problem:
            raise BackendUnavailableError(f"{self.path}: {problem}")
        import tensorrt as trt

        self._trt = trt
        self._device = torch.device(device if device.startswith("cuda") else "cuda")
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        with torch.cuda.device(self._device):  # the engine lives on the device it is deserialized on
            self.engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise EngineIncompatibleError(f"{self.path}: TensorRT {trt.__version__} could not deserialize the plan "
                                          "(see the TensorRT log); rebuild it with reskd-export --trt")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise BackendUnavailableError(f"{self.path}: expected one input and one output tensor, got {names}")
        self.input_name, self.output_name = inputs[0], outputs[0]
        _, _, max_shape = self.engine.get_tensor_profile_shape(self.input_name, 0)
        self.max_batch = int(max_shape[0])
        self._dtypes = {n: self._torch_dtype(self.engine.get_tensor_dtype(n)) for n in names}
        self._local = threading.local()  # an execution context is not thread-safe: one per thread

    def _torch_dtype(self, dtype: Any) -> torch.dtype:
        trt = self._trt
        table = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16}
        if dtype not in table:
            raise BackendUnavailableError(f"{self.path}: unsupported I/O tensor type {dtype}")
        return table[dtype]

    def _context(self) -> Any:
        ctx = getattr(self._local, "context", None)
        if ctx is None:
            ctx = self.engine.create_execution_context()
            self._local.context = ctx
        return ctx

    @property
    def input_device(self) -> torch.device:
        return self._device

    @torch.inference_mode()
    def infer(self, batch: torch.Tensor | np.ndarray) -> np.ndarray:
        x = torch.as_tensor(batch).to(self._device, self._dtypes[self.input_name]).contiguous()
        parts = [self._run(x[i : i + self.max_batch]) for i in range(0, len(x), self.max_batch)]
        return torch.cat(parts).float().cpu().numpy()

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        with torch.cuda.device(self._device):
            return self._run_on_device(x)

    def _run_on_device(self, x: torch.Tensor) -> torch.Tensor:
        ctx = self._context()
        ctx.set_input_shape(self.input_name, tuple(x.shape))
        out = torch.empty(tuple(ctx.get_tensor_shape(self.output_name)), dtype=self._dtypes[self.output_name],
                          device=self._device)
        ctx.set_tensor_address(self.input_name, x.data_ptr())
        ctx.set_tensor_address(self.output_name, out.data_ptr())
        stream = torch.cuda.current_stream(self._device)
        if not ctx.execute_async_v3(stream.cuda_stream):
            raise BackendUnavailableError(f"{self.path}: TensorRT execute_async_v3 failed")
        stream.synchronize()
        return out

    def release(self) -> None:
        self._local = threading.local()
        self.engine = None
        self._runtime = None
        torch.cuda.empty_cache()
