"""The FP16 graph keeps its numerically sensitive operators in FP32 (issue 26): parity on random weights
holds even in an all-FP16 graph, so the graph itself is read. Field notes: LayerNorm/pow overflow and
softmax in FP16 are the reported failures (TensorRT #3101, #2564)."""

from __future__ import annotations

import onnx
import pytest
import torch
from onnx import TensorProto

from reskd_infer import ModelSpec, build_model
from reskd_infer.export.fp16 import FP32_OPS, convert_fp16
from reskd_infer.export.onnx import export_onnx

LOW_PRECISION = {TensorProto.FLOAT16, TensorProto.BFLOAT16}
FLOATS = {TensorProto.FLOAT} | LOW_PRECISION


def _elem_types(model: onnx.ModelProto) -> dict[str, int]:
    g = model.graph
    types = {t.name: t.data_type for t in g.initializer}
    for v in [*g.input, *g.output, *g.value_info]:
        types[v.name] = v.type.tensor_type.elem_type
    for node in g.node:  # Constant nodes carry their tensor's type
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    types[node.output[0]] = attr.t.data_type
    return types


@pytest.mark.parametrize(("arch", "frames", "must_hold"), [
    ("swin3d_t", 2, {"LayerNormalization", "Softmax", "Erf", "ReduceMean"}),
    ("tsn_r18", 2, {"ReduceMean"}),
])
def test_fp16_graph_feeds_fp32_ops_only_fp32(arch, frames, must_hold, tmp_path):
    torch.manual_seed(0)
    spec = ModelSpec(arch=arch, class_names=["a", "b", "c"], input_size=64, num_frames=frames)
    fp32 = export_onnx(build_model(spec).eval(), spec, tmp_path / "model.onnx")
    fp16, _ = convert_fp16(fp32, tmp_path / "model.fp16.onnx", spec)
    model = onnx.shape_inference.infer_shapes(onnx.load(str(fp16)), strict_mode=True)
    types = _elem_types(model)
    kept = [n for n in model.graph.node if n.op_type in FP32_OPS]
    assert must_hold <= {n.op_type for n in kept}, "the graph lacks operators this test is meant to check"
    for node in kept:
        inputs = [types.get(name) for name in node.input if name]
        floats = [t for t in inputs if t in FLOATS]
        assert floats and not set(floats) & LOW_PRECISION, f"{node.op_type} {node.name} takes {inputs}"
    assert any(t in LOW_PRECISION for t in types.values())  # and the rest did go to FP16
