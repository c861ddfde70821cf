"""Inference backends: one small class per engine, registered here and ordered per artifact kind by the
format table (:mod:`reskd_infer.formats`). Each engine module imports its optional package (ONNX Runtime,
OpenVINO, TensorRT, tritonclient) only when a backend is constructed, so importing them all is cheap."""

from reskd_infer.backends.base import (
    Backend,
    backend_names,
    backends_for,
    get_backend_class,
    register_backend,
)
from reskd_infer.backends.onnxruntime_ import OnnxRuntimeBackend
from reskd_infer.backends.openvino_ import OpenVinoBackend
from reskd_infer.backends.tensorrt_ import TensorRTBackend
from reskd_infer.backends.torch_ import TorchBackend
from reskd_infer.backends.triton_ import TritonBackend

for _backend in (TorchBackend, OnnxRuntimeBackend, OpenVinoBackend, TensorRTBackend, TritonBackend):
    register_backend(_backend)

__all__ = ["Backend", "backend_names", "backends_for", "get_backend_class", "register_backend"]
