"""CONTRACT TESTS for TensorRT INT8 (explicit quantization from the QDQ graph), on the CPU with the stand-in module.

What TensorRT's explicit quantization asks of the graph is checked on the real QDQ file ONNX Runtime's quantizer
writes for it (signed INT8, zero points 0, per-channel weights); the build itself runs against
``tests/helpers/trt_standin.py``, which is NOT TensorRT: nothing here proves an engine builds or runs on a GPU
(never run here: no GPU on the machines this was written on).
"""

import sys

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

import trt_standin
from reskd_infer import ModelSpec, build_model, save_checkpoint
from reskd_infer.export import tensorrt as trt_export
from reskd_infer.export.int8 import quantize_onnxruntime
from reskd_infer.export.onnx import export_onnx
from reskd_infer.export.tensorrt import build_engine
from reskd_infer.formats import ARTIFACT_TENSORRT_INT8, artifact_format, folder_kinds
from reskd_infer.io.artifacts import read_sidecar

SPEC = ModelSpec(arch="r3d_18", class_names=["walk", "run", "jump"], input_size=16, num_frames=2, frame_interval=1)


@pytest.fixture
def standin(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", trt_standin)
    monkeypatch.setattr(trt_export, "tensorrt_missing", lambda device="auto": None)
    return trt_standin


@pytest.fixture(scope="module")
def qdq_for_tensorrt(tmp_path_factory):
    """The QDQ graph the exporter writes when a TensorRT INT8 engine is asked for (real ONNX Runtime quantizer)."""
    root = tmp_path_factory.mktemp("trtint8")
    torch.manual_seed(0)
    model = build_model(SPEC).eval()
    save_checkpoint(model, SPEC, root / "model.ckpt")
    fp32 = export_onnx(model, SPEC, root / "model.onnx")
    rng = np.random.default_rng(0)
    samples = [rng.standard_normal((1, *SPEC.input_shape)).astype(np.float32) for _ in range(4)]
    settings = quantize_onnxruntime(fp32, root / "model.int8.onnx", SPEC, samples, "default", for_tensorrt=True)
    return root / "model.int8.onnx", settings


def test_the_qdq_graph_for_tensorrt_is_signed_symmetric_int8(qdq_for_tensorrt):
    path, settings = qdq_for_tensorrt
    assert settings["activation_type"] == "int8 symmetric" and settings["reduce_range"] is False
    proto = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    zero_points = [inits[n.input[2]] for n in proto.graph.node
                   if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2 and n.input[2] in inits]
    assert zero_points, "no Q/DQ pairs in the graph"
    # TensorRT's explicit quantization: INT8 (not UINT8) with zero point 0 everywhere.
    assert all(z.dtype == np.int8 and not z.any() for z in zero_points)


def test_int8_engine_builds_strongly_typed_from_the_qdq_graph_and_records_it(standin, qdq_for_tensorrt, tmp_path):
    path, _ = qdq_for_tensorrt
    plan = tmp_path / "model.int8.plan"
    sidecar = build_engine(path, plan, SPEC, batch=(1, 8, 32), precision="int8",
                           fallback=["model.int8.onnx", "model.onnx", "model.ckpt"])
    engine = sidecar["tensorrt"]
    assert engine["precision"] == "int8" and engine["strongly_typed"] is True
    assert engine["source_onnx"] == "model.int8.onnx" and sidecar["fallback"][0] == "model.int8.onnx"
    assert read_sidecar(plan) == sidecar
    import json

    built = json.loads(plan.read_bytes()[len(standin.PLAN_MAGIC):])
    assert built["strongly_typed"] is True  # precision from the Q/DQ graph, no precision builder flags


def test_the_int8_engine_is_a_gpu_artifact_served_first_from_a_folder():
    row = artifact_format(ARTIFACT_TENSORRT_INT8)
    assert row.gpu_only and row.precision == "int8" and row.folder_file == "model.int8.plan"
    assert folder_kinds()[:2] == ["tensorrt_int8", "tensorrt"]
