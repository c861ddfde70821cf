"""FP32 ONNX export: dynamic batch, the ModelSpec in ``metadata_props``, checked before it is kept.

The TorchScript-based exporter (``dynamo=False``) is used for every zoo
architecture: measured here with torch 2.14 it exports all of them with a
dynamic batch dimension, while the dynamo exporter fails on ``swin3d_t``.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

from reskd_infer.errors import ExportError
from reskd_infer.io.artifacts import ONNX_INPUT_NAME, ONNX_OUTPUT_NAME, ONNX_SPEC_KEY
from reskd_infer.io.files import atomic_write
from reskd_infer.spec import ModelSpec

INPUT_NAME = ONNX_INPUT_NAME  # "video": (N, 3, T, H, W) float32, already normalized
OUTPUT_NAME = ONNX_OUTPUT_NAME  # "logits": (N, num_classes) float32
BATCH_DIM = "batch"
DEFAULT_OPSET = 17
MIN_OPSET = 14  # ``Trilu``/``LayerNormalization``-era ops the zoo needs; older opsets are not tested


def export_onnx(model: nn.Module, spec: ModelSpec, path: str | Path, opset: int = DEFAULT_OPSET,
                trace_batch: int = 2) -> Path:
    """Export ``model`` (eval mode, CPU) to ``path`` and return it.

    The graph takes ``video`` (N, 3, T, S, S) with a dynamic N and returns
    ``logits`` (N, num_classes). The spec JSON is stored under
    ``metadata_props[reskd_spec]``. The file is checked with ``onnx.checker``
    (full check, which runs strict shape inference) before it replaces ``path``.

    Raises:
        ExportError: the exporter or the checker failed (the message names the file).
    """
    path = Path(path)
    if opset < MIN_OPSET:
        raise ExportError(f"{path}: opset {opset} is below the minimum supported ({MIN_OPSET})")
    model = model.eval().cpu()
    # Trace with a batch > 1 so no batch-1 special case (a squeeze, a constant reshape) gets frozen.
    example = torch.randn(trace_batch, *spec.input_shape, generator=torch.Generator().manual_seed(0))
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notices
            torch.onnx.export(
                model, (example,), buffer, dynamo=False, opset_version=opset,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: BATCH_DIM}, OUTPUT_NAME: {0: BATCH_DIM}},
                do_constant_folding=True,
            )
    except Exception as exc:  # noqa: BLE001 - the exporter raises many types
        raise ExportError(f"{path}: torch.onnx.export failed for {spec.arch}: {type(exc).__name__}: {exc}") from None
    proto = onnx.load_from_string(buffer.getvalue())
    set_spec(proto, spec)
    proto.producer_name = "reskd-infer"
    check_onnx(proto, path, spec)
    atomic_write(path, lambda tmp: onnx.save(proto, tmp))
    return path


def set_spec(proto: object, spec: ModelSpec) -> None:
    """Store (or replace) the spec JSON in an ONNX ModelProto's ``metadata_props``."""
    props = proto.metadata_props  # type: ignore[attr-defined]
    for i in reversed(range(len(props))):
        if props[i].key == ONNX_SPEC_KEY:
            del props[i]
    entry = props.add()
    entry.key, entry.value = ONNX_SPEC_KEY, spec.to_json()


def check_onnx(proto: object, path: str | Path, spec: ModelSpec) -> None:
    """onnx.checker (full: strict shape inference included) plus the I/O contract reskd-infer relies on."""
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as exc:  # noqa: BLE001 - ValidationError, InferenceError...
        raise ExportError(f"{path}: ONNX checker rejected the graph: {type(exc).__name__}: {exc}") from None
    graph = proto.graph  # type: ignore[attr-defined]
    inputs = [i for i in graph.input if i.name not in {t.name for t in graph.initializer}]
    if [i.name for i in inputs] != [INPUT_NAME] or [o.name for o in graph.output] != [OUTPUT_NAME]:
        raise ExportError(f"{path}: expected one input {INPUT_NAME!r} and one output {OUTPUT_NAME!r}, got "
                          f"{[i.name for i in inputs]} -> {[o.name for o in graph.output]}")
    dims = inputs[0].type.tensor_type.shape.dim
    shape = [d.dim_param or d.dim_value for d in dims]
    if shape != [BATCH_DIM, *spec.input_shape]:
        raise ExportError(f"{path}: input shape {shape} is not [{BATCH_DIM!r}, *{list(spec.input_shape)}]")
    out = [d.dim_param or d.dim_value for d in graph.output[0].type.tensor_type.shape.dim]
    if out != [BATCH_DIM, spec.num_classes]:
        raise ExportError(f"{path}: output shape {out} is not [{BATCH_DIM!r}, {spec.num_classes}]")
