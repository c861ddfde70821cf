"""The stages of an export, one small function each: ``stage(job)`` reads what earlier stages left on the
:class:`ExportJob` and adds its own artifact, report or record.

Every artifact is verified against the one before it (:mod:`reskd_infer.export.verify`); a stage whose
artifact disagrees beyond tolerance raises :class:`~reskd_infer.errors.ExportError`. The driver
(:mod:`reskd_infer.export.driver`) picks the stages and runs them in order.
"""

from __future__ import annotations

import datetime as _dt
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reskd_infer.backends.onnxruntime_ import OnnxRuntimeBackend
from reskd_infer.backends.tensorrt_ import TensorRTBackend
from reskd_infer.export.fp16 import convert_fp16
from reskd_infer.export.onnx import export_onnx
from reskd_infer.export.openvino import verify_openvino
from reskd_infer.export.result import ExportResult
from reskd_infer.export.tensorrt import build_engine
from reskd_infer.export.triton import write_triton_repository
from reskd_infer.export.verify import (
    FP16_TOLERANCE,
    FP32_TOLERANCE,
    VerifyReport,
    clip_inputs,
    compare,
    random_inputs,
    require,
)
from reskd_infer.formats import (
    ARTIFACT_CHECKPOINT,
    ARTIFACT_ONNX,
    ARTIFACT_ONNX_FP16,
    ARTIFACT_ONNX_INT8,
    ARTIFACT_OPENVINO_INT8,
    ARTIFACT_TENSORRT,
    ARTIFACT_TENSORRT_INT8,
    MANIFEST_NAME,
    MANIFEST_SCHEMA,
    SIDECAR_SUFFIX,
    TIMING_CACHE_NAME,
    companion_files,
    folder_file,
)
from reskd_infer.io.digests import file_sha256
from reskd_infer.io.files import atomic_write
from reskd_infer.spec import ModelSpec, library_versions

ONNX_NAME, ONNX_FP16_NAME = folder_file(ARTIFACT_ONNX), folder_file(ARTIFACT_ONNX_FP16)
PLAN_NAME, CHECKPOINT_NAME = folder_file(ARTIFACT_TENSORRT), folder_file(ARTIFACT_CHECKPOINT)
INT8_NAMES = {kind: folder_file(kind) for kind in (ARTIFACT_ONNX_INT8, ARTIFACT_OPENVINO_INT8, ARTIFACT_TENSORRT_INT8)}
PUBLISHED = {ONNX_NAME, ONNX_FP16_NAME, PLAN_NAME, PLAN_NAME + SIDECAR_SUFFIX, CHECKPOINT_NAME, TIMING_CACHE_NAME,
             MANIFEST_NAME, INT8_NAMES[ARTIFACT_ONNX_INT8], INT8_NAMES[ARTIFACT_OPENVINO_INT8],
             str(Path(INT8_NAMES[ARTIFACT_OPENVINO_INT8]).with_suffix(".bin")), INT8_NAMES[ARTIFACT_TENSORRT_INT8],
             INT8_NAMES[ARTIFACT_TENSORRT_INT8] + SIDECAR_SUFFIX}  # the folder's files a server reads


@dataclass
class ExportJob:
    """One export in progress: what was asked, the loaded model, and what the stages made so far."""

    checkpoint: Path
    model: torch.nn.Module
    result: ExportResult  # the folder, the spec, and every artifact and report written so far
    profile: tuple[int, int, int]  # the engine's batch MIN, OPT, MAX
    opset: int = 17
    workspace_gb: float = 4.0
    timing_cache: Path | None = None
    triton_dir: Path | None = None
    clips: list[Path] = field(default_factory=list)  # real videos to verify on
    progress: bool = False
    inputs: list[tuple[str, np.ndarray]] = field(default_factory=list)  # (label, batch): random, then real clips
    real_labels: list[str] = field(default_factory=list)  # the labels of the real-clip inputs
    reference: OnnxRuntimeBackend | None = None  # FP32 ONNX Runtime: what later artifacts are compared with
    engine_info: dict[str, Any] | None = None  # the TensorRT sidecar, once the engine is built
    int8: Any = None  # an int8_stages.Int8Job when --int8 was asked for

    @property
    def folder(self) -> Path:
        return self.result.folder

    @property
    def spec(self) -> ModelSpec:
        return self.result.spec


