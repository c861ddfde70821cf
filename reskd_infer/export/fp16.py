"""Mixed-precision (FP16) ONNX for TensorRT's strongly typed networks.

TensorRT 11 removed ``BuilderFlag.FP16``: reduced precision must be written in
the ONNX graph itself. This module converts the verified FP32 ONNX to a mixed
FP16/FP32 graph, keeping the numerically sensitive operators in FP32
(normalizations, softmax, reductions, pow/sqrt/exp/erf: FP16 overflow in
LayerNorm/pow and single-class TSN engines are reported failures), with FP32
inputs and outputs (``keep_io_types``) so callers and Triton configs do not
change.

Converters, in order of preference:

* NVIDIA ModelOpt AutoCast (``modelopt.onnx.autocast.convert_to_mixed_precision``)
  when ``nvidia-modelopt[onnx]`` is importable; it is not a dependency because it
  pulls ``onnxruntime-gpu``, which replaces the CPU wheel of ``onnxruntime``;
* ``onnxconverter-common``'s ``convert_float_to_float16`` with an explicit
  FP32 block list (the ``[fp16]`` extra, part of ``[dev]``).
"""

from __future__ import annotations

import contextlib
import heapq
import re
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import onnx
from onnx import TensorProto

from reskd_infer.errors import ExportError
from reskd_infer.export.onnx import check_onnx, set_spec
from reskd_infer.io.artifacts import ONNX_SPEC_KEY
from reskd_infer.io.files import atomic_write
from reskd_infer.spec import ModelSpec

# Operators kept in FP32 by the onnxconverter-common path. Reductions and normalizations
# accumulate; exp/pow/sqrt/erf overflow FP16's 65504 range on real activations.
FP32_OPS: tuple[str, ...] = (
    "BatchNormalization", "LayerNormalization", "InstanceNormalization", "GroupNormalization",
    "LpNormalization", "MeanVarianceNormalization",
    "Softmax", "LogSoftmax",
    "ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1",
    "ReduceL2", "ReduceLogSum", "ReduceLogSumExp",
    "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool",
    "Pow", "Sqrt", "Exp", "Log", "Erf", "Reciprocal",
    "Resize", "Upsample",  # coordinate arithmetic; kept exact
)

CONVERTER_MODELOPT = "modelopt-autocast"
CONVERTER_OCC = "onnxconverter-common"


def available_converter() -> str | None:
    """Which converter :func:`convert_fp16` would use here, or None if none is installed."""
    try:
        from modelopt.onnx.autocast import convert_to_mixed_precision  # noqa: F401

        return CONVERTER_MODELOPT
    except Exception:  # noqa: BLE001 - ImportError, or a broken CUDA-only install
        pass
    try:
        from onnxconverter_common import float16  # noqa: F401

        return CONVERTER_OCC
    except ImportError:
        return None


def convert_fp16(onnx_path: str | Path, out_path: str | Path, spec: ModelSpec, converter: str | None = None) -> tuple[Path, str]:
    """Write the mixed-precision version of ``onnx_path`` to ``out_path``; returns (path, converter used).

    The result keeps the spec in its metadata, FP32 inputs/outputs, and passes
    ``onnx.checker`` (full check) and the I/O contract check.

    Raises:
        ExportError: no converter is installed, the conversion failed, or the checker rejected the graph.
    """
    onnx_path, out_path = Path(onnx_path), Path(out_path)
    converter = converter or available_converter()
    if converter is None:
        raise ExportError(f"{onnx_path}: no FP16 converter installed; pip install 'reskd-infer[fp16]' "
                          "(onnxconverter-common) or nvidia-modelopt[onnx]")
    try:
        if converter == CONVERTER_MODELOPT:
            from modelopt.onnx.autocast import convert_to_mixed_precision

            # AutoCast also keeps nodes with large activations or initializers (data_max,
            # init_max) in FP32; our op list makes the sensitive-op policy explicit.
            proto = convert_to_mixed_precision(onnx_path=str(onnx_path), low_precision_type="fp16",
                                               keep_io_types=True, op_types_to_exclude=list(FP32_OPS))
        elif converter == CONVERTER_OCC:

            proto = _convert_occ(onnx.load(str(onnx_path)), onnx_path)
        else:
            raise ExportError(f"{onnx_path}: unknown FP16 converter {converter!r}")
    except ExportError:
        raise
    except Exception as exc:  # noqa: BLE001 - converters raise many types
        raise ExportError(f"{onnx_path}: FP16 conversion with {converter} failed: {type(exc).__name__}: {exc}") from None
    if not any(p.key == ONNX_SPEC_KEY for p in proto.metadata_props):
        set_spec(proto, spec)
    check_onnx(proto, out_path, spec)
    if fp16_fraction(proto) == 0.0:
        raise ExportError(f"{out_path}: FP16 conversion with {converter} left no FP16 tensor in the graph")
    atomic_write(out_path, lambda tmp: onnx.save(proto, tmp))
    return out_path, converter


