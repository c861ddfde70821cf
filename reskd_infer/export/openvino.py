"""Export-time verification of the OpenVINO engine: FP32 against ONNX Runtime, and the BF16 gate.

OpenVINO compiles the exported ``model.onnx`` itself (there is no separate artifact), so
what is verified is the engine the Recognizer will prefer on the CPU:

* **FP32** (``INFERENCE_PRECISION_HINT=f32``) against ONNX Runtime FP32 at the FP32 tolerance,
  on the same inputs as every other stage. A failure fails the export, like any artifact.
* **BF16** against OpenVINO FP32 at :data:`BF16_TOLERANCE`, when the CPU runs BF16 natively.
  BF16 is an opt-in, so a failure does not fail the export: the manifest records
  ``openvino.bf16.verified = false`` with the reason, and ``precision="bf16"`` then serves FP32.
  The gate passes only with real decoded clips among the inputs and a top-1 agreement with FP32
  of at least :data:`BF16_MIN_TOP1_AGREEMENT` on them (besides the tolerance on every input).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from reskd_infer.backends.openvino_ import OpenVinoBackend, bf16_supported, openvino_missing
from reskd_infer.export.verify import FP32_TOLERANCE, Runner, Tolerance, VerifyReport, compare, require
from reskd_infer.io.digests import file_sha256
from reskd_infer.spec import ModelSpec

# BF16 keeps 8 significant bits (FP16 has 11): measured 0.4-4% of the largest logit on the
# zoo (docs/engines.md). The gate's real criterion is top-1 agreement on real clips.
BF16_TOLERANCE = Tolerance(atol=2e-2, rtol=6e-2, min_cosine=0.995)
BF16_MIN_TOP1_AGREEMENT = 0.99


def real_clip_agreement(report: VerifyReport, real_labels: Sequence[str]) -> tuple[float | None, int]:
    """Top-1 agreement over the real-clip inputs of ``report`` (None without any) and their sample count."""
    rows = [r for r in report.rows if r.input in set(real_labels)]
    samples = sum(r.batch for r in rows)
    return (sum(r.top1_agree for r in rows) / samples if samples else None), samples


def bf16_verdict(report: VerifyReport, real_labels: Sequence[str]) -> dict[str, Any]:
    """The manifest's ``openvino.bf16`` record for a BF16-vs-FP32 report."""
    agreement, samples = real_clip_agreement(report, real_labels)
    reason = None
    if not samples:
        reason = "no real clips among the verification inputs (pass --verify-clip or install the [dev] footage)"
    elif agreement < BF16_MIN_TOP1_AGREEMENT:
        reason = f"top-1 agreement with FP32 on real clips {agreement:.1%} < {BF16_MIN_TOP1_AGREEMENT:.0%}"
    elif not report.passed:
        reason = "; ".join(report.failures)
    return {"supported": True, "verified": reason is None, "reason": reason,
            "top1_agreement_real_clips": agreement, "real_clip_samples": samples,
            "top1_agreement_all": report.top1_agreement, "max_abs": report.max_abs,
            "min_cosine": report.min_cosine, "min_top1_agreement": BF16_MIN_TOP1_AGREEMENT}


def verify_openvino(onnx_path: Path, spec: ModelSpec, reference: tuple[str, Runner],
                    inputs: Sequence[tuple[str, np.ndarray]], real_labels: Sequence[str]
                    ) -> tuple[VerifyReport | None, VerifyReport | None, dict[str, Any]]:
    """Verify OpenVINO FP32 (raises ExportError above tolerance) and judge BF16.

    Returns the FP32 report, the BF16 report (an opt-in: it never fails the export) and the
    manifest's ``openvino`` record; reports are None where OpenVINO or BF16 is unavailable.
    """
    missing = openvino_missing()
    if missing:
        return None, None, {"available": False, "reason": missing}
    import openvino

    fp32 = OpenVinoBackend(onnx_path, spec, device="cpu", precision="fp32")
    record: dict[str, Any] = {"available": True, "version": openvino.__version__,
                              "fp32_inference_precision": fp32.compiled_precision()}
    report = compare("openvino fp32 vs onnx fp32", reference, ("openvino fp32", fp32.infer), inputs,
                     FP32_TOLERANCE)
    require(report, onnx_path)
    unsupported = bf16_supported()
    if unsupported:
        record["bf16"] = {"supported": False, "verified": False, "reason": unsupported}
        return report, None, record
    bf16 = OpenVinoBackend(onnx_path, spec, device="cpu", precision="bf16", bf16_gate_check=False)
    bf16_report = compare("openvino bf16 vs fp32", ("openvino fp32", fp32.infer), ("openvino bf16", bf16.infer),
                          inputs, BF16_TOLERANCE)
    record["bf16"] = {**bf16_verdict(bf16_report, real_labels), "onnx": onnx_path.name,
                      "onnx_sha256": file_sha256(onnx_path)}
    return report, bf16_report, record