Stage = Callable[[ExportJob], None]


def _torch_runner(model: torch.nn.Module) -> Callable[[np.ndarray], np.ndarray]:
    @torch.no_grad()
    def run(x: np.ndarray) -> np.ndarray:
        return model(torch.from_numpy(x)).numpy()

    return run


def _record(job: ExportJob, report: VerifyReport, artifact: Path) -> None:
    """Keep ``report`` in the result, then fail the export if ``artifact`` did not pass it."""
    job.result.reports.append(report)
    require(report, artifact)


def copy_checkpoint(job: ExportJob) -> None:
    """The checkpoint, copied into the folder: the last fallback of every other artifact."""
    target = job.result.checkpoint_path
    if job.checkpoint.resolve() != target.resolve():
        atomic_write(target, lambda tmp: shutil.copyfile(job.checkpoint, tmp))


def write_onnx(job: ExportJob) -> None:
    """The FP32 ONNX model with a dynamic batch and the spec in its metadata."""
    job.result.onnx_path = export_onnx(job.model, job.spec, job.folder / ONNX_NAME, opset=job.opset)


def verify_onnx(job: ExportJob) -> None:
    """ONNX Runtime FP32 against PyTorch on random input and the real clips (which every later check reuses)."""
    real = clip_inputs(job.clips, job.spec)
    job.inputs = random_inputs(job.spec) + real
    job.real_labels = [label for label, _ in real]
    job.reference = OnnxRuntimeBackend(job.result.onnx_path, job.spec, device="cpu")
    report = compare("onnx fp32 vs pytorch", ("pytorch", _torch_runner(job.model)),
                     ("onnxruntime fp32", job.reference.infer), job.inputs, FP32_TOLERANCE)
    _record(job, report, job.result.onnx_path)


def check_openvino(job: ExportJob) -> None:
    """OpenVINO FP32 against ONNX Runtime (fails the export above tolerance) and the BF16 gate (opt-in)."""
    fp32_report, bf16_report, job.result.openvino = verify_openvino(
        job.result.onnx_path, job.spec, ("onnxruntime fp32", job.reference.infer), job.inputs, job.real_labels)
    job.result.reports += [fp32_report] if fp32_report else []
    job.result.opt_in_reports += [bf16_report] if bf16_report else []


def write_fp16(job: ExportJob) -> None:
    """The mixed-precision ONNX model (normalizations, softmax and reductions kept in FP32)."""
    job.result.onnx_fp16_path, job.result.fp16_converter = convert_fp16(
        job.result.onnx_path, job.folder / ONNX_FP16_NAME, job.spec)


def verify_fp16(job: ExportJob) -> None:
    """ONNX Runtime FP16 against ONNX Runtime FP32."""
    half = OnnxRuntimeBackend(job.result.onnx_fp16_path, job.spec, device="cpu")
    report = compare("onnx fp16 vs onnx fp32", ("onnxruntime fp32", job.reference.infer),
                     ("onnxruntime fp16", half.infer), job.inputs, FP16_TOLERANCE)
    _record(job, report, job.result.onnx_fp16_path)


def build_tensorrt(job: ExportJob) -> None:
    """The TensorRT engine and its sidecar, from the FP16 ONNX model when there is one."""
    result = job.result
    job.engine_info = build_engine(
        result.onnx_fp16_path or result.onnx_path, job.folder / PLAN_NAME, job.spec, batch=job.profile,
        workspace_gb=job.workspace_gb, timing_cache=job.timing_cache or job.folder / TIMING_CACHE_NAME,
        precision="fp16" if result.onnx_fp16_path else "fp32", fallback=[ONNX_NAME, CHECKPOINT_NAME],
        progress=job.progress)
    result.plan_path = job.folder / PLAN_NAME


