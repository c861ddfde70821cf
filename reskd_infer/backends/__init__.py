"""Inference backends: one small class per engine, chosen by a registry keyed on artifact type."""

from .base import (
    ARTIFACT_CHECKPOINT,
    ARTIFACT_ONNX,
    ARTIFACT_TENSORRT,
    Backend,
    artifact_type,
    backend_names,
    backends_for,
    get_backend_class,
    register_backend,
)


def _torch_backend() -> type[Backend]:
    from .torch_ import TorchBackend

    return TorchBackend


def _onnxruntime_backend() -> type[Backend]:
    from .onnxruntime_ import OnnxRuntimeBackend

    return OnnxRuntimeBackend


def _openvino_backend() -> type[Backend]:
    from .openvino_ import OpenVinoBackend

    return OpenVinoBackend


def _tensorrt_backend() -> type[Backend]:
    from .tensorrt_ import TensorRTBackend

    return TensorRTBackend


def _triton_backend() -> type[Backend]:
    from .triton_ import TritonBackend

    return TritonBackend


register_backend("torch", ARTIFACT_CHECKPOINT, 0, _torch_backend)
register_backend("onnxruntime", ARTIFACT_ONNX, 10, _onnxruntime_backend)
register_backend("openvino", ARTIFACT_ONNX, 15, _openvino_backend)  # preferred on CPUs when installed
register_backend("tensorrt", ARTIFACT_TENSORRT, 20, _tensorrt_backend)
register_backend("triton", "triton", 0, _triton_backend)  # grpc:// URLs of a Triton server

__all__ = [
    "ARTIFACT_CHECKPOINT",
    "ARTIFACT_ONNX",
    "ARTIFACT_TENSORRT",
    "Backend",
    "artifact_type",
    "backend_names",
    "backends_for",
    "get_backend_class",
    "register_backend",
]
