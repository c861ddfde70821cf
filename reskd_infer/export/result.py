"""What an export wrote (:class:`ExportResult`), and the error of an export that could not build its engine."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reskd_infer.errors import BackendUnavailableError
from reskd_infer.export.verify import VerifyReport, format_table
from reskd_infer.spec import ModelSpec


@dataclass
class ExportResult:
    """What :func:`~reskd_infer.export.export_model` wrote."""

    folder: Path
    spec: ModelSpec
    checkpoint_path: Path
    onnx_path: Path | None = None
    onnx_fp16_path: Path | None = None
    plan_path: Path | None = None
    triton_path: Path | None = None
    manifest_path: Path | None = None
    fp16_converter: str | None = None
    reports: list[VerifyReport] = field(default_factory=list)
    opt_in_reports: list[VerifyReport] = field(default_factory=list)  # shown, never fail the export (BF16)
    tensorrt_problem: str | None = None
    openvino: dict[str, Any] | None = None  # the manifest's OpenVINO record (FP32 facts, the BF16 gate)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.reports)

    def table(self) -> str:
        """The verification reports as a text table (opt-in precisions below, apart)."""
        text = format_table(self.reports)
        if self.opt_in_reports:
            text += "\nopt-in precision (recorded in the manifest, does not fail the export):\n"
            text += format_table(self.opt_in_reports)
        return text

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the paths written, the converter, the TensorRT problem and every report."""
        def rel(p: Path | None) -> str | None:
            return None if p is None else str(p)

        return {"folder": str(self.folder), "arch": self.spec.arch, "checkpoint": rel(self.checkpoint_path),
                "onnx": rel(self.onnx_path), "onnx_fp16": rel(self.onnx_fp16_path), "tensorrt": rel(self.plan_path),
                "triton": rel(self.triton_path), "manifest": rel(self.manifest_path),
                "fp16_converter": self.fp16_converter, "tensorrt_problem": self.tensorrt_problem,
                "passed": self.passed, "verification": [r.to_dict() for r in self.reports],
                "openvino": self.openvino, "opt_in_verification": [r.to_dict() for r in self.opt_in_reports]}


class TensorRTUnavailableError(BackendUnavailableError):
    """``trt=True`` on a machine without TensorRT or an NVIDIA GPU.

    Everything else (ONNX, FP16 ONNX, their verification, the manifest) was written
    first; :attr:`result` describes it.
    """

    def __init__(self, message: str, result: ExportResult):
        super().__init__(message)
        self.result = result