def fit_batch(x: np.ndarray, profile: tuple[int, int, int]) -> np.ndarray:
    """Repeat or cut a batch so its size lies inside the engine's MIN..MAX profile."""
    if len(x) < profile[0]:
        x = np.concatenate([x] * -(-profile[0] // len(x)))
    return x[: max(profile[0], min(len(x), profile[2]))]


def verify_tensorrt(job: ExportJob) -> None:
    """The engine against ONNX Runtime FP32, at the tolerance of the precision it was built from."""
    engine = TensorRTBackend(job.result.plan_path, job.spec)
    tolerance = FP16_TOLERANCE if job.result.onnx_fp16_path else FP32_TOLERANCE
    batches = [(label, fit_batch(x, job.profile)) for label, x in job.inputs]
    report = compare(f"tensorrt {job.engine_info['tensorrt']['precision']} vs onnx fp32",
                     ("onnxruntime fp32", job.reference.infer), ("tensorrt", engine.infer), batches, tolerance)
    engine.release()
    _record(job, report, job.result.plan_path)


def write_triton(job: ExportJob) -> None:
    """A Triton model repository serving the engine, else the FP32 ONNX model."""
    served = job.result.plan_path or job.result.onnx_path
    job.result.triton_path = write_triton_repository(job.triton_dir, served, job.spec,
                                                     max_batch_size=job.profile[2],
                                                     preferred_batch_sizes=job.profile[1:])


def manifest_record(job: ExportJob) -> dict[str, Any]:
    """The manifest: the spec, each artifact with its digest, versions, and every verification report."""
    result = job.result
    artifacts = {ARTIFACT_CHECKPOINT: CHECKPOINT_NAME}
    if result.onnx_path:
        artifacts[ARTIFACT_ONNX] = ONNX_NAME
    if result.onnx_fp16_path:
        artifacts[ARTIFACT_ONNX_FP16] = ONNX_FP16_NAME
    if result.plan_path:
        artifacts[ARTIFACT_TENSORRT] = PLAN_NAME
    for kind, path in ((ARTIFACT_ONNX_INT8, result.onnx_int8_path), (ARTIFACT_OPENVINO_INT8, result.openvino_int8_path),
                       (ARTIFACT_TENSORRT_INT8, result.plan_int8_path)):
        if path:
            artifacts[kind] = INT8_NAMES[kind]
    digested = [result.folder / name for name in artifacts.values()]
    digested += [c for kind, name in artifacts.items() for c in companion_files(kind, result.folder / name)]
    return {
        "schema": MANIFEST_SCHEMA,
        "spec": result.spec.to_dict(),
        "artifacts": artifacts,
        # Checked by the Recognizer before loading: a damaged or replaced file is refused, not served.
        "sha256": {p.relative_to(result.folder).as_posix(): file_sha256(p) for p in digested},
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "versions": library_versions("torch", "onnx", "onnxruntime"),
        "onnx": {"opset": job.opset, "input": "video", "output": "logits", "dynamic_batch": True},
        "fp16_converter": result.fp16_converter,
        "batch_profile": list(job.profile),
        "tensorrt": job.engine_info["tensorrt"] if job.engine_info else None,
        "tensorrt_problem": result.tensorrt_problem,
        "triton": str(result.triton_path) if result.triton_path else None,
        "verification": [r.to_dict() for r in result.reports],
        "openvino": {**(result.openvino or {}),
                     "verification": [r.to_dict() for r in result.opt_in_reports]} if result.openvino else None,
        "int8": result.int8,
    }


def write_manifest(job: ExportJob) -> None:
    """``manifest.json``, written last: a folder with a manifest holds every file it names."""
    text = json.dumps(manifest_record(job), indent=2) + "\n"
    job.result.manifest_path = atomic_write(job.folder / MANIFEST_NAME, lambda tmp: Path(tmp).write_text(text))


def make_readable(folder: Path) -> None:
    """Atomic writes create 0600 temporary files; servers may run as another user."""
    for path in folder.rglob("*"):
        if path.is_file() and path.relative_to(folder).as_posix() in PUBLISHED:
            path.chmod(0o644)
