"""CONTRACT TESTS for the TensorRT builder and backend, run on the CPU with a stand-in ``tensorrt`` module.

``tests/trt_standin.py`` enforces the parts of TensorRT's documented Python API
contract our code relies on (``set_input_shape`` returns False outside the
optimization profile, every I/O tensor address must be set before
``execute_async_v3``, a timing cache from another device is refused, ...). These
tests catch misuse of that contract; they are NOT a TensorRT run and prove nothing
about a GPU: the ``gpu`` tests in ``test_export_engines.py`` do that, and they skip here.
"""

import sys
import warnings

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

import trt_standin
from reskd_infer import ModelSpec
from reskd_infer.backends.tensorrt_ import TensorRTBackend
from reskd_infer.errors import BackendUnavailableError, EngineIncompatibleError
from reskd_infer.export import tensorrt as trt_export
from reskd_infer.export.tensorrt import TRT_API_NAMES, build_engine, missing_trt_names
from reskd_infer.io.artifacts import read_sidecar

SPEC = ModelSpec(arch="r3d_18", class_names=["walk", "run", "jump"], input_size=16, num_frames=2, frame_interval=1)
PROFILE = (4, 8, 16)


@pytest.fixture
def standin(monkeypatch):
    """``import tensorrt`` yields the stand-in; the builder's environment check passes (there is no GPU here)."""
    monkeypatch.setitem(sys.modules, "tensorrt", trt_standin)
    monkeypatch.setattr(trt_export, "tensorrt_missing", lambda device="auto": None)
    monkeypatch.setattr(trt_standin.knobs, "serialize_cache_raises", False)
    return trt_standin


@pytest.fixture
def onnx_file(tmp_path):
    """A graph with the exporter's I/O contract (input ``video`` with a dynamic batch, output ``logits``)."""
    video = helper.make_tensor_value_info("video", TensorProto.FLOAT, ["batch", *SPEC.input_shape])
    logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", SPEC.num_classes])
    path = tmp_path / "model.onnx"
    onnx.save(helper.make_model(helper.make_graph([], "contract", [video], [logits])), path)
    return path


class StandInTensorRT(TensorRTBackend):
    """The real TensorRT backend with its CUDA plumbing replaced by host memory (contract tests only):
    loading, profile handling, batch splitting/padding and :meth:`enqueue` are the production code."""

    @classmethod
    def available(cls, device="auto"):
        return None

    @classmethod
    def runtime_environment(cls, device="auto"):
        return trt_standin.__version__, None

    def _select_device(self, device):
        return torch.device("cpu")

    def _deserialize(self, plan):
        return self._runtime.deserialize_cuda_engine(plan)

    def _run(self, x):
        ctx = getattr(self, "ctx", None) or self.engine.create_execution_context()
        self.ctx = ctx
        return self.enqueue(ctx, x, 0, lambda shape, dtype: torch.empty(shape, dtype=dtype))


def build(onnx_file, tmp_path, **kwargs):
    kwargs = {"batch": PROFILE, "timing_cache": tmp_path / "model.timing.cache", "precision": "fp32",
              "fallback": ["model.onnx"], **kwargs}
    return build_engine(onnx_file, tmp_path / "model.plan", SPEC, **kwargs)


def test_standin_covers_every_tensorrt_name_the_code_uses():
    assert missing_trt_names(trt_standin) == []
    assert "IBuilderConfig.clear_flag" in TRT_API_NAMES and "IExecutionContext.set_input_shape" in TRT_API_NAMES


def test_build_writes_plan_sidecar_and_cache_with_the_profile(standin, onnx_file, tmp_path):
    sidecar = build(onnx_file, tmp_path)
    assert (tmp_path / "model.plan").read_bytes().startswith(standin.PLAN_MAGIC)
    assert read_sidecar(tmp_path / "model.plan") == sidecar
    engine = sidecar["tensorrt"]
    assert engine["version"] == standin.__version__ and engine["precision"] == "fp32"
    assert engine["profile"] == {"input": "video", "min": [4, *SPEC.input_shape], "opt": [8, *SPEC.input_shape],
                                 "max": [16, *SPEC.input_shape]}
    assert engine["timing_cache_loaded"] == "fresh" and (tmp_path / "model.timing.cache").is_file()
    assert build(onnx_file, tmp_path)["tensorrt"]["timing_cache_loaded"] == "loaded"  # reused by the next build


