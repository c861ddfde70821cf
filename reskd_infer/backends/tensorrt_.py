"""The TensorRT backend: a serialized plan, one execution context and CUDA stream per thread.

Before TensorRT is asked to deserialize anything, the plan's sidecar is checked
against the running TensorRT version and GPU compute capability
(:func:`reskd_infer.backends.tensorrt_env.check_engine_compatibility`): a mismatch
raises :class:`EngineIncompatibleError` naming both, and the Recognizer falls back
to the ONNX model or checkpoint the sidecar names (unless ``fallback=False``).

Inference follows TensorRT's named-tensor contract (TensorRT 10.x/11.x
``IExecutionContext``): ``set_input_shape`` (its boolean checked: False means the
shape is outside the optimization profile), ``get_tensor_shape`` for the output,
``set_tensor_address`` for every I/O tensor, then ``execute_async_v3``. Batches
are split above the profile's MAX and padded up to its MIN (the padding rows'
outputs are dropped). Each execution context has its own non-default CUDA stream
(TensorRT warns that the default stream costs extra device synchronisations); it
waits for the stream that produced the input, and the buffers are recorded on it
so torch's caching allocator does not reuse them while TensorRT still runs.
Buffers are torch CUDA tensors (no pycuda/cuda-python).

:attr:`input_device` is the GPU, so the Recognizer uploads the decoded uint8
frames once per batch and runs the resize, crop and normalization of
``video/preprocess.py`` there. Decoding and the conversion to RGB (libswscale)
still run on the CPU at the video's full resolution.

NOT RUN HERE: no GPU exists on the development machines, so deserialization and
inference have not been executed; the GPU tests are marked ``gpu`` and skip. The
contract tests drive this class with a stand-in ``tensorrt`` module on the CPU.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reskd_infer.backends.base import Backend
from reskd_infer.backends.tensorrt_env import (
    check_engine_compatibility,
    cuda_index,
    runtime_gpu,
    runtime_tensorrt_version,
    tensorrt_missing,
)
from reskd_infer.errors import BackendUnavailableError, EngineIncompatibleError
from reskd_infer.formats import ARTIFACT_TENSORRT
from reskd_infer.io.artifacts import read_sidecar
from reskd_infer.spec import ModelSpec

Allocate = Callable[[tuple[int, ...], torch.dtype], torch.Tensor]


class TensorRTBackend(Backend):
    """A TensorRT engine (``.plan`` + ``.plan.json`` sidecar) on one CUDA device."""

    name = "tensorrt"
    artifact = ARTIFACT_TENSORRT

    @classmethod
    def available(cls, device: str = "auto") -> str | None:
        return tensorrt_missing(device)

    @classmethod
    def runtime_environment(cls, device: str = "auto") -> tuple[str | None, dict[str, Any] | None]:
        """(TensorRT version, {"name", "compute_capability"} of the GPU) of this process; None where unknown."""
        return runtime_tensorrt_version(), runtime_gpu(device)

    def __init__(self, path: str | Path, spec: ModelSpec | None = None, device: str = "auto"):
        sidecar = read_sidecar(path)
        super().__init__(path, spec or ModelSpec.from_dict(sidecar.get("spec", {})), device)
        self.sidecar = sidecar
        trt_version, gpu = self.runtime_environment(device)
        # Checked from the sidecar first: deserializing a foreign plan fails with an opaque "version tag" error.
        check_engine_compatibility(sidecar, trt_version, gpu, plan=self.path)
        problem = self.available(device)
        if problem:
            raise BackendUnavailableError(f"{self.path}: {problem}")
        import tensorrt as trt

        self._trt = trt
        self._device = self._select_device(device)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._deserialize(self.path.read_bytes())
        if self.engine is None:
            raise EngineIncompatibleError(f"{self.path}: TensorRT {trt.__version__} could not deserialize the plan "
                                          "(see the TensorRT log); rebuild it with reskd-export --trt")
        self._bind_io_tensors()
        self._local = threading.local()  # an execution context is not thread-safe: one per thread

    # ---- loading ---------------------------------------------------------------------------------
    def _select_device(self, device: str) -> torch.device:
        return torch.device("cuda", cuda_index(device))

    def _deserialize(self, plan: bytes) -> Any:
        with torch.cuda.device(self._device):  # the engine lives on the device it is deserialized on
            return self._runtime.deserialize_cuda_engine(plan)

    def _bind_io_tensors(self) -> None:
        trt, engine = self._trt, self.engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise BackendUnavailableError(f"{self.path}: expected one input and one output tensor, got {names}")
        self.input_name, self.output_name = inputs[0], outputs[0]
        min_shape, _, max_shape = engine.get_tensor_profile_shape(self.input_name, 0)
        self.min_batch, self.max_batch = int(min_shape[0]), int(max_shape[0])
        self._dtypes = {n: self._torch_dtype(engine.get_tensor_dtype(n)) for n in names}

    def _torch_dtype(self, dtype: Any) -> torch.dtype:
        trt = self._trt
        table = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16}
        if dtype not in table:
            raise BackendUnavailableError(f"{self.path}: unsupported I/O tensor type {dtype}")
        return table[dtype]

    @property
    def input_device(self) -> torch.device:
        return self._device

    # ---- inference -------------------------------------------------------------------------------
    @torch.inference_mode()
    def infer(self, batch: torch.Tensor | np.ndarray) -> np.ndarray:
        x = torch.as_tensor(batch).to(self._device, self._dtypes[self.input_name]).contiguous()
        parts = [self._run_padded(x[i : i + self.max_batch]) for i in range(0, len(x), self.max_batch)]
        return torch.cat(parts).float().cpu().numpy()

    def _run_padded(self, x: torch.Tensor) -> torch.Tensor:
        """Run a chunk of at most MAX rows; a chunk below the profile's MIN is padded and its padding dropped."""
        n = len(x)
        if n < self.min_batch:
            x = torch.cat([x, x[-1:].expand(self.min_batch - n, *x.shape[1:])]).contiguous()
        return self._run(x)[:n]

    def _execution_state(self) -> tuple[Any, Any]:
        """This thread's (execution context, CUDA stream)."""
        state = getattr(self._local, "state", None)
        if state is None:
            state = (self.engine.create_execution_context(), torch.cuda.Stream(self._device))
            self._local.state = state
        return state

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        with torch.cuda.device(self._device):
            ctx, stream = self._execution_state()
            producer = torch.cuda.current_stream(self._device)
            stream.wait_stream(producer)  # the input was written on the producer's stream

            def allocate(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
                out = torch.empty(shape, dtype=dtype, device=self._device)
                out.record_stream(stream)
                return out

            x.record_stream(stream)  # keep the caching allocator from reusing x while TensorRT reads it
            out = self.enqueue(ctx, x, stream.cuda_stream, allocate)
            producer.wait_stream(stream)  # whoever reads the output on the producer's stream waits for TensorRT
            return out

    def enqueue(self, ctx: Any, x: torch.Tensor, stream_handle: int, allocate: Allocate) -> torch.Tensor:
        """TensorRT's named-tensor contract for one batch: shape, output buffer, every address, enqueue."""
        shape = tuple(int(d) for d in x.shape)
        if not ctx.set_input_shape(self.input_name, shape):
            raise BackendUnavailableError(
                f"{self.path}: TensorRT refused input shape {shape} for {self.input_name!r} (the engine's profile "
                f"allows batches {self.min_batch}..{self.max_batch} of {tuple(self.spec.input_shape)})")
        out_shape = tuple(int(d) for d in ctx.get_tensor_shape(self.output_name))
        if any(d < 0 for d in out_shape):
            raise BackendUnavailableError(f"{self.path}: output shape {out_shape} is unresolved after set_input_shape")
        out = allocate(out_shape, self._dtypes[self.output_name])
        for name, tensor in ((self.input_name, x), (self.output_name, out)):
            if not ctx.set_tensor_address(name, tensor.data_ptr()):
                raise BackendUnavailableError(f"{self.path}: TensorRT refused the address of tensor {name!r}")
        if not ctx.execute_async_v3(stream_handle):
            raise BackendUnavailableError(f"{self.path}: TensorRT execute_async_v3 failed (see the TensorRT log)")
        return out

    def release(self) -> None:
        self._local = threading.local()
        self.engine = None
        self._runtime = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
