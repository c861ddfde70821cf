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
    onnx_int8_path: Path | None = None  # reskd-export --int8: the artifacts that passed the agreement gate
    openvino_int8_path: Path | None = None
    plan_int8_path: Path | None = None
    int8: dict[str, Any] | None = None  # the manifest's INT8 record: clips, settings, attempts, gate figures
    int8_refusals: list[str] = field(default_factory=list)  # INT8 artifacts refused by the gate (exit 3)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.reports)

    def table(self) -> str:
        """The verification reports as a text table (opt-in precisions below, apart)."""
        text = format_table(self.reports)
        if self.opt_in_reports:
            text += "\nopt-in precision (recorded in the manifest, does not fail the export):\n"
            text += format_table(self.opt_in_reports)
        if self.int8:
            text += "\n" + int8_table(self.int8)
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
                "openvino": self.openvino, "opt_in_verification": [r.to_dict() for r in self.opt_in_reports],
                "onnx_int8": rel(self.onnx_int8_path), "openvino_int8": rel(self.openvino_int8_path),
                "tensorrt_int8": rel(self.plan_int8_path), "int8": self.int8, "int8_refusals": self.int8_refusals}


def int8_table(record: dict[str, Any]) -> str:
    """The INT8 gate, one line per engine and attempt: mode, agreement on the verification clips, verdict."""
    if record.get("refused"):
        return f"int8: {record['refused']}"
    clips = record.get("clips", {})
    lines = [f"int8 gate: top-1 agreement with FP32 >= {record.get('min_agreement', 0):.1%} on "
             f"{clips.get('verification', {}).get('clips', '?')} verification clips "
             f"({clips.get('calibration', {}).get('clips', '?')} calibration clips, disjoint)",
             f"{'engine':<13} {'mode':<22} {'agreement':>9} {'views':>7} {'passed':>6}"]
    for engine, rec in record.get("engines", {}).items():
        for a in rec.get("attempts", []):
            agree = f"{a['agreement']:.1%}" if a.get("agreement") is not None else "error"
            views = f"{a['view_agreement']:.1%}" if a.get("view_agreement") is not None else ""
            lines.append(f"{engine:<13} {a['mode']:<22} {agree:>9} {views:>7} {'yes' if a['passed'] else 'NO':>6}")
        if rec.get("speedup_vs_fp32_batch1") is not None:
            lines.append(f"{engine:<13} speed-up vs FP32 (batch 1, here): {rec['speedup_vs_fp32_batch1']:.2f}x")
        if rec.get("reason"):
            lines.append(f"{engine:<13} not made: {rec['reason']}")
    return "\n".join(lines + list(record.get("notes", [])))


class TensorRTUnavailableError(BackendUnavailableError):
    """``trt=True`` on a machine without TensorRT or an NVIDIA GPU.

    Everything else (ONNX, FP16 ONNX, their verification, the manifest) was written
    first; :attr:`result` describes it.
    """

    def __init__(self, message: str, result: ExportResult):
        super().__init__(message)
        self.result = result
