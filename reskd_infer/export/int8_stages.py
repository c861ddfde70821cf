"""The INT8 stages of an export (``reskd-export --int8``): decode the clips, quantize per engine, gate, record.

Each engine's INT8 artifact is quantized, then judged by the agreement gate
(:func:`reskd_infer.export.int8.agreement_gate`) against the verified FP32 ONNX Runtime reference; below the
gate the next fallback mode is tried. An artifact that passes is kept and listed in the manifest with
every attempt, the mode used, the settings, the clip lists' digests and the tool versions; one that never
passes is deleted and its refusal kept for the driver, which raises
:class:`~reskd_infer.errors.Int8RefusedError` after the manifest of the rest is written.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reskd_infer.backends.onnxruntime_ import OnnxRuntimeBackend
from reskd_infer.backends.openvino_ import OpenVinoBackend, openvino_missing
from reskd_infer.backends.tensorrt_ import TensorRTBackend
from reskd_infer.errors import one_line
from reskd_infer.export.calibration import ClipSets, calibration_samples, clip_batches
from reskd_infer.export.int8 import (
    ONNXRUNTIME_MODES,
    OPENVINO_MODES,
    agreement_gate,
    pays_line,
    quantize_onnxruntime,
    quantize_openvino,
    refusal_message,
    speedup_vs_fp32,
    tool_versions,
)
from reskd_infer.export.stages import CHECKPOINT_NAME, ONNX_NAME, ExportJob, fit_batch
from reskd_infer.export.tensorrt import build_engine
from reskd_infer.formats import (
    ARTIFACT_ONNX_INT8,
    ARTIFACT_OPENVINO_INT8,
    ARTIFACT_TENSORRT_INT8,
    SIDECAR_SUFFIX,
    TIMING_CACHE_NAME,
    folder_file,
)
from reskd_infer.models import get_arch_info

ONNX_INT8_NAME = folder_file(ARTIFACT_ONNX_INT8)
OPENVINO_INT8_NAME = folder_file(ARTIFACT_OPENVINO_INT8)  # openvino/model.int8.xml (+ .bin)
PLAN_INT8_NAME = folder_file(ARTIFACT_TENSORRT_INT8)
INT8_ENGINES = ("openvino", "onnxruntime")  # the CPU engines --int8 quantizes for (TensorRT with --trt)
# NVIDIA/TensorRT issues 1176 and 1409: users measured no INT8 gain over FP16 for 3D convolutions.
TRT_3D_NOTE = ("int8: TensorRT INT8 engines of 3D convolutions were reported no faster than FP16 (NVIDIA/TensorRT "
               "issues 1176, 1409); the FP16 engine may serve {arch} as well; measure both on the GPU")


@dataclass
class Int8Job:
    """What ``--int8`` asked for, and what its stages found."""

    clip_sets: ClipSets
    min_agreement: float
    engines: tuple[str, ...] = INT8_ENGINES
    samples: list[np.ndarray] = field(default_factory=list)  # calibration, one view each
    tuning: list[np.ndarray] = field(default_factory=list)  # the accuracy-aware fallback's clips, one view each
    verify_names: list[str] = field(default_factory=list)
    verify_batches: list[np.ndarray] = field(default_factory=list)
    fp32_logits: list[np.ndarray] = field(default_factory=list)  # ONNX Runtime FP32 on the verification clips
    record: dict[str, Any] = field(default_factory=dict)  # the manifest's "int8"


def prepare_int8(job: ExportJob) -> None:
    """Decode the calibration and verification clips (the Recognizer's preprocessing) and the FP32 answers."""
    int8: Int8Job = job.int8
    sets = int8.clip_sets
    int8.samples = calibration_samples(clip_batches(sets.calibration, job.spec, "calibration"))
    int8.tuning = calibration_samples(clip_batches(sets.tuning, job.spec, "tuning"))
    int8.verify_batches = clip_batches(sets.verification, job.spec, "verification")
    int8.verify_names = [p.name for p in sets.verification]
    int8.fp32_logits = [np.asarray(job.reference.infer(x), dtype=np.float32) for x in int8.verify_batches]
    int8.record.update({"clips": sets.record(), "min_agreement": int8.min_agreement, "versions": tool_versions(),
                        "calibration_samples": len(int8.samples), "engines": {}, "notes": []})


def _attempt(job: ExportJob, engine: str, modes: Sequence[str], path: Path, extra: Sequence[Path],
             quantize: Callable[[str], dict[str, Any]], runner: Callable[[], Any]) -> dict[str, Any]:
    """Quantize with each mode in turn until the gate passes; the record of the engine's INT8 artifact."""
    int8: Int8Job = job.int8
    attempts: list[dict[str, Any]] = []
    gate = None
    for mode in modes:
        try:
            settings = quantize(mode)
            backend = runner()
        except Exception as exc:  # noqa: BLE001 - NNCF/ONNX Runtime raise many types; the next fallback may work
            attempts.append({"mode": mode, "agreement": None, "passed": False, "error": one_line(exc)[:300]})
            continue
        result = agreement_gate(int8.verify_names, int8.fp32_logits, backend.infer, int8.verify_batches, job.spec)
        gate = result if gate is None or result.agreement > gate.agreement else gate  # the best attempt so far
        passed = result.agreement >= int8.min_agreement
        attempts.append({"mode": mode, "agreement": result.agreement, "view_agreement": result.view_agreement,
                         "passed": passed, "settings": settings})
        if passed:
            return {"file": path.relative_to(job.folder).as_posix(), "used": mode, "attempts": attempts,
                    "agreement": result.agreement, "verification_clips": len(result.clips),
                    "worst": result.worst(5), "_backend": backend}
        backend.release()
    for file in (path, *extra):
        file.unlink(missing_ok=True)
    record = {"file": None, "used": None, "attempts": attempts, "agreement": gate.agreement if gate else None,
              "worst": gate.worst(5) if gate else []}  # the best attempt's figures
    if gate is None:
        why = "; ".join(f"{a['mode']}: {a['error']}" for a in attempts)
        job.result.int8_refusals.append(f"{path}: {engine} INT8 could not be made: {why}")
    else:
        job.result.int8_refusals.append(refusal_message(path, engine, gate, int8.min_agreement, attempts))
    return record


def _speed_note(job: ExportJob, engine: str, record: dict[str, Any], fp32: Callable[[np.ndarray], np.ndarray]) -> None:
    """Record INT8's measured speed-up over FP32 here; say so in one line where it does not pay."""
    backend = record.pop("_backend", None)
    if backend is None:
        return
    sample = job.int8.verify_batches[0][:1]
    record["speedup_vs_fp32_batch1"] = round(speedup_vs_fp32(fp32, backend.infer, sample), 3)
    backend.release()
    line = pays_line(engine, job.spec, record["speedup_vs_fp32_batch1"])
    if line:
        job.int8.record["notes"].append(line)


def int8_openvino(job: ExportJob) -> None:
    """``openvino/model.int8.xml`` by NNCF, gated; fallbacks: keep the ends in float, then accuracy-aware."""
    if "openvino" not in job.int8.engines:
        return
    missing = openvino_missing()
    if missing:
        job.int8.record["engines"]["openvino"] = {"file": None, "reason": missing}
        return
    xml = job.folder / OPENVINO_INT8_NAME
    record = _attempt(job, "openvino", OPENVINO_MODES, xml, [xml.with_suffix(".bin")],
                      lambda mode: quantize_openvino(job.result.onnx_path, xml, job.spec, job.int8.samples, mode,
                                                     job.int8.min_agreement, tuning=job.int8.tuning),
                      lambda: OpenVinoBackend(xml, job.spec, device="cpu"))
    if record["file"]:
        job.result.openvino_int8_path = xml
        fp32 = OpenVinoBackend(job.result.onnx_path, job.spec, device="cpu", precision="fp32")
        _speed_note(job, "OpenVINO", record, fp32.infer)
    job.int8.record["engines"]["openvino"] = record


def int8_onnxruntime(job: ExportJob) -> None:
    """``model.int8.onnx`` (QDQ), gated on ONNX Runtime; fallbacks: keep the ends in float, then percentile."""
    if "onnxruntime" not in job.int8.engines:
        return
    path = job.folder / ONNX_INT8_NAME
    for_trt = "tensorrt" in job.int8.engines
    record = _attempt(job, "ONNX Runtime", ONNXRUNTIME_MODES, path, [],
                      lambda mode: quantize_onnxruntime(job.result.onnx_path, path, job.spec, job.int8.samples, mode,
                                                        for_tensorrt=for_trt),
                      lambda: OnnxRuntimeBackend(path, job.spec, device="cpu"))
    if record["file"]:
        job.result.onnx_int8_path = path
        _speed_note(job, "ONNX Runtime", record, job.reference.infer)
    job.int8.record["engines"]["onnxruntime"] = record


def int8_tensorrt(job: ExportJob) -> None:
    """The TensorRT INT8 engine from the QDQ graph (explicit quantization, strongly typed), gated like the others.

    NOT RUN HERE (no GPU): written against TensorRT 10/11's documented explicit-quantization path."""
    if "tensorrt" not in job.int8.engines or job.result.tensorrt_problem or not job.result.onnx_int8_path:
        return
    if get_arch_info(job.spec.arch).family == "3d":
        job.int8.record["notes"].append(TRT_3D_NOTE.format(arch=job.spec.arch))
    plan = job.folder / PLAN_INT8_NAME
    info: dict[str, Any] = {}

    def build(mode: str) -> dict[str, Any]:
        info.update(build_engine(job.result.onnx_int8_path, plan, job.spec, batch=job.profile,
                                 workspace_gb=job.workspace_gb,
                                 timing_cache=job.timing_cache or job.folder / TIMING_CACHE_NAME, precision="int8",
                                 fallback=[ONNX_INT8_NAME, ONNX_NAME, CHECKPOINT_NAME], progress=job.progress))
        return {"tool": "tensorrt", "source_onnx": ONNX_INT8_NAME, "explicit_quantization": True,
                "strongly_typed": True}

    class _Fitted:  # the engine's batch profile bounds what one call takes
        def __init__(self) -> None:
            self.engine = TensorRTBackend(plan, job.spec)

        def infer(self, x: np.ndarray) -> np.ndarray:
            return self.engine.infer(fit_batch(x, job.profile))[: len(x)]

        def release(self) -> None:
            self.engine.release()

    record = _attempt(job, "TensorRT", ("default",), plan, [Path(str(plan) + SIDECAR_SUFFIX)], build, _Fitted)
    backend = record.pop("_backend", None)
    if backend is not None:
        backend.release()
    if record["file"]:
        job.result.plan_int8_path = plan
        record["tensorrt"] = info.get("tensorrt")
    job.int8.record["engines"]["tensorrt"] = record