def _convert_occ(source: object, path: Path, max_rounds: int = 6) -> object:
    """onnxconverter-common with the FP32 block list, repaired until the checker accepts the graph.

    On graphs with Cast nodes inside attention (video Swin's relative position bias),
    the converter leaves some nodes typed inconsistently; every node the checker names
    is then kept in FP32 (``node_block_list``) and the conversion redone.
    """
    from onnxconverter_common import float16

    block_ops = sorted(set(FP32_OPS) | set(float16.DEFAULT_OP_BLOCK_LIST))
    block_nodes: set[str] = set()
    for _ in range(max_rounds):
        with warnings.catch_warnings(), _linear_node_sort(float16):
            warnings.simplefilter("ignore")  # the converter warns once per clipped constant
            proto = float16.convert_float_to_float16(source, keep_io_types=True, op_block_list=block_ops,
                                                     node_block_list=sorted(block_nodes))
        try:
            onnx.checker.check_model(proto, full_check=True)
            return proto
        except Exception as exc:  # noqa: BLE001 - ValidationError/InferenceError
            named = set(re.findall(r"node name: ([^)]+)\)", str(exc)))
            if not named - block_nodes:
                raise ExportError(f"{path}: the FP16 graph is invalid and cannot be repaired: {exc}") from None
            block_nodes |= named
    raise ExportError(f"{path}: the FP16 graph is still invalid after {max_rounds} repair rounds")


def stable_topological_order(nodes: Sequence[Any]) -> list[Any]:
    """``nodes`` (ONNX NodeProtos) in topological order, each step taking the earliest ready node.

    The order onnxconverter-common's ``sort_graph_node`` produces, in O(n log n) instead of its
    O(n^2) list scans (85 of the 106 s of a swin3d_t FP16 export on these cores). A node is ready
    once every input that another node of the graph produces has been emitted; graph inputs and
    initializers are ready from the start.
    """
    producer = {out: i for i, node in enumerate(nodes) for out in node.output}
    waiting_on = [0] * len(nodes)
    consumers: dict[int, list[int]] = {}
    for i, node in enumerate(nodes):
        deps = {producer[name] for name in node.input if name in producer}
        waiting_on[i] = len(deps)
        for d in deps:
            consumers.setdefault(d, []).append(i)
    ready = [i for i, n in enumerate(waiting_on) if n == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for c in consumers.get(i, ()):
            waiting_on[c] -= 1
            if waiting_on[c] == 0:
                heapq.heappush(ready, c)
    if len(order) != len(nodes):
        raise ExportError(f"the ONNX graph has a cycle: {len(nodes) - len(order)} nodes never become ready")
    return [nodes[i] for i in order]


def _sort_graph_nodes(graph: Any) -> None:
    # Copies: the protos leave the repeated field before they are appended again.
    ordered = [type(n).FromString(n.SerializeToString()) for n in stable_topological_order(list(graph.node))]
    del graph.node[:]
    graph.node.extend(ordered)


@contextlib.contextmanager
def _linear_node_sort(float16_module: Any) -> Iterator[None]:
    """Run the converter with :func:`stable_topological_order` in place of its quadratic node sort
    (its ``sort_topology`` looks ``sort_graph_node`` up in the module, subgraphs included)."""
    original = float16_module.sort_graph_node
    float16_module.sort_graph_node = _sort_graph_nodes
    try:
        yield
    finally:
        float16_module.sort_graph_node = original


def fp16_fraction(proto: object) -> float:
    """Share of the graph's floating-point initializer elements stored as FP16 (weights moved to FP16)."""
    total = half = 0
    for init in proto.graph.initializer:  # type: ignore[attr-defined]
        if init.data_type not in (TensorProto.FLOAT, TensorProto.FLOAT16):
            continue
        n = 1
        for d in init.dims:
            n *= d
        total += n
        if init.data_type == TensorProto.FLOAT16:
            half += n
    return half / total if total else 0.0
