"""The export driver picks the stages the options ask for; the manifest is always written last."""

from pathlib import Path

import pytest
import torch

from reskd_infer.export.driver import plan_stages
from reskd_infer.export.result import ExportResult
from reskd_infer.export.stages import ExportJob
from reskd_infer.spec import ModelSpec

SPEC = ModelSpec(arch="r3d_18", class_names=["a", "b"], input_size=32, crop_size=32, num_frames=4)


def _job(tmp_path: Path, tensorrt_problem: str | None = None, triton: bool = False) -> ExportJob:
    result = ExportResult(tmp_path, SPEC, tmp_path / "model.ckpt", tensorrt_problem=tensorrt_problem)
    return ExportJob(tmp_path / "in.ckpt", torch.nn.Identity(), result, (1, 8, 32),
                     triton_dir=tmp_path / "triton" if triton else None)


@pytest.mark.parametrize("fp16, trt, problem, triton, expected", [
    (False, False, None, False, []),
    (True, False, None, False, ["fp16", "verify fp16"]),
    (True, True, None, True, ["fp16", "verify fp16", "tensorrt", "verify tensorrt", "triton"]),
    (True, True, "no NVIDIA GPU", True, ["fp16", "verify fp16", "triton"]),  # the rest is written and verified
])
def test_plan_stages(tmp_path, fp16, trt, problem, triton, expected):
    names = [name for name, _ in plan_stages(_job(tmp_path, problem, triton), fp16=fp16, trt=trt)]
    assert names == ["checkpoint", "onnx", "verify onnx", "verify openvino", *expected, "manifest"]