def test_fp32_builds_clear_tf32_and_fp16_builds_keep_it(standin, onnx_file, tmp_path):
    import json

    def plan_tf32():
        return json.loads((tmp_path / "model.plan").read_bytes()[len(standin.PLAN_MAGIC):])["tf32"]

    assert build(onnx_file, tmp_path, precision="fp32")["tensorrt"]["tf32"] is False and plan_tf32() is False
    assert build(onnx_file, tmp_path, precision="fp16")["tensorrt"]["tf32"] is True and plan_tf32() is True


def test_timing_cache_from_another_device_is_refused_and_replaced(standin, onnx_file, tmp_path):
    cache = tmp_path / "model.timing.cache"
    cache.write_bytes(b'{"device": "another-gpu/cc9.0", "entries": 7}')
    with pytest.warns(RuntimeWarning, match="refused this timing cache"):
        sidecar = build(onnx_file, tmp_path)
    assert sidecar["tensorrt"]["timing_cache_loaded"].startswith("refused")
    assert standin.DEVICE_TAG in cache.read_text()  # rewritten with this device's timings
    assert (tmp_path / "model.plan").is_file()


def test_a_cache_that_cannot_be_saved_leaves_plan_and_sidecar(standin, onnx_file, tmp_path):
    standin.knobs.serialize_cache_raises = True
    with pytest.warns(RuntimeWarning, match="timing cache not saved"):
        build(onnx_file, tmp_path)
    assert (tmp_path / "model.plan").is_file() and read_sidecar(tmp_path / "model.plan")["spec"]["arch"] == "r3d_18"
    assert not (tmp_path / "model.timing.cache").exists()


@pytest.fixture
def engine(standin, onnx_file, tmp_path):
    build(onnx_file, tmp_path)
    backend = StandInTensorRT(tmp_path / "model.plan")
    yield backend
    backend.release()


@pytest.mark.parametrize("n", [1, 3, 4, 9, 16, 21])
def test_batches_are_padded_to_min_and_split_at_max(engine, n):
    assert (engine.min_batch, engine.max_batch) == (4, 16)
    x = np.random.default_rng(n).standard_normal((n, *SPEC.input_shape)).astype(np.float32)
    expected = x.reshape(n, -1) @ trt_standin.weights(int(np.prod(SPEC.input_shape)), SPEC.num_classes)
    got = engine.infer(x)
    assert got.shape == (n, SPEC.num_classes)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)
    assert engine.ctx.executions == -(-n // 16)


def test_a_shape_outside_the_profile_is_an_error_not_a_crash(engine):
    ctx = engine.engine.create_execution_context()
    cpu = lambda shape, dtype: torch.empty(shape, dtype=dtype)  # noqa: E731
    for bad in (torch.zeros(2, *SPEC.input_shape), torch.zeros(17, *SPEC.input_shape),
                torch.zeros(4, 3, 5, 16, 16)):
        with pytest.raises(BackendUnavailableError, match=r"refused input shape .* batches 4\.\.16"):
            engine.enqueue(ctx, bad, 0, cpu)
    assert ctx.executions == 0


def test_the_standin_refuses_execution_without_every_address(engine):
    """The stand-in's own contract, so the backend tests above could fail: no output address, no run."""
    ctx = engine.engine.create_execution_context()
    x = torch.zeros(4, *SPEC.input_shape)
    assert ctx.set_input_shape("video", tuple(x.shape))
    assert ctx.set_tensor_address("video", x.data_ptr())
    assert not ctx.set_tensor_address("no such tensor", x.data_ptr())
    assert ctx.execute_async_v3(0) is False


def test_bytes_that_do_not_deserialize_raise_engine_incompatible(standin, onnx_file, tmp_path):
    build(onnx_file, tmp_path)
    (tmp_path / "model.plan").write_bytes(b"a plan from another TensorRT release")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(EngineIncompatibleError, match="could not deserialize"):
            StandInTensorRT(tmp_path / "model.plan")
